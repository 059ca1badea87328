// Minimal Boost.Beast WebSocket echo server: the ceiling of the Asio/Beast stack that
// wsvisor is built on. No actors, no HTTP routing, no limits: async accept, async read,
// async write, one io_context run by N threads (1 by default). With more than one
// thread each session has a strand, as in Beast's own examples; with one thread it does
// not need one, and wsvisor (which drops it there too) is compared with the faster form.
//
//   beast_echo PORT [THREADS]
//
// Every path is accepted; permessage-deflate is off (Beast's default).
//
// Compiled with -DBEAST_ECHO_TLS=1 (and -lssl -lcrypto) it is the TLS ceiling instead
// (bench/ab_echo.sh TLS=1): the websocket over beast::ssl_stream (Asio's ssl::stream
// behind Beast's flat_stream), as in Beast's websocket_server_async_ssl example, TLS 1.2+:
//
//   beast_tls_echo PORT CERT_FILE KEY_FILE [THREADS]
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#if BEAST_ECHO_TLS
#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket/ssl.hpp>
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

#if BEAST_ECHO_TLS
using socket_stream = beast::ssl_stream<beast::tcp_stream>;
using tls_context = net::ssl::context;
#else
using socket_stream = beast::tcp_stream;
struct tls_context {};  // none
#endif

class session : public std::enable_shared_from_this<session> {
 public:
#if BEAST_ECHO_TLS
  session(tcp::socket&& socket, tls_context& context) : ws_(std::move(socket), context) {}
#else
  session(tcp::socket&& socket, tls_context&) : ws_(std::move(socket)) {}
#endif

  void run() {
    net::dispatch(ws_.get_executor(),
                  beast::bind_front_handler(&session::on_run, shared_from_this()));
  }

 private:
  void on_run() {
#if BEAST_ECHO_TLS
    // As Beast's websocket_server_async_ssl example: 30 s for the TLS handshake first.
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(30));
    ws_.next_layer().async_handshake(net::ssl::stream_base::server,
                                     [self = shared_from_this()](beast::error_code ec) {
                                       if (ec) return;
                                       beast::get_lowest_layer(self->ws_).expires_never();
                                       self->on_tls_ready();
                                     });
  }

  void on_tls_ready() {
#endif
    // As Beast's own websocket_server_async example: suggested server timeouts
    // (handshake 30 s, idle 300 s, no keep-alive pings).
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.async_accept(beast::bind_front_handler(&session::on_accept, shared_from_this()));
  }

  void on_accept(beast::error_code ec) {
    if (ec) return;
    do_read();
  }

  void do_read() {
    ws_.async_read(buffer_, beast::bind_front_handler(&session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec) return;  // closed, reset or aborted: the session ends
    ws_.text(ws_.got_text());
    ws_.async_write(buffer_.data(),
                    beast::bind_front_handler(&session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (ec) return;
    buffer_.consume(buffer_.size());
    do_read();
  }

  websocket::stream<socket_stream> ws_;
  beast::flat_buffer buffer_;
};

class listener : public std::enable_shared_from_this<listener> {
 public:
  listener(net::io_context& ioc, tcp::endpoint endpoint, bool strands, tls_context& context)
      : ioc_(ioc), acceptor_(ioc), strands_(strands), context_(context) {
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(4096);
  }

  void run() { do_accept(); }

 private:
  void do_accept() {
    const net::any_io_executor executor =
        strands_ ? net::any_io_executor(net::make_strand(ioc_)) : ioc_.get_executor();
    acceptor_.async_accept(executor,
                           beast::bind_front_handler(&listener::on_accept, shared_from_this()));
  }

  void on_accept(beast::error_code ec, tcp::socket socket) {
    if (!ec) {
      std::make_shared<session>(std::move(socket), context_)->run();
    } else if (ec == net::error::no_descriptors) {
      // Out of file descriptors: back off briefly instead of spinning.
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    do_accept();
  }

  net::io_context& ioc_;
  tcp::acceptor acceptor_;
  const bool strands_;
  tls_context& context_;
};

}  // namespace

int main(int argc, char** argv) {
#if BEAST_ECHO_TLS
  if (argc < 4) {
    std::fprintf(stderr, "usage: beast_tls_echo PORT CERT_FILE KEY_FILE [THREADS]\n");
    return 2;
  }
  tls_context context(net::ssl::context::tls_server);
  SSL_CTX_set_min_proto_version(context.native_handle(), TLS1_2_VERSION);
  context.use_certificate_chain_file(argv[2]);
  context.use_private_key_file(argv[3], net::ssl::context::pem);
  const int threads_arg = 4;
#else
  if (argc < 2) {
    std::fprintf(stderr, "usage: beast_echo PORT [THREADS]\n");
    return 2;
  }
  tls_context context;
  const int threads_arg = 2;
#endif
  const auto port = static_cast<unsigned short>(std::atoi(argv[1]));
  const int threads = argc > threads_arg ? std::max(1, std::atoi(argv[threads_arg])) : 1;

  net::io_context ioc{threads};
  std::make_shared<listener>(ioc, tcp::endpoint{net::ip::make_address("127.0.0.1"), port},
                             threads > 1, context)
      ->run();

  net::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](beast::error_code, int) { ioc.stop(); });

  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  return 0;
}
