// Faults toward clients (CONTRACT 8, target "client"): which connections a fault
// reaches (a user, an id, a random share, or every one for a restart) and what each
// connection actor is told. The sessions do the rest (session_port::apply_fault).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "service_context.hpp"
#include "wsvisor/admin.hpp"

namespace wsvisor {

// Applies `fault` (target client) and calls `done` with the connections it reached.
// Latency and drop given for a user stand for that user's future connections too.
void inject_client_fault(std::shared_ptr<service_context> context, fault_request fault,
                         std::function<void(uint64_t)> done);

}  // namespace wsvisor
