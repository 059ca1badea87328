#include "io_scheduler.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/execution_unit.hpp>
#include <caf/resumable.hpp>

#include <boost/asio/post.hpp>

#include "wsvisor/server.hpp"

namespace wsvisor {
namespace {

// What a resumed actor sees as its execution unit: work it schedules while running
// (exec_later) goes back through the scheduler, i.e. onto the io_context.
class io_execution_unit final : public caf::execution_unit {
 public:
  io_execution_unit(caf::actor_system& system, io_scheduler& scheduler)
      : caf::execution_unit(&system), scheduler_(scheduler) {}
  void exec_later(caf::resumable* job) override { scheduler_.enqueue(job); }

 private:
  io_scheduler& scheduler_;
};

}  // namespace

io_scheduler::io_scheduler(caf::actor_system& system, boost::asio::io_context& io)
    : abstract_coordinator(system), io_(io) {}

void io_scheduler::enqueue(caf::resumable* job) {
  boost::asio::post(io_, [this, job] { run(job); });
}

// Mirrors what CAF's own worker does with the result of resume().
void io_scheduler::run(caf::resumable* job) {
  io_execution_unit unit(system(), *this);  // two pointers: cheaper than a lookup
  switch (job->resume(&unit, max_throughput())) {
    case caf::resumable::resume_later:
      enqueue(job);  // keeps its reference: it stays in the loop
      break;
    case caf::resumable::done:
    case caf::resumable::awaiting_message:
      caf::intrusive_ptr_release(job);
      break;
    case caf::resumable::shutdown_execution_unit:
      break;  // only CAF's own shutdown helpers answer this; none are sent here
  }
}

void io_scheduler::start() {
  clock_thread_ = std::thread([this] {
    system().thread_started();
    clock_.run_dispatch_loop();
    system().thread_terminates();
  });
  abstract_coordinator::start();
}

void io_scheduler::stop() {
  stop_actors();
  // main() stops the io threads before the actor system (see app/main.cpp): the last
  // jobs (exits of CAF's internal actors) run here, on the stopping thread.
  if (io_.stopped()) {
    io_.restart();
    io_.poll();
  }
  clock_.cancel_dispatch_loop();
  clock_thread_.join();
}

void use_io_scheduler(caf::actor_system_config& config, boost::asio::io_context& io) {
  config.module_factories.push_back([&io](caf::actor_system& system) -> caf::actor_system::module* {
    return new io_scheduler(system, io);
  });
}

}  // namespace wsvisor
