// HS256 tokens made for tests, signed with OpenSSL's HMAC directly (not with the code
// under test): for the tests of wsvisor_jwt, of the upgrade's auth and of hub tokens.
// Header-only; the test must link OpenSSL::Crypto and wsvisor_jwt (for base64url).
#pragma once

#include <doctest/doctest.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <string>
#include <string_view>

#include "wsvisor/jwt.hpp"

namespace wsvisor::testing {

inline constexpr std::string_view hs256_header = R"({"alg":"HS256","typ":"JWT"})";

inline std::string hmac_sha256(std::string_view data, std::string_view key) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int length = 0;
  REQUIRE(HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
               reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac.data(),
               &length) != nullptr);
  return std::string(reinterpret_cast<const char*>(mac.data()), length);
}

// header.payload.signature, each part base64url of the given text, signed with `secret`.
inline std::string signed_jwt(std::string_view header_json, std::string_view payload_json,
                              std::string_view secret) {
  const std::string signing_input =
      base64url_encode(header_json) + "." + base64url_encode(payload_json);
  return signing_input + "." + base64url_encode(hmac_sha256(signing_input, secret));
}

}  // namespace wsvisor::testing
