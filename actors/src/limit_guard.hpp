// The limit guard decides every upgrade before it happens (CONTRACT section 4) and
// reserves the slot by asking a shard to spawn the connection actor. Its counts are
// derived state: the shards' tables are the truth.
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <memory>
#include <optional>
#include <random>

#include "service_context.hpp"
#include "wsvisor/admission_policy.hpp"

namespace wsvisor {

struct limit_guard_state {
  std::shared_ptr<service_context> context;
  std::optional<admission_policy> policy;
  std::minstd_rand jitter{std::random_device{}()};
  static inline const char* name = "limit_guard";
};

caf::behavior limit_guard_actor(caf::stateful_actor<limit_guard_state>* self,
                                std::shared_ptr<service_context> context);

}  // namespace wsvisor
