// What the loopback tests of write_coalescing_stream share, over plain TCP
// (test_net_write_coalescing.cpp) and over TLS (test_net_transport_tls.cpp): running one
// io_context on this thread until a step is done, reading exactly n bytes on the peer,
// and the back-to-back write check that both layers must pass.
#pragma once

#include <doctest/doctest.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/beast/core/error.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace wsvisor::testing {

// Runs `io` (handlers in the order they were posted) until `done`, bounded.
inline void run_until(boost::asio::io_context& io, const std::function<bool()>& done) {
  io.restart();
  for (int i = 0; i < 100000 && !done(); ++i) io.run_one_for(std::chrono::seconds(5));
  REQUIRE(done());
}

// Reads exactly n bytes from `peer` (a socket, or a TLS stream: decrypted), running `io`.
template <class Peer>
std::string read_exactly(boost::asio::io_context& io, Peer& peer, std::size_t n) {
  std::string got(n, '\0');
  bool done = false;
  boost::asio::async_read(peer, boost::asio::buffer(got),
                          [&](boost::beast::error_code ec, std::size_t) {
                            REQUIRE_FALSE(ec);
                            done = true;
                          });
  run_until(io, [&] { return done; });
  return got;
}

inline std::string numbered(int i) {
  return "message " + std::to_string(i) + ";";
}

// 200 writes, each issued from the previous one's completion as Beast issues frames:
// each completes whole, the peer reads them all in order, and they leave in at most one
// flush per 8 writes. `pair` has the layer in `server` (an optional) and peer_read(n).
template <class Pair>
void check_back_to_back_writes(Pair& pair) {
  const int writes = 200;
  std::vector<std::string> messages;
  std::string expected;
  for (int i = 0; i < writes; ++i) {
    messages.push_back(numbered(i));
    expected += messages.back();
  }
  int next = 0;
  std::function<void(boost::beast::error_code, std::size_t)> write_next =
      [&](boost::beast::error_code ec, std::size_t bytes) {
        REQUIRE_FALSE(ec);
        if (next > 0) CHECK(bytes == messages[next - 1].size());  // whole, always
        if (next == writes) return;
        const auto& message = messages[next++];
        pair.server->async_write_some(boost::asio::buffer(message), write_next);
      };
  write_next({}, 0);
  CHECK(pair.peer_read(expected.size()) == expected);
  CHECK(pair.server->writes_accepted() == writes);
  CHECK(pair.server->flushes() <= writes / 8);
}

}  // namespace wsvisor::testing
