// Gateway mode's actors on CAF's test_coordinator (CONTRACT 11 and 12): the connection's
// upstream queue (ordering, bounds), the upstream service (retries with one delivery id,
// the breaker, cancellation, its own crash), the connect hook inside admission, and the
// lifecycle events. A fake backend (an upstream_port) answers when the test says.
#include <boost/json/parse.hpp>

#include <deque>

#include "service_fixture.hpp"
#include "wsvisor/upstream_port.hpp"

using wsvisor::upstream_attempt;
using wsvisor::upstream_reply;

namespace {

// The backend as the actors see it: attempts wait until the test answers them.
class fake_backend : public wsvisor::upstream_port {
 public:
  struct attempt {
    uint64_t id;
    upstream_attempt request;
    completion done;
    std::string header(const std::string& name) const {
      for (const auto& [key, value] : request.headers)
        if (key == name) return value;
      return {};
    }
  };

  uint64_t start(upstream_attempt request, completion done) override {
    const uint64_t id = ++next_;
    waiting.push_back({id, std::move(request), std::move(done)});
    seen.push_back(waiting.back().request);
    return id;
  }
  void cancel(uint64_t id) override {
    cancelled.push_back(id);
    for (auto it = waiting.begin(); it != waiting.end(); ++it)
      if (it->id == id) {
        upstream_reply reply;
        reply.result = upstream_reply::outcome::cancelled;
        auto done = std::move(it->done);
        waiting.erase(it);
        done(std::move(reply));
        return;
      }
  }
  // Answers the oldest waiting attempt.
  void answer(unsigned status, std::string body = {}, std::string content_type = "text/plain") {
    REQUIRE_FALSE(waiting.empty());
    auto a = std::move(waiting.front());
    waiting.pop_front();
    upstream_reply reply;
    reply.status = status;
    reply.body = std::move(body);
    reply.headers = {{"content-type", std::move(content_type)}};
    a.done(std::move(reply));
  }
  void fail(upstream_reply::outcome outcome) {
    REQUIRE_FALSE(waiting.empty());
    auto a = std::move(waiting.front());
    waiting.pop_front();
    upstream_reply reply;
    reply.result = outcome;
    a.done(std::move(reply));
  }
  std::string header_of(size_t seen_index, const std::string& name) const {
    for (const auto& [key, value] : seen.at(seen_index).headers)
      if (key == name) return value;
    return {};
  }

  std::deque<attempt> waiting;
  std::vector<upstream_attempt> seen;  // every attempt ever started, in order
  std::vector<uint64_t> cancelled;

 private:
  uint64_t next_ = 0;
};

wsvisor::settings gateway_config() {
  auto s = defaults();
  s.app.mode = "gateway";
  s.upstream.url = "http://backend.test";
  s.upstream.retries = 2;
  s.upstream.backoff_min = 100ms;
  s.upstream.backoff_max = 400ms;
  s.cluster.node_id = "node-a";
  return s;
}

struct gateway : fixture {
  std::shared_ptr<fake_backend> backend;
  explicit gateway(wsvisor::settings config = gateway_config(),
                   std::shared_ptr<fake_backend> b = std::make_shared<fake_backend>())
      : fixture(config, b), backend(b) {}

  // An open connection of `user`.
  attempt open(const std::string& user) {
    auto a = admit(user, "192.0.2." + std::to_string(++opened_));
    run();
    REQUIRE(a.decision().admitted);
    caf::anon_send(a.decision().connection, wsvisor::opened_atom::value);
    run();
    return a;
  }
  void message(const attempt& a, std::string text) {
    caf::anon_send(a.decision().connection, wsvisor::inbound_atom::value, std::move(text), true);
    run();
  }
  int opened_ = 0;
};

std::vector<std::string> texts(const fake_port& port) {
  std::vector<std::string> all;
  for (const auto& s : port.sends) all.push_back(s.payload);
  return all;
}

}  // namespace

TEST_CASE("a selector of users, prepared, matches each listed user once") {
  wsvisor::connection_selector to;
  to.what = wsvisor::connection_selector::kind::users;
  to.users = {"carol", "alice", "bob", "alice"};
  to.prepare();
  CHECK(to.users == std::vector<std::string>{"alice", "bob", "carol"});
  for (const char* user : {"alice", "bob", "carol"}) CHECK(to.matches(7, user));
  CHECK_FALSE(to.matches(7, "dave"));
  CHECK_FALSE(to.matches(7, ""));
}

TEST_CASE("message hook: one request in flight per connection, replies in order") {
  gateway g;
  g.start_ready();
  const auto a = g.open("alice");
  g.message(a, "one");
  g.message(a, "two");
  g.message(a, "three");
  REQUIRE(g.backend->waiting.size() == 1);  // per_connection_inflight = 1
  const auto& first = g.backend->seen.at(0);
  CHECK(first.url == "http://backend.test/ws/message");
  CHECK(first.body == "one");
  const auto id = std::to_string(a.decision().connection_id);
  CHECK(g.backend->header_of(0, "X-Wsvisor-Connection") == "node-a." + id);
  CHECK(g.backend->header_of(0, "X-Wsvisor-User") == "alice");
  CHECK(g.backend->header_of(0, "X-Wsvisor-Delivery") == "node-a." + id + ":1");
  CHECK(g.backend->header_of(0, "Content-Type") == "text/plain; charset=utf-8");
  g.backend->answer(200, "r1");
  g.run();
  REQUIRE(g.backend->waiting.size() == 1);
  CHECK(g.backend->header_of(1, "X-Wsvisor-Delivery") == "node-a." + id + ":2");
  g.backend->answer(204);
  g.run();
  g.backend->answer(200, R"({"x":1})", "application/json");
  g.run();
  CHECK(texts(*a.port) == std::vector<std::string>{"r1", R"({"x":1})"});  // 204: nothing
  CHECK(a.port->sends.back().text);
  CHECK(g.stats.upstream_requests(wsvisor::upstream_hook::message, wsvisor::upstream_outcome::ok)
            .Value() == 3);
}

TEST_CASE("a binary reply goes back binary, a text content type text") {
  gateway g;
  g.start_ready();
  const auto a = g.open("alice");
  caf::anon_send(a.decision().connection, wsvisor::inbound_atom::value, std::string("\x01\x02"),
                 false);
  g.run();
  CHECK(g.backend->header_of(0, "Content-Type") == "application/octet-stream");
  g.backend->answer(200, std::string("\x03\x04"), "application/octet-stream");
  g.run();
  REQUIRE(a.port->sends.size() == 1);
  CHECK_FALSE(a.port->sends[0].text);
}

TEST_CASE("503, 503, 200: one reply, three attempts with the same delivery id") {
  gateway g;
  g.start_ready();
  const auto a = g.open("alice");
  g.message(a, "hello");
  g.backend->answer(503);
  g.run();
  CHECK(g.backend->waiting.empty());  // backing off
  g.pass(400ms);
  g.backend->answer(503);
  g.run();
  g.pass(400ms);
  REQUIRE(g.backend->seen.size() == 3);
  g.backend->answer(200, "world");
  g.run();
  CHECK(g.backend->header_of(0, "X-Wsvisor-Delivery") ==
        g.backend->header_of(1, "X-Wsvisor-Delivery"));
  CHECK(g.backend->header_of(1, "X-Wsvisor-Delivery") ==
        g.backend->header_of(2, "X-Wsvisor-Delivery"));
  CHECK(texts(*a.port) == std::vector<std::string>{"world"});
  CHECK(g.stats.upstream_retries().Value() == 2);
}

TEST_CASE("failures become error frames and never close the WebSocket") {
  gateway g;
  g.start_ready();
  const auto a = g.open("alice");
  SUBCASE("a final 4xx: rejected, with its status") {
    g.message(a, "x");
    g.backend->answer(422);
    g.run();
    REQUIRE(a.port->sends.size() == 1);
    const auto frame = boost::json::parse(a.port->sends[0].payload).as_object();
    CHECK(frame.at("error").as_string() == "rejected");
    CHECK(frame.at("status").as_int64() == 422);
    CHECK(frame.at("delivery").as_string().size() > 0);
  }
  SUBCASE("retries spent: upstream_unavailable") {
    g.message(a, "x");
    for (int i = 0; i < 3; ++i) {
      g.backend->fail(upstream_reply::outcome::connect_error);
      g.run();
      g.pass(400ms);
    }
    REQUIRE(a.port->sends.size() == 1);
    CHECK(boost::json::parse(a.port->sends[0].payload).as_object().at("error").as_string() ==
          "upstream_unavailable");
  }
  CHECK(a.port->closes.empty());
  CHECK(a.port->aborts.empty());
}

TEST_CASE("more than upstream.queue waiting: the newest fails busy") {
  auto config = gateway_config();
  config.upstream.queue = 2;
  gateway g(config);
  g.start_ready();
  const auto a = g.open("alice");
  for (const char* m : {"1", "2", "3", "4"}) g.message(a, m);  // 1 in flight, 2 waiting
  REQUIRE(a.port->sends.size() == 1);
  CHECK(boost::json::parse(a.port->sends[0].payload).as_object().at("error").as_string() == "busy");
  for (int i = 0; i < 3; ++i) {
    g.backend->answer(200, "ok");
    g.run();
  }
  CHECK(a.port->sends.size() == 4);
  CHECK(g.backend->seen.size() == 3);
}

TEST_CASE("the breaker opens after breaker_failures, fails fast, half-opens, closes") {
  auto config = gateway_config();
  config.upstream.retries = 0;
  config.upstream.breaker_failures = 2;
  config.upstream.breaker_open = 5000ms;
  gateway g(config);
  g.start_ready();
  const auto a = g.open("alice");
  for (int i = 0; i < 2; ++i) {
    g.message(a, "x");
    g.backend->answer(503);
    g.run();
  }
  CHECK(g.stats.upstream_breaker_open().Value() == 1);
  g.message(a, "fast");
  CHECK(g.backend->waiting.empty());  // failed at once, the backend never asked
  CHECK(
      g.stats.upstream_requests(wsvisor::upstream_hook::message, wsvisor::upstream_outcome::breaker)
          .Value() == 1);
  g.pass(5000ms, 500ms);
  g.message(a, "probe");
  REQUIRE(g.backend->waiting.size() == 1);
  g.backend->answer(200, "back");
  g.run();
  CHECK(g.stats.upstream_breaker_open().Value() == 0);
  g.message(a, "normal");
  CHECK(g.backend->waiting.size() == 1);
}

TEST_CASE("a connection that ends drops its queue and aborts its call in flight") {
  gateway g;
  g.start_ready();
  const auto a = g.open("alice");
  g.message(a, "1");
  g.message(a, "2");
  REQUIRE(g.backend->waiting.size() == 1);
  caf::anon_send(a.decision().connection, wsvisor::peer_gone_atom::value, close_reason::client,
                 uint16_t{1000}, std::string());
  g.run();
  CHECK(g.backend->cancelled.size() == 1);
  g.pass(2000ms, 100ms);
  CHECK(g.backend->seen.size() == 1);  // the waiting one never reached the backend
  CHECK(
      g.stats
          .upstream_requests(wsvisor::upstream_hook::message, wsvisor::upstream_outcome::cancelled)
          .Value() == 1);
  g.check_invariant(0);
}

TEST_CASE("a crash of the upstream service answers its calls and it is restarted") {
  gateway g;
  g.start_ready();
  const auto a = g.open("alice");
  g.message(a, "x");
  REQUIRE(g.backend->waiting.size() == 1);
  wsvisor::fault_request fault;
  fault.on = wsvisor::fault_request::target::upstream;
  g.svc->inject_fault(fault, [](uint64_t) {});
  g.run();
  REQUIRE(a.port->sends.size() == 1);
  CHECK(boost::json::parse(a.port->sends[0].payload).as_object().at("error").as_string() ==
        "upstream_unavailable");
  CHECK(g.backend->cancelled.size() == 1);
  g.pass(2000ms, 100ms);
  CHECK(g.stats.actor_restarts(wsvisor::actor_kind::upstream).Value() == 1);
  g.message(a, "again");
  REQUIRE(g.backend->waiting.size() == 1);
  g.backend->answer(200, "fine");
  g.run();
  CHECK(a.port->sends.back().payload == "fine");
  CHECK(a.port->closes.empty());
}

TEST_CASE("a message during the upstream service's restart backoff waits for the next one") {
  gateway g;
  g.start_ready();
  const auto a = g.open("alice");
  wsvisor::fault_request fault;
  fault.on = wsvisor::fault_request::target::upstream;
  g.svc->inject_fault(fault, [](uint64_t) {});
  g.run();  // dead; the root restarts it after its backoff (virtual time not yet passed)
  g.message(a, "during the backoff");
  CHECK(g.backend->waiting.empty());
  CHECK(a.port->sends.empty());  // no error frame: the call waits
  g.pass(2000ms, 100ms);
  CHECK(g.stats.actor_restarts(wsvisor::actor_kind::upstream).Value() == 1);
  REQUIRE(g.backend->waiting.size() == 1);
  const auto delivery = g.backend->waiting.front().header("X-Wsvisor-Delivery");
  CHECK(delivery.substr(delivery.size() - 4) == ".1:1");  // the first of connection 1
  g.backend->answer(200, "late but fine");
  g.run();
  REQUIRE(a.port->sends.size() == 1);
  CHECK(a.port->sends[0].payload == "late but fine");
}

TEST_CASE("a crash of the connection's application keeps its call: the reply still comes") {
  gateway g;
  g.start_ready();
  const auto a = g.open("alice");
  g.message(a, "x");
  caf::anon_send(a.decision().connection, wsvisor::fault_atom::value, wsvisor::crash_atom::value);
  g.run();
  g.backend->answer(200, "reply after the restart");
  g.run();
  CHECK(texts(*a.port) == std::vector<std::string>{"reply after the restart"});
  CHECK(g.stats.actor_restarts(wsvisor::actor_kind::connection).Value() == 1);
}

// ----------------------------------------------------------------------- connect hook

namespace {

wsvisor::settings hook_config() {
  auto s = gateway_config();
  s.gateway.connect_path = "/connect";
  s.gateway.connect_concurrency = 1;
  return s;
}

}  // namespace

TEST_CASE("connect hook: the backend's user replaces the identity, caps count it") {
  auto config = hook_config();
  config.limits.max_per_user = 1;
  gateway g(config);
  g.start_ready();
  const auto a = g.admit("", "192.0.2.1");
  g.run();
  CHECK_FALSE(a.answered());
  REQUIRE(g.backend->waiting.size() == 1);
  CHECK(g.backend->seen[0].url == "http://backend.test/connect");
  const auto body = boost::json::parse(g.backend->seen[0].body).as_object();
  CHECK(body.at("ip").as_string() == "192.0.2.1");
  CHECK(body.at("user").is_null());
  g.backend->answer(200, R"({"user":"carol","meta":{"plan":"pro"}})", "application/json");
  g.run();
  REQUIRE(a.answered());
  CHECK(a.decision().admitted);
  // carol is at her cap of 1 now, whoever the next upgrade says it is.
  const auto b = g.admit("someone-else", "192.0.2.2");
  g.run();
  g.backend->answer(200, R"({"user":"carol"})", "application/json");
  g.run();
  g.pass(1000ms);
  REQUIRE(b.answered());
  CHECK(reason_name(b.decision()) == "user_limit");
}

TEST_CASE("connect hook: 403 rejects with 403, a bad answer is upstream_unavailable") {
  gateway g(hook_config());
  g.start_ready();
  const auto a = g.admit("", "192.0.2.1");
  g.run();
  g.backend->answer(403);
  g.run();
  REQUIRE(a.answered());
  CHECK(reason_name(a.decision()) == "rejected");
  CHECK(a.decision().status == 403);
  CHECK(a.decision().retry_after.count() == 0);
  const auto b = g.admit("", "192.0.2.2");
  g.run();
  g.backend->answer(200, "{not json");
  g.run();
  REQUIRE(b.answered());
  CHECK(reason_name(b.decision()) == "upstream_unavailable");
  check_retry_after(b.decision(), hook_config());
  g.check_invariant(0);
}

TEST_CASE("connect hook: at connect_concurrency the next waits, then upstream_busy") {
  gateway g(hook_config());
  g.start_ready();
  const auto first = g.admit("", "192.0.2.1");
  const auto second = g.admit("", "192.0.2.2");
  const auto third = g.admit("", "192.0.2.3");
  g.run();
  CHECK(g.backend->waiting.size() == 1);  // connect_concurrency = 1
  g.backend->answer(200);                 // the first is admitted, the second's call goes
  g.run();
  CHECK(first.decision().admitted);
  CHECK(g.backend->waiting.size() == 1);
  g.pass(1000ms);  // no call became free for the third before its deadline
  REQUIRE(third.answered());
  CHECK(reason_name(third.decision()) == "upstream_busy");
  g.backend->answer(200);
  g.run();
  CHECK(second.decision().admitted);
}

// ------------------------------------------------------------------ lifecycle events

namespace {

wsvisor::settings events_config() {
  auto s = gateway_config();
  s.events.url = "http://backend.test/events";
  s.events.retries = 2;
  return s;
}

boost::json::object event_body(const upstream_attempt& a) {
  return boost::json::parse(a.body).as_object();
}

}  // namespace

TEST_CASE("events: a connect after the 101, exactly one disconnect at the release") {
  gateway g(events_config());
  g.start_ready();
  const auto a = g.open("alice");
  REQUIRE(g.backend->waiting.size() == 1);
  auto connect = event_body(g.backend->seen[0]);
  CHECK(connect.at("type").as_string() == "connect");
  CHECK(connect.at("user").as_string() == "alice");
  CHECK(connect.at("node").as_string() == "node-a");
  CHECK(g.backend->header_of(0, "X-Wsvisor-Event-Id") == connect.at("id").as_string());
  g.backend->answer(200);
  g.run();
  caf::anon_send(a.decision().connection, wsvisor::peer_gone_atom::value, close_reason::client,
                 uint16_t{4001}, std::string("bye"));
  g.run();
  REQUIRE(g.backend->waiting.size() == 1);
  auto disconnect = event_body(g.backend->seen[1]);
  CHECK(disconnect.at("type").as_string() == "disconnect");
  CHECK(disconnect.at("connection") == connect.at("connection"));
  CHECK(disconnect.at("code").as_int64() == 4001);
  CHECK(disconnect.at("reason").as_string() == "bye");
  CHECK(disconnect.at("close_reason").as_string() == "client");
  g.backend->answer(200);
  g.run();
  CHECK(g.stats.events_sent().Value() == 2);
  CHECK(g.svc->events_pending() == 0);
}

TEST_CASE("events: a connection that never opened has no events") {
  gateway g(events_config());
  g.start_ready();
  const auto a = g.admit("alice");
  g.run();
  caf::anon_send(a.decision().connection, wsvisor::peer_gone_atom::value,
                 close_reason::handshake_failed, uint16_t{1006}, std::string());
  g.run();
  CHECK(g.backend->seen.empty());
}

TEST_CASE("events: retried until a 2xx, per connection in order, a disconnect waits") {
  gateway g(events_config());
  g.start_ready();
  const auto a = g.open("alice");
  caf::anon_send(a.decision().connection, wsvisor::peer_gone_atom::value, close_reason::client,
                 uint16_t{1000}, std::string());
  g.run();
  REQUIRE(g.backend->waiting.size() == 1);  // the disconnect waits behind the connect
  g.backend->answer(500);
  g.run();
  g.pass(500ms);
  REQUIRE(g.backend->waiting.size() == 1);
  CHECK(event_body(g.backend->waiting.front().request).at("type").as_string() == "connect");
  g.backend->answer(200);
  g.run();
  REQUIRE(g.backend->waiting.size() == 1);
  CHECK(event_body(g.backend->waiting.front().request).at("type").as_string() == "disconnect");
  g.backend->answer(200);
  g.run();
  CHECK(g.svc->events_pending() == 0);
}

TEST_CASE("events: a crash of the events service loses nothing (at least once)") {
  gateway g(events_config());
  g.start_ready();
  g.open("alice");
  REQUIRE(g.backend->waiting.size() == 1);
  wsvisor::fault_request fault;
  fault.on = wsvisor::fault_request::target::events;
  g.svc->inject_fault(fault, [](uint64_t) {});
  g.run();
  g.pass(2000ms, 100ms);
  CHECK(g.stats.actor_restarts(wsvisor::actor_kind::events).Value() == 1);
  // The connect event is sent again by the new service.
  CHECK(g.backend->seen.size() >= 2);
  CHECK(event_body(g.backend->seen.back()).at("type").as_string() == "connect");
}
