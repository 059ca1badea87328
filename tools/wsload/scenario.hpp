// Scenarios of `wsload reconnect --scenario FILE`: while the reconnecting population runs,
// wsload plays faults on the server's admin API (POST /admin/faults) at set times, and
// the report breaks the run into one window per fault.
//
// The file is line-based:
//
//   # rolling restart of 5,000 clients
//   connections 5000
//   users 500
//   duration 60s
//   at 10s fault {"action":"restart","target":"client","spread":"10s"}
//   at 40s fault {"action":"clear"}
//
// - A line whose first non-blank character is '#' is a comment; blank lines are skipped.
//   Comments are whole lines only (a fault's JSON may hold a '#').
// - Header lines, `<key> <value>`, set the run's defaults; the same option given on the
//   command line wins. They come before the first `at` line, each key at most once:
//     connections N          --connections
//     users K                --users
//     duration T             --duration
//     message-interval T     --message-interval-ms
//     silence-timeout T      --silence-timeout-ms (0s = off)
//     lost-after T           --lost-after-ms
//     rate R                 --rate (first connects per second)
// - `at <T> fault <JSON object>`: at T after the start, POST the JSON (sent verbatim) to
//   /admin/faults. The times must increase from one line to the next and stay below
//   the run's duration.
// - T is a number with a unit: 250ms, 10s, 1.5m.
//
// The window of a fault runs from its time to the next fault's (or to the end of the
// run); a close, and the reconnect that follows it, count in the window where the close
// happened, a message in the window where it was sent. What happens before the first
// fault is the window "before_faults".
#pragma once

#include "runner.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace wsload {

// A header line: the option it stands for and its value in that option's own unit, so
// that options.cpp applies it through the same code as the command line.
struct ScenarioSetting {
  int line = 0;
  std::string key;
  std::string flag;   // "--connections"
  std::string value;  // "5000"; a time already converted, e.g. "60" for --duration
};

struct ScenarioFault {
  int line = 0;
  double at_s = 0;
  std::string body;            // sent as written
  boost::json::value request;  // the same, parsed, for the report
  std::string action;          // its "action" when it is a string, else empty
};

struct Scenario {
  std::string path;
  std::vector<ScenarioSetting> settings;
  std::vector<ScenarioFault> faults;
  // The faults' times in the file's order (ascending): window k > 0 starts at the k-th.
  std::vector<double> fault_times() const;
};

// "FILE:LINE: what is wrong" (or "FILE: ..." when the file cannot be read).
struct ScenarioError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

Scenario load_scenario(const std::string& path);
Scenario parse_scenario(const std::string& text, const std::string& path);

// The index of the window that `elapsed_s` falls in: 0 before the first fault, k in the
// window of the k-th fault (1-based).
std::size_t window_index(const std::vector<double>& fault_times, double elapsed_s);

// What the server answered one fault.
struct FaultAnswer {
  bool sent = false;  // false: the run ended before the fault's time
  double sent_at_s = 0;
  double latency_ms = 0;
  int status = 0;  // 0: no HTTP answer, `error` says why
  std::optional<std::int64_t> applied;
  std::string error;  // the server's {"error"}, or what kept the answer from coming
  boost::json::object to_json() const;
  // "200 applied 1", "400 unknown action 'stall'", "no answer: connect: Connection refused"
  std::string summary() const;
};

// Sends the scenario's faults one after the other at their times, each over a fresh
// HTTP/1.1 connection (Connection: close) to --host and --admin-port, with
// Authorization: Bearer <--admin-token or $WSVISOR_ADMIN_TOKEN>. A fault whose time has
// come while the previous one still waits for its answer goes out right after it: the
// server applies them in the file's order. Each exchange is bounded by
// --handshake-timeout. Everything runs on the player's own strand.
class FaultPlayer : public std::enable_shared_from_this<FaultPlayer> {
 public:
  FaultPlayer(Runner& runner, const Scenario& scenario);

  // Before runner.run(): the times count from the runner's start.
  void start();
  // At the soft stop: faults not yet due are not sent (an exchange under way finishes).
  void stop();
  // After runner.run().
  const std::vector<FaultAnswer>& answers() const { return answers_; }

 private:
  void wait_for(std::size_t index);
  void send(std::size_t index);

  Runner& runner_;
  const Scenario& scenario_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::steady_timer timer_;
  std::string token_;
  std::vector<FaultAnswer> answers_;
  bool stopping_ = false;
};

// The admin token of a scenario run: --admin-token, else $WSVISOR_ADMIN_TOKEN, else empty.
std::string admin_token(const Options& options);

}  // namespace wsload
