// One accepted TCP connection until it upgrades or closes: reads HTTP requests, routes
// them (CONTRACT section 3), answers the health and metrics endpoints, and hands an
// upgrade request on server.ws_path to a websocket_session.
#pragma once

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <memory>
#include <optional>

#include "http_responses.hpp"
#include "server_state.hpp"

namespace wsvisor {

// Which requests a connection may make: all of them, or (past the listener's
// max_pending_handshakes) only a health probe sent at once (see server.cpp).
enum class http_lane { full, health_only };

// Counts and logs one connection closed for limits.max_pending_handshakes.
void refuse_handshake_limit(server_state& state, uint64_t limit);

class http_session : public std::enable_shared_from_this<http_session> {
 public:
  http_session(boost::asio::ip::tcp::socket&& socket, std::shared_ptr<server_state> state,
               bool admin_listener, pending_handshake pending, http_lane lane);
  void run();

 private:
  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void answer(http_response response);
  void on_write(bool close, boost::beast::error_code ec, std::size_t bytes);
  void close_socket();
  // An upgrade request on server.ws_path becomes a websocket_session (or gets 400/426).
  void upgrade(boost::beast::http::request<boost::beast::http::string_body>&& request);

  void serve_health_live(unsigned version, bool keep_alive);
  http_response health_ready(unsigned version, bool keep_alive) const;
  http_response health(unsigned version, bool keep_alive) const;
  http_response metrics_text(unsigned version, bool keep_alive) const;

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  std::shared_ptr<server_state> state_;
  pending_handshake pending_;
  std::shared_ptr<http_response> response_;
  steady_time accepted_at_;
  bool admin_listener_;
  http_lane lane_;
};

}  // namespace wsvisor
