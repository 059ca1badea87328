#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/timespan.hpp>

#include "wsvisor/supervision/backoff_policy.hpp"
#include "wsvisor/supervision/child_spec.hpp"
#include "wsvisor/supervision/restart_intensity.hpp"
#include "wsvisor/supervision/restart_strategy.hpp"

namespace wsvisor {

/// Everything a supervisor needs to be spawned: `sys.spawn<supervisor>(spec)`.
struct supervisor_spec {
  /// Name shown in the tree query.
  std::string name;
  restart_strategy strategy = restart_strategy::one_for_one;
  /// Exceeding it stops every child in reverse start order and makes the
  /// supervisor exit with supervision_error::restart_intensity_exceeded.
  restart_intensity intensity;
  /// Optional budget per child. A child that exceeds it is given up (removed,
  /// reported to on_child_removed with
  /// supervision_error::child_restart_budget_exceeded) while the supervisor
  /// and its other children carry on. Meant for dynamic supervisors, whose
  /// children fail independently of each other.
  std::optional<restart_intensity> child_intensity;
  /// Optional delay between a failure and the restart.
  std::optional<backoff_policy> backoff;
  /// Started in this order when the supervisor starts; if one fails to start,
  /// the ones already started are stopped and the supervisor exits with
  /// supervision_error::start_failed.
  std::vector<child_spec> children;
  /// Invoked in the supervisor's context for every restarted child (with the
  /// child's id and new handle), whatever the strategy. Must not block.
  std::function<void(const std::string& child_id, const caf::actor& restarted)> on_restart;
  /// Invoked in the supervisor's context when a child leaves the supervisor
  /// for good: a temporary child or a transient one that exited normally, a
  /// child removed on request, a child given up after its own budget, and
  /// every child when the supervisor itself stops. `reason` is the child's
  /// last exit reason, or child_restart_budget_exceeded. Must not block.
  std::function<void(const std::string& child_id, const caf::error& reason)> on_child_removed;
  /// How long the tree query waits for a supervisor child's own tree.
  caf::timespan tree_query_timeout = std::chrono::seconds(1);
};

}  // namespace wsvisor
