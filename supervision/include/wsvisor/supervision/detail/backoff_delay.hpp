#pragma once

#include <cstddef>

#include <caf/timespan.hpp>

#include "wsvisor/supervision/backoff_policy.hpp"

namespace wsvisor::detail {

/// The wait before the restart that follows `consecutive_failures` earlier
/// failures (0 for the first): min(min * 2^n, max) * (1 + random01 * factor).
caf::timespan backoff_delay(const backoff_policy& policy, std::size_t consecutive_failures,
                            double random01);

}  // namespace wsvisor::detail
