// Centrifugo's HTTP server API in hub mode (CONTRACT 13.6): the pure parts (reading a
// request body, the two error modes, the statuses of the transport mode, batches and
// the JSON of every answer). They live apart from the endpoints (hub_api.cpp, which
// call the actors) so that they are unit-tested without an actor system
// (tests/unit/test_net_hub_api.cpp).
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "wsvisor/service.hpp"  // hub_api_reply

namespace wsvisor {

// Centrifugo's error codes that the net layer answers itself; the actors answer the
// others (102 unknown channel, 108 not available, 112 unrecoverable position, ...).
inline constexpr uint32_t kHubErrorInternal = 100;
inline constexpr uint32_t kHubErrorMethodNotFound = 104;
inline constexpr uint32_t kHubErrorBadRequest = 107;

// Most commands one batch may hold; more is error 107 for the whole batch. Centrifugo
// has no such bound, but a body of 1 MiB could otherwise ask for a hundred thousand
// calls into the actors in one request.
inline constexpr std::size_t kHubBatchMaxCommands = 1000;

// The methods of service::hub_call, each also a path /api/<method> and a command of a
// batch, in the order of Centrifugo's Command message. batch is not one of them: it is
// answered here, one hub_call per command.
const std::vector<std::string>& hub_api_methods();

// Centrifugo's message for an error code ("unknown channel" for 102); "" for a code it
// has no message for.
std::string hub_error_message(uint32_t code);

// An error reply; its message is Centrifugo's for the code when `message` is empty.
hub_api_reply hub_error(uint32_t code, std::string message = {});

// The HTTP status of an error in the transport error mode: Centrifugo's
// MapErrorToHTTPCode (100 -> 500, 102 and 104 -> 404, 107 and 108 -> 400, 112 -> 416,
// 113 -> 409, any other code -> 500).
unsigned hub_error_http_status(uint32_t code);

// Whether a request asks for the transport error mode: its X-Centrifugo-Error-Mode
// header (nullopt: absent) is exactly "transport", as Centrifugo compares it.
bool hub_transport_error_mode(std::optional<std::string_view> header);

// A request body as the JSON object every method takes, or error 107 (not JSON, not
// an object, nested too deeply, empty).
std::variant<boost::json::object, hub_api_reply> hub_request_body(std::string_view body);

struct hub_http_answer {
  unsigned status = 200;
  std::string body;  // JSON
};

// The answer to one method: 200 {"result":{...}}. An error: by default 200
// {"error":{"code":N,"message":"..."}}; in the transport mode the mapped status with
// {"code":N,"message":"..."} (the error object itself, as Centrifugo writes it).
hub_http_answer hub_method_answer(const hub_api_reply& reply, bool transport);

// One command of a batch: the method and its request, or the reply it gets without
// being run (`refused`: 107 for a command or a request that is not an object or for a
// command that names two methods, 104 for one that names none).
struct hub_batch_command {
  std::string method;
  boost::json::object params;
  std::optional<hub_api_reply> refused;
};

// A batch request {"commands":[{"<method>":{...}}, ...], "parallel"?: bool}: its
// commands in order, or error 107 for the whole batch ("commands" not an array, more
// than kHubBatchMaxCommands of them, "parallel" not a boolean). No "commands": none.
std::variant<std::vector<hub_batch_command>, hub_api_reply> parse_hub_batch(
    const boost::json::object& body);

// One reply of a batch, as Centrifugo's Reply: {"<method>":{result}} or
// {"error":{"code":N,"message":"..."}}.
boost::json::object hub_batch_reply(std::string_view method, const hub_api_reply& reply);

// The answer to a batch: 200 {"replies":[...]} whatever its replies hold (the transport
// mode changes nothing here, as in Centrifugo: every command has its own error).
hub_http_answer hub_batch_answer(const boost::json::array& replies);

}  // namespace wsvisor
