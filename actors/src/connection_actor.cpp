#include "connection_actor.hpp"

#include <prometheus/counter.h>
#include <wsvisor/log.hpp>

#include <stdexcept>
#include <string>
#include <thread>

#include "connection_end.hpp"

namespace wsvisor {
namespace {

using self_ptr = caf::stateful_actor<connection_state>*;

// connection -> itself: send this call to the upstream service again (it was down).
using redispatch_atom = caf::atom_constant<caf::atom("redisp")>;
// connection -> itself: run_later's work is due.
using later_atom = caf::atom_constant<caf::atom("later")>;
using later_work = std::function<void(connection_handle&)>;

// The longest one call to the backend can take: every attempt's timeout and the
// backoffs between them, plus a margin for the messages. A call that finds the upstream
// service down waits for its restart until then (send_to_service).
caf::timespan call_budget(const upstream_settings& upstream) {
  return (upstream.timeout + upstream.backoff_max) * (upstream.retries + 1) +
         std::chrono::seconds(1);
}

void restart_application(self_ptr self) {
  auto& state = self->state;
  state.app = state.context->app_factory();
  self->send(state.shard, crashed_atom::value, self->address());
}

// Runs one handler of the application; an exception restarts it (see the header).
template <class Handler>
void supervised(self_ptr self, Handler&& handler) {
  try {
    handler();
  } catch (const std::exception& error) {
    log_event(spdlog::level::warn, "connection_crashed",
              "connection handler threw: restarting it, socket kept",
              {{"id", self->state.identity.id}, {"error", error.what()}});
    restart_application(self);
  }
}

void deliver(self_ptr self, upstream_result result) {
  supervised(self, [&] { self->state.app->on_upstream(self->state, result); });
}

void dispatch(self_ptr self, upstream_request request);

// The next waiting call goes when one in flight is done (ordered per connection).
void call_done(self_ptr self) {
  auto& upstream = *self->state.upstream;
  --upstream.inflight;
  if (upstream.waiting.empty()) return;
  auto next = std::move(upstream.waiting.front());
  upstream.waiting.pop_front();
  dispatch(self, std::move(next));
}

// Sends a call (already counted in flight) to the upstream service. While that service
// is down (a crash, its restart under way: the context has no handle, see
// upstream_service.cpp) the call waits for the restarted one and goes then with the same
// delivery id, tried every upstream.backoff_min until its deadline (CONTRACT 11.1:
// "resent with the same delivery id"); a call out of time fails upstream_unavailable.
// A call the service held when it died is answered by it (upstream_unavailable).
void send_to_service(self_ptr self, upstream_request request, steady_time deadline) {
  auto& state = self->state;
  const auto& config = state.context->config.upstream;
  auto service = state.context->upstream_service();
  if (!service) {
    const auto wait = std::max<caf::timespan>(config.backoff_min, std::chrono::milliseconds(1));
    if (state.context->now() + wait < deadline) {
      self->delayed_send(self, wait, redispatch_atom::value, std::move(request), deadline);
      return;
    }
    // Out of time: failed as a message, so that the application is never called back
    // from inside its own call.
    upstream_result result;
    result.outcome = upstream_outcome::error;
    result.delivery = std::move(request.delivery);
    result.tag = std::move(request.tag);
    state.context->stats.upstream_requests(request.hook, result.outcome).Increment();
    self->send(self, upstream_atom::value, std::move(result), true);
    return;
  }
  const auto delivery = request.delivery;
  const auto tag = request.tag;
  // No request timeout: the service answers every call (the port times each attempt
  // out, a functor answers all of them if the service dies, and a dead handle bounces
  // the request at once), and a CAF timeout per call cost the clock thread a wake-up
  // each time (bench/RESULTS.md, gateway mode: 13 % of the CPU). `deadline` bounds the
  // waiting for a restarted service only.
  self->request(service, caf::infinite, upstream_atom::value, std::move(request))
      .then(
          [self](upstream_result& result) {
            call_done(self);
            deliver(self, std::move(result));
          },
          [self, delivery, tag](caf::error&) {
            upstream_result result;
            result.outcome = upstream_outcome::error;
            result.delivery = delivery;
            result.tag = tag;
            call_done(self);
            deliver(self, std::move(result));
          });
}

void dispatch(self_ptr self, upstream_request request) {
  auto& state = self->state;
  ++state.upstream->inflight;
  const auto deadline = state.context->now() + call_budget(state.context->config.upstream);
  send_to_service(self, std::move(request), deadline);
}

}  // namespace

void run_supervised(self_ptr self, const std::function<void()>& work) {
  supervised(self, work);
}

void run_in_connection(const caf::actor& connection, later_work work) {
  caf::anon_send(connection, later_atom::value, std::move(work));
}

void connection_state::run_later(std::chrono::milliseconds delay, later_work work) {
  self->delayed_send(self, delay, later_atom::value, std::move(work));
}

connection_state::~connection_state() {
  // Queued calls die with the connection; the upstream service drops its attempts
  // for this connection (nothing of it reaches the backend after its end).
  if (upstream && upstream->inflight > 0) {
    if (auto service = context->upstream_service())
      caf::anon_send(service, cancel_atom::value, self->address());
  }
  if (app && port) {
    try {
      app->on_close(*this);
    } catch (const std::exception&) {
      // The connection is ending anyway.
    }
  }
  if (port) port->actor_gone();
}

void connection_state::send(std::string payload, bool text) {
  port->send(std::move(payload), text);
}

void connection_state::close(uint16_t code, std::string reason) {
  port->close(code, std::move(reason), close_reason::application);
}

std::string connection_state::call_upstream(upstream_call call) {
  const auto& config = context->config.upstream;
  if (!upstream) upstream = std::make_unique<connection_upstream>();
  upstream_request request;
  request.hook = call.hook;
  request.delivery = connection_id + ":" + std::to_string(upstream->next_seq++);
  request.tag = std::move(call.tag);
  request.body = std::move(call.body);
  request.url = config.url + call.path;
  request.headers = std::move(call.headers);
  if (!call.content_type.empty()) request.headers.emplace_back("Content-Type", call.content_type);
  request.headers.emplace_back("X-Wsvisor-Connection", connection_id);
  request.headers.emplace_back("X-Wsvisor-User", identity.user);
  request.headers.emplace_back("X-Wsvisor-Delivery", request.delivery);
  if (!identity.meta.empty()) request.headers.emplace_back("X-Wsvisor-Meta", identity.meta);
  const auto delivery = request.delivery;
  if (upstream->inflight < config.per_connection_inflight) {
    dispatch(self, std::move(request));
  } else if (upstream->waiting.size() < config.queue) {
    upstream->waiting.push_back(std::move(request));
  } else {
    // More than upstream.queue waiting: the newest fails busy (CONTRACT 11.1).
    upstream_result result;
    result.outcome = upstream_outcome::busy;
    result.delivery = delivery;
    result.tag = std::move(request.tag);
    context->stats.upstream_requests(request.hook, result.outcome).Increment();
    self->send(self, upstream_atom::value, std::move(result), false);
  }
  return delivery;
}

namespace {

// A fault toward the client, to this connection's session. Hub mode: a dropped message
// is a dropped publication (the SDK's recovery is what gets tested), never a reply the
// SDK would wait for until its own timeout.
void apply_toward_client(connection_state& state, client_fault fault) {
  fault.pushes_only = state.context->config.app.mode == "hub";
  state.port->apply_fault(fault);
}

}  // namespace

caf::behavior connection_actor(self_ptr self, std::shared_ptr<service_context> context,
                               std::shared_ptr<session_port> port, connection_identity identity,
                               caf::actor shard, standing_fault fault) {
  auto& state = self->state;
  state.self = self;
  state.context = std::move(context);
  state.port = std::move(port);
  state.connection_id = state.context->connection_id(identity.id);
  state.identity = std::move(identity);
  state.shard = std::move(shard);
  state.fault = fault;
  state.app = state.context->app_factory();
  // The user's standing faults toward clients reach this new connection too.
  if (fault.latency_ms > 0) {
    client_fault latency;
    latency.action = client_fault_action::latency;
    latency.ms = fault.latency_ms;
    latency.jitter_ms = fault.jitter_ms;
    apply_toward_client(state, latency);
  }
  if (fault.drop_ratio > 0) {
    client_fault drop;
    drop.action = client_fault_action::drop;
    drop.ratio = fault.drop_ratio;
    apply_toward_client(state, drop);
  }
  return {
      [self](inbound_atom, std::string& payload, bool text) {
        supervised(self, [&] {
          auto& state = self->state;
          if (state.fault.poison) throw std::runtime_error("poisoned message (fault injection)");
          if (state.fault.delay_ms > 0)  // a slow handler, on purpose (fault injection)
            std::this_thread::sleep_for(std::chrono::milliseconds(state.fault.delay_ms));
          state.app->on_message(state, payload, text);
        });
      },
      [self](opened_atom) {
        if (self->state.app->identified_at_open())
          self->send(self->state.shard, connected_atom::value, self->address());
        supervised(self, [&] { self->state.app->on_open(self->state); });
      },
      [self](later_atom, later_work& work) { supervised(self, [&] { work(self->state); }); },
      // A result this actor made itself (busy, or no upstream service): in order, as a
      // message, so that the application is never called back from inside its call.
      [self](upstream_atom, upstream_result& result, bool dispatched) {
        if (dispatched) call_done(self);
        deliver(self, std::move(result));
      },
      [self](redispatch_atom, upstream_request& request, steady_time deadline) {
        send_to_service(self, std::move(request), deadline);
      },
      [self](fault_atom, crash_atom) {
        supervised(self, [] { throw std::runtime_error("crash (fault injection)"); });
      },
      [self](fault_atom, standing_fault fault) { self->state.fault = fault; },
      [self](fault_atom, clear_atom) {
        self->state.fault = standing_fault{};
        client_fault clear;
        clear.clear = true;
        apply_toward_client(self->state, clear);
      },
      // Toward the client: its session holds, drops or stops the bytes.
      [self](fault_atom, const client_fault& fault) { apply_toward_client(self->state, fault); },
      [self](peer_gone_atom, close_reason why, uint16_t code, std::string& text) {
        self->quit(to_exit_reason({why, code, std::move(text)}));
      },
      [self](input_end_atom) { self->state.port->input_handled(); },
      [self](close_atom, uint16_t code, std::string& reason, close_reason why) {
        self->state.port->close(code, std::move(reason), why);
      },
      [self](evict_atom, uint16_t code, std::string& reason, close_reason why) {
        self->state.port->close(code, reason, why);
        self->quit(to_exit_reason({why, code, std::move(reason)}));
      },
      [self](abort_atom, close_reason why) {
        self->state.port->abort(why);
        self->quit(to_exit_reason({why, 1006, {}}));
      },
      [self](probe_atom) { self->state.port->ping(); },
  };
}

}  // namespace wsvisor
