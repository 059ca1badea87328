// The message vocabulary of the service tree (CAF 0.17 atoms, at most 10 characters).
#pragma once

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

#include <memory>

#include "wsvisor/admission.hpp"
#include "wsvisor/metrics.hpp"
#include "wsvisor/session_port.hpp"

namespace wsvisor {

// session -> connection: one text or binary message from the client.
using inbound_atom = caf::atom_constant<caf::atom("inbound")>;
// session -> connection: the socket is closed; the actor quits, releasing the slot.
using peer_gone_atom = caf::atom_constant<caf::atom("peergone")>;
// anyone -> connection: close gracefully with (code, reason text, close_reason).
using close_atom = caf::atom_constant<caf::atom("close")>;
// anyone -> connection: close TCP at once (close_reason).
using abort_atom = caf::atom_constant<caf::atom("abort")>;
// service -> limit_guard: decide this admission_ticket.
using admit_atom = caf::atom_constant<caf::atom("admit")>;
// limit_guard -> shard: spawn the connection actor for this admitted ticket.
using spawn_atom = caf::atom_constant<caf::atom("spawn")>;
// shard -> limit_guard: a slot is free again (shard index, user, ip).
using release_atom = caf::atom_constant<caf::atom("release")>;
// -> shard: close every connection with 1001 (drain).
using drain_atom = caf::atom_constant<caf::atom("drain")>;
// -> shard: close every connection at once (second signal, drain deadline).
using abort_all_atom = caf::atom_constant<caf::atom("abortall")>;
// -> root: liveness round trip.
using ping_atom = caf::atom_constant<caf::atom("ping")>;
using pong_atom = caf::atom_constant<caf::atom("pong")>;

}  // namespace wsvisor

// Local-only message types (wsvisor never sends messages across a network).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::admission_ticket)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::close_reason)
