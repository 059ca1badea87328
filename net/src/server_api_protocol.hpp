// The server API's request bodies (CONTRACT 11.2 and 12.3), read without the actors:
// whom a call addresses, what /api/send sends and how /api/disconnect closes, or the
// 400's detail; and connection ids "<node_id>.<n>". Apart from the endpoints
// (server_api.cpp) so that tests/fuzz/fuzz_server_api.cpp compiles them alone.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "wsvisor/service.hpp"  // connection_selector

namespace wsvisor {

// The number n of a connection id "<node_id>.<n>" of this node; nullopt for another
// node's or a malformed one (section 10).
std::optional<uint64_t> local_connection_id(std::string_view connection, std::string_view node_id);

// Whether `connection` has the shape of any node's connection id: a valid node id
// (cluster.node_id's rule), ".", and a positive integer. Not that shape: a 400; that
// shape but not of this node or not open: nothing there (410, or closed 0).
bool is_connection_id(std::string_view connection);

// Whom a call addresses. `gone`: a connection of another node (or, on one node, one
// that cannot be here); `connection`: the connection id as given (cluster mode routes it
// to its node).
struct api_target {
  connection_selector selector;
  bool gone = false;
  std::string connection;
};

// POST /api/send {"connection"|"user"|"users", "data"|"b64data"}.
struct api_send_request {
  api_target target;
  std::string payload;
  bool text = true;
};

// POST /api/disconnect {"connection"|"user", "code"? (4000-4999, default 4003),
// "reason"? (at most 123 bytes)}.
struct api_disconnect_request {
  api_target target;
  uint16_t code = 4003;
  std::string reason = "api disconnect";
};

// The request, or the 400's detail (which field, what it must be).
std::variant<api_send_request, std::string> parse_api_send(std::string_view body,
                                                           std::string_view node_id);
std::variant<api_disconnect_request, std::string> parse_api_disconnect(std::string_view body,
                                                                       std::string_view node_id);

}  // namespace wsvisor
