// The service tree (root over limit_guard, janitor and K shard supervisors, each shard
// over its connection actors) and the few calls net/ and main need to drive it.
#pragma once

#include <caf/actor_system.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "wsvisor/admission.hpp"
#include "wsvisor/config.hpp"
#include "wsvisor/metrics.hpp"

namespace wsvisor {

struct service_context;

class service {
 public:
  // `shard_count` is the number of threads that run actors (K).
  service(caf::actor_system& system, const settings& config, metrics& metrics,
          unsigned shard_count);
  ~service();
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  // Spawns the tree. Readiness also needs the listener (see set_listening).
  void start();

  // The listener accepts: with the tree up, the service is ready.
  void set_listening();

  // Asks the limit guard; `ticket->reply` is called exactly once.
  void admit(admission_ticket ticket);

  // Shutdown, first step: readiness 503, upgrades refused with "draining", every
  // connection closed with 1001. Idempotent.
  void begin_drain();

  // Second signal or drain deadline: every remaining connection is closed at once.
  void close_all_now();

  // Stops every actor of the tree (after the drain).
  void stop();

  bool ready() const;
  bool draining() const;
  // Slots held (handshakes in flight included), as the shards' tables count them.
  uint64_t connections() const;
  unsigned shard_count() const;

  // A round trip through the root supervisor (liveness): `done(true)` when it answered.
  void ping_root(std::function<void(bool)> done);

 private:
  std::shared_ptr<service_context> context_;
};

}  // namespace wsvisor
