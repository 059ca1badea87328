// app.mode = "hub" (CONTRACT 13): the connection's side of Centrifugo's client protocol.
// It runs inside the connection actor like any application, but keeps its session (who
// the client is, its subscriptions, its pending proxy calls, its token's expiry) in the
// connection's durable state, so that a restart of the application after a crash keeps
// all of it: the subscriptions belong to the connection (the hub monitors the actor),
// not to the instance the restart replaces.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "wsvisor/application.hpp"

namespace wsvisor {

std::unique_ptr<application> make_hub_application();

// What the hub API does to one connection (run inside its actor, run_in_connection):
// subscribe it to `channel` server-side (a subscribe push); forget a channel the hub
// unsubscribed it from; a refresh (expired: closed 3005; else the new expiry, unix s).
void hub_server_subscribe(connection_handle& connection, const std::string& channel);
void hub_forget_channel(connection_handle& connection, const std::string& channel);
void hub_refresh(connection_handle& connection, bool expired, std::optional<int64_t> expire_at);

// Centrifugo's ping, which the janitor sends in hub mode (section 13.1).
inline constexpr const char* kHubHeartbeat = "{}";

}  // namespace wsvisor
