// The service tree on CAF's test_coordinator, for the actors' unit tests: actors run
// step by step on this thread and time is virtual, so nothing sleeps. A fake
// session_port stands in for the WebSocket and records what the actors asked of it.
// Header-only, included by one test file each (a test binary per file).
#pragma once

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
    live_.last_frame_out = now;
    live_.open = open;
  }

  void send(std::string payload, bool text) override {
    sends.push_back({std::move(payload), text});
    live_.last_frame_out = clock_();
  }
  void send_shared(wsvisor::shared_payload payload, bool text) override {
    ++shared_sends;
    send(*payload, text);
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
    pinged();
  }
  // Hub mode's heartbeat: a text message that starts the pong_timeout like a ping.
  void ping_message(wsvisor::shared_payload payload) override {
    ++ping_messages;
    send(*payload, true);
    pinged();
  }
  void input_handled() override { ++inputs_handled; }
  void actor_gone() override { ++actor_gone_calls; }
  wsvisor::liveness_times liveness() const override { return live_; }
  uint64_t unread_bytes() const override { return unread; }
  void apply_fault(const wsvisor::client_fault& fault) override { faults.push_back(fault); }

  std::vector<sent> sends;
  std::vector<wsvisor::client_fault> faults;  // toward the client, as the actors asked
  std::vector<closed> closes;
  std::vector<close_reason> aborts;
  int pings = 0;
  int ping_messages = 0;
  int shared_sends = 0;
  int inputs_handled = 0;
  int actor_gone_calls = 0;
  uint64_t unread = 0;  // bytes waiting on the "socket" (a backlogged server)

 private:
  // A healthy client answers at once (a frame in, the ping cleared); a silent one leaves
  // the ping pending from its first sending.
  void pinged() {
    const auto now = clock_();
    if (answers_pings_) {
      live_.last_frame_in = now;
      live_.ping_sent_at = {};
    } else if (live_.ping_sent_at == wsvisor::steady_time{}) {
      live_.ping_sent_at = now;
    }
  }

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

  // `backend`: the HTTP client the upstream and events services use (a fake). The
  // application is app.mode's, from the built-in registry.
  explicit fixture(wsvisor::settings config = defaults(),
                   std::shared_ptr<wsvisor::upstream_port> backend = nullptr) {
    spdlog::set_level(std::getenv("WSVISOR_TEST_LOG") ? spdlog::level::debug : spdlog::level::off);
    cfg.set("scheduler.policy", caf::atom("testing"));
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
    svc = std::make_unique<wsvisor::service>(*sys, config, stats, 2);
    // Named: find() points into the registry, which must outlive the call.
    const auto applications = wsvisor::application_registry::with_builtins();
    if (const auto* app = applications.find(config.app.mode)) svc->use_application(*app);
    if (backend) svc->use_upstream(std::move(backend));
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

[[maybe_unused]] std::string reason_name(const admission_decision& d) {
  return d.admitted ? "admitted" : wsvisor::to_string(d.reason);
}

[[maybe_unused]] void check_retry_after(const admission_decision& d, const wsvisor::settings& s) {
  const auto base = std::chrono::duration_cast<std::chrono::seconds>(s.limits.retry_after);
  CHECK(d.retry_after >= base);
  CHECK(d.retry_after.count() * 2 <= base.count() * 3);  // at most 1.5 x retry_after
}

}  // namespace
