// spdlog set-up: text or JSON lines (log.format), one line per lifecycle event.
#pragma once

#include "wsvisor/config.hpp"

namespace wsvisor {

// Configures the default logger on stderr. Level and format were validated by the
// config loader.
void setup_logging(const log_settings& log);

}  // namespace wsvisor
