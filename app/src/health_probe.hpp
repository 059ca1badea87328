// wsvisor --health: the liveness probe a container HEALTHCHECK (or an exec probe) runs
// inside the server's own container.
#pragma once

#include "wsvisor/config.hpp"

namespace wsvisor {

// Sends GET /health/live to the address the server of `config` listens on (server.host,
// with an unspecified address such as 0.0.0.0 or :: probed on the loopback of its
// family; server.port) and prints one line: "alive" on stdout for a 200, else the status
// or the error with its cause on stderr. Returns the exit code: 0 on a 200, 1 otherwise,
// 2 when the configuration names no port the probe can reach (server.port = 0).
int run_health_probe(const settings& config);

}  // namespace wsvisor
