// One accepted TCP connection until it upgrades or closes: reads HTTP requests, routes
// them (CONTRACT section 3), answers the health and metrics endpoints, and hands an
// upgrade request on server.ws_path to a websocket_session.
#pragma once

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <memory>
#include <optional>

#include "http_responses.hpp"
#include "server_state.hpp"
#include "wsvisor/http_router.hpp"
#include "wsvisor/transport_stream.hpp"

namespace wsvisor {

// Which requests a connection may make: all of them, or (past the listener's
// max_pending_handshakes) only a health probe sent at once (see server.cpp).
enum class http_lane { full, health_only };

// Counts and logs one connection closed for limits.max_pending_handshakes.
void refuse_handshake_limit(server_state& state, uint64_t limit);

class http_session : public std::enable_shared_from_this<http_session> {
 public:
  http_session(boost::asio::ip::tcp::socket&& socket, std::shared_ptr<server_state> state,
               listener_role role, pending_handshake pending, http_lane lane);
  void run();

 private:
  void on_handshake(boost::beast::error_code ec);
  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void answer(http_response response);
  void on_write(bool close, boost::beast::error_code ec, std::size_t bytes);
  void close_socket();
  // GET /admin/events: the connection becomes an event_stream.
  void become_event_stream(pending_handshake slot);
  // An upgrade request on server.ws_path becomes a websocket_session (or gets 400/426).
  void upgrade(boost::beast::http::request<boost::beast::http::string_body>&& request);

  transport_stream stream_;  // plain TCP, or TLS on a listener with a certificate
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  std::shared_ptr<server_state> state_;
  pending_handshake pending_;
  std::shared_ptr<http_response> response_;
  steady_time accepted_at_;
  listener_role role_;
  http_lane lane_;
};

}  // namespace wsvisor
