#include "limit_guard.hpp"

#include <wsvisor/log.hpp>

#include <stdexcept>

#include "connect_hook.hpp"
#include "messages.hpp"

namespace wsvisor {
namespace {

using self_ptr = caf::stateful_actor<limit_guard_state>*;

// guard -> itself: a parked upgrade's time is up; an upgrade waiting for a connect call
// to become free has waited long enough.
using expire_atom = caf::atom_constant<caf::atom("expire")>;
using busy_atom = caf::atom_constant<caf::atom("hookbusy")>;
// limit_guard -> itself: a parked claim's time is up.
using expire_claim_atom = caf::atom_constant<caf::atom("expclaim")>;

// A parked upgrade is answered at 9/10 of admission_timeout, before the session's own
// timer gives up on the guard; the sweep it waits for must decide by 3/4 of it, so that
// the slot it frees (evict, actor death, release: a few messages) still reaches the
// upgrade in time.
constexpr int kParkedAnswerTenths = 9;
constexpr int kSweepDeadlineQuarters = 3;

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

void retry_parked(self_ptr self);

// A slot leaves the counts, once: later or repeated news of the same slot changes nothing.
void release(self_ptr self, const slot_key& slot) {
  auto& state = self->state;
  auto it = state.counted.find(slot.id);
  if (it == state.counted.end()) return;
  const slot_key counted_as = std::move(it->second);
  state.counted.erase(it);
  state.reservations.erase(slot.id);
  state.policy->release(counted_as.shard, counted_as.user, counted_as.ip);
}

void count(self_ptr self, const slot_key& slot) {
  if (self->state.counted.emplace(slot.id, slot).second)
    self->state.policy->add(slot.shard, slot.user, slot.ip);
}

// The slot is reserved in the counts (admission_policy::decide); the chosen shard spawns
// the connection actor and answers the session. Until the shard confirms, the slot is a
// reservation: if the spawn bounces, nobody else will ever release it.
void place(self_ptr self, admission_ticket ticket, unsigned shard_index) {
  auto& state = self->state;
  auto& context = *state.context;
  // The connect hook gave the connection its id already (the backend was told it).
  const uint64_t id = ticket->id != 0
                          ? ticket->id
                          : context.next_connection_id.fetch_add(1, std::memory_order_relaxed);
  ticket->id = id;
  slot_key slot{id, shard_index, ticket->user, ticket->ip};
  auto shard = context.shard(shard_index);
  if (!shard) {
    // That shard is waiting for its restart (and so looks least loaded): the slot goes
    // to the least loaded live one, or, with none, is given back and the upgrade refused.
    state.policy->release(slot.shard, slot.user, slot.ip);
    const auto shards = context.shards();
    std::optional<unsigned> live;
    for (unsigned i = 0; i < shards.size(); ++i)
      if (shards[i] && (!live || state.policy->shard_count(i) < state.policy->shard_count(*live)))
        live = i;
    if (!live) return refuse(state, ticket, reject_reason::guard_unavailable, true);
    slot.shard = *live;
    shard = shards[*live];
    state.policy->add(slot.shard, slot.user, slot.ip);
  }
  state.counted.emplace(slot.id, slot);
  state.reservations.emplace(slot.id, slot);
  // No timeout: a live shard always reads its mailbox (its answer may come late, after
  // the session gave up; the actor then dies at once and is released as usual), and a
  // dead one bounces the request at once.
  self->request(shard, caf::infinite, spawn_atom::value, ticket, slot.id)
      .then([self, id = slot.id](spawned_atom) { self->state.reservations.erase(id); },
            [self, id = slot.id, ticket](caf::error& error) {
              auto it = self->state.reservations.find(id);
              if (it == self->state.reservations.end()) return;  // released already
              log_event(spdlog::level::warn, "spawn_bounced",
                        "a shard could not take an admitted connection: slot released, "
                        "upgrade refused guard_unavailable",
                        {{"shard", it->second.shard}, {"id", id}, {"error", to_string(error)}});
              const auto slot = it->second;
              release(self, slot);
              refuse(self->state, ticket, reject_reason::guard_unavailable, true);
              if (!self->state.parked.empty()) retry_parked(self);
            });
}

void request_sweep(self_ptr self, const std::string& scope_key, sweep_level level,
                   sweep_scope scope, uint64_t needed);

// Cluster mode (CONTRACT 14), after this node's own checks admitted the upgrade (its slot
// reserved in the counts): with on_redis_down = "reject" every upgrade is refused while
// Redis is unreachable; an upgrade with a user claims its slot cluster-wide before it is
// placed, the nodes holding that user sweeping it at the cap. Returns false when the
// upgrade goes on as on one node (no user, or Redis down with "local").
bool through_cluster(self_ptr self, const admission_ticket& ticket, unsigned shard) {
  auto& state = self->state;
  auto& context = *state.context;
  if (!context.redis) return false;
  const bool reject_when_down = context.config.cluster.on_redis_down == "reject";
  const auto give_back_and_refuse = [self, ticket, shard](reject_reason reason) {
    self->state.policy->release(shard, ticket->user, ticket->ip);
    refuse(self->state, ticket, reason, true);
    if (!self->state.parked.empty()) retry_parked(self);
  };
  auto cluster = context.cluster_service();
  if (context.cluster.load() != service_context::cluster_health::ok || !cluster) {
    if (!reject_when_down) return false;
    give_back_and_refuse(reject_reason::cluster_unavailable);
    return true;
  }
  if (ticket->user.empty()) return false;
  if (ticket->id == 0) ticket->id = context.next_connection_id.fetch_add(1);
  const auto id = ticket->id;
  self->request(cluster, context.config.limits.admission_timeout * kParkedAnswerTenths / 10,
                cl_claim_atom::value, id, ticket->user, ticket->ip, ticket->meta)
      .then(
          [self, ticket, shard, reject_when_down, give_back_and_refuse](claim_outcome outcome) {
            switch (outcome) {
              case claim_outcome::claimed:
                return place(self, ticket, shard);
              case claim_outcome::at_cap:
                return give_back_and_refuse(reject_reason::user_limit);
              case claim_outcome::unavailable:
                if (reject_when_down)
                  return give_back_and_refuse(reject_reason::cluster_unavailable);
                return place(self, ticket, shard);
            }
          },
          [self, ticket, shard, id, cluster, reject_when_down, give_back_and_refuse](caf::error&) {
            // No answer in time (or the service died): a claim it may still make is
            // withdrawn, and the upgrade is decided as with Redis down.
            self->send(cluster, cl_unclaim_atom::value, id);
            if (reject_when_down) return give_back_and_refuse(reject_reason::cluster_unavailable);
            place(self, ticket, shard);
          });
  return true;
}

void background_sweep_if_above_soft(self_ptr self) {
  auto& state = self->state;
  const auto total = state.policy->total();
  const auto soft = state.context->config.limits.soft_connections;
  if (total > soft && !state.sweeps_in_flight.count("all"))
    request_sweep(self, "all", sweep_level::moderate, sweep_scope{}, total - soft);
}

// Decides an upgrade (again, for a parked one: `parked`). Returns false when it must
// keep waiting. An upgrade pays its token once: the first decision, or the connect hook.
bool decide(self_ptr self, const admission_ticket& ticket, bool charge_token, bool parked) {
  auto& state = self->state;
  auto& context = *state.context;
  const auto now = context.now();
  const auto verdict = state.policy->decide(*ticket, now, context.tree_up.load(),
                                            context.draining.load(), charge_token);
  const bool first_time = !parked;
  if (verdict.admitted) {
    if (!through_cluster(self, ticket, verdict.shard)) place(self, ticket, verdict.shard);
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
      now - fruitless->second < context.config.janitor.probe_timeout) {
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
  self->delayed_send(self, context.config.limits.admission_timeout * kParkedAnswerTenths / 10,
                     expire_atom::value, id);
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
    if (decide(self, found->second.ticket, false, true)) {
      state.parked.erase(found);
      it = state.parked_order.erase(it);
    } else {
      ++it;
    }
  }
}

void request_sweep(self_ptr self, const std::string& scope_key, sweep_level level,
                   sweep_scope scope, uint64_t needed) {
  auto& context = *self->state.context;
  auto janitor = context.janitor();
  if (!janitor) return;
  self->state.sweeps_in_flight.insert(scope_key);
  sweep_order order;
  order.level = level;
  order.scope = std::move(scope);
  order.needed = needed;
  order.kind = sweep_kind::emergency;
  order.deadline =
      context.now() + context.config.limits.admission_timeout * kSweepDeadlineQuarters / 4;
  self->request(janitor, context.config.limits.admission_timeout, sweep_atom::value,
                std::move(order))
      .then(
          [self, scope_key](const sweep_result& result) {
            self->state.sweeps_in_flight.erase(scope_key);
            if (result.evicted() > 0) return;  // their slots come back as releases
            self->state.fruitless_sweeps[scope_key] = self->state.context->now();
            // Nothing freed: whoever waits on this scope is refused now.
            for (auto& [id, wait] : self->state.parked)
              if (wait.scope_key == scope_key) self->send(self, expire_atom::value, id);
            for (auto& [id, wait] : self->state.parked_claims)
              if (sweep_scope{sweep_scope::kind::user, wait.user}.describe() == scope_key)
                self->send(self, expire_claim_atom::value, id);
          },
          [self, scope_key](caf::error&) { self->state.sweeps_in_flight.erase(scope_key); });
}

bool connect_hook_on(const service_context& context) {
  return context.config.app.mode == "gateway" && !context.config.gateway.connect_path.empty();
}

// A refusal whose status and Retry-After are not the reason's own (the connect hook's).
void refuse_as(const admission_ticket& ticket, reject_reason reason, unsigned status,
               std::chrono::seconds retry_after) {
  admission_decision decision;
  decision.reason = reason;
  decision.status = status;
  decision.retry_after = retry_after;
  ticket->reply(std::move(decision));
}

void start_connect_call(self_ptr self, admission_ticket ticket);

// A connect call is free: the oldest waiting upgrade gets it.
void connect_call_done(self_ptr self) {
  auto& state = self->state;
  --state.connect_calls;
  if (state.connect_waiting.empty()) return;
  auto next = state.connect_waiting.begin();
  auto ticket = std::move(next->second);
  state.connect_waiting.erase(next);
  start_connect_call(self, std::move(ticket));
}

void on_connect_answer(self_ptr self, const admission_ticket& ticket,
                       const upstream_result& result) {
  auto& state = self->state;
  const auto& config = state.context->config;
  const auto answer = interpret_connect_answer(result, *ticket);
  switch (answer.what) {
    case connect_answer::kind::rejected:
      return refuse_as(ticket, reject_reason::rejected, answer.status,
                       answer.status != 429 ? std::chrono::seconds(0)
                       : answer.retry_after.count() > 0
                           ? answer.retry_after
                           : jittered_retry_after(config.limits.retry_after));
    case connect_answer::kind::unavailable:
      log_event(spdlog::level::info, "connect_hook_failed",
                "the connect hook did not admit the upgrade: 503 upstream_unavailable",
                {{"id", ticket->id}, {"ip", ticket->ip}, {"problem", answer.problem}});
      return refuse_as(ticket, reject_reason::upstream_unavailable, 0,
                       jittered_retry_after(config.limits.retry_after));
    case connect_answer::kind::admitted:
      break;
  }
  // The backend's identity replaces the request's everywhere (caps, headers, events).
  if (answer.user) ticket->user = *answer.user;
  ticket->meta = answer.meta;
  ticket->subprotocol = answer.subprotocol;
  ticket->hooked = true;
  decide(self, ticket, false, false);
}

void start_connect_call(self_ptr self, admission_ticket ticket) {
  auto& state = self->state;
  auto& context = *state.context;
  auto service = context.upstream_service();
  if (!service)
    return refuse_as(ticket, reject_reason::upstream_unavailable, 0,
                     jittered_retry_after(context.config.limits.retry_after));
  ++state.connect_calls;
  if (ticket->id == 0) ticket->id = context.next_connection_id.fetch_add(1);
  const auto connection = context.connection_id(ticket->id);
  upstream_request request;
  request.hook = upstream_hook::connect;
  request.url = context.config.upstream.url + context.config.gateway.connect_path;
  request.body = connect_hook_body(*ticket, connection);
  request.headers = {{"Content-Type", "application/json"}, {"X-Wsvisor-Connection", connection}};
  request.delivery = connection + ":0";
  request.retried = false;  // the client retries, jittered (CONTRACT 12.1)
  self->request(service, context.config.upstream.timeout + std::chrono::seconds(1),
                upstream_atom::value, std::move(request))
      .then(
          [self, ticket](const upstream_result& result) {
            connect_call_done(self);
            on_connect_answer(self, ticket, result);
          },
          [self, ticket](caf::error&) {
            connect_call_done(self);
            upstream_result failed;
            failed.outcome = upstream_outcome::error;
            on_connect_answer(self, ticket, failed);
          });
}

// After unauthorized and before ip_limit, the backend decides (CONTRACT 12.1), at most
// gateway.connect_concurrency calls at once; the next waits, and is answered
// upstream_busy if none became free before the admission deadline.
void run_connect_hook(self_ptr self, admission_ticket ticket) {
  auto& state = self->state;
  auto& context = *state.context;
  if (auto refused = state.policy->precheck(*ticket, context.now(), context.tree_up.load(),
                                            context.draining.load(), true))
    return refuse(state, ticket, refused->reason, refused->retry_after);
  if (state.connect_calls < context.config.gateway.connect_concurrency)
    return start_connect_call(self, std::move(ticket));
  const uint64_t id = state.next_connect_wait++;
  state.connect_waiting.emplace(id, std::move(ticket));
  self->delayed_send(self, context.config.limits.admission_timeout * kParkedAnswerTenths / 10,
                     busy_atom::value, id);
}

void admit(self_ptr self, admission_ticket ticket) {
  if (!self->state.awaiting_tables.empty()) {
    self->state.held_during_rebuild.push_back(std::move(ticket));
    return;
  }
  if (connect_hook_on(*self->state.context) && !ticket->hooked)
    return run_connect_hook(self, std::move(ticket));
  decide(self, ticket, true, false);
}

// A claim (hub mode: the user came with the connect command) moves the slot from the
// identity it was admitted with to `user` when that user is below limits.max_per_user.
// Returns false when the user is at its cap (the slot stays as it was).
// The slot counts for `user` from now on (and no longer for the identity it had).
void recount_as(limit_guard_state& state, slot_key& slot, const std::string& user) {
  state.policy->release(slot.shard, slot.user, slot.ip);
  slot.user = user;
  state.policy->add(slot.shard, slot.user, slot.ip);
}

bool try_claim(self_ptr self, uint64_t id, const std::string& user, bool& slot_gone) {
  auto& state = self->state;
  auto it = state.counted.find(id);
  slot_gone = it == state.counted.end();
  if (slot_gone) return false;
  auto& slot = it->second;
  if (slot.user == user) return true;
  const auto cap = state.context->config.limits.max_per_user;
  if (!user.empty() && cap != 0 && state.policy->user_count(user) >= cap) return false;
  recount_as(state, slot, user);
  return true;
}

// The claim fits this node's count (the slot is counted for `user` now); in cluster mode
// the user's cap across the nodes decides too (CONTRACT 14): at that cap the slot goes
// back to `previous` and the claim is refused. With Redis unreachable this node's count
// is all there is (the upgrade itself was admitted).
void confirm_claim(self_ptr self, uint64_t id, const std::string& user, const std::string& previous,
                   caf::response_promise answer) {
  auto& context = *self->state.context;
  auto cluster = context.cluster_service();
  auto it = self->state.counted.find(id);
  if (!cluster || user.empty() || user == previous || it == self->state.counted.end() ||
      context.cluster.load() != service_context::cluster_health::ok) {
    answer.deliver(true);
    return;
  }
  self->request(cluster, context.config.limits.admission_timeout * kParkedAnswerTenths / 10,
                cl_claim_atom::value, id, user, it->second.ip, std::string())
      .then(
          [self, id, user, previous, answer](claim_outcome outcome) mutable {
            if (outcome != claim_outcome::at_cap) return answer.deliver(true);
            auto it = self->state.counted.find(id);
            if (it != self->state.counted.end() && it->second.user == user)
              recount_as(self->state, it->second, previous);
            answer.deliver(false);
          },
          [self, id, cluster, answer](caf::error&) mutable {
            self->send(cluster, cl_unclaim_atom::value, id);
            answer.deliver(true);
          });
}

std::string counted_user(const limit_guard_state& state, uint64_t id) {
  auto it = state.counted.find(id);
  return it == state.counted.end() ? std::string() : it->second.user;
}

// A claim that fit this node's count (or whose slot is gone: refused).
void answer_claim(self_ptr self, uint64_t id, const std::string& user, const std::string& previous,
                  bool slot_gone, caf::response_promise answer) {
  if (slot_gone) return answer.deliver(false);
  confirm_claim(self, id, user, previous, std::move(answer));
}

void retry_claims(self_ptr self) {
  auto& claims = self->state.parked_claims;
  for (auto it = claims.begin(); it != claims.end();) {
    bool gone = false;
    const auto previous = counted_user(self->state, it->second.id);
    if (try_claim(self, it->second.id, it->second.user, gone) || gone) {
      answer_claim(self, it->second.id, it->second.user, previous, gone, it->second.answer);
      it = claims.erase(it);
    } else {
      ++it;
    }
  }
}

// At the cap, the user is swept first, as an upgrade of that user would be (CONTRACT
// 13.1), and the claim waits for the sweep within 9/10 of admission_timeout.
void claim(self_ptr self, uint64_t id, std::string user) {
  auto& state = self->state;
  auto& context = *state.context;
  auto answer = self->make_response_promise();
  bool gone = false;
  const auto previous = counted_user(state, id);
  if (try_claim(self, id, user, gone) || gone) {
    answer_claim(self, id, user, previous, gone, answer);
    return;
  }
  const auto scope_key = sweep_scope{sweep_scope::kind::user, user}.describe();
  if (auto fruitless = state.fruitless_sweeps.find(scope_key);
      (fruitless != state.fruitless_sweeps.end() &&
       context.now() - fruitless->second < context.config.janitor.probe_timeout) ||
      !context.janitor()) {
    answer.deliver(false);
    return;
  }
  const uint64_t wait = state.next_parked++;
  state.parked_claims.emplace(wait, parked_claim{id, user, answer});
  self->delayed_send(self, context.config.limits.admission_timeout * kParkedAnswerTenths / 10,
                     expire_claim_atom::value, wait);
  if (!state.sweeps_in_flight.count(scope_key)) {
    const auto level = context.config.limits.user_overflow == "evict_idle" ? sweep_level::aggressive
                                                                           : sweep_level::moderate;
    request_sweep(self, scope_key, level, sweep_scope{sweep_scope::kind::user, user}, 1);
  }
}

void table_arrived(self_ptr self, unsigned shard) {
  auto& state = self->state;
  state.awaiting_tables.erase(shard);
  if (!state.awaiting_tables.empty()) return;
  log_event(spdlog::level::info, "guard_rebuilt", "limit_guard rebuilt its counts from the shards",
            {{"slots", state.policy->total()}});
  auto held = std::move(state.held_during_rebuild);
  for (auto& ticket : held) admit(self, std::move(ticket));
}

// The counts are derived: a (re)started guard takes them from the shards' tables, the
// truth. A release that arrives before its shard's table names a slot the table no
// longer holds, and so changes nothing (see release()).
void rebuild_from_shards(self_ptr self) {
  auto& state = self->state;
  auto shards = state.context->shards();
  for (unsigned i = 0; i < shards.size(); ++i) {
    if (!shards[i]) continue;
    state.awaiting_tables.insert(i);
    self->request(shards[i], state.context->config.limits.admission_timeout, table_atom::value)
        .then(
            [self, i](std::vector<slot_key>& slots) {
              for (auto& slot : slots) count(self, slot);
              table_arrived(self, i);
            },
            // A shard that cannot answer is being restarted: it will start empty.
            [self, i](caf::error&) { table_arrived(self, i); });
  }
}

}  // namespace

caf::behavior limit_guard_actor(self_ptr self, std::shared_ptr<service_context> context) {
  self->state.context = std::move(context);
  self->state.policy.emplace(self->state.context->config, self->state.context->shard_count);
  rebuild_from_shards(self);
  return {
      [self](admit_atom, admission_ticket& ticket) { admit(self, std::move(ticket)); },
      [self](release_atom, const slot_key& slot) {
        release(self, slot);
        if (!self->state.parked_claims.empty()) retry_claims(self);
        if (!self->state.parked.empty()) retry_parked(self);
      },
      [self](shard_down_atom, unsigned, const std::vector<slot_key>& slots) {
        for (auto& slot : slots) release(self, slot);
        if (!self->state.parked_claims.empty()) retry_claims(self);
        if (!self->state.parked.empty()) retry_parked(self);
      },
      [self](claim_atom, uint64_t id, std::string& user) { claim(self, id, std::move(user)); },
      [self](expire_claim_atom, uint64_t wait) {
        auto& claims = self->state.parked_claims;
        auto it = claims.find(wait);
        if (it == claims.end()) return;
        it->second.answer.deliver(false);
        claims.erase(it);
      },
      [self](expire_atom, uint64_t id) { refuse_parked(self, id); },
      [self](busy_atom, uint64_t id) {
        auto& state = self->state;
        auto it = state.connect_waiting.find(id);
        if (it == state.connect_waiting.end()) return;
        auto ticket = std::move(it->second);
        state.connect_waiting.erase(it);
        refuse_as(ticket, reject_reason::upstream_busy, 0,
                  jittered_retry_after(state.context->config.limits.retry_after));
      },
      [self](audit_atom) {
        return guard_audit{self->state.policy->total(), self->state.reservations.size()};
      },
      [self](caps_atom, uint64_t top) {
        const auto& limits = self->state.context->config.limits;
        const auto& policy = *self->state.policy;
        caps_in_use caps;
        caps.connections = policy.total();
        caps.max_connections = limits.max_connections;
        caps.soft_connections = limits.soft_connections;
        caps.max_per_user = limits.max_per_user;
        caps.max_per_ip = limits.max_per_ip;
        caps.top_users = policy.top_users(top);
        caps.top_ips = policy.top_ips(top);
        return caps;
      },
      [](fault_atom, crash_atom) -> caf::result<void> {
        throw std::runtime_error("limit_guard crash (fault injection)");
      },
  };
}

}  // namespace wsvisor
