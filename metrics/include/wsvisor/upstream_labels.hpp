// Label values of wsvisor_upstream_requests_total{hook,outcome} (CONTRACT 11.1): which
// hook made a request to the backend, and how it ended.
#pragma once

namespace wsvisor {

enum class upstream_hook {
  connect,
  message,
  rpc,
  publish,
  subscribe,
  refresh,
  event,
  count_  // number of values, not a value
};

enum class upstream_outcome {
  ok,         // a 2xx
  rejected,   // a final 4xx (not retried)
  error,      // 5xx, connect errors, bad answers, after the retries
  timeout,    // the last attempt timed out
  busy,       // the connection's queue was full
  breaker,    // the breaker was open
  cancelled,  // the connection closed first
  count_      // number of values, not a value
};

// The label values: static strings, "unknown" for count_ or a value out of range.
const char* to_string(upstream_hook hook);
const char* to_string(upstream_outcome outcome);

}  // namespace wsvisor
