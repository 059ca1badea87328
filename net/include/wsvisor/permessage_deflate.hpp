// permessage-deflate's sending side (RFC 7692 section 7.2.1), for frames built by hand
// (the server's session; wsload's pipelining client). Every message is compressed on its
// own, with no context takeover: the server always negotiates server_no_context_takeover,
// and a message without references to earlier ones is valid whatever the receiver
// agreed. So one deflate stream per thread serves every connection (its window and hash
// tables, 2^(window_bits+2) + 2^(mem_level+9) bytes, are paid once per thread, not per
// connection), and the same payload compresses to the same bytes for every recipient.
//
// Header-only, like frame_header.hpp beside it: a piece of the wire format that wsload
// shares, with Beast's zlib (compiled once with the rest of Beast).
#pragma once

#include <boost/beast/zlib/deflate_stream.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace wsvisor {

namespace detail {

namespace zlib = boost::beast::zlib;

// Compression level 6, zlib's default: the level that websocket peers (Beast, ws,
// Centrifugo's gorilla) use.
inline constexpr int kDeflateLevel = 6;

struct thread_deflater {
  zlib::deflate_stream stream;
  int window_bits = 0;
  int mem_level = 0;
};

inline zlib::deflate_stream& deflater_for(int window_bits, int mem_level) {
  thread_local std::unique_ptr<thread_deflater> deflater;
  if (!deflater || deflater->window_bits != window_bits || deflater->mem_level != mem_level) {
    deflater = std::make_unique<thread_deflater>();
    deflater->stream.reset(kDeflateLevel, window_bits, mem_level, zlib::Strategy::normal);
    deflater->window_bits = window_bits;
    deflater->mem_level = mem_level;
  } else {
    deflater->stream.reset();  // no context takeover: every message starts afresh
  }
  return deflater->stream;
}

}  // namespace detail

// The payload of one compressed message: raw DEFLATE, flushed, without the trailing
// 00 00 ff ff that the receiver appends back. window_bits 9..15, mem_level 1..9
// (server.compression_window_bits, server.compression_mem_level).
inline std::string deflate_message(std::string_view payload, int window_bits, int mem_level) {
  namespace zlib = boost::beast::zlib;
  auto& stream = detail::deflater_for(window_bits, mem_level);
  // Room for the worst case (incompressible input) plus the block and sync flushes.
  std::string out(stream.upper_bound(payload.size()) + 16, '\0');
  zlib::z_params params;
  params.next_in = payload.data();
  params.avail_in = payload.size();
  params.next_out = out.data();
  params.avail_out = out.size();
  boost::beast::error_code ec;
  stream.write(params, zlib::Flush::none, ec);
  // As Beast's own pmd writer (after Mark Adler, zlib issue 149): a block flush, then a
  // sync flush whose empty stored block (00 00 ff ff) the receiver appends back.
  if (!ec || ec == zlib::error::need_buffers) stream.write(params, zlib::Flush::block, ec);
  if (!ec || ec == zlib::error::need_buffers) stream.write(params, zlib::Flush::sync, ec);
  if ((ec && ec != zlib::error::need_buffers) || params.avail_in != 0 || params.total_out < 4)
    throw std::logic_error("deflate_message: the output bound was too small: " + ec.message());
  if (out.compare(params.total_out - 4, 4, std::string_view("\x00\x00\xff\xff", 4)) != 0)
    throw std::logic_error("deflate_message: the sync flush did not end in 00 00 ff ff");
  out.resize(params.total_out - 4);
  return out;
}

}  // namespace wsvisor
