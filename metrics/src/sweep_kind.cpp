#include "wsvisor/sweep_kind.hpp"

namespace wsvisor {

const char* to_string(sweep_kind k) {
  switch (k) {
    case sweep_kind::periodic:
      return "periodic";
    case sweep_kind::emergency:
      return "emergency";
    case sweep_kind::admin:
      return "admin";
    case sweep_kind::count_:
      break;
  }
  return "unknown";
}

}  // namespace wsvisor
