#include "wsvisor/metrics.hpp"

#include <array>
#include <cstddef>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "wsvisor/build_info.hpp"

namespace wsvisor {

namespace {

template <typename Enum>
constexpr std::size_t enum_size() {
  return static_cast<std::size_t>(Enum::count_);
}

template <typename Enum>
constexpr std::size_t index_of(Enum value) {
  return static_cast<std::size_t>(value);
}

// One counter per label value, all created up front so that every series is exposed at 0
// before the first event (a series that appears only later makes rate() miss its first
// increment and alerts on absent() fire at start-up).
template <typename Enum>
std::array<prometheus::Counter*, enum_size<Enum>()> counters_per_label(
    prometheus::Registry& registry, const std::string& name, const std::string& help,
    const std::string& label_name) {
  auto& family = prometheus::BuildCounter().Name(name).Help(help).Register(registry);
  std::array<prometheus::Counter*, enum_size<Enum>()> counters{};
  for (std::size_t i = 0; i < counters.size(); ++i) {
    counters[i] = &family.Add({{label_name, to_string(static_cast<Enum>(i))}});
  }
  return counters;
}

prometheus::Counter& single_counter(prometheus::Registry& registry, const std::string& name,
                                    const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add({});
}

prometheus::Gauge& single_gauge(prometheus::Registry& registry, const std::string& name,
                                const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
}

prometheus::Histogram& single_histogram(prometheus::Registry& registry, const std::string& name,
                                        const std::string& help,
                                        const prometheus::Histogram::BucketBoundaries& buckets) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry).Add({}, buckets);
}

// Always 1: the labels are the information, for joins such as
// `rate(wsvisor_messages_sent_total[5m]) * on(instance) group_left(version, commit)
// wsvisor_build_info` and for spotting a fleet that runs mixed builds.
void register_build_info(prometheus::Registry& registry) {
  prometheus::BuildGauge()
      .Name("wsvisor_build_info")
      .Help("Version and git commit of the running wsvisor binary; always 1")
      .Register(registry)
      .Add({{"version", build_version()}, {"commit", build_commit()}})
      .Set(1);
}

// Sweeps range from ~100 us (a few idle connections, nothing to probe) to seconds (a
// moderate sweep waits up to probe_timeout for pongs; a forced one closes thousands).
prometheus::Histogram::BucketBoundaries sweep_duration_buckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};
}

// A handshake on loopback takes a fraction of a millisecond, across the Internet a few
// round trips (tens to hundreds of ms); handshake_timeout (10 s by default) ends the rest.
prometheus::Histogram::BucketBoundaries handshake_duration_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};
}

// From slots whose handshake failed (well under a second) through reconnect loops
// (seconds) and page views (minutes) to clients that stay for hours, up to a day.
prometheus::Histogram::BucketBoundaries connection_duration_buckets() {
  constexpr double minute = 60;
  constexpr double hour = 60 * minute;
  return {0.1,         0.5,         1,    5,        10,       30,        minute,   5 * minute,
          10 * minute, 30 * minute, hour, 3 * hour, 6 * hour, 12 * hour, 24 * hour};
}

// An upstream request takes a millisecond on a local backend, up to upstream.timeout (5 s)
// per attempt, and a few attempts with backoff in all.
prometheus::Histogram::BucketBoundaries upstream_duration_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
          0.25,   0.5,   1.0,    2.5,   5.0,  10.0,  20.0, 30.0};
}

// Every (hook, outcome) pair at 0 from the start, like the single-label families.
std::array<std::array<prometheus::Counter*, enum_size<upstream_outcome>()>,
           enum_size<upstream_hook>()>
upstream_request_counters(prometheus::Registry& registry) {
  auto& family = prometheus::BuildCounter()
                     .Name("wsvisor_upstream_requests_total")
                     .Help("Requests to the backend, by hook and by how they ended")
                     .Register(registry);
  std::array<std::array<prometheus::Counter*, enum_size<upstream_outcome>()>,
             enum_size<upstream_hook>()>
      counters{};
  for (std::size_t h = 0; h < counters.size(); ++h)
    for (std::size_t o = 0; o < counters[h].size(); ++o)
      counters[h][o] = &family.Add({{"hook", to_string(static_cast<upstream_hook>(h))},
                                    {"outcome", to_string(static_cast<upstream_outcome>(o))}});
  return counters;
}

// The process_* series: not in the registry, since their values live in the kernel and
// are read (process_metrics.hpp) when rendered.
struct process_series {
  const char* name;
  const char* help;
  prometheus::MetricType type;
  double (*read)();
};

constexpr process_series process_series_list[] = {
    {"process_resident_memory_bytes", "Resident memory size in bytes",
     prometheus::MetricType::Gauge, process_resident_memory_bytes},
    {"process_open_fds", "Number of open file descriptors", prometheus::MetricType::Gauge,
     process_open_fds},
    {"process_max_fds", "Maximum number of open file descriptors (soft RLIMIT_NOFILE)",
     prometheus::MetricType::Gauge, process_max_fds},
    {"process_cpu_seconds_total", "Total user and system CPU time spent in seconds",
     prometheus::MetricType::Counter, process_cpu_seconds_total},
    {"process_start_time_seconds", "Start time of the process since unix epoch in seconds",
     prometheus::MetricType::Gauge, process_start_time_seconds},
};

prometheus::MetricFamily render_process_series(const process_series& series) {
  prometheus::MetricFamily family;
  family.name = series.name;
  family.help = series.help;
  family.type = series.type;
  prometheus::ClientMetric sample;
  const double value = series.read();
  if (series.type == prometheus::MetricType::Counter) {
    sample.counter.value = value;
  } else {
    sample.gauge.value = value;
  }
  family.metric.push_back(std::move(sample));
  return family;
}

}  // namespace

struct metrics::impl {
  impl() { register_build_info(registry); }

  prometheus::Registry registry;
  // Collected before `registry`: prometheus-cpp collects a registry's counters before
  // its gauges, so a scrape could read the close counters, then a slot gauge that a
  // close had brought down meanwhile. Every close counts its reason before it lowers the
  // gauge (and every admission counts itself before it raises it); read first, the gauge
  // is never ahead of the counters: a scrape that shows 0 slots shows every close.
  prometheus::Registry read_first;

  prometheus::Gauge& ready =
      single_gauge(registry, "wsvisor_ready",
                   "1 while the server admits connections, 0 while starting or draining");
  prometheus::Gauge& draining =
      single_gauge(registry, "wsvisor_draining", "1 from the first moment of shutdown");
  prometheus::Gauge& connections = single_gauge(
      read_first, "wsvisor_connections", "Connection slots held, handshakes in flight included");
  prometheus::Gauge& send_queue_bytes = single_gauge(
      registry, "wsvisor_send_queue_bytes", "Bytes queued for sending, summed over connections");
  prometheus::Counter& connections_opened =
      single_counter(registry, "wsvisor_connections_opened_total", "Connections admitted");
  std::array<prometheus::Counter*, enum_size<close_reason>()> connections_closed =
      counters_per_label<close_reason>(registry, "wsvisor_connections_closed_total",
                                       "Connections closed, by reason", "reason");
  std::array<prometheus::Counter*, enum_size<reject_reason>()> admissions_rejected =
      counters_per_label<reject_reason>(registry, "wsvisor_admissions_rejected_total",
                                        "WebSocket upgrades refused, by reason", "reason");
  std::array<prometheus::Counter*, enum_size<eviction_reason>()> evictions =
      counters_per_label<eviction_reason>(registry, "wsvisor_evictions_total",
                                          "Connections closed by the server, by reason", "reason");
  std::array<prometheus::Counter*, enum_size<sweep_kind>()> sweeps = counters_per_label<sweep_kind>(
      registry, "wsvisor_sweeps_total", "Janitor sweeps run, by kind", "kind");
  prometheus::Histogram& sweep_duration_seconds =
      single_histogram(registry, "wsvisor_sweep_duration_seconds", "Duration of janitor sweeps",
                       sweep_duration_buckets());
  prometheus::Histogram& handshake_duration_seconds =
      single_histogram(registry, "wsvisor_handshake_duration_seconds",
                       "Time from accepting a connection to its 101 Switching Protocols",
                       handshake_duration_buckets());
  prometheus::Histogram& connection_duration_seconds = single_histogram(
      registry, "wsvisor_connection_duration_seconds",
      "Time from admitting a connection to releasing its slot", connection_duration_buckets());
  std::array<prometheus::Counter*, enum_size<actor_kind>()> actor_restarts =
      counters_per_label<actor_kind>(registry, "wsvisor_actor_restarts_total",
                                     "Actors restarted by their supervisor, by actor kind",
                                     "actor");
  prometheus::Counter& messages_received =
      single_counter(registry, "wsvisor_messages_received_total",
                     "WebSocket text and binary messages received from clients");
  prometheus::Counter& messages_sent =
      single_counter(registry, "wsvisor_messages_sent_total",
                     "WebSocket text and binary messages sent to clients");
  prometheus::Counter& bytes_received =
      single_counter(registry, "wsvisor_bytes_received_total",
                     "Payload bytes of WebSocket text and binary messages received from clients");
  prometheus::Counter& bytes_sent =
      single_counter(registry, "wsvisor_bytes_sent_total",
                     "Payload bytes of WebSocket text and binary messages sent to clients");
  std::array<std::array<prometheus::Counter*, enum_size<upstream_outcome>()>,
             enum_size<upstream_hook>()>
      upstream_requests = upstream_request_counters(registry);
  prometheus::Counter& upstream_retries = single_counter(
      registry, "wsvisor_upstream_retries_total", "Attempts to the backend that were retries");
  prometheus::Gauge& upstream_inflight =
      single_gauge(registry, "wsvisor_upstream_inflight", "Requests to the backend in flight now");
  prometheus::Histogram& upstream_duration_seconds = single_histogram(
      registry, "wsvisor_upstream_duration_seconds",
      "Time from a request's first attempt to its final outcome", upstream_duration_buckets());
  prometheus::Gauge& upstream_breaker_open =
      single_gauge(registry, "wsvisor_upstream_breaker_open",
                   "1 while the breaker to the backend is open (or half open)");
  prometheus::Family<prometheus::Counter>& api_requests =
      prometheus::BuildCounter()
          .Name("wsvisor_api_requests_total")
          .Help("Server API requests (/api/*), by method and status")
          .Register(registry);
  prometheus::Counter& events_sent = single_counter(registry, "wsvisor_events_sent_total",
                                                    "Lifecycle events the backend accepted (2xx)");
  prometheus::Counter& events_failed =
      single_counter(registry, "wsvisor_events_failed_total",
                     "Lifecycle events given up after events.retries attempts");
  prometheus::Counter& events_dropped =
      single_counter(registry, "wsvisor_events_dropped_total",
                     "Lifecycle events dropped, oldest first, from a full queue (events.queue)");
  prometheus::Gauge& hub_subscriptions = single_gauge(
      registry, "wsvisor_hub_subscriptions", "Hub mode: subscriptions of connections to channels");
  prometheus::Gauge& hub_channels = single_gauge(registry, "wsvisor_hub_channels",
                                                 "Hub mode: channels with subscribers or history");
  prometheus::Counter& publications =
      single_counter(registry, "wsvisor_publications_total", "Hub mode: publications accepted");
  prometheus::Counter& deliveries = single_counter(registry, "wsvisor_deliveries_total",
                                                   "Hub mode: publications queued to a subscriber");
  prometheus::Family<prometheus::Counter>& recoveries =
      prometheus::BuildCounter()
          .Name("wsvisor_recoveries_total")
          .Help("Hub mode: subscribes that asked to recover, by result")
          .Register(registry);
  prometheus::Counter& recovered = recoveries.Add({{"result", "recovered"}});
  prometheus::Counter& unrecovered = recoveries.Add({{"result", "unrecovered"}});
  prometheus::Family<prometheus::Counter>& hub_commands =
      prometheus::BuildCounter()
          .Name("wsvisor_hub_commands_total")
          .Help("Hub mode: client commands, by command and result")
          .Register(registry);
  prometheus::Gauge& cluster_degraded =
      single_gauge(registry, "wsvisor_cluster_degraded",
                   "Cluster mode: 1 while Redis is unreachable (cluster.on_redis_down applies)");
  prometheus::Gauge& cluster_nodes =
      single_gauge(registry, "wsvisor_cluster_nodes", "Cluster mode: nodes with a live lease");
  prometheus::Family<prometheus::Counter>& cluster_messages =
      prometheus::BuildCounter()
          .Name("wsvisor_cluster_messages_total")
          .Help("Cluster mode: messages over Redis Pub/Sub, by direction")
          .Register(registry);
  prometheus::Counter& cluster_messages_in = cluster_messages.Add({{"direction", "in"}});
  prometheus::Counter& cluster_messages_out = cluster_messages.Add({{"direction", "out"}});
  prometheus::Counter& cluster_reaped =
      single_counter(registry, "wsvisor_cluster_reaped_total",
                     "Cluster mode: connections of dead nodes this node reaped (node_lost)");
  prometheus::Counter& cluster_pubsub_restarts =
      single_counter(registry, "wsvisor_cluster_pubsub_restarts_total",
                     "Cluster mode: Pub/Sub subscriptions restarted after a failed probe");
  std::array<prometheus::Counter*, enum_size<client_fault_action>()> faults =
      counters_per_label<client_fault_action>(
          registry, "wsvisor_faults_total",
          "Faults toward clients injected, one per connection reached, by action", "action");
  prometheus::Counter& faults_dropped = single_counter(
      registry, "wsvisor_faults_dropped_total", "Outbound data messages discarded by a drop fault");
  prometheus::Gauge& dashboard_streams = single_gauge(
      registry, "wsvisor_dashboard_streams", "Dashboards reading /admin/events now");
  prometheus::Counter& dashboard_stalls =
      single_counter(registry, "wsvisor_dashboard_stalls_total",
                     "Dashboard streams cut because the dashboard read nothing for 10 s");
};

metrics::metrics() : impl_(std::make_unique<impl>()) {}
metrics::~metrics() = default;

prometheus::Gauge& metrics::ready() {
  return impl_->ready;
}
prometheus::Gauge& metrics::draining() {
  return impl_->draining;
}
prometheus::Gauge& metrics::connections() {
  return impl_->connections;
}
prometheus::Gauge& metrics::send_queue_bytes() {
  return impl_->send_queue_bytes;
}
prometheus::Counter& metrics::connections_opened() {
  return impl_->connections_opened;
}

prometheus::Counter& metrics::connections_closed(close_reason r) {
  return *impl_->connections_closed.at(index_of(r));
}

prometheus::Counter& metrics::admissions_rejected(reject_reason r) {
  return *impl_->admissions_rejected.at(index_of(r));
}

prometheus::Counter& metrics::evictions(eviction_reason r) {
  return *impl_->evictions.at(index_of(r));
}

prometheus::Counter& metrics::sweeps(sweep_kind k) {
  return *impl_->sweeps.at(index_of(k));
}

prometheus::Histogram& metrics::sweep_duration_seconds() {
  return impl_->sweep_duration_seconds;
}

prometheus::Histogram& metrics::handshake_duration_seconds() {
  return impl_->handshake_duration_seconds;
}

prometheus::Histogram& metrics::connection_duration_seconds() {
  return impl_->connection_duration_seconds;
}

prometheus::Counter& metrics::actor_restarts(actor_kind k) {
  return *impl_->actor_restarts.at(index_of(k));
}

prometheus::Counter& metrics::messages_received() {
  return impl_->messages_received;
}
prometheus::Counter& metrics::messages_sent() {
  return impl_->messages_sent;
}
prometheus::Counter& metrics::bytes_received() {
  return impl_->bytes_received;
}
prometheus::Counter& metrics::bytes_sent() {
  return impl_->bytes_sent;
}
prometheus::Counter& metrics::upstream_requests(upstream_hook hook, upstream_outcome outcome) {
  return *impl_->upstream_requests.at(index_of(hook)).at(index_of(outcome));
}
prometheus::Counter& metrics::upstream_retries() {
  return impl_->upstream_retries;
}
prometheus::Gauge& metrics::upstream_inflight() {
  return impl_->upstream_inflight;
}
prometheus::Histogram& metrics::upstream_duration_seconds() {
  return impl_->upstream_duration_seconds;
}
prometheus::Gauge& metrics::upstream_breaker_open() {
  return impl_->upstream_breaker_open;
}
prometheus::Counter& metrics::api_requests(const std::string& method, unsigned status) {
  // Created on first use: the label values are open-ended (any status the API answers).
  return impl_->api_requests.Add({{"method", method}, {"status", std::to_string(status)}});
}
prometheus::Counter& metrics::events_sent() {
  return impl_->events_sent;
}
prometheus::Counter& metrics::events_failed() {
  return impl_->events_failed;
}
prometheus::Counter& metrics::events_dropped() {
  return impl_->events_dropped;
}
prometheus::Gauge& metrics::hub_subscriptions() {
  return impl_->hub_subscriptions;
}
prometheus::Gauge& metrics::hub_channels() {
  return impl_->hub_channels;
}
prometheus::Gauge& metrics::cluster_degraded() {
  return impl_->cluster_degraded;
}
prometheus::Gauge& metrics::cluster_nodes() {
  return impl_->cluster_nodes;
}
prometheus::Counter& metrics::cluster_messages(bool inbound) {
  return inbound ? impl_->cluster_messages_in : impl_->cluster_messages_out;
}
prometheus::Counter& metrics::cluster_reaped() {
  return impl_->cluster_reaped;
}
prometheus::Counter& metrics::cluster_pubsub_restarts() {
  return impl_->cluster_pubsub_restarts;
}
prometheus::Counter& metrics::faults(client_fault_action a) {
  return *impl_->faults.at(index_of(a));
}
prometheus::Counter& metrics::faults_dropped() {
  return impl_->faults_dropped;
}
prometheus::Gauge& metrics::dashboard_streams() {
  return impl_->dashboard_streams;
}
prometheus::Counter& metrics::dashboard_stalls() {
  return impl_->dashboard_stalls;
}
prometheus::Counter& metrics::publications() {
  return impl_->publications;
}
prometheus::Counter& metrics::deliveries() {
  return impl_->deliveries;
}
prometheus::Counter& metrics::recoveries(bool recovered) {
  return recovered ? impl_->recovered : impl_->unrecovered;
}
prometheus::Counter& metrics::hub_commands(const std::string& command, bool ok) {
  return impl_->hub_commands.Add({{"command", command}, {"result", ok ? "ok" : "error"}});
}

std::string metrics::render() const {
  std::vector<prometheus::MetricFamily> families = impl_->read_first.Collect();
  for (auto& family : impl_->registry.Collect()) families.push_back(std::move(family));
  for (const auto& series : process_series_list) {
    families.push_back(render_process_series(series));
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace wsvisor
