#include "wsvisor/supervision/restart_strategy.hpp"
#include "wsvisor/supervision/restart_type.hpp"

namespace wsvisor {

std::string to_string(restart_strategy strategy) {
  switch (strategy) {
    case restart_strategy::one_for_one:
      return "one_for_one";
    case restart_strategy::one_for_all:
      return "one_for_all";
    case restart_strategy::rest_for_one:
      return "rest_for_one";
    case restart_strategy::dynamic:
      return "dynamic";
  }
  return "unknown";
}

std::string to_string(restart_type type) {
  switch (type) {
    case restart_type::permanent:
      return "permanent";
    case restart_type::transient:
      return "transient";
    case restart_type::temporary:
      return "temporary";
  }
  return "unknown";
}

}  // namespace wsvisor
