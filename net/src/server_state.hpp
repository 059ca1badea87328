// What every listener and session of one server shares.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>

#include "wsvisor/client_address.hpp"
#include "wsvisor/config.hpp"
#include "wsvisor/metrics.hpp"
#include "wsvisor/service.hpp"

namespace wsvisor {

struct server_state {
  server_state(boost::asio::io_context& io_context, const settings& cfg, service& svc, metrics& m)
      : io(io_context), config(cfg), tree(svc), stats(m), proxies(cfg.server.trusted_proxies) {}

  boost::asio::io_context& io;
  const settings config;
  service& tree;
  metrics& stats;
  const trusted_proxies proxies;
  const std::chrono::steady_clock::time_point started_at = std::chrono::steady_clock::now();
  // Accepted and not yet upgraded or answered (limits.max_pending_handshakes).
  std::atomic<uint64_t> pending_handshakes{0};
  // POST /admin/drain: begins the same drain as SIGTERM (set by main).
  std::function<void()> request_drain;

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
};

// Holds one of the pending handshakes from accept until the 101 or the first HTTP
// answer; gives it back exactly once.
class pending_handshake {
 public:
  explicit pending_handshake(std::shared_ptr<server_state> state) : state_(std::move(state)) {}
  pending_handshake(pending_handshake&& other) noexcept : state_(std::move(other.state_)) {}
  pending_handshake& operator=(pending_handshake&&) = delete;
  pending_handshake(const pending_handshake&) = delete;
  ~pending_handshake() { release(); }
  void release() {
    if (state_) state_->pending_handshakes.fetch_sub(1, std::memory_order_relaxed);
    state_.reset();
  }

 private:
  std::shared_ptr<server_state> state_;
};

}  // namespace wsvisor
