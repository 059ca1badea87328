#include "upgrade_loop.hpp"

#include <boost/asio/post.hpp>

namespace wsload {

namespace asio = boost::asio;

UpgradeLoop::UpgradeLoop(Runner& runner, std::atomic<int>& active_workers)
    : runner_(runner),
      options_(runner.options()),
      strand_(asio::make_strand(runner.io())),
      timer_(strand_),
      active_workers_(active_workers) {}

void UpgradeLoop::start() {
  ++active_workers_;
  asio::post(strand_, [self = shared_from_this()] { self->next(); });
}

void UpgradeLoop::stop() {
  asio::post(strand_, [self = shared_from_this()] { self->timer_.cancel(); });
}

void UpgradeLoop::next() {
  if (runner_.stopping() || !claim()) return retire();
  wait_then_attempt(runner_.next_attempt_slot());
}

void UpgradeLoop::wait_then_attempt(Clock::time_point when) {
  timer_.expires_at(when);
  timer_.async_wait([self = shared_from_this()](boost::system::error_code) {
    if (self->runner_.stopping()) return self->retire();
    self->attempt();
  });
}

void UpgradeLoop::open_upgrade(std::function<void(OpenResult)> done) {
  ws_.emplace(strand_);
  response_ = {};
  configure_websocket(*ws_, options_);
  upgrade_started_ = Clock::now();
  async_open_websocket(*ws_, runner_, response_, std::move(done));
}

void UpgradeLoop::retire() {
  if (retired_) return;
  retired_ = true;
  on_retire();
  // The last worker to run out of planned attempts ends the run early.
  if (--active_workers_ == 0) runner_.request_stop();
}

}  // namespace wsload
