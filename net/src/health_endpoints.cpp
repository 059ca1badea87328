// GET /health/live, /health/ready, /health (CONTRACT section 3) and /metrics (section 6).
#include <boost/json/object.hpp>

#include <prometheus/counter.h>

#include "http_exchange.hpp"

namespace wsvisor {
namespace http = boost::beast::http;

namespace {

const char* readiness_status(const service& tree) {
  if (tree.draining()) return "draining";
  return tree.ready() ? "ready" : "starting";
}

// Alive = this I/O thread answers (we are running) and a round trip through the root
// supervisor comes back within 1 s.
void health_live(http_exchange& call) {
  call.state->tree.ping_root([call](bool answered) {
    call.answer_text(answered ? http::status::ok : http::status::service_unavailable,
                     answered ? R"({"status":"alive"})" : R"({"status":"unresponsive"})");
  });
}

void health_ready(http_exchange& call) {
  const auto& tree = call.state->tree;
  call.answer(tree.ready() ? http::status::ok : http::status::service_unavailable,
              boost::json::object{{"status", readiness_status(tree)}});
}

void health(http_exchange& call) {
  const auto& state = *call.state;
  const auto& limits = state.config.limits;
  boost::json::object body;
  body["status"] = readiness_status(state.tree);
  body["uptime_s"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - state.started_at).count();
  body["connections"] = state.tree.connections();
  body["limits"] = {{"max_connections", limits.max_connections},
                    {"soft_connections", limits.soft_connections},
                    {"max_per_user", limits.max_per_user},
                    {"max_per_ip", limits.max_per_ip}};
  boost::json::object restarts;
  for (int k = 0; k < static_cast<int>(actor_kind::count_); ++k) {
    const auto kind = static_cast<actor_kind>(k);
    restarts[to_string(kind)] = static_cast<uint64_t>(state.stats.actor_restarts(kind).Value());
  }
  body["restarts"] = std::move(restarts);
  const auto cluster = state.tree.cluster();
  body["cluster"] = {
      {"state", cluster.state}, {"node_id", cluster.node_id}, {"nodes", cluster.nodes}};
  call.answer(state.tree.ready() ? http::status::ok : http::status::service_unavailable, body);
}

void metrics_text(http_exchange& call) {
  http_response response{http::status::ok, call.version};
  response.set(http::field::server, "wsvisor");
  response.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  response.keep_alive(call.keep_alive);
  response.body() = call.state->stats.render();
  response.prepare_payload();
  call.respond(std::move(response));
}

}  // namespace

void add_health_endpoints(route_table& routes) {
  routes.add({"/health/live", {"GET"}, endpoint_family::health, endpoint_auth::none, health_live});
  routes.add(
      {"/health/ready", {"GET"}, endpoint_family::health, endpoint_auth::none, health_ready});
  routes.add({"/health", {"GET"}, endpoint_family::health, endpoint_auth::none, health});
  routes.add({"/metrics", {"GET"}, endpoint_family::metrics, endpoint_auth::none, metrics_text});
}

}  // namespace wsvisor
