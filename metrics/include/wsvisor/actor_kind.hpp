// Label values of wsvisor_actor_restarts_total{actor}: which kind of actor a supervisor
// restarted.
#pragma once

namespace wsvisor {

enum class actor_kind {
  connection,
  limit_guard,
  janitor,
  shard,
  upstream,  // the HTTP client service to the backend (CONTRACT 11.1)
  events,    // the lifecycle event queue (CONTRACT 11.3)
  hub,       // the channels of hub mode (CONTRACT 13)
  cluster,   // the Redis client of cluster mode (CONTRACT 14)
  count_     // number of values, not a value
};

// The label value: a static string, "unknown" for count_ or a value out of range.
const char* to_string(actor_kind k);

}  // namespace wsvisor
