// The whole server as a library (CONTRACT section 10, "Embedding"): a C++ program
// registers its own applications and runs wsvisor with them, exactly as the wsvisor
// binary runs with echo and gateway. See examples/embedding.
#pragma once

#include "wsvisor/application.hpp"

namespace wsvisor {

// Parses the command line (--config, --set, ...; CONTRACT section 1), then runs the
// server with the application that app.mode names, until a signal drains it. Returns
// the process's exit code (0 after a drain, 1 when it cannot bind or the root
// supervisor gives up, 2 for a configuration error, an unknown app.mode included).
int run(int argc, char** argv, const application_registry& applications);

}  // namespace wsvisor
