#pragma once

#include <caf/timespan.hpp>

namespace wsvisor {

/// How a supervisor stops one of its children: it sends the child an exit
/// message with caf::exit_reason::user_shutdown, waits for its down message up
/// to `timeout`, and then sends caf::exit_reason::kill (which a child cannot
/// trap). `brutal_kill` skips the polite exit message.
struct shutdown_policy {
  enum class mode { timeout, brutal_kill, infinity };

  mode how = mode::timeout;
  caf::timespan timeout = caf::timespan{0};

  /// Asks the child to exit and kills it if it is still alive after `grace`.
  static shutdown_policy after(caf::timespan grace) { return {mode::timeout, grace}; }

  /// Kills the child at once.
  static shutdown_policy brutal_kill() { return {mode::brutal_kill, caf::timespan{0}}; }

  /// Asks the child to exit and waits as long as it takes: meant for children
  /// that are supervisors themselves and stop their own children first.
  static shutdown_policy infinity() { return {mode::infinity, caf::timespan{0}}; }
};

}  // namespace wsvisor
