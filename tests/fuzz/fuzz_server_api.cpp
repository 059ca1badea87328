// libFuzzer target: the bodies of the gateway's server API (net/src/server_api_protocol.cpp,
// CONTRACT 11.2 and 12.3), POST /api/send and POST /api/disconnect. Any bytes give a
// request within the documented rules or the 400's detail.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "../../net/src/server_api_protocol.hpp"

namespace {

constexpr std::string_view kNode = "n0de01";

void check_target(const wsvisor::api_target& target) {
  using kind = wsvisor::connection_selector::kind;
  const auto& s = target.selector;
  if (s.what == kind::connection) {
    if (!wsvisor::is_connection_id(target.connection)) __builtin_trap();
    if (target.gone != (s.id == 0)) __builtin_trap();
  } else {
    // {"users":[]} is a send to nobody: 200 {"delivered":0}.
    if ((s.what == kind::user && s.users.size() != 1) || s.users.size() > 10000) __builtin_trap();
    for (const auto& user : s.users)
      if (user.empty()) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const auto send = wsvisor::parse_api_send(body, kNode);
  if (const auto* detail = std::get_if<std::string>(&send)) {
    if (detail->empty()) __builtin_trap();
  } else {
    check_target(std::get<wsvisor::api_send_request>(send).target);
  }
  const auto close = wsvisor::parse_api_disconnect(body, kNode);
  if (const auto* detail = std::get_if<std::string>(&close)) {
    if (detail->empty()) __builtin_trap();
  } else {
    const auto& request = std::get<wsvisor::api_disconnect_request>(close);
    check_target(request.target);
    if (request.code < 4000 || request.code > 4999 || request.reason.size() > 123) __builtin_trap();
  }
  return 0;
}
