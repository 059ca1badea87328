#pragma once

#include <caf/atom.hpp>

namespace wsvisor::detail {

// Messages a supervisor sends to itself.

/// (restart_timer, key, generation): a child's backoff delay has passed.
using restart_timer_atom = caf::atom_constant<caf::atom("sup_rtimer")>;

/// (group_timer, epoch): the backoff delay of a group restart has passed.
using group_timer_atom = caf::atom_constant<caf::atom("sup_gtimer")>;

/// (stop_timer, key, generation): a child's shutdown timeout has passed.
using stop_timer_atom = caf::atom_constant<caf::atom("sup_stimer")>;

/// (start_failed, key, generation): a restart failed; handled as a new
/// failure in a message of its own so that repeated failures do not recurse.
using start_failed_atom = caf::atom_constant<caf::atom("sup_sfail")>;

}  // namespace wsvisor::detail
