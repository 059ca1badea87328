// What a session sends its connection actor: the seam's half of the message vocabulary
// (the rest stays internal to actors/, in src/messages.hpp).
#pragma once

#include <caf/atom.hpp>

namespace wsvisor {

// session -> connection: one text or binary message from the client (payload, is_text).
using inbound_atom = caf::atom_constant<caf::atom("inbound")>;
// session -> connection: the socket is closed; the actor quits, releasing the slot.
using peer_gone_atom = caf::atom_constant<caf::atom("peergone")>;

}  // namespace wsvisor
