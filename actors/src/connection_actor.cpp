#include "connection_actor.hpp"

#include <wsvisor/log.hpp>

#include <stdexcept>
#include <string>
#include <thread>

#include "connection_end.hpp"
#include "messages.hpp"

namespace wsvisor {
namespace {

using self_ptr = caf::stateful_actor<connection_state>*;

// Runs one handler; an exception restarts the application state (see the header).
template <class Handler>
void supervised(self_ptr self, Handler&& handler) {
  try {
    handler();
  } catch (const std::exception& error) {
    log_event(spdlog::level::warn, "connection_crashed",
              "connection handler threw: restarting it, socket kept",
              {{"id", self->state.id}, {"error", error.what()}});
    self->state.app = echo_app{};
    self->send(self->state.shard, crashed_atom::value, self->address());
  }
}

}  // namespace

caf::behavior connection_actor(self_ptr self, std::shared_ptr<session_port> port, uint64_t id,
                               caf::actor shard, standing_fault fault) {
  self->state.port = std::move(port);
  self->state.id = id;
  self->state.shard = std::move(shard);
  self->state.fault = fault;
  return {
      [self](inbound_atom, std::string& payload, bool text) {
        supervised(self, [&] {
          auto& state = self->state;
          if (state.fault.poison) throw std::runtime_error("poisoned message (fault injection)");
          if (state.fault.delay_ms > 0)  // a slow handler, on purpose (fault injection)
            std::this_thread::sleep_for(std::chrono::milliseconds(state.fault.delay_ms));
          state.app.on_message(*state.port, payload, text);
        });
      },
      [self](fault_atom, crash_atom) {
        supervised(self, [] { throw std::runtime_error("crash (fault injection)"); });
      },
      [self](fault_atom, standing_fault fault) { self->state.fault = fault; },
      [self](fault_atom, clear_atom) { self->state.fault = standing_fault{}; },
      [self](peer_gone_atom, close_reason why, uint16_t code) {
        self->quit(to_exit_reason({why, code}));
      },
      [self](input_end_atom) { self->state.port->input_handled(); },
      [self](close_atom, uint16_t code, std::string& reason, close_reason why) {
        self->state.port->close(code, std::move(reason), why);
      },
      [self](evict_atom, uint16_t code, std::string& reason, close_reason why) {
        self->state.port->close(code, std::move(reason), why);
        self->quit(to_exit_reason({why, code}));
      },
      [self](abort_atom, close_reason why) {
        self->state.port->abort(why);
        self->quit(to_exit_reason({why, 1006}));
      },
      [self](probe_atom) { self->state.port->ping(); },
  };
}

}  // namespace wsvisor
