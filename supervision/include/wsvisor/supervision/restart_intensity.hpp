#pragma once

#include <chrono>
#include <cstddef>

#include <caf/timespan.hpp>

namespace wsvisor {

/// At most `max_restarts` restarts within any window of length `period`; the
/// restart beyond that exceeds the intensity. The defaults are Erlang/OTP's.
struct restart_intensity {
  std::size_t max_restarts = 1;
  caf::timespan period = std::chrono::seconds(5);
};

}  // namespace wsvisor
