#include "wsvisor/supervision/detail/backoff_delay.hpp"

#include <algorithm>

namespace wsvisor::detail {

caf::timespan backoff_delay(const backoff_policy& policy, std::size_t consecutive_failures,
                            double random01) {
  if (policy.min_delay <= caf::timespan{0}) return caf::timespan{0};
  // Doubling stops at the cap, so a long run of failures cannot overflow.
  auto capped = policy.min_delay;
  for (std::size_t i = 0; i < consecutive_failures && capped < policy.max_delay; ++i) capped *= 2;
  capped = std::min(capped, std::max(policy.max_delay, policy.min_delay));
  auto jitter = 1.0 + std::clamp(random01, 0.0, 1.0) * std::max(policy.random_factor, 0.0);
  return caf::timespan{
      static_cast<caf::timespan::rep>(static_cast<double>(capped.count()) * jitter)};
}

}  // namespace wsvisor::detail
