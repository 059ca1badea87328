// The /metrics contract (CONTRACT section 6): every series exists from construction at 0
// under its exact name and labels, updates show up in the exposition, and the text is
// valid Prometheus exposition format 0.0.4.
#include <doctest/doctest.h>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include "wsvisor/build_info.hpp"
#include "wsvisor/metrics.hpp"

namespace {

// Sample lines of an exposition, keyed by series ("name" or "name{label=\"value\"}").
std::map<std::string, double> samples_of(const std::string& exposition) {
  std::map<std::string, double> samples;
  std::istringstream lines(exposition);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto value_start = line.rfind(' ');
    REQUIRE_MESSAGE(value_start != std::string::npos, "sample line without a value: " << line);
    samples[line.substr(0, value_start)] = std::stod(line.substr(value_start + 1));
  }
  return samples;
}

std::string series(const std::string& name, const std::string& label, const std::string& value) {
  return name + "{" + label + "=\"" + value + "\"}";
}

template <typename Enum>
std::vector<Enum> all_values() {
  std::vector<Enum> values;
  for (std::size_t i = 0; i < static_cast<std::size_t>(Enum::count_); ++i) {
    values.push_back(static_cast<Enum>(i));
  }
  return values;
}

// Every series name the contract promises, with its label values where it has a label.
std::set<std::string> contract_series() {
  std::set<std::string> expected = {
      "wsvisor_ready",
      "wsvisor_draining",
      "wsvisor_connections",
      "wsvisor_connections_opened_total",
      "wsvisor_messages_received_total",
      "wsvisor_messages_sent_total",
      "wsvisor_send_queue_bytes",
      "wsvisor_sweep_duration_seconds_count",
      "wsvisor_sweep_duration_seconds_sum",
      "process_resident_memory_bytes",
      "process_open_fds",
  };
  for (const char* reason : {"client", "zombie", "idle", "lifetime", "slow_consumer", "rate_limit",
                             "evicted", "drain", "admin", "protocol_error", "restart_budget",
                             "shard_down", "handshake_failed", "api", "application", "node_lost"}) {
    expected.insert(series("wsvisor_connections_closed_total", "reason", reason));
  }
  for (const char* reason :
       {"starting", "draining", "rate_limited", "forbidden_origin", "unauthorized", "ip_limit",
        "user_limit", "server_full", "guard_unavailable", "handshake_limit", "rejected",
        "upstream_unavailable", "upstream_busy", "cluster_unavailable"}) {
    expected.insert(series("wsvisor_admissions_rejected_total", "reason", reason));
  }
  for (const char* reason :
       {"zombie", "idle", "lifetime", "slow_consumer", "emergency", "drain", "admin"}) {
    expected.insert(series("wsvisor_evictions_total", "reason", reason));
  }
  for (const char* kind : {"periodic", "emergency", "admin"}) {
    expected.insert(series("wsvisor_sweeps_total", "kind", kind));
  }
  for (const char* actor :
       {"connection", "limit_guard", "janitor", "shard", "upstream", "events", "hub", "cluster"}) {
    expected.insert(series("wsvisor_actor_restarts_total", "actor", actor));
  }
  // CONTRACT 11.1 and 11.3.
  for (const char* hook : {"connect", "message", "rpc", "publish", "subscribe", "refresh", "event"})
    for (const char* outcome :
         {"ok", "rejected", "error", "timeout", "busy", "breaker", "cancelled"})
      expected.insert(std::string("wsvisor_upstream_requests_total{hook=\"") + hook +
                      "\",outcome=\"" + outcome + "\"}");
  for (const char* name :
       {"wsvisor_upstream_retries_total", "wsvisor_upstream_inflight",
        "wsvisor_upstream_duration_seconds_count", "wsvisor_upstream_duration_seconds_sum",
        "wsvisor_upstream_breaker_open", "wsvisor_events_sent_total", "wsvisor_events_failed_total",
        "wsvisor_events_dropped_total"})
    expected.insert(name);
  // CONTRACT 13.7 (wsvisor_hub_commands_total's series appear with their first command).
  for (const char* name : {"wsvisor_hub_subscriptions", "wsvisor_hub_channels",
                           "wsvisor_publications_total", "wsvisor_deliveries_total"})
    expected.insert(name);
  for (const char* result : {"recovered", "unrecovered"})
    expected.insert(series("wsvisor_recoveries_total", "result", result));
  // CONTRACT 14.
  for (const char* name :
       {"wsvisor_cluster_degraded", "wsvisor_cluster_nodes", "wsvisor_cluster_reaped_total"})
    expected.insert(name);
  for (const char* direction : {"in", "out"})
    expected.insert(series("wsvisor_cluster_messages_total", "direction", direction));
  // Section 8, faults toward clients.
  for (const char* action : {"stall", "latency", "drop", "close", "reset", "zombie", "restart"})
    expected.insert(series("wsvisor_faults_total", "action", action));
  expected.insert("wsvisor_faults_dropped_total");
  expected.insert("wsvisor_dashboard_streams");
  expected.insert("wsvisor_dashboard_stalls_total");
  return expected;
}

// prometheus-cpp writes labels in name order.
std::string build_info_series() {
  return std::string("wsvisor_build_info{commit=\"") + wsvisor::build_commit() + "\",version=\"" +
         wsvisor::build_version() + "\"}";
}

// Series wsvisor exposes beyond the contract's list (README, Metrics).
std::set<std::string> additional_series() {
  return {
      build_info_series(),
      "wsvisor_bytes_received_total",
      "wsvisor_bytes_sent_total",
      "wsvisor_cluster_pubsub_restarts_total",
      "wsvisor_handshake_duration_seconds_count",
      "wsvisor_handshake_duration_seconds_sum",
      "wsvisor_connection_duration_seconds_count",
      "wsvisor_connection_duration_seconds_sum",
      "process_max_fds",
      "process_cpu_seconds_total",
      "process_start_time_seconds",
  };
}

std::set<std::string> documented_series() {
  auto expected = contract_series();
  expected.merge(additional_series());
  return expected;
}

// The lowest and the highest finite bucket bound of a histogram.
std::pair<double, double> finite_bucket_range(const std::map<std::string, double>& samples,
                                              const std::string& histogram) {
  const std::string prefix = histogram + "_bucket{le=\"";
  std::vector<double> bounds;
  for (const auto& [name, value] : samples) {
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string bound = name.substr(prefix.size(), name.size() - prefix.size() - 2);
    if (bound != "+Inf") bounds.push_back(std::stod(bound));
  }
  REQUIRE_MESSAGE(!bounds.empty(), "no finite buckets for " << histogram);
  return {*std::min_element(bounds.begin(), bounds.end()),
          *std::max_element(bounds.begin(), bounds.end())};
}

struct bucket_count {
  const char* le;  // the bound as exposed
  double count;    // cumulative: observations <= le
};

void check_buckets(const std::map<std::string, double>& samples, const std::string& histogram,
                   std::initializer_list<bucket_count> expected) {
  for (const auto& bucket : expected) {
    INFO(histogram << " le=" << bucket.le);
    CHECK(samples.at(series(histogram + "_bucket", "le", bucket.le)) == bucket.count);
  }
}

}  // namespace

TEST_CASE("to_string gives the label values of the contract") {
  CHECK(std::string(wsvisor::to_string(wsvisor::close_reason::slow_consumer)) == "slow_consumer");
  CHECK(std::string(wsvisor::to_string(wsvisor::close_reason::handshake_failed)) ==
        "handshake_failed");
  CHECK(std::string(wsvisor::to_string(wsvisor::reject_reason::guard_unavailable)) ==
        "guard_unavailable");
  CHECK(std::string(wsvisor::to_string(wsvisor::eviction_reason::emergency)) == "emergency");
  CHECK(std::string(wsvisor::to_string(wsvisor::sweep_kind::periodic)) == "periodic");
  CHECK(std::string(wsvisor::to_string(wsvisor::actor_kind::limit_guard)) == "limit_guard");
}

TEST_CASE("every label value has a distinct name") {
  // A duplicated or missing case in a to_string would merge two series into one.
  auto check_distinct = [](const auto& values) {
    std::set<std::string> names;
    for (const auto value : values) {
      const std::string name = wsvisor::to_string(value);
      CHECK_MESSAGE(name != "unknown", "enum value " << static_cast<int>(value));
      names.insert(name);
    }
    CHECK(names.size() == values.size());
  };
  check_distinct(all_values<wsvisor::close_reason>());
  check_distinct(all_values<wsvisor::reject_reason>());
  check_distinct(all_values<wsvisor::eviction_reason>());
  check_distinct(all_values<wsvisor::sweep_kind>());
  check_distinct(all_values<wsvisor::actor_kind>());
}

TEST_CASE("every documented series exists after construction, at 0 but process_* and build_info") {
  const wsvisor::metrics metrics;
  const auto samples = samples_of(metrics.render());

  for (const auto& name : documented_series()) {
    INFO("series " << name);
    REQUIRE(samples.count(name) == 1);
    if (name.rfind("process_", 0) != 0 && name != build_info_series()) {
      CHECK(samples.at(name) == 0);
    }
  }
  for (const char* histogram :
       {"wsvisor_sweep_duration_seconds", "wsvisor_handshake_duration_seconds",
        "wsvisor_connection_duration_seconds"}) {
    INFO("histogram " << histogram);
    CHECK(samples.at(series(std::string(histogram) + "_bucket", "le", "+Inf")) == 0);
  }
}

TEST_CASE("no series beyond the documented ones is exposed") {
  // Catches a serializer that renames counters (appending a second _total, say), and a
  // series added without its line in the README.
  const wsvisor::metrics metrics;
  const auto expected = documented_series();
  for (const auto& [name, value] : samples_of(metrics.render())) {
    INFO("series " << name);
    // A histogram's buckets are checked where its boundaries are.
    const auto bucket = name.find("_bucket{le=");
    if (bucket != std::string::npos && expected.count(name.substr(0, bucket) + "_count") == 1) {
      continue;
    }
    CHECK(expected.count(name) == 1);
  }
}

TEST_CASE("the slot gauge is read before the counters, so it is never ahead of them") {
  // A close counts its reason, then lowers the gauge; a scrape that reads the gauge
  // first and sees it lowered must then see the count (the e2e tests wait for a gauge
  // of 0 and then check the close counters).
  wsvisor::metrics metrics;
  const std::string text = metrics.render();
  const auto gauge = text.find("\nwsvisor_connections ");
  const auto closed = text.find("\nwsvisor_connections_closed_total{");
  const auto opened = text.find("\nwsvisor_connections_opened_total ");
  REQUIRE(gauge != std::string::npos);
  CHECK(gauge < closed);
  CHECK(gauge < opened);
}

TEST_CASE("updates show up in the exposition") {
  wsvisor::metrics metrics;
  metrics.ready().Set(1);
  metrics.connections().Increment();
  metrics.connections().Increment();
  metrics.connections().Decrement();
  metrics.send_queue_bytes().Set(4096);
  metrics.connections_opened().Increment();
  metrics.connections_closed(wsvisor::close_reason::zombie).Increment();
  metrics.connections_closed(wsvisor::close_reason::zombie).Increment();
  metrics.admissions_rejected(wsvisor::reject_reason::guard_unavailable).Increment();
  metrics.evictions(wsvisor::eviction_reason::slow_consumer).Increment();
  metrics.sweeps(wsvisor::sweep_kind::emergency).Increment();
  metrics.actor_restarts(wsvisor::actor_kind::limit_guard).Increment();
  metrics.messages_received().Increment(3);
  metrics.messages_sent().Increment(5);
  metrics.bytes_received().Increment(300);
  metrics.bytes_sent().Increment(70000);
  metrics.sweep_duration_seconds().Observe(0.003);

  const auto samples = samples_of(metrics.render());
  CHECK(samples.at("wsvisor_ready") == 1);
  CHECK(samples.at("wsvisor_draining") == 0);
  CHECK(samples.at("wsvisor_connections") == 1);
  CHECK(samples.at("wsvisor_send_queue_bytes") == 4096);
  CHECK(samples.at("wsvisor_connections_opened_total") == 1);
  CHECK(samples.at(series("wsvisor_connections_closed_total", "reason", "zombie")) == 2);
  CHECK(samples.at(series("wsvisor_connections_closed_total", "reason", "client")) == 0);
  CHECK(samples.at(series("wsvisor_admissions_rejected_total", "reason", "guard_unavailable")) ==
        1);
  CHECK(samples.at(series("wsvisor_evictions_total", "reason", "slow_consumer")) == 1);
  CHECK(samples.at(series("wsvisor_sweeps_total", "kind", "emergency")) == 1);
  CHECK(samples.at(series("wsvisor_sweeps_total", "kind", "periodic")) == 0);
  CHECK(samples.at(series("wsvisor_actor_restarts_total", "actor", "limit_guard")) == 1);
  CHECK(samples.at("wsvisor_messages_received_total") == 3);
  CHECK(samples.at("wsvisor_messages_sent_total") == 5);
  CHECK(samples.at("wsvisor_bytes_received_total") == 300);
  CHECK(samples.at("wsvisor_bytes_sent_total") == 70000);
  CHECK(samples.at("wsvisor_sweep_duration_seconds_count") == 1);
  CHECK(samples.at("wsvisor_sweep_duration_seconds_sum") == doctest::Approx(0.003));
}

TEST_CASE("sweep duration buckets span 100 us to 10 s") {
  wsvisor::metrics metrics;
  for (const double seconds : {0.00005, 0.02, 30.0}) {
    metrics.sweep_duration_seconds().Observe(seconds);
  }
  const auto samples = samples_of(metrics.render());
  const std::string histogram = "wsvisor_sweep_duration_seconds";
  CHECK(finite_bucket_range(samples, histogram) == std::make_pair(0.0001, 10.0));
  check_buckets(samples, histogram, {{"0.0001", 1}, {"0.025", 2}, {"10", 2}, {"+Inf", 3}});
}

TEST_CASE("handshake duration buckets span 0.5 ms to 10 s") {
  wsvisor::metrics metrics;
  for (const double seconds : {0.0002, 0.003, 11.0}) {
    metrics.handshake_duration_seconds().Observe(seconds);
  }
  const auto samples = samples_of(metrics.render());
  const std::string histogram = "wsvisor_handshake_duration_seconds";
  CHECK(finite_bucket_range(samples, histogram) == std::make_pair(0.0005, 10.0));
  check_buckets(samples, histogram,
                {{"0.0005", 1}, {"0.0025", 1}, {"0.005", 2}, {"10", 2}, {"+Inf", 3}});
  CHECK(samples.at(histogram + "_count") == 3);
  CHECK(samples.at(histogram + "_sum") == doctest::Approx(11.0032));
}

TEST_CASE("connection duration buckets span 100 ms to 24 h") {
  wsvisor::metrics metrics;
  for (const double seconds : {0.05, 42.0, 2 * 86400.0}) {
    metrics.connection_duration_seconds().Observe(seconds);
  }
  const auto samples = samples_of(metrics.render());
  const std::string histogram = "wsvisor_connection_duration_seconds";
  CHECK(finite_bucket_range(samples, histogram) == std::make_pair(0.1, 86400.0));
  check_buckets(samples, histogram, {{"0.1", 1}, {"30", 1}, {"60", 2}, {"86400", 2}, {"+Inf", 3}});
  CHECK(samples.at(histogram + "_count") == 3);
}

TEST_CASE("a histogram observed once shows _count 1 and only that observation") {
  // The two new histograms are separate: an observation of one leaves the other at 0.
  wsvisor::metrics metrics;
  metrics.handshake_duration_seconds().Observe(0.004);
  auto samples = samples_of(metrics.render());
  CHECK(samples.at("wsvisor_handshake_duration_seconds_count") == 1);
  CHECK(samples.at("wsvisor_handshake_duration_seconds_sum") == doctest::Approx(0.004));
  CHECK(samples.at("wsvisor_connection_duration_seconds_count") == 0);
  CHECK(samples.at("wsvisor_sweep_duration_seconds_count") == 0);

  metrics.connection_duration_seconds().Observe(12.5);
  samples = samples_of(metrics.render());
  CHECK(samples.at("wsvisor_connection_duration_seconds_count") == 1);
  CHECK(samples.at("wsvisor_connection_duration_seconds_sum") == doctest::Approx(12.5));
  CHECK(samples.at("wsvisor_handshake_duration_seconds_count") == 1);
}

TEST_CASE("the exposition is valid text format with HELP and TYPE for every family") {
  const wsvisor::metrics metrics;
  const std::string exposition = metrics.render();
  REQUIRE(!exposition.empty());
  CHECK(exposition.back() == '\n');

  std::map<std::string, std::string> type_of_family;
  std::set<std::string> families_with_help;
  std::istringstream lines(exposition);
  std::string line;
  while (std::getline(lines, line)) {
    INFO("line: " << line);
    REQUIRE(!line.empty());
    std::istringstream words(line);
    if (line[0] == '#') {
      std::string hash, keyword, family, rest;
      words >> hash >> keyword >> family;
      REQUIRE((keyword == "HELP" || keyword == "TYPE"));
      std::getline(words, rest);
      // Prometheus requires HELP and TYPE to come before the family's first sample.
      if (keyword == "HELP") {
        CHECK(!rest.empty());
        families_with_help.insert(family);
      } else {
        const std::string type = rest.substr(rest.find_first_not_of(' '));
        CHECK((type == "counter" || type == "gauge" || type == "histogram"));
        CHECK(families_with_help.count(family) == 1);
        type_of_family[family] = type;
      }
      continue;
    }
    std::string name = line.substr(0, line.find_first_of("{ "));
    if (type_of_family.count(name) == 0) {
      // Histogram samples carry a suffix on the family name.
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        const std::string s = suffix;
        if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0 &&
            type_of_family.count(name.substr(0, name.size() - s.size())) == 1) {
          CHECK(type_of_family.at(name.substr(0, name.size() - s.size())) == "histogram");
          name = name.substr(0, name.size() - s.size());
          break;
        }
      }
    }
    CHECK_MESSAGE(type_of_family.count(name) == 1, "sample before its TYPE line");
    // Exactly "series value": no timestamp, a number that parses whole.
    const std::string value = line.substr(line.rfind(' ') + 1);
    std::size_t parsed = 0;
    CHECK_NOTHROW(std::stod(value, &parsed));
    CHECK(parsed == value.size());
  }

  CHECK(type_of_family.at("wsvisor_connections_closed_total") == "counter");
  CHECK(type_of_family.at("wsvisor_ready") == "gauge");
  CHECK(type_of_family.at("wsvisor_bytes_received_total") == "counter");
  CHECK(type_of_family.at("wsvisor_bytes_sent_total") == "counter");
  CHECK(type_of_family.at("wsvisor_sweep_duration_seconds") == "histogram");
  CHECK(type_of_family.at("wsvisor_handshake_duration_seconds") == "histogram");
  CHECK(type_of_family.at("wsvisor_connection_duration_seconds") == "histogram");
  CHECK(type_of_family.at("process_resident_memory_bytes") == "gauge");
  CHECK(type_of_family.at("process_open_fds") == "gauge");
  CHECK(type_of_family.at("wsvisor_build_info") == "gauge");
  CHECK(type_of_family.at("process_max_fds") == "gauge");
  CHECK(type_of_family.at("process_cpu_seconds_total") == "counter");
  CHECK(type_of_family.at("process_start_time_seconds") == "gauge");
}

TEST_CASE("process metrics are read from /proc/self and plausible") {
  const double resident_bytes = wsvisor::process_resident_memory_bytes();
  CHECK(resident_bytes > 0);
  // A unit test that holds more than 64 GiB resident means the pages were not converted.
  CHECK(resident_bytes < 64.0 * 1024 * 1024 * 1024);

  // stdin, stdout and stderr at least.
  const double open_fds_before = wsvisor::process_open_fds();
  CHECK(open_fds_before >= 3);

  // The render-time value follows descriptors the process opens.
  std::vector<FILE*> opened;
  for (int i = 0; i < 4; ++i) opened.push_back(std::fopen("/proc/self/statm", "r"));
  for (FILE* file : opened) REQUIRE(file != nullptr);
  const wsvisor::metrics metrics;
  const auto samples = samples_of(metrics.render());
  CHECK(samples.at("process_open_fds") == open_fds_before + 4);
  CHECK(samples.at("process_resident_memory_bytes") > 0);
  for (FILE* file : opened) std::fclose(file);
}

TEST_CASE("process_cpu_seconds_total is non-negative and grows while the process computes") {
  const double before = wsvisor::process_cpu_seconds_total();
  CHECK(before >= 0);

  // Spin until the kernel has charged 20 ms more, bounded by wall time so that a starved
  // machine fails this test rather than hanging it.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  volatile std::uint64_t sink = 0;
  while (wsvisor::process_cpu_seconds_total() < before + 0.02 &&
         std::chrono::steady_clock::now() < give_up) {
    for (int i = 0; i < 100000; ++i) sink = sink + static_cast<std::uint64_t>(i);
  }

  const wsvisor::metrics metrics;
  const auto samples = samples_of(metrics.render());
  CHECK(samples.at("process_cpu_seconds_total") >= before + 0.02);
}

TEST_CASE("process_start_time_seconds is the Unix time the process started") {
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const wsvisor::metrics metrics;
  const double start = samples_of(metrics.render()).at("process_start_time_seconds");
  // The test binary started moments ago. The boot time in /proc/stat is whole seconds,
  // so the reading may be up to a second early or late.
  CHECK(start > now - 60);
  CHECK(start < now + 1);
  CHECK(wsvisor::process_start_time_seconds() == start);
}

TEST_CASE("process_max_fds is the soft RLIMIT_NOFILE, read when rendered") {
  rlimit limit{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &limit) == 0);
  const wsvisor::metrics metrics;
  CHECK(samples_of(metrics.render()).at("process_max_fds") == static_cast<double>(limit.rlim_cur));

  // Lowering the soft limit (and raising it back, allowed up to the hard limit) shows
  // in the next render.
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur > 64) {
    rlimit lowered = limit;
    lowered.rlim_cur = limit.rlim_cur - 1;
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);
    const double rendered = samples_of(metrics.render()).at("process_max_fds");
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &limit) == 0);
    CHECK(rendered == static_cast<double>(lowered.rlim_cur));
  }
}

// MAJOR.MINOR.PATCH, digits only. By hand: GCC 12's std::regex trips
// -Wmaybe-uninitialized under -O2 with the sanitizers (the ASan build is -Werror too).
static bool is_semver(const std::string& version) {
  int parts = 0;
  std::size_t i = 0;
  while (i < version.size()) {
    const std::size_t start = i;
    while (i < version.size() && version[i] >= '0' && version[i] <= '9') ++i;
    if (i == start) return false;
    ++parts;
    if (i == version.size()) break;
    if (version[i] != '.' || ++i == version.size()) return false;
  }
  return parts == 3;
}

TEST_CASE("wsvisor_build_info is 1 with the version and commit of the build") {
  const std::string version = wsvisor::build_version();
  const std::string commit = wsvisor::build_commit();
  CHECK(is_semver(version));
  // git rev-parse --short=12, "unknown" without git, or what WSVISOR_GIT_COMMIT set.
  CHECK(!commit.empty());

  const wsvisor::metrics metrics;
  const std::string exposition = metrics.render();
  const auto samples = samples_of(exposition);
  CHECK(samples.at(build_info_series()) == 1);
  // One build, one series.
  std::size_t build_info_samples = 0;
  for (const auto& [name, value] : samples) {
    if (name.rfind("wsvisor_build_info", 0) == 0) ++build_info_samples;
  }
  CHECK(build_info_samples == 1);
  CHECK(exposition.find("# HELP wsvisor_build_info ") != std::string::npos);
}
