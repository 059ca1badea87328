#include "cluster_service.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <wsvisor/log.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <random>
#include <stdexcept>

#include "cluster_detail.hpp"
#include "cluster_scripts.hpp"
#include "fan_in.hpp"
#include "hub_application.hpp"
#include "lifecycle_events.hpp"
#include "wsvisor/jwt.hpp"  // base64url for binary payloads in Pub/Sub messages
#include "wsvisor/supervision/detail/backoff_delay.hpp"

// Replies and pushes from Redis travel from the io thread to the actor (local only).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<const wsvisor::redis_value>)

namespace wsvisor {
namespace {
const char* script_text(size_t index);
using value_ptr = std::shared_ptr<const redis_value>;
// cluster -> itself: a command's reply (token).
using reply_atom = caf::atom_constant<caf::atom("clreply")>;
}  // namespace

namespace cluster_detail {

keys keys_of(const service_context& context) {
  return keys{context.config.cluster.prefix};
}

bool ready_for_work(const cluster_state& state) {
  return state.commands.up && state.synced;
}

void command(self_ptr self, std::vector<std::string> argv,
             std::function<void(const redis_value*)> done) {
  auto& state = self->state;
  if (!state.commands.up || !state.commands.connection) {
    if (done) done(nullptr);
    return;
  }
  const uint64_t token = state.next_token++;
  if (done) state.waiting_replies.emplace(token, std::move(done));
  auto me = caf::actor_cast<caf::actor>(self);
  state.commands.connection->send(std::move(argv), [me, token](const redis_value* reply) {
    caf::anon_send(me, reply_atom::value, token,
                   reply ? std::make_shared<const redis_value>(*reply) : value_ptr{});
  });
}

void run_script(self_ptr self, size_t index, std::vector<std::string> keys_and_args,
                size_t key_count, std::function<void(const redis_value*)> done) {
  auto& sha = self->state.script_sha[index];
  std::vector<std::string> argv{"EVALSHA", sha, std::to_string(key_count)};
  argv.insert(argv.end(), keys_and_args.begin(), keys_and_args.end());
  if (sha.empty()) {
    argv[0] = "EVAL";
    argv[1] = script_text(index);
    return command(self, std::move(argv), std::move(done));
  }
  command(self, std::move(argv),
          [self, index, keys_and_args = std::move(keys_and_args), key_count,
           done = std::move(done)](const redis_value* reply) mutable {
            if (reply && reply->is_error() && reply->text.rfind("NOSCRIPT", 0) == 0) {
              self->state.script_sha[index].clear();
              return run_script(self, index, std::move(keys_and_args), key_count, std::move(done));
            }
            if (done) done(reply);
          });
}

}  // namespace cluster_detail

namespace {

namespace json = boost::json;
using namespace cluster_detail;

// cluster -> itself: the periodic work (lease, probe, expiry of unopened claims); a Redis
// connection's report (kind, generation, ready|lost, error); a subscriber's push; time to
// reconnect (kind, generation); a waiting claim's retry.
using cluster_tick_atom = caf::atom_constant<caf::atom("cltick")>;
using link_atom = caf::atom_constant<caf::atom("cllink")>;
using push_atom = caf::atom_constant<caf::atom("clpush")>;
using reconnect_atom = caf::atom_constant<caf::atom("clreconn")>;
using retry_atom = caf::atom_constant<caf::atom("clretry")>;
// cluster -> itself: a fan-out's cluster.api_timeout has passed.
using finish_atom = caf::atom_constant<caf::atom("clfinish")>;

constexpr auto kTick = std::chrono::milliseconds(100);
constexpr auto kBackoffMin = std::chrono::milliseconds(100);
constexpr auto kBackoffMax = std::chrono::milliseconds(2000);
constexpr auto kConnectTimeout = std::chrono::milliseconds(2000);
// A claim at the cap polls again this often while the holders' sweeps free slots.
constexpr auto kClaimRetry = std::chrono::milliseconds(25);

enum class link_kind : uint8_t { commands, subscriber };
enum class link_event : uint8_t { ready, lost };

// In the order of script_index.
constexpr const char* script_texts[script_count] = {
    cluster_scripts::lease,
    cluster_scripts::claim,
    cluster_scripts::reap,
    cluster_scripts::rebuild,
    cluster_scripts::release,
    cluster_scripts::leave,
    cluster_scripts::fan_out,
    cluster_scripts::hub_publish,
    cluster_scripts::hub_stream,
    cluster_scripts::hub_presence,
    cluster_scripts::hub_presence_get,
    cluster_scripts::hub_presence_rebuild,
};

const char* script_text(size_t index) {
  return script_texts[index];
}

int64_t wall_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// -------------------------------------------------------------------------- commands

redis_link& link_of(cluster_state& state, link_kind kind) {
  return kind == link_kind::commands ? state.commands : state.subscriber;
}

void publish(self_ptr self, const std::string& node, const json::object& message) {
  auto& context = *self->state.context;
  context.stats.cluster_messages(false).Increment();
  command(self, {"PUBLISH", keys_of(context).inbox(node), json::serialize(message)}, nullptr);
}

// ---------------------------------------------------------------------------- state

void set_degraded(self_ptr self, bool degraded, const std::string& why) {
  auto& context = *self->state.context;
  using health = service_context::cluster_health;
  const auto next = degraded ? health::degraded : health::ok;
  const auto before = context.cluster.exchange(next);
  context.stats.cluster_degraded().Set(degraded ? 1 : 0);
  if (!context.cluster_settled.exchange(true)) context.refresh_ready();
  if (before == next) return;
  if (degraded)
    log_event(spdlog::level::warn, "cluster_degraded",
              context.config.cluster.on_redis_down == "reject"
                  ? "Redis unreachable: new upgrades are refused 503 cluster_unavailable "
                    "(cluster.on_redis_down = \"reject\"); open connections are kept"
                  : "Redis unreachable: admitting with this node's caps and delivering locally "
                    "(cluster.on_redis_down = \"local\")",
              {{"redis", context.config.cluster.redis_url}, {"error", why}});
  else
    log_event(spdlog::level::info, "cluster_ok", "Redis reachable: this node's entries rebuilt",
              {{"entries", static_cast<uint64_t>(self->state.entries.size())}});
}

void connect_link(self_ptr self, link_kind kind);

void schedule_reconnect(self_ptr self, link_kind kind) {
  auto& link = link_of(self->state, kind);
  // The supervisor's own backoff: min(100 ms * 2^n, 2 s), up to a quarter more at random.
  static const backoff_policy policy{kBackoffMin, kBackoffMax, 0.25, {}, {}};
  static thread_local std::minstd_rand random{std::random_device{}()};
  const double random01 = std::uniform_real_distribution<double>(0.0, 1.0)(random);
  self->delayed_send(self, detail::backoff_delay(policy, link.failures++, random01),
                     reconnect_atom::value, static_cast<uint8_t>(kind), link.generation);
}

void link_lost(self_ptr self, link_kind kind, const std::string& why) {
  auto& state = self->state;
  auto& link = link_of(state, kind);
  const bool was_up = link.up;
  if (link.connection) link.connection->close();
  link.connection = nullptr;
  link.up = false;
  if (kind == link_kind::commands) {
    state.synced = false;
    for (auto& sha : state.script_sha) sha.clear();
    set_degraded(self, true, why);
  } else {
    state.subscribed = false;
    hub_subscription_lost(self);
    if (was_up) state.context->stats.cluster_pubsub_restarts().Increment();
  }
  if (was_up)
    log_event(spdlog::level::warn, "redis_lost",
              kind == link_kind::commands ? "Redis command connection lost: reconnecting"
                                          : "Redis Pub/Sub connection lost: resubscribing",
              {{"error", why}});
  schedule_reconnect(self, kind);
}

// ------------------------------------------------------------------------- entries

// The node_lost disconnect of a connection another node held (CONTRACT 11.3, 14).
void emit_node_lost(service_context& context, const std::string& node,
                    const std::string& connection, const cluster_entry& entry) {
  if (!entry.opened) return;  // no connect event went out: no disconnect is due
  const auto now = std::chrono::system_clock::now();
  auto id = next_lifecycle_event_id(context);
  connection_event_fields fields{connection, entry.user, entry.ip, entry.meta};
  const int64_t duration_ms = std::max<int64_t>(0, wall_ms(now) - entry.opened_at_ms);
  auto body = disconnect_event_json(id, node, fields, now, 1006, "node lost",
                                    to_string(close_reason::node_lost), duration_ms);
  queue_lifecycle_event(context, std::move(id), connection, std::move(body));
}

void release_in_redis(self_ptr self, const cluster_entry& entry) {
  auto& context = *self->state.context;
  if (!ready_for_work(self->state)) return;  // the next rebuild leaves it out
  const auto k = keys_of(context);
  const auto conns = k.conns(context.node_id);
  run_script(self, release_script,
             // Any entry with a user may hold a claim (a rebuild claims for every one), and
             // the script removes it only if it is this node's.
             {conns, entry.user.empty() ? conns : k.claims(entry.user),
              context.connection_id(entry.id), context.node_id},
             2, nullptr);
}

void release(self_ptr self, uint64_t id) {
  auto& entries = self->state.entries;
  auto it = entries.find(id);
  if (it == entries.end()) return;
  const auto entry = std::move(it->second);
  entries.erase(it);
  release_in_redis(self, entry);
}

// ------------------------------------------------------------------------- syncing

void lease(self_ptr self);
void reap(self_ptr self, const std::string& dead);

// Replaces what Redis holds of this node with `entries` (CONTRACT 14: a node rebuilds
// its entries after Redis comes back). The first sync of the process finds what an
// earlier process with this node id left: those connections are gone, node_lost.
void rebuild(self_ptr self) {
  auto& state = self->state;
  auto& context = *state.context;
  const auto k = keys_of(context);
  std::vector<std::string> args{k.conns(context.node_id), context.config.cluster.prefix,
                                context.node_id};
  args.reserve(3 + state.entries.size() * 2);
  for (const auto& [id, entry] : state.entries) {
    args.push_back(context.connection_id(id));
    args.push_back(cluster_entry_json(entry));
  }
  const auto generation = state.commands.generation;
  run_script(
      self, rebuild_script, std::move(args), 1, [self, generation](const redis_value* reply) {
        auto& state = self->state;
        if (state.commands.generation != generation) return;
        if (!reply || reply->is_error()) {
          log_event(spdlog::level::warn, "cluster_rebuild_failed",
                    "could not rebuild this node's entries in Redis: retrying with the connection",
                    {{"error", reply ? reply->text : std::string("connection lost")}});
          return link_lost(self, link_kind::commands, reply ? reply->text : "connection lost");
        }
        auto& context = *state.context;
        if (context.cluster_first_sync.exchange(false)) {
          uint64_t lost = 0;
          const std::string mine = context.node_id + ".";
          for (size_t i = 0; i + 1 < reply->elements.size(); i += 2) {
            const auto& connection = reply->elements[i].text;
            const auto entry = parse_cluster_entry(reply->elements[i + 1].text);
            if (!entry || connection.rfind(mine, 0) != 0) continue;
            if (state.entries.count(entry->id)) continue;
            emit_node_lost(context, context.node_id, connection, *entry);
            ++lost;
          }
          if (lost > 0)
            log_event(spdlog::level::warn, "cluster_stale_entries",
                      "Redis held connections of an earlier process with this node id: each gets "
                      "its disconnect (node_lost)",
                      {{"node", context.node_id}, {"connections", lost}});
        }
        state.synced = true;
        hub_rebuild_presence(self);
        set_degraded(self, false, "");
      });
}

// The commands connection is up: scripts first, then the lease (this node is alive before
// any claim names it), then the rebuild once the shards' tables are in.
void load_scripts(self_ptr self) {
  auto& state = self->state;
  const auto generation = state.commands.generation;
  auto remaining = std::make_shared<size_t>(script_count);
  for (size_t i = 0; i < script_count; ++i) {
    command(self, {"SCRIPT", "LOAD", script_text(i)},
            [self, i, generation, remaining](const redis_value* reply) {
              auto& state = self->state;
              if (state.commands.generation != generation) return;
              if (reply && reply->kind == redis_value::type::string)
                state.script_sha[i] = reply->text;
              if (--*remaining > 0) return;
              lease(self);
              if (state.tables_in) rebuild(self);
            });
  }
}

void lease(self_ptr self) {
  auto& state = self->state;
  auto& context = *state.context;
  if (!state.commands.up) return;
  state.last_lease = context.now();
  const auto k = keys_of(context);
  const auto ttl =
      std::chrono::duration_cast<std::chrono::milliseconds>(context.config.cluster.lease_ttl);
  const auto connections = context.connections.load(std::memory_order_relaxed);
  run_script(self, lease_script,
             {k.nodes(), k.node(context.node_id), context.node_id, std::to_string(ttl.count()),
              std::to_string(std::max<int64_t>(0, connections)), context.draining ? "1" : "0",
              std::to_string(wall_ms(std::chrono::system_clock::now()))},
             2, [self](const redis_value* reply) {
               if (!reply || reply->kind != redis_value::type::array || reply->elements.size() < 3)
                 return;
               auto& context = *self->state.context;
               self->state.redis_clock_offset_ms =
                   reply->elements[0].integer - wall_ms(std::chrono::system_clock::now());
               const auto live =
                   static_cast<uint64_t>(std::max<int64_t>(0, reply->elements[1].integer));
               context.cluster_nodes = live;
               context.stats.cluster_nodes().Set(static_cast<double>(live));
               for (const auto& dead : reply->elements[2].elements)
                 if (dead.text != context.node_id) reap(self, dead.text);
             });
}

// A node whose lease expired: whoever runs the script first reaps it, once (CONTRACT 14).
void reap(self_ptr self, const std::string& dead) {
  auto& state = self->state;
  if (!state.reaping.insert(dead).second) return;
  auto& context = *state.context;
  const auto k = keys_of(context);
  run_script(self, reap_script,
             {k.nodes(), k.conns(dead), k.node(dead), dead, context.config.cluster.prefix}, 3,
             [self, dead](const redis_value* reply) {
               auto& state = self->state;
               state.reaping.erase(dead);
               if (!reply || reply->kind != redis_value::type::array) return;  // not ours
               auto& context = *state.context;
               uint64_t reaped = 0;
               for (size_t i = 0; i + 1 < reply->elements.size(); i += 2) {
                 const auto entry = parse_cluster_entry(reply->elements[i + 1].text);
                 if (!entry) continue;
                 emit_node_lost(context, dead, reply->elements[i].text, *entry);
                 ++reaped;
               }
               context.stats.cluster_reaped().Increment(static_cast<double>(reaped));
               log_event(spdlog::level::warn, "node_reaped",
                         "a node's lease expired: its connections left every cluster count "
                         "(disconnect events with close_reason node_lost)",
                         {{"node", dead}, {"connections", reaped}});
             });
}

// ----------------------------------------------------------------------- fan-out

int64_t redis_now_ms(const cluster_state& state) {
  return wall_ms(std::chrono::system_clock::now()) + state.redis_clock_offset_ms;
}

// The hub API call of `op`, run inside each addressed connection of the user (checked
// there too, so that a connection id reaches nobody else's connection).
later_work_type hub_work(const cluster_fanout& op) {
  if (op.hub == cluster_fanout::hub_call::subscribe)
    return [user = op.user, channel = op.channel](connection_handle& connection) {
      if (connection.user() == user) hub_server_subscribe(connection, channel);
    };
  return [user = op.user, expired = op.expired,
          expire_at = op.expire_at](connection_handle& connection) {
    if (connection.user() == user) hub_refresh(connection, expired, expire_at);
  };
}

// The send, disconnect or hub call on this node's own connections: how many it reached.
void run_locally(self_ptr self, const cluster_fanout& op, std::function<void(uint64_t)> done) {
  auto& context = *self->state.context;
  const auto sum = [done](std::vector<uint64_t>& counts) {
    uint64_t total = 0;
    for (auto n : counts) total += n;
    done(total);
  };
  if (op.hub != cluster_fanout::hub_call::none)
    ask_each<uint64_t>(self, context.shards(), std::chrono::milliseconds(2000), sum,
                       api_each_atom::value, op.selector, hub_work(op));
  else if (op.close)
    ask_each<uint64_t>(self, context.shards(), std::chrono::milliseconds(2000), sum,
                       api_close_atom::value, op.selector, op.code, op.reason);
  else
    ask_each<uint64_t>(self, context.shards(), std::chrono::milliseconds(2000), sum,
                       api_send_atom::value, op.selector, op.payload, op.text);
}

// The inbox message of a send or disconnect: to one connection (`connection` != 0), else
// without its users, which the fan_out script adds for each node it publishes to.
json::object fanout_message(const cluster_fanout& op, uint64_t request, const std::string& from,
                            uint64_t connection) {
  json::object message{{"t", op.hub != cluster_fanout::hub_call::none ? "hub"
                             : op.close                               ? "close"
                                                                      : "send"},
                       {"req", request},
                       {"from", from}};
  if (connection != 0) message["connection"] = connection;
  if (op.hub != cluster_fanout::hub_call::none) {
    message["user"] = op.user;
    if (op.hub == cluster_fanout::hub_call::subscribe) {
      message["call"] = "subscribe";
      message["channel"] = op.channel;
    } else {
      message["call"] = "refresh";
      message["expired"] = op.expired;
      if (op.expire_at) message["expire_at"] = *op.expire_at;
    }
  } else if (op.close) {
    message["code"] = op.code;
    message["reason"] = op.reason;
  } else if (op.text) {
    message["data"] = op.payload;
  } else {
    message["b64"] = base64url_encode(op.payload);
  }
  return message;
}

void finish_request(self_ptr self, uint64_t request) {
  auto& requests = self->state.requests;
  auto it = requests.find(request);
  if (it == requests.end()) return;
  auto& pending = it->second;
  pending.result.unconfirmed_nodes = pending.waiting.size() + pending.unreached;
  pending.answer.deliver(pending.result);
  requests.erase(it);
}

void maybe_finish_request(self_ptr self, uint64_t request) {
  auto it = self->state.requests.find(request);
  if (it != self->state.requests.end() && it->second.local_done && it->second.nodes_known &&
      it->second.waiting.empty())
    finish_request(self, request);
}

// A request waiting for other nodes' counts, answered when all are in or at
// cluster.api_timeout (the rest counted as unconfirmed).
uint64_t open_request(self_ptr self, caf::response_promise answer) {
  auto& state = self->state;
  const uint64_t request = state.next_request++;
  state.requests[request].answer = std::move(answer);
  self->delayed_send(self, state.context->config.cluster.api_timeout, finish_atom::value, request);
  return request;
}

// Runs `op` on this node's shards for `request`, which then no longer waits for them.
void count_locally(self_ptr self, const cluster_fanout& op, uint64_t request) {
  run_locally(self, op, [self, request](uint64_t n) {
    auto it = self->state.requests.find(request);
    if (it == self->state.requests.end()) return;
    it->second.result.count += n;
    it->second.local_done = true;
    maybe_finish_request(self, request);
  });
}

// The one connection of another node that `op` addresses: 410 when its node has no live
// lease (gone), else that node is asked.
void fan_out_to_connection(self_ptr self, cluster_fanout op, caf::response_promise answer) {
  auto& state = self->state;
  auto& context = *state.context;
  const auto dot = op.connection.rfind('.');
  const std::string node = op.connection.substr(0, dot);
  const uint64_t id = std::strtoull(op.connection.c_str() + dot + 1, nullptr, 10);
  if (node == context.node_id) {
    op.selector.what = connection_selector::kind::connection;
    op.selector.id = id;
    return run_locally(self, op, [answer](uint64_t n) mutable {
      cluster_delivery result;
      result.count = n;
      result.gone = n == 0;
      answer.deliver(result);
    });
  }
  if (!ready_for_work(state)) {
    cluster_delivery result;
    result.unconfirmed_nodes = 1;  // Redis is down: that node cannot be asked
    answer.deliver(result);
    return;
  }
  command(self, {"ZSCORE", keys_of(context).nodes(), node},
          [self, op, answer, node, id](const redis_value* reply) mutable {
            const bool alive =
                reply && reply->kind == redis_value::type::string &&
                std::strtoll(reply->text.c_str(), nullptr, 10) >= redis_now_ms(self->state);
            if (!alive) {
              cluster_delivery result;
              result.gone = reply != nullptr;  // no answer from Redis: not known to be gone
              result.unconfirmed_nodes = reply ? 0 : 1;
              answer.deliver(result);
              return;
            }
            const uint64_t request = open_request(self, answer);
            auto& pending = self->state.requests.at(request);
            pending.local_done = true;  // nothing of it is here
            pending.waiting.insert(node);
            publish(self, node, fanout_message(op, request, self->state.context->node_id, id));
          });
}

// Users: the nodes that hold their slots (their claims), each asked for its own users.
void fan_out_to_users(self_ptr self, cluster_fanout op, caf::response_promise answer) {
  auto& state = self->state;
  auto& context = *state.context;
  if (!ready_for_work(state)) {
    // Redis is down: only this node's connections can be reached.
    const uint64_t others = context.cluster_nodes.load() > 0 ? context.cluster_nodes.load() - 1 : 0;
    return run_locally(self, op, [answer, others](uint64_t n) mutable {
      cluster_delivery result;
      result.count = n;
      result.unconfirmed_nodes = others;
      answer.deliver(result);
    });
  }
  // One script finds the nodes that hold the users and publishes to each of them
  // (one round trip); this node's own connections are sent to meanwhile.
  const uint64_t request = open_request(self, std::move(answer));
  state.requests.at(request).nodes_known = false;
  const auto k = keys_of(context);
  const auto message = fanout_message(op, request, context.node_id, 0);
  std::vector<std::string> args;
  args.reserve(op.selector.users.size() * 2 + 3);
  for (const auto& user : op.selector.users) args.push_back(k.claims(user));
  args.push_back(context.config.cluster.prefix);
  args.push_back(context.node_id);
  args.push_back(json::serialize(message));
  for (const auto& user : op.selector.users) args.push_back(user);
  const auto key_count = op.selector.users.size();
  run_script(self, fan_out_script, std::move(args), key_count,
             [self, request](const redis_value* reply) {
               auto it = self->state.requests.find(request);
               if (it == self->state.requests.end()) return;
               auto& pending = it->second;
               pending.nodes_known = true;
               if (!reply || reply->kind != redis_value::type::array) {
                 // Redis did not answer: the other nodes may or may not have it.
                 const auto nodes = self->state.context->cluster_nodes.load();
                 pending.unreached = nodes > 0 ? nodes - 1 : 0;
               } else {
                 for (const auto& node : reply->elements) {
                   self->state.context->stats.cluster_messages(false).Increment();
                   if (auto early = pending.early.find(node.text); early != pending.early.end())
                     pending.result.count += early->second;
                   else
                     pending.waiting.insert(node.text);
                 }
                 pending.early.clear();
               }
               maybe_finish_request(self, request);
             });
  count_locally(self, op, request);
}

// A send, disconnect or hub call from another node: run here, answer with the count.
void on_remote_fanout(self_ptr self, const json::object& message, const json::string& type) {
  const auto* from = message.if_contains("from");
  const auto* request = message.if_contains("req");
  if (!from || !from->is_string() || !request || !request->is_int64()) return;
  cluster_fanout op;
  op.close = type == "close";
  if (const auto* connection = message.if_contains("connection");
      connection && connection->is_int64()) {
    op.selector.what = connection_selector::kind::connection;
    op.selector.id = static_cast<uint64_t>(connection->as_int64());
  } else if (const auto* users = message.if_contains("users"); users && users->is_array()) {
    op.selector.what = connection_selector::kind::users;
    for (const auto& user : users->as_array())
      if (user.is_string()) op.selector.users.emplace_back(user.as_string());
    op.selector.prepare();
  } else {
    return;
  }
  if (type == "hub") {
    const auto* user = message.if_contains("user");
    const auto* call = message.if_contains("call");
    if (!user || !user->is_string() || !call || !call->is_string()) return;
    op.user = std::string(user->as_string());
    if (call->as_string() == "subscribe") {
      const auto* channel = message.if_contains("channel");
      if (!channel || !channel->is_string()) return;
      op.hub = cluster_fanout::hub_call::subscribe;
      op.channel = std::string(channel->as_string());
    } else if (call->as_string() == "refresh") {
      const auto* expired = message.if_contains("expired");
      const auto* expire_at = message.if_contains("expire_at");
      op.hub = cluster_fanout::hub_call::refresh;
      op.expired = expired && expired->is_bool() && expired->as_bool();
      if (expire_at && expire_at->is_int64()) op.expire_at = expire_at->as_int64();
    } else {
      return;
    }
  } else if (op.close) {
    const auto* code = message.if_contains("code");
    const auto* reason = message.if_contains("reason");
    if (!code || !code->is_int64() || !reason || !reason->is_string()) return;
    op.code = static_cast<uint16_t>(code->as_int64());
    op.reason = std::string(reason->as_string());
  } else if (const auto* data = message.if_contains("data"); data && data->is_string()) {
    op.payload = std::string(data->as_string());
    op.text = true;
  } else if (const auto* b64 = message.if_contains("b64"); b64 && b64->is_string()) {
    auto bytes = base64url_decode(std::string(b64->as_string()));
    if (!bytes) return;
    op.payload = std::move(*bytes);
    op.text = false;
  } else {
    return;
  }
  const std::string origin(from->as_string());
  const auto req = request->as_int64();
  run_locally(self, op, [self, origin, req](uint64_t n) {
    publish(self, origin,
            json::object{
                {"t", "done"}, {"req", req}, {"n", n}, {"node", self->state.context->node_id}});
  });
}

void on_remote_done(self_ptr self, const json::object& message) {
  const auto* request = message.if_contains("req");
  const auto* node = message.if_contains("node");
  const auto* n = message.if_contains("n");
  if (!request || !request->is_int64() || !node || !node->is_string()) return;
  auto it = self->state.requests.find(static_cast<uint64_t>(request->as_int64()));
  if (it == self->state.requests.end()) return;  // answered late: counted as unconfirmed
  const uint64_t count = n && n->is_int64() && n->as_int64() > 0 ? n->as_int64() : 0;
  auto& pending = it->second;
  if (!pending.nodes_known) {
    // Its answer came before the script's reply said whom it published to (they come
    // over different connections): kept until then.
    pending.early[std::string(node->as_string())] += count;
    return;
  }
  if (pending.waiting.erase(std::string(node->as_string())) == 0) return;
  pending.result.count += count;
  maybe_finish_request(self, it->first);
}

// /api/connections in cluster mode: every live node's open connections, from Redis.
void list_across(self_ptr self, const std::string& user, caf::response_promise answer) {
  auto& state = self->state;
  auto& context = *state.context;
  if (!ready_for_work(state)) {
    answer.deliver(std::vector<cluster_connection>{});
    return;
  }
  const auto k = keys_of(context);
  command(self, {"ZRANGEBYSCORE", k.nodes(), std::to_string(redis_now_ms(state)), "+inf"},
          [self, user, answer](const redis_value* nodes) mutable {
            auto list = std::make_shared<std::vector<cluster_connection>>();
            if (!nodes || nodes->kind != redis_value::type::array || nodes->elements.empty()) {
              answer.deliver(std::move(*list));
              return;
            }
            auto remaining = std::make_shared<size_t>(nodes->elements.size());
            const auto k = keys_of(*self->state.context);
            for (const auto& node : nodes->elements)
              command(self, {"HGETALL", k.conns(node.text)},
                      [list, remaining, user, answer](const redis_value* entries) mutable {
                        if (entries && entries->kind == redis_value::type::array)
                          for (size_t i = 0; i + 1 < entries->elements.size(); i += 2) {
                            const auto entry = parse_cluster_entry(entries->elements[i + 1].text);
                            if (!entry || !entry->opened) continue;
                            if (!user.empty() && entry->user != user) continue;
                            cluster_connection c;
                            c.connection = entries->elements[i].text;
                            c.user = entry->user;
                            c.ip = entry->ip;
                            c.meta = entry->meta;
                            c.opened_at = std::chrono::system_clock::time_point(
                                std::chrono::milliseconds(entry->opened_at_ms));
                            list->push_back(std::move(c));
                          }
                        if (--*remaining == 0) answer.deliver(std::move(*list));
                      });
          });
}

// ------------------------------------------------------------------------ Pub/Sub

void subscribe(self_ptr self) {
  auto& state = self->state;
  auto& context = *state.context;
  state.subscriber.connection->send({"SUBSCRIBE", keys_of(context).inbox(context.node_id)},
                                    nullptr);
  hub_resubscribe(self);
}

// Probes the subscription with a message to itself; one that did not come back since the
// last probe means the subscription stalled: it is restarted (CONTRACT 14).
void probe(self_ptr self) {
  auto& state = self->state;
  auto& context = *state.context;
  const auto now = context.now();
  state.last_probe = now;
  if (state.probe_sent > state.probe_seen && state.subscribed) {
    log_event(spdlog::level::warn, "pubsub_stalled",
              "the Pub/Sub probe did not come back within cluster.probe_interval: "
              "restarting the subscription",
              {{"probe", state.probe_sent}});
    state.probe_seen = state.probe_sent;
    link_lost(self, link_kind::subscriber, "probe timed out");
    return;
  }
  if (!state.subscribed || !state.commands.up) return;
  state.probe_sent_at = now;
  publish(self, context.node_id, json::object{{"t", "probe"}, {"n", ++state.probe_sent}});
}

void retry_claim(self_ptr self, uint64_t wait);

void swept(self_ptr self, uint64_t wait, uint64_t freed) {
  auto& claims = self->state.waiting_claims;
  auto it = claims.find(wait);
  if (it == claims.end()) return;
  if (it->second.sweeps_pending > 0) --it->second.sweeps_pending;
  it->second.freed += freed;
  if (!it->second.retry_scheduled) retry_claim(self, wait);
}

bool recent(const std::unordered_map<std::string, steady_time>& when, const std::string& user,
            steady_time now, std::chrono::milliseconds window) {
  auto it = when.find(user);
  return it != when.end() && now - it->second < window;
}

// A sweep of `user` on this node, for a claim at the cap (here or on another node).
void sweep_user(self_ptr self, const std::string& user, std::function<void(uint64_t)> done) {
  auto& state = self->state;
  auto& context = *state.context;
  auto janitor = context.janitor();
  if (!janitor) return done(0);
  if (recent(state.fruitless_sweeps, user, context.now(), context.config.janitor.probe_timeout))
    return done(0);
  auto& waiting = state.user_sweeps[user];
  waiting.push_back(std::move(done));
  if (waiting.size() > 1) return;  // the running sweep answers this one too
  const auto answer_all = [self, user](uint64_t freed) {
    auto& state = self->state;
    auto it = state.user_sweeps.find(user);
    if (it == state.user_sweeps.end()) return;
    auto callbacks = std::move(it->second);
    state.user_sweeps.erase(it);
    if (freed == 0) state.fruitless_sweeps[user] = state.context->now();
    for (auto& callback : callbacks) callback(freed);
  };
  sweep_order order;
  order.level = context.config.limits.user_overflow == "evict_idle" ? sweep_level::aggressive
                                                                    : sweep_level::moderate;
  order.scope = sweep_scope{sweep_scope::kind::user, user};
  order.needed = 1;
  order.kind = sweep_kind::emergency;
  order.deadline = context.now() + context.config.limits.admission_timeout * 6 / 10;
  self->request(janitor, context.config.limits.admission_timeout, sweep_atom::value,
                std::move(order))
      .then([answer_all](const sweep_result& result) { answer_all(result.evicted()); },
            [answer_all](caf::error&) { answer_all(0); });
}

void on_inbox(self_ptr self, const std::string& payload) {
  auto& state = self->state;
  auto& context = *state.context;
  context.stats.cluster_messages(true).Increment();
  boost::system::error_code ec;
  auto parsed = json::parse(payload, ec);
  if (ec || !parsed.is_object()) return;
  const auto& message = parsed.as_object();
  const auto* type = message.if_contains("t");
  if (!type || !type->is_string()) return;
  const auto number = [&](const char* name) -> uint64_t {
    const auto* v = message.if_contains(name);
    return v && v->is_int64() && v->as_int64() > 0 ? static_cast<uint64_t>(v->as_int64()) : 0;
  };
  const auto text = [&](const char* name) -> std::string {
    const auto* v = message.if_contains(name);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
  };
  if (*type == "probe") {
    state.probe_seen = std::max(state.probe_seen, number("n"));
  } else if (*type == "sweep") {
    const auto from = text("from");
    const auto req = number("req");
    const auto user = text("user");
    if (from.empty() || user.empty()) return;
    sweep_user(self, user, [self, from, req](uint64_t freed) {
      publish(self, from, json::object{{"t", "swept"}, {"req", req}, {"freed", freed}});
    });
  } else if (*type == "swept") {
    swept(self, number("req"), number("freed"));
  } else if (*type == "send" || *type == "close" || *type == "hub") {
    on_remote_fanout(self, message, type->as_string());
  } else if (*type == "done") {
    on_remote_done(self, message);
  }
}

void on_push(self_ptr self, const redis_value& push) {
  auto& state = self->state;
  if (push.kind != redis_value::type::array || push.elements.empty()) return;
  const auto& kind = push.elements[0].text;
  const std::string& channel = push.elements.size() > 1 ? push.elements[1].text : std::string();
  const auto& context = *state.context;
  if (channel != keys_of(context).inbox(context.node_id)) {
    hub_on_push(self, kind, channel, push.elements.size() > 2 ? push.elements[2].text : "");
    return;
  }
  if (kind == "subscribe") {
    state.subscribed = true;
    state.subscriber.failures = 0;
    // A fresh subscription: the next probe starts the count again.
    state.probe_seen = state.probe_sent;
    log_event(spdlog::level::info, "pubsub_subscribed", "Redis Pub/Sub subscription up",
              {{"channel", channel}});
  } else if (kind == "message" && push.elements.size() >= 3) {
    on_inbox(self, push.elements[2].text);
  }
}

// ------------------------------------------------------------------------- claims

void finish_claim(self_ptr self, uint64_t wait, claim_outcome outcome) {
  auto& claims = self->state.waiting_claims;
  auto it = claims.find(wait);
  if (it == claims.end()) return;
  if (outcome == claim_outcome::at_cap && it->second.holders_asked && it->second.freed == 0)
    self->state.fruitless_claims[it->second.user] = self->state.context->now();
  if (outcome == claim_outcome::claimed) {
    auto& entry = self->state.entries[it->second.id];
    entry.id = it->second.id;
    entry.claimed = true;
  }
  it->second.answer.deliver(outcome);
  claims.erase(it);
}

// At the cap: every node that holds the user's slots sweeps that user (this one through
// its own janitor, the others through their inbox), and says what the sweep freed.
void ask_holders(self_ptr self, uint64_t wait, const std::vector<redis_value>& holders) {
  auto& state = self->state;
  auto& context = *state.context;
  auto& claim = state.waiting_claims.at(wait);
  claim.holders_asked = true;
  // From here the answer may wait for other nodes: the deadline's own wake-up, should
  // their answers not come.
  self->delayed_send(self, claim.deadline - context.now(), retry_atom::value, wait);
  for (const auto& holder : holders) {
    if (holder.text.empty()) continue;
    ++claim.sweeps_pending;
    if (holder.text == context.node_id) {
      sweep_user(self, claim.user, [self, wait](uint64_t freed) { swept(self, wait, freed); });
    } else {
      publish(self, holder.text,
              json::object{
                  {"t", "sweep"}, {"req", wait}, {"from", context.node_id}, {"user", claim.user}});
    }
  }
}

void schedule_retry(self_ptr self, uint64_t wait, std::chrono::milliseconds after) {
  auto& claim = self->state.waiting_claims.at(wait);
  if (claim.retry_scheduled) return;
  claim.retry_scheduled = true;
  self->delayed_send(self, after, retry_atom::value, wait);
}

// One run of the claim script for a waiting claim: claimed; or at the cap, when the
// holders are asked to sweep the user (once) and the claim is tried again as their
// sweeps free slots, until nothing more can come or the deadline.
void retry_claim(self_ptr self, uint64_t wait) {
  auto& state = self->state;
  auto it = state.waiting_claims.find(wait);
  if (it == state.waiting_claims.end()) return;
  auto& context = *state.context;
  if (!ready_for_work(state)) return finish_claim(self, wait, claim_outcome::unavailable);
  const auto k = keys_of(context);
  cluster_entry claimed = state.entries[it->second.id];
  claimed.claimed = true;
  run_script(
      self, claim_script,
      {k.claims(it->second.user), k.nodes(), k.conns(context.node_id),
       context.connection_id(it->second.id), context.node_id,
       std::to_string(context.config.limits.max_per_user), cluster_entry_json(claimed)},
      3, [self, wait](const redis_value* reply) {
        auto& state = self->state;
        auto it = state.waiting_claims.find(wait);
        if (it == state.waiting_claims.end()) return;
        if (!reply || reply->kind != redis_value::type::array || reply->elements.empty())
          return finish_claim(self, wait, claim_outcome::unavailable);
        if (reply->elements[0].integer == 1)
          return finish_claim(self, wait, claim_outcome::claimed);
        auto& claim = it->second;
        if (state.context->now() >= claim.deadline)
          return finish_claim(self, wait, claim_outcome::at_cap);
        if (!claim.holders_asked && recent(state.fruitless_claims, claim.user, state.context->now(),
                                           state.context->config.janitor.probe_timeout))
          return finish_claim(self, wait, claim_outcome::at_cap);
        if (!claim.holders_asked) {
          const std::vector<redis_value> holders(reply->elements.begin() + 1,
                                                 reply->elements.end());
          ask_holders(self, wait, holders);
          if (claim.sweeps_pending == 0) return finish_claim(self, wait, claim_outcome::at_cap);
          return;  // their answers retry the claim
        }
        if (claim.sweeps_pending == 0 && claim.freed == 0)
          return finish_claim(self, wait, claim_outcome::at_cap);  // nothing will come
        // Slots are being freed (an evicted actor's death takes a few messages to
        // reach Redis), or sweeps are still running: try again shortly.
        schedule_retry(self, wait, kClaimRetry);
      });
}

void claim(self_ptr self, uint64_t id, std::string user, std::string ip, std::string meta) {
  auto& state = self->state;
  auto& context = *state.context;
  auto answer = self->make_response_promise();
  if (!ready_for_work(state)) {
    answer.deliver(claim_outcome::unavailable);
    return;
  }
  auto& entry = state.entries[id];
  entry.id = id;
  entry.user = user;
  entry.ip = std::move(ip);
  entry.meta = std::move(meta);
  entry.opened_at_ms = wall_ms(std::chrono::system_clock::now());
  entry.claimed_at = context.now();
  const uint64_t wait = state.next_wait++;
  waiting_claim waiting;
  waiting.answer = answer;
  waiting.id = id;
  waiting.user = std::move(user);
  waiting.deadline = context.now() + context.config.limits.admission_timeout * 8 / 10;
  state.waiting_claims.emplace(wait, std::move(waiting));
  // No timer here: the script's reply always comes (nullptr when the connection fails).
  // The deadline gets its own wake-up only once the claim waits for sweeps (ask_holders).
  retry_claim(self, wait);
}

// Claims made at admission whose connection neither opened nor closed within a
// handshake's time never became a connection (the guard gave up on them, or died
// before placing them): they leave Redis here, so that no claim outlives its upgrade.
void expire_unopened_claims(self_ptr self) {
  auto& state = self->state;
  auto& context = *state.context;
  const auto limit =
      context.config.server.handshake_timeout + context.config.limits.admission_timeout;
  const auto now = context.now();
  std::vector<uint64_t> expired;
  for (const auto& [id, entry] : state.entries)
    if (entry.claimed && !entry.opened && entry.claimed_at != steady_time{} &&
        now - entry.claimed_at > limit) {
      bool waiting = false;
      for (const auto& [wait, claim] : state.waiting_claims) waiting |= claim.id == id;
      if (!waiting) expired.push_back(id);
    }
  for (auto id : expired) release(self, id);
}

void tick(self_ptr self) {
  auto& state = self->state;
  auto& context = *state.context;
  const auto now = context.now();
  if (ready_for_work(state)) {
    if (now - state.last_lease >= context.config.cluster.lease_refresh) {
      lease(self);
      expire_unopened_claims(self);
      // What a sweep's answer says holds for probe_timeout: older ones are forgotten.
      for (auto* when : {&state.fruitless_sweeps, &state.fruitless_claims})
        for (auto it = when->begin(); it != when->end();)
          it = now - it->second >= context.config.janitor.probe_timeout ? when->erase(it) : ++it;
    }
    if (now - state.last_probe >= context.config.cluster.probe_interval) probe(self);
  }
  hub_tick(self);
  self->delayed_send(self, kTick, cluster_tick_atom::value);
}

// ------------------------------------------------------------------- connections

void connect_link(self_ptr self, link_kind kind) {
  auto& state = self->state;
  auto& context = *state.context;
  auto& link = link_of(state, kind);
  if (link.connection) link.connection->close();
  link.up = false;
  link.generation = state.next_generation++;
  const auto& cluster = context.config.cluster;
  redis_endpoint where;
  where.host = cluster.redis_host;
  where.port = cluster.redis_port;
  where.database = cluster.redis_database;
  where.password = cluster.redis_password;
  where.connect_timeout = kConnectTimeout;
  const auto generation = link.generation;
  const auto me = self->address();
  const auto report = [me, kind, generation](link_event event, const std::string& error) {
    if (auto actor = caf::actor_cast<caf::actor>(me))
      caf::anon_send(actor, link_atom::value, static_cast<uint8_t>(kind), generation,
                     static_cast<uint8_t>(event), error);
  };
  redis_handlers handlers;
  handlers.on_ready = [report](const std::string& error) { report(link_event::ready, error); };
  handlers.on_lost = [report](const std::string& error) { report(link_event::lost, error); };
  if (kind == link_kind::subscriber)
    handlers.on_push = [me, generation](redis_value push) {
      if (auto actor = caf::actor_cast<caf::actor>(me))
        caf::anon_send(actor, push_atom::value, generation,
                       std::make_shared<const redis_value>(std::move(push)));
    };
  link.connection =
      context.redis->connect(where,
                             kind == link_kind::commands ? redis_port::connection_kind::command
                                                         : redis_port::connection_kind::subscriber,
                             std::move(handlers));
}

void on_link(self_ptr self, link_kind kind, uint64_t generation, link_event event,
             const std::string& error) {
  auto& state = self->state;
  auto& link = link_of(state, kind);
  if (link.generation != generation) return;  // a connection replaced since
  if (event == link_event::lost || !error.empty()) {
    if (!error.empty() && event == link_event::ready && link.failures == 0)
      log_event(spdlog::level::warn, "redis_unreachable",
                "cannot connect to Redis (cluster.redis_url, WSVISOR_CLUSTER_REDIS_PASSWORD): "
                "retrying with backoff",
                {{"redis", state.context->config.cluster.redis_url}, {"error", error}});
    return link_lost(self, kind, error);
  }
  link.up = true;
  if (kind == link_kind::commands) {
    link.failures = 0;
    load_scripts(self);
  } else {
    subscribe(self);
  }
}

// After a (re)start the service knows nothing: the shards' tables are what this node
// holds (the connect events that went out say which are open).
void read_tables(self_ptr self) {
  auto& context = *self->state.context;
  ask_each<std::vector<cluster_entry>>(
      self, context.shards(), std::chrono::milliseconds(2000),
      [self](std::vector<std::vector<cluster_entry>>& tables) {
        auto& state = self->state;
        for (auto& table : tables)
          for (auto& entry : table) {
            const auto id = entry.id;
            state.entries.emplace(id, std::move(entry));
          }
        // Hub mode: the hub's channels and presence too, before the first rebuild.
        const auto tables_in = [self] {
          auto& state = self->state;
          state.tables_in = true;
          if (state.commands.up && !state.synced) {
            bool scripts_loaded = true;
            for (const auto& sha : state.script_sha) scripts_loaded &= !sha.empty();
            if (scripts_loaded) rebuild(self);
          }
        };
        auto hub = state.context->hub_service();
        if (!hub) return tables_in();
        self->request(hub, std::chrono::milliseconds(2000), hub_table_atom::value)
            .then(
                [self, tables_in](hub_table& table) {
                  hub_take_table(self, std::move(table));
                  tables_in();
                },
                [tables_in](caf::error&) { tables_in(); });
      },
      cl_table_atom::value);
}

// The end of a drain: this node's lease and entries leave Redis (CONTRACT 14).
void leave(self_ptr self, caf::response_promise answer) {
  auto& state = self->state;
  auto& context = *state.context;
  if (!state.commands.up) {
    answer.deliver(false);
    return;
  }
  const auto k = keys_of(context);
  run_script(self, leave_script,
             {k.nodes(), k.node(context.node_id), k.conns(context.node_id), context.node_id,
              context.config.cluster.prefix},
             3, [self, answer](const redis_value* reply) mutable {
               self->state.entries.clear();
               self->state.hub_presence.clear();
               answer.deliver(reply != nullptr && !reply->is_error());
             });
}

// GET /admin/cluster: every node with a lease, its expiry and what it last reported.
void list_nodes(self_ptr self, caf::response_promise answer) {
  auto& context = *self->state.context;
  const auto k = keys_of(context);
  command(self, {"ZRANGE", k.nodes(), "0", "-1", "WITHSCORES"},
          [self, answer](const redis_value* reply) mutable {
            if (!reply || reply->kind != redis_value::type::array) {
              answer.deliver(std::vector<cluster_node_info>{});
              return;
            }
            auto nodes = std::make_shared<std::vector<cluster_node_info>>();
            for (size_t i = 0; i + 1 < reply->elements.size(); i += 2) {
              cluster_node_info node;
              node.node_id = reply->elements[i].text;
              const auto expires_ms =
                  std::strtoll(reply->elements[i + 1].text.c_str(), nullptr, 10);
              node.lease_expires_at =
                  std::chrono::system_clock::time_point(std::chrono::milliseconds(expires_ms));
              nodes->push_back(std::move(node));
            }
            if (nodes->empty()) {
              answer.deliver(std::move(*nodes));
              return;
            }
            auto remaining = std::make_shared<size_t>(nodes->size());
            const auto k = keys_of(*self->state.context);
            for (size_t i = 0; i < nodes->size(); ++i)
              command(self, {"HGETALL", k.node((*nodes)[i].node_id)},
                      [nodes, remaining, i, answer](const redis_value* fields) mutable {
                        if (fields && fields->kind == redis_value::type::array)
                          for (size_t f = 0; f + 1 < fields->elements.size(); f += 2) {
                            const auto& name = fields->elements[f].text;
                            const auto& value = fields->elements[f + 1].text;
                            if (name == "connections")
                              (*nodes)[i].connections = std::strtoull(value.c_str(), nullptr, 10);
                            else if (name == "draining")
                              (*nodes)[i].draining = value == "1";
                          }
                        if (--*remaining == 0) answer.deliver(std::move(*nodes));
                      });
          });
}

}  // namespace

caf::behavior cluster_actor(self_ptr self, std::shared_ptr<service_context> context) {
  auto& state = self->state;
  state.context = std::move(context);
  state.script_sha.assign(script_count, std::string());
  state.context->cluster = service_context::cluster_health::degraded;  // until the first sync
  state.context->stats.cluster_degraded().Set(1);
  connect_link(self, link_kind::commands);
  connect_link(self, link_kind::subscriber);
  read_tables(self);
  self->send(self, cluster_tick_atom::value);
  return {
      [self](cl_claim_atom, uint64_t id, std::string& user, std::string& ip, std::string& meta) {
        claim(self, id, std::move(user), std::move(ip), std::move(meta));
      },
      [self](cl_unclaim_atom, uint64_t id) {
        auto it = self->state.entries.find(id);
        if (it != self->state.entries.end() && !it->second.opened) release(self, id);
      },
      [self](cl_open_atom, cluster_entry& opened) {
        auto& state = self->state;
        auto& entry = state.entries[opened.id];
        const bool claimed = entry.claimed && entry.user == opened.user;
        opened.claimed = claimed;
        opened.claimed_at = entry.claimed_at;
        entry = std::move(opened);
        entry.opened = true;
        if (!ready_for_work(state)) return;
        auto& context = *state.context;
        command(self,
                {"HSET", keys_of(context).conns(context.node_id), context.connection_id(entry.id),
                 cluster_entry_json(entry)},
                nullptr);
      },
      [self](cl_release_atom, uint64_t id) { release(self, id); },
      [self](cl_fanout_atom, cluster_fanout& op) {
        auto answer = self->make_response_promise();
        if (op.selector.what == connection_selector::kind::connection)
          fan_out_to_connection(self, std::move(op), answer);
        else
          fan_out_to_users(self, std::move(op), answer);
        return answer;
      },
      [self](cl_list_atom, const std::string& user) {
        auto answer = self->make_response_promise();
        list_across(self, user, answer);
        return answer;
      },
      [self](finish_atom, uint64_t request) { finish_request(self, request); },
      [self](cl_leave_atom) {
        auto answer = self->make_response_promise();
        leave(self, answer);
        return answer;
      },
      [self](cl_nodes_atom) {
        auto answer = self->make_response_promise();
        list_nodes(self, answer);
        return answer;
      },
      [self](cluster_tick_atom) { tick(self); },
      [self](retry_atom, uint64_t wait) {
        auto it = self->state.waiting_claims.find(wait);
        if (it == self->state.waiting_claims.end()) return;
        it->second.retry_scheduled = false;
        retry_claim(self, wait);
      },
      [self](link_atom, uint8_t kind, uint64_t generation, uint8_t event,
             const std::string& error) {
        on_link(self, static_cast<link_kind>(kind), generation, static_cast<link_event>(event),
                error);
      },
      [self](reconnect_atom, uint8_t kind, uint64_t generation) {
        auto& link = link_of(self->state, static_cast<link_kind>(kind));
        if (link.generation == generation && !link.up)
          connect_link(self, static_cast<link_kind>(kind));
      },
      [self](push_atom, uint64_t generation, const value_ptr& push) {
        if (push && self->state.subscriber.generation == generation) on_push(self, *push);
      },
      [self](reply_atom, uint64_t token, const value_ptr& reply) {
        auto& waiting = self->state.waiting_replies;
        auto it = waiting.find(token);
        if (it == waiting.end()) return;
        auto done = std::move(it->second);
        waiting.erase(it);
        done(reply.get());
      },
      // Hub mode across nodes (cluster_hub.cpp).
      [self](cl_hub_join_atom, std::vector<hub_stream_request>& requests) {
        auto answer = self->make_response_promise();
        hub_join(self, std::move(requests), answer);
        return answer;
      },
      [self](cl_hub_read_atom, const hub_stream_request& request) {
        auto answer = self->make_response_promise();
        hub_read(self, request, answer);
        return answer;
      },
      [self](cl_hub_listen_atom, const std::string& channel) { hub_listen(self, channel); },
      [self](cl_hub_unlisten_atom, const std::string& channel) { hub_unlisten(self, channel); },
      [self](cl_hub_publish_atom, const hub_cluster_publication& publication) {
        auto answer = self->make_response_promise();
        hub_publish(self, publication, answer);
        return answer;
      },
      [self](cl_hub_notify_atom, const std::string& channel, const std::string& message) {
        hub_notify(self, channel, message);
      },
      [self](cl_hub_presence_atom, const hub_presence_entry& entry) {
        hub_set_presence(self, entry);
      },
      [self](cl_hub_presence_get_atom, const std::string& channel) {
        auto answer = self->make_response_promise();
        hub_get_presence(self, channel, answer);
        return answer;
      },
      [self](cl_hub_history_remove_atom, const std::string& channel) {
        auto answer = self->make_response_promise();
        hub_remove_history(self, channel, answer);
        return answer;
      },
      [self](cl_hub_reset_atom) { hub_reset(self); },
      [](fault_atom, crash_atom) -> caf::result<void> {
        throw std::runtime_error("cluster crash (fault injection)");
      },
  };
}

std::string cluster_entry_json(const cluster_entry& entry) {
  json::object object;
  object["id"] = entry.id;
  object["user"] = entry.user.empty() ? json::value(nullptr) : json::value(entry.user);
  object["ip"] = entry.ip;
  object["opened_at"] = entry.opened_at_ms;
  json::value meta(nullptr);
  if (!entry.meta.empty()) {
    boost::system::error_code ec;
    auto parsed = json::parse(entry.meta, ec);
    if (!ec) meta = std::move(parsed);
  }
  object["meta"] = std::move(meta);
  object["opened"] = entry.opened;
  return json::serialize(object);
}

std::optional<cluster_entry> parse_cluster_entry(const std::string& text) {
  boost::system::error_code ec;
  auto parsed = json::parse(text, ec);
  if (ec || !parsed.is_object()) return std::nullopt;
  const auto& object = parsed.as_object();
  cluster_entry entry;
  if (const auto* id = object.if_contains("id"); id && id->is_int64() && id->as_int64() > 0)
    entry.id = static_cast<uint64_t>(id->as_int64());
  else if (id && id->is_uint64())
    entry.id = id->as_uint64();
  if (const auto* user = object.if_contains("user"); user && user->is_string())
    entry.user = std::string(user->as_string());
  if (const auto* ip = object.if_contains("ip"); ip && ip->is_string())
    entry.ip = std::string(ip->as_string());
  if (const auto* at = object.if_contains("opened_at"); at && at->is_int64())
    entry.opened_at_ms = at->as_int64();
  if (const auto* meta = object.if_contains("meta"); meta && !meta->is_null())
    entry.meta = json::serialize(*meta);
  if (const auto* opened = object.if_contains("opened"); opened && opened->is_bool())
    entry.opened = opened->as_bool();
  entry.claimed = entry.user.size() > 0;
  return entry;
}

}  // namespace wsvisor
