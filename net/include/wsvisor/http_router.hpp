// Which handler answers an HTTP request (CONTRACT section 3), decided from the method,
// the target and whether it asks for a WebSocket upgrade. Pure, so it is unit-tested
// on its own.
#pragma once

#include <optional>
#include <string_view>

namespace wsvisor {

enum class route {
  health_live,
  health_ready,
  health,
  metrics,
  websocket,           // an upgrade request on server.ws_path
  upgrade_required,    // server.ws_path without an upgrade: 426
  admin,               // /admin/* (the admin API decides further)
  not_found,           // 404
  method_not_allowed,  // 405
};

struct routing_options {
  std::string_view ws_path = "/ws";
  // When admin.listen names a separate address, the main port answers 404 for
  // /metrics and /admin/*, and the admin port serves only those (and /health/*).
  bool admin_elsewhere = false;
  bool is_admin_listener = false;
};

// `target` may carry a query string; only the path decides.
route route_request(std::string_view method, std::string_view target, bool is_upgrade,
                    const routing_options& options);

// The path of a request target, without "?query".
std::string_view target_path(std::string_view target);

// An upgrade request's own headers (RFC 6455 4.2.1): a Sec-WebSocket-Key that is the
// base64 of 16 bytes, and Sec-WebSocket-Version 13. A bad key is answered 400, a
// missing version 400 and another version 426, both with Sec-WebSocket-Version: 13.
// nullopt: the header is absent.
enum class handshake_check { ok, bad_key, no_version, bad_version };
handshake_check check_websocket_handshake(std::optional<std::string_view> version,
                                          std::optional<std::string_view> key);

}  // namespace wsvisor
