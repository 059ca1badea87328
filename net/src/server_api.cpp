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
#include "server_api_protocol.hpp"
#include "wsvisor/auth.hpp"
#include "wsvisor/build_info.hpp"

namespace wsvisor {
namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

void api_send(http_exchange& call) {
  auto parsed = parse_api_send(call.request->body(), call.state->tree.node_id());
  if (auto* detail = std::get_if<std::string>(&parsed)) return call.bad_request(*detail);
  auto& request = std::get<api_send_request>(parsed);
  auto& payload = request.payload;
  const bool text = request.text;
  const bool gone = request.target.gone;
  const auto& connection = request.target.connection;
  const auto selector = request.target.selector;
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
  auto parsed = parse_api_disconnect(call.request->body(), call.state->tree.node_id());
  if (auto* detail = std::get_if<std::string>(&parsed)) return call.bad_request(*detail);
  auto& request = std::get<api_disconnect_request>(parsed);
  const auto& selector = request.target.selector;
  const auto& connection = request.target.connection;
  const uint16_t code = request.code;
  auto& reason = request.reason;
  if (call.state->config.cluster.enabled())
    return call.state->tree.disconnect_across(
        selector, connection, code, std::move(reason), [call](cluster_delivery d) {
          call.answer(http::status::ok, json::object{{"closed", d.count},
                                                     {"unconfirmed_nodes", d.unconfirmed_nodes}});
        });
  if (request.target.gone) return call.answer(http::status::ok, json::object{{"closed", 0}});
  call.state->tree.disconnect(selector, code, std::move(reason), [call](uint64_t n) {
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
