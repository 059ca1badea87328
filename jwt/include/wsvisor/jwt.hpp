// HS256 JSON Web Tokens (RFC 7519, RFC 7515) and base64url: the one copy that the upgrade's
// auth (net/) and hub mode's connection and subscription tokens (hub/) share. Pure
// functions; HMAC from OpenSSL.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

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

// An HS256 token whose signature, `exp` and `nbf` (when present) were checked: its claims
// (the payload object), or why it is not one to believe (then no claims). No claim is
// required here; callers check the ones they need.
struct jwt_verified {
  std::optional<boost::json::object> claims;
  identity_problem problem = identity_problem::none;
};
jwt_verified verify_hs256(std::string_view token, std::string_view secret,
                          std::chrono::system_clock::time_point now);

// HS256 JWT: signature with `secret`, then `exp` and `nbf` (when present) against
// `now`. The `sub` claim (a non-empty string), or why the token is not one to believe.
struct jwt_check {
  std::optional<std::string> subject;
  identity_problem problem = identity_problem::none;
};
jwt_check check_hs256_jwt(std::string_view token, std::string_view secret,
                          std::chrono::system_clock::time_point now);

// The `sub` claim, or nullopt for anything malformed, forged, expired or not yet valid.
std::optional<std::string> verify_hs256_jwt(std::string_view token, std::string_view secret,
                                            std::chrono::system_clock::time_point now);

// A NumericDate claim (RFC 7519 section 2: seconds since the epoch, integer or not);
// nullopt when the value is not a number.
std::optional<double> jwt_numeric_date(const boost::json::value& claim);

// Base64url without padding (RFC 7515); nullopt on characters outside the alphabet.
std::optional<std::string> base64url_decode(std::string_view text);
std::string base64url_encode(std::string_view bytes);

}  // namespace wsvisor
