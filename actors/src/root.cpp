#include "root.hpp"

#include <prometheus/counter.h>
#include <wsvisor/log.hpp>

#include <wsvisor/supervisor.hpp>

#include "cluster_service.hpp"
#include "hub_service.hpp"
#include "janitor.hpp"
#include "lifecycle_events.hpp"
#include "limit_guard.hpp"
#include "shard.hpp"
#include "upstream_service.hpp"

namespace wsvisor {
namespace {

actor_kind kind_of(const std::string& child_id) {
  if (child_id == "limit_guard") return actor_kind::limit_guard;
  if (child_id == "janitor") return actor_kind::janitor;
  if (child_id == "upstream") return actor_kind::upstream;
  if (child_id == "events") return actor_kind::events;
  if (child_id == "hub") return actor_kind::hub;
  if (child_id == "cluster") return actor_kind::cluster;
  return actor_kind::shard;
}

// A root service: `behavior` spawned with the context, its handle published by `publish`
// after each (re)start, so that everyone asks the context for the current one.
template <class Behavior>
child_spec service_child(std::string id, const std::shared_ptr<service_context>& context,
                         Behavior behavior, void (service_context::*publish)(caf::actor)) {
  child_spec child;
  child.id = std::move(id);
  child.start = [context, behavior, publish](caf::local_actor& root) {
    auto actor = root.spawn(behavior, context);
    ((*context).*publish)(actor);
    return actor;
  };
  return child;
}

}  // namespace

caf::actor spawn_service_tree(std::shared_ptr<service_context> context) {
  const auto& supervision = context->config.supervision;
  supervisor_spec spec;
  spec.name = "root";
  spec.strategy = restart_strategy::one_for_one;
  spec.intensity.max_restarts = supervision.service_restarts;
  spec.intensity.period = supervision.service_restart_period;
  backoff_policy backoff;
  backoff.min_delay = supervision.backoff_min;
  backoff.max_delay = supervision.backoff_max;
  spec.backoff = backoff;

  spec.children.push_back(
      service_child("limit_guard", context, limit_guard_actor, &service_context::set_guard));
  spec.children.push_back(
      service_child("janitor", context, janitor_actor, &service_context::set_janitor));
  // The backend's services (CONTRACT 11), before the shards: their connections use them.
  if (!context->config.upstream.url.empty())
    spec.children.push_back(service_child("upstream", context, upstream_service_actor,
                                          &service_context::set_upstream_service));
  if (context->events)
    spec.children.push_back(service_child("events", context, events_service_actor,
                                          &service_context::set_events_service));
  // Hub mode's channels (CONTRACT 13), before the shards: their connections subscribe.
  if (context->config.app.mode == "hub")
    spec.children.push_back(
        service_child("hub", context, hub_actor, &service_context::set_hub_service));
  // Cluster mode's Redis client (CONTRACT 14), before the shards: admission claims through it.
  if (context->redis)
    spec.children.push_back(
        service_child("cluster", context, cluster_actor, &service_context::set_cluster_service));

  for (unsigned i = 0; i < context->shard_count; ++i) {
    child_spec shard;
    shard.id = "shard-" + std::to_string(i);
    shard.start = [context, i](caf::local_actor& root) {
      auto actor = root.spawn(shard_actor, context, i);
      context->set_shard(i, actor);
      // Children start in order: the last shard up means the whole tree is up.
      if (i + 1 == context->shard_count) {
        context->tree_up = true;
        context->refresh_ready();
      }
      return actor;
    };
    spec.children.push_back(shard);
  }

  spec.on_restart = [context](const std::string& child_id, const caf::actor&) {
    context->stats.actor_restarts(kind_of(child_id)).Increment();
    log_event(spdlog::level::warn, "restart", "supervisor restarted a child",
              {{"supervisor", "root"}, {"child", child_id}});
  };
  auto root = context->system.spawn<supervisor>(std::move(spec));
  log_event(spdlog::level::info, "tree_up", "supervision tree up",
            {{"root", "one_for_one"}, {"shards", context->shard_count}});
  return root;
}

}  // namespace wsvisor
