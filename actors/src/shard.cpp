#include "shard.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <wsvisor/log.hpp>

#include <stdexcept>

#include "connection_actor.hpp"
#include "connection_end.hpp"
#include "hub_service.hpp"
#include "messages.hpp"

namespace wsvisor {
namespace {

using self_ptr = caf::stateful_actor<shard_state>*;

double seconds_between(steady_time from, steady_time to) {
  return std::chrono::duration<double>(to - from).count();
}

slot_key key_of(unsigned shard, const shard_entry& entry) {
  return slot_key{entry.id, shard, entry.user, entry.ip};
}

connection_event_fields event_fields(const service_context& context, const shard_entry& entry) {
  return {context.connection_id(entry.id), entry.user, entry.ip, entry.meta};
}

// Cluster mode: the entry Redis keeps of this connection (CONTRACT 14).
cluster_entry cluster_entry_of(const shard_entry& entry) {
  cluster_entry c;
  c.id = entry.id;
  c.user = entry.user;
  c.ip = entry.ip;
  c.meta = entry.meta;
  c.opened_at_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(entry.admitted_wall.time_since_epoch())
          .count();
  c.opened = entry.opened;
  return c;
}

// The connect event, once per slot: a disconnect is due from then on.
void emit_connect(service_context& context, shard_entry& entry) {
  if (entry.opened) return;
  entry.opened = true;
  if (auto cluster = context.cluster_service())
    caf::anon_send(cluster, cl_open_atom::value, cluster_entry_of(entry));
  auto id = next_lifecycle_event_id(context);
  auto body = connect_event_json(id, context.node_id, event_fields(context, entry),
                                 std::chrono::system_clock::now());
  queue_lifecycle_event(context, std::move(id), context.connection_id(entry.id), std::move(body));
}

// Counts and logs the end of one slot. The caller tells the limit guard.
void account_release(service_context& context, const shard_entry& entry, connection_end end) {
  // The reason is counted before the gauge is lowered (see connections_opened below).
  context.stats.connections_closed(end.why).Increment();
  context.stats.connections().Decrement();
  context.connections.fetch_sub(1, std::memory_order_relaxed);
  const double duration_s = seconds_between(entry.admitted_at, context.now());
  context.stats.connection_duration_seconds().Observe(duration_s);
  log_event(spdlog::level::info, "connection_closed", "connection closed",
            {{"id", entry.id},
             log_field::optional("user", entry.user),
             {"ip", entry.ip},
             {"code", end.code},
             {"reason", to_string(end.why)},
             {"duration_s", duration_s}});
  if (entry.opened) {
    auto id = next_lifecycle_event_id(context);
    auto body = disconnect_event_json(id, context.node_id, event_fields(context, entry),
                                      std::chrono::system_clock::now(), end.code, end.text,
                                      to_string(end.why), static_cast<int64_t>(duration_s * 1000));
    queue_lifecycle_event(context, std::move(id), context.connection_id(entry.id), std::move(body));
  }
}

// The one place a slot is released while the shard lives: its actor is dead, and its
// exit reason says how the connection ended.
void release_slot(self_ptr self, const shard_entry& entry, const caf::error& exit_reason) {
  auto& context = *self->state.context;
  account_release(context, entry, from_exit_reason(exit_reason, close_reason::client));
  if (auto guard = context.guard())
    self->send(guard, release_atom::value, key_of(self->state.index, entry));
  if (auto cluster = context.cluster_service())
    self->send(cluster, cl_release_atom::value, entry.id);
}

// Janitor's periodic checks of one connection (CONTRACT section 5): heartbeat and
// zombies, idle, lifetime. Returns what it closed.
void check_connection(const service_context& context, shard_entry& entry, steady_time now,
                      periodic_counts& counts, metrics& stats) {
  const auto& config = context.config;
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
  if (live.ping_sent_at != steady_time{}) return;
  if (context.heartbeat_message) {
    // The application's heartbeat (hub mode: Centrifugo's SDKs give up on a server
    // that sent them nothing for ping + 10 s, whatever they sent themselves).
    if (now - live.last_frame_out >= janitor.ping_interval)
      entry.port->ping_message(context.heartbeat_message);
  } else if (now - live.last_frame_in >= janitor.ping_interval) {
    log_event(spdlog::level::debug, "ping", "heartbeat ping", {{"id", entry.id}});
    entry.port->ping();  // the session sends it on its own executor
  }
}

connection_snapshot snapshot_of(const shard_entry& entry) {
  connection_snapshot snap;
  snap.actor = entry.actor;
  snap.id = entry.id;
  snap.user = entry.user;
  snap.ip = entry.ip;
  snap.admitted_wall = entry.admitted_wall;
  snap.live = entry.port->liveness();
  snap.unread_bytes = entry.port->unread_bytes();
  snap.restarts = entry.restarts;
  snap.meta = entry.meta;
  return snap;
}

// When the shard dies, its children die with it: each closes with 1011, and the limit
// guard forgets all their slots in one message. Each actor's own end closes its socket
// (connection_state's destructor); the 1011 is already on its way by then.
void take_children_down(const std::shared_ptr<service_context>& context, unsigned index,
                        shard_table& table) {
  if (table.empty()) return;
  std::vector<slot_key> released;
  released.reserve(table.size());
  const connection_end end{close_reason::shard_down, 1011, "internal error"};
  for (auto& [addr, entry] : table) {
    entry.port->close(end.code, "internal error", end.why);
    caf::anon_send_exit(entry.actor, caf::exit_reason::kill);
    account_release(*context, entry, end);
    released.push_back(key_of(index, entry));
  }
  log_event(spdlog::level::warn, "shard_down", "shard died: its connections closed with 1011",
            {{"shard", index}, {"connections", static_cast<uint64_t>(table.size())}});
  table.clear();
  if (auto cluster = context->cluster_service())
    for (const auto& slot : released) caf::anon_send(cluster, cl_release_atom::value, slot.id);
  if (auto guard = context->guard())
    caf::anon_send(guard, shard_down_atom::value, index, std::move(released));
}

// The entries a request addresses: one by id (id != 0), else every one of `user`.
template <class Visit>
void for_each_addressed(shard_state& state, uint64_t id, const std::string& user, Visit&& visit) {
  auto& table = *state.table;
  if (id != 0) {
    auto key = state.by_id.find(id);
    if (key == state.by_id.end()) return;
    auto entry = table.find(key->second);
    if (entry != table.end()) visit(entry->second);
    return;
  }
  for (auto& [addr, entry] : table)
    if (entry.user == user) visit(entry);
}

}  // namespace

caf::behavior shard_actor(self_ptr self, std::shared_ptr<service_context> context, unsigned index) {
  self->state.context = context;
  self->state.index = index;
  self->attach_functor(
      [context, index, table = self->state.table, me = self->address()](const caf::error&) {
        context->withdraw_shard(index, me);
        take_children_down(context, index, *table);
      });
  self->set_down_handler([self](caf::down_msg& down) {
    auto& table = *self->state.table;
    auto it = table.find(down.source);
    if (it == table.end()) return;  // not a connection of ours
    self->state.by_id.erase(it->second.id);
    release_slot(self, it->second, down.reason);
    table.erase(it);
  });
  return {
      [self](spawn_atom, admission_ticket& ticket, uint64_t id) {
        auto& context = *self->state.context;
        auto connection = self->spawn<caf::monitored>(
            connection_actor, self->state.context, ticket->port,
            connection_identity{id, ticket->user, ticket->meta, self->state.index},
            caf::actor_cast<caf::actor>(self), context.fault_for(ticket->user));
        shard_entry entry;
        entry.actor = connection;
        entry.port = ticket->port;
        entry.id = id;
        entry.user = ticket->user;
        entry.ip = ticket->ip;
        entry.meta = ticket->meta;
        entry.admitted_at = context.now();
        entry.admitted_wall = std::chrono::system_clock::now();
        self->state.by_id.emplace(id, connection.address());
        self->state.table->emplace(connection.address(), std::move(entry));
        // Counted before the gauge rises, as a close counts before it lowers it
        // (metrics.cpp: the gauge is read first, so it is never ahead of the counters).
        context.stats.connections_opened().Increment();
        context.stats.connections().Increment();
        context.connections.fetch_add(1, std::memory_order_relaxed);
        log_event(spdlog::level::debug, "connection_admitted", "slot taken, connection actor up",
                  {{"id", id},
                   log_field::optional("user", ticket->user),
                   {"ip", ticket->ip},
                   {"shard", self->state.index}});
        admission_decision decision;
        decision.admitted = true;
        decision.connection = connection;
        decision.connection_id = id;
        ticket->reply(std::move(decision));
        return spawned_atom::value;
      },
      [self](connected_atom, const caf::actor_addr& source) {
        auto& table = *self->state.table;
        auto it = table.find(source);
        if (it != table.end()) emit_connect(*self->state.context, it->second);
      },
      [self](identified_atom, const caf::actor_addr& source, std::string& user, std::string& meta) {
        // Hub mode: the connect command said who it is; the connect event is due now.
        auto& table = *self->state.table;
        auto it = table.find(source);
        if (it == table.end()) return;
        auto& entry = it->second;
        entry.user = std::move(user);
        entry.meta = std::move(meta);
        emit_connect(*self->state.context, entry);
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
        ++entry.restarts;
        context.stats.actor_restarts(actor_kind::connection).Increment();
        if (!entry.recent_restarts)
          entry.recent_restarts = std::make_unique<restart_window>(restart_intensity{
              supervision.connection_restarts, supervision.connection_restart_period});
        if (!entry.recent_restarts->admit(context.now()) && !entry.over_budget) {
          entry.over_budget = true;
          log_event(spdlog::level::warn, "restart_budget",
                    "connection exceeded its restart budget "
                    "(supervision.connection_restarts within connection_restart_period): "
                    "closing with 1011",
                    {{"id", entry.id},
                     log_field::optional("user", entry.user),
                     {"restarts", entry.restarts},
                     {"budget", supervision.connection_restarts},
                     {"period", format_duration(supervision.connection_restart_period)}});
          self->send(entry.actor, evict_atom::value, uint16_t{1011}, std::string("internal error"),
                     close_reason::restart_budget);
        }
      },
      [self](tick_atom) {
        periodic_counts counts;
        auto& context = *self->state.context;
        const auto now = context.now();
        for (auto& [addr, entry] : *self->state.table)
          check_connection(context, entry, now, counts, context.stats);
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
          slots.push_back(key_of(self->state.index, entry));
        return slots;
      },
      [self](cl_table_atom) {
        std::vector<cluster_entry> entries;
        entries.reserve(self->state.table->size());
        for (auto& [addr, entry] : *self->state.table)
          if (entry.opened || !entry.user.empty()) entries.push_back(cluster_entry_of(entry));
        return entries;
      },
      [self](count_atom) { return static_cast<uint64_t>(self->state.table->size()); },
      [self](admin_close_atom, uint64_t id, const std::string& user) {
        // Graceful close with 4002 by id (id != 0) or by user.
        uint64_t closed = 0;
        for_each_addressed(self->state, id, user, [&](shard_entry& entry) {
          self->send(entry.actor, close_atom::value, uint16_t{4002}, std::string("admin close"),
                     close_reason::admin);
          self->state.context->stats.evictions(eviction_reason::admin).Increment();
          ++closed;
        });
        return closed;
      },
      [self](api_send_atom, const connection_selector& to, const std::string& payload, bool text) {
        // Straight to the sessions of the connections addressed (the table is the
        // truth about who is whose: no send reaches another user's connection).
        uint64_t delivered = 0;
        const auto send = [&](shard_entry& entry) {
          if (!entry.port->liveness().open) return;
          entry.port->send(payload, text);
          ++delivered;
        };
        if (to.what == connection_selector::kind::connection) {
          if (auto key = self->state.by_id.find(to.id); key != self->state.by_id.end())
            if (auto it = self->state.table->find(key->second); it != self->state.table->end())
              send(it->second);
        } else {
          for (auto& [addr, entry] : *self->state.table)
            if (to.matches(entry.id, entry.user)) send(entry);
        }
        return delivered;
      },
      [self](api_each_atom, const connection_selector& which, const later_work_type& work) {
        uint64_t reached = 0;
        for (auto& [addr, entry] : *self->state.table) {
          if (!which.matches(entry.id, entry.user)) continue;
          run_in_connection(entry.actor, work);
          ++reached;
        }
        return reached;
      },
      [self](api_close_atom, const connection_selector& which, uint16_t code,
             const std::string& reason) {
        uint64_t closed = 0;
        for (auto& [addr, entry] : *self->state.table) {
          if (!which.matches(entry.id, entry.user)) continue;
          self->send(entry.actor, close_atom::value, code, reason, close_reason::api);
          ++closed;
        }
        return closed;
      },
      [](hub_deliver_atom, const shared_payload& frame,
         const std::shared_ptr<const port_list>& ports) {
        // One hub publication for this shard's subscribers: the same bytes for each.
        for (const auto& port : *ports) port->send_shared(frame, true);
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
