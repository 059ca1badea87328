// Lifecycle events (CONTRACT 11.3): a `connect` after the 101 and exactly one
// `disconnect` when the slot is released, POSTed to events.url at least once, in order
// per connection. The shard that owns a connection's slot emits both, so they leave in
// that order; the queue is the service's state, not the events actor's, so that a
// restart of that actor loses nothing (what was in flight is sent again: at least once).
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace wsvisor {

struct lifecycle_event {
  std::string id;          // X-Wsvisor-Event-Id
  std::string connection;  // ordering key
  std::string body;        // the JSON document
  unsigned attempts = 0;
};

// Thread-safe: shards push, the events actor takes and settles.
class event_queue {
 public:
  explicit event_queue(uint64_t capacity) : capacity_(capacity) {}

  // Queues an event; a full queue drops its oldest waiting event (returns true then).
  bool push(lifecycle_event event);
  // The oldest waiting event whose connection has no event in flight, now in flight.
  std::optional<lifecycle_event> take();
  // An event in flight is done (sent, or given up): its connection's next may go.
  void settle(const std::string& id);
  // An event still in flight (a retry after its backoff sends it again); counts its
  // attempt.
  std::optional<lifecycle_event> retry(const std::string& id);
  // After a restart of the events actor: what was in flight waits again, in front.
  void requeue_in_flight();
  // Waiting and in flight: a drain waits for this to reach 0.
  uint64_t pending() const;

 private:
  const uint64_t capacity_;
  mutable std::mutex mutex_;
  std::deque<lifecycle_event> waiting_;
  std::unordered_map<std::string, lifecycle_event> in_flight_;  // by event id
  std::unordered_multiset<std::string> busy_connections_;       // connections in flight
};

struct service_context;

struct events_service_state {
  std::shared_ptr<service_context> context;
  uint32_t running = 0;
  static inline const char* name = "events";
};

caf::behavior events_service_actor(caf::stateful_actor<events_service_state>* self,
                                   std::shared_ptr<service_context> context);

// Queues one event (nothing when events.url is "": off) and wakes the events service. The
// shard that owns a slot emits its connect and its disconnect, in that order; in cluster
// mode the node that reaps a dead node emits its connections' disconnects.
void queue_lifecycle_event(service_context& context, std::string id, std::string connection,
                           std::string body);
// "<node_id>.<8 hex digits of this process>.e<n>": never the same twice, also when the
// next process has the same node id.
std::string next_lifecycle_event_id(service_context& context);

// The JSON of a lifecycle event (CONTRACT 11.3).
struct connection_event_fields {
  std::string connection;
  std::string user;  // "" = null
  std::string ip;
  std::string meta;  // compact JSON, "" = null
};
std::string connect_event_json(const std::string& id, const std::string& node,
                               const connection_event_fields& fields,
                               std::chrono::system_clock::time_point at);
std::string disconnect_event_json(const std::string& id, const std::string& node,
                                  const connection_event_fields& fields,
                                  std::chrono::system_clock::time_point at, uint16_t code,
                                  const std::string& reason, const char* close_reason,
                                  int64_t duration_ms);

}  // namespace wsvisor
