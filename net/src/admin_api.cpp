#include "admin_api.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <openssl/crypto.h>

#include <ctime>
#include <variant>

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

bool token_matches(std::string_view presented, const std::string& token) {
  // Constant time, so that the token cannot be guessed byte by byte from timings.
  return presented.size() == token.size() &&
         CRYPTO_memcmp(presented.data(), token.data(), token.size()) == 0;
}

http_response json_answer(http::status status, const json::value& body, unsigned version) {
  return json_response(status, json::serialize(body), version, true);
}

http_response bad_request(const std::string& message, unsigned version) {
  json::object body;
  body["error"] = message;
  return json_answer(http::status::bad_request, body, version);
}

json::value to_json(const tree_node& node) {
  json::object object;
  object["name"] = node.name;
  if (!node.strategy.empty()) object["strategy"] = node.strategy;
  object["restarts"] = node.restarts;
  if (node.connections) {
    object["connections"] = *node.connections;
  } else if (!node.strategy.empty()) {
    json::array children;
    for (const auto& child : node.children) children.push_back(to_json(child));
    object["children"] = std::move(children);
  }
  return object;
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

// POST /admin/faults body (CONTRACT section 8). Returns an error text or the request.
std::variant<fault_request, std::string> parse_fault(const std::string& body) {
  boost::system::error_code ec;
  const auto parsed = json::parse(body, ec);
  if (ec || !parsed.is_object()) return std::string("body must be a JSON object");
  const auto& object = parsed.as_object();
  const auto* action = object.if_contains("action");
  if (!action || !action->is_string())
    return std::string("\"action\" must be one of crash, poison, delay, clear");
  fault_request fault;
  const std::string what(action->as_string());
  if (what == "crash")
    fault.what = fault_request::action::crash;
  else if (what == "poison")
    fault.what = fault_request::action::poison;
  else if (what == "delay")
    fault.what = fault_request::action::delay;
  else if (what == "clear") {
    fault.what = fault_request::action::clear;
    return fault;
  } else
    return std::string("\"action\" must be one of crash, poison, delay, clear");

  const auto* target = object.if_contains("target");
  if (!target || !target->is_string())
    return std::string("\"target\" must be one of connection, limit_guard, janitor, shard");
  const std::string on(target->as_string());
  if (on == "connection")
    fault.on = fault_request::target::connection;
  else if (on == "limit_guard")
    fault.on = fault_request::target::limit_guard;
  else if (on == "janitor")
    fault.on = fault_request::target::janitor;
  else if (on == "shard")
    fault.on = fault_request::target::shard;
  else
    return std::string("\"target\" must be one of connection, limit_guard, janitor, shard");

  if (fault.on != fault_request::target::connection && fault.what != fault_request::action::crash)
    return std::string("only \"crash\" applies to " + on);
  if (fault.on == fault_request::target::connection) {
    const auto* user = object.if_contains("user");
    const auto* id = object.if_contains("id");
    if (user && user->is_string())
      fault.user = std::string(user->as_string());
    else if (id && id->is_int64() && id->as_int64() > 0)
      fault.id = static_cast<uint64_t>(id->as_int64());
    else if (id && id->is_uint64())
      fault.id = id->as_uint64();
    else
      return std::string("a connection fault needs \"user\" (string) or \"id\" (positive integer)");
  }
  if (fault.on == fault_request::target::shard) {
    if (const auto* index = object.if_contains("index")) {
      if (!index->is_int64() || index->as_int64() < 0)
        return std::string("\"index\" must be a non-negative integer");
      fault.shard_index = static_cast<uint64_t>(index->as_int64());  // range: the caller
    }
  }
  if (fault.what == fault_request::action::delay) {
    const auto* ms = object.if_contains("ms");
    if (!ms || !ms->is_int64() || ms->as_int64() < 1 || ms->as_int64() > 60000)
      return std::string("\"ms\" must be an integer from 1 to 60000");
    fault.delay_ms = static_cast<uint32_t>(ms->as_int64());
  }
  return fault;
}

}  // namespace

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

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const auto since_epoch = t.time_since_epoch();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
  const std::time_t tt = seconds.count();
  std::tm utc{};
  gmtime_r(&tt, &utc);
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(millis));
  return buffer;
}

void handle_admin_request(const admin_request& request, const std::shared_ptr<server_state>& state,
                          std::function<void(http_response)> respond) {
  const unsigned version = request.version();
  const auto& token = state->config.admin.token;
  // Without a token the admin API does not exist (CONTRACT section 7).
  if (token.empty())
    return respond(json_response(http::status::not_found, error_body("not_found"), version, true));
  const auto authorization = request.find(http::field::authorization);
  constexpr std::string_view bearer = "Bearer ";
  const std::string_view presented =
      authorization == request.end()
          ? std::string_view{}
          : std::string_view(authorization->value().data(), authorization->value().size());
  if (presented.substr(0, bearer.size()) != bearer ||
      !token_matches(presented.substr(std::min(presented.size(), bearer.size())), token))
    return respond(
        json_response(http::status::unauthorized, error_body("unauthorized"), version, true));

  const std::string_view target(request.target().data(), request.target().size());
  const std::string_view path = target_path(target);
  const auto params = parse_query(target);
  if (!params) return respond(bad_request("malformed query string", version));
  const bool is_get = request.method() == http::verb::get;
  const bool is_post = request.method() == http::verb::post;
  auto method_not_allowed = [&](const char* allow) {
    auto response = json_response(http::status::method_not_allowed,
                                  error_body("method_not_allowed"), version, true);
    response.set(http::field::allow, allow);
    respond(std::move(response));
  };
  auto unavailable = [respond, version] {
    respond(json_response(http::status::service_unavailable, error_body("tree_unavailable"),
                          version, true));
  };
  auto& tree = state->tree;

  if (path == "/admin/connections") {
    if (!is_get) return method_not_allowed("GET");
    std::optional<std::string> user;
    if (auto it = params->find("user"); it != params->end()) user = it->second;
    return tree.list_connections(user, [respond, version](std::vector<connection_info> all) {
      json::array list;
      for (const auto& c : all) list.push_back(to_json(c));
      respond(json_answer(http::status::ok, list, version));
    });
  }
  if (path == "/admin/tree") {
    if (!is_get) return method_not_allowed("GET");
    return tree.tree([respond, unavailable, version](std::optional<tree_node> root) {
      if (!root) return unavailable();
      respond(json_answer(http::status::ok, to_json(*root), version));
    });
  }
  if (path == "/admin/sweep") {
    if (!is_post) return method_not_allowed("POST");
    auto level_param = params->find("level");
    if (level_param == params->end())
      return respond(
          bad_request("level is required: conservative, moderate, aggressive or force", version));
    const auto level = parse_sweep_level(level_param->second);
    if (!level)
      return respond(
          bad_request("level must be conservative, moderate, aggressive or force", version));
    sweep_scope scope;
    const bool by_user = params->count("user") > 0;
    const bool by_ip = params->count("ip") > 0;
    if (by_user && by_ip) return respond(bad_request("give user or ip, not both", version));
    if (by_user) {
      scope.what = sweep_scope::kind::user;
      scope.value = params->at("user");
    } else if (by_ip) {
      scope.what = sweep_scope::kind::ip;
      scope.value = params->at("ip");
    }
    return tree.sweep(
        *level, scope, [respond, unavailable, version](std::optional<sweep_result> r) {
          if (!r) return unavailable();
          json::object body;
          body["level"] = to_string(r->level);
          body["scope"] = r->scope.describe();
          body["evicted"] = {
              {"dead", r->dead}, {"zombie", r->zombie}, {"idle", r->idle}, {"healthy", r->healthy}};
          body["duration_ms"] = static_cast<uint64_t>(r->duration_ms + 0.5);
          respond(json_answer(http::status::ok, body, version));
        });
  }
  if (path == "/admin/close") {
    if (!is_post) return method_not_allowed("POST");
    const auto id_param = params->find("id");
    const auto user_param = params->find("user");
    if ((id_param == params->end()) == (user_param == params->end()))
      return respond(bad_request("give exactly one of id=N or user=U", version));
    uint64_t id = 0;
    std::string user;
    if (id_param != params->end()) {
      const auto parsed = parse_id(id_param->second);
      if (!parsed || *parsed == 0)
        return respond(bad_request("id must be a positive integer", version));
      id = *parsed;
    } else {
      user = user_param->second;
      if (user.empty()) return respond(bad_request("user must not be empty", version));
    }
    return tree.close_connections(id, user, [respond, version](uint64_t closed) {
      json::object body;
      body["closed"] = closed;
      respond(json_answer(http::status::ok, body, version));
    });
  }
  if (path == "/admin/drain") {
    if (!is_post) return method_not_allowed("POST");
    if (state->request_drain) state->request_drain();
    return respond(json_response(http::status::ok, R"({"draining":true})", version, true));
  }
  if (path == "/admin/faults") {
    if (!state->config.faults.enabled)
      return respond(
          json_response(http::status::not_found, error_body("not_found"), version, true));
    if (!is_post) return method_not_allowed("POST");
    auto parsed = parse_fault(request.body());
    if (auto* error = std::get_if<std::string>(&parsed))
      return respond(bad_request(*error, version));
    const auto fault = std::get<fault_request>(parsed);
    if (fault.on == fault_request::target::shard && fault.shard_index >= tree.shard_count())
      return respond(bad_request(
          "index must be below the number of shards (" + std::to_string(tree.shard_count()) + ")",
          version));
    return tree.inject_fault(fault, [respond, version](uint64_t applied) {
      json::object body;
      body["applied"] = applied;
      respond(json_answer(http::status::ok, body, version));
    });
  }
  respond(json_response(http::status::not_found, error_body("not_found"), version, true));
}

}  // namespace wsvisor
