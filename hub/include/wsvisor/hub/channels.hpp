// Channel names, namespaces and who may do what in a channel (CONTRACT 13.2), with
// Centrifugo v5's rules. Pure functions of the name, the settings and the caller's state.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "wsvisor/config.hpp"
#include "wsvisor/hub/protocol.hpp"

namespace wsvisor::hub {

// A channel name taken apart. The views point into the name that was parsed.
struct channel_name {
  std::string_view ns;                  // before the first ':' ("" = the default namespace)
  std::string_view rest;                // after it (the whole name when there is no ':')
  bool user_limited = false;            // a '#' in rest
  std::vector<std::string_view> users;  // after the last '#', split at ',' (empty entries dropped)
};

// "ns:name" puts the channel in namespace ns; a '#' limits it to the users listed after it,
// comma separated ("dialog#u1,u2"); "#alice" is alice's personal channel (default
// namespace). nullopt for "" and for names longer than hub.channel_max_length bytes.
// The namespace is not looked up here (find_namespace does).
std::optional<channel_name> parse_channel(std::string_view channel, const hub_settings& hub);

// The namespace a channel belongs to: "" -> &hub.defaults; an unknown name -> nullptr
// (error_code::unknown_channel).
const hub_namespace* find_namespace(const hub_settings& hub, std::string_view ns);

// A channel name with its namespace, or why it has none: bad_request for a name that is
// not one (parse_channel's nullopt), unknown_channel for a namespace `hub` does not
// define. What every command and API method that names a channel checks first.
struct resolved_channel {
  std::optional<channel_name> name;
  const hub_namespace* ns = nullptr;  // set when error is nullopt
  std::optional<error_code> error;
};
resolved_channel resolve_channel(std::string_view channel, const hub_settings& hub);

// Whether `user` may be in a user-limited channel: always when the channel is not user
// limited; else only a user listed (an anonymous user, "", never).
bool user_may_access(const channel_name& channel, std::string_view user);

// The personal channel of a user: "#" + user.
std::string personal_channel(std::string_view user);

// Permission checks, each nullopt when allowed, else the error to reply with. They assume
// parse_channel and find_namespace succeeded; proxies (subscribe_proxy_enabled,
// publish_proxy_enabled) are the caller's: when a proxy is on, its answer decides instead.
// An anonymous caller has user "".

// Subscribe, in Centrifugo's order: a user-limited channel refuses every user it does not
// list, token or not (CONTRACT 13.2 enforces the limit always); then a valid subscription
// token for the channel grants; a user-limited channel grants the users it lists; else
// allow_subscribe_for_client grants a user, and an anonymous one only together with
// allow_subscribe_for_anonymous; else permission_denied.
std::optional<error_code> subscribe_permission(const hub_namespace& ns, const channel_name& channel,
                                               std::string_view user,
                                               bool has_valid_subscription_token);

// Publish from a client: a user-limited channel refuses users it does not list; then
// allow_publish_for_client grants a user (never an anonymous one: Centrifugo wants
// allow_publish_for_anonymous for that, which wsvisor does not have);
// allow_publish_for_subscriber grants a subscriber of the channel, anonymous or not; else
// permission_denied.
std::optional<error_code> publish_permission(const hub_namespace& ns, const channel_name& channel,
                                             std::string_view user, bool subscribed);

// Presence and presence_stats: not_available when the namespace has no presence; else
// allow_presence_for_subscriber grants a subscriber; else permission_denied.
std::optional<error_code> presence_permission(const hub_namespace& ns, bool subscribed);

// History: not_available when the namespace keeps none (history_size or history_ttl 0);
// else allow_history_for_subscriber grants a subscriber; else permission_denied.
std::optional<error_code> history_permission(const hub_namespace& ns, bool subscribed);

// Whether channels of the namespace keep a stream (history_size > 0 and history_ttl > 0).
bool keeps_history(const hub_namespace& ns);

}  // namespace wsvisor::hub
