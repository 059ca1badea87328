// A connection's byte stream: plain TCP, or TLS over it (CONTRACT 16), chosen per
// connection at run time, so that the code above it (the server's HTTP session, WebSocket
// session and event stream; wsload's sessions) is one type for both.
//
// A plain connection pays one empty pointer for TLS. A TLS connection keeps its OpenSSL
// state, and the context it was made from, in one heap block of its own: the server's
// SIGHUP swaps its current context, and the connections made from the old one keep it
// alive until they end.
//
// The websocket close (async_teardown) of a TLS connection sends close_notify first, as
// Beast's ssl teardown does; the caller's own deadline (close_timeout) bounds a peer that
// never answers it.
//
// Header-only, like write_coalescing_stream.hpp, which it sits under: wsload includes
// both and no other part of the server.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include <memory>
#include <optional>
#include <utility>

namespace wsvisor {

class transport_stream {
 public:
  using next_layer_type = boost::beast::tcp_stream;
  using executor_type = next_layer_type::executor_type;

  explicit transport_stream(boost::asio::ip::tcp::socket&& socket) : plain_(std::move(socket)) {}
  // Not connected yet (a client's): connect next_layer(), then start_tls if wanted.
  explicit transport_stream(const executor_type& executor) : plain_(executor) {}
  transport_stream(transport_stream&&) = default;

  // From here on the bytes are TLS with `context` (before the first read or write).
  void start_tls(std::shared_ptr<boost::asio::ssl::context> context) {
    tls_ = std::make_unique<tls_layer>(std::move(*plain_), std::move(context));
    plain_.reset();
  }
  bool encrypted() const noexcept { return tls_ != nullptr; }

  // The TLS handshake (after start_tls) as `side`, within the TCP stream's expiry (the
  // server's handshake_timeout).
  template <class Handler>
  void async_handshake(boost::asio::ssl::stream_base::handshake_type side, Handler&& handler) {
    tls_->stream.async_handshake(side, std::forward<Handler>(handler));
  }

  // The TCP stream underneath (its socket, its expiry), whatever is on top of it.
  next_layer_type& next_layer() noexcept { return tls_ ? tls_->stream.next_layer() : *plain_; }
  const next_layer_type& next_layer() const noexcept {
    return tls_ ? tls_->stream.next_layer() : *plain_;
  }
  executor_type get_executor() noexcept { return next_layer().get_executor(); }

  // Straight to the layer underneath, with no initiation of their own: a plain
  // connection's read and write cost what tcp_stream's do (an async_initiate wrapper
  // here cost about 210 instructions per echo, callgrind). Handlers only (every caller
  // passes one), so both branches return void.
  template <class MutableBufferSequence, class ReadHandler>
  void async_read_some(const MutableBufferSequence& buffers, ReadHandler&& handler) {
    if (tls_) return tls_->stream.async_read_some(buffers, std::forward<ReadHandler>(handler));
    plain_->async_read_some(buffers, std::forward<ReadHandler>(handler));
  }

  template <class ConstBufferSequence, class WriteHandler>
  void async_write_some(const ConstBufferSequence& buffers, WriteHandler&& handler) {
    if (tls_) return tls_->stream.async_write_some(buffers, std::forward<WriteHandler>(handler));
    plain_->async_write_some(buffers, std::forward<WriteHandler>(handler));
  }

  template <class TeardownHandler>
  friend void async_teardown(boost::beast::role_type role, transport_stream& stream,
                             TeardownHandler&& handler) {
    using boost::beast::async_teardown;
    using boost::beast::websocket::async_teardown;
    if (stream.tls_)
      return async_teardown(role, stream.tls_->stream, std::forward<TeardownHandler>(handler));
    async_teardown(role, *stream.plain_, std::forward<TeardownHandler>(handler));
  }

  friend void teardown(boost::beast::role_type role, transport_stream& stream,
                       boost::beast::error_code& ec) {
    using boost::beast::teardown;
    using boost::beast::websocket::teardown;
    if (stream.tls_) return teardown(role, stream.tls_->stream, ec);
    teardown(role, *stream.plain_, ec);
  }

 private:
  struct tls_layer {
    tls_layer(next_layer_type&& tcp, std::shared_ptr<boost::asio::ssl::context> ctx)
        : context(std::move(ctx)), stream(std::move(tcp), *context) {}
    std::shared_ptr<boost::asio::ssl::context> context;  // outlives the stream's SSL object
    boost::asio::ssl::stream<next_layer_type> stream;
  };

  std::optional<next_layer_type> plain_;  // empty once TLS took the stream
  std::unique_ptr<tls_layer> tls_;
};

}  // namespace wsvisor
