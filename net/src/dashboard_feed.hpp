// What the dashboard's event stream carries (CONTRACT 15): the `hello` that opens it and
// the `snapshot` it sends every interval, as JSON text. The formats are in the README
// (Dashboard) and docs/ARCHITECTURE.md.
#pragma once

#include <functional>
#include <string>

#include "server_state.hpp"

namespace wsvisor {

// {"node","mode","version","faults_enabled","cluster","interval_ms","events_kept"}.
std::string dashboard_hello(const server_state& state, unsigned interval_ms);

// Asks the tree, the limit guard and (cluster mode) the cluster service at once, reads
// the counters, and calls `done` once with the snapshot, from whichever thread answered
// last. A part that did not answer in time is null.
void collect_dashboard_snapshot(std::shared_ptr<server_state> state,
                                std::function<void(std::string)> done);

}  // namespace wsvisor
