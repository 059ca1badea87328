#include "limit_guard.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <spdlog/spdlog.h>

#include "messages.hpp"

namespace wsvisor {
namespace {

// Whole seconds in [retry_after, 1.5 x retry_after], so that refused clients do not all
// come back at the same moment.
std::chrono::seconds jittered_retry_after(limit_guard_state& state) {
  const auto base = std::chrono::duration_cast<std::chrono::seconds>(
                        state.context->config.limits.retry_after)
                        .count();
  const auto low = std::max<long long>(1, base);
  const auto high = std::max<long long>(low, (low * 3) / 2);
  std::uniform_int_distribution<long long> pick(low, high);
  return std::chrono::seconds(pick(state.jitter));
}

void refuse(limit_guard_state& state, admission_ticket& ticket,
            const admission_policy::verdict& verdict) {
  state.context->stats.admissions_rejected(verdict.reason).Increment();
  spdlog::info("admission refused reason={} ip={} user={}", to_string(verdict.reason), ticket->ip,
               ticket->user.empty() ? "-" : ticket->user);
  admission_decision decision;
  decision.reason = verdict.reason;
  if (verdict.retry_after) decision.retry_after = jittered_retry_after(state);
  ticket->reply(std::move(decision));
}

}  // namespace

caf::behavior limit_guard_actor(caf::stateful_actor<limit_guard_state>* self,
                                std::shared_ptr<service_context> context) {
  self->state.context = std::move(context);
  self->state.policy.emplace(self->state.context->config, self->state.context->shard_count);
  return {
      [self](admit_atom, admission_ticket& ticket) {
        auto& state = self->state;
        auto& context = *state.context;
        const auto verdict =
            state.policy->decide(*ticket, std::chrono::steady_clock::now(),
                                 context.tree_up.load(), context.draining.load());
        if (!verdict.admitted) return refuse(state, ticket, verdict);
        auto shard = context.shard(verdict.shard);
        if (!shard) {
          // Cannot happen while the tree is up; fail closed rather than leak the slot.
          state.policy->release(verdict.shard, ticket->user, ticket->ip);
          admission_policy::verdict unavailable;
          unavailable.reason = reject_reason::guard_unavailable;
          unavailable.retry_after = true;
          return refuse(state, ticket, unavailable);
        }
        self->send(shard, spawn_atom::value, std::move(ticket));
      },
      [self](release_atom, unsigned shard, const std::string& user, const std::string& ip) {
        self->state.policy->release(shard, user, ip);
      },
  };
}

}  // namespace wsvisor
