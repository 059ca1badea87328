#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor.hpp>
#include <caf/behavior.hpp>
#include <caf/error.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/timespan.hpp>

#include "wsvisor/supervision/detail/child_table.hpp"
#include "wsvisor/supervision/restart_window.hpp"
#include "wsvisor/supervision/supervisor_spec.hpp"
#include "wsvisor/supervision/supervisor_tree.hpp"

namespace wsvisor {

/// A supervisor actor with Erlang/OTP semantics: spawn it with
/// `sys.spawn<wsvisor::supervisor>(spec)` (or `self->spawn<...>` from a parent)
/// and talk to it with the messages in atoms.hpp.
///
/// It monitors its children (never links: linking many children to one actor
/// is quadratic in CAF 0.17), keeps a strong handle to each, and restarts them
/// as the strategy, restart types, intensity and backoff say. Sending it an
/// exit message stops its children in reverse start order, each with its
/// shutdown policy, before it exits with the same reason. A supervisor that
/// exceeds its restart intensity does the same and exits with
/// supervision_error::restart_intensity_exceeded, which its parent's down
/// message carries.
///
/// Subclasses may add handlers: `return mine.or_else(supervisor::make_behavior())`.
class supervisor : public caf::event_based_actor {
 public:
  supervisor(caf::actor_config& config, supervisor_spec spec);

  caf::behavior make_behavior() override;

 protected:
  /// If the supervisor dies without stopping its children in order (it was
  /// killed), its children are killed too: they must not outlive it.
  void on_exit() override;

  /// Starts and supervises a new child.
  caf::expected<caf::actor> add_child(child_spec spec);

  /// Children held, running or waiting for a restart.
  std::size_t child_count() const { return children_.size(); }

 private:
  using key = detail::child_table::key;

  enum class phase {
    starting,
    running,
    /// One_for_all / rest_for_one: stopping the group, then waiting for its
    /// backoff delay, then starting it again.
    restarting_group,
    /// Stopping every child before the supervisor exits.
    shutting_down,
  };

  struct group_restart {
    key failed;
    /// In start order.
    std::vector<key> members;
    caf::timespan delay;
    uint64_t epoch;
  };

  void start_initial_children();
  bool start(key k);
  void handle_down(const caf::down_msg& down);
  void handle_unexpected_exit(key k, caf::error reason);
  void route_failure(key k, caf::error reason);
  void handle_failure(key k, caf::error reason);
  bool needs_restart(const detail::child_record& child, const caf::error& reason) const;
  caf::timespan next_backoff_delay(detail::child_record& child);
  void restart_one(key k);
  void begin_group_restart(key failed, caf::timespan delay);
  void start_group();
  void handle_deferred_failures();
  void begin_shutdown(caf::error reason);

  // The stop sequence: steps run one after the other, the children of a step
  // stop in parallel, and `after_stop_sequence_` runs once all have stopped.
  void run_stop_sequence(std::deque<std::vector<key>> steps, std::function<void()> then);
  void advance_stop_sequence();
  void begin_stop(key k);
  void finish_stop(key k, const caf::error& reason);
  void abandon_stop_sequence();

  void remove_child(key k, const caf::error& reason);
  caf::result<caf::unit_t> request_removal(std::optional<key> k);
  caf::result<caf::actor> current_handle(const std::string& id);
  caf::result<supervisor_tree> answer_tree_query();
  double draw_random();
  caf::actor self_handle() { return caf::actor_cast<caf::actor>(this); }

  supervisor_spec spec_;
  detail::child_table children_;
  restart_window restarts_;
  std::size_t total_restarts_ = 0;
  phase phase_ = phase::starting;
  caf::error shutdown_reason_;

  std::optional<group_restart> group_;
  uint64_t group_epoch_ = 0;
  /// Failures seen while a group restart was in progress, handled after it.
  struct deferred_failure {
    key child;
    /// The failure is stale if the child was started since.
    uint64_t generation;
    caf::error reason;
  };
  std::deque<deferred_failure> deferred_failures_;

  std::deque<std::vector<key>> stop_steps_;
  std::vector<key> current_stop_step_;
  std::size_t awaited_stops_ = 0;
  std::function<void()> after_stop_sequence_;

  std::mt19937_64 random_engine_;
};

/// A child spec that starts a supervisor under another one: it waits for the
/// nested supervisor to stop its own children (shutdown infinity) and nests
/// its tree in the parent's tree query.
child_spec supervisor_child(std::string id, supervisor_spec spec,
                            restart_type restart = restart_type::permanent);

}  // namespace wsvisor
