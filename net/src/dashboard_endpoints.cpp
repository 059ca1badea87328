// The dashboard (CONTRACT 15): its page and assets, served without a bearer (they hold
// no data) wherever /admin/* is served, and /admin/events, its feed, with one.
#include <boost/beast/http/field.hpp>

#include "http_exchange.hpp"
#include "wsvisor/dashboard_assets.hpp"

namespace wsvisor {
namespace http = boost::beast::http;

namespace {

// The page runs nothing it did not get from this server, and cannot be framed.
constexpr const char* kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

endpoint_handler serve_asset(std::string name) {
  return [name = std::move(name)](http_exchange& call) {
    // Without an admin token the admin API does not exist (CONTRACT 7), nor its page.
    if (call.state->config.admin.token.empty())
      return call.error(http::status::not_found, "not_found");
    const auto* asset = find_dashboard_asset(name);
    if (!asset) return call.error(http::status::not_found, "not_found");
    http_response response(http::status::ok, call.version);
    response.set(http::field::content_type, asset->content_type);
    response.set(http::field::cache_control, "no-cache");
    response.set("Content-Security-Policy", kContentSecurityPolicy);
    response.set("X-Content-Type-Options", "nosniff");
    response.set("Referrer-Policy", "no-referrer");
    response.set("X-Frame-Options", "DENY");
    response.body().assign(asset->body.data(), asset->body.size());
    response.prepare_payload();
    response.keep_alive(call.keep_alive);
    call.respond(std::move(response));
  };
}

void open_events(http_exchange& call) {
  if (call.request->method() == http::verb::head) {
    http_response response(http::status::ok, call.version);
    response.set(http::field::content_type, "text/event-stream; charset=utf-8");
    response.keep_alive(call.keep_alive);
    return call.respond(std::move(response));
  }
  const auto& budget = call.state->event_stream_budget;
  if (!budget->try_take())
    return call.answer(http::status::service_unavailable,
                       boost::json::object{{"error", "too_many_streams"},
                                           {"detail", "at most " + std::to_string(budget->limit()) +
                                                          " dashboards may read /admin/events at "
                                                          "once: close another one"}});
  call.open_event_stream(pending_handshake(budget));
}

}  // namespace

void add_dashboard_endpoints(route_table& routes) {
  const auto page = [&routes](std::string path, std::string asset) {
    routes.add({std::move(path),
                {"GET"},
                endpoint_family::admin,
                endpoint_auth::none,
                serve_asset(std::move(asset))});
  };
  page("/admin/dashboard", "index.html");
  page("/admin/dashboard/app.js", "app.js");
  page("/admin/dashboard/app.css", "app.css");
  routes.add(
      {"/admin/events", {"GET"}, endpoint_family::admin, endpoint_auth::admin_token, open_events});
}

}  // namespace wsvisor
