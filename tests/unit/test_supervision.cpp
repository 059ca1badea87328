// The supervisor's rules, one test case each, on CAF's test_coordinator: actors
// run step by step on this thread and time is virtual, so nothing sleeps.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include "wsvisor/supervision/detail/backoff_delay.hpp"
#include "wsvisor/supervisor.hpp"

using namespace std::chrono_literals;
using wsvisor::child_spec;
using wsvisor::restart_strategy;
using wsvisor::restart_type;
using wsvisor::shutdown_policy;
using wsvisor::supervision_error;
using wsvisor::supervisor;
using wsvisor::supervisor_spec;
using wsvisor::supervisor_tree;

namespace {

using crash_atom = caf::atom_constant<caf::atom("crash")>;
using finish_atom = caf::atom_constant<caf::atom("finish")>;

/// Starts and stops of the test's workers, in the order they happened.
using event_log = std::vector<std::string>;

/// A worker that records its start and its end in the log, throws on `crash`
/// and exits normally on `finish`. A stubborn one ignores exit messages, so
/// only exit_reason::kill ends it.
caf::behavior recording_worker(caf::event_based_actor* self, std::string id,
                               std::shared_ptr<event_log> log, bool stubborn) {
  log->push_back("start:" + id);
  self->attach_functor([log, id] { log->push_back("stop:" + id); });
  if (stubborn) self->set_exit_handler([](caf::exit_msg&) {});
  // The exit reason of CAF's default exception handler, without its message
  // on stderr for every crash the tests ask for.
  self->set_exception_handler(
      [](std::exception_ptr&) -> caf::error { return caf::make_error(caf::sec::runtime_error); });
  return {
      [](crash_atom) { throw std::runtime_error("crash requested by the test"); },
      [self](finish_atom) { self->quit(); },
  };
}

child_spec worker(std::string id, std::shared_ptr<event_log> log,
                  restart_type restart = restart_type::permanent,
                  shutdown_policy shutdown = shutdown_policy::after(1s), bool stubborn = false) {
  child_spec spec;
  spec.id = id;
  spec.restart = restart;
  spec.shutdown = shutdown;
  spec.start = [id, log, stubborn](caf::local_actor& parent) {
    return parent.spawn(recording_worker, id, log, stubborn);
  };
  return spec;
}

/// An actor system on the test coordinator. Every actor the test spawns
/// directly is killed at the end, so that the system's destructor, which
/// waits for all actors, returns. What a supervisor's callbacks write to is
/// declared before the system: a supervisor killed at teardown still reports
/// the removal of its children.
struct deterministic_system {
  caf::actor_system_config config;
  std::unique_ptr<caf::actor_system> system;
  caf::scheduler::test_coordinator* scheduler = nullptr;
  std::vector<caf::actor> spawned;

  deterministic_system() {
    config.set("scheduler.policy", caf::atom("testing"));
    wsvisor::add_supervision_error_category(config);
    system = std::make_unique<caf::actor_system>(config);
    scheduler = &dynamic_cast<caf::scheduler::test_coordinator&>(system->scheduler());
  }

  ~deterministic_system() {
    for (auto& actor : spawned) caf::anon_send_exit(actor, caf::exit_reason::kill);
    scheduler->run();
  }

  caf::actor spawn_supervisor(supervisor_spec spec) {
    auto actor = system->spawn<supervisor>(std::move(spec));
    spawned.push_back(actor);
    run();
    return actor;
  }

  /// Runs every actor until no message is left (timers do not fire).
  void run() { scheduler->run(); }

  /// Moves the virtual clock, fires the timers due, runs what they trigger.
  void advance(caf::timespan by) {
    scheduler->advance_time(by);
    run();
  }

  /// The reason `target` exits with, once it has.
  std::shared_ptr<std::optional<caf::error>> watch(const caf::actor& target) {
    auto seen = std::make_shared<std::optional<caf::error>>();
    spawned.push_back(system->spawn([target, seen](caf::event_based_actor* self) -> caf::behavior {
      self->monitor(target);
      self->set_down_handler([seen](caf::down_msg& down) { *seen = down.reason; });
      return {[](int) {}};  // Keeps the watcher alive until the test ends.
    }));
    run();
    return seen;
  }

  /// Sends a request from a probe actor, runs the system, returns the answer.
  template <class Result, class... Ts>
  caf::expected<Result> ask(const caf::actor& dest, Ts... xs) {
    auto answer = std::make_shared<std::optional<caf::expected<Result>>>();
    system->spawn([dest, answer, xs...](caf::event_based_actor* self) {
      self->request(dest, caf::infinite, xs...)
          .then([answer](Result& result) { *answer = std::move(result); },
                [answer](caf::error& error) { *answer = std::move(error); });
    });
    run();
    REQUIRE(answer->has_value());
    return std::move(**answer);
  }

  /// Like ask, for requests answered with nothing but success.
  template <class... Ts>
  caf::error ask_done(const caf::actor& dest, Ts... xs) {
    auto answer = std::make_shared<std::optional<caf::error>>();
    system->spawn([dest, answer, xs...](caf::event_based_actor* self) {
      self->request(dest, caf::infinite, xs...)
          .then([answer] { *answer = caf::error{}; },
                [answer](caf::error& error) { *answer = std::move(error); });
    });
    run();
    REQUIRE(answer->has_value());
    return std::move(**answer);
  }

  caf::actor child(const caf::actor& sup, const std::string& id) {
    auto handle = ask<caf::actor>(sup, wsvisor::supervisor_get_atom::value, id);
    REQUIRE(handle);
    return *handle;
  }

  supervisor_tree tree(const caf::actor& sup) {
    auto answer = ask<supervisor_tree>(sup, wsvisor::supervisor_tree_atom::value);
    REQUIRE(answer);
    return *answer;
  }

  void crash(const caf::actor& sup, const std::string& id) {
    caf::anon_send(child(sup, id), crash_atom::value);
    run();
  }
};

supervisor_spec static_spec(restart_strategy strategy, std::vector<child_spec> children) {
  supervisor_spec spec;
  spec.name = "test";
  spec.strategy = strategy;
  spec.intensity = {10, 60s};
  spec.children = std::move(children);
  return spec;
}

std::size_t restarts_of(const supervisor_tree& tree, const std::string& id) {
  for (auto& child : tree.children)
    if (child.id == id) return child.restarts;
  FAIL("no child " << id);
  return 0;
}

}  // namespace

TEST_CASE("children start in order and stop in reverse order, each awaited") {
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  auto sup = sys.spawn_supervisor(static_spec(
      restart_strategy::one_for_one, {worker("a", log), worker("b", log), worker("c", log)}));
  CHECK(*log == event_log{"start:a", "start:b", "start:c"});
  auto seen = sys.watch(sup);
  log->clear();
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  sys.run();
  CHECK(*log == event_log{"stop:c", "stop:b", "stop:a"});
  REQUIRE(seen->has_value());
  CHECK(**seen == caf::exit_reason::user_shutdown);
}

TEST_CASE("a child that ignores its shutdown is killed after its timeout, then the next stops") {
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  auto sup = sys.spawn_supervisor(static_spec(
      restart_strategy::one_for_one,
      {worker("a", log),
       worker("stubborn", log, restart_type::permanent, shutdown_policy::after(5s), true),
       worker("c", log)}));
  auto seen = sys.watch(sup);
  log->clear();
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  sys.run();
  // "a" waits for the stubborn child, which waits for its timeout.
  CHECK(*log == event_log{"stop:c"});
  sys.advance(4999ms);
  CHECK(*log == event_log{"stop:c"});
  CHECK_FALSE(seen->has_value());
  sys.advance(1ms);
  CHECK(*log == event_log{"stop:c", "stop:stubborn", "stop:a"});
  REQUIRE(seen->has_value());
  CHECK(**seen == caf::exit_reason::user_shutdown);
}

TEST_CASE("a brutal_kill child is killed at once even if it ignores exit messages") {
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  auto sup = sys.spawn_supervisor(static_spec(
      restart_strategy::one_for_one,
      {worker("a", log),
       worker("stubborn", log, restart_type::permanent, shutdown_policy::brutal_kill(), true)}));
  auto seen = sys.watch(sup);
  log->clear();
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  sys.run();
  CHECK(*log == event_log{"stop:stubborn", "stop:a"});
  CHECK(seen->has_value());
}

TEST_CASE("one_for_one restarts only the child that crashed") {
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  auto sup = sys.spawn_supervisor(static_spec(
      restart_strategy::one_for_one, {worker("a", log), worker("b", log), worker("c", log)}));
  auto before = sys.child(sup, "b");
  log->clear();
  sys.crash(sup, "b");
  CHECK(*log == event_log{"stop:b", "start:b"});
  CHECK(sys.child(sup, "b") != before);
  auto tree = sys.tree(sup);
  CHECK(tree.restarts == 1);
  CHECK(restarts_of(tree, "a") == 0);
  CHECK(restarts_of(tree, "b") == 1);
  CHECK(restarts_of(tree, "c") == 0);
}

TEST_CASE("one_for_all stops the others in reverse order, then restarts all in order") {
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  auto sup = sys.spawn_supervisor(static_spec(
      restart_strategy::one_for_all, {worker("a", log), worker("b", log), worker("c", log)}));
  log->clear();
  sys.crash(sup, "b");
  CHECK(*log == event_log{"stop:b", "stop:c", "stop:a", "start:a", "start:b", "start:c"});
  auto tree = sys.tree(sup);
  CHECK(tree.running_count == 3);
  CHECK(restarts_of(tree, "a") == 1);
  CHECK(restarts_of(tree, "b") == 1);
}

TEST_CASE("rest_for_one restarts the crashed child and those started after it") {
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  auto sup = sys.spawn_supervisor(
      static_spec(restart_strategy::rest_for_one,
                  {worker("a", log), worker("b", log), worker("c", log), worker("d", log)}));
  log->clear();
  sys.crash(sup, "b");
  CHECK(*log == event_log{"stop:b", "stop:d", "stop:c", "start:b", "start:c", "start:d"});
  auto tree = sys.tree(sup);
  CHECK(restarts_of(tree, "a") == 0);
  CHECK(restarts_of(tree, "d") == 1);
}

TEST_CASE("a failure outside the group during a group restart is handled after it") {
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  auto sup = sys.spawn_supervisor(
      static_spec(restart_strategy::rest_for_one,
                  {worker("a", log), worker("b", log),
                   worker("c", log, restart_type::permanent, shutdown_policy::after(1s), true)}));
  auto a = sys.child(sup, "a");
  log->clear();
  sys.crash(sup, "b");
  // The group (b, c) waits for the stubborn c; meanwhile a, before the group, crashes.
  caf::anon_send(a, crash_atom::value);
  sys.run();
  CHECK(*log == event_log{"stop:b", "stop:a"});
  sys.advance(1s);
  // The group restart completes, then a's failure restarts a and all after it.
  CHECK(*log == event_log{"stop:b", "stop:a", "stop:c", "start:b", "start:c"});
  sys.advance(1s);
  CHECK(*log == event_log{"stop:b", "stop:a", "stop:c", "start:b", "start:c", "stop:c", "stop:b",
                          "start:a", "start:b", "start:c"});
  auto tree = sys.tree(sup);
  CHECK(tree.running_count == 3);
  CHECK(restarts_of(tree, "a") == 1);
  CHECK(restarts_of(tree, "c") == 2);
}

TEST_CASE("exceeding the restart intensity stops all children and escalates to the parent") {
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  auto spec = static_spec(restart_strategy::one_for_one,
                          {worker("a", log), worker("b", log), worker("c", log)});
  spec.intensity = {2, 10s};
  auto sup = sys.spawn_supervisor(spec);
  auto seen = sys.watch(sup);

  SUBCASE("the restart beyond R within T escalates") {
    sys.crash(sup, "b");
    sys.advance(1s);
    sys.crash(sup, "b");
    CHECK_FALSE(seen->has_value());
    log->clear();
    sys.crash(sup, "b");
    // No third restart: the others stop in reverse start order.
    CHECK(*log == event_log{"stop:b", "stop:c", "stop:a"});
    REQUIRE(seen->has_value());
    CHECK(**seen == supervision_error::restart_intensity_exceeded);
    CHECK(**seen != caf::exit_reason::user_shutdown);
    CHECK((*seen)->category() == wsvisor::supervision_error_category);
  }
  SUBCASE("restarts older than T no longer count") {
    sys.crash(sup, "b");
    sys.crash(sup, "a");
    sys.advance(10s);
    sys.crash(sup, "c");
    sys.crash(sup, "b");
    CHECK_FALSE(seen->has_value());
    CHECK(sys.tree(sup).restarts == 4);
  }
  SUBCASE("the tree query shows the budget and what the window has spent of it") {
    CHECK(sys.tree(sup).restarts_in_window == 0);
    sys.crash(sup, "b");
    sys.advance(4s);
    sys.crash(sup, "a");
    auto tree = sys.tree(sup);
    CHECK(tree.intensity.max_restarts == 2);
    CHECK(tree.intensity.period == caf::timespan{10s});
    CHECK(tree.restarts_in_window == 2);
    sys.advance(6s);  // the first restart leaves the window
    CHECK(sys.tree(sup).restarts_in_window == 1);
    sys.advance(4s);
    CHECK(sys.tree(sup).restarts_in_window == 0);
    CHECK(sys.tree(sup).restarts == 2);
  }
}

TEST_CASE("a parent supervisor restarts a child supervisor that escalated") {
  std::vector<std::string> restarted;
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  auto inner = static_spec(restart_strategy::one_for_one, {worker("w", log)});
  inner.name = "inner";
  inner.intensity = {0, 10s};
  auto outer =
      static_spec(restart_strategy::one_for_one, {wsvisor::supervisor_child("inner", inner)});
  outer.on_restart = [&restarted](const std::string& id, const caf::actor&) {
    restarted.push_back(id);
  };
  auto sup = sys.spawn_supervisor(outer);
  auto inner_sup = sys.child(sup, "inner");
  auto seen = sys.watch(inner_sup);
  log->clear();
  sys.crash(inner_sup, "w");
  REQUIRE(seen->has_value());
  CHECK(**seen == supervision_error::restart_intensity_exceeded);
  CHECK(restarted == std::vector<std::string>{"inner"});
  CHECK(*log == event_log{"stop:w", "start:w"});
  CHECK(sys.child(sup, "inner") != inner_sup);
}

TEST_CASE("restart types on normal and abnormal exits") {
  std::vector<std::string> removed;
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  auto spec = static_spec(restart_strategy::one_for_one,
                          {worker("permanent", log, restart_type::permanent),
                           worker("transient", log, restart_type::transient),
                           worker("temporary", log, restart_type::temporary)});
  spec.on_child_removed = [&removed](const std::string& id, const caf::error&) {
    removed.push_back(id);
  };
  auto sup = sys.spawn_supervisor(spec);
  log->clear();

  SUBCASE("normal exit: only the permanent child is restarted") {
    for (auto id : {"permanent", "transient", "temporary"})
      caf::anon_send(sys.child(sup, id), finish_atom::value);
    sys.run();
    CHECK(*log ==
          event_log{"stop:permanent", "start:permanent", "stop:transient", "stop:temporary"});
    auto tree = sys.tree(sup);
    REQUIRE(tree.children.size() == 2);  // The temporary child is forgotten.
    CHECK(tree.children[0].running);
    CHECK_FALSE(tree.children[1].running);  // The transient one is kept, stopped.
    CHECK(removed == std::vector<std::string>{"temporary"});
  }
  SUBCASE("a shutdown exit counts as normal for a transient child") {
    caf::anon_send_exit(sys.child(sup, "transient"), caf::exit_reason::user_shutdown);
    sys.run();
    CHECK(*log == event_log{"stop:transient"});
  }
  SUBCASE("abnormal exit (a throwing handler): permanent and transient are restarted") {
    for (auto id : {"permanent", "transient", "temporary"}) sys.crash(sup, id);
    CHECK(*log == event_log{"stop:permanent", "start:permanent", "stop:transient",
                            "start:transient", "stop:temporary"});
    CHECK(sys.tree(sup).child_count == 2);
    CHECK(removed == std::vector<std::string>{"temporary"});
  }
}

TEST_CASE("backoff delays restarts: exact delay, growth, cap, jitter and reset") {
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  auto spec = static_spec(restart_strategy::one_for_one, {worker("a", log)});
  spec.intensity = {100, 60s};
  spec.backoff = wsvisor::backoff_policy{100ms, 1s, 0.5, 10s, [] { return 0.5; }};
  auto sup = sys.spawn_supervisor(spec);

  // The restart happens exactly at the delay, not a tick earlier.
  auto expect_restart_after = [&](caf::timespan delay) {
    INFO("expected delay: " << delay.count() << "ns");
    log->clear();
    sys.crash(sup, "a");
    CHECK(*log == event_log{"stop:a"});
    auto tree = sys.tree(sup);
    CHECK_FALSE(tree.children[0].running);
    sys.advance(delay - 1ns);
    CHECK(*log == event_log{"stop:a"});
    sys.advance(1ns);
    CHECK(*log == event_log{"stop:a", "start:a"});
  };
  // min * 2^n * (1 + 0.5 * 0.5)
  expect_restart_after(125ms);
  expect_restart_after(250ms);
  expect_restart_after(500ms);
  expect_restart_after(1000ms);
  // Capped at max before the jitter.
  expect_restart_after(1250ms);
  expect_restart_after(1250ms);
  // After running for reset_after without a failure, back to the minimum.
  sys.advance(10s);
  expect_restart_after(125ms);
}

TEST_CASE("the backoff delay formula") {
  wsvisor::backoff_policy policy{10ms, 1s, 0.2, 10s, nullptr};
  CHECK(wsvisor::detail::backoff_delay(policy, 0, 0.0) == 10ms);
  CHECK(wsvisor::detail::backoff_delay(policy, 3, 0.0) == 80ms);
  CHECK(wsvisor::detail::backoff_delay(policy, 3, 1.0) == 96ms);
  CHECK(wsvisor::detail::backoff_delay(policy, 7, 0.0) == 1s);
  CHECK(wsvisor::detail::backoff_delay(policy, 1000, 1.0) == 1200ms);
}

TEST_CASE("a group restart waits for the backoff delay after stopping the group") {
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  auto spec = static_spec(restart_strategy::one_for_all, {worker("a", log), worker("b", log)});
  spec.backoff = wsvisor::backoff_policy{200ms, 1s, 0.0, 10s, [] { return 0.0; }};
  auto sup = sys.spawn_supervisor(spec);
  log->clear();
  sys.crash(sup, "a");
  CHECK(*log == event_log{"stop:a", "stop:b"});
  sys.advance(199ms);
  CHECK(log->size() == 2);
  sys.advance(1ms);
  CHECK(*log == event_log{"stop:a", "stop:b", "start:a", "start:b"});
}

TEST_CASE("dynamic children: 10,000 added at run time, one crash restarts just it") {
  std::vector<std::string> restarted;
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  supervisor_spec spec;
  spec.name = "shard";
  spec.strategy = restart_strategy::dynamic;
  spec.intensity = {10, 1s};
  spec.on_restart = [&restarted](const std::string& id, const caf::actor&) {
    restarted.push_back(id);
  };
  auto sup = sys.spawn_supervisor(spec);
  constexpr int child_count = 10'000;
  for (int i = 0; i < child_count; ++i)
    caf::anon_send(sup, wsvisor::supervisor_add_atom::value,
                   worker("conn-" + std::to_string(i), log, restart_type::transient));
  sys.run();
  CHECK(log->size() == child_count);
  auto tree = sys.tree(sup);
  CHECK(tree.strategy == restart_strategy::dynamic);
  CHECK(tree.child_count == child_count);
  CHECK(tree.running_count == child_count);
  CHECK(tree.children.empty());

  log->clear();
  sys.crash(sup, "conn-4321");
  CHECK(*log == event_log{"stop:conn-4321", "start:conn-4321"});
  CHECK(restarted == std::vector<std::string>{"conn-4321"});

  // A transient dynamic child that finishes normally leaves the table.
  log->clear();
  caf::anon_send(sys.child(sup, "conn-17"), finish_atom::value);
  sys.run();
  CHECK(*log == event_log{"stop:conn-17"});
  CHECK(sys.tree(sup).child_count == child_count - 1);

  // Removal by id and by address answers once the child is down.
  log->clear();
  CHECK_FALSE(sys.ask_done(sup, wsvisor::supervisor_remove_atom::value, std::string{"conn-5"}));
  auto by_address = sys.child(sup, "conn-6").address();
  CHECK_FALSE(sys.ask_done(sup, wsvisor::supervisor_remove_atom::value, by_address));
  CHECK(*log == event_log{"stop:conn-5", "stop:conn-6"});
  CHECK(sys.tree(sup).child_count == child_count - 3);
  CHECK(sys.ask_done(sup, wsvisor::supervisor_remove_atom::value, std::string{"conn-5"}) ==
        supervision_error::no_such_child);
  CHECK(sys.ask<caf::actor>(sup, wsvisor::supervisor_get_atom::value, std::string{"conn-5"})
            .error() == supervision_error::no_such_child);
  // The id of a removed child is free again.
  CHECK(sys.ask<caf::actor>(sup, wsvisor::supervisor_add_atom::value, worker("conn-5", log)));
  CHECK(sys.ask_done(sup, wsvisor::supervisor_remove_atom::value, std::string{"conn-5"}) ==
        caf::error{});

  // Adding answers with the child's handle; a taken id is refused.
  auto added = sys.ask<caf::actor>(sup, wsvisor::supervisor_add_atom::value, worker("extra", log));
  REQUIRE(added);
  CHECK(*added == sys.child(sup, "extra"));
  auto duplicate =
      sys.ask<caf::actor>(sup, wsvisor::supervisor_add_atom::value, worker("extra", log));
  CHECK(duplicate.error() == supervision_error::duplicate_child_id);

  // On exit all stop (in parallel) before the supervisor does.
  auto seen = sys.watch(sup);
  log->clear();
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  sys.run();
  CHECK(log->size() == child_count - 3 + 1);
  REQUIRE(seen->has_value());
  CHECK(**seen == caf::exit_reason::user_shutdown);
}

TEST_CASE("a dynamic child over its own restart budget is given up, the supervisor carries on") {
  std::vector<std::pair<std::string, caf::error>> removed;
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  supervisor_spec spec;
  spec.name = "shard";
  spec.strategy = restart_strategy::dynamic;
  spec.intensity = {1000, 1s};
  spec.child_intensity = wsvisor::restart_intensity{2, 60s};
  spec.on_child_removed = [&removed](const std::string& id, const caf::error& reason) {
    removed.emplace_back(id, reason);
  };
  auto sup = sys.spawn_supervisor(spec);
  auto seen = sys.watch(sup);
  for (auto id : {"poisoned", "healthy"})
    caf::anon_send(sup, wsvisor::supervisor_add_atom::value, worker(id, log));
  sys.run();
  sys.crash(sup, "poisoned");
  sys.crash(sup, "poisoned");
  CHECK(removed.empty());
  sys.crash(sup, "poisoned");
  REQUIRE(removed.size() == 1);
  CHECK(removed[0].first == "poisoned");
  CHECK(removed[0].second == supervision_error::child_restart_budget_exceeded);
  CHECK_FALSE(seen->has_value());
  auto tree = sys.tree(sup);
  CHECK(tree.child_count == 1);
  CHECK(tree.restarts == 2);
}

TEST_CASE("restart callback and tree query over nested supervisors") {
  std::vector<std::string> restarted;
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  supervisor_spec shard;
  shard.name = "shard-0";
  shard.strategy = restart_strategy::dynamic;
  auto root = static_spec(restart_strategy::one_for_one,
                          {worker("limit_guard", log), worker("janitor", log),
                           wsvisor::supervisor_child("shard-0", shard)});
  root.name = "root";
  root.on_restart = [&restarted](const std::string& id, const caf::actor&) {
    restarted.push_back(id);
  };
  auto sup = sys.spawn_supervisor(root);
  auto shard_sup = sys.child(sup, "shard-0");
  for (int i = 0; i < 3; ++i)
    caf::anon_send(shard_sup, wsvisor::supervisor_add_atom::value,
                   worker("conn-" + std::to_string(i), log));
  sys.run();
  sys.crash(sup, "janitor");
  sys.crash(sup, "janitor");
  CHECK(restarted == std::vector<std::string>{"janitor", "janitor"});

  auto tree = sys.tree(sup);
  CHECK(tree.name == "root");
  CHECK(tree.strategy == restart_strategy::one_for_one);
  CHECK(wsvisor::to_string(tree.strategy) == "one_for_one");
  CHECK(tree.restarts == 2);
  REQUIRE(tree.children.size() == 3);
  CHECK(tree.children[0].id == "limit_guard");
  CHECK(tree.children[0].running);
  CHECK(tree.children[0].restarts == 0);
  CHECK(tree.children[1].id == "janitor");
  CHECK(tree.children[1].restarts == 2);
  CHECK(tree.children[0].subtree == nullptr);
  REQUIRE(tree.children[2].subtree != nullptr);
  CHECK(tree.children[2].subtree->name == "shard-0");
  CHECK(tree.children[2].subtree->strategy == restart_strategy::dynamic);
  CHECK(tree.children[2].subtree->child_count == 3);
}

TEST_CASE("a child that fails to start at first stops the started ones and the supervisor") {
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  child_spec broken;
  broken.id = "broken";
  broken.start = [](caf::local_actor&) -> caf::actor { throw std::runtime_error("no"); };
  auto spec = static_spec(restart_strategy::one_for_one,
                          {worker("a", log), worker("b", log), broken, worker("c", log)});
  auto sup = sys.system->spawn<supervisor>(spec);
  sys.spawned.push_back(sup);
  auto seen = sys.watch(sup);
  sys.run();
  CHECK(*log == event_log{"start:a", "start:b", "stop:b", "stop:a"});
  REQUIRE(seen->has_value());
  CHECK(**seen == supervision_error::start_failed);
}

TEST_CASE("a supervisor that is killed takes its children with it") {
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  auto sup = sys.spawn_supervisor(static_spec(
      restart_strategy::one_for_one,
      {worker("a", log),
       worker("stubborn", log, restart_type::permanent, shutdown_policy::infinity(), true)}));
  log->clear();
  caf::anon_send_exit(sup, caf::exit_reason::kill);
  sys.run();
  CHECK(log->size() == 2);
}

namespace {

using count_atom = caf::atom_constant<caf::atom("count")>;

/// A supervisor with a handler of its own, as a subclass adds one.
class counting_supervisor : public supervisor {
 public:
  using supervisor::supervisor;

  caf::behavior make_behavior() override {
    caf::message_handler own{[this](count_atom) { return child_count(); }};
    return own.or_else(supervisor::make_behavior());
  }
};

}  // namespace

TEST_CASE("a subclass adds handlers and keeps the supervisor's") {
  deterministic_system sys;
  auto log = std::make_shared<event_log>();
  auto sup = sys.system->spawn<counting_supervisor>(
      static_spec(restart_strategy::one_for_one, {worker("a", log), worker("b", log)}));
  sys.spawned.push_back(sup);
  sys.run();
  auto count = sys.ask<std::size_t>(sup, count_atom::value);
  REQUIRE(count);
  CHECK(*count == 2);
  log->clear();
  sys.crash(sup, "a");
  CHECK(*log == event_log{"stop:a", "start:a"});
}
