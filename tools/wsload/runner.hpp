// The shared frame of every mode: one io_context run by --threads threads, a soft stop
// at --duration (the mode winds down cleanly), a hard deadline --grace later (the
// io_context is stopped whatever is still pending), SIGINT/SIGTERM as an early soft
// stop, pacing of new connection attempts, and (echo) a measuring window that opens
// after the connection ramp and a warm-up.
#pragma once

#include "options.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace wsload {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point from, Clock::time_point to);

class Runner {
 public:
  explicit Runner(const Options& options);
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  boost::asio::io_context& io() { return io_; }
  const Options& options() const { return options_; }

  // Blocks until the mode's work is done after the soft stop, or until the hard
  // deadline. on_soft_stop is called once, from an I/O thread, when the duration ends,
  // on a signal, or when the mode calls request_stop(); it must make every session
  // wind down (it runs concurrently with session handlers on other threads).
  void run(std::function<void()> on_soft_stop);

  // Thread-safe: the mode has finished its planned work (e.g. --count reached).
  void request_stop();
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

  double elapsed_s() const { return seconds_between(start_, Clock::now()); }

  // The measuring window; use_window() before run(). The run then ramps up until the
  // mode calls ramp_done() (at the latest ramp_bound_s after the start), warms up for
  // warmup_s, and only then does --duration start: the soft stop comes at
  // ramp + warmup + duration, and the hard deadline moves out by ramp_bound_s + warmup_s.
  void use_window(double ramp_bound_s, double warmup_s);
  // Thread-safe: every connection of the mode is up or has failed.
  void ramp_done();
  // Thread-safe: the window has opened and the soft stop has not come yet.
  bool measuring() const { return measuring_.load(std::memory_order_acquire); }
  struct Window {
    bool ramp_ended = false;        // by ramp_done() or by the bound (not by an early stop)
    bool ramp_bound_hit = false;    // the bound ended the ramp, not ramp_done()
    double ramp_s = 0;              // start to the end of the ramp (or to the soft stop)
    std::optional<double> start_s;  // start to the window's opening; none if it never did
    double seconds = 0;             // the window's opening to the soft stop
    double cpu_s = 0;               // wsload's own CPU time (all threads) in the window
    // count per second of the window, 0 when it never opened.
    double per_second(std::uint64_t count) const {
      return seconds > 0 ? double(count) / seconds : 0.0;
    }
    // As JSON, in this order: ramp_s, ramp_bound_hit, `all_up_key` (the ramp ended by
    // itself, not by its bound, and `all_up`: every connection connected, or subscribed),
    // warmup_s, start_s (null when the window never opened) and seconds. The mode adds
    // what it counted in the window.
    boost::json::object to_json(const char* all_up_key, bool all_up, double warmup_s) const;
  };
  // After run().
  Window window() const;
  bool hard_deadline_hit() const { return hard_deadline_hit_; }
  bool interrupted() const { return interrupted_; }

  // When the next connection attempt may start, so that all workers together stay at
  // --rate; now when --rate is 0.
  Clock::time_point next_attempt_slot();

  // The source address for the next socket (round-robin over --source-addrs), if any.
  std::optional<boost::asio::ip::address> next_source();
  boost::asio::ip::tcp::endpoint target() const { return target_; }

  // Progress line on stderr unless --quiet.
  void progress(const std::string& line) const;
  // A line printed every second until the soft stop (set before run()).
  void set_progress_report(std::function<std::string()> report) { report_ = std::move(report); }

 private:
  void soft_stop();
  void end_ramp(bool bound_hit);
  void open_window();
  void after(double seconds, std::function<void()> then);
  void watchdog();
  void schedule_report();

  const Options& options_;
  boost::asio::io_context io_;
  boost::asio::strand<boost::asio::io_context::executor_type> control_;
  boost::asio::steady_timer duration_timer_;
  boost::asio::steady_timer report_timer_;
  std::function<std::string()> report_;
  boost::asio::signal_set signals_;
  boost::asio::ip::tcp::endpoint target_;
  std::function<void()> on_soft_stop_;

  Clock::time_point start_ = Clock::now();
  std::atomic<bool> stopping_{false};
  std::atomic<Clock::rep> soft_stop_at_{0};
  bool hard_deadline_hit_ = false;
  bool interrupted_ = false;

  // The window, on the control strand only (but measuring_).
  enum class Phase { ramp, warmup, window };
  bool use_window_ = false;
  double ramp_bound_s_ = 0;
  double warmup_s_ = 0;
  Phase phase_ = Phase::window;
  std::optional<Clock::time_point> ramp_end_;
  bool ramp_bound_hit_ = false;
  std::optional<Clock::time_point> window_start_;
  double window_start_cpu_s_ = 0;
  std::atomic<double> window_end_cpu_s_{-1};  // set at the soft stop
  std::atomic<bool> measuring_{false};

  std::mutex watchdog_mutex_;
  std::condition_variable watchdog_wakeup_;
  bool io_finished_ = false;

  std::mutex pacing_mutex_;
  Clock::time_point next_slot_ = Clock::now();
  std::atomic<std::uint64_t> next_source_index_{0};
};

// The sessions of a mode, one per connection: make(i) is the i-th of `count`.
template <class Make>
auto make_sessions(int count, Make make) {
  std::vector<decltype(make(0))> sessions;
  sessions.reserve(count);
  for (int i = 0; i < count; ++i) sessions.push_back(make(i));
  return sessions;
}

// Starts every session, runs the runner, and at the soft stop calls at_stop (if set, e.g.
// to read a gauge before the sessions wind down) and then stop() on every session.
template <class Session>
void run_sessions(Runner& runner, const std::vector<std::shared_ptr<Session>>& sessions,
                  const std::function<void()>& at_stop = {}) {
  for (auto& session : sessions) session->start();
  runner.run([&] {
    if (at_stop) at_stop();
    for (auto& session : sessions) session->stop();
  });
}

}  // namespace wsload
