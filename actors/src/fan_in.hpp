// Asks several actors the same question and gathers the answers: the janitor and the
// admin API both ask every shard at once.
#pragma once

#include <caf/actor.hpp>
#include <caf/error.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

namespace wsvisor {

// Calls `done` once with every answer that came back within `timeout`; an actor that
// cannot answer (dead, or being restarted) is skipped. Null handles are skipped too.
template <class Answer, class Self, class... Ts>
void ask_each(Self* self, const std::vector<caf::actor>& actors, std::chrono::milliseconds timeout,
              std::function<void(std::vector<Answer>&)> done, Ts... request) {
  struct gathering {
    std::vector<Answer> answers;
    size_t waiting = 0;
    std::function<void(std::vector<Answer>&)> done;
  };
  auto gather = std::make_shared<gathering>();
  gather->done = std::move(done);
  for (auto& actor : actors)
    if (actor) ++gather->waiting;
  if (gather->waiting == 0) return gather->done(gather->answers);
  for (auto& actor : actors) {
    if (!actor) continue;
    self->request(actor, timeout, request...)
        .then(
            [gather](Answer& answer) {
              gather->answers.push_back(std::move(answer));
              if (--gather->waiting == 0) gather->done(gather->answers);
            },
            [gather](caf::error&) {
              if (--gather->waiting == 0) gather->done(gather->answers);
            });
  }
}

}  // namespace wsvisor
