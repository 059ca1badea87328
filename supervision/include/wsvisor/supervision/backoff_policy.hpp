#pragma once

#include <chrono>
#include <functional>

#include <caf/timespan.hpp>

namespace wsvisor {

/// Exponential backoff with jitter between restarts of a child (after Akka's
/// restart-with-backoff). After the n-th consecutive failure (n counts from 0)
/// the restart waits min(min_delay * 2^n, max_delay) * (1 + r * random_factor)
/// with r drawn from [0, 1]. A child that ran for at least `reset_after` before
/// it failed starts again from n = 0.
struct backoff_policy {
  caf::timespan min_delay = std::chrono::milliseconds(10);
  caf::timespan max_delay = std::chrono::seconds(1);
  double random_factor = 0.2;
  caf::timespan reset_after = std::chrono::seconds(10);
  /// Source of r. Empty: a std::mt19937_64 seeded from std::random_device.
  /// Tests inject a fixed function so that delays can be asserted.
  std::function<double()> random;
};

}  // namespace wsvisor
