// The narrow seam through which the cluster service reaches Redis (CONTRACT 14). net/
// implements it over Asio with hiredis's RESP reader and formatter on the io threads
// (nothing blocks, no thread of its own); actors never see Asio or hiredis. A connection
// is one TCP connection to one Redis: the port neither reconnects nor retries, the
// cluster service (actors/) decides that, with its backoff, as a supervised service.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace wsvisor {

// One RESP2 reply, as Redis sent it.
struct redis_value {
  enum class type { nil, integer, string, status, error, array };
  type kind = type::nil;
  int64_t integer = 0;
  std::string text;                   // string, status, error
  std::vector<redis_value> elements;  // array

  bool is_error() const { return kind == type::error; }
};

// Where and how to connect: host, port, database, user and password, as parsed from
// cluster.redis_url and cluster.redis_password.
struct redis_endpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  unsigned database = 0;
  std::string password;  // "" = no AUTH
  std::string user;      // with a password: "" = AUTH password, else AUTH user password (ACL)
  std::chrono::milliseconds connect_timeout{2000};
};

// What a connection reports. Each is called on an io thread, never inline from a call
// into the connection, and must be quick (post or send on) and not throw.
struct redis_handlers {
  // Once: "" when the connection is up (connected, AUTH and SELECT done), else why not
  // ("connect: Connection refused", "AUTH: WRONGPASS ..."). After an error nothing else
  // is called.
  std::function<void(const std::string& error)> on_ready;
  // Subscriber connections only: every reply Redis sends (subscribe confirmations and
  // messages: ["message", channel, payload], ["pmessage", ...], ["pong", ...]).
  std::function<void(redis_value)> on_push;
  // Once, after on_ready(""): the connection broke or Redis closed it (why, in words).
  // Commands still pending get their `done` with no reply first.
  std::function<void(const std::string& error)> on_lost;
};

class redis_connection {
 public:
  virtual ~redis_connection() = default;

  // A reply, or none when the connection failed before the reply came (or was closed).
  using completion = std::function<void(const redis_value* reply)>;

  // Sends one command (argv, binary safe). Commands are pipelined: several may be on the
  // wire at once, and their `done` are called in the order the commands were sent, on an
  // io thread. Before on_ready("") commands wait; after a failure `done` gets nullptr
  // (never inline). On a subscriber connection `done` is ignored (may be empty): every
  // reply goes to on_push. Thread-safe.
  virtual void send(std::vector<std::string> argv, completion done) = 0;

  // Closes the connection: pending commands get nullptr, on_lost is not called.
  // Idempotent, thread-safe.
  virtual void close() = 0;
};

class redis_port {
 public:
  virtual ~redis_port() = default;

  enum class connection_kind { command, subscriber };

  // Starts connecting; `handlers.on_ready` tells how it went. The connection lives while
  // the caller holds it or it has work in flight.
  virtual std::shared_ptr<redis_connection> connect(const redis_endpoint& where,
                                                    connection_kind kind,
                                                    redis_handlers handlers) = 0;
};

}  // namespace wsvisor
