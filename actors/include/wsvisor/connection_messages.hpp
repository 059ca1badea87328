// What a session sends its connection actor: the seam's half of the message vocabulary
// (the rest stays internal to actors/, in src/messages.hpp).
#pragma once

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

#include "wsvisor/metrics.hpp"

namespace wsvisor {

// session -> connection: one text or binary message from the client (payload, is_text).
using inbound_atom = caf::atom_constant<caf::atom("inbound")>;
// session -> connection: the socket is closed (close_reason, close code sent or received,
// 1006 when it just went away); the actor quits, releasing the slot. The reason travels
// with the actor's exit, so that nobody asks the session after the actor's death.
using peer_gone_atom = caf::atom_constant<caf::atom("peergone")>;
// session -> connection: the 101 went out; the application is told (on_open).
using opened_atom = caf::atom_constant<caf::atom("opened")>;
// session -> connection: the peer's input has ended (its close frame, or a protocol
// error); the actor answers with session_port::input_handled() once every message
// received before this one is handled, so that their replies leave before the close.
using input_end_atom = caf::atom_constant<caf::atom("inputend")>;

}  // namespace wsvisor

// Local-only message type (wsvisor never sends messages across a network).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::close_reason)
