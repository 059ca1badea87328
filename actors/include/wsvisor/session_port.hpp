// The narrow seam through which a connection actor reaches its socket. net/ implements
// it (one per WebSocket session); actors never touch a socket themselves. Every member
// is thread-safe: implementations run the work on the session's own executor (inline
// when the caller already runs there, else posted).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "wsvisor/client_fault_action.hpp"
#include "wsvisor/metrics.hpp"

namespace wsvisor {

// Time as the actors and the sessions both read it: CAF's actor clock is this steady
// clock in production (and a virtual one under test_coordinator, where fake ports use it).
using steady_time = std::chrono::steady_clock::time_point;

// Timestamps the session keeps in atomics, read by sweeps without asking the session.
struct liveness_times {
  steady_time opened_at;       // when the slot was taken (admission)
  steady_time last_frame_in;   // any frame, data or control (heartbeat)
  steady_time last_message;    // last text/binary message in either direction (idle)
  steady_time last_frame_out;  // last message queued for the peer (the hub's heartbeat)
  steady_time ping_sent_at;    // last ping the janitor asked for (epoch = none pending)
  uint64_t queued_bytes = 0;   // unsent outbound bytes
  bool open = false;           // the 101 was sent and no close has begun
  bool closing = false;        // a close has begun (ours or the peer's)
};

// The bytes of one message that many connections receive (a hub publication): framed
// once, shared by every recipient's queue, freed when the last one has written it.
using shared_payload = std::shared_ptr<const std::string>;

// A fault toward the client (CONTRACT 8) for its session to apply: what the client sees
// of a server that stalls, lags, loses messages, resets or goes silent. close and restart
// are plain close() calls; these are the rest.
struct client_fault {
  client_fault_action action = client_fault_action::stall;
  bool clear = false;        // removes the standing ones (latency, drop); `action` unused
  uint32_t ms = 0;           // stall: for how long; latency: the mean hold per message
  uint32_t jitter_ms = 0;    // latency: +- this much, uniformly, order kept
  double ratio = 0;          // drop: the share of outbound data messages discarded
  bool pushes_only = false;  // drop: only shared frames (hub mode: publications, not replies)
};

class session_port {
 public:
  virtual ~session_port() = default;

  // Queues one message for the client (same opcode as `text` says).
  virtual void send(std::string payload, bool text) = 0;
  // The same for bytes shared with other recipients: no copy per recipient.
  virtual void send_shared(shared_payload payload, bool text) = 0;

  // Graceful close: the close frame goes after everything queued; TCP is closed once
  // the peer answers or after close_timeout. `why` is recorded for the metrics.
  virtual void close(uint16_t code, std::string reason, close_reason why) = 0;

  // Closes TCP at once, without a close frame (zombies, hard drain).
  virtual void abort(close_reason why) = 0;

  // Sends a ping (the janitor's heartbeat and probes).
  virtual void ping() = 0;
  // The application's own heartbeat instead of a WebSocket ping (hub mode: Centrifugo's
  // "{}"): a text message, which starts the pong_timeout as ping() does; any frame from
  // the peer ends it.
  virtual void ping_message(shared_payload payload) = 0;

  // Answers input_end_atom: every message received before it has been handled, so
  // whatever the application sent for them is queued and the close may follow.
  virtual void input_handled() = 0;

  // The connection actor is gone for good (called once, as it terminates): the socket
  // must not outlive it.
  virtual void actor_gone() = 0;

  virtual liveness_times liveness() const = 0;

  // Bytes that arrived on the socket and that the server has not read yet. A sweep's
  // evidence: a connection whose answer waits unread is backlogged, not silent.
  virtual uint64_t unread_bytes() const = 0;

  // Applies a fault toward the client: stall, latency, drop, zombie or reset (see
  // client_fault). Latency and drop stay until a client_fault with `clear`.
  virtual void apply_fault(const client_fault& fault) = 0;
};

}  // namespace wsvisor
