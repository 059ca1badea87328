// server.scheduler = "io": CAF's scheduler runs on the Asio io_context, so a connection
// actor's message is handled on the I/O thread that read it instead of waking a worker
// thread (DESIGN.md: 0.97 of raw Beast against 0.56 with CAF's own scheduler).
//
// CAF 0.17 builds its own scheduler only when no module with the scheduler id was
// loaded; this one is loaded through actor_system_config::module_factories.
#pragma once

#include <caf/detail/thread_safe_actor_clock.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>

#include <boost/asio/io_context.hpp>

#include <thread>

namespace wsvisor {

class io_scheduler final : public caf::scheduler::abstract_coordinator {
 public:
  io_scheduler(caf::actor_system& system, boost::asio::io_context& io);

  void enqueue(caf::resumable* job) override;
  caf::detail::thread_safe_actor_clock& clock() noexcept override { return clock_; }

 protected:
  void start() override;
  void stop() override;

 private:
  void run(caf::resumable* job);

  boost::asio::io_context& io_;
  caf::detail::thread_safe_actor_clock clock_;
  std::thread clock_thread_;
};

}  // namespace wsvisor
