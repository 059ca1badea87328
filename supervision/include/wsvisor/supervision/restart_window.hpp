#pragma once

#include <deque>

#include <caf/actor_clock.hpp>

#include "wsvisor/supervision/restart_intensity.hpp"

namespace wsvisor {

/// Sliding window of restart times that decides whether one more restart
/// stays within a restart intensity. Holds at most max_restarts + 1 entries.
/// Supervisors use one for themselves and, with child_intensity, one per
/// child; anything else that restarts in place (a connection's handler) can
/// use it too.
class restart_window {
 public:
  using time_point = caf::actor_clock::time_point;

  explicit restart_window(restart_intensity limit) : limit_(limit) {}

  /// Records a restart at `now`; returns false if it exceeds the intensity.
  bool admit(time_point now);
  /// Restarts within the window ending at `now` (what the budget has spent).
  std::size_t in_window(time_point now) const;
  const restart_intensity& limit() const { return limit_; }

 private:
  /// Whether a restart at `at` still counts against the budget at `now`.
  bool counts_at(time_point at, time_point now) const { return now - at < limit_.period; }
  restart_intensity limit_;
  std::deque<time_point> recent_;
};

}  // namespace wsvisor
