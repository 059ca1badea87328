#include "wsvisor/hub/channels.hpp"

namespace wsvisor::hub {

std::optional<channel_name> parse_channel(std::string_view channel, const hub_settings& hub) {
  if (channel.empty() || channel.size() > hub.channel_max_length) return std::nullopt;
  channel_name name;
  const auto colon = channel.find(':');
  if (colon == std::string_view::npos) {
    name.rest = channel;
  } else {
    name.ns = channel.substr(0, colon);
    name.rest = channel.substr(colon + 1);
  }
  // The users come after the last '#' (Centrifugo's user boundary), as a ',' list.
  const auto hash = name.rest.rfind('#');
  if (hash != std::string_view::npos) {
    name.user_limited = true;
    std::string_view users = name.rest.substr(hash + 1);
    while (true) {
      const auto comma = users.find(',');
      const std::string_view user = users.substr(0, comma);
      if (!user.empty()) name.users.push_back(user);
      if (comma == std::string_view::npos) break;
      users.remove_prefix(comma + 1);
    }
  }
  return name;
}

const hub_namespace* find_namespace(const hub_settings& hub, std::string_view ns) {
  if (ns.empty()) return &hub.defaults;
  for (const hub_namespace& candidate : hub.namespaces)
    if (candidate.name == ns) return &candidate;
  return nullptr;
}

resolved_channel resolve_channel(std::string_view channel, const hub_settings& hub) {
  resolved_channel resolved;
  resolved.name = parse_channel(channel, hub);
  if (!resolved.name) {
    resolved.error = error_code::bad_request;
    return resolved;
  }
  resolved.ns = find_namespace(hub, resolved.name->ns);
  if (!resolved.ns) resolved.error = error_code::unknown_channel;
  return resolved;
}

bool user_may_access(const channel_name& channel, std::string_view user) {
  if (!channel.user_limited) return true;
  if (user.empty()) return false;
  for (std::string_view listed : channel.users)
    if (listed == user) return true;
  return false;
}

std::string personal_channel(std::string_view user) {
  return "#" + std::string(user);
}

bool keeps_history(const hub_namespace& ns) {
  return ns.history_size > 0 && ns.history_ttl > duration::zero();
}

std::optional<error_code> subscribe_permission(const hub_namespace& ns, const channel_name& channel,
                                               std::string_view user,
                                               bool has_valid_subscription_token) {
  if (!user_may_access(channel, user)) return error_code::permission_denied;
  if (has_valid_subscription_token) return std::nullopt;
  // A listed user of a user-limited channel needs nothing more (user_may_access said so).
  if (channel.user_limited) return std::nullopt;
  if (ns.allow_subscribe_for_client && (!user.empty() || ns.allow_subscribe_for_anonymous))
    return std::nullopt;
  return error_code::permission_denied;
}

std::optional<error_code> publish_permission(const hub_namespace& ns, const channel_name& channel,
                                             std::string_view user, bool subscribed) {
  if (!user_may_access(channel, user)) return error_code::permission_denied;
  if (ns.allow_publish_for_client && !user.empty()) return std::nullopt;
  if (ns.allow_publish_for_subscriber && subscribed) return std::nullopt;
  return error_code::permission_denied;
}

std::optional<error_code> presence_permission(const hub_namespace& ns, bool subscribed) {
  if (!ns.presence) return error_code::not_available;
  if (ns.allow_presence_for_subscriber && subscribed) return std::nullopt;
  return error_code::permission_denied;
}

std::optional<error_code> history_permission(const hub_namespace& ns, bool subscribed) {
  if (!keeps_history(ns)) return error_code::not_available;
  if (ns.allow_history_for_subscriber && subscribed) return std::nullopt;
  return error_code::permission_denied;
}

}  // namespace wsvisor::hub
