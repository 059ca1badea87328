// The server API for the backend (CONTRACT 11.2 and 12.3): POST /api/send,
// POST /api/disconnect, GET /api/connections, GET /api/info (in hub mode only the first
// and the third: hub_api.cpp serves Centrifugo's disconnect and info). The key and the
// body limit are checked before a handler runs (http_session.cpp).
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <wsvisor/log.hpp>  // rfc3339

#include <optional>
#include <string>
#include <variant>

#include "http_exchange.hpp"
#include "wsvisor/auth.hpp"
#include "wsvisor/build_info.hpp"

namespace wsvisor {
namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

// Deeper than any body these endpoints take; a deeper document is refused, not parsed.
constexpr unsigned kMaxJsonDepth = 32;
// One /api/send may address this many users at most.
constexpr std::size_t kMaxUsersPerSend = 10000;

// The body as a JSON object, or the 400's detail.
std::variant<json::object, std::string> json_body(const http_exchange& call) {
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  auto parsed = json::parse(call.request->body(), ec, {}, options);
  if (ec) return std::string("the body is not JSON (") + ec.message() + ")";
  if (!parsed.is_object()) return std::string("the body must be a JSON object");
  return std::move(parsed.as_object());
}

// Whom a call addresses: exactly one of "connection", "user" (and, for send, "users").
// Returns the selector, or the 400's detail; `gone`: a connection of another node;
// `connection`: the connection id as given (cluster mode routes it to its node).
std::variant<connection_selector, std::string> selector_of(const json::object& body,
                                                           bool users_allowed,
                                                           const std::string& node_id, bool& gone,
                                                           std::string& connection_text) {
  const auto* connection = body.if_contains("connection");
  const auto* user = body.if_contains("user");
  const auto* users = users_allowed ? body.if_contains("users") : nullptr;
  if ((connection != nullptr) + (user != nullptr) + (users != nullptr) != 1)
    return std::string(users_allowed ? "give exactly one of \"connection\", \"user\", \"users\""
                                     : "give exactly one of \"connection\", \"user\"");
  connection_selector selector;
  if (connection) {
    if (!connection->is_string() || !is_connection_id(connection->as_string()))
      return std::string("\"connection\" must be a connection id, \"<node_id>.<n>\"");
    const auto id = local_connection_id(connection->as_string(), node_id);
    gone = !id;
    connection_text = std::string(connection->as_string());
    selector.what = connection_selector::kind::connection;
    selector.id = id.value_or(0);
  } else if (user) {
    if (!user->is_string() || user->as_string().empty())
      return std::string("\"user\" must be a non-empty string");
    selector.what = connection_selector::kind::user;
    selector.users.emplace_back(user->as_string());
  } else {
    if (!users->is_array()) return std::string("\"users\" must be an array of strings");
    if (users->as_array().size() > kMaxUsersPerSend)
      return std::string("\"users\" holds more than 10000 users");
    selector.what = connection_selector::kind::users;
    for (const auto& u : users->as_array()) {
      if (!u.is_string() || u.as_string().empty())
        return std::string("\"users\" must be an array of non-empty strings");
      selector.users.emplace_back(u.as_string());
    }
  }
  return selector;
}

// Standard base64 (RFC 4648 4), padding required; nullopt when it is not.
std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string urlsafe(text);
  while (!urlsafe.empty() && urlsafe.back() == '=') urlsafe.pop_back();
  if (text.size() - urlsafe.size() > 2) return std::nullopt;
  for (auto& c : urlsafe) {
    if (c == '+')
      c = '-';
    else if (c == '/')
      c = '_';
    else if (c == '-' || c == '_')
      return std::nullopt;  // not of the standard alphabet
  }
  return base64url_decode(urlsafe);
}

void api_send(http_exchange& call) {
  auto parsed = json_body(call);
  if (auto* detail = std::get_if<std::string>(&parsed)) return call.bad_request(*detail);
  const auto& body = std::get<json::object>(parsed);
  bool gone = false;
  std::string connection;
  auto selected = selector_of(body, true, call.state->tree.node_id(), gone, connection);
  if (auto* detail = std::get_if<std::string>(&selected)) return call.bad_request(*detail);
  const auto* data = body.if_contains("data");
  const auto* b64data = body.if_contains("b64data");
  if ((data != nullptr) == (b64data != nullptr))
    return call.bad_request("give exactly one of \"data\" (text) and \"b64data\" (binary)");
  std::string payload;
  const bool text = data != nullptr;
  if (text) {
    if (!data->is_string()) return call.bad_request("\"data\" must be a string");
    payload = std::string(data->as_string());
  } else {
    if (!b64data->is_string()) return call.bad_request("\"b64data\" must be a base64 string");
    auto bytes = base64_decode(b64data->as_string());
    if (!bytes) return call.bad_request("\"b64data\" is not valid base64");
    payload = std::move(*bytes);
  }
  const auto selector = std::get<connection_selector>(selected);
  const bool one_connection = selector.what == connection_selector::kind::connection;
  const bool across = call.state->config.cluster.enabled();
  // On one node a connection of another is gone at once; in cluster mode its node says.
  if (gone && !across) return call.error(http::status::gone, "gone");
  if (payload.size() > call.state->config.limits.send_queue_bytes &&
      payload.size() > call.state->config.server.max_message_bytes)
    return call.bad_request(
        "the message is larger than limits.send_queue_bytes and "
        "server.max_message_bytes");
  if (across) {
    // Every node that holds an addressed connection counts (CONTRACT 14).
    return call.state->tree.send_across(
        selector, connection, std::move(payload), text, [call, one_connection](cluster_delivery d) {
          if (one_connection && (d.gone || (d.count == 0 && d.unconfirmed_nodes == 0)))
            return call.error(http::status::gone, "gone");
          call.answer(http::status::ok, json::object{{"delivered", d.count},
                                                     {"unconfirmed_nodes", d.unconfirmed_nodes}});
        });
  }
  call.state->tree.send_to(selector, std::move(payload), text, [call, one_connection](uint64_t n) {
    if (one_connection && n == 0) return call.error(http::status::gone, "gone");
    call.answer(http::status::ok, json::object{{"delivered", n}});
  });
}

void api_disconnect(http_exchange& call) {
  auto parsed = json_body(call);
  if (auto* detail = std::get_if<std::string>(&parsed)) return call.bad_request(*detail);
  const auto& body = std::get<json::object>(parsed);
  bool gone = false;
  std::string connection;
  auto selected = selector_of(body, false, call.state->tree.node_id(), gone, connection);
  if (auto* detail = std::get_if<std::string>(&selected)) return call.bad_request(*detail);
  uint16_t code = 4003;
  if (const auto* c = body.if_contains("code")) {
    if (!c->is_int64() || c->as_int64() < 4000 || c->as_int64() > 4999)
      return call.bad_request("\"code\" must be an integer from 4000 to 4999");
    code = static_cast<uint16_t>(c->as_int64());
  }
  std::string reason = "api disconnect";
  if (const auto* r = body.if_contains("reason")) {
    // A close frame's reason is at most 123 bytes (RFC 6455 5.5.1).
    if (!r->is_string() || r->as_string().size() > 123)
      return call.bad_request("\"reason\" must be a string of at most 123 bytes");
    reason = std::string(r->as_string());
  }
  if (call.state->config.cluster.enabled())
    return call.state->tree.disconnect_across(
        std::get<connection_selector>(selected), connection, code, std::move(reason),
        [call](cluster_delivery d) {
          call.answer(http::status::ok, json::object{{"closed", d.count},
                                                     {"unconfirmed_nodes", d.unconfirmed_nodes}});
        });
  if (gone) return call.answer(http::status::ok, json::object{{"closed", 0}});
  call.state->tree.disconnect(std::get<connection_selector>(selected), code, std::move(reason),
                              [call](uint64_t n) {
                                call.answer(http::status::ok, json::object{{"closed", n}});
                              });
}

// One entry of /api/connections (CONTRACT 12.3).
json::object connection_json(const std::string& connection, const std::string& user,
                             const std::string& ip, std::chrono::system_clock::time_point opened_at,
                             const std::string& meta) {
  json::object entry;
  entry["connection"] = connection;
  entry["user"] = user;
  entry["ip"] = ip;
  entry["opened_at"] = rfc3339(opened_at);
  // meta was checked as JSON when the connect hook gave it.
  boost::system::error_code ec;
  entry["meta"] = meta.empty() ? json::value(nullptr) : json::parse(meta, ec);
  return entry;
}

void api_connections(http_exchange& call) {
  std::optional<std::string> user;
  if (auto it = call.query.find("user"); it != call.query.end()) user = it->second;
  const auto node = call.state->tree.node_id();
  if (call.state->config.cluster.enabled())
    return call.state->tree.list_across(
        user, [call](std::optional<std::vector<cluster_connection>> all) {
          if (!all) return call.error(http::status::service_unavailable, "cluster_unavailable");
          json::array list;
          for (const auto& c : *all)
            list.push_back(connection_json(c.connection, c.user, c.ip, c.opened_at, c.meta));
          call.answer(http::status::ok, list);
        });
  call.state->tree.list_connections(user, [call, node](std::vector<connection_info> all) {
    json::array list;
    for (const auto& c : all)
      list.push_back(
          connection_json(node + "." + std::to_string(c.id), c.user, c.ip, c.opened_at, c.meta));
    call.answer(http::status::ok, list);
  });
}

void api_info(http_exchange& call) {
  const auto& state = *call.state;
  json::object body;
  body["node"] = state.tree.node_id();
  body["version"] = build_version();
  body["mode"] = state.config.app.mode;
  body["uptime_s"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - state.started_at).count();
  body["connections"] = state.tree.connections();
  call.answer(http::status::ok, body);
}

}  // namespace

void add_api_endpoints(route_table& routes, gateway_api which) {
  const auto api = [&routes](std::string path, const char* method, endpoint_handler handler) {
    routes.add({std::move(path),
                {method},
                endpoint_family::api,
                endpoint_auth::api_key,
                std::move(handler)});
  };
  api("/api/send", "POST", api_send);
  api("/api/connections", "GET", api_connections);
  if (which == gateway_api::all) {
    api("/api/disconnect", "POST", api_disconnect);
    api("/api/info", "GET", api_info);
  }
  routes.add({"/api/*", {}, endpoint_family::api, endpoint_auth::api_key, [](http_exchange& call) {
                call.error(http::status::not_found, "not_found");
              }});
}

}  // namespace wsvisor
