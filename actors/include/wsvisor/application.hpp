// What a connection does with its messages (CONTRACT section 10): an application, C++
// code behind this one interface. One instance is made for each connection; it is told
// of the open, each message and the close, and acts through the connection's handle. It
// runs inside the connection actor: a handler that throws is restarted with a fresh
// instance under the connection restart budget, the socket kept. echo, gateway and hub
// are three such applications; an embedding program registers its own (see
// examples/embedding). Nothing in net/ knows which one runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "wsvisor/config.hpp"
#include "wsvisor/upstream_labels.hpp"  // upstream_hook, upstream_outcome

namespace wsvisor {

// One request to the backend, made through a connection's upstream queue: ordered
// behind the connection's earlier ones, at most upstream.per_connection_inflight at
// once, at most upstream.queue waiting, retried with the same X-Wsvisor-Delivery.
struct upstream_call {
  upstream_hook hook = upstream_hook::message;
  std::string path;  // appended to upstream.url
  std::string body;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;  // besides X-Wsvisor-*
  std::string tag;  // the application's own: comes back with the result
};

struct upstream_result {
  upstream_outcome outcome = upstream_outcome::error;
  unsigned status = 0;       // the backend's HTTP status, when one came back
  std::string body;          // with ok (and rejected): the response body
  std::string content_type;  // the response's Content-Type
  std::string delivery;      // "<connection>:<seq>", the X-Wsvisor-Delivery of every attempt
  std::string tag;           // the call's
  std::chrono::seconds retry_after{0};  // a 429's Retry-After (connect hook)
};

// What an application knows of its connection and may do with it. Valid during the
// application's calls only.
class connection_handle {
 public:
  virtual ~connection_handle() = default;

  // Queues one message for the client (text or binary).
  virtual void send(std::string payload, bool text) = 0;
  // Graceful close with this code and reason (the close frame goes after what is queued).
  virtual void close(uint16_t code, std::string reason) = 0;

  // The v1 numeric id, and the string id "<node_id>.<id>" (section 10).
  virtual uint64_t id() const = 0;
  virtual const std::string& connection() const = 0;
  // "" for an anonymous connection.
  virtual const std::string& user() const = 0;
  // Compact JSON the connect hook gave this connection ("" when none).
  virtual const std::string& meta() const = 0;

  // The configuration the server runs with.
  virtual const settings& config() const = 0;

  // State the application keeps with the connection rather than in itself: it survives
  // a restart of the application (a fresh instance finds it here) and dies with the
  // connection. The hub keeps its session and subscriptions here.
  virtual std::shared_ptr<void>& durable_state() = 0;

  // Runs `work` inside the connection actor after `delay` (on the actors' clock), as a
  // handler of the current application: it throws like one. Not run if the connection
  // ended first.
  virtual void run_later(std::chrono::milliseconds delay,
                         std::function<void(connection_handle&)> work) = 0;

  // A request to the backend through the connection's upstream queue; its result comes
  // back as application::on_upstream, inside the connection actor, also after a restart
  // of the application (the queue belongs to the connection). Returns the delivery id.
  virtual std::string call_upstream(upstream_call call) = 0;
};

class application {
 public:
  virtual ~application() = default;

  // The 101 has gone out.
  virtual void on_open(connection_handle&) {}
  // One text or binary message from the client; `payload` may be moved from.
  virtual void on_message(connection_handle& connection, std::string& payload, bool text) = 0;
  // A call_upstream() ended (possibly one made by the instance before a restart).
  virtual void on_upstream(connection_handle&, upstream_result&) {}
  // The connection is ending (its actor is about to go).
  virtual void on_close(connection_handle&) {}

  // False when the application learns who the client is only after the 101 (hub mode:
  // the connect command): the connect event (CONTRACT 11.3) then waits for it.
  virtual bool identified_at_open() const { return true; }
};

// Makes the application of one connection (again after each restart).
using application_factory = std::function<std::unique_ptr<application>()>;

// The applications a server can run, by app.mode name.
class application_registry {
 public:
  // echo, gateway and hub; an embedding program adds its own.
  static application_registry with_builtins();

  void add(std::string mode, application_factory factory) {
    factories_[std::move(mode)] = std::move(factory);
  }
  const application_factory* find(const std::string& mode) const {
    auto it = factories_.find(mode);
    return it == factories_.end() ? nullptr : &it->second;
  }
  std::vector<std::string> modes() const {
    std::vector<std::string> names;
    for (const auto& [name, factory] : factories_) names.push_back(name);
    return names;
  }

 private:
  std::map<std::string, application_factory> factories_;
};

}  // namespace wsvisor
