// storm: reconnect churn. A fixed plan of cycles, each one of three kinds: clean
// (upgrade, close handshake), abort (half an upgrade request, then FIN) and reset
// (upgrade, then RST), run --concurrency at a time.
#include "connection.hpp"
#include "modes.hpp"
#include "stats.hpp"
#include "upgrade_loop.hpp"

#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <optional>
#include <random>
#include <vector>

namespace wsload {
namespace {

namespace asio = boost::asio;

enum class CycleKind : std::uint8_t { clean, abort, reset };
constexpr std::array<const char*, 3> kKindNames = {"clean", "abort", "reset"};

// Exact counts per kind (rounded), in random order, so every run with the same flags
// does the same amount of each kind.
std::vector<CycleKind> plan_cycles(const Options& options) {
  auto total = options.cycles;
  auto aborts = static_cast<std::uint64_t>(std::llround(options.abort_fraction * total));
  auto resets = std::min<std::uint64_t>(
      total - aborts, static_cast<std::uint64_t>(std::llround(options.reset_fraction * total)));
  std::vector<CycleKind> plan(total, CycleKind::clean);
  std::fill_n(plan.begin(), aborts, CycleKind::abort);
  std::fill_n(plan.begin() + aborts, resets, CycleKind::reset);
  std::shuffle(plan.begin(), plan.end(), std::mt19937_64{std::random_device{}()});
  return plan;
}

struct StormStats {
  std::vector<CycleKind> plan;
  std::atomic<std::uint64_t> next_cycle{0};
  std::atomic<int> active_workers{0};
  std::array<Counter, 3> done{};
  Counter attempted{0};
  Counter refused{0};
  CounterMap refusals;
  CounterMap errors;
};

class StormWorker final : public UpgradeLoop {
 public:
  StormWorker(Runner& runner, StormStats& stats)
      : UpgradeLoop(runner, stats.active_workers), stats_(stats) {}

 private:
  bool claim() override {
    auto index = stats_.next_cycle.fetch_add(1);
    if (index >= stats_.plan.size()) return false;
    kind_ = stats_.plan[index];
    return true;
  }

  void attempt() override {
    ++stats_.attempted;
    if (kind_ == CycleKind::abort) return run_abort();
    run_upgrade();
  }

  void cycle_done() {
    ++stats_.done[static_cast<int>(kind_)];
    next();
  }

  void cycle_failed(const std::string& phase, boost::system::error_code ec) {
    stats_.errors.add(std::string(kKindNames[static_cast<int>(kind_)]) + " " + describe(phase, ec));
    // The cycle is spent; a short pause keeps a dead server from causing a busy loop.
    timer_.expires_after(std::chrono::milliseconds(10));
    timer_.async_wait(
        [self = shared_as<StormWorker>()](boost::system::error_code) { self->next(); });
  }

  // TCP connect, the first half of the upgrade request, then an orderly close: the
  // server is left with a handshake that will never complete.
  void run_abort() {
    tcp_.emplace(strand_);
    async_open_tcp(*tcp_, runner_, [self = shared_as<StormWorker>()](boost::system::error_code ec) {
      if (ec) return self->cycle_failed("connect", ec);
      self->request_ = upgrade_request(self->options_);
      asio::async_write(self->tcp_->socket(),
                        asio::buffer(self->request_.data(), self->request_.size() / 2),
                        [self](boost::system::error_code ec, std::size_t) {
                          boost::system::error_code ignored;
                          self->tcp_->socket().close(ignored);
                          if (ec) return self->cycle_failed("write", ec);
                          self->cycle_done();
                        });
    });
  }

  void run_upgrade() {
    open_upgrade(
        [self = shared_as<StormWorker>()](OpenResult result) { self->on_upgrade(result); });
  }

  void on_upgrade(const OpenResult& result) {
    if (result.ec) {
      if (!result.refused()) return cycle_failed(result.phase, result.ec);
      ++stats_.refused;
      stats_.refusals.add(std::to_string(result.status));
      return next();
    }
    if (kind_ == CycleKind::reset) {
      abortive_close(beast::get_lowest_layer(*ws_).socket());
      return cycle_done();
    }
    ws_->async_close(websocket::close_code::normal,
                     [self = shared_as<StormWorker>()](boost::system::error_code ec) {
                       if (ec) return self->cycle_failed("close", ec);
                       self->cycle_done();
                     });
  }

  StormStats& stats_;
  CycleKind kind_ = CycleKind::clean;
  std::optional<beast::tcp_stream> tcp_;
  std::string request_;
};

}  // namespace

boost::json::object run_storm(Runner& runner) {
  const Options& options = runner.options();
  StormStats stats;
  stats.plan = plan_cycles(options);
  std::array<std::uint64_t, 3> planned{};
  for (auto kind : stats.plan) ++planned[static_cast<int>(kind)];

  std::vector<std::shared_ptr<StormWorker>> workers;
  auto worker_count = std::min<std::uint64_t>(options.concurrency, options.cycles);
  for (std::uint64_t i = 0; i < worker_count; ++i) {
    workers.push_back(std::make_shared<StormWorker>(runner, stats));
  }
  runner.set_progress_report([&] {
    std::uint64_t done = 0;
    for (auto& count : stats.done) done += count.load();
    return std::to_string(done) + "/" + std::to_string(options.cycles) + " cycles, " +
           std::to_string(stats.errors.total()) + " errors";
  });
  for (auto& worker : workers) worker->start();
  runner.run([&] {
    for (auto& worker : workers) worker->stop();
  });

  boost::json::object planned_json;
  boost::json::object done_json;
  std::uint64_t done_total = 0;
  for (int kind = 0; kind < 3; ++kind) {
    planned_json[kKindNames[kind]] = planned[kind];
    done_json[kKindNames[kind]] = stats.done[kind].load();
    done_total += stats.done[kind].load();
  }
  double window = runner.elapsed_s();
  boost::json::object out;
  out["cycles"] = options.cycles;
  out["concurrency"] = options.concurrency;
  out["cycles_planned"] = planned_json;
  out["cycles_attempted"] = stats.attempted.load();
  out["cycles_done"] = done_json;
  out["cycles_done_total"] = done_total;
  out["cycles_refused"] = stats.refused.load();
  out["cycles_per_second"] = window > 0 ? double(stats.attempted.load()) / window : 0.0;
  out["completed"] = stats.attempted.load() == options.cycles;
  out["refusals"] = stats.refusals.to_json();
  out["errors"] = stats.errors.to_json();
  out["error_count"] = stats.errors.total();
  return out;
}

}  // namespace wsload
