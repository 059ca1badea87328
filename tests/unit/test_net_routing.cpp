// The HTTP routing table of CONTRACT section 3 (route_request, target_path): every
// endpoint, the WebSocket path with and without an upgrade, methods, query strings and
// the split between the main and the admin listener (admin.listen); the API's endpoints
// of each app.mode (the gateway's in echo and gateway mode, Centrifugo's in hub mode).
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "../../net/src/http_exchange.hpp"
#include "wsvisor/http_router.hpp"

using wsvisor::route_match;
using wsvisor::routing_options;
using wsvisor::target_path;

namespace {

// What answers: an endpoint's path ("/health/live", the catch-all "/admin/*"), or the
// kind of answer (doctest prints enums as integers).
std::string name(const route_match& match) {
  switch (match.what) {
    case route_match::kind::endpoint:
      return match.found->path;
    case route_match::kind::websocket:
      return "websocket";
    case route_match::kind::upgrade_required:
      return "upgrade_required";
    case route_match::kind::not_found:
      return "not_found";
    case route_match::kind::method_not_allowed:
      return "method_not_allowed";
  }
  return "?";
}

const wsvisor::route_table& table() {
  static const auto routes = wsvisor::routes_for_mode("echo");
  return routes;
}

const wsvisor::route_table& hub_table() {
  static const auto routes = wsvisor::routes_for_mode("hub");
  return routes;
}

std::string with(std::string_view method, std::string_view target,
                 const routing_options& options = {}) {
  return name(table().match(method, target, false, options));
}

std::string in_hub(std::string_view method, std::string_view target,
                   const routing_options& options = {}) {
  return name(hub_table().match(method, target, false, options));
}

// The paths of a table's API endpoints, in the table's order.
std::vector<std::string> api_paths(const wsvisor::route_table& routes) {
  std::vector<std::string> paths;
  for (const auto& e : routes.endpoints())
    if (e.family == wsvisor::endpoint_family::api) paths.push_back(e.path);
  return paths;
}

std::string get(std::string_view target, const routing_options& options = {}) {
  return with("GET", target, options);
}

std::string upgrade(std::string_view target, const routing_options& options = {}) {
  return name(table().match("GET", target, true, options));
}

routing_options main_listener_with_admin_elsewhere() {
  routing_options options;
  options.admin_elsewhere = true;
  return options;
}

routing_options admin_listener() {
  routing_options options;
  options.admin_elsewhere = true;
  options.listener = wsvisor::listener_role::admin;
  return options;
}

}  // namespace

TEST_CASE("target_path drops the query string and nothing else") {
  CHECK(target_path("/ws") == "/ws");
  CHECK(target_path("/ws?token=abc") == "/ws");
  CHECK(target_path("/ws?") == "/ws");
  CHECK(target_path("/health/live?a=1&b=2") == "/health/live");
  CHECK(target_path("/a?b?c") == "/a");
  CHECK(target_path("") == "");
  CHECK(target_path("?x=1") == "");
}

TEST_CASE("GET of each health endpoint and /metrics") {
  CHECK(get("/health/live") == "/health/live");
  CHECK(get("/health/ready") == "/health/ready");
  CHECK(get("/health") == "/health");
  CHECK(get("/metrics") == "/metrics");
}

TEST_CASE("HEAD is answered like GET on the read-only endpoints") {
  CHECK(with("HEAD", "/health/live") == "/health/live");
  CHECK(with("HEAD", "/health/ready") == "/health/ready");
  CHECK(with("HEAD", "/health") == "/health");
  CHECK(with("HEAD", "/metrics") == "/metrics");
}

TEST_CASE("the WebSocket path: upgrade -> websocket, no upgrade -> 426") {
  CHECK(upgrade("/ws") == "websocket");
  CHECK(get("/ws") == "upgrade_required");
  CHECK(with("HEAD", "/ws") == "upgrade_required");
  // An upgrade must be a GET (RFC 6455 section 4.1).
  CHECK(name(table().match("POST", "/ws", true, {})) == "method_not_allowed");
  CHECK(with("POST", "/ws") == "method_not_allowed");
  CHECK(with("DELETE", "/ws") == "method_not_allowed");
}

TEST_CASE("a custom ws_path replaces /ws") {
  routing_options options;
  options.ws_path = "/socket/v1";
  CHECK(upgrade("/socket/v1", options) == "websocket");
  CHECK(get("/socket/v1", options) == "upgrade_required");
  CHECK(upgrade("/ws", options) == "not_found");
  CHECK(get("/ws", options) == "not_found");
  CHECK(upgrade("/socket/v1/", options) == "not_found");
  CHECK(upgrade("/socket", options) == "not_found");
  // The other endpoints are unaffected.
  CHECK(get("/health/ready", options) == "/health/ready");
  CHECK(get("/metrics", options) == "/metrics");
}

TEST_CASE("query strings are ignored for routing") {
  CHECK(upgrade("/ws?token=abc.def.ghi") == "websocket");
  CHECK(get("/ws?token=abc") == "upgrade_required");
  CHECK(get("/health/live?verbose=1") == "/health/live");
  CHECK(get("/health/ready?x") == "/health/ready");
  CHECK(get("/health?") == "/health");
  CHECK(get("/metrics?name[]=wsvisor_ready") == "/metrics");
  CHECK(get("/admin/connections?user=alice") == "/admin/connections");
  CHECK(get("/nope?/health") == "not_found");
}

TEST_CASE("unknown paths answer 404, whatever the method") {
  CHECK(get("/") == "not_found");
  CHECK(get("/healthz") == "not_found");
  CHECK(get("/health/") == "not_found");
  CHECK(get("/health/live/") == "not_found");
  CHECK(get("/health/other") == "not_found");
  CHECK(get("/metrics/") == "not_found");
  CHECK(get("/Metrics") == "not_found");
  CHECK(get("/ws/") == "not_found");
  CHECK(get("/wss") == "not_found");
  CHECK(get("/administrator") == "not_found");
  CHECK(get("") == "not_found");
  CHECK(get("*") == "not_found");
  CHECK(upgrade("/chat") == "not_found");
  CHECK(with("POST", "/nowhere") == "not_found");
  CHECK(with("DELETE", "/") == "not_found");
}

TEST_CASE("a wrong method on a known path answers 405") {
  CHECK(with("POST", "/health/live") == "method_not_allowed");
  CHECK(with("PUT", "/health/ready") == "method_not_allowed");
  CHECK(with("DELETE", "/health") == "method_not_allowed");
  CHECK(with("PUT", "/metrics") == "method_not_allowed");
  CHECK(with("POST", "/metrics") == "method_not_allowed");
  CHECK(with("OPTIONS", "/metrics") == "method_not_allowed");
  // Methods are case-sensitive (RFC 9110 section 9.1).
  CHECK(with("get", "/health/live") == "method_not_allowed");
}

TEST_CASE("each admin endpoint is one entry with its method, other /admin paths a catch-all") {
  CHECK(get("/admin/connections") == "/admin/connections");
  CHECK(get("/admin/tree") == "/admin/tree");
  CHECK(with("POST", "/admin/sweep?level=moderate") == "/admin/sweep");
  CHECK(with("POST", "/admin/close?id=3") == "/admin/close");
  CHECK(with("POST", "/admin/drain") == "/admin/drain");
  CHECK(with("POST", "/admin/faults") == "/admin/faults");
  CHECK(with("POST", "/admin/tree") == "method_not_allowed");
  CHECK(get("/admin/drain") == "method_not_allowed");
  // The catch-all answers 404 after the bearer check (a wrong bearer is told 401).
  CHECK(get("/admin") == "/admin/*");
  CHECK(get("/admin/unknown/deeper") == "/admin/*");
}

TEST_CASE("the server API: its endpoints, and api.listen moves them off the main port") {
  CHECK(with("POST", "/api/send") == "/api/send");
  CHECK(with("POST", "/api/disconnect") == "/api/disconnect");
  CHECK(get("/api/connections?user=u") == "/api/connections");
  CHECK(get("/api/info") == "/api/info");
  CHECK(get("/api/send") == "method_not_allowed");
  CHECK(get("/api/other") == "/api/*");
  routing_options elsewhere;
  elsewhere.api_elsewhere = true;
  CHECK(with("POST", "/api/send", elsewhere) == "not_found");
  CHECK(get("/health", elsewhere) == "/health");
  elsewhere.listener = wsvisor::listener_role::api;
  CHECK(with("POST", "/api/send", elsewhere) == "/api/send");
  CHECK(get("/health/live", elsewhere) == "/health/live");
  CHECK(get("/metrics", elsewhere) == "not_found");
  CHECK(upgrade("/ws", elsewhere) == "not_found");
}

TEST_CASE("echo and gateway mode serve the same endpoints, the gateway's API") {
  const auto gateway = wsvisor::routes_for_mode("gateway");
  CHECK(api_paths(gateway) == api_paths(table()));
  CHECK(api_paths(table()) == std::vector<std::string>{"/api/send", "/api/connections",
                                                       "/api/disconnect", "/api/info", "/api/*"});
  CHECK(gateway.endpoints().size() == table().endpoints().size());
  // An application of its own (embedding) gets them too: only "hub" differs.
  CHECK(api_paths(wsvisor::routes_for_mode("my-app")) == api_paths(table()));
  CHECK(with("POST", "/api/publish") == "/api/*");
  CHECK(with("POST", "/api/batch") == "/api/*");
}

TEST_CASE("hub mode: Centrifugo's API, each method one POST endpoint") {
  for (const char* method :
       {"publish", "broadcast", "subscribe", "unsubscribe", "disconnect", "refresh", "presence",
        "presence_stats", "history", "history_remove", "channels", "info", "batch"}) {
    const std::string path = std::string("/api/") + method;
    CAPTURE(path);
    CHECK(in_hub("POST", path) == path);
    CHECK(in_hub("GET", path) == "method_not_allowed");
    CHECK(hub_table().match("GET", path, false, {}).allow == "POST");
    CHECK(in_hub("POST", path + "/") == "/api/*");
  }
  // The gateway's /api/send and /api/connections stay (no Centrifugo method has their
  // paths); its /api/disconnect and GET /api/info give way to Centrifugo's.
  CHECK(in_hub("POST", "/api/send") == "/api/send");
  CHECK(in_hub("GET", "/api/connections?user=u") == "/api/connections");
  CHECK(in_hub("GET", "/api/info") == "method_not_allowed");
  // One entry per path: no endpoint hides another.
  auto paths = api_paths(hub_table());
  CHECK(paths.size() == 16);  // 12 methods, batch, send, connections, the catch-all
  std::sort(paths.begin(), paths.end());
  CHECK(std::adjacent_find(paths.begin(), paths.end()) == paths.end());
  for (const auto& e : hub_table().endpoints())
    if (e.family == wsvisor::endpoint_family::api) {
      CAPTURE(e.path);
      CHECK(e.auth == wsvisor::endpoint_auth::api_key);
    }
  // A method Centrifugo does not have: the catch-all (404 after the key check).
  CHECK(in_hub("POST", "/api/nope") == "/api/*");
  CHECK(in_hub("POST", "/api/rpc") == "/api/*");
  CHECK(in_hub("POST", "/api") == "/api/*");
  // The other families are the same as in every mode.
  CHECK(in_hub("GET", "/health/ready") == "/health/ready");
  CHECK(in_hub("GET", "/metrics") == "/metrics");
  CHECK(in_hub("POST", "/admin/drain") == "/admin/drain");
  routing_options centrifugo_path;
  centrifugo_path.ws_path = "/connection/websocket";
  CHECK(name(hub_table().match("GET", "/connection/websocket", true, centrifugo_path)) ==
        "websocket");
}

TEST_CASE("hub mode: api.listen moves Centrifugo's API off the main port") {
  routing_options elsewhere;
  elsewhere.api_elsewhere = true;
  CHECK(in_hub("POST", "/api/publish", elsewhere) == "not_found");
  CHECK(in_hub("POST", "/api/batch", elsewhere) == "not_found");
  elsewhere.listener = wsvisor::listener_role::api;
  CHECK(in_hub("POST", "/api/publish", elsewhere) == "/api/publish");
  CHECK(in_hub("POST", "/api/batch", elsewhere) == "/api/batch");
  CHECK(in_hub("POST", "/api/disconnect", elsewhere) == "/api/disconnect");
}

TEST_CASE("admin_elsewhere: the main listener answers 404 for /metrics and /admin/*") {
  const auto options = main_listener_with_admin_elsewhere();
  CHECK(get("/metrics", options) == "not_found");
  CHECK(with("HEAD", "/metrics", options) == "not_found");
  CHECK(with("PUT", "/metrics", options) == "not_found");
  CHECK(get("/admin", options) == "not_found");
  CHECK(get("/admin/connections", options) == "not_found");
  CHECK(with("POST", "/admin/drain", options) == "not_found");
  // Everything else is still served on the main port.
  CHECK(get("/health/live", options) == "/health/live");
  CHECK(get("/health/ready", options) == "/health/ready");
  CHECK(get("/health", options) == "/health");
  CHECK(upgrade("/ws", options) == "websocket");
  CHECK(get("/ws", options) == "upgrade_required");
}

TEST_CASE("admin_elsewhere: the admin listener serves /metrics, /admin/* and /health/*") {
  const auto options = admin_listener();
  CHECK(get("/metrics", options) == "/metrics");
  CHECK(with("PUT", "/metrics", options) == "method_not_allowed");
  CHECK(get("/admin", options) == "/admin/*");
  CHECK(get("/admin/tree", options) == "/admin/tree");
  CHECK(with("POST", "/admin/drain", options) == "/admin/drain");
  CHECK(get("/health/live", options) == "/health/live");
  CHECK(get("/health/ready", options) == "/health/ready");
  CHECK(get("/health", options) == "/health");
  // The admin port accepts no WebSocket upgrades.
  CHECK(upgrade("/ws", options) == "not_found");
  CHECK(get("/ws", options) == "not_found");
  CHECK(get("/other", options) == "not_found");
}

TEST_CASE("check_websocket_handshake: RFC 6455 4.2.1 key and version") {
  using wsvisor::check_websocket_handshake;
  using wsvisor::handshake_check;
  const std::string_view good_key = "dGhlIHNhbXBsZSBub25jZQ==";  // RFC 6455's example
  CHECK(check_websocket_handshake("13", good_key) == handshake_check::ok);
  CHECK(check_websocket_handshake(" 13 ", good_key) == handshake_check::ok);
  // The key: present, and the base64 of 16 bytes.
  CHECK(check_websocket_handshake("13", std::nullopt) == handshake_check::bad_key);
  CHECK(check_websocket_handshake("13", "") == handshake_check::bad_key);
  CHECK(check_websocket_handshake("13", "short==") == handshake_check::bad_key);
  CHECK(check_websocket_handshake("13", "dGhlIHNhbXBsZSBub25jZQ") == handshake_check::bad_key);
  CHECK(check_websocket_handshake("13", "dGhlIHNhbXBsZSBub25j!Q==") == handshake_check::bad_key);
  CHECK(check_websocket_handshake("13", "dGhlIHNhbXBsZSBub25jZQ==dGhl") ==
        handshake_check::bad_key);
  // The version: 13 only.
  CHECK(check_websocket_handshake(std::nullopt, good_key) == handshake_check::no_version);
  for (const char* other : {"8", "14", "", "13, 8", "12"})
    CHECK(check_websocket_handshake(other, good_key) == handshake_check::bad_version);
}

TEST_CASE("connection ids: this node's number, any node's shape") {
  using wsvisor::is_connection_id;
  using wsvisor::local_connection_id;
  CHECK(local_connection_id("ws-eu-1.12", "ws-eu-1") == 12u);
  CHECK_FALSE(local_connection_id("ws-eu-2.12", "ws-eu-1"));
  CHECK_FALSE(local_connection_id("ws-eu-1.0", "ws-eu-1"));
  CHECK_FALSE(local_connection_id("ws-eu-1.1x", "ws-eu-1"));
  CHECK_FALSE(local_connection_id("ws-eu-1.", "ws-eu-1"));
  CHECK_FALSE(local_connection_id("ws-eu-1.99999999999999999999", "ws-eu-1"));
  for (const char* shaped : {"ws-eu-2.12", "a.1", "vm-bb4a52.9999999999999999999"}) {
    CAPTURE(shaped);
    CHECK(is_connection_id(shaped));
  }
  for (const char* malformed : {"", "12", "not-an-id", ".12", "node.", "node.0", "Node.1",
                                "-node.1", "node.1.2x", "node..1", "node.-1"}) {
    CAPTURE(malformed);
    CHECK_FALSE(is_connection_id(malformed));
  }
}
