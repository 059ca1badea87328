// write_coalescing_stream over transport_stream with TLS (CONTRACT 16), on a real loopback
// connection with a certificate made here: back-to-back frames still share writes (each
// flush is one SSL write, records of up to 16 KiB), a write with a reader waiting goes
// through TLS rather than to the raw socket, a websocket echo and its close work, and
// the plain transport keeps its direct send.
//
// One io_context on this thread, run until each step is done; no sleeps.
#include <doctest/doctest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "coalescing_checks.hpp"
#include "wsvisor/transport_stream.hpp"
#include "wsvisor/write_coalescing_stream.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using layer = wsvisor::write_coalescing_stream<wsvisor::transport_stream>;

namespace {

std::string pem_of(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(size));
}

// A server context with a fresh self-signed P-256 certificate for 127.0.0.1.
std::shared_ptr<ssl::context> server_context() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  REQUIRE(key != nullptr);
  X509* cert = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  REQUIRE(X509_sign(cert, key, EVP_sha256()) > 0);
  BIO* cert_bio = BIO_new(BIO_s_mem());
  BIO* key_bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(cert_bio, cert);
  PEM_write_bio_PrivateKey(key_bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  const std::string cert_pem = pem_of(cert_bio), key_pem = pem_of(key_bio);
  BIO_free(cert_bio);
  BIO_free(key_bio);
  X509_free(cert);
  EVP_PKEY_free(key);
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  context->use_certificate(asio::buffer(cert_pem), ssl::context::pem);
  context->use_private_key(asio::buffer(key_pem), ssl::context::pem);
  return context;
}

// A connected pair on loopback: `server` the layer over TLS (or plain), `peer` an
// ssl::stream client that does not verify (the certificate is this test's own).
struct tls_pair {
  asio::io_context io;
  ssl::context client_context{ssl::context::tls_client};
  std::optional<layer> server;
  ssl::stream<tcp::socket> peer{io, client_context};

  explicit tls_pair(bool tls = true) {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    peer.next_layer().connect(acceptor.local_endpoint());
    wsvisor::transport_stream transport(acceptor.accept());
    if (!tls) {
      server.emplace(std::move(transport));
      return;
    }
    transport.start_tls(server_context());
    server.emplace(std::move(transport));
    bool server_done = false, peer_done = false;
    server->next_layer().async_handshake(ssl::stream_base::server, [&](beast::error_code ec) {
      REQUIRE_FALSE(ec);
      server_done = true;
    });
    peer.async_handshake(ssl::stream_base::client, [&](beast::error_code ec) {
      REQUIRE_FALSE(ec);
      peer_done = true;
    });
    run_until([&] { return server_done && peer_done; });
  }

  void run_until(const std::function<bool()>& done) { wsvisor::testing::run_until(io, done); }

  // Reads exactly n decrypted bytes on the peer.
  std::string peer_read(std::size_t n) { return wsvisor::testing::read_exactly(io, peer, n); }
};

}  // namespace

TEST_CASE("over TLS, back-to-back writes arrive whole, in order, in far fewer writes") {
  tls_pair pair;
  wsvisor::testing::check_back_to_back_writes(pair);
}

TEST_CASE("over TLS, a write with a reader waiting goes through TLS, not to the raw socket") {
  tls_pair pair;
  std::string read_buffer(16, '\0');
  pair.server->async_read_some(asio::buffer(read_buffer), [](beast::error_code, std::size_t) {});
  const std::string message = "hello over tls";
  bool written = false;
  pair.server->async_write_some(asio::buffer(message), [&](beast::error_code ec, std::size_t) {
    CHECK_FALSE(ec);
    written = true;
  });
  // Handed to TLS at once (one flush, no cork); had it gone to the socket as is, the
  // peer's TLS would fail on a record that is not one.
  CHECK(pair.server->flushes() == 1);
  CHECK(pair.peer_read(message.size()) == message);
  pair.run_until([&] { return written; });
}

TEST_CASE("the plain transport keeps the direct send within the call") {
  tls_pair pair(/*tls=*/false);
  std::string read_buffer(16, '\0');
  pair.server->async_read_some(asio::buffer(read_buffer), [](beast::error_code, std::size_t) {});
  const std::string message = "plain";
  pair.server->async_write_some(asio::buffer(message), [](beast::error_code, std::size_t) {});
  CHECK(pair.server->flushes() == 1);
  CHECK(pair.server->buffered_bytes() == 0);  // the socket took it within the call
  std::string got(message.size(), '\0');
  asio::read(pair.peer.next_layer(), asio::buffer(got));
  CHECK(got == message);
}

TEST_CASE("a websocket over the layer over TLS echoes and closes") {
  tls_pair pair;
  websocket::stream<layer&> server_ws(*pair.server);
  websocket::stream<ssl::stream<tcp::socket>&> client_ws(pair.peer);
  bool accepted = false, opened = false;
  server_ws.async_accept([&](beast::error_code ec) {
    REQUIRE_FALSE(ec);
    accepted = true;
  });
  client_ws.async_handshake("127.0.0.1", "/ws", [&](beast::error_code ec) {
    REQUIRE_FALSE(ec);
    opened = true;
  });
  pair.run_until([&] { return accepted && opened; });

  beast::flat_buffer server_in, client_in;
  const std::string payload(100000, 'x');  // several TLS records
  bool echoed = false;
  client_ws.async_write(asio::buffer(payload),
                        [](beast::error_code ec, std::size_t) { REQUIRE_FALSE(ec); });
  server_ws.async_read(server_in, [&](beast::error_code ec, std::size_t) {
    REQUIRE_FALSE(ec);
    server_ws.async_write(server_in.data(),
                          [](beast::error_code ec, std::size_t) { REQUIRE_FALSE(ec); });
  });
  client_ws.async_read(client_in, [&](beast::error_code ec, std::size_t) {
    REQUIRE_FALSE(ec);
    echoed = true;
  });
  pair.run_until([&] { return echoed; });
  CHECK(beast::buffers_to_string(client_in.data()) == payload);

  // The server closes; its close frame, then close_notify, reach the client.
  bool closed = false, client_saw_close = false;
  server_ws.async_close(websocket::close_code::going_away,
                        [&](beast::error_code) { closed = true; });
  client_in.clear();
  client_ws.async_read(client_in, [&](beast::error_code ec, std::size_t) {
    CHECK(ec == websocket::error::closed);
    client_saw_close = true;
  });
  pair.run_until([&] { return client_saw_close && closed; });
  CHECK(client_ws.reason().code == websocket::close_code::going_away);
}
