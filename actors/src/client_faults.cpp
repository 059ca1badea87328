#include "client_faults.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <prometheus/counter.h>
#include <wsvisor/log.hpp>

#include "fan_in.hpp"
#include "messages.hpp"

namespace wsvisor {

namespace {

using action = fault_request::action;

constexpr auto kSnapshotTimeout = std::chrono::seconds(2);

client_fault_action counted_as(action what) {
  switch (what) {
    case action::stall:
      return client_fault_action::stall;
    case action::latency:
      return client_fault_action::latency;
    case action::drop:
      return client_fault_action::drop;
    case action::close:
      return client_fault_action::close;
    case action::reset:
      return client_fault_action::reset;
    case action::zombie:
      return client_fault_action::zombie;
    default:
      return client_fault_action::restart;
  }
}

// What a session is told (stall, latency, drop, zombie, reset); the connection actor
// adds what its application decides (client_fault::pushes_only).
client_fault for_session(const fault_request& fault) {
  client_fault message;
  message.action = counted_as(fault.what);
  message.ms = fault.delay_ms;
  message.jitter_ms = fault.jitter_ms;
  message.ratio = fault.ratio;
  return message;
}

// The connections a fault reaches: those of the user or the id, a random share of the
// open ones, or (restart without a selector) every open one.
std::vector<connection_snapshot> chosen(const fault_request& fault,
                                        std::vector<std::vector<connection_snapshot>>& per_shard) {
  std::vector<connection_snapshot> picked;
  for (auto& list : per_shard)
    for (auto& c : list) {
      if (c.live.closing) continue;
      if (fault.id && c.id != *fault.id) continue;
      // A share, or every connection: open ones (a handshake in flight is not a client
      // that can see a fault yet); by user or id: the handshaking too, as standing
      // faults reach new connections.
      if (!fault.user && !fault.id && !c.live.open) continue;
      picked.push_back(std::move(c));
    }
  if (fault.share && !picked.empty()) {
    auto count = static_cast<std::size_t>(std::llround(*fault.share * picked.size()));
    count = std::clamp<std::size_t>(count, 1, picked.size());
    std::mt19937_64 random{std::random_device{}()};
    std::shuffle(picked.begin(), picked.end(), random);
    picked.resize(count);
  }
  // A restart closes the oldest connections first.
  if (fault.what == action::restart)
    std::sort(
        picked.begin(), picked.end(),
        [](const connection_snapshot& a, const connection_snapshot& b) { return a.id < b.id; });
  return picked;
}

void tell(const fault_request& fault, const std::vector<connection_snapshot>& picked) {
  const auto n = picked.size();
  for (std::size_t i = 0; i < n; ++i) {
    const auto& target = picked[i].actor;
    switch (fault.what) {
      case action::close:
        caf::anon_send(target, close_atom::value, fault.code, fault.reason, close_reason::admin);
        break;
      case action::restart: {
        // The i-th of n at i/n of the spread: closes paced evenly over it.
        const auto at = fault.spread * static_cast<int64_t>(i) / static_cast<int64_t>(n);
        const std::string reason = "service restart";
        if (at.count() == 0)
          caf::anon_send(target, close_atom::value, uint16_t{1012}, reason, close_reason::admin);
        else
          caf::delayed_anon_send(target, at, close_atom::value, uint16_t{1012}, reason,
                                 close_reason::admin);
        break;
      }
      default:
        caf::anon_send(target, fault_atom::value, for_session(fault));
        break;
    }
  }
}

std::string selector_text(const fault_request& fault) {
  if (fault.user) return "user:" + *fault.user;
  if (fault.id) return "id:" + std::to_string(*fault.id);
  if (fault.share) return "share:" + std::to_string(*fault.share);
  return "all";
}

}  // namespace

void inject_client_fault(std::shared_ptr<service_context> context, fault_request fault,
                         std::function<void(uint64_t)> done) {
  // Latency and drop stand for the user's future connections too (shard.cpp hands
  // fault_for(user) to every new connection actor).
  if (fault.user && (fault.what == action::latency || fault.what == action::drop)) {
    auto standing = context->fault_for(*fault.user);
    if (fault.what == action::latency) {
      standing.latency_ms = fault.delay_ms;
      standing.jitter_ms = fault.jitter_ms;
    } else {
      standing.drop_ratio = fault.ratio;
    }
    context->set_fault(*fault.user, standing);
  }
  sweep_scope scope;
  if (fault.user) {
    scope.what = sweep_scope::kind::user;
    scope.value = *fault.user;
  }
  auto shards = context->shards();
  context->system.spawn([=](caf::event_based_actor* self) {
    ask_each<std::vector<connection_snapshot>>(
        self, shards, kSnapshotTimeout,
        [context, fault, done](std::vector<std::vector<connection_snapshot>>& per_shard) {
          const auto picked = chosen(fault, per_shard);
          tell(fault, picked);
          const auto kind = counted_as(fault.what);
          context->stats.faults(kind).Increment(static_cast<double>(picked.size()));
          log_event(spdlog::level::warn, "fault", "fault injection toward clients",
                    {{"action", to_string(kind)},
                     {"selector", selector_text(fault)},
                     {"applied", static_cast<uint64_t>(picked.size())},
                     // 0 where the action takes no such parameter
                     {"ms", fault.delay_ms},
                     {"jitter_ms", fault.jitter_ms},
                     {"ratio", fault.ratio},
                     {"code", fault.code},
                     {"spread_ms", static_cast<int64_t>(fault.spread.count())}});
          done(picked.size());
        },
        snapshot_atom::value, scope);
  });
}

}  // namespace wsvisor
