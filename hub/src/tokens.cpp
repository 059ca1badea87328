#include "wsvisor/hub/tokens.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cmath>
#include <utility>

#include "raw_json.hpp"
#include "wsvisor/jwt.hpp"

namespace wsvisor::hub {

namespace json = boost::json;

namespace {

// The claims as the token's own text (base64url-decoded payload), for the members that
// are passed on verbatim. Only called on a token verify_hs256 accepted, so it decodes.
std::string payload_text(std::string_view token) {
  const auto first_dot = token.find('.');
  const auto second_dot = token.find('.', first_dot + 1);
  return base64url_decode(token.substr(first_dot + 1, second_dot - first_dot - 1)).value_or("");
}

// "" when absent or null; else the member's text as the issuer wrote it, compacted.
std::string raw_claim(const json::object& claims, std::string_view payload, std::string_view name) {
  const json::value* value = claims.if_contains(name);
  if (!value || value->is_null()) return {};
  if (const auto text = detail::member_text(payload, name)) return detail::compact(*text);
  return {};
}

// `sub`: "" when absent (anonymous, as Centrifugo reads it); false when not a string.
bool read_user(const json::object& claims, std::string& user) {
  const json::value* sub = claims.if_contains("sub");
  if (!sub || sub->is_null()) return true;
  if (!sub->is_string()) return false;
  user.assign(sub->as_string().data(), sub->as_string().size());
  return true;
}

// When the connection or subscription expires: `expire_at` when present (0 = never),
// else `exp`. false when either is not a number (verify_hs256 has checked `exp`).
bool read_expiry(const json::object& claims, std::optional<int64_t>& expires_at) {
  if (const json::value* expire_at = claims.if_contains("expire_at")) {
    const auto seconds = jwt_numeric_date(*expire_at);
    if (!seconds) return false;
    if (*seconds > 0) expires_at = static_cast<int64_t>(std::floor(*seconds));
    return true;
  }
  if (const json::value* exp = claims.if_contains("exp")) {
    if (const auto seconds = jwt_numeric_date(*exp))
      expires_at = static_cast<int64_t>(std::floor(*seconds));
  }
  return true;
}

template <typename Token>
Token refused(token_problem problem, std::string why) {
  Token token;
  token.problem = problem;
  token.why = std::move(why);
  return token;
}

// verify_hs256's verdict as a token problem; nullopt when the token is good.
template <typename Token>
std::optional<Token> check_signature(const jwt_verified& verified) {
  if (verified.claims) return std::nullopt;
  if (verified.problem == identity_problem::expired)
    return refused<Token>(token_problem::expired, "expired");
  return refused<Token>(token_problem::invalid, to_string(verified.problem));
}

}  // namespace

connection_token verify_connection_token(std::string_view token, std::string_view secret,
                                         std::chrono::system_clock::time_point now) {
  const jwt_verified verified = verify_hs256(token, secret, now);
  if (auto bad = check_signature<connection_token>(verified)) return std::move(*bad);
  const json::object& claims = *verified.claims;
  const std::string payload = payload_text(token);

  connection_token result;
  connection_claims& out = result.claims;
  if (!read_user(claims, out.user))
    return refused<connection_token>(token_problem::invalid, "sub is not a string");
  if (!read_expiry(claims, out.expires_at))
    return refused<connection_token>(token_problem::invalid, "expire_at is not a number");
  out.info = raw_claim(claims, payload, "info");
  out.meta = raw_claim(claims, payload, "meta");

  if (const json::value* channels = claims.if_contains("channels");
      channels && !channels->is_null()) {
    if (!channels->is_array())
      return refused<connection_token>(token_problem::invalid, "channels is not an array");
    for (const json::value& channel : channels->as_array()) {
      if (!channel.is_string())
        return refused<connection_token>(token_problem::invalid, "channels has a non-string");
      out.channels.emplace_back(channel.as_string().data(), channel.as_string().size());
    }
  }

  if (const json::value* subs = claims.if_contains("subs"); subs && !subs->is_null()) {
    if (!subs->is_object())
      return refused<connection_token>(token_problem::invalid, "subs is not an object");
    const std::string_view subs_text = detail::member_text(payload, "subs").value_or("");
    for (const auto& [channel, options] : subs->as_object()) {
      if (!options.is_object())
        return refused<connection_token>(token_problem::invalid, "subs entry is not an object");
      token_subscription sub;
      sub.channel.assign(channel.data(), channel.size());
      const std::string_view options_text =
          detail::member_text(subs_text, sub.channel).value_or("");
      sub.info = raw_claim(options.as_object(), options_text, "info");
      sub.data = raw_claim(options.as_object(), options_text, "data");
      out.subs.push_back(std::move(sub));
    }
  }
  return result;
}

subscription_token verify_subscription_token(std::string_view token, std::string_view secret,
                                             std::chrono::system_clock::time_point now) {
  const jwt_verified verified = verify_hs256(token, secret, now);
  if (auto bad = check_signature<subscription_token>(verified)) return std::move(*bad);
  const json::object& claims = *verified.claims;

  subscription_token result;
  subscription_claims& out = result.claims;
  const json::value* channel = claims.if_contains("channel");
  if (!channel || !channel->is_string() || channel->as_string().empty())
    return refused<subscription_token>(token_problem::invalid, "no channel claim");
  out.channel.assign(channel->as_string().data(), channel->as_string().size());
  if (!read_user(claims, out.user))
    return refused<subscription_token>(token_problem::invalid, "sub is not a string");
  if (!read_expiry(claims, out.expires_at))
    return refused<subscription_token>(token_problem::invalid, "expire_at is not a number");
  out.info = raw_claim(claims, payload_text(token), "info");
  return result;
}

}  // namespace wsvisor::hub
