// libFuzzer target: the configuration loader (a TOML file, as an operator writes it).
// Anything it does not accept must be a config_error naming the problem, never another
// exception or a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "wsvisor/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto settings = wsvisor::load_settings(text, "fuzz.toml", {}, {});
    wsvisor::render_effective(settings);
  } catch (const wsvisor::config_error& error) {
    if (std::string(error.what()).empty()) __builtin_trap();
  }
  return 0;
}
