// The service tree (CONTRACT section 7): a one_for_one root supervisor over the limit
// guard, the janitor and the K shards, with service_restarts within
// service_restart_period. Each child, when (re)started, publishes its handle in the
// service context; a restarted limit guard rebuilds its counts from the shards.
#pragma once

#include <caf/actor.hpp>

#include <memory>

#include "service_context.hpp"

namespace wsvisor {

caf::actor spawn_service_tree(std::shared_ptr<service_context> context);

}  // namespace wsvisor
