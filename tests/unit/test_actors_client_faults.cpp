// Faults toward clients (CONTRACT 8, target "client") on CAF's test_coordinator: which
// connections a fault reaches, what each session is told, the restart's pacing in
// virtual time, standing faults for a user's future connections, and the counters.
#include <prometheus/counter.h>

#include "service_fixture.hpp"

using wsvisor::client_fault_action;
using wsvisor::fault_request;

namespace {

fault_request toward_clients(fault_request::action what) {
  fault_request fault;
  fault.what = what;
  fault.on = fault_request::target::client;
  return fault;
}

uint64_t inject(fixture& f, const fault_request& fault) {
  std::optional<uint64_t> applied;
  f.svc->inject_fault(fault, [&](uint64_t n) { applied = n; });
  f.run();
  REQUIRE(applied);
  return *applied;
}

double counted(fixture& f, client_fault_action a) {
  return f.stats.faults(a).Value();
}

}  // namespace

TEST_CASE("restart: every connection gets 1012, the i-th of n at i/n of the spread") {
  fixture f;
  f.start_ready();
  auto all = f.admit_many("alice", 4);
  auto restart = toward_clients(fault_request::action::restart);
  restart.spread = 2000ms;
  CHECK(inject(f, restart) == 4);
  CHECK(counted(f, client_fault_action::restart) == 4);
  const auto closed = [&] {
    int n = 0;
    for (const auto& a : all) n += static_cast<int>(a.port->closes.size());
    return n;
  };
  CHECK(closed() == 1);  // the first at once
  for (int step = 1; step < 4; ++step) {
    f.sched->advance_time(499ms);
    f.run();
    CHECK(closed() == step);
    f.sched->advance_time(1ms);
    f.run();
    CHECK(closed() == step + 1);
  }
  for (const auto& a : all) {
    REQUIRE(a.port->closes.size() == 1);
    CHECK(a.port->closes.front().code == 1012);
    CHECK(a.port->closes.front().reason == "service restart");
    CHECK(a.port->closes.front().why == close_reason::admin);
  }
  // Readiness is untouched: a rolling restart admits as usual.
  CHECK(f.svc->ready());
  const auto later = f.admit("bob", "192.0.2.9");
  f.run();
  CHECK(later.decision().admitted);
}

TEST_CASE("close by id reaches that connection only, with the code and reason asked") {
  fixture f;
  f.start_ready();
  auto all = f.admit_many("alice", 3);
  auto close = toward_clients(fault_request::action::close);
  close.id = all[1].decision().connection_id;
  close.code = 4321;
  close.reason = "go away";
  CHECK(inject(f, close) == 1);
  CHECK(all[0].port->closes.empty());
  CHECK(all[2].port->closes.empty());
  REQUIRE(all[1].port->closes.size() == 1);
  CHECK(all[1].port->closes.front().code == 4321);
  CHECK(all[1].port->closes.front().reason == "go away");
  CHECK(counted(f, client_fault_action::close) == 1);
}

TEST_CASE("share: that fraction of the open connections, at random, each told once") {
  fixture f;
  f.start_ready();
  auto all = f.admit_many("alice", 8);
  const auto handshaking = f.admit("bob", "192.0.2.20", f.port(/*open=*/false));
  f.run();
  REQUIRE(handshaking.decision().admitted);
  auto zombie = toward_clients(fault_request::action::zombie);
  zombie.share = 0.5;
  CHECK(inject(f, zombie) == 4);
  int told = 0;
  for (const auto& a : all) {
    CHECK(a.port->faults.size() <= 1);
    for (const auto& fault : a.port->faults) {
      CHECK(fault.action == client_fault_action::zombie);
      CHECK_FALSE(fault.clear);
      ++told;
    }
  }
  CHECK(told == 4);
  CHECK(handshaking.port->faults.empty());  // not a client that can see a fault yet
  CHECK(counted(f, client_fault_action::zombie) == 4);
}

TEST_CASE("latency and drop for a user stand for its future connections until clear") {
  fixture f;
  f.start_ready();
  const auto first = f.admit("alice");
  f.run();
  auto latency = toward_clients(fault_request::action::latency);
  latency.user = "alice";
  latency.delay_ms = 250;
  latency.jitter_ms = 50;
  CHECK(inject(f, latency) == 1);
  auto drop = toward_clients(fault_request::action::drop);
  drop.user = "alice";
  drop.ratio = 0.25;
  CHECK(inject(f, drop) == 1);
  REQUIRE(first.port->faults.size() == 2);
  CHECK(first.port->faults[0].action == client_fault_action::latency);
  CHECK(first.port->faults[0].ms == 250);
  CHECK(first.port->faults[0].jitter_ms == 50);
  CHECK(first.port->faults[1].action == client_fault_action::drop);
  CHECK(first.port->faults[1].ratio == doctest::Approx(0.25));
  CHECK_FALSE(first.port->faults[1].pushes_only);  // echo mode: every data message

  // A poison given later does not take the user's faults toward clients away.
  fault_request poison;
  poison.what = fault_request::action::poison;
  poison.user = "alice";
  inject(f, poison);

  const auto second = f.admit("alice", "192.0.2.2");
  const auto other = f.admit("bob", "192.0.2.3");
  f.run();
  REQUIRE(second.decision().admitted);
  REQUIRE(second.port->faults.size() == 2);
  CHECK(second.port->faults[0].action == client_fault_action::latency);
  CHECK(second.port->faults[0].ms == 250);
  CHECK(second.port->faults[1].action == client_fault_action::drop);
  CHECK(other.port->faults.empty());

  fault_request clear;
  clear.what = fault_request::action::clear;
  inject(f, clear);
  REQUIRE(second.port->faults.size() == 3);
  CHECK(second.port->faults.back().clear);
  const auto third = f.admit("alice", "192.0.2.4");
  f.run();
  REQUIRE(third.decision().admitted);
  CHECK(third.port->faults.empty());
}

TEST_CASE("a fault that reaches nobody answers 0 and counts nothing") {
  fixture f;
  f.start_ready();
  auto stall = toward_clients(fault_request::action::stall);
  stall.user = "nobody";
  stall.delay_ms = 100;
  CHECK(inject(f, stall) == 0);
  stall.user.reset();
  stall.share = 1.0;
  CHECK(inject(f, stall) == 0);
  CHECK(counted(f, client_fault_action::stall) == 0);
}
