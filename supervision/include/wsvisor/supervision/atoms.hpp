#pragma once

#include <caf/atom.hpp>

namespace wsvisor {

// The messages a supervisor understands (besides exit messages, which make it
// stop its children in order and then exit with the same reason).

/// (add, child_spec) -> caf::actor: starts and supervises a new child.
using supervisor_add_atom = caf::atom_constant<caf::atom("sup_add")>;

/// (remove, std::string id) or (remove, caf::actor_addr) -> caf::unit: stops
/// the child with its shutdown policy and forgets it; the reply comes once
/// the child is down.
using supervisor_remove_atom = caf::atom_constant<caf::atom("sup_remove")>;

/// (get, std::string id) -> caf::actor: the child's current handle, which
/// changes with every restart.
using supervisor_get_atom = caf::atom_constant<caf::atom("sup_get")>;

/// (tree) -> supervisor_tree.
using supervisor_tree_atom = caf::atom_constant<caf::atom("sup_tree")>;

}  // namespace wsvisor
