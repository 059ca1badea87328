// A shard supervises the connection actors of one slice of the server (dynamic
// children, like OTP's simple_one_for_one). Its table is the truth about which slots
// are held: an entry is added when the limit guard's admission makes the shard spawn a
// connection actor, and removed by that actor's down message, exactly once, whatever
// killed it. A shard that dies takes its connections with it (OTP semantics): each
// closes with 1011 and the limit guard forgets their slots at once.
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <wsvisor/supervisor.hpp>

#include "service_context.hpp"
#include "wsvisor/session_port.hpp"

namespace wsvisor {

struct shard_entry {
  caf::actor actor;  // a strong handle: an actor nobody references dies as unreachable
  std::shared_ptr<session_port> port;
  uint64_t id = 0;
  std::string user;
  std::string ip;
  std::string meta;     // the connect hook's (gateway), for the lifecycle events
  bool opened = false;  // the 101 went out: a connect event was emitted, a disconnect is due
  steady_time admitted_at;
  std::chrono::system_clock::time_point admitted_wall;
  uint64_t restarts = 0;
  // connection_restarts within connection_restart_period; made at the first crash, so
  // that a connection that never crashed pays one pointer for it.
  std::unique_ptr<restart_window> recent_restarts;
  bool over_budget = false;
};

// Shared with the functor that runs when the shard dies (its state is gone by then).
using shard_table = std::unordered_map<caf::actor_addr, shard_entry>;

struct shard_state {
  std::shared_ptr<service_context> context;
  unsigned index = 0;
  std::shared_ptr<shard_table> table = std::make_shared<shard_table>();
  // Connection id -> table key: admin closes and faults by id.
  std::unordered_map<uint64_t, caf::actor_addr> by_id;
  static inline const char* name = "shard";
};

caf::behavior shard_actor(caf::stateful_actor<shard_state>* self,
                          std::shared_ptr<service_context> context, unsigned index);

}  // namespace wsvisor
