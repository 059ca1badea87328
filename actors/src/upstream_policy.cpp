#include "upstream_policy.hpp"

#include <algorithm>
#include <cctype>
#include <string>

namespace wsvisor {

reply_meaning classify(const upstream_reply& reply) {
  reply_meaning meaning;
  switch (reply.result) {
    case upstream_reply::outcome::response:
      break;
    case upstream_reply::outcome::connect_error:
      return {upstream_outcome::error, true, true};
    case upstream_reply::outcome::timeout:
      return {upstream_outcome::timeout, true, true};
    case upstream_reply::outcome::too_large:
    case upstream_reply::outcome::malformed:
      // An answer never relayed (CONTRACT 11.1: "a final error"), and a sign of trouble.
      return {upstream_outcome::error, false, true};
    case upstream_reply::outcome::cancelled:
      return {upstream_outcome::cancelled, false, false};
  }
  const unsigned status = reply.status;
  if (status >= 200 && status < 300) return {upstream_outcome::ok, false, false};
  if (status == 429) return {upstream_outcome::rejected, true, false};  // alive, busy
  if (status == 502 || status == 503 || status == 504) return {upstream_outcome::error, true, true};
  if (status >= 500) return {upstream_outcome::error, false, true};
  if (status >= 400) return {upstream_outcome::rejected, false, false};
  // 1xx and 3xx are not answers a hook expects: a final error, the backend itself is up.
  return meaning;
}

std::optional<std::chrono::seconds> retry_after_of(const upstream_reply& reply) {
  const std::string value = reply.header("retry-after");
  if (value.empty() || value.size() > 9 ||
      !std::all_of(value.begin(), value.end(), [](unsigned char c) { return std::isdigit(c); }))
    return std::nullopt;
  return std::chrono::seconds(std::stol(value));
}

std::optional<std::chrono::milliseconds> retry_delay(const retry_policy& policy,
                                                     const upstream_reply& reply, unsigned attempts,
                                                     double random01) {
  if (!classify(reply).retryable || attempts > policy.retries) return std::nullopt;
  if (reply.result == upstream_reply::outcome::response && reply.status == 429) {
    if (const auto after = retry_after_of(reply))
      return std::min<std::chrono::milliseconds>(*after, policy.backoff_max);
  }
  // attempts >= 1: the first retry waits backoff_min.
  auto full = policy.backoff_min;
  for (unsigned i = 1; i < attempts && full < policy.backoff_max; ++i) full *= 2;
  full = std::min(full, policy.backoff_max);
  const auto half = full / 2;
  return half + std::chrono::milliseconds(static_cast<int64_t>(
                    static_cast<double>((full - half).count()) * std::clamp(random01, 0.0, 1.0)));
}

bool circuit_breaker::allow(upstream_clock::time_point now, bool& probe) {
  probe = false;
  switch (state_) {
    case state::closed:
      return true;
    case state::open:
      if (now - opened_at_ < open_for_) return false;
      state_ = state::half_open;
      probe = true;
      return true;
    case state::half_open:
      return false;  // the probe is out
  }
  return false;
}

void circuit_breaker::record(upstream_clock::time_point now, bool failure, bool probe) {
  if (probe) {
    if (failure) {
      state_ = state::open;
      opened_at_ = now;
    } else {
      state_ = state::closed;
      recent_failures_.clear();
    }
    return;
  }
  // Results of requests sent before the breaker opened change nothing while it is open.
  if (state_ != state::closed || !failure) return;
  recent_failures_.push_back(now);
  while (!recent_failures_.empty() && now - recent_failures_.front() >= window_)
    recent_failures_.pop_front();
  if (recent_failures_.size() >= failures_) {
    state_ = state::open;
    opened_at_ = now;
    recent_failures_.clear();
  }
}

const char* to_string(circuit_breaker::state state) {
  switch (state) {
    case circuit_breaker::state::closed:
      return "closed";
    case circuit_breaker::state::open:
      return "open";
    case circuit_breaker::state::half_open:
      return "half_open";
  }
  return "closed";
}

}  // namespace wsvisor
