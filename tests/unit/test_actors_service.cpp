// The service tree end to end, on CAF's test_coordinator: actors run step by step on
// this thread and time is virtual, so nothing sleeps. A fake session_port stands in for
// the WebSocket and records what the actors asked of it.
#include <doctest/doctest.h>

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../../actors/src/messages.hpp"
#include "wsvisor/admission.hpp"
#include "wsvisor/config.hpp"
#include "wsvisor/metrics.hpp"
#include "wsvisor/service.hpp"
#include "wsvisor/session_port.hpp"

using namespace std::chrono_literals;
using wsvisor::admission_decision;
using wsvisor::admission_ticket;
using wsvisor::close_reason;
using wsvisor::reject_reason;

namespace {

// What the actors asked of one socket. Its times come from the actor system's clock,
// the virtual one of test_coordinator, like every time the actors read.
class fake_port : public wsvisor::session_port {
 public:
  struct sent {
    std::string payload;
    bool text;
  };
  struct closed {
    uint16_t code;
    std::string reason;
    close_reason why;
  };
  using clock_function = std::function<wsvisor::steady_time()>;

  // `open`: the 101 went out. `answers_pings`: a ping gets a pong (a healthy client).
  fake_port(clock_function clock, bool open, bool answers_pings)
      : clock_(std::move(clock)), answers_pings_(answers_pings) {
    const auto now = clock_();
    live_.opened_at = now;
    live_.last_frame_in = now;
    live_.last_message = now;
    live_.open = open;
  }

  void send(std::string payload, bool text) override {
    sends.push_back({std::move(payload), text});
  }
  void close(uint16_t code, std::string reason, close_reason why) override {
    closes.push_back({code, std::move(reason), why});
    live_.closing = true;
    live_.open = false;
  }
  void abort(close_reason why) override {
    aborts.push_back(why);
    live_.open = false;
  }
  // Like a session: the ping goes out now; an answer clears it and counts as a frame.
  void ping() override {
    ++pings;
    const auto now = clock_();
    if (answers_pings_) {
      live_.last_frame_in = now;
      live_.ping_sent_at = {};
    } else if (live_.ping_sent_at == wsvisor::steady_time{}) {
      live_.ping_sent_at = now;
    }
  }
  void input_handled() override { ++inputs_handled; }
  void actor_gone() override { ++actor_gone_calls; }
  wsvisor::liveness_times liveness() const override { return live_; }
  uint64_t unread_bytes() const override { return unread; }

  std::vector<sent> sends;
  std::vector<closed> closes;
  std::vector<close_reason> aborts;
  int pings = 0;
  int inputs_handled = 0;
  int actor_gone_calls = 0;
  uint64_t unread = 0;  // bytes waiting on the "socket" (a backlogged server)

 private:
  clock_function clock_;
  bool answers_pings_;
  wsvisor::liveness_times live_;
};

struct attempt {
  std::shared_ptr<fake_port> port;
  std::shared_ptr<std::vector<admission_decision>> replies;

  bool answered() const { return replies->size() == 1; }
  const admission_decision& decision() const {
    REQUIRE(replies->size() == 1);
    return replies->front();
  }
};

wsvisor::settings defaults() {
  wsvisor::settings s;  // the built-in defaults of wsvisor/config.hpp
  s.limits.soft_connections = s.limits.max_connections * 9 / 10;  // what the loader resolves
  return s;
}

// A service on the test coordinator. Declared in destruction order: the metrics outlive
// the actor system, which outlives the service facade.
struct fixture {
  wsvisor::metrics stats;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  std::unique_ptr<wsvisor::service> svc;

  explicit fixture(wsvisor::settings config = defaults()) {
    spdlog::set_level(std::getenv("WSVISOR_TEST_LOG") ? spdlog::level::debug : spdlog::level::off);
    cfg.set("scheduler.policy", caf::atom("testing"));
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
    svc = std::make_unique<wsvisor::service>(*sys, config, stats, 2);
  }

  ~fixture() {
    svc->stop();
    run();
    // Supervisor shutdown timers, if any, fire in virtual time.
    for (int i = 0; i < 60 && sys->registry().running() > 0; ++i) {
      sched->advance_time(std::chrono::seconds(1));
      run();
    }
    CHECK(sys->registry().running() == 0);
    svc.reset();
  }

  void run() { sched->run(); }

  void start_ready() {
    svc->start();
    run();
    svc->set_listening();
    REQUIRE(svc->ready());
  }

  std::shared_ptr<fake_port> port(bool open = true, bool answers_pings = true) {
    return std::make_shared<fake_port>([this] { return sys->clock().now(); }, open, answers_pings);
  }

  attempt admit(std::string user = "", std::string ip = "192.0.2.1",
                std::shared_ptr<fake_port> with = nullptr) {
    attempt a{with ? std::move(with) : port(), std::make_shared<std::vector<admission_decision>>()};
    auto ticket = std::make_shared<wsvisor::admission_request>();
    ticket->port = a.port;
    ticket->ip = std::move(ip);
    ticket->user = std::move(user);
    ticket->reply = [replies = a.replies](admission_decision d) {
      replies->push_back(std::move(d));
    };
    svc->admit(std::move(ticket));
    return a;
  }

  // `n` upgrades of `user`, each from an IP of its own, all admitted.
  std::vector<attempt> admit_many(const std::string& user, int n,
                                  const std::string& ip = "192.0.2.") {
    std::vector<attempt> all;
    for (int i = 0; i < n; ++i) all.push_back(admit(user, ip + std::to_string(i)));
    run();
    for (auto& a : all) REQUIRE(a.decision().admitted);
    return all;
  }

  // The guard's counts against the shards' tables, once every message is through.
  wsvisor::count_audit audit() {
    std::optional<wsvisor::count_audit> result;
    svc->audit_counts([&](std::optional<wsvisor::count_audit> a) { result = a; });
    run();
    REQUIRE(result);
    return *result;
  }
  // Counts, tables and reservations agree (DESIGN.md: the one invariant).
  void check_invariant(uint64_t expected_slots) {
    const auto a = audit();
    CHECK(a.reservations == 0);
    CHECK(a.counted == a.in_tables);
    CHECK(a.in_tables == expected_slots);
    CHECK(svc->connections() == expected_slots);
    CHECK(gauge_connections() == static_cast<double>(expected_slots));
  }

  void crash(wsvisor::fault_request::target target, uint64_t shard_index = 0) {
    wsvisor::fault_request fault;
    fault.what = wsvisor::fault_request::action::crash;
    fault.on = target;
    fault.shard_index = shard_index;
    svc->inject_fault(fault, [](uint64_t) {});
  }

  // Lets virtual time pass in steps, running every actor after each.
  void pass(std::chrono::milliseconds total, std::chrono::milliseconds step = 10ms) {
    for (auto passed = 0ms; passed < total; passed += step) {
      sched->advance_time(step);
      run();
    }
  }

  double gauge_connections() { return stats.connections().Value(); }
  double closed(close_reason r) { return stats.connections_closed(r).Value(); }
  double rejected(reject_reason r) { return stats.admissions_rejected(r).Value(); }
};

std::string reason_name(const admission_decision& d) {
  return d.admitted ? "admitted" : wsvisor::to_string(d.reason);
}

void check_retry_after(const admission_decision& d, const wsvisor::settings& s) {
  const auto base = std::chrono::duration_cast<std::chrono::seconds>(s.limits.retry_after);
  CHECK(d.retry_after >= base);
  CHECK(d.retry_after.count() * 2 <= base.count() * 3);  // at most 1.5 x retry_after
}

}  // namespace

TEST_CASE("start: the tree comes up, readiness needs the listener too") {
  fixture f;
  CHECK_FALSE(f.svc->ready());
  CHECK(f.svc->shard_count() == 2);
  f.svc->start();
  f.run();
  CHECK_FALSE(f.svc->ready());  // not listening yet
  CHECK(f.stats.ready().Value() == 0);
  f.svc->set_listening();
  CHECK(f.svc->ready());
  CHECK_FALSE(f.svc->draining());
  CHECK(f.stats.ready().Value() == 1);
  CHECK(f.svc->connections() == 0);
}

TEST_CASE("admission before start is refused with starting") {
  fixture f;
  const auto a = f.admit("alice");
  f.run();
  REQUIRE(a.answered());
  CHECK(reason_name(a.decision()) == "starting");
  check_retry_after(a.decision(), defaults());
  // Refusals are counted by the session that answers the client (net/), once.
  CHECK(f.rejected(reject_reason::starting) == 0);
  CHECK(f.svc->connections() == 0);
  CHECK(f.gauge_connections() == 0);
  CHECK(a.port->actor_gone_calls == 0);
}

TEST_CASE("an admitted connection holds one slot until its actor dies, then exactly none") {
  fixture f;
  f.start_ready();
  const auto a = f.admit("alice");
  f.run();
  REQUIRE(a.answered());
  const auto& decision = a.decision();
  REQUIRE(decision.admitted);
  CHECK(decision.connection);
  CHECK(decision.connection_id != 0);
  CHECK(f.svc->connections() == 1);
  CHECK(f.gauge_connections() == 1);
  CHECK(f.stats.connections_opened().Value() == 1);
  CHECK(a.port->actor_gone_calls == 0);

  SUBCASE("the peer goes away") {
    caf::anon_send(decision.connection, wsvisor::peer_gone_atom::value, close_reason::client,
                   uint16_t{1000});
  }
  SUBCASE("the actor is killed") {
    caf::anon_send_exit(decision.connection, caf::exit_reason::kill);
  }
  f.run();
  CHECK(f.svc->connections() == 0);
  CHECK(f.gauge_connections() == 0);
  CHECK(a.port->actor_gone_calls == 1);
  CHECK(f.closed(close_reason::client) == 1);

  // Killing it again and running more releases nothing more.
  caf::anon_send_exit(decision.connection, caf::exit_reason::kill);
  caf::anon_send(decision.connection, wsvisor::peer_gone_atom::value, close_reason::client,
                 uint16_t{1000});
  f.run();
  f.sched->advance_time(std::chrono::seconds(2));
  f.run();
  CHECK(f.svc->connections() == 0);
  CHECK(f.gauge_connections() == 0);
  CHECK(a.port->actor_gone_calls == 1);
  CHECK(f.closed(close_reason::client) == 1);
  CHECK(f.stats.connections_opened().Value() == 1);
}

TEST_CASE("the closed counter takes the reason the port reports") {
  fixture f;
  f.start_ready();
  const auto a = f.admit();
  f.run();
  REQUIRE(a.decision().admitted);
  caf::anon_send(a.decision().connection, wsvisor::abort_atom::value, close_reason::zombie);
  f.run();
  REQUIRE(a.port->aborts.size() == 1);
  CHECK(a.port->aborts.front() == close_reason::zombie);
  CHECK(a.port->actor_gone_calls == 1);
  CHECK(f.closed(close_reason::zombie) == 1);
  CHECK(f.closed(close_reason::client) == 0);
  CHECK(f.svc->connections() == 0);
}

TEST_CASE("echo: an inbound message comes back unchanged, same opcode") {
  fixture f;
  f.start_ready();
  const auto a = f.admit("alice");
  f.run();
  REQUIRE(a.decision().admitted);
  const auto connection = a.decision().connection;
  caf::anon_send(connection, wsvisor::inbound_atom::value, std::string("hello"), true);
  const std::string binary("\x00\x01\xff", 3);
  caf::anon_send(connection, wsvisor::inbound_atom::value, binary, false);
  caf::anon_send(connection, wsvisor::inbound_atom::value, std::string(), true);
  f.run();
  REQUIRE(a.port->sends.size() == 3);
  CHECK(a.port->sends[0].payload == "hello");
  CHECK(a.port->sends[0].text);
  CHECK(a.port->sends[1].payload == binary);
  CHECK_FALSE(a.port->sends[1].text);
  CHECK(a.port->sends[2].payload == "");
  CHECK(a.port->sends[2].text);
  CHECK(a.port->closes.empty());
  CHECK(f.svc->connections() == 1);
  caf::anon_send(connection, wsvisor::peer_gone_atom::value, close_reason::client, uint16_t{1000});
  f.run();
}

TEST_CASE("drain: every connection gets 1001 shutdown, new upgrades get draining") {
  fixture f;
  f.start_ready();
  const auto a = f.admit("alice");
  const auto b = f.admit("bob", "192.0.2.2");
  f.run();
  REQUIRE(a.decision().admitted);
  REQUIRE(b.decision().admitted);
  CHECK(f.svc->connections() == 2);

  f.svc->begin_drain();
  f.run();
  CHECK(f.svc->draining());
  CHECK_FALSE(f.svc->ready());
  CHECK(f.stats.draining().Value() == 1);
  CHECK(f.stats.ready().Value() == 0);
  // Closes may be paced across drain_spread: let the virtual clock pass it.
  f.sched->advance_time(defaults().shutdown.drain_spread);
  f.run();
  for (const auto* port : {a.port.get(), b.port.get()}) {
    REQUIRE(port->closes.size() == 1);
    CHECK(port->closes.front().code == 1001);
    CHECK(port->closes.front().reason == "shutdown");
    CHECK(port->closes.front().why == close_reason::drain);
    CHECK(port->aborts.empty());
  }
  // The slots stay held until the sockets are really gone.
  CHECK(f.svc->connections() == 2);

  // A second begin_drain is a no-op (idempotent): no second close.
  f.svc->begin_drain();
  f.run();
  CHECK(a.port->closes.size() == 1);

  const auto late = f.admit("carol", "192.0.2.3");
  f.run();
  REQUIRE(late.answered());
  CHECK(reason_name(late.decision()) == "draining");
  check_retry_after(late.decision(), defaults());
  // Refusals are counted by the session that answers the client (net/), once.
  CHECK(f.rejected(reject_reason::draining) == 0);

  caf::anon_send(a.decision().connection, wsvisor::peer_gone_atom::value, close_reason::drain,
                 uint16_t{1001});
  caf::anon_send(b.decision().connection, wsvisor::peer_gone_atom::value, close_reason::drain,
                 uint16_t{1001});
  f.run();
  CHECK(f.svc->connections() == 0);
  CHECK(f.gauge_connections() == 0);
  CHECK(f.closed(close_reason::drain) == 2);
  CHECK(a.port->actor_gone_calls == 1);
  CHECK(b.port->actor_gone_calls == 1);
}

TEST_CASE("max_connections = 1: a second upgrade is refused with server_full") {
  auto config = defaults();
  config.limits.max_connections = 1;
  config.limits.soft_connections = 1;
  fixture f(config);
  f.start_ready();
  const auto first = f.admit("alice");
  f.run();
  REQUIRE(first.decision().admitted);

  SUBCASE("the holder is still in its handshake: nothing to sweep") {
    const auto second = f.admit("bob", "192.0.2.2");
    first.port->pings = 0;
    f.run();
    // A sweep of a healthy server frees nothing; the answer comes within admission_timeout.
    f.sched->advance_time(config.limits.admission_timeout);
    f.run();
    REQUIRE(second.answered());
    CHECK(reason_name(second.decision()) == "server_full");
    check_retry_after(second.decision(), config);
    CHECK_FALSE(second.decision().connection);
  }
  SUBCASE("the holder is open and answers the probe") {
    const auto second = f.admit("bob", "192.0.2.2");
    f.run();
    f.sched->advance_time(config.janitor.probe_timeout);
    f.run();
    f.sched->advance_time(config.limits.admission_timeout);
    f.run();
    REQUIRE(second.answered());
    CHECK(reason_name(second.decision()) == "server_full");
    check_retry_after(second.decision(), config);
    CHECK(first.port->pings >= 1);  // the moderate sweep probed it
    // The healthy holder was not evicted.
    CHECK(first.port->closes.empty());
    CHECK(first.port->aborts.empty());
  }
  // Refusals are counted by the session that answers the client (net/), once.
  CHECK(f.rejected(reject_reason::server_full) == 0);
  CHECK(f.svc->connections() == 1);
  CHECK(f.gauge_connections() == 1);
  CHECK(f.stats.connections_opened().Value() == 1);

  // Once the holder is gone, its slot is free again for the next one.
  caf::anon_send(first.decision().connection, wsvisor::peer_gone_atom::value, close_reason::client,
                 uint16_t{1000});
  f.run();
  CHECK(f.svc->connections() == 0);
  const auto third = f.admit("carol", "192.0.2.3");
  f.run();
  REQUIRE(third.answered());
  CHECK(reason_name(third.decision()) == "admitted");
  CHECK(f.svc->connections() == 1);
  caf::anon_send(third.decision().connection, wsvisor::peer_gone_atom::value, close_reason::client,
                 uint16_t{1000});
  f.run();
  CHECK(f.svc->connections() == 0);
}

TEST_CASE("at max_connections a silent holder is swept and the waiting upgrade admitted") {
  auto config = defaults();
  config.limits.max_connections = 1;
  config.limits.soft_connections = 1;
  fixture f(config);
  f.start_ready();
  const auto zombie = f.admit("alice", "192.0.2.1", f.port(true, false));
  f.run();
  REQUIRE(zombie.decision().admitted);
  f.pass(10ms);  // it was opened a while before the next upgrade comes

  const auto waiting = f.admit("bob", "192.0.2.2");
  f.run();
  CHECK_FALSE(waiting.answered());  // parked while the sweep probes
  CHECK(zombie.port->pings == 1);
  f.sched->advance_time(config.janitor.probe_timeout);
  f.run();
  REQUIRE(waiting.answered());
  CHECK(reason_name(waiting.decision()) == "admitted");
  // The zombie was evicted with 1013 (sweep evictions close with 1013, CONTRACT
  // section 4) and its slot released once.
  CHECK(zombie.port->aborts.empty());
  REQUIRE(zombie.port->closes.size() == 1);
  CHECK(zombie.port->closes.front().code == 1013);
  CHECK(zombie.port->closes.front().why == close_reason::evicted);
  CHECK(zombie.port->actor_gone_calls == 1);
  CHECK(f.closed(close_reason::evicted) == 1);
  CHECK(f.svc->connections() == 1);
  CHECK(f.gauge_connections() == 1);
  CHECK(f.rejected(reject_reason::server_full) == 0);

  // The expiry timer of the parked upgrade fires later and must not answer twice.
  f.sched->advance_time(config.limits.admission_timeout);
  f.run();
  CHECK(waiting.replies->size() == 1);
  caf::anon_send(waiting.decision().connection, wsvisor::peer_gone_atom::value,
                 close_reason::client, uint16_t{1000});
  f.run();
  CHECK(f.svc->connections() == 0);
}

TEST_CASE("stop ends the connection actors too, each released once") {
  std::shared_ptr<fake_port> port;
  {
    fixture f;
    f.start_ready();
    const auto a = f.admit("alice");
    f.run();
    REQUIRE(a.decision().admitted);
    port = a.port;
    // ~fixture stops the service and checks that no actor is left running.
  }
  CHECK(port->actor_gone_calls == 1);
}

TEST_CASE("how a connection ended travels with its actor's exit, whatever ended it") {
  fixture f;
  f.start_ready();
  const auto a = f.admit("alice");
  f.run();
  REQUIRE(a.decision().admitted);
  const auto actor = a.decision().connection;
  close_reason expected = close_reason::client;
  SUBCASE("the session saw the peer's close") {
    caf::anon_send(actor, wsvisor::peer_gone_atom::value, close_reason::client, uint16_t{1000});
  }
  SUBCASE("the session closed for a slow consumer") {
    caf::anon_send(actor, wsvisor::peer_gone_atom::value, close_reason::slow_consumer,
                   uint16_t{1008});
    expected = close_reason::slow_consumer;
  }
  SUBCASE("the janitor found a zombie") {
    caf::anon_send(actor, wsvisor::abort_atom::value, close_reason::zombie);
    expected = close_reason::zombie;
  }
  SUBCASE("a sweep evicted it") {
    caf::anon_send(actor, wsvisor::evict_atom::value, uint16_t{1013}, std::string("evicted"),
                   close_reason::evicted);
    expected = close_reason::evicted;
  }
  f.run();
  CHECK(f.closed(expected) == 1);
  CHECK(a.port->actor_gone_calls == 1);  // the actor's own end closes its socket
  f.check_invariant(0);
}

TEST_CASE("input_end: the actor answers after every message before it is handled") {
  fixture f;
  f.start_ready();
  const auto a = f.admit("alice");
  f.run();
  REQUIRE(a.decision().admitted);
  const auto actor = a.decision().connection;
  caf::anon_send(actor, wsvisor::inbound_atom::value, std::string("one"), true);
  caf::anon_send(actor, wsvisor::inbound_atom::value, std::string("two"), true);
  caf::anon_send(actor, wsvisor::input_end_atom::value);
  f.run();
  REQUIRE(a.port->sends.size() == 2);
  CHECK(a.port->inputs_handled == 1);
  caf::anon_send(actor, wsvisor::peer_gone_atom::value, close_reason::client, uint16_t{1000});
  f.run();
}

TEST_CASE("a restarted limit guard rebuilds its counts from the shards' tables") {
  auto config = defaults();
  config.limits.max_per_user = 3;
  fixture f(config);
  f.start_ready();
  auto held = f.admit_many("alice", 3);
  held.push_back(f.admit("bob", "192.0.2.9"));
  f.run();
  REQUIRE(held.back().decision().admitted);

  f.crash(wsvisor::fault_request::target::limit_guard);
  f.run();
  // Restarted after its backoff (virtual time), it asks every shard for its table.
  f.pass(config.supervision.backoff_max * 2);
  CHECK(f.stats.actor_restarts(wsvisor::actor_kind::limit_guard).Value() == 1);
  f.check_invariant(4);

  // alice is still at her cap of 3: the rebuilt counts know it.
  const auto fourth = f.admit("alice", "192.0.2.20");
  f.run();
  f.pass(config.limits.admission_timeout);
  REQUIRE(fourth.answered());
  CHECK(reason_name(fourth.decision()) == "user_limit");

  // A release after the rebuild frees exactly that slot.
  caf::anon_send(held[0].decision().connection, wsvisor::peer_gone_atom::value,
                 close_reason::client, uint16_t{1000});
  f.run();
  f.check_invariant(3);
  const auto again = f.admit("alice", "192.0.2.21");
  f.run();
  REQUIRE(again.answered());
  CHECK(reason_name(again.decision()) == "admitted");
  f.check_invariant(4);
}

TEST_CASE("a shard's death takes its connections down with 1011, and every slot comes back") {
  auto config = defaults();
  config.limits.max_per_user = 4;
  fixture f(config);
  f.start_ready();
  const auto held = f.admit_many("alice", 4);
  f.check_invariant(4);

  f.crash(wsvisor::fault_request::target::shard, 0);
  f.run();
  // Shard 0 held every other one (least loaded first): those closed with 1011 at once,
  // the others are untouched.
  int closed_1011 = 0;
  for (auto& a : held) {
    if (a.port->closes.empty()) continue;
    CHECK(a.port->closes.front().code == 1011);
    CHECK(a.port->closes.front().why == close_reason::shard_down);
    ++closed_1011;
  }
  CHECK(closed_1011 == 2);
  CHECK(f.closed(close_reason::shard_down) == 2);
  f.check_invariant(2);

  f.pass(config.supervision.backoff_max * 2);
  CHECK(f.stats.actor_restarts(wsvisor::actor_kind::shard).Value() == 1);
  // Every slot can be filled again: alice gets back to her cap, not past it.
  std::vector<attempt> refill;
  for (int i = 0; i < 3; ++i) refill.push_back(f.admit("alice", "192.0.2.1" + std::to_string(i)));
  f.run();
  f.pass(config.limits.admission_timeout);
  CHECK(reason_name(refill[0].decision()) == "admitted");
  CHECK(reason_name(refill[1].decision()) == "admitted");
  CHECK(reason_name(refill[2].decision()) == "user_limit");
  f.check_invariant(4);
}

TEST_CASE("H1: a spawn that reaches a dead shard is released, never leaked") {
  auto config = defaults();
  config.limits.max_per_user = 5;
  fixture f(config);
  f.start_ready();
  // The guard is scheduled with the spike first, then shard 0 with its crash: the
  // spawns the guard sends to shard 0 queue behind the crash and reach a dead shard.
  std::vector<attempt> spike;
  for (int i = 0; i < 5; ++i) spike.push_back(f.admit("alice", "192.0.2." + std::to_string(i)));
  f.crash(wsvisor::fault_request::target::shard, 0);
  f.run();
  int admitted = 0;
  int refused = 0;
  for (auto& a : spike) {
    REQUIRE(a.answered());
    if (a.decision().admitted) {
      ++admitted;
    } else {
      CHECK(reason_name(a.decision()) == "guard_unavailable");
      check_retry_after(a.decision(), config);
      ++refused;
    }
  }
  CHECK(refused >= 1);  // the bounced reservations
  CHECK(admitted + refused == 5);
  f.check_invariant(static_cast<uint64_t>(admitted));

  // While shard 0 waits for its restart, upgrades go to the live shard.
  const auto during = f.admit("bob", "192.0.2.50");
  f.run();
  CHECK(reason_name(during.decision()) == "admitted");

  f.pass(config.supervision.backoff_max * 2);
  // alice holds `admitted` of her 5: exactly the rest can be filled again.
  std::vector<attempt> refill;
  for (int i = 0; i < 5 - admitted + 1; ++i)
    refill.push_back(f.admit("alice", "192.0.2.1" + std::to_string(i)));
  f.run();
  f.pass(config.limits.admission_timeout);
  for (size_t i = 0; i + 1 < refill.size(); ++i)
    CHECK(reason_name(refill[i].decision()) == "admitted");
  CHECK(reason_name(refill.back().decision()) == "user_limit");
  f.check_invariant(6);
}

TEST_CASE("H2: a user at its cap held by zombies gets a slot within admission_timeout") {
  fixture f;  // defaults: max_per_user 20, probe_timeout 500ms, admission_timeout 1s
  const auto& config = defaults();
  f.start_ready();
  const int zombies = 20;
  std::vector<attempt> held;
  for (int i = 0; i < zombies; ++i)
    held.push_back(f.admit("alice", "192.0.2.1", f.port(true, false)));
  f.run();
  for (auto& a : held) REQUIRE(a.decision().admitted);
  f.pass(10ms);  // they were opened a while before the next upgrade comes

  const auto waiting = f.admit("alice", "192.0.2.1");
  f.run();
  CHECK_FALSE(waiting.answered());  // parked while the sweep probes
  f.pass(config.janitor.probe_timeout);
  // One probe_timeout later the sweep has judged: 20 silent with nothing unread are
  // zombies, one of them is evicted, and the waiting upgrade gets its slot, well before
  // the guard would answer it (9/10 of admission_timeout).
  REQUIRE(waiting.answered());
  CHECK(reason_name(waiting.decision()) == "admitted");
  int evicted = 0;
  for (auto& a : held)
    if (!a.port->closes.empty() && a.port->closes.front().code == 1013) ++evicted;
  CHECK(evicted == 1);  // the sweep stops as soon as a slot is free
  f.check_invariant(zombies);
}

TEST_CASE("H2: silent connections with unread bytes are backlogged, not zombies") {
  fixture f;
  const auto& config = defaults();
  f.start_ready();
  std::vector<attempt> held;
  for (int i = 0; i < 20; ++i) {
    auto port = f.port(true, false);
    port->unread = 8;  // their pongs wait unread: the server is behind, not the clients
    held.push_back(f.admit("alice", "192.0.2.1", port));
  }
  f.run();
  f.pass(10ms);
  const auto waiting = f.admit("alice", "192.0.2.1");
  f.run();
  f.pass(config.limits.admission_timeout);
  REQUIRE(waiting.answered());
  // No second look fits before the deadline; the undecided keep their slots.
  CHECK(reason_name(waiting.decision()) == "user_limit");
  for (auto& a : held) CHECK(a.port->closes.empty());
  f.check_invariant(20);
}

TEST_CASE("L2: a janitor that crashes during a drain is restarted and finishes the drain") {
  fixture f;
  const auto& config = defaults();
  f.start_ready();
  std::vector<attempt> held;
  for (int i = 0; i < 4; ++i) held.push_back(f.admit("u" + std::to_string(i)));
  f.run();
  // The crash reaches the janitor before the drain does: the drain message dies with it.
  f.crash(wsvisor::fault_request::target::janitor);
  f.svc->begin_drain();
  f.run();
  f.pass(config.supervision.backoff_max * 2 + config.shutdown.drain_spread);
  CHECK(f.stats.actor_restarts(wsvisor::actor_kind::janitor).Value() == 1);
  for (auto& a : held) {
    REQUIRE(a.port->closes.size() == 1);
    CHECK(a.port->closes.front().code == 1001);
    CHECK(a.port->closes.front().why == close_reason::drain);
  }
  for (auto& a : held)
    caf::anon_send(a.decision().connection, wsvisor::peer_gone_atom::value, close_reason::drain,
                   uint16_t{1001});
  f.run();
  f.check_invariant(0);
}

TEST_CASE("a connection past its restart budget closes with 1011 and frees its slot") {
  fixture f;
  const auto& config = defaults();
  f.start_ready();
  const auto a = f.admit("alice");
  f.run();
  const auto actor = a.decision().connection;
  for (uint64_t i = 0; i < config.supervision.connection_restarts; ++i)
    caf::anon_send(actor, wsvisor::fault_atom::value, wsvisor::crash_atom::value);
  f.run();
  CHECK(a.port->closes.empty());  // within budget: the socket is kept
  caf::anon_send(actor, wsvisor::fault_atom::value, wsvisor::crash_atom::value);
  f.run();
  REQUIRE(a.port->closes.size() == 1);
  CHECK(a.port->closes.front().code == 1011);
  CHECK(f.closed(close_reason::restart_budget) == 1);
  f.check_invariant(0);

  SUBCASE("restarts older than the period no longer count") {
    const auto b = f.admit("bob", "192.0.2.2");
    f.run();
    const auto other = b.decision().connection;
    for (uint64_t i = 0; i < config.supervision.connection_restarts; ++i)
      caf::anon_send(other, wsvisor::fault_atom::value, wsvisor::crash_atom::value);
    f.run();
    f.sched->advance_time(config.supervision.connection_restart_period);
    f.run();
    caf::anon_send(other, wsvisor::fault_atom::value, wsvisor::crash_atom::value);
    f.run();
    CHECK(b.port->closes.empty());
    caf::anon_send(other, wsvisor::peer_gone_atom::value, close_reason::client, uint16_t{1000});
    f.run();
  }
}
