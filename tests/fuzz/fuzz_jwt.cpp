// libFuzzer target: HS256 JWTs (auth.mode = "jwt", hub mode's connection and subscription
// tokens). The first input byte splits the rest into a token and a secret, so that both
// valid and forged signatures are reached; base64url is checked to round-trip.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "wsvisor/jwt.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::size_t split = data[0] % (rest.size() + 1);
  const auto token = rest.substr(0, split);
  const auto secret = rest.substr(split);
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  const auto verified = wsvisor::verify_hs256(token, secret, now);
  const auto checked = wsvisor::check_hs256_jwt(token, secret, now);
  // A subject only where the signature and the times held.
  if (checked.subject && !verified.claims) __builtin_trap();
  if (const auto decoded = wsvisor::base64url_decode(token))
    if (wsvisor::base64url_encode(*decoded) != token) {
      // Non-canonical padding bits decode too; only the decoded bytes must round-trip.
      const auto again = wsvisor::base64url_decode(wsvisor::base64url_encode(*decoded));
      if (!again || *again != *decoded) __builtin_trap();
    }
  return 0;
}
