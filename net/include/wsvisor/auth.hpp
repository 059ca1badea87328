// Who is asking for an upgrade (auth.mode of CONTRACT section 2) and which subprotocol
// the 101 selects (CONTRACT section 5). Pure functions of the request.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "wsvisor/config.hpp"

namespace wsvisor {

// Why a request has no identity it may use: what a 401 is logged with.
enum class identity_problem {
  none,
  missing,         // no token / no user header
  malformed,       // not three base64url parts of JSON, no `sub`, a claim of the wrong type
  bad_signature,   // not signed with auth.jwt_secret (or not HS256)
  expired,         // `exp` has passed
  not_yet_valid,   // `nbf` has not come yet
  untrusted_peer,  // a user header from a peer that may not assert one (auth.mode = "header")
};
const char* to_string(identity_problem problem);

struct identity {
  std::string user;      // "" = anonymous
  bool missing = false;  // the mode needs an identity and the request carries none
  bool invalid = false;  // a token was presented but is malformed, badly signed or expired
  identity_problem problem = identity_problem::none;
};

using upgrade_request = boost::beast::http::request<boost::beast::http::string_body>;

// `peer_vouched`: the TCP peer may assert the user header (trusted_proxies::
// vouches_for_identity); in header mode a request from any other peer is unauthorized.
identity identify(const upgrade_request& request, const auth_settings& auth, bool peer_vouched);

// The token of auth.mode = "jwt": Authorization: Bearer, then a `jwt.<token>`
// subprotocol, then `?token=`.
std::optional<std::string> find_token(const upgrade_request& request);

// The entries of Sec-WebSocket-Protocol, in order, trimmed (views into the request).
std::vector<std::string_view> offered_subprotocols(const upgrade_request& request);

// "wsvisor.v1" when offered; else the `jwt.<token>` entry that carried the token;
// else "" (no Sec-WebSocket-Protocol in the 101).
std::string select_subprotocol(const upgrade_request& request);

// HS256 JWT: signature with `secret`, then `exp` and `nbf` (when present) against
// `now`. The `sub` claim, or why the token is not one to believe.
struct jwt_check {
  std::optional<std::string> subject;
  identity_problem problem = identity_problem::none;
};
jwt_check check_hs256_jwt(std::string_view token, std::string_view secret,
                          std::chrono::system_clock::time_point now);

// The `sub` claim, or nullopt for anything malformed, forged, expired or not yet valid.
std::optional<std::string> verify_hs256_jwt(std::string_view token, std::string_view secret,
                                            std::chrono::system_clock::time_point now);

// Base64url without padding (RFC 7515); nullopt on characters outside the alphabet.
std::optional<std::string> base64url_decode(std::string_view text);
std::string base64url_encode(std::string_view bytes);

}  // namespace wsvisor
