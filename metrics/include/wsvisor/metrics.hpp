// Every series of CONTRACT section 6, registered at start-up at 0, and the text
// exposition served on /metrics. Counters and gauges are prometheus-cpp's, safe to
// touch from any thread.
#pragma once

#include <memory>
#include <string>

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
}  // namespace prometheus

namespace wsvisor {

// Label values of wsvisor_connections_closed_total{reason}.
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
  count_  // number of reasons, not a reason
};

// Label values of wsvisor_admissions_rejected_total{reason} (CONTRACT section 4).
enum class reject_reason {
  starting,
  draining,
  rate_limited,
  forbidden_origin,
  unauthorized,
  ip_limit,
  user_limit,
  server_full,
  guard_unavailable,
  handshake_limit,
  count_
};

// Label values of wsvisor_evictions_total{reason}.
enum class eviction_reason {
  zombie,
  idle,
  lifetime,
  slow_consumer,
  emergency,
  drain,
  admin,
  count_
};

// Label values of wsvisor_sweeps_total{kind}.
enum class sweep_kind { periodic, emergency, admin, count_ };

// Label values of wsvisor_actor_restarts_total{actor}.
enum class actor_kind { connection, limit_guard, janitor, shard, count_ };

const char* to_string(close_reason r);
const char* to_string(reject_reason r);
const char* to_string(eviction_reason r);
const char* to_string(sweep_kind k);
const char* to_string(actor_kind k);

class metrics {
 public:
  metrics();
  ~metrics();
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  prometheus::Gauge& ready();
  prometheus::Gauge& draining();
  prometheus::Gauge& connections();
  prometheus::Gauge& send_queue_bytes();
  prometheus::Counter& connections_opened();
  prometheus::Counter& connections_closed(close_reason r);
  prometheus::Counter& admissions_rejected(reject_reason r);
  prometheus::Counter& evictions(eviction_reason r);
  prometheus::Counter& sweeps(sweep_kind k);
  prometheus::Histogram& sweep_duration_seconds();
  prometheus::Counter& actor_restarts(actor_kind k);
  prometheus::Counter& messages_received();
  prometheus::Counter& messages_sent();

  // Prometheus text exposition format 0.0.4, process_resident_memory_bytes and
  // process_open_fds read from /proc/self at the time of the call.
  std::string render() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// Reads /proc/self: resident set size in bytes and the number of open descriptors.
double process_resident_memory_bytes();
double process_open_fds();

}  // namespace wsvisor
