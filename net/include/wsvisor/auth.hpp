// Who is asking for an upgrade (auth.mode of CONTRACT section 2) and which subprotocol
// the 101 selects (CONTRACT section 5). Pure functions of the request.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "wsvisor/config.hpp"
// identity_problem, check_hs256_jwt, base64url_*: the JWT code lives in wsvisor_jwt, shared
// with hub mode; included here so that users of this header keep seeing it.
#include "wsvisor/jwt.hpp"

namespace wsvisor {

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

}  // namespace wsvisor
