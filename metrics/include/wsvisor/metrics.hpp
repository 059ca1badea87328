// Every series of CONTRACT section 6 and the few beyond it (README, Metrics), registered
// at start-up at 0, and the text exposition served on /metrics. Counters, gauges and
// histograms are prometheus-cpp's, safe to touch from any thread.
#pragma once

#include <memory>
#include <string>

// The accessors below take these. Code that only names a reason (a session's close
// reason, say) can include that one header instead of this one.
#include "wsvisor/actor_kind.hpp"
#include "wsvisor/client_fault_action.hpp"
#include "wsvisor/close_reason.hpp"
#include "wsvisor/eviction_reason.hpp"
#include "wsvisor/process_metrics.hpp"
#include "wsvisor/reject_reason.hpp"
#include "wsvisor/sweep_kind.hpp"
#include "wsvisor/upstream_labels.hpp"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
}  // namespace prometheus

namespace wsvisor {

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

  // wsvisor_bytes_received_total / wsvisor_bytes_sent_total, in bytes: the payload of
  // text and binary messages (unmasked; no frame headers, no control frames), counted
  // beside messages_received() and messages_sent(): Increment(payload size) where
  // those count the message, so bytes / messages is the mean message size. With
  // permessage-deflate, received counts the inflated payload (what the application got)
  // and sent the compressed one (what was written).
  prometheus::Counter& bytes_received();
  prometheus::Counter& bytes_sent();

  // Durations are observed in seconds, as a double:
  //   histogram.Observe(std::chrono::duration<double>(steady_clock::now() - start).count());

  // wsvisor_handshake_duration_seconds: from accepting the TCP connection to writing the
  // 101 response, observed once per upgrade that succeeds. Refused and failed handshakes
  // are not observed (admissions_rejected and connections_closed{handshake_failed} count
  // them), so slow refusals do not pass for slow upgrades. Buckets 0.5 ms .. 10 s
  // (handshake_timeout's default).
  prometheus::Histogram& handshake_duration_seconds();

  // wsvisor_connection_duration_seconds: from admission (the slot taken) to the slot's
  // release, observed once per slot wherever connections_closed(reason) is counted, so
  // its _count equals the sum of wsvisor_connections_closed_total. Buckets 0.1 s .. 24 h.
  prometheus::Histogram& connection_duration_seconds();

  // The backend behind gateway and hub (CONTRACT 11.1): requests by hook and outcome,
  // retries, in flight now, first attempt to final outcome (seconds), the breaker.
  prometheus::Counter& upstream_requests(upstream_hook hook, upstream_outcome outcome);
  prometheus::Counter& upstream_retries();
  prometheus::Gauge& upstream_inflight();
  prometheus::Histogram& upstream_duration_seconds();
  prometheus::Gauge& upstream_breaker_open();
  // Server API requests (11.2), by method and status; a series appears with its first use.
  prometheus::Counter& api_requests(const std::string& method, unsigned status);
  // Lifecycle events (11.3).
  prometheus::Counter& events_sent();
  prometheus::Counter& events_failed();
  prometheus::Counter& events_dropped();
  // Hub mode (CONTRACT 13.7): subscriptions and channels now, publications accepted,
  // deliveries (a publication queued to one subscriber), subscribes that asked to
  // recover by outcome, and client commands by command and result ("ok" or "error").
  prometheus::Gauge& hub_subscriptions();
  prometheus::Gauge& hub_channels();
  prometheus::Counter& publications();
  prometheus::Counter& deliveries();
  prometheus::Counter& recoveries(bool recovered);
  // Created on first use and cached by the caller: the command names are the hub's.
  prometheus::Counter& hub_commands(const std::string& command, bool ok);

  // Cluster mode (CONTRACT 14): 1 while Redis is unreachable (local or reject), the
  // nodes with a live lease, messages over Redis Pub/Sub by direction, connections of
  // dead nodes this node reaped, and subscriptions restarted after a failed probe.
  prometheus::Gauge& cluster_degraded();
  prometheus::Gauge& cluster_nodes();
  prometheus::Counter& cluster_messages(bool inbound);
  prometheus::Counter& cluster_reaped();
  prometheus::Counter& cluster_pubsub_restarts();

  // Faults toward clients (CONTRACT 8): connections each action reached, and outbound
  // data messages a drop fault discarded.
  prometheus::Counter& faults(client_fault_action a);
  prometheus::Counter& faults_dropped();

  // The dashboard (CONTRACT 15): event streams open now, and those cut because their
  // reader stopped reading (a slow dashboard is a slow consumer).
  prometheus::Gauge& dashboard_streams();
  prometheus::Counter& dashboard_stalls();

  // Prometheus text exposition format 0.0.4. The process_* series (process_metrics.hpp)
  // are read at the time of the call.
  std::string render() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace wsvisor
