#include "wsvisor/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <vector>

namespace wsvisor {
namespace http = boost::beast::http;

namespace {

constexpr std::string_view kBase64UrlAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

}  // namespace

// The comma-separated entries of Sec-WebSocket-Protocol, trimmed.
std::vector<std::string_view> offered_subprotocols(const upgrade_request& request) {
  std::vector<std::string_view> entries;
  const auto [first, last] = request.equal_range(http::field::sec_websocket_protocol);
  for (auto field = first; field != last; ++field) {
    std::string_view value(field->value().data(), field->value().size());
    while (!value.empty()) {
      const auto comma = value.find(',');
      std::string_view entry = value.substr(0, comma);
      while (!entry.empty() && (entry.front() == ' ' || entry.front() == '\t'))
        entry.remove_prefix(1);
      while (!entry.empty() && (entry.back() == ' ' || entry.back() == '\t'))
        entry.remove_suffix(1);
      if (!entry.empty()) entries.push_back(entry);
      if (comma == std::string_view::npos) break;
      value.remove_prefix(comma + 1);
    }
  }
  return entries;
}

namespace {

std::optional<std::string> query_parameter(std::string_view target, std::string_view name) {
  const auto question = target.find('?');
  if (question == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(question + 1);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == name && eq != std::string_view::npos)
      return std::string(pair.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> base64url_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    const auto index = kBase64UrlAlphabet.find(c);
    if (index == std::string_view::npos) return std::nullopt;
    buffer = (buffer << 6) | static_cast<uint32_t>(index);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  if (bits >= 6) return std::nullopt;  // a dangling sextet is not valid base64
  // Canonical form only: the unused low bits must be zero, so that no two texts decode
  // to the same bytes (a JWT signature cannot be altered in its last character).
  if ((buffer & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string base64url_encode(std::string_view bytes) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kBase64UrlAlphabet[(buffer >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out.push_back(kBase64UrlAlphabet[(buffer << (6 - bits)) & 0x3f]);
  return out;
}

const char* to_string(identity_problem problem) {
  switch (problem) {
    case identity_problem::none:
      return "none";
    case identity_problem::missing:
      return "missing";
    case identity_problem::malformed:
      return "malformed";
    case identity_problem::bad_signature:
      return "bad_signature";
    case identity_problem::expired:
      return "expired";
    case identity_problem::not_yet_valid:
      return "not_yet_valid";
    case identity_problem::untrusted_peer:
      return "untrusted_peer";
  }
  return "none";
}

namespace {

// A NumericDate claim (RFC 7519 2): seconds since the epoch, integer or not.
std::optional<double> numeric_date(const boost::json::value& claim) {
  if (claim.is_int64()) return static_cast<double>(claim.as_int64());
  if (claim.is_uint64()) return static_cast<double>(claim.as_uint64());
  if (claim.is_double()) return claim.as_double();
  return std::nullopt;
}

jwt_check problem(identity_problem why) {
  jwt_check check;
  check.problem = why;
  return check;
}

}  // namespace

jwt_check check_hs256_jwt(std::string_view token, std::string_view secret,
                          std::chrono::system_clock::time_point now) {
  const auto first_dot = token.find('.');
  if (first_dot == std::string_view::npos) return problem(identity_problem::malformed);
  const auto second_dot = token.find('.', first_dot + 1);
  if (second_dot == std::string_view::npos ||
      token.find('.', second_dot + 1) != std::string_view::npos)
    return problem(identity_problem::malformed);
  const std::string_view signed_part = token.substr(0, second_dot);
  const auto header = base64url_decode(token.substr(0, first_dot));
  const auto payload = base64url_decode(token.substr(first_dot + 1, second_dot - first_dot - 1));
  const auto signature = base64url_decode(token.substr(second_dot + 1));
  if (!header || !payload || !signature) return problem(identity_problem::malformed);

  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int mac_length = 0;
  if (!HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
            reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(),
            mac.data(), &mac_length))
    return problem(identity_problem::bad_signature);
  if (signature->size() != mac_length ||
      CRYPTO_memcmp(signature->data(), mac.data(), mac_length) != 0)
    return problem(identity_problem::bad_signature);

  // Signed by us: what it says can be parsed without fear of an attacker's input.
  boost::system::error_code ec;
  const auto header_json = boost::json::parse(*header, ec);
  if (ec || !header_json.is_object()) return problem(identity_problem::malformed);
  const auto* alg = header_json.as_object().if_contains("alg");
  if (!alg || !alg->is_string() || alg->as_string() != "HS256")
    return problem(identity_problem::bad_signature);

  const auto claims = boost::json::parse(*payload, ec);
  if (ec || !claims.is_object()) return problem(identity_problem::malformed);
  const auto& object = claims.as_object();
  const double now_s = std::chrono::duration<double>(now.time_since_epoch()).count();
  if (const auto* exp = object.if_contains("exp")) {
    const auto expires_at = numeric_date(*exp);
    if (!expires_at) return problem(identity_problem::malformed);
    if (now_s >= *expires_at) return problem(identity_problem::expired);
  }
  if (const auto* nbf = object.if_contains("nbf")) {
    const auto not_before = numeric_date(*nbf);
    if (!not_before) return problem(identity_problem::malformed);
    if (now_s < *not_before) return problem(identity_problem::not_yet_valid);
  }
  const auto* sub = object.if_contains("sub");
  if (!sub || !sub->is_string() || sub->as_string().empty())
    return problem(identity_problem::malformed);
  jwt_check check;
  check.subject = std::string(sub->as_string());
  return check;
}

std::optional<std::string> verify_hs256_jwt(std::string_view token, std::string_view secret,
                                            std::chrono::system_clock::time_point now) {
  return check_hs256_jwt(token, secret, now).subject;
}

std::optional<std::string> find_token(const upgrade_request& request) {
  const auto authorization = request.find(http::field::authorization);
  if (authorization != request.end()) {
    std::string_view value(authorization->value().data(), authorization->value().size());
    // The scheme is case-insensitive (RFC 7235).
    constexpr std::string_view bearer = "bearer ";
    if (value.size() > bearer.size() &&
        std::equal(bearer.begin(), bearer.end(), value.begin(),
                   [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); }))
      return std::string(value.substr(bearer.size()));
  }
  for (auto entry : offered_subprotocols(request))
    if (entry.size() > 4 && entry.substr(0, 4) == "jwt.") return std::string(entry.substr(4));
  const std::string_view target(request.target().data(), request.target().size());
  return query_parameter(target, "token");
}

identity identify(const upgrade_request& request, const auth_settings& auth, bool peer_vouched) {
  identity who;
  if (auth.mode == "header") {
    const auto field = request.find(auth.user_header);
    if (field == request.end() || field->value().empty()) {
      who.missing = true;
      who.problem = identity_problem::missing;
    } else if (!peer_vouched) {
      // Anyone could send the header: only a trusted proxy may say who the user is.
      who.invalid = true;
      who.problem = identity_problem::untrusted_peer;
    } else {
      who.user = std::string(field->value());
    }
  } else if (auth.mode == "jwt") {
    const auto token = find_token(request);
    if (!token) {
      who.missing = true;
      who.problem = identity_problem::missing;
    } else {
      auto check = check_hs256_jwt(*token, auth.jwt_secret, std::chrono::system_clock::now());
      if (check.subject) {
        who.user = std::move(*check.subject);
      } else {
        who.invalid = true;
        who.problem = check.problem;
      }
    }
  }
  return who;
}

std::string select_subprotocol(const upgrade_request& request) {
  const auto offered = offered_subprotocols(request);
  for (auto entry : offered)
    if (entry == "wsvisor.v1") return std::string(entry);
  for (auto entry : offered)
    if (entry.size() > 4 && entry.substr(0, 4) == "jwt.") return std::string(entry);
  return {};
}

}  // namespace wsvisor
