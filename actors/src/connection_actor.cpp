#include "connection_actor.hpp"

#include <string>

#include "messages.hpp"

namespace wsvisor {

caf::behavior connection_actor(caf::stateful_actor<connection_state>* self,
                               std::shared_ptr<session_port> port, uint64_t id) {
  self->state.port = std::move(port);
  self->state.id = id;
  return {
      [self](inbound_atom, std::string& payload, bool text) {
        self->state.port->send(std::move(payload), text);
      },
      [self](peer_gone_atom) { self->quit(); },
      [self](close_atom, uint16_t code, std::string& reason, close_reason why) {
        self->state.port->close(code, std::move(reason), why);
      },
      [self](abort_atom, close_reason why) {
        self->state.port->abort(why);
        self->quit();
      },
  };
}

}  // namespace wsvisor
