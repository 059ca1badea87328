// Label values of wsvisor_evictions_total{reason}: why the server closed a connection.
#pragma once

namespace wsvisor {

enum class eviction_reason {
  zombie,
  idle,
  lifetime,
  slow_consumer,
  emergency,
  drain,
  admin,
  count_  // number of values, not a value
};

// The label value: a static string, "unknown" for count_ or a value out of range.
const char* to_string(eviction_reason r);

}  // namespace wsvisor
