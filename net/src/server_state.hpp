// What every listener and session of one server shares.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "tls_credentials.hpp"
#include "wsvisor/client_address.hpp"
#include "wsvisor/config.hpp"
#include "wsvisor/http_router.hpp"
#include "wsvisor/log.hpp"
#include "wsvisor/metrics.hpp"
#include "wsvisor/service.hpp"

namespace wsvisor {

class websocket_session;

// Every endpoint a server in app.mode `mode` serves (health, metrics, admin, API), one
// entry each: the API's differ by mode (hub mode serves Centrifugo's, CONTRACT 13.6).
// Defined in http_exchange.cpp, with the handlers' declarations.
route_table routes_for_mode(std::string_view mode);

// Connections accepted and not yet upgraded or closed, against a limit
// (limits.max_pending_handshakes). Each listener has a budget of its own, so that a
// flood on the public port cannot lock out the admin port; an idle keep-alive HTTP
// connection keeps counting until it closes.
class handshake_budget {
 public:
  explicit handshake_budget(uint64_t limit) : limit_(limit) {}
  bool try_take() {
    if (pending_.fetch_add(1, std::memory_order_relaxed) < limit_) return true;
    pending_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  void give_back() { pending_.fetch_sub(1, std::memory_order_relaxed); }
  uint64_t limit() const { return limit_; }

 private:
  const uint64_t limit_;
  std::atomic<uint64_t> pending_{0};
};

// Holds one unit of a handshake_budget from accept until the 101 or the end of the
// HTTP connection; gives it back exactly once.
class pending_handshake {
 public:
  explicit pending_handshake(std::shared_ptr<handshake_budget> budget)
      : budget_(std::move(budget)) {}
  pending_handshake(pending_handshake&& other) noexcept : budget_(std::move(other.budget_)) {}
  pending_handshake& operator=(pending_handshake&&) = delete;
  pending_handshake(const pending_handshake&) = delete;
  ~pending_handshake() { release(); }
  void release() {
    if (budget_) budget_->give_back();
    budget_.reset();
  }

 private:
  std::shared_ptr<handshake_budget> budget_;
};

struct server_state {
  server_state(boost::asio::io_context& io_context, const settings& cfg, service& svc, metrics& m)
      : io(io_context), config(cfg), tree(svc), stats(m), proxies(cfg.server.trusted_proxies) {}

  boost::asio::io_context& io;
  const settings config;
  service& tree;
  metrics& stats;
  const trusted_proxies proxies;
  // Built once, from the configuration: endpoints hold no state (their handlers get
  // the exchange).
  const route_table routes = routes_for_mode(config.app.mode);
  const std::chrono::steady_clock::time_point started_at = std::chrono::steady_clock::now();
  // POST /admin/drain: begins the same drain as SIGTERM (set by main).
  std::function<void()> request_drain;
  // Admission refusals come in floods (a rate limit, a cap, a handshake flood): the
  // first few of each second are logged in full, the rest counted by reason.
  log_throttle refusal_log{"refusals_summary",
                           "admission refusals in the last second not logged one by one", 5};
  // Dashboards reading /admin/events at once (event_stream.hpp): each holds a socket
  // and at most one snapshot in flight.
  static constexpr uint64_t kMaxEventStreams = 8;
  const std::shared_ptr<handshake_budget> event_stream_budget =
      std::make_shared<handshake_budget>(kMaxEventStreams);

  // The main port's certificate and key (CONTRACT 16), reloaded on SIGHUP.
  tls_credentials tls{config.server.tls_cert_file, config.server.tls_key_file};
  // The TLS context a new connection on a listener of `role` uses, or null for plain:
  // the main port follows server.tls_cert_file, admin.listen and api.listen their
  // admin.tls and api.tls.
  std::shared_ptr<boost::asio::ssl::context> tls_for(listener_role role) const {
    const bool on = role == listener_role::main    ? tls.enabled()
                    : role == listener_role::admin ? config.admin.tls
                                                   : config.api.tls;
    return on ? tls.current() : nullptr;
  }

  // The executor of one accepted connection. A strand keeps its handlers apart when
  // several threads run the io_context; with one thread (a server pinned to one core)
  // they are apart already, and the strand would only cost a lock and an atomic
  // reference count per operation. Without it, a connection actor (which the io
  // scheduler runs on that same thread) reaches its session inline (see
  // websocket_session::send), not by a post.
  boost::asio::any_io_executor connection_executor() const {
    if (single_io_thread) return io.get_executor();
    return boost::asio::make_strand(io);
  }
  const bool single_io_thread = io_thread_count(config) == 1;

  // With one io thread: the sessions whose corked publications wait to be written
  // (websocket_session::send_shared), drained by one handler for all of them, so that
  // a publication to N subscribers costs one post, not N. Touched on the io thread only.
  std::vector<std::shared_ptr<websocket_session>> corked_sessions;
};

}  // namespace wsvisor
