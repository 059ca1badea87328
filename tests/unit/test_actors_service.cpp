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

// What the actors asked of one socket.
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

  // `open`: the 101 went out. `answers_pings`: a ping gets a pong (a healthy client).
  explicit fake_port(bool open = true, bool answers_pings = true)
      : open_(open), answers_pings_(answers_pings) {
    const auto now = std::chrono::steady_clock::now();
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
    record(why);
    live_.closing = true;
    live_.open = false;
  }
  void abort(close_reason why) override {
    aborts.push_back(why);
    record(why);
    live_.open = false;
  }
  // Like a session: the ping goes out now; an answer clears it and counts as a frame.
  void ping() override {
    ++pings;
    const auto now = std::chrono::steady_clock::now();
    if (answers_pings_) {
      live_.last_frame_in = now;
      live_.ping_sent_at = {};
    } else {
      // The sweep judges a ping by the steady clock while the test advances CAF's
      // virtual one: date it an hour back so it has had its full window.
      live_.ping_sent_at = now - std::chrono::hours(1);
    }
  }
  void actor_gone() override { ++actor_gone_calls; }
  close_reason reason() const override { return reason_.value_or(close_reason::client); }
  uint16_t close_code() const override { return closes.empty() ? 1006 : closes.front().code; }
  wsvisor::liveness_times liveness() const override { return live_; }

  std::vector<sent> sends;
  std::vector<closed> closes;
  std::vector<close_reason> aborts;
  int pings = 0;
  int actor_gone_calls = 0;

 private:
  void record(close_reason why) {
    if (!reason_) reason_ = why;  // the first reason recorded wins
  }
  bool open_;
  bool answers_pings_;
  std::optional<close_reason> reason_;
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
    spdlog::set_level(spdlog::level::off);
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

  attempt admit(std::string user = "", std::string ip = "192.0.2.1",
                std::shared_ptr<fake_port> port = std::make_shared<fake_port>()) {
    attempt a{std::move(port), std::make_shared<std::vector<admission_decision>>()};
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
    caf::anon_send(decision.connection, wsvisor::peer_gone_atom::value);
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
  caf::anon_send(decision.connection, wsvisor::peer_gone_atom::value);
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
  caf::anon_send(connection, wsvisor::peer_gone_atom::value);
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

  caf::anon_send(a.decision().connection, wsvisor::peer_gone_atom::value);
  caf::anon_send(b.decision().connection, wsvisor::peer_gone_atom::value);
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
  caf::anon_send(first.decision().connection, wsvisor::peer_gone_atom::value);
  f.run();
  CHECK(f.svc->connections() == 0);
  const auto third = f.admit("carol", "192.0.2.3");
  f.run();
  REQUIRE(third.answered());
  CHECK(reason_name(third.decision()) == "admitted");
  CHECK(f.svc->connections() == 1);
  caf::anon_send(third.decision().connection, wsvisor::peer_gone_atom::value);
  f.run();
  CHECK(f.svc->connections() == 0);
}

TEST_CASE("at max_connections a silent holder is swept and the waiting upgrade admitted") {
  auto config = defaults();
  config.limits.max_connections = 1;
  config.limits.soft_connections = 1;
  fixture f(config);
  f.start_ready();
  const auto zombie = f.admit("alice", "192.0.2.1", std::make_shared<fake_port>(true, false));
  f.run();
  REQUIRE(zombie.decision().admitted);

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
  caf::anon_send(waiting.decision().connection, wsvisor::peer_gone_atom::value);
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
