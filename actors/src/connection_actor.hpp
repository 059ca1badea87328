// One actor per WebSocket: the slot. It lives from admission (before the 101) to the
// end of the socket, and its death is what releases the slot (see shard.hpp).
//
// The connection's application (CONTRACT section 10) runs inside it. A handler that
// throws restarts the application in place, with a fresh instance: the actor (and so
// its mailbox, with the client's queued messages, and its upstream queue) survives,
// which a new CAF actor could not offer, since a dead actor's mailbox is dropped. The
// shard is told of every restart and enforces connection_restarts within
// connection_restart_period: past it, the connection closes with 1011.
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "messages.hpp"
#include "service_context.hpp"
#include "wsvisor/admin.hpp"
#include "wsvisor/application.hpp"
#include "wsvisor/session_port.hpp"

namespace wsvisor {

// Who the connection is, as admission decided it.
struct connection_identity {
  uint64_t id = 0;
  std::string user;
  std::string meta;          // the connect hook's, compact JSON ("" when none)
  unsigned shard_index = 0;  // which shard supervises it
};

// A connection's calls to the backend (CONTRACT 11.1): sequence numbers, the calls in
// flight (at most upstream.per_connection_inflight) and the ones waiting (at most
// upstream.queue). Made at the first call: an idle connection pays one pointer.
struct connection_upstream {
  uint64_t next_seq = 1;
  uint32_t inflight = 0;
  std::deque<upstream_request> waiting;
};

struct connection_state : connection_handle {
  std::shared_ptr<service_context> context;
  std::shared_ptr<session_port> port;
  caf::stateful_actor<connection_state>* self = nullptr;
  connection_identity identity;
  std::string connection_id;  // "<node_id>.<id>"
  caf::actor shard;           // told of every restart
  standing_fault fault;
  std::unique_ptr<application> app;
  std::unique_ptr<connection_upstream> upstream;
  std::shared_ptr<void> durable;  // the application's, across its restarts
  static inline const char* name = "connection";

  connection_state() = default;
  connection_state(const connection_state&) = delete;
  connection_state& operator=(const connection_state&) = delete;
  // CAF destroys the state when the actor terminates, whatever ended it (a quit, a
  // kill by its dying shard, the system's shutdown): the socket dies with the actor,
  // and so does the connection's upstream work.
  ~connection_state() override;

  // connection_handle
  void send(std::string payload, bool text) override;
  void close(uint16_t code, std::string reason) override;
  uint64_t id() const override { return identity.id; }
  const std::string& connection() const override { return connection_id; }
  const std::string& user() const override { return identity.user; }
  const std::string& meta() const override { return identity.meta; }
  const settings& config() const override { return context->config; }
  std::shared_ptr<void>& durable_state() override { return durable; }
  void run_later(std::chrono::milliseconds delay,
                 std::function<void(connection_handle&)> work) override;
  std::string call_upstream(upstream_call call) override;
};

// Runs `work` as a handler of the connection's application: an exception restarts the
// application (the socket kept), as for on_message. For continuations of requests an
// application makes to other actors (the hub's).
void run_supervised(caf::stateful_actor<connection_state>* self, const std::function<void()>& work);

// Has `work` run inside a connection actor, as a handler of its application (the hub's
// API reaching one connection: a server-side subscribe, a refresh, an unsubscribe).
void run_in_connection(const caf::actor& connection, std::function<void(connection_handle&)> work);

caf::behavior connection_actor(caf::stateful_actor<connection_state>* self,
                               std::shared_ptr<service_context> context,
                               std::shared_ptr<session_port> port, connection_identity identity,
                               caf::actor shard, standing_fault fault);

}  // namespace wsvisor
