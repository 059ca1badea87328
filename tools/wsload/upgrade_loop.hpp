// The worker loop that connect and storm share: claim the next attempt, wait for its
// pacing slot (--rate), run it, and retire when there is nothing left to claim or at the
// soft stop; the last of a mode's workers to retire ends the run early. A worker lives on
// its own strand; the upgrade itself (a fresh Beast stream each time) is here too.
#pragma once

#include "connection.hpp"

#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>

namespace wsload {

class UpgradeLoop : public std::enable_shared_from_this<UpgradeLoop> {
 public:
  // active_workers counts the mode's workers that have started and not yet retired.
  UpgradeLoop(Runner& runner, std::atomic<int>& active_workers);
  UpgradeLoop(const UpgradeLoop&) = delete;
  UpgradeLoop& operator=(const UpgradeLoop&) = delete;
  virtual ~UpgradeLoop() = default;

  void start();
  // At the soft stop: a worker waiting for its pacing slot (or a pause) gives up at once;
  // one in the middle of an attempt finishes it (bounded by --handshake-timeout).
  void stop();

 protected:
  // Claims the next attempt; false when the mode's plan is used up (the worker retires).
  virtual bool claim() = 0;
  // Runs the claimed attempt, which ends in next() or wait_then_attempt().
  virtual void attempt() = 0;
  // Called once when the worker retires.
  virtual void on_retire() {}

  // Retires at the soft stop or when claim() fails, else runs attempt() in the next
  // pacing slot.
  void next();
  // Runs attempt() at `when`, or retires if the soft stop comes first.
  void wait_then_attempt(Clock::time_point when);
  // A fresh stream in ws_, TCP connect and upgrade; upgrade_started_ is set just before
  // the connect.
  void open_upgrade(std::function<void(OpenResult)> done);

  template <class Derived>
  std::shared_ptr<Derived> shared_as() {
    return std::static_pointer_cast<Derived>(shared_from_this());
  }

  Runner& runner_;
  const Options& options_;
  Strand strand_;
  boost::asio::steady_timer timer_;
  std::optional<WsStream> ws_;
  websocket::response_type response_;
  Clock::time_point upgrade_started_;

 private:
  void retire();

  std::atomic<int>& active_workers_;
  bool retired_ = false;
};

}  // namespace wsload
