#include "lifecycle_events.hpp"

#include <prometheus/counter.h>
#include <wsvisor/log.hpp>

#include <cstdio>
#include <ctime>
#include <random>
#include <stdexcept>

#include "messages.hpp"
#include "service_context.hpp"
#include "upstream_policy.hpp"

namespace wsvisor {

// ------------------------------------------------------------------------ event_queue

bool event_queue::push(lifecycle_event event) {
  std::lock_guard<std::mutex> lock(mutex_);
  bool dropped = false;
  if (waiting_.size() + in_flight_.size() >= capacity_ && !waiting_.empty()) {
    waiting_.pop_front();
    dropped = true;
  }
  waiting_.push_back(std::move(event));
  return dropped;
}

std::optional<lifecycle_event> event_queue::take() {
  std::lock_guard<std::mutex> lock(mutex_);
  // The first waiting event of a connection with nothing in flight: per connection, in
  // order; across connections, concurrently.
  std::unordered_set<std::string> passed;
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if (busy_connections_.count(it->connection) || passed.count(it->connection)) {
      passed.insert(it->connection);
      continue;
    }
    lifecycle_event event = std::move(*it);
    waiting_.erase(it);
    ++event.attempts;
    busy_connections_.insert(event.connection);
    in_flight_.emplace(event.id, event);
    return event;
  }
  return std::nullopt;
}

void event_queue::settle(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = in_flight_.find(id);
  if (it == in_flight_.end()) return;
  auto busy = busy_connections_.find(it->second.connection);
  if (busy != busy_connections_.end()) busy_connections_.erase(busy);
  in_flight_.erase(it);
}

std::optional<lifecycle_event> event_queue::retry(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = in_flight_.find(id);
  if (it == in_flight_.end()) return std::nullopt;
  ++it->second.attempts;
  return it->second;
}

void event_queue::requeue_in_flight() {
  std::lock_guard<std::mutex> lock(mutex_);
  // Oldest first is lost in a hash map; the ids carry the order they were made in.
  std::vector<lifecycle_event> again;
  for (auto& [id, event] : in_flight_) again.push_back(std::move(event));
  std::sort(again.begin(), again.end(), [](const auto& a, const auto& b) {
    return a.id.size() != b.id.size() ? a.id.size() < b.id.size() : a.id < b.id;
  });
  for (auto it = again.rbegin(); it != again.rend(); ++it) {
    it->attempts = 0;
    waiting_.push_front(std::move(*it));
  }
  in_flight_.clear();
  busy_connections_.clear();
}

uint64_t event_queue::pending() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return waiting_.size() + in_flight_.size();
}

// ------------------------------------------------------------------------ JSON bodies

namespace {

void append_string(std::string& out, const char* key, const std::string& value,
                   bool null_if_empty) {
  out += '"';
  out += key;
  out += "\":";
  if (null_if_empty && value.empty()) {
    out += "null";
    return;
  }
  out += '"';
  append_json_escaped(out, value);
  out += '"';
}

std::string event_head(const std::string& id, const char* type, const std::string& node,
                       const connection_event_fields& fields,
                       std::chrono::system_clock::time_point at) {
  std::string out = "{";
  append_string(out, "id", id, false);
  out += ",\"type\":\"";
  out += type;
  out += "\",";
  append_string(out, "connection", fields.connection, false);
  out += ',';
  append_string(out, "user", fields.user, true);
  out += ',';
  append_string(out, "ip", fields.ip, false);
  out += ',';
  append_string(out, "node", node, false);
  out += ",\"at\":\"" + rfc3339(at) + "\",\"meta\":";
  // meta was checked and made compact JSON when the connect hook gave it.
  out += fields.meta.empty() ? "null" : fields.meta;
  return out;
}

}  // namespace

std::string connect_event_json(const std::string& id, const std::string& node,
                               const connection_event_fields& fields,
                               std::chrono::system_clock::time_point at) {
  return event_head(id, "connect", node, fields, at) + "}";
}

std::string disconnect_event_json(const std::string& id, const std::string& node,
                                  const connection_event_fields& fields,
                                  std::chrono::system_clock::time_point at, uint16_t code,
                                  const std::string& reason, const char* close_reason,
                                  int64_t duration_ms) {
  std::string out = event_head(id, "disconnect", node, fields, at);
  out += ",\"code\":" + std::to_string(code) + ",";
  append_string(out, "reason", reason, false);
  out += ",\"close_reason\":\"";
  out += close_reason;
  out += "\",\"duration_ms\":" + std::to_string(duration_ms) + "}";
  return out;
}

// ------------------------------------------------------------------------ the service

namespace {

using self_ptr = caf::stateful_actor<events_service_state>*;
using event_done_atom = caf::atom_constant<caf::atom("evdone")>;
using event_retry_atom = caf::atom_constant<caf::atom("evretry")>;

// Events go several at a time (per connection in order): a backend that fails some of
// them must not hold every other connection's events behind one backoff.
constexpr uint32_t kEventsInFlight = 16;

void send_attempt(self_ptr self, const lifecycle_event& event) {
  auto& context = *self->state.context;
  upstream_attempt attempt;
  attempt.url = context.config.events.url;
  attempt.body = event.body;
  attempt.timeout = context.config.events.timeout;
  attempt.headers = {{"Content-Type", "application/json"}, {"X-Wsvisor-Event-Id", event.id}};
  if (!context.config.upstream.token.empty())
    attempt.headers.emplace_back("Authorization", "Bearer " + context.config.upstream.token);
  ++self->state.running;
  auto me = caf::actor_cast<caf::actor>(self);
  context.http_client->start(std::move(attempt),
                             [me, id = event.id, n = event.attempts](upstream_reply reply) {
                               caf::anon_send(me, event_done_atom::value, id, n, std::move(reply));
                             });
}

void pump(self_ptr self) {
  auto& context = *self->state.context;
  while (self->state.running < kEventsInFlight) {
    auto event = context.events->take();
    if (!event) return;
    send_attempt(self, *event);
  }
}

}  // namespace

caf::behavior events_service_actor(self_ptr self, std::shared_ptr<service_context> context) {
  self->state.context = context;
  // A predecessor's events in flight are sent again (at least once).
  context->events->requeue_in_flight();
  pump(self);
  return {
      [self](events_atom) { pump(self); },
      [self](event_done_atom, const std::string& id, unsigned attempts, upstream_reply& reply) {
        auto& state = self->state;
        auto& context = *state.context;
        --state.running;
        const bool accepted = reply.result == upstream_reply::outcome::response &&
                              reply.status >= 200 && reply.status < 300;
        if (accepted) {
          context.stats.events_sent().Increment();
          context.stats.upstream_requests(upstream_hook::event, upstream_outcome::ok).Increment();
          context.events->settle(id);
        } else if (attempts <= context.config.events.retries) {
          // Retried with backoff until a 2xx or events.retries run out (11.3). The
          // event stays in flight: its connection's next event waits behind it.
          static thread_local std::minstd_rand random{std::random_device{}()};
          upstream_reply as_retryable;
          as_retryable.result = upstream_reply::outcome::connect_error;
          const auto delay = retry_delay(
              {static_cast<unsigned>(context.config.events.retries),
               context.config.upstream.backoff_min, context.config.upstream.backoff_max},
              as_retryable, attempts, std::uniform_real_distribution<double>(0, 1)(random));
          self->delayed_send(self, delay.value_or(context.config.upstream.backoff_max),
                             event_retry_atom::value, id);
        } else {
          context.stats.events_failed().Increment();
          context.stats.upstream_requests(upstream_hook::event, classify(reply).outcome)
              .Increment();
          log_event(spdlog::level::warn, "event_failed",
                    "lifecycle event given up after events.retries attempts",
                    {{"event", id}, {"status", reply.status}, {"error", reply.error}});
          context.events->settle(id);
        }
        pump(self);
      },
      [self](event_retry_atom, const std::string& id) {
        if (self->state.running >= kEventsInFlight) {
          self->delayed_send(self, std::chrono::milliseconds(10), event_retry_atom::value, id);
          return;
        }
        if (auto event = self->state.context->events->retry(id)) send_attempt(self, *event);
      },
      [](fault_atom, crash_atom) -> caf::result<void> {
        throw std::runtime_error("events crash (fault injection)");
      },
  };
}

void queue_lifecycle_event(service_context& context, std::string id, std::string connection,
                           std::string body) {
  if (!context.events) return;  // events.url is "": off
  lifecycle_event event;
  event.id = std::move(id);
  event.connection = std::move(connection);
  event.body = std::move(body);
  if (context.events->push(std::move(event))) context.stats.events_dropped().Increment();
  if (auto service = context.events_service()) caf::anon_send(service, events_atom::value);
}

// 8 random hex digits chosen once per process. A node id may outlive its process (a
// fixed cluster.node_id, restarted), and a backend drops an event whose id it has seen
// (delivery is at least once): "<node_id>.e1" again would lose the new process's events.
const std::string& process_tag() {
  static const std::string tag = [] {
    std::random_device random;
    const uint32_t bits = random();
    char text[9];
    std::snprintf(text, sizeof text, "%08x", bits);
    return std::string(text);
  }();
  return tag;
}

std::string next_lifecycle_event_id(service_context& context) {
  return context.node_id + "." + process_tag() + ".e" +
         std::to_string(context.next_event_id.fetch_add(1));
}

}  // namespace wsvisor
