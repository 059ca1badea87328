// Label values of wsvisor_faults_total{action}: the faults toward clients of CONTRACT 8,
// each counted once per connection it reached.
#pragma once

namespace wsvisor {

enum class client_fault_action {
  stall,    // nothing written for a while, then writing resumes
  latency,  // every outbound message held (standing)
  drop,     // a share of outbound data messages discarded (standing)
  close,    // a close frame with the code asked for
  reset,    // TCP RST, no close frame
  zombie,   // neither read nor written again: the heartbeat frees it
  restart,  // 1012, paced over a spread
  count_    // number of values, not a value
};

// The label value: a static string, "unknown" for count_ or a value out of range.
const char* to_string(client_fault_action a);

}  // namespace wsvisor
