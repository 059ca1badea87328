#include "http_exchange.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

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
