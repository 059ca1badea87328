// The limit guard decides every upgrade before it happens (CONTRACT section 4) and
// reserves the slot by asking a shard to spawn the connection actor. Its counts are
// derived state: the shards' tables are the truth, and a restarted guard rebuilds them
// before it decides anything.
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "service_context.hpp"
#include "wsvisor/admission_policy.hpp"

namespace wsvisor {

// An upgrade at a cap, waiting for a sweep of its scope to free a slot.
struct parked_upgrade {
  admission_ticket ticket;
  reject_reason reason;  // user_limit or server_full, if nothing frees a slot
  std::string scope_key;
};

struct limit_guard_state {
  std::shared_ptr<service_context> context;
  std::optional<admission_policy> policy;
  // Rebuild after a restart: shards whose table has not arrived yet; their releases are
  // already reflected in the table they will send.
  std::set<unsigned> awaiting_tables;
  std::deque<admission_ticket> held_during_rebuild;
  // Sweeps at a cap.
  uint64_t next_parked = 1;
  std::unordered_map<uint64_t, parked_upgrade> parked;  // by id, in arrival order below
  std::deque<uint64_t> parked_order;
  std::unordered_set<std::string> sweeps_in_flight;  // scope keys
  // When a sweep of a scope last freed nothing: for probe_timeout after it, an upgrade
  // at that cap is refused at once instead of waiting for the same answer again (a
  // spike at the cap would otherwise park thousands of upgrades).
  std::unordered_map<std::string, steady_time> fruitless_sweeps;
  static inline const char* name = "limit_guard";
};

caf::behavior limit_guard_actor(caf::stateful_actor<limit_guard_state>* self,
                                std::shared_ptr<service_context> context);

}  // namespace wsvisor
