#include "wsvisor/supervision/supervisor.hpp"

#include <algorithm>
#include <memory>

#include <caf/exit_reason.hpp>
#include <caf/response_promise.hpp>
#include <caf/typed_response_promise.hpp>

#include "wsvisor/supervision/atoms.hpp"
#include "wsvisor/supervision/detail/backoff_delay.hpp"
#include "wsvisor/supervision/detail/internal_atoms.hpp"
#include "wsvisor/supervision/supervision_error.hpp"

namespace wsvisor {

supervisor::supervisor(caf::actor_config& config, supervisor_spec spec)
    : caf::event_based_actor(config),
      spec_(std::move(spec)),
      restarts_(spec_.intensity),
      random_engine_(std::random_device{}()) {
  set_down_handler([this](caf::down_msg& down) { handle_down(down); });
  set_exit_handler([this](caf::exit_msg& exit) {
    // As with CAF's default handler, an exit message with the normal reason
    // asks for nothing. exit_reason::kill never reaches this handler.
    if (exit.reason != caf::exit_reason::normal) begin_shutdown(std::move(exit.reason));
  });
}

caf::behavior supervisor::make_behavior() {
  start_initial_children();
  // A supervisor whose children could not start may have quit already.
  if (getf(is_shutting_down_flag)) return {};
  return {
      [this](supervisor_add_atom, child_spec& spec) -> caf::result<caf::actor> {
        auto added = add_child(std::move(spec));
        if (!added) return std::move(added.error());
        return std::move(*added);
      },
      [this](supervisor_remove_atom, const std::string& id) -> caf::result<caf::unit_t> {
        return request_removal(children_.key_of_id(id));
      },
      [this](supervisor_remove_atom, const caf::actor_addr& child) -> caf::result<caf::unit_t> {
        if (!child) return make_error(supervision_error::no_such_child);
        return request_removal(children_.key_of_actor(child.id()));
      },
      [this](supervisor_get_atom, const std::string& id) -> caf::result<caf::actor> {
        return current_handle(id);
      },
      [this](supervisor_tree_atom) -> caf::result<supervisor_tree> { return answer_tree_query(); },
      [this](detail::restart_timer_atom, key k, uint64_t generation) {
        auto* child = children_.find(k);
        if (child == nullptr || child->generation != generation ||
            child->state != detail::child_state::awaiting_restart)
          return;
        restart_one(k);
      },
      [this](detail::group_timer_atom, uint64_t epoch) {
        if (phase_ == phase::restarting_group && group_ && group_->epoch == epoch) start_group();
      },
      [this](detail::stop_timer_atom, key k, uint64_t generation) {
        auto* child = children_.find(k);
        if (child == nullptr || child->generation != generation ||
            child->state != detail::child_state::stopping)
          return;
        send_exit(child->handle, caf::exit_reason::kill);
      },
      [this](detail::start_failed_atom, key k, uint64_t generation) {
        auto* child = children_.find(k);
        if (child == nullptr || child->generation != generation ||
            child->state != detail::child_state::awaiting_restart)
          return;
        child->state = detail::child_state::stopped;
        route_failure(k, make_error(supervision_error::start_failed));
      },
  };
}

void supervisor::on_exit() {
  // Reached with children left only if the supervisor was killed: an ordered
  // stop empties the table before quitting.
  std::vector<key> left;
  for (auto& [k, child] : children_) {
    if (child.handle) send_exit(child.handle, caf::exit_reason::kill);
    left.push_back(k);
  }
  for (auto k : left) remove_child(k, caf::exit_reason::kill);
}

caf::expected<caf::actor> supervisor::add_child(child_spec spec) {
  if (phase_ == phase::shutting_down) return make_error(supervision_error::shutting_down);
  if (!spec.id.empty() && children_.key_of_id(spec.id))
    return make_error(supervision_error::duplicate_child_id);
  auto k = children_.insert(std::move(spec));
  if (!start(k)) {
    children_.erase(k);
    return make_error(supervision_error::start_failed);
  }
  return children_.find(k)->handle;
}

void supervisor::start_initial_children() {
  for (auto& spec : spec_.children) {
    if (!spec.id.empty() && children_.key_of_id(spec.id)) {
      begin_shutdown(make_error(supervision_error::duplicate_child_id));
      return;
    }
    auto k = children_.insert(spec);
    if (!start(k)) {
      // OTP: a supervisor whose children cannot start does not start either.
      children_.erase(k);
      begin_shutdown(make_error(supervision_error::start_failed));
      return;
    }
  }
  phase_ = phase::running;
}

bool supervisor::start(key k) {
  auto* child = children_.find(k);
  // A new generation even if the start fails, so that a failure deferred
  // before this attempt is recognised as stale.
  ++child->generation;
  // A failed start counts as a run of zero length for the backoff reset.
  child->started_at = clock().now();
  caf::actor actor;
  try {
    if (child->spec.start) actor = child->spec.start(*this);
  } catch (...) {
    actor = nullptr;
  }
  if (!actor) return false;
  monitor(actor);
  children_.bind(k, std::move(actor));
  child->state = detail::child_state::running;
  return true;
}

void supervisor::handle_down(const caf::down_msg& down) {
  auto k = children_.key_of_actor(down.source.id());
  if (!k) return;
  if (children_.find(*k)->state == detail::child_state::stopping)
    finish_stop(*k, down.reason);
  else
    handle_unexpected_exit(*k, down.reason);
}

void supervisor::handle_unexpected_exit(key k, caf::error reason) {
  children_.unbind(k);
  auto* child = children_.find(k);
  ++child->generation;
  child->state = detail::child_state::stopped;
  route_failure(k, std::move(reason));
}

void supervisor::route_failure(key k, caf::error reason) {
  auto* child = children_.find(k);
  switch (phase_) {
    case phase::shutting_down:
      // The stop sequence had not reached it yet; nothing is restarted now.
      remove_child(k, reason);
      return;
    case phase::restarting_group: {
      auto& members = group_->members;
      if (std::find(members.begin(), members.end(), k) != members.end()) {
        // It was about to be stopped and restarted with its group anyway.
        if (child->spec.restart == restart_type::temporary)
          remove_child(k, reason);
        else
          child->state = detail::child_state::awaiting_restart;
        return;
      }
      deferred_failures_.push_back({k, child->generation, std::move(reason)});
      return;
    }
    case phase::starting:
    case phase::running:
      handle_failure(k, std::move(reason));
      return;
  }
}

bool supervisor::needs_restart(const detail::child_record& child, const caf::error& reason) const {
  switch (child.spec.restart) {
    case restart_type::permanent:
      return true;
    case restart_type::temporary:
      return false;
    case restart_type::transient:
      return reason != caf::exit_reason::normal && reason != caf::exit_reason::user_shutdown;
  }
  return false;
}

void supervisor::handle_failure(key k, caf::error reason) {
  auto* child = children_.find(k);
  if (!needs_restart(*child, reason)) {
    // OTP keeps a static transient child that finished, so that a group
    // restart starts it again; a dynamic one, like any temporary child, goes.
    if (child->spec.restart == restart_type::transient &&
        spec_.strategy != restart_strategy::dynamic)
      child->state = detail::child_state::stopped;
    else
      remove_child(k, reason);
    return;
  }
  auto at = clock().now();
  if (spec_.child_intensity) {
    if (!child->own_restarts) child->own_restarts.emplace(*spec_.child_intensity);
    if (!child->own_restarts->admit(at)) {
      remove_child(k, make_error(supervision_error::child_restart_budget_exceeded));
      return;
    }
  }
  if (!restarts_.admit(at)) {
    begin_shutdown(make_error(supervision_error::restart_intensity_exceeded));
    return;
  }
  auto delay = next_backoff_delay(*child);
  switch (spec_.strategy) {
    case restart_strategy::one_for_one:
    case restart_strategy::dynamic:
      child->state = detail::child_state::awaiting_restart;
      if (delay > caf::timespan{0})
        delayed_send(self_handle(), delay, detail::restart_timer_atom::value, k, child->generation);
      else
        restart_one(k);
      return;
    case restart_strategy::one_for_all:
    case restart_strategy::rest_for_one:
      begin_group_restart(k, delay);
      return;
  }
}

caf::timespan supervisor::next_backoff_delay(detail::child_record& child) {
  if (!spec_.backoff) return caf::timespan{0};
  const auto& policy = *spec_.backoff;
  if (clock().now() - child.started_at >= policy.reset_after) child.consecutive_failures = 0;
  return detail::backoff_delay(policy, child.consecutive_failures++, draw_random());
}

double supervisor::draw_random() {
  const auto& policy = *spec_.backoff;
  if (policy.random) return policy.random();
  return std::uniform_real_distribution<double>{0.0, 1.0}(random_engine_);
}

void supervisor::restart_one(key k) {
  auto* child = children_.find(k);
  if (!start(k)) {
    // Handled as a new failure, in a message of its own: a child that keeps
    // failing to start must not recurse until the intensity runs out.
    send(self_handle(), detail::start_failed_atom::value, k, child->generation);
    return;
  }
  ++child->restarts;
  ++total_restarts_;
  if (spec_.on_restart) spec_.on_restart(child->spec.id, child->handle);
}

void supervisor::begin_group_restart(key failed, caf::timespan delay) {
  phase_ = phase::restarting_group;
  group_restart group{failed, {}, delay, ++group_epoch_};
  auto first =
      spec_.strategy == restart_strategy::one_for_all ? children_.begin() : children_.at(failed);
  std::deque<std::vector<key>> steps;
  for (auto i = first; i != children_.end(); ++i) {
    auto& child = i->second;
    // A child on its way out for a removal request is no longer part of it.
    if (child.remove_when_down) continue;
    group.members.push_back(i->first);
    if (child.state == detail::child_state::running)
      steps.push_front({i->first});  // Reverse start order, one at a time.
    else
      child.state = detail::child_state::awaiting_restart;
  }
  group_ = std::move(group);
  run_stop_sequence(std::move(steps), [this] {
    if (group_->delay > caf::timespan{0})
      delayed_send(self_handle(), group_->delay, detail::group_timer_atom::value, group_->epoch);
    else
      start_group();
  });
}

void supervisor::start_group() {
  auto group = std::move(*group_);
  group_.reset();
  phase_ = phase::running;
  for (auto k : group.members) {
    auto* child = children_.find(k);
    // Removed meanwhile, or a temporary child stopped with the group.
    if (child == nullptr || child->state != detail::child_state::awaiting_restart) continue;
    if (start(k)) {
      ++child->restarts;
      ++total_restarts_;
      if (spec_.on_restart) spec_.on_restart(child->spec.id, child->handle);
    } else {
      send(self_handle(), detail::start_failed_atom::value, k, child->generation);
    }
  }
  handle_deferred_failures();
}

void supervisor::handle_deferred_failures() {
  // A failure handled here may begin another group restart; the rest waits
  // for that one.
  while (phase_ == phase::running && !deferred_failures_.empty()) {
    auto failure = std::move(deferred_failures_.front());
    deferred_failures_.pop_front();
    auto* child = children_.find(failure.child);
    if (child == nullptr || child->generation != failure.generation) continue;
    handle_failure(failure.child, std::move(failure.reason));
  }
}

void supervisor::begin_shutdown(caf::error reason) {
  if (phase_ == phase::shutting_down) return;
  phase_ = phase::shutting_down;
  shutdown_reason_ = std::move(reason);
  group_.reset();
  deferred_failures_.clear();
  abandon_stop_sequence();
  std::vector<key> idle;
  std::vector<key> alive;
  std::deque<std::vector<key>> steps;
  for (auto& [k, child] : children_) {
    if (child.state == detail::child_state::running || child.state == detail::child_state::stopping)
      alive.push_back(k);
    else
      idle.push_back(k);
  }
  for (auto k : idle) remove_child(k, shutdown_reason_);
  if (spec_.strategy == restart_strategy::dynamic) {
    // Dynamic children have no order among themselves (as in OTP's
    // simple_one_for_one): they stop in parallel, in one step.
    if (!alive.empty()) steps.push_back(std::move(alive));
  } else {
    for (auto k : alive) steps.push_front({k});
  }
  run_stop_sequence(std::move(steps), [this] { quit(shutdown_reason_); });
}

void supervisor::run_stop_sequence(std::deque<std::vector<key>> steps, std::function<void()> then) {
  stop_steps_ = std::move(steps);
  current_stop_step_.clear();
  awaited_stops_ = 0;
  after_stop_sequence_ = std::move(then);
  advance_stop_sequence();
}

void supervisor::advance_stop_sequence() {
  while (awaited_stops_ == 0) {
    if (stop_steps_.empty()) {
      current_stop_step_.clear();
      // Moved out first: the continuation may begin a new sequence.
      auto then = std::move(after_stop_sequence_);
      after_stop_sequence_ = nullptr;
      if (then) then();
      return;
    }
    current_stop_step_ = std::move(stop_steps_.front());
    stop_steps_.pop_front();
    for (auto k : current_stop_step_) {
      auto* child = children_.find(k);
      // Gone or exited on its own since the sequence was planned.
      if (child == nullptr || (child->state != detail::child_state::running &&
                               child->state != detail::child_state::stopping))
        continue;
      child->awaited_by_stop_step = true;
      ++awaited_stops_;
      // A child already stopping (a removal) keeps its own timer.
      if (child->state == detail::child_state::running) begin_stop(k);
    }
  }
}

void supervisor::abandon_stop_sequence() {
  for (auto k : current_stop_step_)
    if (auto* child = children_.find(k)) child->awaited_by_stop_step = false;
  current_stop_step_.clear();
  stop_steps_.clear();
  awaited_stops_ = 0;
  after_stop_sequence_ = nullptr;
}

void supervisor::begin_stop(key k) {
  auto* child = children_.find(k);
  child->state = detail::child_state::stopping;
  ++child->generation;
  const auto& policy = child->spec.shutdown;
  switch (policy.how) {
    case shutdown_policy::mode::brutal_kill:
      send_exit(child->handle, caf::exit_reason::kill);
      return;
    case shutdown_policy::mode::timeout:
      send_exit(child->handle, caf::exit_reason::user_shutdown);
      delayed_send(self_handle(), policy.timeout, detail::stop_timer_atom::value, k,
                   child->generation);
      return;
    case shutdown_policy::mode::infinity:
      send_exit(child->handle, caf::exit_reason::user_shutdown);
      return;
  }
}

void supervisor::finish_stop(key k, const caf::error& reason) {
  children_.unbind(k);
  auto* child = children_.find(k);
  ++child->generation;
  bool awaited = child->awaited_by_stop_step;
  child->awaited_by_stop_step = false;
  // Only a group restart brings stopped children back, and never temporary
  // ones (as in OTP).
  bool restarts_later = phase_ == phase::restarting_group && !child->remove_when_down &&
                        child->spec.restart != restart_type::temporary;
  if (restarts_later)
    child->state = detail::child_state::awaiting_restart;
  else
    remove_child(k, reason);
  if (awaited && --awaited_stops_ == 0) advance_stop_sequence();
}

void supervisor::remove_child(key k, const caf::error& reason) {
  auto* child = children_.find(k);
  if (child == nullptr) return;
  auto waiters = std::move(child->removal_waiters);
  auto id = child->spec.id;
  children_.unbind(k);
  children_.erase(k);
  for (auto& waiter : waiters) waiter.deliver(caf::unit);
  if (spec_.on_child_removed) spec_.on_child_removed(id, reason);
}

caf::result<caf::unit_t> supervisor::request_removal(std::optional<key> k) {
  auto* child = k ? children_.find(*k) : nullptr;
  if (child == nullptr) return make_error(supervision_error::no_such_child);
  switch (child->state) {
    case detail::child_state::running:
    case detail::child_state::stopping: {
      // The answer waits for the down message.
      child->remove_when_down = true;
      auto promise = make_response_promise();
      child->removal_waiters.push_back(promise);
      if (child->state == detail::child_state::running) begin_stop(*k);
      return promise;
    }
    case detail::child_state::awaiting_restart:
    case detail::child_state::stopped:
      remove_child(*k, caf::exit_reason::user_shutdown);
      return caf::unit;
  }
  return caf::unit;
}

caf::result<caf::actor> supervisor::current_handle(const std::string& id) {
  auto k = children_.key_of_id(id);
  if (!k) return make_error(supervision_error::no_such_child);
  auto* child = children_.find(*k);
  if (child->state != detail::child_state::running)
    return make_error(supervision_error::child_not_running);
  return child->handle;
}

caf::result<supervisor_tree> supervisor::answer_tree_query() {
  supervisor_tree tree;
  tree.name = spec_.name;
  tree.strategy = spec_.strategy;
  tree.restarts = total_restarts_;
  tree.intensity = restarts_.limit();
  tree.restarts_in_window = restarts_.in_window(clock().now());
  tree.child_count = children_.size();
  tree.running_count = children_.running_count();
  if (spec_.strategy == restart_strategy::dynamic) return tree;
  std::vector<std::pair<std::size_t, caf::actor>> nested;
  for (auto& [k, child] : children_) {
    if (child.spec.kind == child_kind::supervisor && child.state == detail::child_state::running)
      nested.emplace_back(tree.children.size(), child.handle);
    tree.children.push_back(
        child_status{child.spec.id, static_cast<bool>(child.handle), child.restarts, nullptr});
  }
  if (nested.empty()) return tree;
  // Nested supervisors answer asynchronously; the reply goes out once all
  // have answered or timed out (a child that does not answer just has no
  // subtree).
  struct pending_answer {
    supervisor_tree tree;
    std::size_t awaited;
    caf::typed_response_promise<supervisor_tree> promise;
    void settle_one() {
      if (--awaited == 0) promise.deliver(std::move(tree));
    }
  };
  auto pending = std::make_shared<pending_answer>(
      pending_answer{std::move(tree), nested.size(), make_response_promise<supervisor_tree>()});
  for (auto& [index, handle] : nested) {
    request(handle, spec_.tree_query_timeout, supervisor_tree_atom::value)
        .then(
            [pending, index = index](supervisor_tree& subtree) {
              pending->tree.children[index].subtree =
                  std::make_shared<const supervisor_tree>(std::move(subtree));
              pending->settle_one();
            },
            [pending](caf::error&) { pending->settle_one(); });
  }
  return pending->promise;
}

child_spec supervisor_child(std::string id, supervisor_spec spec, restart_type restart) {
  child_spec child;
  child.id = std::move(id);
  child.restart = restart;
  child.shutdown = shutdown_policy::infinity();
  child.kind = child_kind::supervisor;
  child.start = [spec = std::move(spec)](caf::local_actor& parent) {
    return parent.spawn<supervisor>(spec);
  };
  return child;
}

}  // namespace wsvisor
