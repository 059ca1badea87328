#include "wsvisor/jwt.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/json/parse.hpp>

#include <array>
#include <cstdint>
#include <utility>

namespace wsvisor {

namespace {

constexpr std::string_view kBase64UrlAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

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

std::optional<double> jwt_numeric_date(const boost::json::value& claim) {
  if (claim.is_int64()) return static_cast<double>(claim.as_int64());
  if (claim.is_uint64()) return static_cast<double>(claim.as_uint64());
  if (claim.is_double()) return claim.as_double();
  return std::nullopt;
}

namespace {

jwt_verified refused(identity_problem why) {
  jwt_verified verified;
  verified.problem = why;
  return verified;
}

}  // namespace

jwt_verified verify_hs256(std::string_view token, std::string_view secret,
                          std::chrono::system_clock::time_point now) {
  const auto first_dot = token.find('.');
  if (first_dot == std::string_view::npos) return refused(identity_problem::malformed);
  const auto second_dot = token.find('.', first_dot + 1);
  if (second_dot == std::string_view::npos ||
      token.find('.', second_dot + 1) != std::string_view::npos)
    return refused(identity_problem::malformed);
  const std::string_view signed_part = token.substr(0, second_dot);
  const auto header = base64url_decode(token.substr(0, first_dot));
  const auto payload = base64url_decode(token.substr(first_dot + 1, second_dot - first_dot - 1));
  const auto signature = base64url_decode(token.substr(second_dot + 1));
  if (!header || !payload || !signature) return refused(identity_problem::malformed);

  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int mac_length = 0;
  if (!HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
            reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(),
            mac.data(), &mac_length))
    return refused(identity_problem::bad_signature);
  if (signature->size() != mac_length ||
      CRYPTO_memcmp(signature->data(), mac.data(), mac_length) != 0)
    return refused(identity_problem::bad_signature);

  // Signed by us: what it says can be parsed without fear of an attacker's input.
  boost::system::error_code ec;
  const auto header_json = boost::json::parse(*header, ec);
  if (ec || !header_json.is_object()) return refused(identity_problem::malformed);
  const auto* alg = header_json.as_object().if_contains("alg");
  if (!alg || !alg->is_string() || alg->as_string() != "HS256")
    return refused(identity_problem::bad_signature);

  auto claims = boost::json::parse(*payload, ec);
  if (ec || !claims.is_object()) return refused(identity_problem::malformed);
  auto& object = claims.as_object();
  const double now_s = std::chrono::duration<double>(now.time_since_epoch()).count();
  if (const auto* exp = object.if_contains("exp")) {
    const auto expires_at = jwt_numeric_date(*exp);
    if (!expires_at) return refused(identity_problem::malformed);
    if (now_s >= *expires_at) return refused(identity_problem::expired);
  }
  if (const auto* nbf = object.if_contains("nbf")) {
    const auto not_before = jwt_numeric_date(*nbf);
    if (!not_before) return refused(identity_problem::malformed);
    if (now_s < *not_before) return refused(identity_problem::not_yet_valid);
  }
  jwt_verified verified;
  verified.claims = std::move(object);
  return verified;
}

jwt_check check_hs256_jwt(std::string_view token, std::string_view secret,
                          std::chrono::system_clock::time_point now) {
  auto verified = verify_hs256(token, secret, now);
  jwt_check check;
  check.problem = verified.problem;
  if (!verified.claims) return check;
  const auto* sub = verified.claims->if_contains("sub");
  if (!sub || !sub->is_string() || sub->as_string().empty()) {
    check.problem = identity_problem::malformed;
    return check;
  }
  check.subject = std::string(sub->as_string());
  return check;
}

std::optional<std::string> verify_hs256_jwt(std::string_view token, std::string_view secret,
                                            std::chrono::system_clock::time_point now) {
  return check_hs256_jwt(token, secret, now).subject;
}

}  // namespace wsvisor
