// Label values of wsvisor_connections_closed_total{reason}: why a connection that held a
// slot ended (CONTRACT section 6).
#pragma once

namespace wsvisor {

enum class close_reason {
  client,
  zombie,
  idle,
  lifetime,
  slow_consumer,
  rate_limit,
  evicted,
  drain,
  admin,
  protocol_error,
  restart_budget,
  shard_down,
  handshake_failed,
  api,          // POST /api/disconnect (gateway)
  application,  // the connection's application closed it
  node_lost,    // cluster mode: its node died and another reaped it (events only, never here)
  count_        // number of values, not a value
};

// The label value: a static string, "unknown" for count_ or a value out of range.
const char* to_string(close_reason r);

}  // namespace wsvisor
