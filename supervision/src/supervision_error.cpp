#include "wsvisor/supervision/supervision_error.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/message.hpp>

namespace wsvisor {

std::string to_string(supervision_error error) {
  switch (error) {
    case supervision_error::restart_intensity_exceeded:
      return "restart_intensity_exceeded";
    case supervision_error::start_failed:
      return "start_failed";
    case supervision_error::child_restart_budget_exceeded:
      return "child_restart_budget_exceeded";
    case supervision_error::no_such_child:
      return "no_such_child";
    case supervision_error::duplicate_child_id:
      return "duplicate_child_id";
    case supervision_error::child_not_running:
      return "child_not_running";
    case supervision_error::shutting_down:
      return "shutting_down";
  }
  return "unknown";
}

caf::error make_error(supervision_error error) {
  return caf::error{static_cast<uint8_t>(error), supervision_error_category};
}

void add_supervision_error_category(caf::actor_system_config& config) {
  // Not add_error_category<T>(): that template does not compile in 0.17.6.
  config.add_error_category(
      supervision_error_category, [](uint8_t code, caf::atom_value, const caf::message&) {
        return "supervisor: " + to_string(static_cast<supervision_error>(code));
      });
}

}  // namespace wsvisor
