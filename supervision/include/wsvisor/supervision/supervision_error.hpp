#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>

namespace caf {
class actor_system_config;
}

namespace wsvisor {

/// Errors of the supervision library: exit reasons of a supervisor and error
/// replies to its requests. Converts to caf::error via make_error, so a down
/// message can be compared directly:
///   down.reason == supervision_error::restart_intensity_exceeded
enum class supervision_error : uint8_t {
  /// The supervisor restarted its children more often than its restart
  /// intensity allows, stopped them all and exited: an escalation to its
  /// parent, as opposed to a normal stop.
  restart_intensity_exceeded = 1,
  /// A start function threw or returned an invalid handle.
  start_failed,
  /// A child exceeded its own restart budget (supervisor_spec::child_intensity)
  /// and was given up; the supervisor carries on. Seen in on_child_removed.
  child_restart_budget_exceeded,
  /// No child with that id or address.
  no_such_child,
  /// A child with that id exists already.
  duplicate_child_id,
  /// The child exists but is not running (waiting for a restart, or a
  /// transient child that finished).
  child_not_running,
  /// The supervisor is stopping and accepts no new children.
  shutting_down,
};

/// The caf::error category of supervision_error.
constexpr caf::atom_value supervision_error_category = caf::atom("supervisor");

std::string to_string(supervision_error error);

caf::error make_error(supervision_error error);

/// Lets the actor system render supervision errors by name in to_string().
void add_supervision_error_category(caf::actor_system_config& config);

}  // namespace wsvisor
