// Hub mode's actors on CAF's test_coordinator (CONTRACT 13): the connection's side of
// Centrifugo's protocol, the hub service's channels, and what supervision does to them:
// a subscription belongs to its connection actor, dies with it (no TTL), survives a
// restart of its application, and a dead hub closes its subscribers with 3004.
#include <openssl/hmac.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <set>

#include "service_fixture.hpp"
#include "wsvisor/jwt.hpp"

namespace json = boost::json;

namespace {

constexpr const char* kSecret = "hub-test-secret";

wsvisor::settings hub_config() {
  auto s = defaults();
  s.app.mode = "hub";
  s.cluster.node_id = "node-h";
  s.auth.jwt_secret = kSecret;
  s.hub.allow_anonymous = true;
  s.hub.defaults.allow_subscribe_for_client = true;
  s.hub.defaults.allow_subscribe_for_anonymous = true;
  wsvisor::hub_namespace chat;
  chat.name = "chat";
  chat.presence = true;
  chat.join_leave = false;
  chat.history_size = 10;
  chat.history_ttl = std::chrono::minutes(5);
  chat.allow_subscribe_for_client = true;
  chat.allow_subscribe_for_anonymous = true;
  chat.allow_presence_for_subscriber = true;
  chat.allow_history_for_subscriber = true;
  s.hub.namespaces.push_back(chat);
  return s;
}

std::string hs256(const std::string& payload) {
  const std::string header = wsvisor::base64url_encode(R"({"alg":"HS256","typ":"JWT"})");
  const std::string body = wsvisor::base64url_encode(payload);
  const std::string signing_input = header + "." + body;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  HMAC(EVP_sha256(), kSecret, static_cast<int>(std::char_traits<char>::length(kSecret)),
       reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac,
       &mac_size);
  return signing_input + "." +
         wsvisor::base64url_encode(std::string(reinterpret_cast<char*>(mac), mac_size));
}

std::string token_for(const std::string& user) {
  return hs256(R"({"sub":")" + user + R"("})");
}

struct hub_fixture : fixture {
  explicit hub_fixture(wsvisor::settings config = hub_config()) : fixture(config) {}

  // An open connection (the 101 went out) that has sent nothing yet.
  attempt open(const std::string& ip_suffix = "") {
    auto a = admit("", "192.0.2." + (ip_suffix.empty() ? std::to_string(++opened_) : ip_suffix));
    run();
    REQUIRE(a.decision().admitted);
    caf::anon_send(a.decision().connection, wsvisor::opened_atom::value);
    run();
    return a;
  }
  void frame(const attempt& a, std::string text) {
    caf::anon_send(a.decision().connection, wsvisor::inbound_atom::value, std::move(text), true);
    run();
  }
  // Connected (anonymous, or as `user` through a connect token).
  attempt connected(const std::string& user = "") {
    auto a = open();
    frame(a, user.empty() ? R"({"id":1,"connect":{}})"
                          : R"({"id":1,"connect":{"token":")" + token_for(user) + R"("}})");
    REQUIRE_FALSE(a.port->sends.empty());
    REQUIRE(reply_of(a, 1).as_object().contains("connect"));
    return a;
  }
  void subscribe(const attempt& a, const std::string& channel, uint32_t id) {
    frame(a,
          R"({"id":)" + std::to_string(id) + R"(,"subscribe":{"channel":")" + channel + R"("}})");
    REQUIRE(reply_of(a, id).as_object().contains("subscribe"));
  }
  wsvisor::hub_api_reply api(const std::string& method, json::object params) {
    std::optional<wsvisor::hub_api_reply> reply;
    svc->hub_call(method, std::move(params),
                  [&](wsvisor::hub_api_reply r) { reply = std::move(r); });
    run();
    REQUIRE(reply);
    return *reply;
  }
  uint64_t presence_count(const std::string& channel) {
    auto reply = api("presence_stats", {{"channel", channel}});
    REQUIRE(reply.error == 0);
    return reply.result.at("num_clients").to_number<uint64_t>();
  }
  // The reply with this id among what the port was sent (each frame one JSON object).
  static json::value reply_of(const attempt& a, uint32_t id) {
    for (const auto& sent : a.port->sends) {
      auto value = json::parse(sent.payload);
      if (value.is_object() && value.as_object().contains("id") &&
          value.as_object().at("id").to_number<uint32_t>() == id)
        return value;
    }
    FAIL("no reply with id " << id);
    return {};
  }
  // The data of every publication pushed to the port for `channel`, in order.
  static std::vector<std::string> publications(const attempt& a, const std::string& channel) {
    std::vector<std::string> all;
    for (const auto& sent : a.port->sends) {
      auto value = json::parse(sent.payload);
      if (!value.is_object() || !value.as_object().contains("push")) continue;
      const auto& push = value.as_object().at("push").as_object();
      if (push.contains("pub") && push.at("channel").as_string() == channel)
        all.push_back(json::serialize(push.at("pub").as_object().at("data")));
    }
    return all;
  }
  int opened_ = 0;
};

}  // namespace

TEST_CASE("hub: connect, subscribe, and a publication framed once for every subscriber") {
  hub_fixture h;
  h.start_ready();
  auto alice = h.connected();
  auto bob = h.connected();
  const auto reply = h.reply_of(alice, 1).as_object().at("connect").as_object();
  CHECK(std::string(reply.at("client").as_string()).rfind("node-h.", 0) == 0);
  CHECK(reply.at("ping").to_number<int>() == 25);
  CHECK(reply.at("pong").as_bool());
  h.subscribe(alice, "chat:room", 2);
  h.subscribe(bob, "chat:room", 2);
  auto published = h.api("publish", {{"channel", "chat:room"}, {"data", {{"text", "hi"}}}});
  REQUIRE(published.error == 0);
  CHECK(published.result.at("offset").to_number<uint64_t>() == 1);
  CHECK(h.publications(alice, "chat:room") == std::vector<std::string>{R"({"text":"hi"})"});
  CHECK(h.publications(bob, "chat:room") == std::vector<std::string>{R"({"text":"hi"})"});
  CHECK(alice.port->shared_sends == 1);  // the shared frame, not a copy
  CHECK(bob.port->shared_sends == 1);
  CHECK(h.stats.publications().Value() == 1);
  CHECK(h.stats.deliveries().Value() == 2);
  CHECK(h.stats.hub_subscriptions().Value() == 2);
  // Unsubscribed: no more publications.
  h.frame(alice, R"({"id":3,"unsubscribe":{"channel":"chat:room"}})");
  h.api("publish", {{"channel", "chat:room"}, {"data", 2}});
  CHECK(h.publications(alice, "chat:room").size() == 1);
  CHECK(h.publications(bob, "chat:room").size() == 2);
  CHECK(h.stats.hub_subscriptions().Value() == 1);
}

TEST_CASE("hub: errors with Centrifugo's codes, a malformed frame closes 3501") {
  hub_fixture h;
  h.start_ready();
  auto a = h.connected();
  h.frame(a, R"({"id":2,"subscribe":{"channel":"nope:x"}})");
  CHECK(h.reply_of(a, 2).at("error").at("code").to_number<int>() == 102);
  h.subscribe(a, "chat:x", 3);
  h.frame(a, R"({"id":4,"subscribe":{"channel":"chat:x"}})");
  CHECK(h.reply_of(a, 4).at("error").at("code").to_number<int>() == 105);
  h.frame(a, R"({"id":5,"subscribe":{"channel":"dialog#u1,u2"}})");
  CHECK(h.reply_of(a, 5).at("error").at("code").to_number<int>() == 103);  // anonymous
  h.frame(a, R"({"id":6,"presence":{"channel":"other"}})");  // default ns: no presence
  CHECK(h.reply_of(a, 6).at("error").at("code").to_number<int>() == 108);
  h.frame(a, "not json");
  REQUIRE(a.port->closes.size() == 1);
  CHECK(a.port->closes[0].code == 3501);
}

TEST_CASE("hub: no connect within hub.connect_timeout closes 3502") {
  auto config = hub_config();
  config.hub.connect_timeout = 2s;
  hub_fixture h(config);
  h.start_ready();
  auto a = h.open();
  h.pass(1900ms, 100ms);
  CHECK(a.port->closes.empty());
  h.pass(200ms, 100ms);
  REQUIRE(a.port->closes.size() == 1);
  CHECK(a.port->closes[0].code == 3502);
}

TEST_CASE("hub: the per-user cap is decided at connect when the token names the user (3504)") {
  auto config = hub_config();
  config.limits.max_per_user = 2;
  hub_fixture h(config);
  h.start_ready();
  auto first = h.connected("alice");
  auto second = h.connected("alice");
  auto third = h.open();
  h.frame(third, R"({"id":1,"connect":{"token":")" + token_for("alice") + R"("}})");
  h.pass(1000ms, 50ms);  // the guard sweeps alice first: healthy connections stay
  REQUIRE(third.port->closes.size() == 1);
  CHECK(third.port->closes[0].code == 3504);
  CHECK(first.port->closes.empty());
  // One of alice's connections goes: a new one gets in.
  caf::anon_send(first.decision().connection, wsvisor::peer_gone_atom::value, close_reason::client,
                 uint16_t{1000}, std::string());
  h.run();
  auto fourth = h.connected("alice");
  CHECK(fourth.port->closes.empty());
  h.check_invariant(3);  // second, fourth, and third until its close completes
}

TEST_CASE("hub: recovery is all or nothing") {
  hub_fixture h;
  h.start_ready();
  for (int i = 1; i <= 5; ++i) h.api("publish", {{"channel", "chat:r"}, {"data", i}});
  auto epoch =
      std::string(h.api("history", {{"channel", "chat:r"}}).result.at("epoch").as_string());
  auto a = h.connected();
  h.frame(a, R"({"id":2,"subscribe":{"channel":"chat:r","recover":true,"offset":2,"epoch":")" +
                 epoch + R"("}})");
  auto result = h.reply_of(a, 2).at("subscribe").as_object();
  CHECK(result.at("recovered").as_bool());
  CHECK(result.at("publications").as_array().size() == 3);
  CHECK(result.at("offset").to_number<uint64_t>() == 5);
  // A wrong epoch recovers nothing.
  auto b = h.connected();
  h.frame(b, R"({"id":2,"subscribe":{"channel":"chat:r","recover":true,"offset":2,"epoch":"x"}})");
  auto other = h.reply_of(b, 2).at("subscribe").as_object();
  CHECK_FALSE(other.contains("recovered"));
  CHECK_FALSE(other.contains("publications"));
  CHECK(h.stats.recoveries(true).Value() == 1);
  CHECK(h.stats.recoveries(false).Value() == 1);
}

TEST_CASE(
    "hub: a connection crashed within budget keeps its 100 subscriptions, past it loses all") {
  auto config = hub_config();
  config.supervision.connection_restarts = 2;
  hub_fixture h(config);
  h.start_ready();
  auto a = h.connected();
  for (uint32_t i = 0; i < 100; ++i) h.subscribe(a, "chat:c" + std::to_string(i), i + 2);
  CHECK(h.stats.hub_subscriptions().Value() == 100);
  wsvisor::fault_request crash;
  crash.what = wsvisor::fault_request::action::crash;
  crash.on = wsvisor::fault_request::target::connection;
  crash.id = a.decision().connection_id;
  h.svc->inject_fault(crash, [](uint64_t) {});
  h.run();
  // Restarted in place: still in every channel, and still connected.
  CHECK(h.stats.hub_subscriptions().Value() == 100);
  h.api("publish", {{"channel", "chat:c42"}, {"data", 1}});
  CHECK(h.publications(a, "chat:c42").size() == 1);
  h.frame(a, R"({"id":500,"presence_stats":{"channel":"chat:c7"}})");
  CHECK(h.reply_of(a, 500).at("presence_stats").at("num_clients").to_number<int>() == 1);
  // Past the budget: closed 1011, and out of every channel and presence at once.
  h.svc->inject_fault(crash, [](uint64_t) {});
  h.run();
  h.svc->inject_fault(crash, [](uint64_t) {});
  h.run();
  CHECK(h.stats.hub_subscriptions().Value() == 0);
  CHECK(h.presence_count("chat:c7") == 0);
  h.check_invariant(0);
}

TEST_CASE("hub: a shard that dies takes its subscribers out of presence at once, no TTL") {
  hub_fixture h;
  h.start_ready();
  std::vector<attempt> all;
  for (int i = 0; i < 1000; ++i) {
    all.push_back(h.connected());
    h.subscribe(all.back(), "chat:big", 2);
  }
  CHECK(h.presence_count("chat:big") == 1000);
  h.crash(wsvisor::fault_request::target::shard, 0);
  h.run();  // no virtual time passes
  uint64_t on_shard_one = 0;
  for (const auto& a : all) on_shard_one += a.port->closes.empty() ? 1 : 0;
  CHECK(on_shard_one > 0);
  CHECK(on_shard_one < 1000);
  CHECK(h.presence_count("chat:big") == on_shard_one);
  CHECK(h.stats.hub_subscriptions().Value() == static_cast<double>(on_shard_one));
}

TEST_CASE(
    "hub: the janitor's heartbeat is Centrifugo's {} ping, and silence after it is a zombie") {
  auto config = hub_config();
  config.janitor.ping_interval = 2s;
  config.janitor.pong_timeout = 1s;
  config.janitor.sweep_interval = 100ms;
  hub_fixture h(config);
  h.start_ready();
  auto silent = h.admit("", "192.0.2.9", h.port(true, false));
  h.run();
  caf::anon_send(silent.decision().connection, wsvisor::opened_atom::value);
  h.frame(silent, R"({"id":1,"connect":{}})");
  h.pass(2500ms, 100ms);
  CHECK(silent.port->ping_messages == 1);
  CHECK(silent.port->pings == 0);  // no WebSocket ping in hub mode
  CHECK(silent.port->sends.back().payload == "{}");
  h.pass(1200ms, 100ms);
  CHECK(silent.port->aborts == std::vector<close_reason>{close_reason::zombie});
}

TEST_CASE("hub: a dead hub closes its subscribers with 3004; the restarted one serves again") {
  hub_fixture h;
  h.start_ready();
  auto a = h.connected();
  auto idle = h.connected();
  h.subscribe(a, "chat:x", 2);
  wsvisor::fault_request crash;
  crash.what = wsvisor::fault_request::action::crash;
  crash.on = wsvisor::fault_request::target::hub;
  h.svc->inject_fault(crash, [](uint64_t) {});
  h.run();
  h.pass(100ms);  // the root's restart backoff
  REQUIRE(a.port->closes.size() == 1);
  CHECK(a.port->closes[0].code == 3004);
  CHECK(idle.port->closes.empty());  // subscribed to nothing: nothing lost
  h.subscribe(idle, "chat:x", 2);
  CHECK(h.presence_count("chat:x") == 1);
}
