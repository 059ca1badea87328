// message_buffer: the DynamicBuffer a WebSocket session reads each message into. Beast
// relies on the v1 DynamicBuffer contract (prepare, commit, data, size, capacity,
// max_size), and the session relies on an empty buffer needing no heap memory.
#include <doctest/doctest.h>

#include <boost/asio/buffer.hpp>

#include <stdexcept>
#include <string>

#include "wsvisor/message_buffer.hpp"

using wsvisor::message_buffer;
namespace asio = boost::asio;

static_assert(asio::is_dynamic_buffer_v1<message_buffer>::value,
              "Beast's websocket reads take a v1 DynamicBuffer");

namespace {

std::string contents(const message_buffer& buffer) {
  const auto bytes = buffer.data();
  return std::string(static_cast<const char*>(bytes.data()), bytes.size());
}

void write(message_buffer& buffer, const std::string& text, std::size_t prepared) {
  auto room = buffer.prepare(prepared);
  REQUIRE(room.size() == prepared);
  asio::buffer_copy(room, asio::buffer(text));
  buffer.commit(text.size());
}

}  // namespace

TEST_CASE("an empty buffer holds what a std::string holds without the heap") {
  message_buffer buffer;
  CHECK(buffer.size() == 0);
  CHECK(buffer.capacity() == std::string().capacity());
  CHECK(buffer.capacity() >= 1);  // the session uses it as its first read's limit
}

TEST_CASE("prepare then commit appends only the bytes committed") {
  message_buffer buffer;
  write(buffer, "hello", 15);
  CHECK(buffer.size() == 5);
  CHECK(contents(buffer) == "hello");
  write(buffer, ", world", 4000);  // more room than used: the rest is not readable
  CHECK(contents(buffer) == "hello, world");
}

TEST_CASE("committing more than was prepared commits what was prepared") {
  message_buffer buffer;
  auto room = buffer.prepare(3);
  asio::buffer_copy(room, asio::buffer(std::string("abc")));
  buffer.commit(10);
  CHECK(contents(buffer) == "abc");
  buffer.commit(5);  // nothing prepared: nothing changes
  CHECK(contents(buffer) == "abc");
}

TEST_CASE("take moves the message out and starts over without heap memory") {
  message_buffer buffer;
  const std::string big(5000, 'x');
  write(buffer, big, 6000);
  const std::string message = buffer.take();
  CHECK(message == big);
  CHECK(buffer.size() == 0);
  CHECK(buffer.capacity() == std::string().capacity());
  write(buffer, "next", 15);
  CHECK(buffer.take() == "next");
}

TEST_CASE("consume drops bytes from the front, clear keeps the allocation") {
  message_buffer buffer;
  write(buffer, std::string(100, 'a') + "tail", 200);
  buffer.consume(100);
  CHECK(contents(buffer) == "tail");
  const auto capacity = buffer.capacity();
  buffer.clear();
  CHECK(buffer.size() == 0);
  CHECK(buffer.capacity() == capacity);
  buffer.consume(1);  // consuming from an empty buffer is harmless
  CHECK(buffer.size() == 0);
}

TEST_CASE("prepare past max_size throws length_error, which Beast reports as an overflow") {
  message_buffer buffer(10);
  write(buffer, "12345678", 8);
  CHECK_THROWS_AS(buffer.prepare(3), std::length_error);
  CHECK(contents(buffer) == "12345678");  // nothing lost
  CHECK_NOTHROW(buffer.prepare(2));
}
