// websocketpp 0.8.2 echo server (asio_no_tls config: no TLS, permessage-deflate off,
// logging off), one thread.
//
//   websocketpp_echo PORT
#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/server.hpp>

#include <cstdio>
#include <cstdlib>

using server = websocketpp::server<websocketpp::config::asio>;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: websocketpp_echo PORT\n");
    return 2;
  }
  const auto port = static_cast<uint16_t>(std::atoi(argv[1]));

  server endpoint;
  endpoint.clear_access_channels(websocketpp::log::alevel::all);
  endpoint.clear_error_channels(websocketpp::log::elevel::all);
  endpoint.init_asio();
  endpoint.set_reuse_addr(true);
  endpoint.set_listen_backlog(4096);
  endpoint.set_message_handler(
      [&endpoint](websocketpp::connection_hdl hdl, server::message_ptr msg) {
        websocketpp::lib::error_code ec;
        endpoint.send(hdl, msg->get_payload(), msg->get_opcode(), ec);
      });

  boost::asio::signal_set signals(endpoint.get_io_service(), SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) { endpoint.stop(); });

  endpoint.listen(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
  endpoint.start_accept();
  endpoint.run();
  return 0;
}
