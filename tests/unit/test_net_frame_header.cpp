// frame_header: the header of a whole data frame (RFC 6455 section 5.2), written by the
// session's batched writes and by wsload's pipelining client. Each length form at its
// boundaries, the opcode and the mask bit.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "wsvisor/frame_header.hpp"

using wsvisor::frame_header;
using wsvisor::is_sendable_close_code;

namespace {

std::vector<int> bytes_of(const frame_header& header) {
  return std::vector<int>(header.bytes.begin(), header.bytes.begin() + header.size);
}

}  // namespace

TEST_CASE("lengths up to 125 fit in the second byte") {
  CHECK(bytes_of(frame_header(true, 0, false)) == std::vector<int>{0x81, 0});
  CHECK(bytes_of(frame_header(false, 125, false)) == std::vector<int>{0x82, 125});
}

TEST_CASE("lengths 126 to 65535 take two more bytes, big-endian") {
  CHECK(bytes_of(frame_header(true, 126, false)) == std::vector<int>{0x81, 126, 0x00, 0x7E});
  CHECK(bytes_of(frame_header(true, 65535, false)) == std::vector<int>{0x81, 126, 0xFF, 0xFF});
}

TEST_CASE("lengths from 65536 take eight more bytes, big-endian") {
  CHECK(bytes_of(frame_header(false, 65536, false)) ==
        std::vector<int>{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0});
  CHECK(bytes_of(frame_header(false, 0x0102030405060708ull, false)) ==
        std::vector<int>{0x82, 127, 1, 2, 3, 4, 5, 6, 7, 8});
}

TEST_CASE("a client's frame sets the mask bit in every length form") {
  CHECK(bytes_of(frame_header(true, 5, true)) == std::vector<int>{0x81, 0x85});
  CHECK(frame_header(true, 300, true).bytes[1] == (0x80 | 126));
  CHECK(frame_header(true, 70000, true).bytes[1] == (0x80 | 127));
}

TEST_CASE("RSV1 marks a compressed message (permessage-deflate)") {
  CHECK(bytes_of(frame_header(true, 3, false, true)) == std::vector<int>{0xC1, 3});
  CHECK(bytes_of(frame_header(false, 3, true, true)) == std::vector<int>{0xC2, 0x83});
  CHECK(frame_header(true, 3, false, true).text());
  CHECK_FALSE(frame_header(false, 3, false, true).text());
}

TEST_CASE("close codes: those a server may send, and no other") {
  for (int code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 1014, 3000, 4999})
    CHECK_MESSAGE(is_sendable_close_code(code), code);
  // 1004-1006 and 1015 are never sent; 1010 is the client's (a missing extension).
  for (int code : {0, 999, 1004, 1005, 1006, 1010, 1015, 2999, 5000, 65535})
    CHECK_MESSAGE(!is_sendable_close_code(code), code);
}
