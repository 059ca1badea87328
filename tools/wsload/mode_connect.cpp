// connect: upgrade throughput. Each worker opens an upgrade, closes it cleanly after
// the 101 and starts the next, until the duration ends or --count attempts were made.
#include "connection.hpp"
#include "modes.hpp"
#include "stats.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <optional>
#include <vector>

namespace wsload {
namespace {

namespace asio = boost::asio;

struct ConnectStats {
  Counter attempts{0};
  Counter upgrades{0};
  LatencyHistogram handshake_us;
  CounterMap refusals;
  CounterMap errors;
  std::atomic<std::uint64_t> claimed{0};  // attempts handed out, against --count
  std::atomic<int> active_workers{0};
};

class ConnectWorker : public std::enable_shared_from_this<ConnectWorker> {
 public:
  ConnectWorker(Runner& runner, ConnectStats& stats)
      : runner_(runner),
        options_(runner.options()),
        stats_(stats),
        strand_(asio::make_strand(runner.io())),
        timer_(strand_) {}

  void start() {
    ++stats_.active_workers;
    asio::post(strand_, [self = shared_from_this()] { self->next(); });
  }

  // At the soft stop: a worker waiting for its pacing slot gives up at once; one in the
  // middle of an attempt finishes it (bounded by --handshake-timeout).
  void stop() {
    asio::post(strand_, [self = shared_from_this()] { self->timer_.cancel(); });
  }

 private:
  void next() {
    if (runner_.stopping()) return finish();
    if (options_.count > 0 && stats_.claimed.fetch_add(1) >= options_.count) return finish();
    wait_until(runner_.next_attempt_slot());
  }

  void wait_until(Clock::time_point when) {
    timer_.expires_at(when);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code) {
      if (self->runner_.stopping()) return self->finish();
      self->attempt();
    });
  }

  void attempt() {
    ws_.emplace(strand_);
    response_ = {};
    configure_websocket(*ws_, options_);
    ++stats_.attempts;
    started_ = Clock::now();
    async_open_websocket(*ws_, runner_, response_,
                         [self = shared_from_this()](OpenResult result) { self->on_open(result); });
  }

  void on_open(const OpenResult& result) {
    if (result.ec) {
      if (result.refused()) {
        stats_.refusals.add(std::to_string(result.status));
        return next();
      }
      stats_.errors.add(describe(result.phase, result.ec));
      // A server that is down fails at once; a short pause keeps that from becoming a
      // busy loop that only measures our own CPU.
      return wait_until(Clock::now() + std::chrono::milliseconds(10));
    }
    ++stats_.upgrades;
    stats_.handshake_us.record(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_).count()));
    ws_->async_close(websocket::close_code::normal,
                     [self = shared_from_this()](boost::system::error_code ec) {
                       if (ec) self->stats_.errors.add(describe("close", ec));
                       self->next();
                     });
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    ws_.reset();
    // The last worker to run out of planned attempts ends the run early.
    if (--stats_.active_workers == 0) runner_.request_stop();
  }

  Runner& runner_;
  const Options& options_;
  ConnectStats& stats_;
  Strand strand_;
  asio::steady_timer timer_;
  std::optional<WsStream> ws_;
  websocket::response_type response_;
  Clock::time_point started_;
  bool finished_ = false;
};

}  // namespace

boost::json::object run_connect(Runner& runner) {
  const Options& options = runner.options();
  ConnectStats stats;
  std::vector<std::shared_ptr<ConnectWorker>> workers;
  for (int i = 0; i < options.connections; ++i) {
    workers.push_back(std::make_shared<ConnectWorker>(runner, stats));
  }
  runner.set_progress_report([&] {
    return std::to_string(stats.upgrades.load()) + " upgrades, " +
           std::to_string(stats.refusals.total()) + " refused, " +
           std::to_string(stats.errors.total()) + " errors";
  });
  for (auto& worker : workers) worker->start();
  runner.run([&] {
    for (auto& worker : workers) worker->stop();
  });

  double window = runner.elapsed_s();
  boost::json::object out;
  out["concurrency"] = options.connections;
  out["count"] = options.count;
  out["attempts"] = stats.attempts.load();
  out["upgrades"] = stats.upgrades.load();
  out["upgrades_per_second"] = window > 0 ? double(stats.upgrades.load()) / window : 0.0;
  out["handshake_latency_us"] = stats.handshake_us.to_json();
  out["refusals"] = stats.refusals.to_json();
  out["errors"] = stats.errors.to_json();
  out["error_count"] = stats.errors.total();
  return out;
}

}  // namespace wsload
