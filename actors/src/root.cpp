#include "root.hpp"

#include <spdlog/spdlog.h>

#include "limit_guard.hpp"
#include "messages.hpp"
#include "shard.hpp"

namespace wsvisor {

caf::behavior root_actor(caf::stateful_actor<root_state>* self,
                         std::shared_ptr<service_context> context) {
  self->state.context = context;
  auto guard = self->spawn<caf::monitored>(limit_guard_actor, context);
  std::vector<caf::actor> shards;
  for (unsigned i = 0; i < context->shard_count; ++i)
    shards.push_back(self->spawn<caf::monitored>(shard_actor, context, i));
  {
    std::lock_guard<std::mutex> lock(context->handles_mutex);
    context->guard_handle = guard;
    context->shard_handles = shards;
  }
  self->set_down_handler([self](caf::down_msg& down) {
    spdlog::error("service actor {} stopped: {}", caf::to_string(down.source),
                  caf::to_string(down.reason));
  });
  // Stopping the root stops its children first.
  self->set_exit_handler([self](caf::exit_msg& exit) {
    auto& context = *self->state.context;
    for (auto& shard : context.shards()) self->send_exit(shard, exit.reason);
    if (auto g = context.guard()) self->send_exit(g, exit.reason);
    self->quit(exit.reason);
  });
  context->tree_up = true;
  spdlog::info("supervision tree up: limit_guard and {} shards", context->shard_count);
  return {
      [](ping_atom) { return pong_atom::value; },
  };
}

}  // namespace wsvisor
