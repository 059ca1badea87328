#include "shard.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <spdlog/spdlog.h>

#include "connection_actor.hpp"
#include "messages.hpp"

namespace wsvisor {
namespace {

double seconds_since(steady_time t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// The one place a slot is released: the connection actor is dead.
void release_slot(caf::stateful_actor<shard_state>* self, shard_entry& entry) {
  auto& context = *self->state.context;
  entry.port->actor_gone();
  const close_reason why = entry.port->reason();
  context.stats.connections_closed(why).Increment();
  context.stats.connections().Decrement();
  context.connections.fetch_sub(1, std::memory_order_relaxed);
  spdlog::info("connection closed id={} user={} ip={} code={} reason={} duration_s={:.3f}",
               entry.id, entry.user.empty() ? "-" : entry.user, entry.ip,
               entry.port->close_code(), to_string(why), seconds_since(entry.admitted_at));
  if (auto guard = context.guard())
    self->send(guard, release_atom::value, self->state.index, entry.user, entry.ip);
}

}  // namespace

caf::behavior shard_actor(caf::stateful_actor<shard_state>* self,
                          std::shared_ptr<service_context> context, unsigned index) {
  self->state.context = std::move(context);
  self->state.index = index;
  self->set_down_handler([self](caf::down_msg& down) {
    auto& table = self->state.table;
    auto it = table.find(down.source);
    if (it == table.end()) return;  // not a connection of ours
    release_slot(self, it->second);
    table.erase(it);
  });
  return {
      [self](spawn_atom, admission_ticket& ticket) {
        auto& context = *self->state.context;
        const uint64_t id = context.next_connection_id.fetch_add(1, std::memory_order_relaxed);
        auto connection = self->spawn<caf::monitored>(connection_actor, ticket->port, id);
        shard_entry entry{connection, ticket->port, id, ticket->user, ticket->ip,
                          std::chrono::steady_clock::now()};
        self->state.table.emplace(connection.address(), std::move(entry));
        context.stats.connections().Increment();
        context.stats.connections_opened().Increment();
        context.connections.fetch_add(1, std::memory_order_relaxed);
        admission_decision decision;
        decision.admitted = true;
        decision.connection = connection;
        decision.connection_id = id;
        ticket->reply(std::move(decision));
      },
      [self](drain_atom) {
        for (auto& [addr, entry] : self->state.table)
          self->send(entry.actor, close_atom::value, uint16_t{1001}, std::string("shutdown"),
                     close_reason::drain);
      },
      [self](abort_all_atom) {
        for (auto& [addr, entry] : self->state.table)
          self->send(entry.actor, abort_atom::value, close_reason::drain);
      },
  };
}

}  // namespace wsvisor
