#pragma once

#include <string>

namespace wsvisor {

/// What a supervisor restarts when one of its children exits and must be
/// restarted (Erlang/OTP supervisor strategies).
enum class restart_strategy {
  /// Restart only the child that exited.
  one_for_one,
  /// Stop every other child (reverse start order), then restart all of them in
  /// start order.
  one_for_all,
  /// Stop the children started after the one that exited (reverse start
  /// order), then restart it and them in start order.
  rest_for_one,
  /// Children are added at run time (like OTP's simple_one_for_one) and each is
  /// restarted on its own. Built for many thousands of children: every add,
  /// remove and exit costs O(log n), the children stop in parallel when the
  /// supervisor stops, and the tree query reports only their number.
  dynamic,
};

std::string to_string(restart_strategy strategy);

}  // namespace wsvisor
