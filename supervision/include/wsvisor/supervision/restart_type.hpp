#pragma once

#include <string>

namespace wsvisor {

/// When a child that exited on its own is restarted (Erlang/OTP restart types).
enum class restart_type {
  /// Always restarted.
  permanent,
  /// Restarted only after an abnormal exit, that is for any exit reason other
  /// than caf::exit_reason::normal and caf::exit_reason::user_shutdown.
  transient,
  /// Never restarted; removed from the supervisor once it exits.
  temporary,
};

std::string to_string(restart_type type);

}  // namespace wsvisor
