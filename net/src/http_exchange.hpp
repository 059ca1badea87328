// One HTTP request on its way to its endpoint's handler, and the ways to answer it. A
// handler calls respond() exactly once, from any thread (the session posts the answer
// onto its own executor).
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/value.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "http_responses.hpp"
#include "server_api_protocol.hpp"  // connection ids, for the admin and server APIs
#include "server_state.hpp"
#include "wsvisor/http_router.hpp"

namespace wsvisor {

using http_request_message = boost::beast::http::request<boost::beast::http::string_body>;

struct http_exchange {
  std::shared_ptr<const http_request_message> request;
  std::shared_ptr<server_state> state;
  std::string path;
  std::map<std::string, std::string> query;  // percent-decoded
  unsigned version = 11;
  bool keep_alive = true;
  std::function<void(http_response)> respond;
  // Instead of respond(): the connection becomes the dashboard's event stream
  // (event_stream.hpp), holding `slot` of server_state::event_stream_budget.
  std::function<void(pending_handshake slot)> open_event_stream;

  // Helpers that build the common answers (all JSON).
  void answer(boost::beast::http::status status, const boost::json::value& body) const;
  void answer_text(boost::beast::http::status status, std::string body) const;
  void error(boost::beast::http::status status, const char* code) const;
  // 400 {"error":"bad_request","detail":"..."} (the API's form) or {"error":"..."} (the
  // admin API's, v1).
  void bad_request(const std::string& detail) const;
  void admin_bad_request(const std::string& message) const;
};

// /admin/tree's JSON of a node and its children (also the dashboard's snapshot's tree).
boost::json::value tree_json(const tree_node& node);

// The query parameters of a target, percent-decoded; nullopt when malformed.
std::optional<std::map<std::string, std::string>> parse_query(std::string_view target);

// The handlers, by family (net/src/health_endpoints.cpp, admin_api.cpp, server_api.cpp,
// hub_api.cpp); routes_for_mode (server_state.hpp) puts them together.
void add_health_endpoints(route_table& routes);
void add_admin_endpoints(route_table& routes);
// GET /admin/dashboard and its assets, and GET /admin/events (CONTRACT 15), before the
// "/admin/*" catch-all of add_admin_endpoints.
void add_dashboard_endpoints(route_table& routes);
// The gateway's server API (12.3), with the catch-all "/api/*" (404 after the key
// check). In hub mode its /api/disconnect and /api/info would take the paths of
// Centrifugo's methods, which Centrifugo's API clients call: only /api/send and
// /api/connections, which no Centrifugo method has.
enum class gateway_api { all, send_and_connections };
void add_api_endpoints(route_table& routes, gateway_api which);
// Centrifugo's server API (13.6): /api/<method> for every method of hub_call, /api/batch.
void add_hub_api_endpoints(route_table& routes);

}  // namespace wsvisor
