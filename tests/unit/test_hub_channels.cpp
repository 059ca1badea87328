// Channel names and the rules of who may do what in them (CONTRACT 13.2, Centrifugo v5's
// permission model): namespaces, user-limited and personal channels, the length bound
// and the subscribe/publish/presence/history checks.
#include <doctest/doctest.h>

#include <string>

#include "wsvisor/hub/channels.hpp"

namespace hub = wsvisor::hub;
using namespace std::chrono_literals;
using hub::error_code;

namespace {

wsvisor::hub_settings settings_with_chat() {
  wsvisor::hub_settings settings;
  wsvisor::hub_namespace chat;
  chat.name = "chat";
  chat.presence = true;
  settings.namespaces.push_back(chat);
  return settings;
}

hub::channel_name name(std::string_view channel) {
  static const wsvisor::hub_settings settings;
  auto parsed = hub::parse_channel(channel, settings);
  REQUIRE(parsed);
  return *parsed;
}

}  // namespace

TEST_CASE("parse_channel: namespace and rest") {
  const wsvisor::hub_settings settings;
  auto n = hub::parse_channel("news", settings);
  REQUIRE(n);
  CHECK(n->ns == "");
  CHECK(n->rest == "news");
  CHECK_FALSE(n->user_limited);

  n = hub::parse_channel("chat:room:1", settings);
  REQUIRE(n);
  CHECK(n->ns == "chat");
  CHECK(n->rest == "room:1");

  n = hub::parse_channel(":x", settings);
  REQUIRE(n);
  CHECK(n->ns == "");
  CHECK(n->rest == "x");
}

TEST_CASE("parse_channel: user-limited and personal channels") {
  const wsvisor::hub_settings settings;
  auto n = hub::parse_channel("dialog#u1,u2", settings);
  REQUIRE(n);
  CHECK(n->user_limited);
  REQUIRE(n->users.size() == 2);
  CHECK(n->users[0] == "u1");
  CHECK(n->users[1] == "u2");

  n = hub::parse_channel("#alice", settings);
  REQUIRE(n);
  CHECK(n->ns == "");
  CHECK(n->user_limited);
  REQUIRE(n->users.size() == 1);
  CHECK(n->users[0] == "alice");
  CHECK(hub::personal_channel("alice") == "#alice");

  n = hub::parse_channel("chat:#bob", settings);
  REQUIRE(n);
  CHECK(n->ns == "chat");
  CHECK(n->users.size() == 1);

  // The users are those after the last '#'; empty entries are nobody.
  n = hub::parse_channel("a#b#c,,d,", settings);
  REQUIRE(n);
  REQUIRE(n->users.size() == 2);
  CHECK(n->users[0] == "c");
  CHECK(n->users[1] == "d");

  n = hub::parse_channel("empty#", settings);
  REQUIRE(n);
  CHECK(n->user_limited);
  CHECK(n->users.empty());
}

TEST_CASE("parse_channel: empty and too long names are refused") {
  wsvisor::hub_settings settings;
  CHECK_FALSE(hub::parse_channel("", settings));
  CHECK(hub::parse_channel(std::string(255, 'c'), settings));
  CHECK_FALSE(hub::parse_channel(std::string(256, 'c'), settings));
  settings.channel_max_length = 10;
  CHECK(hub::parse_channel("0123456789", settings));
  CHECK_FALSE(hub::parse_channel("0123456789a", settings));
}

TEST_CASE("find_namespace: default, known, unknown") {
  const auto settings = settings_with_chat();
  CHECK(hub::find_namespace(settings, "") == &settings.defaults);
  const auto* chat = hub::find_namespace(settings, "chat");
  REQUIRE(chat);
  CHECK(chat->name == "chat");
  CHECK(chat->presence);
  CHECK(hub::find_namespace(settings, "nope") == nullptr);
  CHECK(hub::find_namespace(settings, "Chat") == nullptr);
}

TEST_CASE("user_may_access") {
  CHECK(hub::user_may_access(name("news"), "anyone"));
  CHECK(hub::user_may_access(name("news"), ""));
  CHECK(hub::user_may_access(name("dialog#u1,u2"), "u2"));
  CHECK_FALSE(hub::user_may_access(name("dialog#u1,u2"), "u3"));
  CHECK_FALSE(hub::user_may_access(name("dialog#u1,u2"), ""));
  CHECK_FALSE(hub::user_may_access(name("empty#"), ""));
  CHECK(hub::user_may_access(name("#alice"), "alice"));
  CHECK_FALSE(hub::user_may_access(name("#alice"), "alic"));
}

TEST_CASE("subscribe_permission") {
  wsvisor::hub_namespace ns;
  // Nothing allowed: only a token, or being listed in a user-limited channel.
  CHECK(hub::subscribe_permission(ns, name("news"), "u", false) == error_code::permission_denied);
  CHECK_FALSE(hub::subscribe_permission(ns, name("news"), "u", true));
  CHECK_FALSE(hub::subscribe_permission(ns, name("news"), "", true));
  CHECK_FALSE(hub::subscribe_permission(ns, name("#u"), "u", false));
  CHECK(hub::subscribe_permission(ns, name("#u"), "v", false) == error_code::permission_denied);
  // The user limit holds even against a token.
  CHECK(hub::subscribe_permission(ns, name("#u"), "v", true) == error_code::permission_denied);

  ns.allow_subscribe_for_client = true;
  CHECK_FALSE(hub::subscribe_permission(ns, name("news"), "u", false));
  CHECK(hub::subscribe_permission(ns, name("news"), "", false) == error_code::permission_denied);
  CHECK(hub::subscribe_permission(ns, name("#u"), "v", false) == error_code::permission_denied);
  ns.allow_subscribe_for_anonymous = true;
  CHECK_FALSE(hub::subscribe_permission(ns, name("news"), "", false));

  // allow_subscribe_for_anonymous alone lets no one in.
  wsvisor::hub_namespace anonymous_only;
  anonymous_only.allow_subscribe_for_anonymous = true;
  CHECK(hub::subscribe_permission(anonymous_only, name("news"), "", false) ==
        error_code::permission_denied);
}

TEST_CASE("publish_permission") {
  wsvisor::hub_namespace ns;
  CHECK(hub::publish_permission(ns, name("news"), "u", true) == error_code::permission_denied);
  ns.allow_publish_for_subscriber = true;
  CHECK_FALSE(hub::publish_permission(ns, name("news"), "u", true));
  CHECK_FALSE(hub::publish_permission(ns, name("news"), "", true));
  CHECK(hub::publish_permission(ns, name("news"), "u", false) == error_code::permission_denied);

  ns = {};
  ns.allow_publish_for_client = true;
  CHECK_FALSE(hub::publish_permission(ns, name("news"), "u", false));
  CHECK(hub::publish_permission(ns, name("news"), "", false) == error_code::permission_denied);
  CHECK_FALSE(hub::publish_permission(ns, name("dialog#u,v"), "v", false));
  CHECK(hub::publish_permission(ns, name("dialog#u,v"), "w", true) ==
        error_code::permission_denied);
}

TEST_CASE("presence_permission and history_permission") {
  wsvisor::hub_namespace ns;
  CHECK(hub::presence_permission(ns, true) == error_code::not_available);
  CHECK(hub::history_permission(ns, true) == error_code::not_available);
  CHECK_FALSE(hub::keeps_history(ns));

  ns.presence = true;
  CHECK(hub::presence_permission(ns, true) == error_code::permission_denied);
  ns.allow_presence_for_subscriber = true;
  CHECK_FALSE(hub::presence_permission(ns, true));
  CHECK(hub::presence_permission(ns, false) == error_code::permission_denied);

  ns.history_size = 10;
  CHECK(hub::history_permission(ns, true) == error_code::not_available);  // no ttl
  ns.history_ttl = std::chrono::duration_cast<wsvisor::duration>(60s);
  CHECK(hub::keeps_history(ns));
  CHECK(hub::history_permission(ns, true) == error_code::permission_denied);
  ns.allow_history_for_subscriber = true;
  CHECK_FALSE(hub::history_permission(ns, true));
  CHECK(hub::history_permission(ns, false) == error_code::permission_denied);
}
