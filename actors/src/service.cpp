#include "wsvisor/service.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <spdlog/spdlog.h>

#include "messages.hpp"
#include "root.hpp"
#include "service_context.hpp"

namespace wsvisor {

service::service(caf::actor_system& system, const settings& config, metrics& stats,
                 unsigned shard_count)
    : context_(std::make_shared<service_context>(system, config, stats,
                                                 std::max(1u, shard_count))) {}

service::~service() = default;

void service::start() {
  auto root = context_->system.spawn(root_actor, context_);
  std::lock_guard<std::mutex> lock(context_->handles_mutex);
  context_->root_handle = root;
}

void service::set_listening() {
  context_->listening = true;
  if (ready()) context_->stats.ready().Set(1);
}

void service::admit(admission_ticket ticket) {
  auto guard = context_->guard();
  if (!guard) {
    // Before the tree exists there is nobody to ask: that is "starting".
    admission_decision decision;
    decision.reason = reject_reason::starting;
    decision.retry_after = std::chrono::duration_cast<std::chrono::seconds>(
        context_->config.limits.retry_after);
    context_->stats.admissions_rejected(reject_reason::starting).Increment();
    ticket->reply(std::move(decision));
    return;
  }
  caf::anon_send(guard, admit_atom::value, std::move(ticket));
}

void service::begin_drain() {
  if (context_->draining.exchange(true)) return;
  context_->stats.draining().Set(1);
  context_->stats.ready().Set(0);
  spdlog::info("drain begun: readiness 503, closing {} connections with 1001",
               connections());
  for (auto& shard : context_->shards()) caf::anon_send(shard, drain_atom::value);
}

void service::close_all_now() {
  spdlog::info("closing {} remaining connections at once", connections());
  for (auto& shard : context_->shards()) caf::anon_send(shard, abort_all_atom::value);
}

void service::stop() {
  if (auto root = context_->root()) caf::anon_send_exit(root, caf::exit_reason::user_shutdown);
  std::lock_guard<std::mutex> lock(context_->handles_mutex);
  context_->root_handle = nullptr;
  context_->guard_handle = nullptr;
  context_->shard_handles.clear();
}

bool service::ready() const {
  return context_->tree_up && context_->listening && !context_->draining;
}

bool service::draining() const { return context_->draining; }

uint64_t service::connections() const {
  const auto n = context_->connections.load(std::memory_order_relaxed);
  return n > 0 ? static_cast<uint64_t>(n) : 0;
}

unsigned service::shard_count() const { return context_->shard_count; }

void service::ping_root(std::function<void(bool)> done) {
  auto root = context_->root();
  if (!root) return done(false);
  context_->system.spawn([root, done](caf::event_based_actor* self) {
    self->request(root, std::chrono::seconds(1), ping_atom::value)
        .then([self, done](pong_atom) {
          done(true);
          self->quit();
        },
              [self, done](caf::error&) {
                done(false);
                self->quit();
              });
  });
}

}  // namespace wsvisor
