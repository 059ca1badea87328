// The pure parts of the hub API (hub_api.hpp): Centrifugo's request, answer and batch
// shapes, and its error codes and their HTTP statuses (docs/server/server_api.md of
// centrifugal/centrifugal.dev: "Transport error mode", "batch").
#include "hub_api.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>

namespace wsvisor {
namespace json = boost::json;

namespace {

// Publication data and info are the backend's own JSON: allow nesting well beyond what
// the gateway API's bodies need, but bounded (a deeper document is refused, not parsed).
constexpr unsigned kMaxJsonDepth = 64;

json::object error_object(const hub_api_reply& reply) {
  return json::object{{"code", reply.error}, {"message", reply.message}};
}

}  // namespace

const std::vector<std::string>& hub_api_methods() {
  static const std::vector<std::string> methods = {
      "publish",        "broadcast", "subscribe",      "unsubscribe", "disconnect", "presence",
      "presence_stats", "history",   "history_remove", "info",        "refresh",    "channels"};
  return methods;
}

std::string hub_error_message(uint32_t code) {
  // The server API's messages where it has its own (104 is "not found" there, "method
  // not found" in the client protocol), the client protocol's for the rest.
  switch (code) {
    case 100:
      return "internal server error";
    case 101:
      return "unauthorized";
    case 102:
      return "unknown channel";
    case 103:
      return "permission denied";
    case 104:
      return "not found";
    case 105:
      return "already subscribed";
    case 106:
      return "limit exceeded";
    case 107:
      return "bad request";
    case 108:
      return "not available";
    case 109:
      return "token expired";
    case 110:
      return "expired";
    case 111:
      return "too many requests";
    case 112:
      return "unrecoverable position";
    case 113:
      return "conflict";
    default:
      return "";
  }
}

hub_api_reply hub_error(uint32_t code, std::string message) {
  hub_api_reply reply;
  reply.error = code;
  reply.message = message.empty() ? hub_error_message(code) : std::move(message);
  return reply;
}

unsigned hub_error_http_status(uint32_t code) {
  switch (code) {
    case 100:  // internal
      return 500;
    case 102:  // unknown channel
    case 104:  // not found
      return 404;
    case 107:  // bad request
    case 108:  // not available
      return 400;
    case 112:  // unrecoverable position
      return 416;
    case 113:  // conflict
      return 409;
    default:  // Centrifugo: "Default to Internal Error for unmapped errors"
      return 500;
  }
}

bool hub_transport_error_mode(std::optional<std::string_view> header) {
  return header && *header == "transport";
}

std::variant<json::object, hub_api_reply> hub_request_body(std::string_view body) {
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  auto parsed = json::parse(body, ec, {}, options);
  if (ec) return hub_error(kHubErrorBadRequest);
  if (!parsed.is_object()) return hub_error(kHubErrorBadRequest);
  return std::move(parsed.as_object());
}

hub_http_answer hub_method_answer(const hub_api_reply& reply, bool transport) {
  hub_http_answer answer;
  if (reply.error == 0) {
    // serialize, not json_text: publication data must keep its numbers as they came.
    answer.body = json::serialize(json::object{{"result", reply.result}});
    return answer;
  }
  const auto error = error_object(hub_error(reply.error, reply.message));
  if (transport) {
    answer.status = hub_error_http_status(reply.error);
    answer.body = json::serialize(error);
  } else {
    answer.body = json::serialize(json::object{{"error", error}});
  }
  return answer;
}

std::variant<std::vector<hub_batch_command>, hub_api_reply> parse_hub_batch(
    const json::object& body) {
  if (const auto* parallel = body.if_contains("parallel"); parallel && !parallel->is_bool())
    return hub_error(kHubErrorBadRequest, "\"parallel\" must be a boolean");
  std::vector<hub_batch_command> commands;
  const auto* list = body.if_contains("commands");
  if (!list || list->is_null()) return commands;
  if (!list->is_array()) return hub_error(kHubErrorBadRequest, "\"commands\" must be an array");
  if (list->as_array().size() > kHubBatchMaxCommands)
    return hub_error(kHubErrorBadRequest, "a batch holds at most 1000 commands");
  const auto& methods = hub_api_methods();
  commands.reserve(list->as_array().size());
  for (const auto& entry : list->as_array()) {
    hub_batch_command& command = commands.emplace_back();
    if (!entry.is_object()) {
      command.refused = hub_error(kHubErrorBadRequest);
      continue;
    }
    // A command names one method; its other keys are ignored, as a protobuf decoder
    // ignores unknown fields. Naming none is Centrifugo's 104; naming two would run
    // only the first in Centrifugo, silently: refused instead.
    const json::value* params = nullptr;
    std::size_t named = 0;
    for (const auto& method : methods) {
      if (const auto* p = entry.as_object().if_contains(method)) {
        if (named++ == 0) {
          command.method = method;
          params = p;
        }
      }
    }
    if (named == 0)
      command.refused = hub_error(kHubErrorMethodNotFound);
    else if (named > 1 || !params->is_object())
      command.refused = hub_error(kHubErrorBadRequest);
    else
      command.params = params->as_object();
  }
  return commands;
}

json::object hub_batch_reply(std::string_view method, const hub_api_reply& reply) {
  if (reply.error != 0)
    return json::object{{"error", error_object(hub_error(reply.error, reply.message))}};
  return json::object{{method, reply.result}};
}

hub_http_answer hub_batch_answer(const json::array& replies) {
  hub_http_answer answer;
  answer.body = json::serialize(json::object{{"replies", replies}});
  return answer;
}

}  // namespace wsvisor
