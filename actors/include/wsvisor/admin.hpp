// What the admin API (CONTRACT sections 7 and 8) asks of the service tree and hears back.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "wsvisor/session_port.hpp"

namespace wsvisor {

struct connection_info {
  uint64_t id = 0;
  std::string user;
  std::string ip;
  std::chrono::system_clock::time_point opened_at;
  std::chrono::system_clock::time_point last_activity;
  const char* state = "handshake";  // "handshake" | "open" | "closing"
  uint64_t restarts = 0;
  uint64_t queued_bytes = 0;
  std::string meta;  // the connect hook's compact JSON, "" when none
};

// Whom a server API call addresses (CONTRACT 12.3).
struct connection_selector {
  enum class kind { connection, user, users } what = kind::connection;
  uint64_t id = 0;                 // kind::connection
  std::vector<std::string> users;  // kind::user: one; kind::users: any number
  // Sorts and de-duplicates `users`, so that matches() is a binary search: every shard
  // asks it for each connection it holds (service::send_to and disconnect call it).
  void prepare();
  bool matches(uint64_t connection_id, const std::string& user) const;
};

// GET /admin/cluster (CONTRACT 14): one node with a lease.
struct cluster_node_info {
  std::string node_id;
  std::chrono::system_clock::time_point lease_expires_at;
  uint64_t connections = 0;
  bool draining = false;
};

// What /api/send or /api/disconnect reached across the cluster (CONTRACT 14): connections
// sent to (or closed), nodes that did not answer within cluster.api_timeout, and whether
// the one connection addressed is gone (its node does not hold it open, or is dead).
struct cluster_delivery {
  uint64_t count = 0;
  uint64_t unconfirmed_nodes = 0;
  bool gone = false;
};

// One open connection of any node, as /api/connections lists it in cluster mode.
struct cluster_connection {
  std::string connection;  // "<node_id>.<n>"
  std::string user;
  std::string ip;
  std::string meta;  // compact JSON, "" when none
  std::chrono::system_clock::time_point opened_at;
};

// /health's "cluster" (CONTRACT 14).
struct cluster_status {
  std::string state = "off";  // off | ok | degraded
  std::string node_id;
  uint64_t nodes = 0;  // nodes with a live lease, at the last refresh
};

struct tree_node {
  std::string name;
  std::string strategy;  // supervisors only
  uint64_t restarts = 0;
  // Supervisors: the restart budget (supervision.service_restarts within
  // service_restart_period) and the restarts within the window now.
  struct restart_budget {
    uint64_t max_restarts = 0;
    uint64_t window_ms = 0;
    uint64_t in_window = 0;
  };
  std::optional<restart_budget> budget;
  std::string state = "running";        // "running" | "restarting" (waiting for its restart)
  std::optional<uint64_t> connections;  // shards only
  std::string breaker;                  // the upstream service only: closed|open|half_open
  std::optional<uint64_t> inflight;     // the upstream service only
  std::vector<tree_node> children;
};

// The caps in use, as the limit guard counts them (the dashboard, CONTRACT 15): slots
// held, the configured caps (0: none) and the users and IPs holding the most slots.
struct caps_in_use {
  uint64_t connections = 0;
  uint64_t max_connections = 0;
  uint64_t soft_connections = 0;
  uint64_t max_per_user = 0;
  uint64_t max_per_ip = 0;
  std::vector<std::pair<std::string, uint64_t>> top_users;  // by count, highest first
  std::vector<std::pair<std::string, uint64_t>> top_ips;
};

// A fault of CONTRACT section 8.
struct fault_request {
  enum class action {
    crash,
    poison,
    delay,
    clear,
    // toward clients (target client)
    stall,
    latency,
    drop,
    close,
    reset,
    zombie,
    restart
  } what = action::crash;
  enum class target {
    connection,
    limit_guard,
    janitor,
    shard,
    upstream,
    events,
    hub,      // hub mode's channels (CONTRACT 13)
    cluster,  // cluster mode's Redis client (CONTRACT 14)
    client    // the clients themselves: what they see of the server (faults toward clients)
  } on = target::connection;
  std::optional<std::string> user;        // target connection or client: by user
  std::optional<uint64_t> id;             //   or by id
  std::optional<std::string> connection;  // target client: by "<node>.<n>" (the caller
                                          //   turns a local one into id)
  std::optional<double> share;          // target client: that share of open connections, at random
  uint64_t shard_index = 0;             // as given: checked against the shard count before use
  uint32_t delay_ms = 0;                // delay; stall and latency: ms
  uint32_t jitter_ms = 0;               // latency
  double ratio = 0;                     // drop
  uint16_t code = 0;                    // close
  std::string reason;                   // close
  std::chrono::milliseconds spread{0};  // restart
};

// Standing faults applied to a connection actor (and to the user's future ones).
struct standing_fault {
  bool poison = false;
  uint32_t delay_ms = 0;
  // Toward the client, applied by its session (client_fault in session_port.hpp).
  uint32_t latency_ms = 0;
  uint32_t jitter_ms = 0;
  double drop_ratio = 0;
  bool any() const { return poison || delay_ms > 0; }
  bool toward_client() const { return latency_ms > 0 || drop_ratio > 0; }
};

}  // namespace wsvisor
