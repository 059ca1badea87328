#include "limit_guard.hpp"

#include <spdlog/spdlog.h>

#include <stdexcept>

#include "messages.hpp"

namespace wsvisor {
namespace {

using self_ptr = caf::stateful_actor<limit_guard_state>*;
using clock = std::chrono::steady_clock;

// guard -> itself: a parked upgrade's time is up.
using expire_atom = caf::atom_constant<caf::atom("expire")>;

// The session counts and logs the refusal when it answers (it may already have
// answered guard_unavailable: each refusal is counted once, as the client saw it).
void refuse(limit_guard_state& state, const admission_ticket& ticket, reject_reason reason,
            bool retry_after) {
  admission_decision decision;
  decision.reason = reason;
  if (retry_after)
    decision.retry_after = jittered_retry_after(state.context->config.limits.retry_after);
  ticket->reply(std::move(decision));
}

// Reserves the slot: the chosen shard spawns the connection actor and answers the session.
void place(self_ptr self, admission_ticket ticket, unsigned shard_index) {
  auto& state = self->state;
  auto shard = state.context->shard(shard_index);
  if (!shard) {
    // The shard is being restarted: fail closed rather than hold a slot nobody owns.
    state.policy->release(shard_index, ticket->user, ticket->ip);
    return refuse(state, ticket, reject_reason::guard_unavailable, true);
  }
  self->send(shard, spawn_atom::value, std::move(ticket));
}

void request_sweep(self_ptr self, const std::string& scope_key, sweep_level level,
                   sweep_scope scope, uint64_t needed);

void background_sweep_if_above_soft(self_ptr self) {
  auto& state = self->state;
  const auto total = state.policy->total();
  const auto soft = state.context->config.limits.soft_connections;
  if (total > soft && !state.sweeps_in_flight.count("all"))
    request_sweep(self, "all", sweep_level::moderate, sweep_scope{}, total - soft);
}

// Decides an upgrade (again, for a parked one). Returns false when it must keep waiting.
bool decide(self_ptr self, const admission_ticket& ticket, bool first_time) {
  auto& state = self->state;
  auto& context = *state.context;
  const auto verdict = state.policy->decide(*ticket, clock::now(), context.tree_up.load(),
                                            context.draining.load(), first_time);
  if (verdict.admitted) {
    place(self, ticket, verdict.shard);
    if (verdict.above_soft) background_sweep_if_above_soft(self);
    return true;
  }
  const bool at_cap =
      verdict.reason == reject_reason::user_limit || verdict.reason == reject_reason::server_full;
  if (!at_cap || !context.janitor()) {
    refuse(state, ticket, verdict.reason, verdict.retry_after);
    return true;
  }
  if (!first_time) return false;  // still at the cap: keep waiting for the sweep
  const std::string scope_key = verdict.reason == reject_reason::user_limit
                                    ? sweep_scope{sweep_scope::kind::user, ticket->user}.describe()
                                    : std::string("all");
  if (auto fruitless = state.fruitless_sweeps.find(scope_key);
      fruitless != state.fruitless_sweeps.end() &&
      clock::now() - fruitless->second < context.config.janitor.probe_timeout) {
    refuse(state, ticket, verdict.reason, verdict.retry_after);
    return true;
  }
  // At a cap: ask for a sweep of that scope and wait for a slot (CONTRACT section 4).
  parked_upgrade wait;
  wait.ticket = ticket;
  wait.reason = verdict.reason;
  sweep_scope scope;
  sweep_level level = sweep_level::moderate;
  if (verdict.reason == reject_reason::user_limit) {
    scope.what = sweep_scope::kind::user;
    scope.value = ticket->user;
    if (context.config.limits.user_overflow == "evict_idle") level = sweep_level::aggressive;
  }
  wait.scope_key = scope_key;
  const uint64_t id = state.next_parked++;
  state.parked.emplace(id, wait);
  state.parked_order.push_back(id);
  // Answer before the session's own admission_timeout gives up on us.
  self->delayed_send(self, context.config.limits.admission_timeout * 9 / 10, expire_atom::value,
                     id);
  if (!state.sweeps_in_flight.count(wait.scope_key))
    request_sweep(self, wait.scope_key, level, scope, 1);
  return true;
}

void refuse_parked(self_ptr self, uint64_t id) {
  auto& state = self->state;
  auto it = state.parked.find(id);
  if (it == state.parked.end()) return;
  refuse(state, it->second.ticket, it->second.reason, true);
  state.parked.erase(it);
  if (state.parked.empty()) state.parked_order.clear();
}

// A slot was freed: parked upgrades get it in arrival order.
void retry_parked(self_ptr self) {
  auto& state = self->state;
  for (auto it = state.parked_order.begin(); it != state.parked_order.end();) {
    auto found = state.parked.find(*it);
    if (found == state.parked.end()) {
      it = state.parked_order.erase(it);
      continue;
    }
    if (decide(self, found->second.ticket, false)) {
      state.parked.erase(found);
      it = state.parked_order.erase(it);
    } else {
      ++it;
    }
  }
}

void request_sweep(self_ptr self, const std::string& scope_key, sweep_level level,
                   sweep_scope scope, uint64_t needed) {
  auto janitor = self->state.context->janitor();
  if (!janitor) return;
  self->state.sweeps_in_flight.insert(scope_key);
  self->request(janitor, self->state.context->config.limits.admission_timeout, sweep_atom::value,
                level, std::move(scope), needed, sweep_kind::emergency)
      .then(
          [self, scope_key](const sweep_result& result) {
            self->state.sweeps_in_flight.erase(scope_key);
            if (result.evicted() > 0) return;  // their slots come back as releases
            self->state.fruitless_sweeps[scope_key] = clock::now();
            // Nothing freed: whoever waits on this scope is refused now.
            for (auto& [id, wait] : self->state.parked)
              if (wait.scope_key == scope_key) self->send(self, expire_atom::value, id);
          },
          [self, scope_key](caf::error&) { self->state.sweeps_in_flight.erase(scope_key); });
}

void admit(self_ptr self, admission_ticket ticket) {
  if (!self->state.awaiting_tables.empty()) {
    self->state.held_during_rebuild.push_back(std::move(ticket));
    return;
  }
  decide(self, ticket, true);
}

void rebuild_from_shards(self_ptr self) {
  auto& state = self->state;
  auto shards = state.context->shards();
  for (unsigned i = 0; i < shards.size(); ++i) {
    if (!shards[i]) continue;
    state.awaiting_tables.insert(i);
    self->request(shards[i], state.context->config.limits.admission_timeout, table_atom::value)
        .then(
            [self, i](std::vector<slot_key>& slots) {
              for (auto& slot : slots) self->state.policy->add(slot.shard, slot.user, slot.ip);
              self->state.awaiting_tables.erase(i);
              if (self->state.awaiting_tables.empty()) {
                spdlog::info("limit_guard rebuilt its counts from the shards: {} slots",
                             self->state.policy->total());
                auto held = std::move(self->state.held_during_rebuild);
                for (auto& ticket : held) admit(self, std::move(ticket));
              }
            },
            [self, i](caf::error&) {
              // A shard that cannot answer is being restarted: it will start empty.
              self->state.awaiting_tables.erase(i);
              if (self->state.awaiting_tables.empty()) {
                auto held = std::move(self->state.held_during_rebuild);
                for (auto& ticket : held) admit(self, std::move(ticket));
              }
            });
  }
}

}  // namespace

caf::behavior limit_guard_actor(self_ptr self, std::shared_ptr<service_context> context) {
  self->state.context = std::move(context);
  self->state.policy.emplace(self->state.context->config, self->state.context->shard_count);
  rebuild_from_shards(self);
  return {
      [self](admit_atom, admission_ticket& ticket) { admit(self, std::move(ticket)); },
      [self](release_atom, unsigned shard, const std::string& user, const std::string& ip) {
        if (self->state.awaiting_tables.count(shard)) return;  // in the coming table already
        self->state.policy->release(shard, user, ip);
        if (!self->state.parked.empty()) retry_parked(self);
      },
      [self](shard_down_atom, unsigned shard, const std::vector<slot_key>& slots) {
        if (self->state.awaiting_tables.count(shard)) return;
        for (auto& slot : slots) self->state.policy->release(slot.shard, slot.user, slot.ip);
        if (!self->state.parked.empty()) retry_parked(self);
      },
      [self](expire_atom, uint64_t id) { refuse_parked(self, id); },
      [](fault_atom, crash_atom) -> caf::result<void> {
        throw std::runtime_error("limit_guard crash (fault injection)");
      },
  };
}

}  // namespace wsvisor
