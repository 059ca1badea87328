// The limit guard decides every upgrade before it happens (CONTRACT section 4) and
// reserves the slot by asking a shard to spawn the connection actor. Its counts are
// derived state: the shards' tables are the truth, and a restarted guard rebuilds them
// before it decides anything.
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "messages.hpp"
#include "service_context.hpp"
#include "wsvisor/admission_policy.hpp"

namespace wsvisor {

// A connection whose user arrived after the upgrade (hub mode), waiting at that user's
// cap for a sweep of the user to free a slot.
struct parked_claim {
  uint64_t id = 0;
  std::string user;
  caf::response_promise answer;  // true: counted for `user`; false: refused
};

// An upgrade at a cap, waiting for a sweep of its scope to free a slot.
struct parked_upgrade {
  admission_ticket ticket;
  reject_reason reason;  // user_limit or server_full, if nothing frees a slot
  std::string scope_key;
};

struct limit_guard_state {
  std::shared_ptr<service_context> context;
  std::optional<admission_policy> policy;
  // Every connection id the counts include, with what it was counted as, so that each
  // slot is counted once and released once, whichever message (a release, a shard's
  // death, a bounced spawn) arrives first or twice, and released as the user it was
  // counted for (a claim may have changed it since the shard last said).
  std::unordered_map<uint64_t, slot_key> counted;
  // Slots reserved whose spawn the shard has not confirmed yet, by connection id. A
  // spawn that bounces (its shard is dead, or died before reading it) never became an
  // actor: its slot is released here, since no down message will ever come for it.
  std::unordered_map<uint64_t, slot_key> reservations;
  // Rebuild after a restart: shards whose table has not arrived yet. Upgrades wait
  // until every table is in.
  std::set<unsigned> awaiting_tables;
  std::deque<admission_ticket> held_during_rebuild;
  // Sweeps at a cap.
  uint64_t next_parked = 1;
  std::unordered_map<uint64_t, parked_upgrade> parked;  // by id, in arrival order below
  std::deque<uint64_t> parked_order;
  std::map<uint64_t, parked_claim> parked_claims;    // by arrival
  std::unordered_set<std::string> sweeps_in_flight;  // scope keys
  // When a sweep of a scope last freed nothing: for probe_timeout after it, an upgrade
  // at that cap is refused at once instead of waiting for the same answer again (a
  // spike at the cap would otherwise park thousands of upgrades).
  std::unordered_map<std::string, steady_time> fruitless_sweeps;
  // The gateway's connect hook (CONTRACT 12.1): calls at the backend now (at most
  // gateway.connect_concurrency), and upgrades waiting for one to become free, by id.
  uint32_t connect_calls = 0;
  uint64_t next_connect_wait = 1;
  std::map<uint64_t, admission_ticket> connect_waiting;
  static inline const char* name = "limit_guard";
};

caf::behavior limit_guard_actor(caf::stateful_actor<limit_guard_state>* self,
                                std::shared_ptr<service_context> context);

}  // namespace wsvisor
