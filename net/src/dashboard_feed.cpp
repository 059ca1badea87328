#include "dashboard_feed.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <mutex>
#include <optional>

#include "http_exchange.hpp"
#include "http_responses.hpp"
#include "wsvisor/build_info.hpp"
#include "wsvisor/event_journal.hpp"
#include "wsvisor/log.hpp"

namespace wsvisor {
namespace json = boost::json;

namespace {

// The users and IPs the snapshot lists: enough to see who fills a cap, few enough that a
// snapshot stays a few KB with 10,000 users.
constexpr size_t kTopEntries = 10;

json::array ranking(const std::vector<std::pair<std::string, uint64_t>>& top) {
  json::array list;
  for (const auto& [key, count] : top) list.push_back(json::object{{"key", key}, {"count", count}});
  return list;
}

json::value caps_json(const std::optional<caps_in_use>& caps) {
  if (!caps) return nullptr;
  return json::object{{"connections", caps->connections},
                      {"max_connections", caps->max_connections},
                      {"soft_connections", caps->soft_connections},
                      {"max_per_user", caps->max_per_user},
                      {"max_per_ip", caps->max_per_ip},
                      {"top_users", ranking(caps->top_users)},
                      {"top_ips", ranking(caps->top_ips)}};
}

// Counter values by label, every label value of the enum, so that the page sees each
// reason from the first snapshot on.
template <class Enum, class Read>
json::object by_label(Read read) {
  json::object counts;
  for (int i = 0; i < static_cast<int>(Enum::count_); ++i) {
    const auto value = static_cast<Enum>(i);
    counts[to_string(value)] = static_cast<uint64_t>(read(value).Value());
  }
  return counts;
}

json::object totals_json(metrics& stats) {
  json::object totals;
  totals["connections"] = static_cast<uint64_t>(stats.connections().Value());
  totals["opened"] = static_cast<uint64_t>(stats.connections_opened().Value());
  totals["messages_in"] = static_cast<uint64_t>(stats.messages_received().Value());
  totals["messages_out"] = static_cast<uint64_t>(stats.messages_sent().Value());
  totals["bytes_in"] = static_cast<uint64_t>(stats.bytes_received().Value());
  totals["bytes_out"] = static_cast<uint64_t>(stats.bytes_sent().Value());
  totals["rss_bytes"] = static_cast<uint64_t>(process_resident_memory_bytes());
  totals["refused"] = by_label<reject_reason>([&](reject_reason r) -> auto& {
    return stats.admissions_rejected(r);
  });
  totals["evicted"] =
      by_label<eviction_reason>([&](eviction_reason r) -> auto& { return stats.evictions(r); });
  totals["closed"] =
      by_label<close_reason>([&](close_reason r) -> auto& { return stats.connections_closed(r); });
  totals["restarts"] =
      by_label<actor_kind>([&](actor_kind k) -> auto& { return stats.actor_restarts(k); });
  totals["sweeps"] = by_label<sweep_kind>([&](sweep_kind k) -> auto& { return stats.sweeps(k); });
  return totals;
}

json::value upstream_json(const std::optional<tree_node>& tree) {
  if (!tree) return nullptr;
  for (const auto& child : tree->children)
    if (child.name == "upstream")
      return json::object{{"breaker", child.breaker}, {"inflight", child.inflight.value_or(0)}};
  return nullptr;
}

json::value cluster_json(const cluster_status& status,
                         const std::optional<std::vector<cluster_node_info>>& nodes) {
  if (status.state == "off") return nullptr;
  json::array list;
  if (nodes)
    for (const auto& node : *nodes)
      list.push_back(json::object{{"node_id", node.node_id},
                                  {"connections", node.connections},
                                  {"draining", node.draining},
                                  {"lease_expires_at", rfc3339(node.lease_expires_at)}});
  return json::object{{"state", status.state}, {"node_id", status.node_id}, {"nodes", list}};
}

// The parts of one snapshot, filled by the answers as they come, from any thread.
struct snapshot_parts {
  std::mutex mutex;
  int awaited = 0;
  std::optional<tree_node> tree;
  std::optional<caps_in_use> caps;
  std::optional<std::vector<cluster_node_info>> cluster_nodes;
  std::shared_ptr<server_state> state;
  std::function<void(std::string)> done;

  // Called once per part; the last one writes the snapshot.
  void part_done() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (--awaited > 0) return;
    }
    auto& tree_service = state->tree;
    const double uptime_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - state->started_at).count();
    json::object snapshot;
    snapshot["time"] = rfc3339(std::chrono::system_clock::now());
    snapshot["uptime_s"] = uptime_s;
    snapshot["ready"] = tree_service.ready();
    snapshot["draining"] = tree_service.draining();
    snapshot["tree"] = tree ? tree_json(*tree) : json::value(nullptr);
    snapshot["caps"] = caps_json(caps);
    snapshot["totals"] = totals_json(state->stats);
    snapshot["upstream"] = upstream_json(tree);
    snapshot["cluster"] = cluster_json(tree_service.cluster(), cluster_nodes);
    done(json_text(snapshot));
  }
};

// The callback that puts one answer into its part of the snapshot.
template <class T>
auto fill(std::shared_ptr<snapshot_parts> parts, std::optional<T> snapshot_parts::*part) {
  return [parts = std::move(parts), part](std::optional<T> answer) {
    {
      std::lock_guard<std::mutex> lock(parts->mutex);
      (*parts).*part = std::move(answer);
    }
    parts->part_done();
  };
}

}  // namespace

std::string dashboard_hello(const server_state& state, unsigned interval_ms) {
  return json_text(json::object{{"node", state.tree.node_id()},
                                {"mode", state.config.app.mode},
                                {"version", build_version()},
                                {"faults_enabled", state.config.faults.enabled},
                                {"cluster", state.config.cluster.enabled()},
                                {"interval_ms", interval_ms},
                                {"events_kept", event_journal::kKept}});
}

void collect_dashboard_snapshot(std::shared_ptr<server_state> state,
                                std::function<void(std::string)> done) {
  auto parts = std::make_shared<snapshot_parts>();
  parts->state = state;
  parts->done = std::move(done);
  const bool cluster = state->config.cluster.enabled();
  parts->awaited = cluster ? 3 : 2;
  auto& tree_service = state->tree;
  tree_service.tree(fill(parts, &snapshot_parts::tree));
  tree_service.caps(kTopEntries, fill(parts, &snapshot_parts::caps));
  if (cluster) tree_service.cluster_nodes(fill(parts, &snapshot_parts::cluster_nodes));
}

}  // namespace wsvisor
