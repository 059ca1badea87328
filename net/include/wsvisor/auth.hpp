// Who is asking for an upgrade (auth.mode of CONTRACT section 2) and which subprotocol
// the 101 selects (CONTRACT section 5). Pure functions of the request.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "wsvisor/config.hpp"

namespace wsvisor {

struct identity {
  std::string user;      // "" = anonymous
  bool missing = false;  // the mode needs an identity and the request carries none
  bool invalid = false;  // a token was presented but is malformed, badly signed or expired
};

using upgrade_request = boost::beast::http::request<boost::beast::http::string_body>;

identity identify(const upgrade_request& request, const auth_settings& auth);

// The token of auth.mode = "jwt": Authorization: Bearer, then a `jwt.<token>`
// subprotocol, then `?token=`.
std::optional<std::string> find_token(const upgrade_request& request);

// "wsvisor.v1" when offered; else the `jwt.<token>` entry that carried the token;
// else "" (no Sec-WebSocket-Protocol in the 101).
std::string select_subprotocol(const upgrade_request& request);

// HS256 JWT: signature with `secret` and `exp` (when present) against `now`.
// Returns the `sub` claim, or nullopt for anything malformed, forged or expired.
std::optional<std::string> verify_hs256_jwt(std::string_view token, std::string_view secret,
                                            std::chrono::system_clock::time_point now);

// Base64url without padding (RFC 7515); nullopt on characters outside the alphabet.
std::optional<std::string> base64url_decode(std::string_view text);
std::string base64url_encode(std::string_view bytes);

}  // namespace wsvisor
