#include "wsvisor/reject_reason.hpp"

namespace wsvisor {

const char* to_string(reject_reason r) {
  switch (r) {
    case reject_reason::starting:
      return "starting";
    case reject_reason::draining:
      return "draining";
    case reject_reason::rate_limited:
      return "rate_limited";
    case reject_reason::forbidden_origin:
      return "forbidden_origin";
    case reject_reason::unauthorized:
      return "unauthorized";
    case reject_reason::ip_limit:
      return "ip_limit";
    case reject_reason::user_limit:
      return "user_limit";
    case reject_reason::server_full:
      return "server_full";
    case reject_reason::guard_unavailable:
      return "guard_unavailable";
    case reject_reason::handshake_limit:
      return "handshake_limit";
    case reject_reason::rejected:
      return "rejected";
    case reject_reason::upstream_unavailable:
      return "upstream_unavailable";
    case reject_reason::upstream_busy:
      return "upstream_busy";
    case reject_reason::cluster_unavailable:
      return "cluster_unavailable";
    case reject_reason::count_:
      break;
  }
  return "unknown";
}

}  // namespace wsvisor
