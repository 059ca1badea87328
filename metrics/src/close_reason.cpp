#include "wsvisor/close_reason.hpp"

namespace wsvisor {

const char* to_string(close_reason r) {
  switch (r) {
    case close_reason::client:
      return "client";
    case close_reason::zombie:
      return "zombie";
    case close_reason::idle:
      return "idle";
    case close_reason::lifetime:
      return "lifetime";
    case close_reason::slow_consumer:
      return "slow_consumer";
    case close_reason::rate_limit:
      return "rate_limit";
    case close_reason::evicted:
      return "evicted";
    case close_reason::drain:
      return "drain";
    case close_reason::admin:
      return "admin";
    case close_reason::protocol_error:
      return "protocol_error";
    case close_reason::restart_budget:
      return "restart_budget";
    case close_reason::shard_down:
      return "shard_down";
    case close_reason::handshake_failed:
      return "handshake_failed";
    case close_reason::api:
      return "api";
    case close_reason::application:
      return "application";
    case close_reason::node_lost:
      return "node_lost";
    case close_reason::count_:
      break;
  }
  return "unknown";
}

}  // namespace wsvisor
