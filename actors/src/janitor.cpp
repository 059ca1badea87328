#include "janitor.hpp"

#include "fan_in.hpp"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <wsvisor/log.hpp>

#include <algorithm>
#include <stdexcept>

namespace wsvisor {
namespace {

using self_ptr = caf::stateful_actor<janitor_state>*;
// How many times a moderate sweep looks for answers to its probe (see after_probe).
constexpr int kMaxProbeLooks = 4;
constexpr auto kShortestDrainTick = std::chrono::milliseconds(1);

double ms_since(self_ptr self, steady_time t) {
  return std::chrono::duration<double, std::milli>(self->state.context->now() - t).count();
}

// The wait before a sweep judges its probe: probe_timeout, or less when the upgrade the
// sweep serves would give up first.
caf::timespan probe_wait(self_ptr self, const sweep_job& job) {
  const auto now = self->state.context->now();
  const caf::timespan full = self->state.context->config.janitor.probe_timeout;
  if (job.deadline - now >= full) return full;
  return std::max(caf::timespan{0}, std::chrono::duration_cast<caf::timespan>(job.deadline - now));
}

// Every shard, the same question (see fan_in.hpp).
template <class Answer, class... Ts>
void ask_all_shards(self_ptr self, std::chrono::milliseconds timeout,
                    std::function<void(std::vector<Answer>&)> done, Ts... request) {
  ask_each<Answer>(self, self->state.context->shards(), timeout, std::move(done), request...);
}

void finish_job(self_ptr self, uint64_t job_id) {
  auto it = self->state.jobs.find(job_id);
  if (it == self->state.jobs.end()) return;
  auto& job = it->second;
  auto& stats = self->state.context->stats;
  job.result.duration_ms = ms_since(self, job.started);
  stats.sweeps(job.kind).Increment();
  stats.sweep_duration_seconds().Observe(job.result.duration_ms / 1000.0);
  if (job.result.evicted() > 0) {
    stats.evictions(eviction_reason::emergency)
        .Increment(static_cast<double>(job.result.evicted()));
    log_event(spdlog::level::info, "sweep", "sweep",
              {{"kind", to_string(job.kind)},
               {"level", to_string(job.level)},
               {"scope", job.scope.describe()},
               {"evicted", job.result.evicted()},
               {"dead", job.result.dead},
               {"zombie", job.result.zombie},
               {"idle", job.result.idle},
               {"healthy", job.result.healthy},
               {"duration_ms", job.result.duration_ms}});
  }
  job.promise.deliver(job.result);
  self->state.jobs.erase(it);
}

bool enough(const sweep_job& job) {
  return job.needed > 0 && job.result.evicted() >= job.needed;
}

// Sweep evictions close with 1013 (CONTRACT section 4); the slot is freed at once and
// the session closes TCP as soon as the frame is out, without waiting for an answer.
void evict(self_ptr self, const connection_snapshot& c) {
  self->send(c.actor, evict_atom::value, uint16_t{1013}, std::string("evicted"),
             close_reason::evicted);
}

// aggressive: the longest idle first; force: then the oldest, healthy or not.
void run_ordered_levels(self_ptr self, sweep_job& job) {
  auto& rest = job.candidates;
  if (job.level >= sweep_level::aggressive && !enough(job)) {
    std::sort(rest.begin(), rest.end(), [](const auto& a, const auto& b) {
      return a.live.last_message < b.live.last_message;
    });
    size_t used = 0;
    for (; used < rest.size() && job.result.evicted() < job.needed; ++used) {
      evict(self, rest[used]);
      ++job.result.idle;
    }
    rest.erase(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(used));
  }
  if (job.level >= sweep_level::force && !enough(job)) {
    std::sort(rest.begin(), rest.end(),
              [](const auto& a, const auto& b) { return a.live.opened_at < b.live.opened_at; });
    for (size_t i = 0; i < rest.size() && job.result.evicted() < job.needed; ++i) {
      evict(self, rest[i]);
      ++job.result.healthy;
    }
  }
}

void start_job(self_ptr self, uint64_t job_id) {
  const auto timeout = self->state.context->config.limits.admission_timeout;
  ask_all_shards<std::vector<connection_snapshot>>(
      self, timeout,
      [self, job_id](std::vector<std::vector<connection_snapshot>>& per_shard) {
        auto it = self->state.jobs.find(job_id);
        if (it == self->state.jobs.end()) return;
        auto& job = it->second;
        const auto& janitor = self->state.context->config.janitor;
        const auto now = self->state.context->now();
        uint64_t in_scope = 0;
        for (auto& list : per_shard) in_scope += list.size();
        if (job.kind == sweep_kind::admin)
          job.needed = admin_sweep_target(self->state.context->config, job.scope, in_scope);
        // conservative: known dead (a ping unanswered past pong_timeout) or stuck closing.
        for (auto& list : per_shard) {
          for (auto& c : list) {
            const bool unanswered = c.live.ping_sent_at != steady_time{} &&
                                    now - c.live.ping_sent_at >= janitor.pong_timeout;
            if (c.live.closing || unanswered) {
              evict(self, c);
              ++job.result.dead;
            } else if (c.live.open) {
              job.candidates.push_back(std::move(c));
            }
          }
        }
        const bool stop_early = job.kind != sweep_kind::admin && enough(job);
        if (job.level == sweep_level::conservative || stop_early || job.candidates.empty())
          return finish_job(self, job_id);
        // moderate: ping everyone left in scope; who stays silent for probe_timeout is
        // a zombie.
        job.probe_sent = now;
        for (auto& c : job.candidates) self->send(c.actor, probe_atom::value);
        log_event(
            spdlog::level::debug, "sweep_probe", "sweep: probing with pings",
            {{"scope", job.scope.describe()},
             {"probed", static_cast<uint64_t>(job.candidates.size())},
             {"wait_ms", static_cast<int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  probe_wait(self, job))
                                                  .count())}});
        self->delayed_send(self, probe_wait(self, job), probed_atom::value, job_id);
      },
      snapshot_atom::value, self->state.jobs[job_id].scope);
}

void after_probe(self_ptr self, uint64_t job_id) {
  auto it = self->state.jobs.find(job_id);
  if (it == self->state.jobs.end()) return;
  const auto timeout = self->state.context->config.limits.admission_timeout;
  ask_all_shards<std::vector<connection_snapshot>>(
      self, timeout,
      [self, job_id](std::vector<std::vector<connection_snapshot>>& per_shard) {
        auto it = self->state.jobs.find(job_id);
        if (it == self->state.jobs.end()) return;
        auto& job = it->second;
        std::unordered_map<caf::actor_addr, const connection_snapshot*> now_seen;
        for (auto& list : per_shard)
          for (auto& c : list) now_seen.emplace(c.actor.address(), &c);
        // Silent: no frame since the probe, its ping went out at least probe_timeout ago,
        // and nothing waits unread on its socket. Each connection is judged on its own
        // ping's time: with thousands probed at once, pings leave the server's busy io
        // threads over a while. Bytes waiting unread are an answer the server has not
        // read yet (its own backlog, not a zombie): such a connection, like one whose
        // ping is too young, is undecided, and looked at again if there is time.
        const auto& janitor = self->state.context->config.janitor;
        const auto now = self->state.context->now();
        std::vector<connection_snapshot> responsive;
        std::vector<connection_snapshot> silent;
        std::vector<connection_snapshot> undecided;
        for (auto& c : job.candidates) {
          auto seen = now_seen.find(c.actor.address());
          if (seen == now_seen.end()) continue;  // gone meanwhile
          const auto& snap = *seen->second;
          if (snap.live.last_frame_in >= job.probe_sent) {
            responsive.push_back(snap);
            continue;
          }
          // (A tenth of slack: the ping leaves a moment after the probe is sent.)
          const bool pinged_long_enough =
              snap.live.ping_sent_at != steady_time{} &&
              now - snap.live.ping_sent_at >= janitor.probe_timeout - janitor.probe_timeout / 10;
          if (pinged_long_enough && snap.unread_bytes == 0)
            silent.push_back(snap);
          else
            undecided.push_back(snap);
        }
        // Automatic sweeps stop as soon as enough slots are free: the longest silent
        // go first. An admin sweep evicts every one of them.
        std::sort(silent.begin(), silent.end(), [](const auto& a, const auto& b) {
          return a.live.last_frame_in < b.live.last_frame_in;
        });
        for (auto& c : silent) {
          if (job.kind != sweep_kind::admin && enough(job)) {
            responsive.push_back(std::move(c));
            continue;
          }
          evict(self, c);
          ++job.result.zombie;
        }
        const bool stop_early = job.kind != sweep_kind::admin && enough(job);
        // Another look at the undecided, if it still ends before the deadline and the
        // server is still catching up (fewer undecided than at the last look).
        const bool time_for_another_look =
            job.probe_looks < kMaxProbeLooks && now + janitor.probe_timeout <= job.deadline;
        const bool catching_up = job.probe_looks == 1 || undecided.size() < job.last_undecided;
        if (!stop_early && !undecided.empty() && time_for_another_look && catching_up) {
          ++job.probe_looks;
          job.last_undecided = undecided.size();
          responsive.insert(responsive.end(), std::make_move_iterator(undecided.begin()),
                            std::make_move_iterator(undecided.end()));
          job.candidates = std::move(responsive);
          self->delayed_send(self, janitor.probe_timeout, probed_atom::value, job_id);
          return;
        }
        // Out of time or of progress: the undecided are given the benefit of the doubt.
        responsive.insert(responsive.end(), std::make_move_iterator(undecided.begin()),
                          std::make_move_iterator(undecided.end()));
        job.candidates = std::move(responsive);
        if (!stop_early) run_ordered_levels(self, job);
        finish_job(self, job_id);
      },
      snapshot_atom::value, it->second.scope);
}

void periodic_sweep(self_ptr self) {
  auto& state = self->state;
  if (state.periodic_running) return;  // the last one has not finished: skip a beat
  state.periodic_running = true;
  const auto started = state.context->now();
  ask_all_shards<periodic_counts>(
      self, state.context->config.janitor.sweep_interval,
      [self, started](std::vector<periodic_counts>& answers) {
        self->state.periodic_running = false;
        periodic_counts total;
        for (auto& a : answers) {
          total.zombie += a.zombie;
          total.idle += a.idle;
          total.lifetime += a.lifetime;
        }
        auto& stats = self->state.context->stats;
        const double ms = ms_since(self, started);
        stats.sweeps(sweep_kind::periodic).Increment();
        stats.sweep_duration_seconds().Observe(ms / 1000.0);
        const auto evicted = total.zombie + total.idle + total.lifetime;
        if (evicted > 0)
          log_event(spdlog::level::info, "sweep", "sweep",
                    {{"kind", "periodic"},
                     {"evicted", evicted},
                     {"zombie", total.zombie},
                     {"idle", total.idle},
                     {"lifetime", total.lifetime},
                     {"duration_ms", ms}});
      },
      tick_atom::value);
}

void drain_step(self_ptr self) {
  auto& state = self->state;
  const size_t end = std::min(state.drain_queue.size(), state.drain_next + state.drain_batch);
  for (; state.drain_next < end; ++state.drain_next) {
    self->send(state.drain_queue[state.drain_next], close_atom::value, uint16_t{1001},
               std::string("shutdown"), close_reason::drain);
    state.context->stats.evictions(eviction_reason::drain).Increment();
  }
  if (state.drain_next < state.drain_queue.size()) {
    self->delayed_send(self, state.drain_tick, drain_tick_atom::value);
  } else {
    state.drain_queue.clear();
  }
}

}  // namespace

uint64_t admin_sweep_target(const settings& config, const sweep_scope& scope, uint64_t in_scope) {
  uint64_t keep = 0;
  switch (scope.what) {
    case sweep_scope::kind::all:
      keep = config.limits.soft_connections;
      break;
    case sweep_scope::kind::user:
      keep = config.limits.max_per_user * 7 / 10;
      break;
    case sweep_scope::kind::ip:
      keep = config.limits.max_per_ip * 7 / 10;
      break;
  }
  return in_scope > keep ? in_scope - keep : 0;
}

caf::behavior janitor_actor(self_ptr self, std::shared_ptr<service_context> context) {
  self->state.context = context;
  self->delayed_send(self, context->config.janitor.sweep_interval, tick_atom::value);
  // A janitor restarted during a drain carries it on: the drain is the service's state,
  // not the janitor's (CONTRACT section 9 holds through a janitor crash).
  if (context->draining) self->send(self, drain_atom::value);
  return {
      [self](tick_atom) {
        periodic_sweep(self);
        self->delayed_send(self, self->state.context->config.janitor.sweep_interval,
                           tick_atom::value);
      },
      [self](sweep_atom, sweep_order& order) -> caf::result<sweep_result> {
        const uint64_t id = self->state.next_job++;
        auto& job = self->state.jobs[id];
        job.level = order.level;
        job.scope = std::move(order.scope);
        job.needed = order.needed;
        job.kind = order.kind;
        job.deadline = order.deadline;
        job.started = self->state.context->now();
        job.result.level = order.level;
        job.result.scope = job.scope;
        job.promise = self->make_response_promise();
        auto promise = job.promise;
        start_job(self, id);
        return promise;
      },
      [self](probed_atom, uint64_t job_id) { after_probe(self, job_id); },
      [self](drain_atom) {
        // Paced drain (CONTRACT section 9): every connection gets 1001 after its queued
        // messages, the closes spread across what is left of drain_spread (all of it,
        // unless this janitor took over a drain from one that crashed).
        if (self->state.draining) return;
        self->state.draining = true;
        ask_all_shards<std::vector<connection_snapshot>>(
            self, self->state.context->config.limits.admission_timeout,
            [self](std::vector<std::vector<connection_snapshot>>& per_shard) {
              auto& state = self->state;
              for (auto& list : per_shard)
                for (auto& c : list)
                  if (!c.live.closing) state.drain_queue.push_back(c.actor);
              const auto& context = *state.context;
              const auto began = context.drain_began.load();
              const auto elapsed =
                  began == 0 ? std::chrono::milliseconds(0)
                             : std::chrono::duration_cast<std::chrono::milliseconds>(
                                   context.now() - steady_time(steady_time::duration(began)));
              const auto spread = std::max(std::chrono::milliseconds(0),
                                           context.config.shutdown.drain_spread - elapsed);
              // Spread the closes evenly over the window: one batch per tick, ticks no
              // shorter than 1 ms.
              const auto n = std::max<size_t>(1, state.drain_queue.size());
              state.drain_tick = std::max<std::chrono::milliseconds>(
                  kShortestDrainTick, spread / static_cast<int64_t>(n));
              const auto ticks = std::max<int64_t>(1, spread / state.drain_tick);
              state.drain_batch = std::max<size_t>(
                  1, (n + static_cast<size_t>(ticks) - 1) / static_cast<size_t>(ticks));
              if (!state.drain_queue.empty())
                log_event(spdlog::level::info, "drain_closing",
                          "drain: closing connections with 1001, paced",
                          {{"connections", static_cast<uint64_t>(state.drain_queue.size())},
                           {"spread", format_duration(spread)}});
              drain_step(self);
            },
            snapshot_atom::value, sweep_scope{});
      },
      [self](drain_tick_atom) { drain_step(self); },
      [](fault_atom, crash_atom) -> caf::result<void> {
        throw std::runtime_error("janitor crash (fault injection)");
      },
  };
}

}  // namespace wsvisor
