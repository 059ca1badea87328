// Sweeps (CONTRACT section 4): levels, scopes, and what a sweep reports.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace wsvisor {

enum class sweep_level { conservative, moderate, aggressive, force };

const char* to_string(sweep_level level);
std::optional<sweep_level> parse_sweep_level(const std::string& text);

struct sweep_scope {
  enum class kind { all, user, ip } what = kind::all;
  std::string value;  // the user or the IP

  bool matches(const std::string& user, const std::string& ip) const {
    return what == kind::all || (what == kind::user && user == value) ||
           (what == kind::ip && ip == value);
  }
  // "all", "user:<u>", "ip:<a>"
  std::string describe() const;
};

struct sweep_result {
  sweep_level level = sweep_level::moderate;
  sweep_scope scope;
  uint64_t dead = 0;     // known dead or stuck in closing
  uint64_t zombie = 0;   // did not answer a ping within probe_timeout
  uint64_t idle = 0;     // longest idle (aggressive)
  uint64_t healthy = 0;  // oldest, healthy or not (force)
  double duration_ms = 0;
  uint64_t evicted() const { return dead + zombie + idle + healthy; }
};

}  // namespace wsvisor
