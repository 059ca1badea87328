#include "shard.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>

#include "connection_actor.hpp"
#include "messages.hpp"

namespace wsvisor {
namespace {

using self_ptr = caf::stateful_actor<shard_state>*;
using clock = std::chrono::steady_clock;

double seconds_since(steady_time t) {
  return std::chrono::duration<double>(clock::now() - t).count();
}

// Counts and logs the end of one slot. The caller tells the limit guard.
void account_release(service_context& context, shard_entry& entry, close_reason why) {
  context.stats.connections_closed(why).Increment();
  context.stats.connections().Decrement();
  context.connections.fetch_sub(1, std::memory_order_relaxed);
  spdlog::info("connection closed id={} user={} ip={} code={} reason={} duration_s={:.3f}",
               entry.id, entry.user.empty() ? "-" : entry.user, entry.ip, entry.port->close_code(),
               to_string(why), seconds_since(entry.admitted_at));
}

// The one place a slot is released while the shard lives: its actor is dead.
void release_slot(self_ptr self, shard_entry& entry) {
  auto& context = *self->state.context;
  entry.port->actor_gone();
  account_release(context, entry, entry.port->reason());
  if (auto guard = context.guard())
    self->send(guard, release_atom::value, self->state.index, entry.user, entry.ip);
}

// Janitor's periodic checks of one connection (CONTRACT section 5): heartbeat and
// zombies, idle, lifetime. Returns what it closed.
void check_connection(const settings& config, shard_entry& entry, steady_time now,
                      periodic_counts& counts, metrics& stats) {
  const liveness_times live = entry.port->liveness();
  if (!live.open) return;  // handshakes have their own deadline; closes their own timer
  const auto& janitor = config.janitor;
  if (live.ping_sent_at != steady_time{} && now - live.ping_sent_at >= janitor.pong_timeout) {
    // Silent since our ping for pong_timeout: a zombie, closed without a close frame.
    caf::anon_send(entry.actor, abort_atom::value, close_reason::zombie);
    stats.evictions(eviction_reason::zombie).Increment();
    ++counts.zombie;
    return;
  }
  if (janitor.max_lifetime.count() > 0) {
    // Up to 10 % earlier, fixed per connection, so that connections opened together do
    // not all close together.
    const auto jitter = janitor.max_lifetime * static_cast<int64_t>(entry.id % 101) / 1000;
    if (now - live.opened_at >= janitor.max_lifetime - jitter) {
      caf::anon_send(entry.actor, close_atom::value, uint16_t{4001}, std::string("max lifetime"),
                     close_reason::lifetime);
      stats.evictions(eviction_reason::lifetime).Increment();
      ++counts.lifetime;
      return;
    }
  }
  if (janitor.idle_timeout.count() > 0 && now - live.last_message >= janitor.idle_timeout) {
    caf::anon_send(entry.actor, close_atom::value, uint16_t{4000}, std::string("idle timeout"),
                   close_reason::idle);
    stats.evictions(eviction_reason::idle).Increment();
    ++counts.idle;
    return;
  }
  if (live.ping_sent_at == steady_time{} && now - live.last_frame_in >= janitor.ping_interval)
    entry.port->ping();  // the session sends it on its own executor
}

connection_snapshot snapshot_of(const shard_entry& entry) {
  connection_snapshot snap;
  snap.actor = entry.actor;
  snap.id = entry.id;
  snap.user = entry.user;
  snap.ip = entry.ip;
  snap.admitted_wall = entry.admitted_wall;
  snap.live = entry.port->liveness();
  snap.restarts = entry.restarts;
  return snap;
}

// When the shard dies, its children die with it: each closes with 1011, and the limit
// guard forgets all their slots in one message.
void take_children_down(const std::shared_ptr<service_context>& context, unsigned index,
                        shard_table& table) {
  if (table.empty()) return;
  std::vector<slot_key> released;
  released.reserve(table.size());
  for (auto& [addr, entry] : table) {
    entry.port->close(1011, "internal error", close_reason::shard_down);
    entry.port->actor_gone();
    caf::anon_send_exit(entry.actor, caf::exit_reason::kill);
    account_release(*context, entry, close_reason::shard_down);
    released.push_back(slot_key{index, entry.user, entry.ip});
  }
  spdlog::warn("shard-{} died: {} connections closed with 1011", index, table.size());
  table.clear();
  if (auto guard = context->guard())
    caf::anon_send(guard, shard_down_atom::value, index, std::move(released));
}

}  // namespace

caf::behavior shard_actor(self_ptr self, std::shared_ptr<service_context> context, unsigned index) {
  self->state.context = context;
  self->state.index = index;
  self->attach_functor([context, index, table = self->state.table](const caf::error&) {
    take_children_down(context, index, *table);
  });
  self->set_down_handler([self](caf::down_msg& down) {
    auto& table = *self->state.table;
    auto it = table.find(down.source);
    if (it == table.end()) return;  // not a connection of ours
    self->state.by_id.erase(it->second.id);
    release_slot(self, it->second);
    table.erase(it);
  });
  return {
      [self](spawn_atom, admission_ticket& ticket) {
        auto& context = *self->state.context;
        const uint64_t id = context.next_connection_id.fetch_add(1, std::memory_order_relaxed);
        auto connection = self->spawn<caf::monitored>(connection_actor, ticket->port, id,
                                                      caf::actor_cast<caf::actor>(self),
                                                      context.fault_for(ticket->user));
        shard_entry entry;
        entry.actor = connection;
        entry.port = ticket->port;
        entry.id = id;
        entry.user = ticket->user;
        entry.ip = ticket->ip;
        entry.admitted_at = clock::now();
        entry.admitted_wall = std::chrono::system_clock::now();
        self->state.by_id.emplace(id, connection.address());
        self->state.table->emplace(connection.address(), std::move(entry));
        context.stats.connections().Increment();
        context.stats.connections_opened().Increment();
        context.connections.fetch_add(1, std::memory_order_relaxed);
        admission_decision decision;
        decision.admitted = true;
        decision.connection = connection;
        decision.connection_id = id;
        ticket->reply(std::move(decision));
      },
      [self](crashed_atom, const caf::actor_addr& source) {
        // A connection restarted after a crash: within budget it goes on, past it it
        // closes with 1011 and its slot is released (CONTRACT section 8).
        auto& table = *self->state.table;
        auto it = table.find(source);
        if (it == table.end()) return;
        auto& entry = it->second;
        auto& context = *self->state.context;
        const auto& supervision = context.config.supervision;
        const auto now = clock::now();
        ++entry.restarts;
        context.stats.actor_restarts(actor_kind::connection).Increment();
        entry.recent_restarts.push_back(now);
        auto& recent = entry.recent_restarts;
        recent.erase(std::remove_if(recent.begin(), recent.end(),
                                    [&](steady_time t) {
                                      return now - t > supervision.connection_restart_period;
                                    }),
                     recent.end());
        if (!entry.over_budget && entry.recent_restarts.size() > supervision.connection_restarts) {
          entry.over_budget = true;
          spdlog::warn(
              "connection {} exceeded its restart budget ({} within {}, "
              "supervision.connection_restarts): closing with 1011",
              entry.id, supervision.connection_restarts,
              format_duration(supervision.connection_restart_period));
          self->send(entry.actor, evict_atom::value, uint16_t{1011}, std::string("internal error"),
                     close_reason::restart_budget);
        }
      },
      [self](tick_atom) {
        periodic_counts counts;
        const auto now = clock::now();
        auto& context = *self->state.context;
        for (auto& [addr, entry] : *self->state.table)
          check_connection(context.config, entry, now, counts, context.stats);
        return counts;
      },
      [self](snapshot_atom, const sweep_scope& scope) {
        std::vector<connection_snapshot> snapshots;
        for (auto& [addr, entry] : *self->state.table)
          if (scope.matches(entry.user, entry.ip)) snapshots.push_back(snapshot_of(entry));
        return snapshots;
      },
      [self](table_atom) {
        std::vector<slot_key> slots;
        slots.reserve(self->state.table->size());
        for (auto& [addr, entry] : *self->state.table)
          slots.push_back(slot_key{self->state.index, entry.user, entry.ip});
        return slots;
      },
      [self](count_atom) { return static_cast<uint64_t>(self->state.table->size()); },
      [self](admin_close_atom, uint64_t id, const std::string& user) {
        // Graceful close with 4002 by id (id != 0) or by user.
        uint64_t closed = 0;
        for (auto& [addr, entry] : *self->state.table) {
          if (id != 0 ? entry.id != id : entry.user != user) continue;
          self->send(entry.actor, close_atom::value, uint16_t{4002}, std::string("admin close"),
                     close_reason::admin);
          self->state.context->stats.evictions(eviction_reason::admin).Increment();
          ++closed;
        }
        return closed;
      },
      [self](fault_atom, crash_atom) -> caf::result<void> {
        throw std::runtime_error("shard crash (fault injection)");
      },
      [self](drain_atom) {
        for (auto& [addr, entry] : *self->state.table)
          self->send(entry.actor, close_atom::value, uint16_t{1001}, std::string("shutdown"),
                     close_reason::drain);
      },
      [self](abort_all_atom) {
        for (auto& [addr, entry] : *self->state.table)
          self->send(entry.actor, abort_atom::value, close_reason::drain);
      },
  };
}

}  // namespace wsvisor
