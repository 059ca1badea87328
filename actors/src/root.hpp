// The root of the service tree: it spawns the limit guard and the shards, and answers
// the liveness round trip of /health/live.
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <memory>

#include "service_context.hpp"

namespace wsvisor {

struct root_state {
  std::shared_ptr<service_context> context;
  static inline const char* name = "root";
};

caf::behavior root_actor(caf::stateful_actor<root_state>* self,
                         std::shared_ptr<service_context> context);

}  // namespace wsvisor
