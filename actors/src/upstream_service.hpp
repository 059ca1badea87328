// The root service `upstream` (CONTRACT 11.1): every call to the backend goes through it.
// It holds the breaker and the process-wide bound (upstream.max_inflight), retries with
// the same X-Wsvisor-Delivery on connect errors, timeouts, 502, 503, 504 and 429 (a 429
// waits its Retry-After), and drops a connection's calls when that connection ends. One
// attempt at a time goes through the upstream_port (net/). Ordering and the
// per-connection bounds are the connection's (connection_actor.cpp).
//
// Its calls outlive it: when it dies (a crash), a functor answers every call it held
// upstream_unavailable and cancels their attempts, so that no connection waits for an
// answer that will never come; its supervisor starts a new one.
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>

#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <unordered_map>

#include "messages.hpp"
#include "service_context.hpp"
#include "upstream_policy.hpp"

namespace wsvisor {

struct upstream_call_state {
  caf::response_promise promise;
  caf::actor_addr owner;  // the connection (or the guard) that asked
  upstream_request request;
  unsigned attempts = 0;         // made so far
  uint64_t running_attempt = 0;  // the port's id while one runs, else 0
  bool probe = false;            // this call carries the breaker's half-open probe
  upstream_clock::time_point started{};
  upstream_reply last_reply;
};

// Shared with the functor that runs when the service dies (its state is gone by then).
struct upstream_calls {
  std::unordered_map<uint64_t, upstream_call_state> by_id;
};

struct upstream_service_state {
  std::shared_ptr<service_context> context;
  std::shared_ptr<upstream_calls> calls = std::make_shared<upstream_calls>();
  std::deque<uint64_t> waiting;  // calls waiting for room under upstream.max_inflight
  uint32_t running = 0;          // attempts on the wire
  std::optional<circuit_breaker> breaker;
  std::minstd_rand random{std::random_device{}()};
  uint64_t next_call = 1;
  uint32_t response_delay_ms = 0;  // fault injection: hold every response this long
  static inline const char* name = "upstream";
};

caf::behavior upstream_service_actor(caf::stateful_actor<upstream_service_state>* self,
                                     std::shared_ptr<service_context> context);

}  // namespace wsvisor
