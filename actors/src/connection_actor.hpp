// One actor per WebSocket: the slot. It lives from admission (before the 101) to the
// end of the socket, and its death is what releases the slot (see shard.hpp).
//
// A handler that throws restarts the connection's application state in place: the
// actor (and so its mailbox, with the client's queued messages) survives, which a new
// CAF actor could not offer, since a dead actor's mailbox is dropped. The shard is told
// of every restart and enforces connection_restarts within connection_restart_period:
// past it, the connection closes with 1011.
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <cstdint>
#include <memory>

#include "wsvisor/admin.hpp"
#include "wsvisor/session_port.hpp"

namespace wsvisor {

// The application behind the socket (app.mode = "echo"): rebuilt on every restart.
struct echo_app {
  void on_message(session_port& port, std::string& payload, bool text) {
    port.send(std::move(payload), text);
  }
};

struct connection_state {
  std::shared_ptr<session_port> port;
  uint64_t id = 0;
  caf::actor shard;  // told of every restart
  standing_fault fault;
  echo_app app;
  static inline const char* name = "connection";

  connection_state() = default;
  connection_state(const connection_state&) = delete;
  connection_state& operator=(const connection_state&) = delete;
  // CAF destroys the state when the actor terminates, whatever ended it (a quit, a
  // kill by its dying shard, the system's shutdown): the socket dies with the actor.
  ~connection_state() {
    if (port) port->actor_gone();
  }
};

caf::behavior connection_actor(caf::stateful_actor<connection_state>* self,
                               std::shared_ptr<session_port> port, uint64_t id, caf::actor shard,
                               standing_fault fault);

}  // namespace wsvisor
