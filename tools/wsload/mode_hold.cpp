// hold: many idle connections held open for the duration. Each keeps a read pending so
// that Beast answers the server's pings; what ends a connection early is recorded.
#include "modes.hpp"
#include "stats.hpp"
#include "ws_session.hpp"

#include <memory>
#include <vector>

namespace wsload {
namespace {

struct HoldStats : WsSessionStats {
  Counter closed_at_end{0};
  Counter messages_received{0};
  DurationSamples time_to_server_close_s;
};

class HoldSession : public WsSession {
 public:
  HoldSession(Runner& runner, HoldStats& stats) : WsSession(runner, stats), stats_(stats) {}

 private:
  void on_established() override { established_at_ = Clock::now(); }

  void on_message() override {
    ++stats_.messages_received;
    buffer_.consume(buffer_.size());
    read_next();
  }

  void on_ended(bool by_server) override {
    if (by_server) {
      stats_.time_to_server_close_s.add(seconds_between(established_at_, Clock::now()));
    } else {
      ++stats_.closed_at_end;
    }
  }

  HoldStats& stats_;
  Clock::time_point established_at_;
};

}  // namespace

boost::json::object run_hold(Runner& runner) {
  const Options& options = runner.options();
  HoldStats stats;
  auto sessions = make_sessions(options.connections,
                                [&](int) { return std::make_shared<HoldSession>(runner, stats); });
  runner.set_progress_report([&] {
    return std::to_string(stats.open.value()) + " open, " + std::to_string(stats.failed.load()) +
           " failed, " + std::to_string(stats.closed_by_server.load()) + " closed by the server";
  });
  std::int64_t open_at_end = 0;
  run_sessions(runner, sessions, [&] { open_at_end = stats.open.value(); });

  boost::json::object out;
  out["connections"] = options.connections;
  out["established"] = stats.established.load();
  out["failed"] = stats.failed.load();
  out["peak"] = stats.open.peak();
  out["open_at_end"] = open_at_end;
  out["closed_at_end"] = stats.closed_at_end.load();
  out["closed_by_server"] = stats.closed_by_server.load();
  out["close_codes"] = stats.close_codes.to_json();
  out["time_to_server_close_s"] = stats.time_to_server_close_s.to_json();
  out["messages_received"] = stats.messages_received.load();
  out["refusals"] = stats.refusals.to_json();
  out["errors"] = stats.errors.to_json();
  out["error_count"] = stats.errors.total();
  return out;
}

}  // namespace wsload
