// Which handler answers an HTTP request (CONTRACT sections 3, 7, 11.2): a table of
// endpoints, one entry each (path, methods, the family that decides on which listener
// it is served, and who may call it), plus the WebSocket path. Matching is pure, so the
// table is unit-tested on its own (tests/unit/test_net_routing.cpp).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsvisor {

// Where a request arrived.
enum class listener_role { main, admin, api };

// Which listeners serve an endpoint: health everywhere; metrics and admin on the admin
// listener when admin.listen is set (else on the main one); api on the api listener
// when api.listen is set (else on the main one).
enum class endpoint_family { health, metrics, admin, api };

// Who may call it: anyone, the bearer of admin.token (404 without one), the holder of
// api.key (404 without one).
enum class endpoint_auth { none, admin_token, api_key };

struct http_exchange;  // the request being answered (net/src/http_exchange.hpp)
using endpoint_handler = std::function<void(http_exchange&)>;

struct endpoint {
  std::string path;                  // exact
  std::vector<std::string> methods;  // "GET" also answers HEAD
  endpoint_family family = endpoint_family::health;
  endpoint_auth auth = endpoint_auth::none;
  endpoint_handler handler;
};

struct routing_options {
  std::string_view ws_path = "/ws";
  bool admin_elsewhere = false;  // admin.listen is set
  bool api_elsewhere = false;    // api.listen is set
  listener_role listener = listener_role::main;
};

struct route_match {
  enum class kind { endpoint, websocket, upgrade_required, not_found, method_not_allowed };
  kind what = kind::not_found;
  const endpoint* found = nullptr;  // with kind::endpoint
  std::string allow;                // with kind::method_not_allowed: "GET, HEAD" or "POST"
};

class route_table {
 public:
  void add(endpoint e) { endpoints_.push_back(std::move(e)); }

  // `target` may carry a query string; only the path decides. The WebSocket path (main
  // listener only): an upgrade GET is `websocket`, anything else `upgrade_required`
  // (426), or 405 for a method other than GET and HEAD.
  route_match match(std::string_view method, std::string_view target, bool is_upgrade,
                    const routing_options& options) const;

  const std::vector<endpoint>& endpoints() const { return endpoints_; }

 private:
  std::vector<endpoint> endpoints_;
};

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
