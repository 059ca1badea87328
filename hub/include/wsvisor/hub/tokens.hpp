// Centrifugo's HS256 tokens (CONTRACT 13.1): the connection token of the connect and
// refresh commands and the subscription token of subscribe and sub_refresh, with
// Centrifugo's claims (docs/server/authentication.md, channel_token_auth.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsvisor::hub {

// A server-side subscription of the `subs` claim: {"<channel>": {"info":..,"data":..}}.
struct token_subscription {
  std::string channel;
  std::string info;  // raw JSON of "info" or ""
  std::string data;  // raw JSON of "data" or "": goes into connect.subs[channel].data
};

struct connection_claims {
  std::string user;  // `sub`; "" = anonymous (Centrifugo lets an empty sub connect)
  // When the connection expires, unix seconds: `expire_at` when present (0 = never, even
  // with `exp`), else `exp`; nullopt = never.
  std::optional<int64_t> expires_at;
  std::string info;                      // raw JSON of "info" or ""
  std::vector<std::string> channels;     // server-side subscriptions
  std::vector<token_subscription> subs;  // the same with options, after `channels`
  std::string meta;                      // raw JSON of "meta" or "" (never shown to clients)
};

struct subscription_claims {
  std::string user;                   // `sub`; must be the connection's user (the caller compares)
  std::string channel;                // `channel`, required; must be the channel subscribed to
  std::optional<int64_t> expires_at;  // as in connection_claims
  std::string info;                   // raw JSON of "info" or ""
};

// none: good; invalid: malformed, forged, not HS256, not yet valid or a claim of the wrong
// type (Centrifugo disconnects with disconnect_invalid_token, for a connection token and a
// subscription token alike); expired: the signature is good but `exp` has passed (error
// token_expired, and the SDK fetches a new token).
enum class token_problem { none, invalid, expired };

struct connection_token {
  connection_claims claims;  // meaningful only when problem is none
  token_problem problem = token_problem::none;
  std::string why;  // for the log: what is wrong ("" when good); never the token itself
};
connection_token verify_connection_token(std::string_view token, std::string_view secret,
                                         std::chrono::system_clock::time_point now);

struct subscription_token {
  subscription_claims claims;  // meaningful only when problem is none
  token_problem problem = token_problem::none;
  std::string why;
};
subscription_token verify_subscription_token(std::string_view token, std::string_view secret,
                                             std::chrono::system_clock::time_point now);

}  // namespace wsvisor::hub
