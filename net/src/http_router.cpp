#include "wsvisor/http_router.hpp"

namespace wsvisor {

std::string_view target_path(std::string_view target) {
  const auto query = target.find('?');
  return query == std::string_view::npos ? target : target.substr(0, query);
}

namespace {

std::string_view trimmed(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

bool is_base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

}  // namespace

handshake_check check_websocket_handshake(std::optional<std::string_view> version,
                                          std::optional<std::string_view> key) {
  if (!key) return handshake_check::bad_key;
  // 16 bytes in base64: 22 characters and "==".
  const auto k = trimmed(*key);
  if (k.size() != 24 || k.substr(22) != "==") return handshake_check::bad_key;
  for (char c : k.substr(0, 22))
    if (!is_base64_char(c)) return handshake_check::bad_key;
  if (!version) return handshake_check::no_version;
  if (trimmed(*version) != "13") return handshake_check::bad_version;
  return handshake_check::ok;
}

namespace {

bool served_here(endpoint_family family, const routing_options& options) {
  switch (family) {
    case endpoint_family::health:
      return true;
    case endpoint_family::metrics:
    case endpoint_family::admin:
      return options.admin_elsewhere ? options.listener == listener_role::admin
                                     : options.listener == listener_role::main;
    case endpoint_family::api:
      return options.api_elsewhere ? options.listener == listener_role::api
                                   : options.listener == listener_role::main;
  }
  return false;
}

bool allows(const endpoint& e, std::string_view method) {
  if (e.methods.empty()) return true;
  for (const auto& m : e.methods)
    if (m == method || (m == "GET" && method == "HEAD")) return true;
  return false;
}

std::string allow_header(const endpoint& e) {
  std::string allow;
  for (const auto& m : e.methods) {
    if (!allow.empty()) allow += ", ";
    allow += m;
    if (m == "GET") allow += ", HEAD";
  }
  return allow;
}

}  // namespace

route_match route_table::match(std::string_view method, std::string_view target, bool is_upgrade,
                               const routing_options& options) const {
  const std::string_view path = target_path(target);
  route_match result;
  if (path == options.ws_path && options.listener == listener_role::main) {
    const bool get = method == "GET";
    if (is_upgrade && get)
      result.what = route_match::kind::websocket;
    else if (get || method == "HEAD")
      result.what = route_match::kind::upgrade_required;
    else {
      result.what = route_match::kind::method_not_allowed;
      result.allow = "GET, HEAD";
    }
    return result;
  }
  // Exact paths first; then the families' catch-alls ("/admin/*"), which answer 404
  // after their own authentication (a wrong bearer is told 401 on any admin path).
  const endpoint* fallback = nullptr;
  for (const auto& e : endpoints_) {
    if (!served_here(e.family, options)) continue;
    if (e.path.size() >= 2 && e.path.compare(e.path.size() - 2, 2, "/*") == 0) {
      const std::string_view prefix(e.path.data(), e.path.size() - 1);
      if (!fallback &&
          (path.substr(0, prefix.size()) == prefix || path == prefix.substr(0, prefix.size() - 1)))
        fallback = &e;
      continue;
    }
    if (e.path != path) continue;
    if (!allows(e, method)) {
      result.what = route_match::kind::method_not_allowed;
      result.allow = allow_header(e);
      return result;
    }
    result.what = route_match::kind::endpoint;
    result.found = &e;
    return result;
  }
  if (fallback) {
    result.what = route_match::kind::endpoint;
    result.found = fallback;
  }
  return result;  // not_found unless a catch-all took it
}

}  // namespace wsvisor
