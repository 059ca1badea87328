#include "http_exchange.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <wsvisor/log.hpp>  // rfc3339

#include <openssl/crypto.h>

#include <ctime>
#include <variant>

#include "fault_body.hpp"
#include "wsvisor/http_router.hpp"

namespace wsvisor {
namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out.push_back(' ');
    } else if (text[i] == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int high = hex_value(text[i + 1]);
      const int low = hex_value(text[i + 2]);
      if (high < 0 || low < 0) return std::nullopt;
      out.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

json::value to_json(const connection_info& c) {
  json::object object;
  object["id"] = c.id;
  object["user"] = c.user;
  object["ip"] = c.ip;
  object["opened_at"] = rfc3339(c.opened_at);
  object["last_activity"] = rfc3339(c.last_activity);
  object["state"] = c.state;
  object["restarts"] = c.restarts;
  object["queued_bytes"] = c.queued_bytes;
  return object;
}

std::optional<uint64_t> parse_id(const std::string& text) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  return value;
}

}  // namespace

json::value tree_json(const tree_node& node) {
  json::object object;
  object["name"] = node.name;
  if (!node.strategy.empty()) object["strategy"] = node.strategy;
  object["restarts"] = node.restarts;
  object["state"] = node.state;
  if (node.budget) {
    object["max_restarts"] = node.budget->max_restarts;
    object["window_ms"] = node.budget->window_ms;
    object["restarts_in_window"] = node.budget->in_window;
  }
  if (!node.breaker.empty()) object["breaker"] = node.breaker;  // CONTRACT 11.1
  if (node.inflight) object["inflight"] = *node.inflight;
  if (node.connections) {
    object["connections"] = *node.connections;
  } else if (!node.strategy.empty()) {
    json::array children;
    for (const auto& child : node.children) children.push_back(tree_json(child));
    object["children"] = std::move(children);
  }
  return object;
}

std::optional<std::map<std::string, std::string>> parse_query(std::string_view target) {
  std::map<std::string, std::string> params;
  const auto question = target.find('?');
  if (question == std::string_view::npos) return params;
  std::string_view query = target.substr(question + 1);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    if (!pair.empty()) {
      const auto eq = pair.find('=');
      auto key = percent_decode(pair.substr(0, eq));
      auto value =
          percent_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
      if (!key || !value) return std::nullopt;
      params[*key] = *value;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return params;
}

namespace {

void unavailable(const http_exchange& call) {
  call.error(http::status::service_unavailable, "tree_unavailable");
}

void list_connections(http_exchange& call) {
  std::optional<std::string> user;
  if (auto it = call.query.find("user"); it != call.query.end()) user = it->second;
  call.state->tree.list_connections(
      user, [respond = call, node = call.state->tree.node_id()](std::vector<connection_info> all) {
        json::array list;
        for (const auto& c : all) {
          auto entry = to_json(c);
          entry.as_object()["connection"] = node + "." + std::to_string(c.id);
          list.push_back(std::move(entry));
        }
        respond.answer(http::status::ok, list);
      });
}

void show_tree(http_exchange& call) {
  call.state->tree.tree([call](std::optional<tree_node> root) {
    if (!root) return unavailable(call);
    call.answer(http::status::ok, tree_json(*root));
  });
}

void sweep(http_exchange& call) {
  const auto& params = call.query;
  auto level_param = params.find("level");
  if (level_param == params.end())
    return call.admin_bad_request("level is required: conservative, moderate, aggressive or force");
  const auto level = parse_sweep_level(level_param->second);
  if (!level)
    return call.admin_bad_request("level must be conservative, moderate, aggressive or force");
  sweep_scope scope;
  const bool by_user = params.count("user") > 0;
  const bool by_ip = params.count("ip") > 0;
  if (by_user && by_ip) return call.admin_bad_request("give user or ip, not both");
  if (by_user) {
    scope.what = sweep_scope::kind::user;
    scope.value = params.at("user");
  } else if (by_ip) {
    scope.what = sweep_scope::kind::ip;
    scope.value = params.at("ip");
  }
  call.state->tree.sweep(*level, scope, [call](std::optional<sweep_result> r) {
    if (!r) return unavailable(call);
    json::object body;
    body["level"] = to_string(r->level);
    body["scope"] = r->scope.describe();
    body["evicted"] = {
        {"dead", r->dead}, {"zombie", r->zombie}, {"idle", r->idle}, {"healthy", r->healthy}};
    body["duration_ms"] = static_cast<uint64_t>(r->duration_ms + 0.5);
    call.answer(http::status::ok, body);
  });
}

void close_connections(http_exchange& call) {
  const auto& params = call.query;
  const auto id_param = params.find("id");
  const auto connection_param = params.find("connection");
  const auto user_param = params.find("user");
  const int given = (id_param != params.end()) + (connection_param != params.end()) +
                    (user_param != params.end());
  if (given != 1) return call.admin_bad_request("give exactly one of id=N, connection=C or user=U");
  uint64_t id = 0;
  std::string user;
  if (id_param != params.end()) {
    const auto parsed = parse_id(id_param->second);
    if (!parsed || *parsed == 0) return call.admin_bad_request("id must be a positive integer");
    id = *parsed;
  } else if (connection_param != params.end()) {
    if (!is_connection_id(connection_param->second))
      return call.admin_bad_request("connection must be a connection id, \"<node_id>.<n>\" (" +
                                    call.state->tree.node_id() + ".12 is this node's 12th)");
    const auto parsed = local_connection_id(connection_param->second, call.state->tree.node_id());
    // A connection of another node is not open here: nothing to close.
    if (!parsed) return call.answer(http::status::ok, json::object{{"closed", 0}});
    id = *parsed;
  } else {
    user = user_param->second;
    if (user.empty()) return call.admin_bad_request("user must not be empty");
  }
  call.state->tree.close_connections(id, user, [call](uint64_t closed) {
    call.answer(http::status::ok, json::object{{"closed", closed}});
  });
}

// GET /admin/cluster (CONTRACT 14): the nodes with a lease, as Redis has them.
void show_cluster(http_exchange& call) {
  if (!call.state->config.cluster.enabled())
    return call.error(http::status::not_found, "cluster_off");
  call.state->tree.cluster_nodes([call](std::optional<std::vector<cluster_node_info>> nodes) {
    if (!nodes) return call.error(http::status::service_unavailable, "cluster_unavailable");
    json::array list;
    for (const auto& node : *nodes)
      list.push_back(json::object{{"node_id", node.node_id},
                                  {"lease_expires_at", rfc3339(node.lease_expires_at)},
                                  {"connections", node.connections},
                                  {"draining", node.draining}});
    call.answer(http::status::ok, list);
  });
}

void drain(http_exchange& call) {
  if (call.state->request_drain) call.state->request_drain();
  call.answer_text(http::status::ok, R"({"draining":true})");
}

void faults(http_exchange& call) {
  // Without faults.enabled the endpoint does not exist, whatever the method.
  if (!call.state->config.faults.enabled) return call.error(http::status::not_found, "not_found");
  if (call.request->method() != http::verb::post) {
    auto response = json_response(http::status::method_not_allowed,
                                  error_body("method_not_allowed"), call.version, call.keep_alive);
    response.set(http::field::allow, "POST");
    return call.respond(std::move(response));
  }
  auto parsed = parse_fault(call.request->body());
  if (auto* error = std::get_if<std::string>(&parsed)) return call.admin_bad_request(*error);
  auto fault = std::get<fault_request>(parsed);
  auto& tree = call.state->tree;
  if (fault.connection) {
    // "<node>.<n>": this node's connection n; another node's holds none here.
    if (!is_connection_id(*fault.connection))
      return call.admin_bad_request("\"connection\" must be a connection id, \"<node>.<n>\"");
    const auto local = local_connection_id(*fault.connection, tree.node_id());
    if (!local) return call.answer(http::status::ok, json::object{{"applied", 0}});
    fault.id = *local;
  }
  if (fault.on == fault_request::target::shard && fault.shard_index >= tree.shard_count())
    return call.admin_bad_request("index must be below the number of shards (" +
                                  std::to_string(tree.shard_count()) + ")");
  tree.inject_fault(fault, [call](uint64_t applied) {
    call.answer(http::status::ok, json::object{{"applied", applied}});
  });
}

}  // namespace

void add_admin_endpoints(route_table& routes) {
  const auto admin = [&routes](std::string path, const char* method, endpoint_handler handler) {
    routes.add({std::move(path),
                {method},
                endpoint_family::admin,
                endpoint_auth::admin_token,
                std::move(handler)});
  };
  admin("/admin/connections", "GET", list_connections);
  admin("/admin/tree", "GET", show_tree);
  admin("/admin/sweep", "POST", sweep);
  admin("/admin/close", "POST", close_connections);
  admin("/admin/drain", "POST", drain);
  admin("/admin/cluster", "GET", show_cluster);
  routes.add({"/admin/faults", {}, endpoint_family::admin, endpoint_auth::admin_token, faults});
  // Any other /admin/ path: 404 once the bearer is right (401 before).
  routes.add(
      {"/admin/*", {}, endpoint_family::admin, endpoint_auth::admin_token, [](http_exchange& call) {
         call.error(http::status::not_found, "not_found");
       }});
}

}  // namespace wsvisor
