#pragma once

#include <functional>
#include <string>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/local_actor.hpp>

#include "wsvisor/supervision/child_kind.hpp"
#include "wsvisor/supervision/restart_type.hpp"
#include "wsvisor/supervision/shutdown_policy.hpp"

namespace wsvisor {

/// How to start, restart and stop one child of a supervisor.
struct child_spec {
  /// Spawns the child and returns its handle. Receives the supervisor so that
  /// the child can be spawned from it (`supervisor.spawn(...)`) or be handed
  /// the supervisor's address. Called again on every restart. Returning an
  /// invalid handle or throwing counts as a failed start.
  using start_function = std::function<caf::actor(caf::local_actor& supervisor)>;

  /// Unique among the supervisor's children. Dynamic children may leave it
  /// empty; they can then only be removed by their actor address.
  std::string id;
  start_function start;
  restart_type restart = restart_type::permanent;
  shutdown_policy shutdown = shutdown_policy::after(std::chrono::seconds(5));
  child_kind kind = child_kind::worker;
};

}  // namespace wsvisor

// Sent locally only, in the add-child message; std::function is not serializable.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::child_spec)
