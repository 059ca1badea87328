// Label values of wsvisor_admissions_rejected_total{reason}: why a WebSocket upgrade was
// refused (CONTRACT section 4).
#pragma once

namespace wsvisor {

enum class reject_reason {
  starting,
  draining,
  rate_limited,
  forbidden_origin,
  unauthorized,
  ip_limit,
  user_limit,
  server_full,
  guard_unavailable,
  handshake_limit,
  count_  // number of values, not a value
};

// The label value: a static string, "unknown" for count_ or a value out of range.
const char* to_string(reject_reason r);

}  // namespace wsvisor
