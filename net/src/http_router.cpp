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

route route_request(std::string_view method, std::string_view target, bool is_upgrade,
                    const routing_options& options) {
  const std::string_view path = target_path(target);
  const bool is_get = method == "GET";
  const bool is_head = method == "HEAD";

  if (path.rfind("/admin/", 0) == 0 || path == "/admin") {
    if (options.admin_elsewhere && !options.is_admin_listener) return route::not_found;
    return route::admin;  // the admin API checks methods per endpoint
  }

  route found = route::not_found;
  if (path == "/health/live")
    found = route::health_live;
  else if (path == "/health/ready")
    found = route::health_ready;
  else if (path == "/health")
    found = route::health;
  else if (path == "/metrics")
    found =
        (options.admin_elsewhere && !options.is_admin_listener) ? route::not_found : route::metrics;
  else if (path == options.ws_path && !options.is_admin_listener)
    found = is_upgrade && is_get ? route::websocket : route::upgrade_required;

  if (found == route::not_found) return found;
  if (found == route::upgrade_required)
    return is_get || is_head ? found : route::method_not_allowed;
  if (found == route::websocket) return found;
  return is_get || is_head ? found : route::method_not_allowed;
}

}  // namespace wsvisor
