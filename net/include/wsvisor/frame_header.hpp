// The header of one whole WebSocket data frame (RFC 6455 section 5.2): FIN, the text or
// binary opcode, and the payload length in its shortest form. Written by hand where
// whole messages go out in batches, below Beast's one-frame-per-write path: the server's
// session (unmasked) and wsload's pipelining client (masked: the caller appends the
// 4-byte masking key and masks the payload, section 5.3).
#pragma once

#include <array>
#include <cstdint>

namespace wsvisor {

struct frame_header {
  std::array<std::uint8_t, 10> bytes;
  std::uint8_t size;  // 2, 4 or 10

  // `compressed`: RSV1, the payload is a permessage-deflate message (RFC 7692 6).
  frame_header(bool text, std::uint64_t payload_size, bool masked, bool compressed = false) {
    bytes[0] = 0x80 | (compressed ? 0x40 : 0x00) | (text ? 0x1 : 0x2);
    const std::uint8_t mask_bit = masked ? 0x80 : 0x00;
    if (payload_size < 126) {
      bytes[1] = static_cast<std::uint8_t>(mask_bit | payload_size);
      size = 2;
    } else if (payload_size <= 0xFFFF) {
      bytes[1] = mask_bit | 126;
      bytes[2] = static_cast<std::uint8_t>(payload_size >> 8);
      bytes[3] = static_cast<std::uint8_t>(payload_size);
      size = 4;
    } else {
      bytes[1] = mask_bit | 127;
      for (int i = 0; i < 8; ++i)
        bytes[2 + i] = static_cast<std::uint8_t>(payload_size >> (56 - 8 * i));
      size = 10;
    }
  }

  const char* data() const noexcept { return reinterpret_cast<const char*>(bytes.data()); }
  bool text() const noexcept { return (bytes[0] & 0x0f) == 0x1; }
};

// Whether a server may send `code` in a close frame (RFC 6455 7.4: 1000-1003, 1007-1009,
// 1011 and the 1012-1014 IANA added; 3000-4999 for libraries and applications).
// 1004-1006 and 1015 are never sent, 1010 is the client's (a missing extension), 0-999
// and 5000+ are never used: a peer that gets one fails the connection.
constexpr bool is_sendable_close_code(std::int64_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1009) ||
         (code >= 1011 && code <= 1014) || (code >= 3000 && code <= 4999);
}

}  // namespace wsvisor
