// Drives an io_context on the test's thread until a condition holds, bounded: for the
// tests of net/'s clients (http_upstream, the Redis client), whose callbacks then run on
// the test's thread too. Header-only.
#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <thread>

namespace wsvisor::testing {

// Runs `io` until `done()` holds or `limit` passed; whether it holds. A stopped io_context
// (it ran out of work) is restarted: the work a test waits for may not be queued yet.
inline bool run_io_until(boost::asio::io_context& io, const std::function<bool()>& done,
                         std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (io.stopped()) io.restart();
    if (io.run_one_for(std::chrono::milliseconds(5)) == 0 && io.stopped())
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace wsvisor::testing
