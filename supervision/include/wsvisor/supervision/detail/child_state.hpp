#pragma once

namespace wsvisor::detail {

enum class child_state {
  /// Its actor is alive and monitored.
  running,
  /// The supervisor sent it an exit message and waits for its down message.
  stopping,
  /// A restart is scheduled (backoff timer or group restart in progress).
  awaiting_restart,
  /// Not running and not to be restarted (a transient child that exited
  /// normally, in a static supervisor).
  stopped,
};

}  // namespace wsvisor::detail
