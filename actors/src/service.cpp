#include "wsvisor/service.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <random>
#include <variant>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <wsvisor/log.hpp>

#include <wsvisor/supervisor.hpp>

#include "client_faults.hpp"
#include "connection_actor.hpp"
#include "fan_in.hpp"
#include "hub_application.hpp"
#include "hub_service.hpp"
#include "messages.hpp"
#include "root.hpp"
#include "service_context.hpp"
#include "wsvisor/hub/channels.hpp"

namespace wsvisor {
namespace {

constexpr auto kAdminTimeout = std::chrono::seconds(2);

// Runs `work` in a short-lived actor of its own, so that the admin API can use
// request/then from a non-actor thread.
void in_helper_actor(caf::actor_system& system, std::function<void(caf::event_based_actor*)> work) {
  system.spawn([work = std::move(work)](caf::event_based_actor* self) { work(self); });
}

// Every shard, the same question (see fan_in.hpp).
template <class Answer, class... Ts>
void ask_shards(caf::event_based_actor* self, const std::vector<caf::actor>& shards,
                std::function<void(std::vector<Answer>&)> done, Ts... request) {
  ask_each<Answer>(self, shards, kAdminTimeout, std::move(done), request...);
}

// Every shard, the same question answered with a count; `done` gets the sum (the
// connections an API or admin action reached).
template <class... Ts>
void sum_over_shards(const service_context& context, std::function<void(uint64_t)> done,
                     Ts... request) {
  auto shards = context.shards();
  in_helper_actor(context.system, [=](caf::event_based_actor* self) {
    ask_shards<uint64_t>(
        self, shards,
        [done](std::vector<uint64_t>& counts) {
          uint64_t sum = 0;
          for (auto n : counts) sum += n;
          done(sum);
        },
        request...);
  });
}

std::chrono::system_clock::time_point to_wall(steady_time t, steady_time now) {
  return std::chrono::system_clock::now() -
         std::chrono::duration_cast<std::chrono::system_clock::duration>(now - t);
}

// cluster.node_id, or (section 10) the host name in lower case, [a-z0-9-] only, plus
// "-" and 6 random hex digits chosen at start: unique for the process's life, so that
// connection ids ("<node>.<n>") are never reused by the node.
std::string choose_node_id(const settings& config) {
  if (!config.cluster.node_id.empty()) return config.cluster.node_id;
  char host[256] = {};
  std::string name;
  if (gethostname(host, sizeof host - 1) == 0) {
    for (const char* p = host; *p; ++p) {
      const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(*p)));
      if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') name += c;
      if (name.size() == 40) break;
    }
  }
  while (!name.empty() && name.front() == '-') name.erase(name.begin());
  if (name.empty()) name = "wsvisor";
  std::random_device random;
  char suffix[8];
  std::snprintf(suffix, sizeof suffix, "%06x", random() & 0xffffff);
  return name + "-" + suffix;
}

connection_info describe(const connection_snapshot& c, steady_time now) {
  connection_info info;
  info.id = c.id;
  info.user = c.user;
  info.ip = c.ip;
  info.opened_at = c.admitted_wall;
  info.last_activity = to_wall(std::max(c.live.last_frame_in, c.live.last_message), now);
  info.state = c.live.open ? "open" : (c.live.closing ? "closing" : "handshake");
  info.restarts = c.restarts;
  info.queued_bytes = c.live.queued_bytes;
  info.meta = c.meta;
  return info;
}

}  // namespace

service::service(caf::actor_system& system, const settings& config, metrics& stats,
                 unsigned shard_count)
    : context_(std::make_shared<service_context>(system, config, stats, std::max(1u, shard_count),
                                                 choose_node_id(config))) {
  context_->app_factory = *application_registry::with_builtins().find("echo");
  if (!config.events.url.empty())
    context_->events = std::make_shared<event_queue>(config.events.queue);
}

void service::use_application(application_factory factory) {
  context_->app_factory = std::move(factory);
}

void service::use_upstream(std::shared_ptr<upstream_port> port) {
  context_->http_client = std::move(port);
}

void service::use_redis(std::shared_ptr<redis_port> port) {
  context_->redis = std::move(port);
}

void service::use_heartbeat_message(std::string message) {
  context_->heartbeat_message =
      message.empty() ? nullptr : std::make_shared<const std::string>(std::move(message));
}

const std::string& service::node_id() const {
  return context_->node_id;
}

uint64_t service::events_pending() const {
  return context_->events ? context_->events->pending() : 0;
}

service::~service() = default;

void service::on_give_up(std::function<void()> callback) {
  give_up_ = std::move(callback);
}

void service::start() {
  // Hub mode's heartbeat is Centrifugo's ping (CONTRACT 13.1).
  if (context_->config.app.mode == "hub" && !context_->heartbeat_message)
    use_heartbeat_message(kHubHeartbeat);
  auto root = spawn_service_tree(context_);
  {
    std::lock_guard<std::mutex> lock(context_->handles_mutex);
    context_->root_handle = root;
  }
  // Escalation leaves the tree: the root gave up, the process exits 1 (CONTRACT section 9).
  auto give_up = give_up_;
  auto context = context_;
  // It needs a behavior (an actor without one ends at once) and a strong handle (an
  // actor nobody references ends as unreachable).
  auto watcher = context_->system.spawn([root, give_up, context](caf::event_based_actor* self) {
    self->monitor(root);
    self->set_down_handler([self, give_up, context](caf::down_msg& down) {
      if (down.reason == supervision_error::restart_intensity_exceeded) {
        context->tree_up = false;
        context->refresh_ready();
        log_event(
            spdlog::level::critical, "root_gave_up",
            "root supervisor gave up: more restarts than supervision.service_restarts "
            "within service_restart_period; exiting 1",
            {{"restarts", context->config.supervision.service_restarts},
             {"period", format_duration(context->config.supervision.service_restart_period)}});
        if (give_up) give_up();
      }
      self->quit();
    });
    return caf::behavior{[](ping_atom) { return pong_atom::value; }};
  });
  std::lock_guard<std::mutex> lock(context_->handles_mutex);
  context_->root_watcher = watcher;
}

void service::set_listening() {
  context_->listening = true;
  context_->refresh_ready();
}

void service::admit(admission_ticket ticket) {
  auto guard = context_->guard();
  if (!guard || !context_->tree_up) {
    // Before the tree exists there is nobody to ask: that is "starting".
    admission_decision decision;
    decision.reason = context_->draining ? reject_reason::draining : reject_reason::starting;
    decision.retry_after = jittered_retry_after(context_->config.limits.retry_after);
    ticket->reply(std::move(decision));
    return;
  }
  caf::anon_send(guard, admit_atom::value, std::move(ticket));
}

void service::begin_drain() {
  if (context_->draining.exchange(true)) return;
  context_->drain_began = context_->now().time_since_epoch().count();
  context_->stats.draining().Set(1);
  context_->refresh_ready();
  log_event(spdlog::level::info, "drain_begun", "drain begun: readiness 503",
            {{"connections", connections()}});
  if (auto janitor = context_->janitor()) {
    caf::anon_send(janitor, drain_atom::value);
  } else {
    for (auto& shard : context_->shards()) caf::anon_send(shard, drain_atom::value);
  }
}

void service::close_all_now() {
  // Logged once: the drain deadline and the exit that follows both call this.
  if (connections() > 0 && !closed_all_logged_.exchange(true))
    log_event(spdlog::level::info, "close_all", "closing the remaining connections at once",
              {{"connections", connections()}});
  for (auto& shard : context_->shards())
    if (shard) caf::anon_send(shard, abort_all_atom::value);
}

void service::leave_cluster() {
  auto cluster = context_->cluster_service();
  if (!cluster) return;
  caf::scoped_actor self{context_->system};
  self->request(cluster, std::chrono::seconds(1), cl_leave_atom::value)
      .receive([](bool) {}, [](caf::error&) {});
}

cluster_status service::cluster() const {
  cluster_status status;
  status.node_id = context_->node_id;
  status.nodes = context_->cluster_nodes.load();
  switch (context_->cluster.load()) {
    case service_context::cluster_health::ok:
      status.state = "ok";
      break;
    case service_context::cluster_health::degraded:
      status.state = "degraded";
      break;
    case service_context::cluster_health::off:
      status.state = "off";
      break;
  }
  return status;
}

void service::cluster_nodes(
    std::function<void(std::optional<std::vector<cluster_node_info>>)> done) {
  auto cluster = context_->cluster_service();
  if (!cluster) return done(std::nullopt);
  in_helper_actor(context_->system, [cluster, done](caf::event_based_actor* self) {
    self->request(cluster, kAdminTimeout, cl_nodes_atom::value)
        .then([done](std::vector<cluster_node_info>& nodes) { done(std::move(nodes)); },
              [done](caf::error&) { done(std::nullopt); });
  });
}

void service::stop() {
  if (auto root = context_->root()) caf::anon_send_exit(root, caf::exit_reason::user_shutdown);
  std::lock_guard<std::mutex> lock(context_->handles_mutex);
  context_->root_handle = nullptr;
  context_->guard_handle = nullptr;
  context_->janitor_handle = nullptr;
  context_->shard_handles.clear();
  context_->root_watcher = nullptr;
}

bool service::ready() const {
  return context_->ready_now();
}

bool service::draining() const {
  return context_->draining;
}

uint64_t service::connections() const {
  const auto n = context_->connections.load(std::memory_order_relaxed);
  return n > 0 ? static_cast<uint64_t>(n) : 0;
}

unsigned service::shard_count() const {
  return context_->shard_count;
}

void service::ping_root(std::function<void(bool)> done) {
  auto root = context_->root();
  if (!root) return done(false);
  in_helper_actor(context_->system, [root, done](caf::event_based_actor* self) {
    self->request(root, std::chrono::seconds(1), supervisor_tree_atom::value)
        .then([self, done](const supervisor_tree&) { done(true); },
              [self, done](caf::error&) { done(false); });
  });
}

void service::list_connections(std::optional<std::string> user,
                               std::function<void(std::vector<connection_info>)> done) {
  sweep_scope scope;
  if (user) {
    scope.what = sweep_scope::kind::user;
    scope.value = *user;
  }
  auto shards = context_->shards();
  auto context = context_;
  in_helper_actor(context_->system, [shards, scope, done, context](caf::event_based_actor* self) {
    ask_shards<std::vector<connection_snapshot>>(
        self, shards,
        [done, context](std::vector<std::vector<connection_snapshot>>& per_shard) {
          std::vector<connection_info> all;
          const auto now = context->now();
          for (auto& list : per_shard)
            for (auto& c : list) all.push_back(describe(c, now));
          std::sort(all.begin(), all.end(),
                    [](const auto& a, const auto& b) { return a.id < b.id; });
          done(std::move(all));
        },
        snapshot_atom::value, scope);
  });
}

void service::tree(std::function<void(std::optional<tree_node>)> done) {
  auto root = context_->root();
  if (!root) return done(std::nullopt);
  auto shards = context_->shards();
  auto upstream = context_->upstream_service();
  in_helper_actor(context_->system, [root, shards, upstream, done](caf::event_based_actor* self) {
    self->request(root, kAdminTimeout, supervisor_tree_atom::value)
        .then(
            [self, shards, upstream, done](const supervisor_tree& tree) {
              auto node = std::make_shared<tree_node>();
              node->name = tree.name;
              node->strategy = to_string(tree.strategy);
              node->restarts = tree.restarts;
              node->budget = tree_node::restart_budget{
                  tree.intensity.max_restarts,
                  static_cast<uint64_t>(
                      std::chrono::duration_cast<std::chrono::milliseconds>(tree.intensity.period)
                          .count()),
                  tree.restarts_in_window};
              for (auto& child : tree.children) {
                tree_node c;
                c.name = child.id;
                c.restarts = child.restarts;
                c.state = child.running ? "running" : "restarting";
                if (c.name.rfind("shard-", 0) == 0) c.connections = 0;
                node->children.push_back(std::move(c));
              }
              auto child = [node](const std::string& name) -> tree_node* {
                for (auto& c : node->children)
                  if (c.name == name) return &c;
                return nullptr;
              };
              // Shards show their connection count instead of listing them; the
              // upstream service its breaker and what it has in flight.
              auto remaining = std::make_shared<size_t>(shards.size() + (upstream ? 1 : 0));
              auto one_done = [node, remaining, done] {
                if (--*remaining == 0) done(std::move(*node));
              };
              if (*remaining == 0) return done(std::move(*node));
              for (size_t i = 0; i < shards.size(); ++i) {
                const std::string name = "shard-" + std::to_string(i);
                self->request(shards[i], kAdminTimeout, count_atom::value)
                    .then(
                        [child, one_done, name](uint64_t n) {
                          if (auto* c = child(name)) c->connections = n;
                          one_done();
                        },
                        [one_done](caf::error&) { one_done(); });
              }
              if (upstream)
                self->request(upstream, kAdminTimeout, status_atom::value)
                    .then(
                        [child, one_done](const upstream_status& status) {
                          if (auto* c = child("upstream")) {
                            c->breaker = status.breaker;
                            c->inflight = status.inflight;
                          }
                          one_done();
                        },
                        [one_done](caf::error&) { one_done(); });
            },
            [done](caf::error&) { done(std::nullopt); });
  });
}

void service::caps(size_t top, std::function<void(std::optional<caps_in_use>)> done) {
  auto guard = context_->guard();
  if (!guard) return done(std::nullopt);
  in_helper_actor(context_->system, [=](caf::event_based_actor* self) {
    self->request(guard, kAdminTimeout, caps_atom::value, static_cast<uint64_t>(top))
        .then([done](const caps_in_use& caps) { done(caps); },
              [done](caf::error&) { done(std::nullopt); });
  });
}

void service::sweep(sweep_level level, sweep_scope scope,
                    std::function<void(std::optional<sweep_result>)> done) {
  auto janitor = context_->janitor();
  if (!janitor) return done(std::nullopt);
  // A moderate sweep may look up to four times for answers to its probe (janitor.cpp).
  const auto timeout = context_->config.janitor.probe_timeout * 4 + kAdminTimeout;
  sweep_order order;
  order.level = level;
  order.scope = std::move(scope);
  order.kind = sweep_kind::admin;
  in_helper_actor(context_->system, [=](caf::event_based_actor* self) {
    self->request(janitor, timeout, sweep_atom::value, order)
        .then([done](const sweep_result& result) { done(result); },
              [done](caf::error&) { done(std::nullopt); });
  });
}

void service::audit_counts(std::function<void(std::optional<count_audit>)> done) {
  auto guard = context_->guard();
  if (!guard) return done(std::nullopt);
  auto shards = context_->shards();
  in_helper_actor(context_->system, [=](caf::event_based_actor* self) {
    self->request(guard, kAdminTimeout, audit_atom::value)
        .then(
            [self, shards, done](const guard_audit& guard) {
              ask_shards<uint64_t>(
                  self, shards,
                  [guard, done](std::vector<uint64_t>& counts) {
                    count_audit audit;
                    audit.counted = guard.counted;
                    audit.reservations = guard.reservations;
                    for (auto n : counts) audit.in_tables += n;
                    done(audit);
                  },
                  count_atom::value);
            },
            [done](caf::error&) { done(std::nullopt); });
  });
}

void connection_selector::prepare() {
  std::sort(users.begin(), users.end());
  users.erase(std::unique(users.begin(), users.end()), users.end());
}

bool connection_selector::matches(uint64_t connection_id, const std::string& user) const {
  switch (what) {
    case kind::connection:
      return connection_id == id;
    case kind::user:
    case kind::users:
      // Sorted by prepare(): a send to 1,000 users walked 1,000 names per connection.
      return !user.empty() && std::binary_search(users.begin(), users.end(), user);
  }
  return false;
}

void service::send_to(connection_selector to, std::string payload, bool text,
                      std::function<void(uint64_t)> done) {
  to.prepare();
  sum_over_shards(*context_, std::move(done), api_send_atom::value, to, payload, text);
}

namespace {

// Asks the cluster service for a send or disconnect on every node; waits a little longer
// than cluster.api_timeout, the longest it waits for the other nodes.
void fan_out_through_cluster(const service_context& context, cluster_fanout op,
                             std::function<void(cluster_delivery)> done) {
  auto cluster = context.cluster_service();
  if (!cluster) {
    cluster_delivery nobody;
    nobody.unconfirmed_nodes = 1;
    return done(nobody);
  }
  op.selector.prepare();
  const auto timeout = context.config.cluster.api_timeout + kAdminTimeout;
  in_helper_actor(context.system,
                  [cluster, op = std::move(op), done, timeout](caf::event_based_actor* self) {
                    self->request(cluster, timeout, cl_fanout_atom::value, op)
                        .then([done](const cluster_delivery& result) { done(result); },
                              [done](caf::error&) {
                                cluster_delivery unknown;
                                unknown.unconfirmed_nodes = 1;
                                done(unknown);
                              });
                  });
}

}  // namespace

void service::send_across(connection_selector to, std::string connection, std::string payload,
                          bool text, std::function<void(cluster_delivery)> done) {
  cluster_fanout op;
  op.selector = std::move(to);
  op.connection = std::move(connection);
  op.payload = std::move(payload);
  op.text = text;
  fan_out_through_cluster(*context_, std::move(op), std::move(done));
}

void service::disconnect_across(connection_selector which, std::string connection, uint16_t code,
                                std::string reason, std::function<void(cluster_delivery)> done) {
  cluster_fanout op;
  op.close = true;
  op.selector = std::move(which);
  op.connection = std::move(connection);
  op.code = code;
  op.reason = std::move(reason);
  fan_out_through_cluster(*context_, std::move(op), std::move(done));
}

void service::list_across(
    std::optional<std::string> user,
    std::function<void(std::optional<std::vector<cluster_connection>>)> done) {
  auto cluster = context_->cluster_service();
  if (!cluster) return done(std::nullopt);
  in_helper_actor(
      context_->system, [cluster, user = user.value_or(""), done](caf::event_based_actor* self) {
        self->request(cluster, kAdminTimeout, cl_list_atom::value, user)
            .then([done](std::vector<cluster_connection>& list) { done(std::move(list)); },
                  [done](caf::error&) { done(std::nullopt); });
      });
}

void service::disconnect(connection_selector which, uint16_t code, std::string reason,
                         std::function<void(uint64_t)> done) {
  which.prepare();
  sum_over_shards(*context_, std::move(done), api_close_atom::value, which, code, reason);
}

namespace {

hub_api_reply hub_error(hub::error_code code, std::string message = {}) {
  hub_api_reply reply;
  reply.error = static_cast<uint32_t>(code);
  reply.message = message.empty() ? std::string(hub::error_message(code)) : std::move(message);
  return reply;
}

std::optional<std::string> text_param(const boost::json::object& params, const char* name) {
  const auto* value = params.if_contains(name);
  if (!value || !value->is_string()) return std::nullopt;
  return std::string(value->as_string());
}

// The connections a hub API call addresses: every one of `user`, or with `client`
// (a connection id, "<node>.<n>") that one, if it is the user's.
struct hub_target {
  connection_selector selector;
  std::string user;
  std::string client;      // as given, "" = every connection of the user
  bool elsewhere = false;  // `client` is not one of this node's connection ids
};

// "<node>.<n>": the shape of every connection id (a client id of another shape is nobody's).
bool is_connection_id(const std::string& id) {
  const auto dot = id.rfind('.');
  return dot != std::string::npos && dot > 0 && dot + 1 < id.size() &&
         id.find_first_not_of("0123456789", dot + 1) == std::string::npos;
}

std::variant<hub_target, hub_api_reply> target_of(const boost::json::object& params,
                                                  const std::string& node_id) {
  hub_target target;
  auto user = text_param(params, "user");
  if (!user || user->empty())
    return hub_error(hub::error_code::bad_request, "\"user\" is required");
  target.user = *user;
  target.selector.what = connection_selector::kind::user;
  target.selector.users = {*user};
  if (const auto* client = params.if_contains("client"); client && !client->is_null()) {
    if (!client->is_string())
      return hub_error(hub::error_code::bad_request, "\"client\" must be a string");
    const std::string id(client->as_string());
    target.client = id;
    const std::string prefix = node_id + ".";
    if (id.rfind(prefix, 0) != 0 || id.size() == prefix.size() ||
        id.find_first_not_of("0123456789", prefix.size()) != std::string::npos) {
      target.elsewhere = true;
    } else {
      target.selector.what = connection_selector::kind::connection;
      target.selector.id = std::stoull(id.substr(prefix.size()));
    }
  }
  target.selector.prepare();
  return target;
}

// The cluster's form of a hub call (CONTRACT 14): the user's connections on every node,
// or the one `client` names on its node.
cluster_fanout across_nodes(const hub_target& target) {
  cluster_fanout op;
  op.selector = target.selector;
  op.user = target.user;
  if (!target.client.empty()) {
    op.connection = target.client;
    op.selector.what = connection_selector::kind::connection;
  }
  return op;
}

// Runs `op` (a hub call) on every node through the cluster, then answers {}: once the
// nodes that hold the addressed connections ran it, or cluster.api_timeout passed.
void hub_call_across(const service_context& context, const hub_target& target, cluster_fanout op,
                     std::function<void(hub_api_reply)> done) {
  if (!target.client.empty() && !is_connection_id(target.client)) return done({});
  fan_out_through_cluster(context, std::move(op), [done](cluster_delivery) { done({}); });
}

// Runs `work` in every connection addressed (the user is checked inside, so that
// nothing reaches another user's connection), then answers {}.
void for_hub_target(const service_context& context, const hub_target& target,
                    std::function<void(connection_handle&)> work,
                    std::function<void(hub_api_reply)> done) {
  if (target.elsewhere) return done({});
  auto guarded = [user = target.user, work = std::move(work)](connection_handle& connection) {
    if (connection.user() == user) work(connection);
  };
  sum_over_shards(
      context, [done](uint64_t) { done({}); }, api_each_atom::value, target.selector,
      later_work_type(std::move(guarded)));
}

}  // namespace

void service::hub_call(std::string method, boost::json::object params,
                       std::function<void(hub_api_reply)> done) {
  auto context = context_;
  if (method == "subscribe" || method == "disconnect" || method == "refresh") {
    auto target = target_of(params, context->node_id);
    if (auto* error = std::get_if<hub_api_reply>(&target)) return done(std::move(*error));
    auto& to = std::get<hub_target>(target);
    // In cluster mode every node's connections of the user (CONTRACT 14).
    const bool across = context->config.cluster.enabled();
    if (method == "subscribe") {
      auto channel = text_param(params, "channel");
      if (!channel || channel->empty())
        return done(hub_error(hub::error_code::bad_request, "\"channel\" is required"));
      const auto resolved = hub::resolve_channel(*channel, context->config.hub);
      if (resolved.error == hub::error_code::bad_request)
        return done(hub_error(*resolved.error, "not a channel name"));
      if (resolved.error) return done(hub_error(*resolved.error));
      if (across) {
        auto op = across_nodes(to);
        op.hub = cluster_fanout::hub_call::subscribe;
        op.channel = *channel;
        return hub_call_across(*context, to, std::move(op), std::move(done));
      }
      return for_hub_target(
          *context, to,
          [channel = *channel](connection_handle& connection) {
            hub_server_subscribe(connection, channel);
          },
          std::move(done));
    }
    if (method == "refresh") {
      bool expired = false;
      std::optional<int64_t> expire_at;
      if (const auto* value = params.if_contains("expired")) {
        if (!value->is_bool())
          return done(hub_error(hub::error_code::bad_request, "\"expired\" must be a boolean"));
        expired = value->as_bool();
      }
      if (const auto* value = params.if_contains("expire_at")) {
        if (!value->is_int64() && !value->is_uint64())
          return done(
              hub_error(hub::error_code::bad_request, "\"expire_at\" must be unix seconds"));
        expire_at = value->to_number<int64_t>();
      }
      if (across) {
        auto op = across_nodes(to);
        op.hub = cluster_fanout::hub_call::refresh;
        op.expired = expired;
        op.expire_at = expire_at;
        return hub_call_across(*context, to, std::move(op), std::move(done));
      }
      return for_hub_target(
          *context, to,
          [expired, expire_at](connection_handle& connection) {
            hub_refresh(connection, expired, expire_at);
          },
          std::move(done));
    }
    // disconnect: Centrifugo's default is 3503 force disconnect (no reconnect).
    uint16_t code = 3503;
    std::string reason = "force disconnect";
    if (const auto* value = params.if_contains("disconnect"); value && !value->is_null()) {
      if (!value->is_object())
        return done(hub_error(hub::error_code::bad_request,
                              "\"disconnect\" must be {\"code\",\"reason\"}"));
      const auto& d = value->as_object();
      if (const auto* c = d.if_contains("code")) {
        if (!c->is_int64() || c->as_int64() < 3000 || c->as_int64() > 4999)
          return done(
              hub_error(hub::error_code::bad_request, "\"disconnect.code\" must be 3000-4999"));
        code = static_cast<uint16_t>(c->as_int64());
      }
      if (const auto* r = d.if_contains("reason")) {
        if (!r->is_string())
          return done(
              hub_error(hub::error_code::bad_request, "\"disconnect.reason\" must be a string"));
        reason = std::string(r->as_string());
      }
    }
    if (across) {
      auto op = across_nodes(to);
      op.close = true;
      op.code = code;
      op.reason = std::move(reason);
      return hub_call_across(*context, to, std::move(op), std::move(done));
    }
    if (to.elsewhere) return done({});
    return disconnect(std::move(to.selector), code, std::move(reason),
                      [done](uint64_t) { done({}); });
  }
  auto hub = context->hub_service();
  if (!hub) return done(hub_error(hub::error_code::internal, "the hub is restarting"));
  in_helper_actor(context->system, [hub, method = std::move(method), params = std::move(params),
                                    done](caf::event_based_actor* self) {
    self->request(hub, std::chrono::seconds(5), hub_api_atom::value,
                  hub_api_request{method, params})
        .then([done](hub_api_reply& reply) { done(std::move(reply)); },
              [done](caf::error&) { done(hub_error(hub::error_code::internal)); });
  });
}

void service::close_connections(uint64_t id, std::string user, std::function<void(uint64_t)> done) {
  sum_over_shards(*context_, std::move(done), admin_close_atom::value, id, user);
}

void service::inject_fault(fault_request fault, std::function<void(uint64_t)> done) {
  auto context = context_;
  using action = fault_request::action;
  using target = fault_request::target;
  if (fault.on == target::client)
    return inject_client_fault(std::move(context), std::move(fault), std::move(done));
  // target "upstream" (CONTRACT 11.1): without user/id the service itself crashes; with
  // them, those connections' upstream work does, which is a connection restart.
  const bool upstream_work = fault.on == target::upstream && (fault.user || fault.id);
  if (fault.on == target::upstream && !upstream_work) {
    auto service = context->upstream_service();
    if (!service) return done(0);
    if (fault.what == action::delay) {
      log_event(spdlog::level::warn, "fault", "fault injection: upstream responses held",
                {{"ms", fault.delay_ms}});
      caf::anon_send(service, fault_atom::value, delay_atom::value, fault.delay_ms);
      return done(1);
    }
    log_event(spdlog::level::warn, "fault", "fault injection: crash", {{"target", "upstream"}});
    caf::anon_send(service, fault_atom::value, crash_atom::value);
    return done(1);
  }
  if (upstream_work) fault.on = target::connection;
  if (fault.what == action::clear)
    if (auto service = context->upstream_service())
      caf::anon_send(service, fault_atom::value, clear_atom::value);
  if (fault.what == action::crash && fault.on != target::connection) {
    caf::actor victim;
    if (fault.on == target::limit_guard) victim = context->guard();
    if (fault.on == target::janitor) victim = context->janitor();
    if (fault.on == target::events) victim = context->events_service();
    if (fault.on == target::hub) victim = context->hub_service();
    if (fault.on == target::cluster) victim = context->cluster_service();
    if (fault.on == target::shard && fault.shard_index < context->shard_count)
      victim = context->shard(static_cast<unsigned>(fault.shard_index));
    if (!victim) return done(0);
    log_event(spdlog::level::warn, "fault", "fault injection: crash",
              {{"target", fault.on == target::shard ? "shard-" + std::to_string(fault.shard_index)
                          : fault.on == target::janitor ? std::string("janitor")
                          : fault.on == target::events  ? std::string("events")
                          : fault.on == target::hub     ? std::string("hub")
                          : fault.on == target::cluster ? std::string("cluster")
                                                        : std::string("limit_guard")}});
    caf::anon_send(victim, fault_atom::value, crash_atom::value);
    return done(1);
  }
  // Standing faults also reach the user's future connections.
  standing_fault standing;
  standing.poison = fault.what == action::poison;
  standing.delay_ms = fault.what == action::delay ? fault.delay_ms : 0;
  if (fault.what == action::clear) context->clear_faults();
  if (standing.any() && fault.user) {
    // poison and delay replace each other; the user's faults toward clients stay.
    auto merged = context->fault_for(*fault.user);
    merged.poison = standing.poison;
    merged.delay_ms = standing.delay_ms;
    context->set_fault(*fault.user, merged);
  }
  sweep_scope scope;
  if (fault.user && fault.what != action::clear) {
    scope.what = sweep_scope::kind::user;
    scope.value = *fault.user;
  }
  auto shards = context->shards();
  in_helper_actor(context->system, [=](caf::event_based_actor* self) {
    ask_shards<std::vector<connection_snapshot>>(
        self, shards,
        [self, fault, standing, done](std::vector<std::vector<connection_snapshot>>& per_shard) {
          uint64_t applied = 0;
          for (auto& list : per_shard) {
            for (auto& c : list) {
              if (fault.id && c.id != *fault.id) continue;
              switch (fault.what) {
                case action::crash:
                  self->send(c.actor, fault_atom::value, crash_atom::value);
                  break;
                case action::clear:
                  self->send(c.actor, fault_atom::value, clear_atom::value);
                  break;
                default:
                  self->send(c.actor, fault_atom::value, standing);
                  break;
              }
              ++applied;
            }
          }
          log_event(spdlog::level::warn, "fault", "fault injection on connections",
                    {{"action", fault.what == action::crash    ? "crash"
                                : fault.what == action::poison ? "poison"
                                : fault.what == action::delay  ? "delay"
                                                               : "clear"},
                     log_field::optional("user", fault.user.value_or("")),
                     {"applied", applied}});
          done(applied);
        },
        snapshot_atom::value, scope);
  });
}

}  // namespace wsvisor
