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
  rejected,              // the gateway's connect hook said 401, 403 or 429 (CONTRACT 12.1)
  upstream_unavailable,  // the connect hook failed (error, timeout, bad answer, breaker)
  upstream_busy,         // connect hooks at gateway.connect_concurrency until the deadline
  cluster_unavailable,   // cluster mode, Redis unreachable, on_redis_down = "reject" (14)
  count_                 // number of values, not a value
};

// The label value: a static string, "unknown" for count_ or a value out of range.
const char* to_string(reject_reason r);

}  // namespace wsvisor
