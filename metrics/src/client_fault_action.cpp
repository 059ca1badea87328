#include "wsvisor/client_fault_action.hpp"

namespace wsvisor {

const char* to_string(client_fault_action a) {
  switch (a) {
    case client_fault_action::stall:
      return "stall";
    case client_fault_action::latency:
      return "latency";
    case client_fault_action::drop:
      return "drop";
    case client_fault_action::close:
      return "close";
    case client_fault_action::reset:
      return "reset";
    case client_fault_action::zombie:
      return "zombie";
    case client_fault_action::restart:
      return "restart";
    case client_fault_action::count_:
      break;
  }
  return "unknown";
}

}  // namespace wsvisor
