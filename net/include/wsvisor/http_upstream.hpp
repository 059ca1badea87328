// The upstream_port over HTTP/1.1 (CONTRACT 11.1): Beast's client on the caller's
// io_context, keep-alive connections pooled per (scheme, host, port), https with the
// system's CA store. Beast stays in net/src/http_upstream.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "wsvisor/upstream_port.hpp"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace wsvisor {

struct http_upstream_options {
  // Head and body of one response as they come over the wire (chunk framing included);
  // a larger response is outcome::too_large and its connection is closed.
  uint64_t max_response_bytes = 1 << 20;
  // Idle keep-alive connections kept per (scheme, host, port); the rest are closed.
  std::size_t max_idle_per_host = 32;
};

// The client runs on `io` (any number of threads): it has no thread of its own and
// never blocks. `done` runs on the client's strand: it should be quick (post or send on)
// and must not throw. Destroy the port before `io`; an attempt still running when `io`
// is destroyed never gets its `done`.
//
// The outcomes, exactly:
// - response: a whole response parsed (any status; 1xx interim answers are passed over).
// - connect_error: nothing usable came back from the server: the URL or a header is
//   invalid (nothing is sent; error "invalid ..."), the name does not resolve, the
//   connection is refused or unreachable, the TLS handshake or the certificate check
//   fails, or the connection broke before the first byte of the response (after the one
//   retry of a reused connection). All of these are worth a retry with the same delivery.
// - timeout: attempt.timeout passed first: one deadline from the attempt's start over
//   resolve, connect, handshake, write and the whole response (not per read).
// - too_large: the response passed max_response_bytes; the connection is closed at once.
// - malformed: the bytes are not HTTP, the framing is broken (bad chunk, bad length), or
//   the connection broke after part of the response.
// - cancelled: cancel() came first; the connection is closed.
std::shared_ptr<upstream_port> make_http_upstream(boost::asio::io_context& io,
                                                  http_upstream_options options);

}  // namespace wsvisor
