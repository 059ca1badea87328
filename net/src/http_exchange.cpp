#include "http_exchange.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <wsvisor/config.hpp>  // is_valid_node_id

namespace wsvisor {
namespace http = boost::beast::http;

void http_exchange::answer(http::status status, const boost::json::value& body) const {
  respond(json_response(status, json_text(body), version, keep_alive));
}

void http_exchange::answer_text(http::status status, std::string body) const {
  respond(json_response(status, std::move(body), version, keep_alive));
}

void http_exchange::error(http::status status, const char* code) const {
  respond(json_response(status, error_body(code), version, keep_alive));
}

void http_exchange::bad_request(const std::string& detail) const {
  answer(http::status::bad_request,
         boost::json::object{{"error", "bad_request"}, {"detail", detail}});
}

void http_exchange::admin_bad_request(const std::string& message) const {
  answer(http::status::bad_request, boost::json::object{{"error", message}});
}

std::optional<uint64_t> local_connection_id(std::string_view connection, std::string_view node_id) {
  if (connection.size() <= node_id.size() + 1 || connection.substr(0, node_id.size()) != node_id ||
      connection[node_id.size()] != '.')
    return std::nullopt;
  const auto digits = connection.substr(node_id.size() + 1);
  if (digits.size() > 19) return std::nullopt;
  uint64_t n = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (n == 0) return std::nullopt;
  return n;
}

bool is_connection_id(std::string_view connection) {
  const auto dot = connection.rfind('.');
  if (dot == std::string_view::npos || !is_valid_node_id(connection.substr(0, dot))) return false;
  return local_connection_id(connection, connection.substr(0, dot)).has_value();
}

route_table routes_for_mode(std::string_view mode) {
  route_table routes;
  add_health_endpoints(routes);
  add_dashboard_endpoints(routes);
  add_admin_endpoints(routes);
  const bool hub = mode == "hub";
  add_api_endpoints(routes, hub ? gateway_api::send_and_connections : gateway_api::all);
  if (hub) add_hub_api_endpoints(routes);
  return routes;
}

}  // namespace wsvisor
