// State shared by the actors of one service and the service facade: the settings,
// the metrics, the flags readiness is made of, and the current handles of the tree.
#pragma once

#include <caf/actor.hpp>
#include <caf/actor_clock.hpp>
#include <caf/actor_system.hpp>

#include <atomic>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "lifecycle_events.hpp"
#include "wsvisor/admin.hpp"
#include "wsvisor/application.hpp"
#include "wsvisor/config.hpp"
#include "wsvisor/metrics.hpp"
#include "wsvisor/redis_port.hpp"
#include "wsvisor/session_port.hpp"
#include "wsvisor/upstream_port.hpp"

#include <prometheus/gauge.h>

namespace wsvisor {

struct service_context {
  service_context(caf::actor_system& sys, const settings& cfg, metrics& m, unsigned shards,
                  std::string node)
      : system(sys), config(cfg), stats(m), shard_count(shards), node_id(std::move(node)) {}

  caf::actor_system& system;
  const settings config;
  metrics& stats;
  const unsigned shard_count;
  // cluster.node_id, or the host name plus 6 random hex digits (section 10).
  const std::string node_id;
  // A connection's string id, "<node_id>.<n>" (CONTRACT 10), for events, logs and Redis.
  std::string connection_id(uint64_t id) const { return node_id + "." + std::to_string(id); }
  // For the uptime the APIs report.
  const std::chrono::steady_clock::time_point started_at = std::chrono::steady_clock::now();
  // Set before the tree starts (service::start): the application of app.mode, the
  // HTTP client to the backend, and the lifecycle events' queue (it outlives a restart
  // of the events service).
  application_factory app_factory;
  std::shared_ptr<upstream_port> http_client;
  std::shared_ptr<event_queue> events;
  // Cluster mode's way to Redis (CONTRACT 14); null when cluster.mode is "off".
  std::shared_ptr<redis_port> redis;
  // What /health says of the cluster (degraded: Redis unreachable), and the nodes with a
  // live lease at the last refresh. Written by the cluster service.
  enum class cluster_health { off, ok, degraded };
  std::atomic<cluster_health> cluster{cluster_health::off};
  std::atomic<uint64_t> cluster_nodes{0};
  // The first sync of this process with Redis is still to come: what Redis holds of this
  // node id then was left by an earlier process with the same id (its connections get
  // their node_lost disconnects). Later syncs find only what this process removed itself.
  std::atomic<bool> cluster_first_sync{true};
  // Cluster mode: the cluster service's first connection to Redis has come to something
  // (synced, or failed: then on_redis_down applies). Until then the node is not ready,
  // so that a balancer sends it nothing it would have to refuse or count wrongly.
  std::atomic<bool> cluster_settled{false};
  bool ready_now() const {
    return tree_up && listening && !draining && (!redis || cluster_settled);
  }
  // The application's own heartbeat message (hub mode: Centrifugo's "{}"), sent instead
  // of WebSocket pings; null: WebSocket pings.
  shared_payload heartbeat_message;
  std::atomic<uint64_t> next_event_id{1};

  // The one clock of every actor of the tree: CAF's, so that test_coordinator drives
  // them all with its virtual time. In production it is the steady clock the sessions
  // stamp their liveness times with.
  steady_time now() const { return system.clock().now(); }

  std::atomic<bool> tree_up{false};
  std::atomic<bool> listening{false};
  std::atomic<bool> draining{false};
  // When the drain began (on the clock above): it outlives a janitor restart, so that a
  // restarted janitor resumes the paced 1001 closes within what is left of drain_spread.
  std::atomic<steady_time::rep> drain_began{0};
  // Slots held: the sum of the shards' tables (each shard adds and removes its own).
  std::atomic<int64_t> connections{0};
  std::atomic<uint64_t> next_connection_id{1};

  // wsvisor_ready follows readiness: tree up, listener accepting, not draining.
  // Serialized: two threads computing it at once could otherwise write a stale value last.
  void refresh_ready() {
    std::lock_guard<std::mutex> lock(ready_mutex);
    stats.ready().Set(ready_now() ? 1 : 0);
  }
  std::mutex ready_mutex;

  // Handles change when a supervisor restarts an actor; read them through these.
  caf::actor guard() const {
    std::lock_guard<std::mutex> lock(handles_mutex);
    return guard_handle;
  }
  caf::actor shard(unsigned index) const {
    std::lock_guard<std::mutex> lock(handles_mutex);
    return index < shard_handles.size() ? shard_handles[index] : caf::actor{};
  }
  std::vector<caf::actor> shards() const {
    std::lock_guard<std::mutex> lock(handles_mutex);
    return shard_handles;
  }
  caf::actor janitor() const {
    std::lock_guard<std::mutex> lock(handles_mutex);
    return janitor_handle;
  }
  caf::actor upstream_service() const {
    std::lock_guard<std::mutex> lock(handles_mutex);
    return upstream_handle;
  }
  caf::actor hub_service() const {
    std::lock_guard<std::mutex> lock(handles_mutex);
    return hub_handle;
  }
  void set_hub_service(caf::actor a) {
    std::lock_guard<std::mutex> lock(handles_mutex);
    hub_handle = std::move(a);
  }
  caf::actor cluster_service() const {
    std::lock_guard<std::mutex> lock(handles_mutex);
    return cluster_handle;
  }
  void set_cluster_service(caf::actor a) {
    std::lock_guard<std::mutex> lock(handles_mutex);
    cluster_handle = std::move(a);
  }
  caf::actor events_service() const {
    std::lock_guard<std::mutex> lock(handles_mutex);
    return events_handle;
  }
  void set_upstream_service(caf::actor a) {
    std::lock_guard<std::mutex> lock(handles_mutex);
    upstream_handle = std::move(a);
  }
  // Forgets the upstream service's handle if it is still `dead` (a restart may have set
  // the next one already).
  void withdraw_upstream_service(const caf::actor_addr& dead) {
    std::lock_guard<std::mutex> lock(handles_mutex);
    if (upstream_handle && upstream_handle.address() == dead) upstream_handle = nullptr;
  }
  void set_events_service(caf::actor a) {
    std::lock_guard<std::mutex> lock(handles_mutex);
    events_handle = std::move(a);
  }
  caf::actor root() const {
    std::lock_guard<std::mutex> lock(handles_mutex);
    return root_handle;
  }

  // Supervisors call these when they (re)start a child.
  void set_guard(caf::actor a) {
    std::lock_guard<std::mutex> lock(handles_mutex);
    guard_handle = std::move(a);
  }
  void set_janitor(caf::actor a) {
    std::lock_guard<std::mutex> lock(handles_mutex);
    janitor_handle = std::move(a);
  }
  void set_shard(unsigned index, caf::actor a) {
    std::lock_guard<std::mutex> lock(handles_mutex);
    if (shard_handles.size() <= index) shard_handles.resize(index + 1);
    shard_handles[index] = std::move(a);
  }
  // A dying shard withdraws its handle, unless its successor has taken the place
  // already: until the supervisor restarts it (after a backoff), nobody sends it work.
  void withdraw_shard(unsigned index, const caf::actor_addr& dying) {
    std::lock_guard<std::mutex> lock(handles_mutex);
    if (index < shard_handles.size() && shard_handles[index].address() == dying)
      shard_handles[index] = nullptr;
  }

  // Standing faults by user (CONTRACT section 8): applied to future connections too.
  standing_fault fault_for(const std::string& user) const {
    std::lock_guard<std::mutex> lock(faults_mutex);
    auto it = user_faults.find(user);
    return it == user_faults.end() ? standing_fault{} : it->second;
  }
  void set_fault(const std::string& user, standing_fault fault) {
    std::lock_guard<std::mutex> lock(faults_mutex);
    user_faults[user] = fault;
  }
  void clear_faults() {
    std::lock_guard<std::mutex> lock(faults_mutex);
    user_faults.clear();
  }

  mutable std::mutex handles_mutex;
  caf::actor root_handle;
  caf::actor root_watcher;  // turns the root's escalation into exit 1
  caf::actor guard_handle;
  caf::actor janitor_handle;
  caf::actor upstream_handle;
  caf::actor events_handle;
  caf::actor hub_handle;
  caf::actor cluster_handle;
  std::vector<caf::actor> shard_handles;

  mutable std::mutex faults_mutex;
  std::unordered_map<std::string, standing_fault> user_faults;
};

}  // namespace wsvisor
