// The janitor keeps the server clean by sending messages (CONTRACT sections 4, 5, 9):
// the periodic sweep (each shard checks heartbeat, zombies, idle and lifetime over its
// own table), emergency and admin sweeps by level and scope, and the paced drain.
// No per-connection timers: one tick walks the shards.
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>

#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "messages.hpp"
#include "service_context.hpp"

namespace wsvisor {

struct sweep_job {
  sweep_level level = sweep_level::moderate;
  sweep_scope scope;
  uint64_t needed = 0;  // slots to free before stopping (0: dead and zombies only)
  sweep_kind kind = sweep_kind::emergency;
  steady_time deadline = steady_time::max();  // decide by then (see sweep_order)
  caf::response_promise promise;
  steady_time started;
  steady_time probe_sent;
  int probe_looks = 1;        // probe_timeouts waited so far (see after_probe)
  size_t last_undecided = 0;  // how many were undecided at the last look
  sweep_result result;
  std::vector<connection_snapshot> candidates;
};

struct janitor_state {
  std::shared_ptr<service_context> context;
  uint64_t next_job = 1;
  std::unordered_map<uint64_t, sweep_job> jobs;
  bool periodic_running = false;
  // The paced drain: who is left to close, and how many per tick.
  std::vector<caf::actor> drain_queue;
  size_t drain_next = 0;
  size_t drain_batch = 1;
  std::chrono::milliseconds drain_tick{1};
  bool draining = false;
  static inline const char* name = "janitor";
};

caf::behavior janitor_actor(caf::stateful_actor<janitor_state>* self,
                            std::shared_ptr<service_context> context);

// The slots an admin sweep frees at the aggressive and force levels: back under the
// scope's watermark (soft_connections for the server, 70 % of the cap for a user or
// an IP). Dead and unresponsive connections are always evicted.
uint64_t admin_sweep_target(const settings& config, const sweep_scope& scope, uint64_t in_scope);

}  // namespace wsvisor
