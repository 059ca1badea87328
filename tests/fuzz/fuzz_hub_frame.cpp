// libFuzzer target: hub mode's client protocol (hub::parse_frame), every frame a client
// sends in hub mode. Whatever the bytes, it answers commands or an error, never both,
// never crashes, never recurses on the input's depth.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "wsvisor/hub/protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view frame(reinterpret_cast<const char*>(data), size);
  const auto parsed = wsvisor::hub::parse_frame(frame, 8);
  if (!parsed.error.empty() && !parsed.commands.empty()) __builtin_trap();
  return 0;
}
