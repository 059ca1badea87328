// The body of POST /admin/faults (CONTRACT 8) read into a fault_request, or the error
// the caller answers 400 with: every field checked before anything is applied, so that
// a bad body changes nothing.
#pragma once

#include <string>
#include <variant>

#include "wsvisor/admin.hpp"

namespace wsvisor {

// A fault_request, or the text of the 400's {"error"}: which field, which values.
std::variant<fault_request, std::string> parse_fault(const std::string& body);

}  // namespace wsvisor
