// The service tree end to end, on CAF's test_coordinator (service_fixture.hpp): the
// invariant, admission, sweeps, drain, restarts.
#include "service_fixture.hpp"

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
                   uint16_t{1000}, std::string());
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
                 uint16_t{1000}, std::string());
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
  caf::anon_send(connection, wsvisor::peer_gone_atom::value, close_reason::client, uint16_t{1000},
                 std::string());
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
                 uint16_t{1001}, std::string());
  caf::anon_send(b.decision().connection, wsvisor::peer_gone_atom::value, close_reason::drain,
                 uint16_t{1001}, std::string());
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
                 uint16_t{1000}, std::string());
  f.run();
  CHECK(f.svc->connections() == 0);
  const auto third = f.admit("carol", "192.0.2.3");
  f.run();
  REQUIRE(third.answered());
  CHECK(reason_name(third.decision()) == "admitted");
  CHECK(f.svc->connections() == 1);
  caf::anon_send(third.decision().connection, wsvisor::peer_gone_atom::value, close_reason::client,
                 uint16_t{1000}, std::string());
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
                 close_reason::client, uint16_t{1000}, std::string());
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
    caf::anon_send(actor, wsvisor::peer_gone_atom::value, close_reason::client, uint16_t{1000},
                   std::string());
  }
  SUBCASE("the session closed for a slow consumer") {
    caf::anon_send(actor, wsvisor::peer_gone_atom::value, close_reason::slow_consumer,
                   uint16_t{1008}, std::string());
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
  caf::anon_send(actor, wsvisor::peer_gone_atom::value, close_reason::client, uint16_t{1000},
                 std::string());
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
                 close_reason::client, uint16_t{1000}, std::string());
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
                   uint16_t{1001}, std::string());
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
    caf::anon_send(other, wsvisor::peer_gone_atom::value, close_reason::client, uint16_t{1000},
                   std::string());
    f.run();
  }
}
