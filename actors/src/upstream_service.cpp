#include "upstream_service.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <wsvisor/log.hpp>

#include <stdexcept>

namespace wsvisor {
namespace {

using self_ptr = caf::stateful_actor<upstream_service_state>*;

// upstream service -> itself: an attempt ended (call id, attempt number, reply); a
// backoff is over (call id).
using attempt_done_atom = caf::atom_constant<caf::atom("attdone")>;
using retry_atom = caf::atom_constant<caf::atom("retry")>;
using held_atom = caf::atom_constant<caf::atom("held")>;

void start_waiting(self_ptr self);

void set_breaker_gauge(self_ptr self) {
  self->state.context->stats.upstream_breaker_open().Set(
      self->state.breaker->current() == circuit_breaker::state::closed ? 0 : 1);
}

// error and timeout are the backend's (or the operator's) to fix: a warning naming the
// key, throttled since a broken backend fails every call. The other failures are
// decisions (rejected, busy, breaker) with their own metrics and frames: debug.
void log_failure(const upstream_call_state& call, const upstream_result& result) {
  const auto outcome = result.outcome;
  if (outcome == upstream_outcome::ok || outcome == upstream_outcome::cancelled) return;
  const bool operator_problem =
      outcome == upstream_outcome::error || outcome == upstream_outcome::timeout;
  static log_throttle failures{"upstream_failures_summary",
                               "calls to the backend failed (counts by outcome)", 5};
  if (operator_problem && !failures.admit(to_string(outcome))) return;
  const char* message =
      outcome == upstream_outcome::timeout
          ? "call to the backend failed: no answer within upstream.timeout"
          : (outcome == upstream_outcome::error
                 ? "call to the backend failed: check upstream.url and the backend's answer "
                   "(a body over upstream.max_response_bytes is an error)"
                 : "call to the backend failed");
  log_event(operator_problem ? spdlog::level::warn : spdlog::level::debug, "upstream_failed",
            message,
            {{"hook", to_string(call.request.hook)},
             {"delivery", result.delivery},
             {"outcome", to_string(outcome)},
             {"status", result.status},
             {"attempts", call.attempts},
             {"error", call.last_reply.error}});
}

// The call's last word: the connection is answered, counted, forgotten.
void finish(self_ptr self, uint64_t id, upstream_outcome outcome) {
  auto& calls = self->state.calls->by_id;
  auto it = calls.find(id);
  if (it == calls.end()) return;
  auto& call = it->second;
  auto& stats = self->state.context->stats;
  upstream_result result;
  result.outcome = outcome;
  result.delivery = std::move(call.request.delivery);
  result.tag = std::move(call.request.tag);
  if (call.last_reply.result == upstream_reply::outcome::response) {
    result.status = call.last_reply.status;
    result.content_type = call.last_reply.header("content-type");
    if (const auto after = retry_after_of(call.last_reply)) result.retry_after = *after;
    if (outcome == upstream_outcome::ok || outcome == upstream_outcome::rejected)
      result.body = std::move(call.last_reply.body);
  }
  stats.upstream_requests(call.request.hook, outcome).Increment();
  if (call.attempts > 0)
    stats.upstream_duration_seconds().Observe(
        std::chrono::duration<double>(self->state.context->now() - call.started).count());
  log_failure(call, result);
  call.promise.deliver(std::move(result));
  calls.erase(it);
}

void start_attempt(self_ptr self, uint64_t id) {
  auto& state = self->state;
  auto& call = state.calls->by_id.at(id);
  const auto& config = state.context->config.upstream;
  upstream_attempt attempt;
  attempt.url = call.request.url;
  attempt.headers = call.request.headers;
  // upstream.token: every request to the backend carries it (CONTRACT 11.1).
  if (!config.token.empty())
    attempt.headers.emplace_back("Authorization", "Bearer " + config.token);
  attempt.body = call.request.body;
  attempt.timeout = config.timeout;
  if (call.attempts == 0) call.started = self->state.context->now();
  const unsigned number = ++call.attempts;
  if (number > 1) state.context->stats.upstream_retries().Increment();
  ++state.running;
  state.context->stats.upstream_inflight().Increment();
  auto me = caf::actor_cast<caf::actor>(self);
  call.running_attempt =
      state.context->http_client->start(std::move(attempt), [me, id, number](upstream_reply reply) {
        caf::anon_send(me, attempt_done_atom::value, id, number, std::move(reply));
      });
}

// A call may go when the breaker lets it and there is room under max_inflight.
void try_start(self_ptr self, uint64_t id) {
  auto& state = self->state;
  auto& call = state.calls->by_id.at(id);
  if (!call.probe) {
    bool probe = false;
    if (!state.breaker->allow(self->state.context->now(), probe)) {
      set_breaker_gauge(self);
      return finish(self, id, upstream_outcome::breaker);
    }
    call.probe = probe;
    set_breaker_gauge(self);
  }
  if (state.running >= state.context->config.upstream.max_inflight) {
    state.waiting.push_back(id);
    return;
  }
  start_attempt(self, id);
}

void start_waiting(self_ptr self) {
  auto& state = self->state;
  while (!state.waiting.empty() && state.running < state.context->config.upstream.max_inflight) {
    const auto id = state.waiting.front();
    state.waiting.pop_front();
    if (state.calls->by_id.count(id)) start_attempt(self, id);
  }
}

void on_attempt_done(self_ptr self, uint64_t id, unsigned number, upstream_reply& reply) {
  auto& state = self->state;
  --state.running;
  state.context->stats.upstream_inflight().Decrement();
  auto it = state.calls->by_id.find(id);
  if (it == state.calls->by_id.end() || it->second.attempts != number) return start_waiting(self);
  auto& call = it->second;
  call.running_attempt = 0;
  const auto meaning = classify(reply);
  if (reply.result == upstream_reply::outcome::cancelled) {
    if (call.probe) state.breaker->abandon_probe();
  } else {
    state.breaker->record(self->state.context->now(), meaning.failure, call.probe);
    call.probe = false;
    set_breaker_gauge(self);
  }
  call.last_reply = std::move(reply);
  const auto& config = state.context->config.upstream;
  std::optional<std::chrono::milliseconds> delay;
  if (call.request.retried)
    delay = retry_delay(
        {static_cast<unsigned>(config.retries), config.backoff_min, config.backoff_max},
        call.last_reply, call.attempts, std::uniform_real_distribution<double>(0, 1)(state.random));
  if (delay) {
    self->delayed_send(self, *delay, retry_atom::value, id);
  } else {
    finish(self, id, meaning.outcome);
  }
  start_waiting(self);
}

// When the service dies, every call it held is answered and its attempt cancelled.
void answer_everyone(const std::shared_ptr<upstream_port>& port, upstream_calls& calls) {
  for (auto& [id, call] : calls.by_id) {
    if (call.running_attempt != 0) port->cancel(call.running_attempt);
    upstream_result result;
    result.outcome = upstream_outcome::error;
    result.delivery = std::move(call.request.delivery);
    result.tag = std::move(call.request.tag);
    call.promise.deliver(std::move(result));
  }
  calls.by_id.clear();
}

}  // namespace

caf::behavior upstream_service_actor(self_ptr self, std::shared_ptr<service_context> context) {
  auto& state = self->state;
  state.context = context;
  const auto& config = context->config.upstream;
  state.breaker.emplace(config.breaker_failures, config.breaker_window, config.breaker_open);
  context->stats.upstream_breaker_open().Set(0);
  // At death: every call is answered, and the context forgets this handle, so that a
  // connection asking during the restart backoff waits for the next service instead of
  // sending to a dead one (connection_actor.cpp, send_to_service).
  self->attach_functor([port = context->http_client, calls = state.calls, context,
                        me = self->address()](const caf::error&) {
    context->withdraw_upstream_service(me);
    answer_everyone(port, *calls);
  });
  return {
      [self](upstream_atom, upstream_request& request) -> caf::result<upstream_result> {
        auto& state = self->state;
        const uint64_t id = state.next_call++;
        auto& call = state.calls->by_id[id];
        // Before make_response_promise, which takes the sender over.
        call.owner = caf::actor_cast<caf::actor_addr>(self->current_sender());
        call.promise = self->make_response_promise();
        call.request = std::move(request);
        auto promise = call.promise;
        try_start(self, id);
        return promise;
      },
      [self](attempt_done_atom, uint64_t id, unsigned number, upstream_reply& reply) {
        if (self->state.response_delay_ms > 0) {
          // Fault injection: every response is held this long before it counts.
          self->delayed_send(self, std::chrono::milliseconds(self->state.response_delay_ms),
                             held_atom::value, id, number, std::move(reply));
          return;
        }
        on_attempt_done(self, id, number, reply);
      },
      [self](held_atom, uint64_t id, unsigned number, upstream_reply& reply) {
        on_attempt_done(self, id, number, reply);
      },
      [self](retry_atom, uint64_t id) {
        if (self->state.calls->by_id.count(id)) try_start(self, id);
      },
      [self](cancel_atom, const caf::actor_addr& owner) {
        // The connection ended: its calls stop here (an attempt on the wire is aborted
        // and answered cancelled when the port says so; nothing is retried).
        auto& state = self->state;
        std::vector<uint64_t> ended;
        for (auto& [id, call] : state.calls->by_id) {
          if (call.owner != owner) continue;
          call.request.retried = false;
          if (call.running_attempt != 0)
            state.context->http_client->cancel(call.running_attempt);
          else
            ended.push_back(id);
        }
        for (auto id : ended) finish(self, id, upstream_outcome::cancelled);
      },
      [self](status_atom) {
        return upstream_status{to_string(self->state.breaker->current()), self->state.running};
      },
      [self](fault_atom, delay_atom, uint32_t ms) { self->state.response_delay_ms = ms; },
      [self](fault_atom, clear_atom) { self->state.response_delay_ms = 0; },
      [](fault_atom, crash_atom) -> caf::result<void> {
        throw std::runtime_error("upstream crash (fault injection)");
      },
  };
}

}  // namespace wsvisor
