// write_coalescing_stream over a real loopback TCP connection: bytes arrive whole and in
// order, back-to-back writes share system calls, a waiting reader uncorks at once (within
// the call; what the socket does not take goes later), a peer that does not read holds
// writes past high_water, errors stick, the websocket close waits for the buffer, and
// destroying the layer mid-write is safe.
//
// Deterministic without sleeps: one io_context on this thread, stepped with poll() and
// run_one(), whose handlers run in the order they were posted.
#include <doctest/doctest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "coalescing_checks.hpp"
#include "wsvisor/write_coalescing_stream.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using layer = wsvisor::write_coalescing_stream<beast::tcp_stream>;
using wsvisor::testing::check_back_to_back_writes;
using wsvisor::testing::numbered;
using wsvisor::testing::read_exactly;

namespace {

// A connected pair on loopback: `server` under the layer, `peer` a plain socket.
struct loopback {
  asio::io_context io;
  std::optional<layer> server;
  tcp::socket peer{io};

  loopback() {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    peer.connect(acceptor.local_endpoint());
    server.emplace(beast::tcp_stream(acceptor.accept()));
  }

  // Reads exactly n bytes on the peer, running the io_context meanwhile.
  std::string peer_read(std::size_t n) { return read_exactly(io, peer, n); }
};

}  // namespace

TEST_CASE("back-to-back writes arrive whole, in order, in far fewer system calls") {
  loopback pair;
  check_back_to_back_writes(pair);
}

TEST_CASE("a reader waiting on the socket lets a write go out within the call") {
  loopback pair;
  std::string read_buffer(16, '\0');
  bool read_done = false;
  pair.server->async_read_some(asio::buffer(read_buffer),
                               [&](beast::error_code, std::size_t) { read_done = true; });
  const std::string message = "hello";
  bool written = false;
  pair.server->async_write_some(asio::buffer(message), [&](beast::error_code ec, std::size_t) {
    CHECK_FALSE(ec);
    written = true;
  });
  // Sent before the call returned (a request/response peer has nothing more coming),
  // and the socket took it all; the completion is still posted, never run inline.
  CHECK(pair.server->flushes() == 1);
  CHECK(pair.server->buffered_bytes() == 0);
  CHECK_FALSE(written);
  pair.io.run_one();
  CHECK(written);
  CHECK(pair.peer_read(message.size()) == message);
  CHECK_FALSE(read_done);
}

TEST_CASE("what the socket does not take at once is written later, whole and in order") {
  loopback pair;
  beast::get_lowest_layer(*pair.server)
      .socket()
      .set_option(asio::socket_base::send_buffer_size(4096));
  std::string read_buffer(16, '\0');
  pair.server->async_read_some(asio::buffer(read_buffer), [](beast::error_code, std::size_t) {});
  std::string message;
  for (int i = 0; message.size() < 48 * 1024; ++i) message += numbered(i);
  REQUIRE(message.size() < layer::high_water);
  bool written = false;
  pair.server->async_write_some(asio::buffer(message), [&](beast::error_code ec, std::size_t n) {
    CHECK_FALSE(ec);
    CHECK(n == message.size());
    written = true;
  });
  CHECK(pair.server->flushes() == 1);
  CHECK(pair.server->buffered_bytes() > 0);  // the rest waits for the socket
  CHECK(pair.peer_read(message.size()) == message);
  pair.io.restart();
  for (int i = 0; i < 100 && !written; ++i) pair.io.run_one_for(std::chrono::seconds(5));
  CHECK(written);
  CHECK(pair.server->buffered_bytes() == 0);
}

TEST_CASE("a read completes on the reader's own executor and with its data") {
  loopback pair;
  auto strand = asio::make_strand(pair.io);
  std::string got(5, '\0');
  bool on_strand = false;
  std::size_t bytes = 0;
  pair.server->async_read_some(
      asio::buffer(got), asio::bind_executor(strand, [&](beast::error_code ec, std::size_t n) {
        CHECK_FALSE(ec);
        on_strand = strand.running_in_this_thread();
        bytes = n;
      }));
  asio::write(pair.peer, asio::buffer(std::string("hello")));
  pair.io.run_for(std::chrono::seconds(5));
  CHECK(on_strand);
  CHECK(bytes == 5);
  CHECK(got == "hello");
}

TEST_CASE("with no reader waiting the flush waits a round for more writes") {
  loopback pair;
  const std::string first = "one;", second = "two;";
  pair.server->async_write_some(asio::buffer(first), [&](beast::error_code ec, std::size_t) {
    REQUIRE_FALSE(ec);
    pair.server->async_write_some(asio::buffer(second),
                                  [](beast::error_code ec2, std::size_t) { CHECK_FALSE(ec2); });
  });
  pair.io.run_one();  // the flush's first round: corked
  CHECK(pair.server->flushes() == 0);
  CHECK(pair.peer_read(first.size() + second.size()) == first + second);
  CHECK(pair.server->flushes() == 1);  // both writes in one
}

TEST_CASE("a peer that does not read holds writes past high_water, then releases them") {
  loopback pair;
  const std::string chunk(16 * 1024, 'x');
  std::size_t accepted = 0, completed = 0;
  bool held = false;
  std::function<void(beast::error_code, std::size_t)> write_next = [&](beast::error_code ec,
                                                                       std::size_t bytes) {
    REQUIRE_FALSE(ec);
    completed += bytes;
    accepted += chunk.size();
    pair.server->async_write_some(asio::buffer(chunk), write_next);
  };
  write_next({}, 0);
  completed = 0;
  // Until the kernel's buffers are full and the layer's too: then nothing is ready.
  for (int i = 0; i < 100000; ++i) {
    pair.io.restart();
    if (pair.io.poll() == 0) {
      held = true;
      break;
    }
  }
  REQUIRE(held);
  CHECK(pair.server->buffered_bytes() > layer::high_water);
  CHECK(pair.server->buffered_bytes() <= layer::high_water + chunk.size());
  CHECK(completed + chunk.size() == accepted);  // the last write is the one held

  // The peer reads what is there; the held write completes.
  const std::size_t before = completed;
  std::string drained(accepted - chunk.size(), '\0');
  bool drained_all = false;
  asio::async_read(pair.peer, asio::buffer(drained), [&](beast::error_code ec, std::size_t) {
    REQUIRE_FALSE(ec);
    drained_all = true;
  });
  pair.io.restart();
  for (int i = 0; i < 100000 && !(drained_all && completed > before); ++i)
    pair.io.run_one_for(std::chrono::seconds(5));
  CHECK(drained_all);
  CHECK(completed > before);
  CHECK(drained == std::string(drained.size(), 'x'));
}

TEST_CASE("after a write error every later write fails with it") {
  loopback pair;
  pair.peer.set_option(asio::socket_base::linger(true, 0));
  pair.peer.close();  // RST
  const std::string chunk(4096, 'y');
  beast::error_code first_error;
  int writes = 0;
  std::function<void(beast::error_code, std::size_t)> write_next = [&](beast::error_code ec,
                                                                       std::size_t) {
    if (ec) {
      first_error = ec;
      return;
    }
    if (++writes > 1000) return;
    pair.server->async_write_some(asio::buffer(chunk), write_next);
  };
  pair.server->async_write_some(asio::buffer(chunk), write_next);
  pair.io.run_for(std::chrono::seconds(10));
  REQUIRE(first_error);

  beast::error_code later;
  std::size_t later_bytes = 1;
  pair.server->async_write_some(asio::buffer(chunk), [&](beast::error_code ec, std::size_t n) {
    later = ec;
    later_bytes = n;
  });
  pair.io.restart();
  pair.io.run_for(std::chrono::seconds(5));
  CHECK(later == first_error);
  CHECK(later_bytes == 0);
}

TEST_CASE("a websocket over the layer delivers every message, then its close") {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  websocket::stream<layer> server(io.get_executor());
  websocket::stream<beast::tcp_stream> client(io);
  const int count = 50;
  std::vector<std::string> sent, received;
  for (int i = 0; i < count; ++i) sent.push_back(numbered(i));

  std::function<void(int)> send_from = [&](int i) {
    if (i == count) {
      server.async_close(websocket::close_code::normal, [](beast::error_code) {});
      return;
    }
    server.async_write(asio::buffer(sent[i]), [&, i](beast::error_code ec, std::size_t) {
      REQUIRE_FALSE(ec);
      send_from(i + 1);
    });
  };
  acceptor.async_accept([&](beast::error_code ec, tcp::socket socket) {
    REQUIRE_FALSE(ec);
    beast::get_lowest_layer(server).socket() = std::move(socket);
    server.async_accept([&](beast::error_code accept_ec) {
      REQUIRE_FALSE(accept_ec);
      send_from(0);
    });
  });

  beast::flat_buffer buffer;
  beast::error_code end;
  std::function<void()> read_next = [&] {
    client.async_read(buffer, [&](beast::error_code ec, std::size_t) {
      if (ec) {
        end = ec;
        return;
      }
      received.push_back(beast::buffers_to_string(buffer.data()));
      buffer.consume(buffer.size());
      read_next();
    });
  };
  beast::get_lowest_layer(client).async_connect(
      acceptor.local_endpoint(), [&](beast::error_code ec) {
        REQUIRE_FALSE(ec);
        client.async_handshake("127.0.0.1", "/", [&](beast::error_code hs_ec) {
          REQUIRE_FALSE(hs_ec);
          read_next();
        });
      });
  io.run_for(std::chrono::seconds(10));

  CHECK(received == sent);
  CHECK(end == websocket::error::closed);
  CHECK(client.reason().code == websocket::close_code::normal);
}

namespace {

// The peer reads until the stream ends; returns the bytes it got.
std::size_t read_to_end(loopback& pair, beast::error_code& end) {
  std::string sink(64 * 1024, '\0');
  std::size_t total = 0;
  std::function<void()> read_more = [&] {
    pair.peer.async_read_some(asio::buffer(sink), [&](beast::error_code ec, std::size_t n) {
      total += n;
      if (ec) {
        end = ec;
        return;
      }
      read_more();
    });
  };
  read_more();
  pair.io.restart();
  pair.io.run_for(std::chrono::seconds(10));
  return total;
}

}  // namespace

TEST_CASE("destroying the layer while a write is in flight is safe and closes the socket") {
  loopback pair;
  const std::string big(8 * 1024 * 1024, 'z');  // more than loopback buffers take at once
  pair.server->async_write_some(asio::buffer(big), [](beast::error_code, std::size_t) {});
  pair.io.restart();
  for (int i = 0; i < 64 && pair.server->flushes() == 0; ++i) pair.io.run_one();
  REQUIRE(pair.server->flushes() == 1);
  pair.server.reset();
  beast::error_code end;
  const std::size_t total = read_to_end(pair, end);
  CHECK(end);  // EOF or reset: the socket was closed, not left open
  CHECK(total < big.size());
}

TEST_CASE("destroying the layer while a write is still corked closes the socket too") {
  loopback pair;
  const std::string big(8 * 1024 * 1024, 'z');
  pair.server->async_write_some(asio::buffer(big), [](beast::error_code, std::size_t) {});
  REQUIRE(pair.server->flushes() == 0);
  pair.server.reset();  // before the corked flush ran: the socket must not outlive it
  beast::error_code end;
  const std::size_t total = read_to_end(pair, end);
  CHECK(end);
  CHECK(total < big.size());
}

TEST_CASE("a held close frame waits: writes after it go first, then it, then the teardown") {
  loopback pair;
  int held_calls = 0;
  pair.server->hold_close_frames(true, [&] { ++held_calls; });
  const std::string before = "\x81\x03one";
  const std::string close_frame("\x88\x02\x03\xe8", 4);  // close 1000
  const std::string after = "\x81\x03two";
  bool close_written = false;
  pair.server->async_write_some(asio::buffer(before), [](beast::error_code, std::size_t) {});
  pair.server->async_write_some(asio::buffer(close_frame),
                                [&](beast::error_code ec, std::size_t bytes) {
                                  CHECK_FALSE(ec);
                                  CHECK(bytes == close_frame.size());  // taken whole
                                  close_written = true;
                                });
  CHECK(pair.server->close_frame_held());
  bool torn_down = false;
  async_teardown(beast::role_type::server, *pair.server,
                 [&](beast::error_code) { torn_down = true; });
  pair.io.poll();
  CHECK(close_written);
  CHECK(held_calls == 1);
  CHECK_FALSE(torn_down);  // the teardown waits for the held frame
  pair.server->async_write_some(asio::buffer(after), [](beast::error_code, std::size_t) {});
  pair.io.poll();
  CHECK(pair.peer_read(before.size() + after.size()) == before + after);
  CHECK_FALSE(torn_down);
  pair.server->release_close();
  CHECK(pair.peer_read(close_frame.size()) == close_frame);
  pair.peer.close();  // a server's teardown waits for the peer's end of the stream
  for (int i = 0; i < 100 && !torn_down; ++i) pair.io.run_one_for(std::chrono::seconds(1));
  CHECK(torn_down);
}

TEST_CASE("a held close frame can be released as a 1002 close instead") {
  loopback pair;
  pair.server->hold_close_frames(true);
  const std::string peer_code_5000("\x88\x04\x13\x88hi", 6);
  pair.server->async_write_some(asio::buffer(peer_code_5000),
                                [](beast::error_code, std::size_t) {});
  pair.io.poll();
  pair.server->release_close(uint16_t{1002});
  CHECK(pair.peer_read(4) == std::string("\x88\x02\x03\xea", 4));
}

TEST_CASE("close frames are not held when holding is off, and data frames never are") {
  loopback pair;
  pair.server->hold_close_frames(true);
  const std::string data = "\x82\x01\x88";  // a binary frame whose payload is 0x88
  pair.server->async_write_some(asio::buffer(data), [](beast::error_code, std::size_t) {});
  CHECK_FALSE(pair.server->close_frame_held());
  pair.server->hold_close_frames(false);
  const std::string close_frame("\x88\x00", 2);
  pair.server->async_write_some(asio::buffer(close_frame), [](beast::error_code, std::size_t) {});
  CHECK_FALSE(pair.server->close_frame_held());
  CHECK(pair.peer_read(data.size() + close_frame.size()) == data + close_frame);
}

TEST_CASE("primed bytes are read before the socket's") {
  loopback pair;
  pair.server->prime("first-");
  asio::write(pair.peer, asio::buffer(std::string("second")));
  std::string got;
  std::string buffer(4, '\0');
  std::function<void(beast::error_code, std::size_t)> on_read = [&](beast::error_code ec,
                                                                    std::size_t n) {
    REQUIRE_FALSE(ec);
    got.append(buffer.data(), n);
    if (got.size() < 12) pair.server->async_read_some(asio::buffer(buffer), on_read);
  };
  pair.server->async_read_some(asio::buffer(buffer), on_read);
  for (int i = 0; i < 100 && got.size() < 12; ++i) pair.io.run_one_for(std::chrono::seconds(1));
  CHECK(got == "first-second");
}
