#include "server_api_protocol.hpp"

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>

#include "wsvisor/config.hpp"  // is_valid_node_id
#include "wsvisor/jwt.hpp"     // base64url_decode

namespace wsvisor {
namespace json = boost::json;

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

namespace {

// Deeper than any body these endpoints take; a deeper document is refused, not parsed.
constexpr unsigned kMaxJsonDepth = 32;
// One /api/send may address this many users at most.
constexpr std::size_t kMaxUsersPerSend = 10000;

// The body as a JSON object, or the 400's detail.
std::variant<json::object, std::string> json_body(std::string_view body) {
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  auto parsed = json::parse(body, ec, {}, options);
  if (ec) return std::string("the body is not JSON (") + ec.message() + ")";
  if (!parsed.is_object()) return std::string("the body must be a JSON object");
  return std::move(parsed.as_object());
}

// Whom a call addresses: exactly one of "connection", "user" (and, for send, "users"),
// or the 400's detail.
std::variant<api_target, std::string> target_of(const json::object& body, bool users_allowed,
                                                std::string_view node_id) {
  const auto* connection = body.if_contains("connection");
  const auto* user = body.if_contains("user");
  const auto* users = users_allowed ? body.if_contains("users") : nullptr;
  if ((connection != nullptr) + (user != nullptr) + (users != nullptr) != 1)
    return std::string(users_allowed ? "give exactly one of \"connection\", \"user\", \"users\""
                                     : "give exactly one of \"connection\", \"user\"");
  api_target target;
  auto& selector = target.selector;
  if (connection) {
    if (!connection->is_string() || !is_connection_id(connection->as_string()))
      return std::string("\"connection\" must be a connection id, \"<node_id>.<n>\"");
    const auto id = local_connection_id(connection->as_string(), node_id);
    target.gone = !id;
    target.connection = std::string(connection->as_string());
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
  return target;
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

}  // namespace

std::variant<api_send_request, std::string> parse_api_send(std::string_view text,
                                                           std::string_view node_id) {
  auto parsed = json_body(text);
  if (auto* detail = std::get_if<std::string>(&parsed)) return std::move(*detail);
  const auto& body = std::get<json::object>(parsed);
  auto target = target_of(body, true, node_id);
  if (auto* detail = std::get_if<std::string>(&target)) return std::move(*detail);
  api_send_request request;
  request.target = std::move(std::get<api_target>(target));
  const auto* data = body.if_contains("data");
  const auto* b64data = body.if_contains("b64data");
  if ((data != nullptr) == (b64data != nullptr))
    return std::string("give exactly one of \"data\" (text) and \"b64data\" (binary)");
  request.text = data != nullptr;
  if (request.text) {
    if (!data->is_string()) return std::string("\"data\" must be a string");
    request.payload = std::string(data->as_string());
  } else {
    if (!b64data->is_string()) return std::string("\"b64data\" must be a base64 string");
    auto bytes = base64_decode(b64data->as_string());
    if (!bytes) return std::string("\"b64data\" is not valid base64");
    request.payload = std::move(*bytes);
  }
  return request;
}

std::variant<api_disconnect_request, std::string> parse_api_disconnect(std::string_view text,
                                                                       std::string_view node_id) {
  auto parsed = json_body(text);
  if (auto* detail = std::get_if<std::string>(&parsed)) return std::move(*detail);
  const auto& body = std::get<json::object>(parsed);
  auto target = target_of(body, false, node_id);
  if (auto* detail = std::get_if<std::string>(&target)) return std::move(*detail);
  api_disconnect_request request;
  request.target = std::move(std::get<api_target>(target));
  if (const auto* c = body.if_contains("code")) {
    if (!c->is_int64() || c->as_int64() < 4000 || c->as_int64() > 4999)
      return std::string("\"code\" must be an integer from 4000 to 4999");
    request.code = static_cast<uint16_t>(c->as_int64());
  }
  if (const auto* r = body.if_contains("reason")) {
    // A close frame's reason is at most 123 bytes (RFC 6455 5.5.1).
    if (!r->is_string() || r->as_string().size() > 123)
      return std::string("\"reason\" must be a string of at most 123 bytes");
    request.reason = std::string(r->as_string());
  }
  return request;
}

}  // namespace wsvisor
