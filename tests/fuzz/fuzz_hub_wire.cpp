// libFuzzer target: the messages between cluster nodes (hub::wire::decode), which come
// from Redis and so from any node that can write to it. What decodes must encode to a
// text that decodes to the same message again (re-encoding is idempotent).
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "wsvisor/hub/wire.hpp"

namespace wire = wsvisor::hub::wire;

namespace {

std::string encoded(const wire::message& message) {
  if (const auto* joined = std::get_if<wire::joined>(&message))
    return wire::encode_join(joined->info);
  if (const auto* left = std::get_if<wire::left>(&message)) return wire::encode_leave(left->info);
  if (const auto* gone = std::get_if<wire::unsubscribed>(&message))
    return wire::encode_unsubscribe(gone->user, gone->client);
  const auto& published = std::get<wire::published>(message);
  return wire::encode_publication(published.pub, published.epoch);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  wire::decode_client_info(text);
  const auto message = wire::decode(text);
  if (!message) return 0;
  const auto again = encoded(*message);
  const auto round_trip = wire::decode(again);
  if (!round_trip || round_trip->index() != message->index() || encoded(*round_trip) != again)
    __builtin_trap();
  return 0;
}
