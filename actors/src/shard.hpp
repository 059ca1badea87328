// A shard supervises the connection actors of one slice of the server (dynamic
// children). Its table is the truth about which slots are held: an entry is added when
// the limit guard's admission makes the shard spawn a connection actor, and removed by
// that actor's down message, exactly once, whatever killed it.
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <memory>
#include <string>
#include <unordered_map>

#include "service_context.hpp"
#include "wsvisor/session_port.hpp"

namespace wsvisor {

struct shard_entry {
  caf::actor actor;  // a strong handle: an actor nobody references dies as unreachable
  std::shared_ptr<session_port> port;
  uint64_t id = 0;
  std::string user;
  std::string ip;
  steady_time admitted_at;
};

struct shard_state {
  std::shared_ptr<service_context> context;
  unsigned index = 0;
  std::unordered_map<caf::actor_addr, shard_entry> table;
  static inline const char* name = "shard";
};

caf::behavior shard_actor(caf::stateful_actor<shard_state>* self,
                          std::shared_ptr<service_context> context, unsigned index);

}  // namespace wsvisor
