#include "runner.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <csignal>
#include <ctime>
#include <iostream>
#include <sstream>
#include <thread>
#include <vector>

namespace wsload {

namespace asio = boost::asio;

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

namespace {

// CPU time of the whole process, every thread.
double process_cpu_s() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

}  // namespace

Runner::Runner(const Options& options)
    : options_(options),
      io_(options.threads),
      control_(asio::make_strand(io_)),
      duration_timer_(control_),
      report_timer_(control_),
      signals_(control_, SIGINT, SIGTERM),
      target_(asio::ip::make_address(options.host), options.port) {}

void Runner::use_window(double ramp_bound_s, double warmup_s) {
  use_window_ = true;
  ramp_bound_s_ = ramp_bound_s;
  warmup_s_ = warmup_s;
}

void Runner::ramp_done() {
  asio::post(control_, [this] { end_ramp(false); });
}

boost::json::object Runner::Window::to_json(const char* all_up_key, bool all_up,
                                            double warmup_s) const {
  boost::json::object json;
  json["ramp_s"] = ramp_s;
  json["ramp_bound_hit"] = ramp_bound_hit;
  json[all_up_key] = ramp_ended && !ramp_bound_hit && all_up;
  json["warmup_s"] = warmup_s;
  if (start_s) {
    json["start_s"] = *start_s;
  } else {
    json["start_s"] = nullptr;
  }
  json["seconds"] = seconds;
  return json;
}

Runner::Window Runner::window() const {
  Window window;
  auto stopped = soft_stop_at_.load(std::memory_order_acquire);
  auto end = stopped == 0 ? Clock::now() : Clock::time_point(Clock::duration(stopped));
  window.ramp_ended = ramp_end_.has_value();
  window.ramp_bound_hit = ramp_bound_hit_;
  window.ramp_s = seconds_between(start_, ramp_end_.value_or(end));
  if (window_start_) {
    window.start_s = seconds_between(start_, *window_start_);
    window.seconds = seconds_between(*window_start_, end);
    auto end_cpu = window_end_cpu_s_.load(std::memory_order_acquire);
    window.cpu_s = (end_cpu < 0 ? process_cpu_s() : end_cpu) - window_start_cpu_s_;
  }
  return window;
}

// The phases of a window run one after the other on the control strand, all on the
// duration timer. A handler that had already been queued when the timer was set again
// finds the phase moved on and does nothing.
void Runner::after(double seconds, std::function<void()> then) {
  duration_timer_.expires_after(
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds)));
  duration_timer_.async_wait([then = std::move(then)](boost::system::error_code ec) {
    if (!ec) then();
  });
}

void Runner::end_ramp(bool bound_hit) {
  if (stopping() || phase_ != Phase::ramp) return;
  ramp_end_ = Clock::now();
  ramp_bound_hit_ = bound_hit;
  phase_ = Phase::warmup;
  std::ostringstream line;
  line.precision(3);
  line << std::fixed;
  if (bound_hit) {
    line << "ramp bound of " << ramp_bound_s_
         << " s reached before every connection was up or had failed";
  } else {
    line << "ramp over after " << seconds_between(start_, *ramp_end_) << " s";
  }
  line << "; warm-up " << warmup_s_ << " s";
  progress(line.str());
  after(warmup_s_, [this] { open_window(); });
}

void Runner::open_window() {
  if (stopping() || phase_ != Phase::warmup) return;
  window_start_ = Clock::now();
  window_start_cpu_s_ = process_cpu_s();
  phase_ = Phase::window;
  measuring_.store(true, std::memory_order_release);
  std::ostringstream line;
  line.precision(3);
  line << std::fixed << "measuring from " << seconds_between(start_, *window_start_) << " s for "
       << options_.duration_s << " s";
  progress(line.str());
  after(options_.duration_s, [this] { soft_stop(); });
}

void Runner::run(std::function<void()> on_soft_stop) {
  on_soft_stop_ = std::move(on_soft_stop);
  start_ = Clock::now();
  next_slot_ = start_;

  if (use_window_) {
    phase_ = Phase::ramp;
    after(ramp_bound_s_, [this] { end_ramp(true); });
  } else {
    // The window is the whole run.
    ramp_end_ = start_;
    window_start_ = start_;
    window_start_cpu_s_ = process_cpu_s();
    measuring_.store(true, std::memory_order_release);
    after(options_.duration_s, [this] { soft_stop(); });
  }
  signals_.async_wait([this](boost::system::error_code ec, int) {
    if (ec) return;
    interrupted_ = true;
    progress("signal: stopping (a second one ends the process at once)");
    // Back to the default disposition: a pending wait would keep the io_context alive,
    // and a second signal should not wait for the clean closes.
    boost::system::error_code ignored;
    signals_.clear(ignored);
    soft_stop();
  });

  if (report_ && !options_.quiet) schedule_report();

  std::thread watchdog_thread([this] { watchdog(); });
  std::vector<std::thread> workers;
  for (int i = 1; i < options_.threads; ++i) workers.emplace_back([this] { io_.run(); });
  io_.run();
  for (auto& worker : workers) worker.join();
  {
    std::lock_guard lock(watchdog_mutex_);
    io_finished_ = true;
  }
  watchdog_wakeup_.notify_all();
  watchdog_thread.join();
}

// The hard deadline: duration + grace after the start (plus the ramp bound and the
// warm-up with a window), or grace after an early soft stop, whichever comes first.
// Whatever is still pending then is abandoned, so a server that never answers cannot
// keep wsload running.
void Runner::watchdog() {
  auto as_duration = [](double seconds) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  };
  double before_duration = use_window_ ? ramp_bound_s_ + warmup_s_ : 0.0;
  auto absolute = start_ + as_duration(before_duration + options_.duration_s + options_.grace_s);
  std::unique_lock lock(watchdog_mutex_);
  while (!io_finished_) {
    auto deadline = absolute;
    auto stopped = soft_stop_at_.load(std::memory_order_acquire);
    if (stopped != 0) {
      deadline = std::min(
          deadline, Clock::time_point(Clock::duration(stopped)) + as_duration(options_.grace_s));
    }
    if (Clock::now() >= deadline) {
      hard_deadline_hit_ = true;
      progress("hard deadline reached: abandoning what is still open");
      io_.stop();
      return;
    }
    // Wake up at least every 100 ms to notice an early soft stop.
    watchdog_wakeup_.wait_until(lock, std::min(deadline, Clock::now() + as_duration(0.1)));
  }
}

void Runner::schedule_report() {
  report_timer_.expires_after(std::chrono::seconds(1));
  report_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || stopping()) return;
    progress(report_());
    schedule_report();
  });
}

void Runner::request_stop() {
  asio::post(control_, [this] { soft_stop(); });
}

// Runs on the control strand only.
void Runner::soft_stop() {
  if (stopping_.exchange(true, std::memory_order_acq_rel)) return;
  soft_stop_at_.store(Clock::now().time_since_epoch().count(), std::memory_order_release);
  window_end_cpu_s_.store(process_cpu_s(), std::memory_order_release);
  measuring_.store(false, std::memory_order_release);
  duration_timer_.cancel();
  report_timer_.cancel();
  // During the clean closes a signal ends the process at once (default disposition).
  boost::system::error_code ignored;
  signals_.clear(ignored);
  signals_.cancel(ignored);
  if (on_soft_stop_) on_soft_stop_();
}

Clock::time_point Runner::next_attempt_slot() {
  auto now = Clock::now();
  if (options_.rate <= 0) return now;
  std::lock_guard lock(pacing_mutex_);
  // A worker that was idle does not earn a burst: slots never lie in the past.
  auto slot = std::max(now, next_slot_);
  next_slot_ = slot + std::chrono::duration_cast<Clock::duration>(
                          std::chrono::duration<double>(1.0 / options_.rate));
  return slot;
}

std::optional<asio::ip::address> Runner::next_source() {
  if (options_.source_addrs.empty()) return std::nullopt;
  auto index = next_source_index_.fetch_add(1, std::memory_order_relaxed);
  return options_.source_addrs[index % options_.source_addrs.size()];
}

void Runner::progress(const std::string& line) const {
  if (options_.quiet) return;
  // One write per line so that lines from several threads do not interleave.
  std::string text = "wsload " + options_.mode + ": " + line + "\n";
  std::cerr << text << std::flush;
}

}  // namespace wsload
