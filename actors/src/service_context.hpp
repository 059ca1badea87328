// State shared by the actors of one service and the service facade: the settings,
// the metrics, the flags readiness is made of, and the current handles of the tree.
#pragma once

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <atomic>
#include <mutex>
#include <vector>

#include "wsvisor/config.hpp"
#include "wsvisor/metrics.hpp"

namespace wsvisor {

struct service_context {
  service_context(caf::actor_system& sys, const settings& cfg, metrics& m, unsigned shards)
      : system(sys), config(cfg), stats(m), shard_count(shards) {}

  caf::actor_system& system;
  const settings config;
  metrics& stats;
  const unsigned shard_count;

  std::atomic<bool> tree_up{false};
  std::atomic<bool> listening{false};
  std::atomic<bool> draining{false};
  // Slots held: the sum of the shards' tables (each shard adds and removes its own).
  std::atomic<int64_t> connections{0};
  std::atomic<uint64_t> next_connection_id{1};

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
  caf::actor root() const {
    std::lock_guard<std::mutex> lock(handles_mutex);
    return root_handle;
  }

  mutable std::mutex handles_mutex;
  caf::actor root_handle;
  caf::actor guard_handle;
  std::vector<caf::actor> shard_handles;
};

}  // namespace wsvisor
