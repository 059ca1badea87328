#include "wsvisor/eviction_reason.hpp"

namespace wsvisor {

const char* to_string(eviction_reason r) {
  switch (r) {
    case eviction_reason::zombie:
      return "zombie";
    case eviction_reason::idle:
      return "idle";
    case eviction_reason::lifetime:
      return "lifetime";
    case eviction_reason::slow_consumer:
      return "slow_consumer";
    case eviction_reason::emergency:
      return "emergency";
    case eviction_reason::drain:
      return "drain";
    case eviction_reason::admin:
      return "admin";
    case eviction_reason::count_:
      break;
  }
  return "unknown";
}

}  // namespace wsvisor
