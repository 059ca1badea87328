#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_clock.hpp>
#include <caf/response_promise.hpp>

#include "wsvisor/supervision/child_spec.hpp"
#include "wsvisor/supervision/detail/child_state.hpp"
#include "wsvisor/supervision/restart_window.hpp"

namespace wsvisor::detail {

/// What a supervisor knows about one child.
struct child_record {
  explicit child_record(child_spec child) : spec(std::move(child)) {}

  child_spec spec;
  /// Strong handle while running or stopping: an actor nobody references
  /// would die as unreachable.
  caf::actor handle;
  child_state state = child_state::stopped;
  /// Bumped whenever a scheduled timer for this child must be ignored when it
  /// fires (caf's delayed_send cannot be cancelled).
  uint64_t generation = 0;
  std::size_t restarts = 0;
  caf::actor_clock::time_point started_at{};
  /// Failures in a row, for the backoff delay.
  std::size_t consecutive_failures = 0;
  /// Only with supervisor_spec::child_intensity.
  std::optional<restart_window> own_restarts;
  /// Counted by the stop sequence step that waits for this child.
  bool awaited_by_stop_step = false;
  /// Forget the child once it is down (a removal request).
  bool remove_when_down = false;
  std::vector<caf::response_promise> removal_waiters;
};

}  // namespace wsvisor::detail
