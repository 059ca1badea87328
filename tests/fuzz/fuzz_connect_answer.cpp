// libFuzzer target: the backend's answer to the gateway's connect hook
// (interpret_connect_answer, CONTRACT 12.1), the upstream response a backend controls.
// The first byte picks the status and outcome, the rest is the body. An admission's
// user, meta and subprotocol must keep to their documented bounds, whatever came back.
#include <cstddef>
#include <cstdint>
#include <string>

#include "../../actors/src/connect_hook.hpp"

namespace {

struct reply {
  wsvisor::upstream_outcome outcome;
  unsigned status;
};
constexpr reply kReplies[] = {
    {wsvisor::upstream_outcome::ok, 200},       {wsvisor::upstream_outcome::ok, 200},
    {wsvisor::upstream_outcome::ok, 204},       {wsvisor::upstream_outcome::rejected, 401},
    {wsvisor::upstream_outcome::rejected, 403}, {wsvisor::upstream_outcome::rejected, 429},
    {wsvisor::upstream_outcome::rejected, 404}, {wsvisor::upstream_outcome::error, 500},
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto& picked = kReplies[data[0] % (sizeof kReplies / sizeof kReplies[0])];
  wsvisor::upstream_result result;
  result.outcome = picked.outcome;
  result.status = picked.status;
  result.body.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  result.content_type = "application/json";
  wsvisor::admission_request request;
  request.user = "fuzz";
  request.subprotocols = {"chat", "centrifuge-json"};
  const auto answer = wsvisor::interpret_connect_answer(result, request);
  if (answer.what == wsvisor::connect_answer::kind::admitted) {
    if (answer.user && (answer.user->empty() || answer.user->size() > wsvisor::kMaxHookUserBytes))
      __builtin_trap();
    if (answer.meta.size() > wsvisor::kMaxHookMetaBytes) __builtin_trap();
    if (!answer.subprotocol.empty() && answer.subprotocol != "chat" &&
        answer.subprotocol != "centrifuge-json")
      __builtin_trap();
  }
  if (answer.what == wsvisor::connect_answer::kind::rejected && answer.status != 401 &&
      answer.status != 403 && answer.status != 429)
    __builtin_trap();
  return 0;
}
