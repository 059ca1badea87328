// One actor per WebSocket: the slot. It lives from admission (before the 101) to the
// end of the socket, and its death is what releases the slot (see shard.hpp).
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <cstdint>
#include <memory>

#include "wsvisor/session_port.hpp"

namespace wsvisor {

struct connection_state {
  std::shared_ptr<session_port> port;
  uint64_t id = 0;
  static inline const char* name = "connection";
};

// `app.mode = "echo"`: every message goes back unchanged, same opcode.
caf::behavior connection_actor(caf::stateful_actor<connection_state>* self,
                               std::shared_ptr<session_port> port, uint64_t id);

}  // namespace wsvisor
