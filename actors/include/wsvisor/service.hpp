// The service tree (root over limit_guard, janitor and K shard supervisors, each shard
// over its connection actors) and the few calls net/ and main need to drive it.
#pragma once

#include <caf/actor_system.hpp>

#include <boost/json/object.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "wsvisor/admin.hpp"
#include "wsvisor/admission.hpp"
#include "wsvisor/application.hpp"
#include "wsvisor/config.hpp"
#include "wsvisor/metrics.hpp"
#include "wsvisor/redis_port.hpp"
#include "wsvisor/sweep.hpp"
#include "wsvisor/upstream_port.hpp"

namespace wsvisor {

struct service_context;

// What one method of the hub API answers (CONTRACT 13.6, Centrifugo's server API): a
// result object, or an error with Centrifugo's code (100 internal, 102 unknown channel,
// 107 bad request, 108 not available, 112 unrecoverable position, ...).
struct hub_api_reply {
  uint32_t error = 0;  // 0: `result` holds the answer
  std::string message;
  boost::json::object result;
};

// The limit guard's counts against the truth (the shards' tables): the invariant is
// counted == in_tables + reservations whenever no message is in flight between them.
struct count_audit {
  uint64_t counted = 0;       // slots the guard counts
  uint64_t reservations = 0;  // of those, spawns a shard has not confirmed yet
  uint64_t in_tables = 0;     // entries in the shards' tables
};

class service {
 public:
  // `shard_count` is the number of threads that run actors (K).
  service(caf::actor_system& system, const settings& config, metrics& metrics,
          unsigned shard_count);
  ~service();
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  // Before start(): the application of app.mode (default: echo), and the HTTP client
  // to the backend (needed when upstream.url or events.url is set).
  void use_application(application_factory factory);
  void use_upstream(std::shared_ptr<upstream_port> port);
  // Cluster mode (cluster.mode = "redis"): the way to Redis; the tree gets a root service
  // `cluster` (CONTRACT 14).
  void use_redis(std::shared_ptr<redis_port> port);
  // The application's own heartbeat message, sent by the janitor instead of WebSocket
  // pings to a connection the server sent nothing for janitor.ping_interval (hub mode:
  // Centrifugo's "{}"). "" (the default): WebSocket pings.
  void use_heartbeat_message(std::string message);

  // Spawns the tree. Readiness also needs the listener (see set_listening).
  void start();

  // cluster.node_id or the one chosen at start (connection ids are "<node_id>.<n>").
  const std::string& node_id() const;
  // Lifecycle events queued or in flight (a drain waits for them, CONTRACT 11.3).
  uint64_t events_pending() const;

  // The listener accepts: with the tree up, the service is ready.
  void set_listening();

  // Asks the limit guard; `ticket->reply` is called exactly once.
  void admit(admission_ticket ticket);

  // Shutdown, first step: readiness 503, upgrades refused with "draining", every
  // connection closed with 1001. Idempotent.
  void begin_drain();

  // Second signal or drain deadline: every remaining connection is closed at once.
  void close_all_now();

  // Cluster mode, at the end of a drain: this node's lease and entries leave Redis (waits
  // at most 1 s for Redis). Nothing without cluster mode.
  void leave_cluster();
  // /health's "cluster" and GET /admin/cluster (CONTRACT 14); nodes: nullopt when the
  // cluster service did not answer (or cluster mode is off).
  cluster_status cluster() const;
  void cluster_nodes(std::function<void(std::optional<std::vector<cluster_node_info>>)> done);

  // Stops every actor of the tree (after the drain).
  void stop();

  bool ready() const;
  bool draining() const;
  // Slots held (handshakes in flight included), as the shards' tables count them.
  uint64_t connections() const;
  unsigned shard_count() const;

  // A round trip through the root supervisor (liveness): `done(true)` when it answered.
  void ping_root(std::function<void(bool)> done);

  // Called once, from an actor's thread, when the root supervisor gives up (restart
  // intensity exceeded): the process should exit 1. Set before start().
  void on_give_up(std::function<void()> callback);

  // The admin API (CONTRACT sections 7 and 8). Each `done` is called exactly once, from
  // an actor's thread; an empty optional means the tree did not answer in time.
  void list_connections(std::optional<std::string> user,
                        std::function<void(std::vector<connection_info>)> done);
  void tree(std::function<void(std::optional<tree_node>)> done);
  // The limit guard's counts against the caps, with the `top` users and IPs holding the
  // most slots (the dashboard, CONTRACT 15).
  void caps(size_t top, std::function<void(std::optional<caps_in_use>)> done);
  void sweep(sweep_level level, sweep_scope scope,
             std::function<void(std::optional<sweep_result>)> done);
  // Graceful close with 4002 of connection `id` (when not 0) or of every connection of
  // `user`: how many.
  void close_connections(uint64_t id, std::string user, std::function<void(uint64_t)> done);
  // The server API (CONTRACT 12.3). send_to: the message is queued to every open
  // connection addressed, none of another user; `done` gets how many. disconnect:
  // graceful close with `code` and `reason` (close_reason api).
  void send_to(connection_selector to, std::string payload, bool text,
               std::function<void(uint64_t)> done);
  void disconnect(connection_selector which, uint16_t code, std::string reason,
                  std::function<void(uint64_t)> done);

  // Cluster mode (CONTRACT 14): the same send and disconnect across every node, and every
  // node's open connections. `connection` is the full id ("<node_id>.<n>", any node) when
  // the selector addresses one connection. `done` is called exactly once, from an actor's
  // thread; list_across gets nullopt when the cluster service did not answer.
  void send_across(connection_selector to, std::string connection, std::string payload, bool text,
                   std::function<void(cluster_delivery)> done);
  void disconnect_across(connection_selector which, std::string connection, uint16_t code,
                         std::string reason, std::function<void(cluster_delivery)> done);
  void list_across(std::optional<std::string> user,
                   std::function<void(std::optional<std::vector<cluster_connection>>)> done);

  // The hub API (app.mode = "hub"): one method of Centrifugo's server API (publish,
  // broadcast, subscribe, unsubscribe, disconnect, refresh, presence, presence_stats,
  // history, history_remove, channels, info) with its request object; `done` is called
  // exactly once, from an actor's thread. An unknown method answers 104 (method not
  // found); batch is the caller's, one call per command.
  void hub_call(std::string method, boost::json::object params,
                std::function<void(hub_api_reply)> done);

  // The guard's counts and the shards' tables (tests check the invariant with it).
  void audit_counts(std::function<void(std::optional<count_audit>)> done);
  // A fault of CONTRACT section 8 (only when faults.enabled): how many actors it reached.
  void inject_fault(fault_request fault, std::function<void(uint64_t)> done);

 private:
  std::shared_ptr<service_context> context_;
  std::function<void()> give_up_;
  std::atomic<bool> closed_all_logged_{false};
};

}  // namespace wsvisor
