#include "wsvisor/http_router.hpp"

namespace wsvisor {

std::string_view target_path(std::string_view target) {
  const auto query = target.find('?');
  return query == std::string_view::npos ? target : target.substr(0, query);
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
