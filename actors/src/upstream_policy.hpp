// The arithmetic of calls to the backend (CONTRACT 11.1), without actors: what a reply
// means, whether and when to retry, and the breaker. The upstream service owns one
// breaker and asks these functions; tests/unit/test_actors_upstream_policy.cpp drives
// them with explicit times.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>

#include "wsvisor/upstream_labels.hpp"
#include "wsvisor/upstream_port.hpp"

namespace wsvisor {

using upstream_clock = std::chrono::steady_clock;

// What one attempt's reply means.
struct reply_meaning {
  upstream_outcome outcome = upstream_outcome::error;  // if it is the last attempt
  bool retryable = false;                              // connect error, timeout, 502, 503, 504, 429
  bool failure = false;  // counts against the breaker: the backend is not well
};
reply_meaning classify(const upstream_reply& reply);

struct retry_policy {
  unsigned retries = 2;  // attempts after the first
  std::chrono::milliseconds backoff_min{100};
  std::chrono::milliseconds backoff_max{2000};
};

// The wait before the next attempt, after `attempts` attempts, the last of which got
// `reply`; nullopt when there is none (not retryable, or the retries are spent).
// Exponential with jitter: the n-th retry waits min(backoff_min * 2^(n-1), backoff_max),
// half of it fixed and half drawn with `random01` in [0, 1); a 429 waits its
// Retry-After (whole seconds) instead, at most backoff_max.
std::optional<std::chrono::milliseconds> retry_delay(const retry_policy& policy,
                                                     const upstream_reply& reply, unsigned attempts,
                                                     double random01);

// Retry-After of a 429 in whole seconds (delta-seconds form only); nullopt if absent
// or not a number.
std::optional<std::chrono::seconds> retry_after_of(const upstream_reply& reply);

// breaker_failures failed attempts within breaker_window open it for breaker_open; while
// open, requests fail at once; then one request is let through (half open) and its
// result closes or reopens it.
class circuit_breaker {
 public:
  enum class state { closed, open, half_open };

  circuit_breaker(uint64_t failures, std::chrono::milliseconds window,
                  std::chrono::milliseconds open_for)
      : failures_(failures), window_(window), open_for_(open_for) {}

  // Whether a request may go now. The first one after breaker_open is the half-open
  // probe (`probe` set); until its result, no other goes.
  bool allow(upstream_clock::time_point now, bool& probe);
  // One attempt's result. `probe`: it was the half-open probe.
  void record(upstream_clock::time_point now, bool failure, bool probe);
  // The probe ended without an answer (its connection went away): the next request
  // is the probe.
  void abandon_probe() {
    if (state_ == state::half_open) state_ = state::open;
  }

  state current() const { return state_; }

 private:
  const uint64_t failures_;
  const std::chrono::milliseconds window_;
  const std::chrono::milliseconds open_for_;
  state state_ = state::closed;
  std::deque<upstream_clock::time_point> recent_failures_;
  upstream_clock::time_point opened_at_{};
};

const char* to_string(circuit_breaker::state state);

}  // namespace wsvisor
