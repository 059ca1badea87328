// libFuzzer target: the HTTP request edge, the first bytes any client sends. Beast's
// request parser with the server's limits, then what the server asks of a request:
// routing (route_table::match on a table of the server's shape), the upgrade's own
// headers (check_websocket_handshake), identity in each auth.mode (identify, find_token),
// subprotocols, and the client address behind trusted proxies (X-Forwarded-For).
#include <boost/asio/ip/address.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "wsvisor/auth.hpp"
#include "wsvisor/client_address.hpp"
#include "wsvisor/http_router.hpp"

namespace http = boost::beast::http;

namespace {

// The server's limits (net/src/http_session.cpp).
constexpr std::size_t kHeaderLimit = 16 * 1024;
constexpr std::size_t kBodyLimit = 64 * 1024;

const wsvisor::route_table& routes() {
  static const wsvisor::route_table table = [] {
    wsvisor::route_table t;
    const auto add = [&t](std::string path, const char* method, wsvisor::endpoint_family family,
                          wsvisor::endpoint_auth auth) {
      wsvisor::endpoint e;
      e.path = std::move(path);
      if (method) e.methods = {method};
      e.family = family;
      e.auth = auth;
      t.add(std::move(e));
    };
    add("/health/live", "GET", wsvisor::endpoint_family::health, wsvisor::endpoint_auth::none);
    add("/metrics", "GET", wsvisor::endpoint_family::metrics, wsvisor::endpoint_auth::none);
    add("/admin/faults", nullptr, wsvisor::endpoint_family::admin,
        wsvisor::endpoint_auth::admin_token);
    add("/api/send", "POST", wsvisor::endpoint_family::api, wsvisor::endpoint_auth::api_key);
    return t;
  }();
  return table;
}

template <class Name>
std::optional<std::string_view> field(const wsvisor::upgrade_request& request, Name name) {
  const auto it = request.find(name);
  if (it == request.end()) return std::nullopt;
  return std::string_view(it->value().data(), it->value().size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(kHeaderLimit);
  parser.body_limit(kBodyLimit);
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (ec || !parser.is_header_done()) return 0;
  const auto& request = parser.get();

  wsvisor::routing_options options;
  const auto match = routes().match(
      std::string_view(request.method_string().data(), request.method_string().size()),
      std::string_view(request.target().data(), request.target().size()),
      boost::beast::websocket::is_upgrade(request), options);
  if (match.what == wsvisor::route_match::kind::endpoint && !match.found) __builtin_trap();
  wsvisor::target_path(std::string_view(request.target().data(), request.target().size()));
  wsvisor::check_websocket_handshake(field(request, http::field::sec_websocket_version),
                                     field(request, http::field::sec_websocket_key));

  wsvisor::auth_settings auth;
  for (const char* mode : {"none", "header", "jwt"}) {
    auth.mode = mode;
    auth.jwt_secret = "fuzz-secret-0123456789abcdef0123456789";
    const auto who = wsvisor::identify(request, auth, true);
    if (auth.mode == "none" && !who.user.empty()) __builtin_trap();
  }
  wsvisor::find_token(request);
  for (const auto offered : wsvisor::offered_subprotocols(request))
    if (offered.empty()) __builtin_trap();
  wsvisor::select_subprotocol(request);

  static const wsvisor::trusted_proxies proxies({"127.0.0.0/8", "10.0.0.0/8", "::1/128"});
  const auto forwarded = field(request, "X-Forwarded-For").value_or("");
  proxies.client_ip(boost::asio::ip::make_address("127.0.0.1"), forwarded);
  proxies.client_ip(boost::asio::ip::make_address("192.0.2.1"), forwarded);
  return 0;
}
