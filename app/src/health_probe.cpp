// wsvisor --health: GET /health/live (https when server.tls_cert_file is set) against
// the server this same configuration describes, so that a container's HEALTHCHECK follows the port
// however it was set (the file, PORT, WSVISOR_SERVER_PORT or --set) and the image needs no curl.
#include "health_probe.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <chrono>
#include <cstdio>
#include <string>

namespace wsvisor {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

// For the whole exchange (connect, request, answer): well inside the HEALTHCHECK's own
// --timeout, so that a hung server is reported by the probe with its cause rather than
// killed by the container engine without one.
constexpr auto exchange_timeout = std::chrono::seconds(2);
constexpr size_t max_body_bytes = 64 * 1024;
constexpr size_t max_body_shown = 200;

void fail_line(const std::string& text) {
  std::fprintf(stderr, "wsvisor --health: %s\n", text.c_str());
}

// A body as one short line of the report.
std::string one_line(std::string text) {
  for (char& c : text)
    if (c == '\r' || c == '\n') c = ' ';
  if (text.size() > max_body_shown) text = text.substr(0, max_body_shown) + "...";
  return text;
}

}  // namespace

int run_health_probe(const settings& config) {
  if (config.server.port == 0) {
    fail_line(
        "server.port is 0 (any free port), so the port the server took is unknown: give "
        "the probe the server's port (PORT, WSVISOR_SERVER_PORT or --set server.port=N)");
    return 2;
  }
  // The server listens only on an IP literal (net/src/server.cpp), so that is all the
  // probe has to parse; one bound to "any" address is reached on its loopback.
  boost::system::error_code parse_error;
  auto address = net::ip::make_address(config.server.host, parse_error);
  if (parse_error) {
    fail_line("server.host '" + config.server.host +
              "' is not an IP address, so no server can listen on it (" + parse_error.message() +
              ")");
    return 1;
  }
  if (address.is_unspecified())
    address = address.is_v6() ? net::ip::address(net::ip::address_v6::loopback())
                              : net::ip::address(net::ip::address_v4::loopback());
  const std::string authority =
      (address.is_v6() ? "[" + address.to_string() + "]" : address.to_string()) + ":" +
      std::to_string(config.server.port);
  const bool tls = !config.server.tls_cert_file.empty();
  const std::string url = (tls ? "https://" : "http://") + authority + "/health/live";

  net::io_context io;
  beast::flat_buffer buffer;
  http::request<http::empty_body> request{http::verb::get, "/health/live", 11};
  request.set(http::field::host, authority);
  request.set(http::field::user_agent, "wsvisor --health");
  request.keep_alive(false);
  http::response_parser<http::string_body> parser;
  parser.body_limit(max_body_bytes);

  // One deadline for the whole exchange: tcp_stream fails whichever operation is
  // outstanding when it passes with beast::error::timeout.
  const char* step = "connect";
  beast::error_code failure;
  auto ask = [&](auto& stream) {
    step = "send the request";
    http::async_write(stream, request, [&](beast::error_code ec, size_t) {
      if (ec) {
        failure = ec;
        return;
      }
      step = "read the answer";
      http::async_read(stream, buffer, parser, [&](beast::error_code ec, size_t) { failure = ec; });
    });
  };
  const tcp::endpoint endpoint(address, config.server.port);
  // TLS (CONTRACT 16): the probe asks whether this process is alive on its port, not who
  // it is, so the certificate is not verified (a CA-issued chain could not be from here).
  net::ssl::context tls_context(net::ssl::context::tls_client);
  tls_context.set_verify_mode(net::ssl::verify_none);
  net::ssl::stream<beast::tcp_stream> tls_stream(io, tls_context);
  beast::tcp_stream plain_stream(io);
  auto& connection = tls ? tls_stream.next_layer() : plain_stream;
  connection.expires_after(exchange_timeout);
  connection.async_connect(endpoint, [&](beast::error_code ec) {
    if (ec) {
      failure = ec;
      return;
    }
    if (!tls) return ask(plain_stream);
    step = "complete the TLS handshake";
    tls_stream.async_handshake(net::ssl::stream_base::client, [&](beast::error_code ec) {
      if (ec) {
        failure = ec;
        return;
      }
      ask(tls_stream);
    });
  });
  io.run();

  if (failure == beast::error::timeout) {
    fail_line(url + ": no answer within " + std::to_string(exchange_timeout.count()) +
              " s (at: " + step + ")");
    return 1;
  }
  if (failure) {
    fail_line(url + ": cannot " + step + ": " + failure.message());
    return 1;
  }
  const auto& response = parser.get();
  if (response.result() != http::status::ok) {
    fail_line(url + " answered " + std::to_string(response.result_int()) + " " +
              one_line(response.body()));
    return 1;
  }
  std::puts("alive");
  return 0;
}

}  // namespace wsvisor
