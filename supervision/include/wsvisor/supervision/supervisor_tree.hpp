#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>

#include "wsvisor/supervision/child_status.hpp"
#include "wsvisor/supervision/restart_intensity.hpp"
#include "wsvisor/supervision/restart_strategy.hpp"

namespace wsvisor {

/// Answer to the tree query (supervisor_tree_atom): a snapshot for the admin
/// API.
struct supervisor_tree {
  std::string name;
  restart_strategy strategy = restart_strategy::one_for_one;
  /// Child restarts this supervisor performed since it started.
  std::size_t restarts = 0;
  /// The restart budget, and the restarts within its window now: one more than
  /// the budget allows and the supervisor gives up.
  restart_intensity intensity;
  std::size_t restarts_in_window = 0;
  /// Children in start order; empty for a dynamic supervisor, which reports
  /// only the counts below.
  std::vector<child_status> children;
  /// Children the supervisor holds, running or waiting for a restart.
  std::size_t child_count = 0;
  std::size_t running_count = 0;
};

}  // namespace wsvisor

// Sent locally only.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::supervisor_tree)
