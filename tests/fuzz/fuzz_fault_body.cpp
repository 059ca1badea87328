// libFuzzer target: the body of POST /admin/faults (net/src/fault_body.cpp). Either a
// fault within the documented ranges or an error text, for any bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

#include "../../net/src/fault_body.hpp"
#include "wsvisor/frame_header.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  const auto parsed = wsvisor::parse_fault(body);
  if (const auto* error = std::get_if<std::string>(&parsed)) {
    if (error->empty()) __builtin_trap();
    return 0;
  }
  const auto& fault = std::get<wsvisor::fault_request>(parsed);
  if (fault.ratio < 0 || fault.ratio > 1) __builtin_trap();
  if (fault.share && (!(*fault.share > 0) || *fault.share > 1)) __builtin_trap();
  if (fault.code != 0 && !wsvisor::is_sendable_close_code(fault.code)) __builtin_trap();
  if (fault.jitter_ms > fault.delay_ms) __builtin_trap();
  return 0;
}
