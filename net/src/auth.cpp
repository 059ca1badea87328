#include "wsvisor/auth.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <vector>

namespace wsvisor {
namespace http = boost::beast::http;

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
