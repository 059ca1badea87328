// libFuzzer target: the bodies of hub mode's server API (net/src/hub_api_protocol.cpp,
// CONTRACT 13.6): a request body read as the object every method takes, a batch split
// into its commands, and the answers built for what came out. Any bytes give a body or
// error 107, a batch within kHubBatchMaxCommands or an error, and answers that are JSON
// objects, in both error modes.
#include <boost/json/parse.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "../../net/src/hub_api.hpp"

namespace json = boost::json;

namespace {

void check_answer(const wsvisor::hub_http_answer& answer) {
  boost::system::error_code ec;
  const auto parsed = json::parse(answer.body, ec);
  if (ec || !parsed.is_object()) __builtin_trap();
  if (answer.status < 200 || answer.status > 599) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto read = wsvisor::hub_request_body(body);
  if (const auto* refused = std::get_if<wsvisor::hub_api_reply>(&read)) {
    if (refused->error != wsvisor::kHubErrorBadRequest) __builtin_trap();
    check_answer(wsvisor::hub_method_answer(*refused, false));
    check_answer(wsvisor::hub_method_answer(*refused, true));
    return 0;
  }
  const auto& object = std::get<json::object>(read);
  auto batch = wsvisor::parse_hub_batch(object);
  if (const auto* refused = std::get_if<wsvisor::hub_api_reply>(&batch)) {
    if (refused->error == 0) __builtin_trap();
    check_answer(wsvisor::hub_method_answer(*refused, true));
    return 0;
  }
  const auto& commands = std::get<std::vector<wsvisor::hub_batch_command>>(batch);
  if (commands.size() > wsvisor::kHubBatchMaxCommands) __builtin_trap();
  json::array replies;
  for (const auto& command : commands) {
    // What the endpoint would run: a refused command's own reply, else (here) a reply
    // that echoes the params it was given.
    wsvisor::hub_api_reply reply;
    if (command.refused) {
      reply = *command.refused;
      if (reply.error == 0) __builtin_trap();
    } else {
      reply.result = command.params;
    }
    replies.push_back(wsvisor::hub_batch_reply(command.method, reply));
  }
  check_answer(wsvisor::hub_batch_answer(replies));
  return 0;
}
