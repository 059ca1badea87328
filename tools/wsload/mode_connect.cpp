// connect: upgrade throughput. Each worker opens an upgrade, closes it cleanly after
// the 101 and starts the next, until the duration ends or --count attempts were made.
#include "connection.hpp"
#include "modes.hpp"
#include "stats.hpp"
#include "upgrade_loop.hpp"

#include <memory>
#include <vector>

namespace wsload {
namespace {

struct ConnectStats {
  Counter attempts{0};
  Counter upgrades{0};
  LatencyHistogram handshake_us;
  CounterMap refusals;
  CounterMap errors;
  std::atomic<std::uint64_t> claimed{0};  // attempts handed out, against --count
  std::atomic<int> active_workers{0};
};

class ConnectWorker final : public UpgradeLoop {
 public:
  ConnectWorker(Runner& runner, ConnectStats& stats)
      : UpgradeLoop(runner, stats.active_workers), stats_(stats) {}

 private:
  bool claim() override {
    return options_.count == 0 || stats_.claimed.fetch_add(1) < options_.count;
  }

  void attempt() override {
    ++stats_.attempts;
    open_upgrade([self = shared_as<ConnectWorker>()](OpenResult result) { self->on_open(result); });
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
      return wait_then_attempt(Clock::now() + std::chrono::milliseconds(10));
    }
    ++stats_.upgrades;
    stats_.handshake_us.record(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - upgrade_started_)
            .count()));
    ws_->async_close(websocket::close_code::normal,
                     [self = shared_as<ConnectWorker>()](boost::system::error_code ec) {
                       if (ec) self->stats_.errors.add(describe("close", ec));
                       self->next();
                     });
  }

  void on_retire() override { ws_.reset(); }

  ConnectStats& stats_;
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
