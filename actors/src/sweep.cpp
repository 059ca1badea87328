#include "wsvisor/sweep.hpp"

namespace wsvisor {

const char* to_string(sweep_level level) {
  switch (level) {
    case sweep_level::conservative:
      return "conservative";
    case sweep_level::moderate:
      return "moderate";
    case sweep_level::aggressive:
      return "aggressive";
    case sweep_level::force:
      return "force";
  }
  return "moderate";
}

std::optional<sweep_level> parse_sweep_level(const std::string& text) {
  for (auto level : {sweep_level::conservative, sweep_level::moderate, sweep_level::aggressive,
                     sweep_level::force})
    if (text == to_string(level)) return level;
  return std::nullopt;
}

std::string sweep_scope::describe() const {
  switch (what) {
    case kind::all:
      return "all";
    case kind::user:
      return "user:" + value;
    case kind::ip:
      return "ip:" + value;
  }
  return "all";
}

}  // namespace wsvisor
