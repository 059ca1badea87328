// The redis_port over TCP (CONTRACT 14): Asio sockets on the caller's io_context, and
// hiredis's RESP reader and formatter as the codec only (hiredis's own sockets and async
// context are not used). Asio and hiredis stay in net/src/redis_client.cpp.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "wsvisor/redis_port.hpp"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace wsvisor {

struct redis_client_options {
  // The most bytes one reply may take on the wire (an array counts whole). hiredis keeps
  // a reply in memory until it is complete, so a larger one ends the connection (on_lost,
  // or on_ready during AUTH and SELECT) instead of growing without bound.
  std::size_t max_reply_bytes = std::size_t{512} << 20;
};

// The client runs on `io` (any number of threads): it has no thread of its own and never
// blocks. Each connection runs on a strand of its own, so its callbacks never overlap.
// Destroy the connections and the port before `io`.
//
// As implemented, beyond redis_port.hpp:
// - connect_timeout bounds everything up to on_ready: resolve, connect, AUTH and SELECT
//   (a server that accepts but never answers fails too: "AUTH: timed out after ...").
// - close() before on_ready: nothing at all is called, not even on_ready.
// - Dropping the last reference closes the connection once its pending commands have
//   their replies (a subscriber connection: at once); no handler is called for that.
// - A command that cannot be sent (an empty argv: Redis would never answer it, and every
//   later reply would go to the wrong command; or one over 512 MiB) is not written: its
//   `done` gets an error reply "ERR ..." made here, in its turn among the others. On a
//   subscriber connection it is dropped.
// - A reply when no command waits for one (SUBSCRIBE on a command connection), a
//   protocol error, or a reply over max_reply_bytes: the connection is lost (on_lost).
std::shared_ptr<redis_port> make_redis_client(boost::asio::io_context& io,
                                              redis_client_options options = {});

}  // namespace wsvisor
