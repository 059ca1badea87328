// What the modes share about talking to the server: opening a (source-bound) TCP
// connection, the upgrade through Beast or by hand, reading a socket's TCP state
// without consuming data, and scanning server frames from raw bytes.
#pragma once

#include "options.hpp"
#include "runner.hpp"
#include "stats.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>

#include "wsvisor/transport_stream.hpp"
#include "wsvisor/write_coalescing_stream.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace wsload {

namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using tcp = boost::asio::ip::tcp;
using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;
// Writes queued while one is in flight leave in one system call, as a pipelining client
// sends them: with --in-flight K the K messages do not cost K sendmsg calls.
// Plain TCP, or TLS over it with --tls on (async_open_websocket starts it).
using WsStream = websocket::stream<wsvisor::write_coalescing_stream<wsvisor::transport_stream>>;

// "phase: message", the key under which errors are counted.
std::string describe(const std::string& phase, const boost::system::error_code& ec);

// Opens the socket and binds it to the runner's next source address (if any). The
// kernel picks the port at connect time (IP_BIND_ADDRESS_NO_PORT), so each source
// address has the whole ephemeral range towards the one server port.
boost::system::error_code prepare_socket(tcp::socket& socket, Runner& runner);

// Sets the upgrade headers (--header, then `extra`, e.g. one client's X-User-Id;
// --subprotocol) and client timeouts on a stream.
void configure_websocket(WsStream& ws, const Options& options, const Headers& extra = {});

struct OpenResult {
  boost::system::error_code ec;
  std::string phase;  // "bind", "connect", "handshake" when ec is set
  int status = 0;     // HTTP status of a refused upgrade (ec = upgrade_declined), else 0
  bool refused() const { return status != 0 && status != 101; }
};

// TCP connect (bounded by --handshake-timeout), the TLS handshake with --tls on, then
// the Beast upgrade. The stream and
// response must outlive the operation (the caller's session owns them).
void async_open_websocket(WsStream& ws, Runner& runner, websocket::response_type& response,
                          std::function<void(OpenResult)> done);

// Counts an open that failed: a refused upgrade under its HTTP status in `refusals`,
// anything else as "phase: message" in `errors`.
void count_open_failure(const OpenResult& result, CounterMap& refusals, CounterMap& errors);

// On `strand` (the session's, which `timer` is on): waits for the runner's next attempt
// slot (--rate), then calls `then` unless the wait was cancelled. `then` holds the
// session.
void after_attempt_slot(const Strand& strand, boost::asio::steady_timer& timer, Runner& runner,
                        std::function<void()> then);

// TCP connect only (bounded by --handshake-timeout), for modes that speak raw bytes.
void async_open_tcp(beast::tcp_stream& stream, Runner& runner,
                    std::function<void(boost::system::error_code)> done);

// The upgrade request as bytes, for modes that send it by hand (in pieces, or before
// silence). A fresh random Sec-WebSocket-Key each call.
std::string upgrade_request(const Options& options);

// Sends upgrade_request and reads the response head; calls done(ec, status). Bytes the
// server sent after the head are left in `buffer` so frame scanning can start with them.
void async_raw_upgrade(beast::tcp_stream& stream, const Options& options, std::string& buffer,
                       std::function<void(boost::system::error_code, int status)> done);

// HTTP status from the first line of a response, 0 when it is not one.
int parse_status(const std::string& head);

// What the kernel knows about the connection, read without consuming any data: a
// client that never reads can still learn that the server closed.
enum class TcpState { open, peer_closed, reset };
TcpState probe_tcp_state(int fd);
const char* to_string(TcpState state);

// Closes with RST instead of FIN (SO_LINGER on with a zero timeout).
void abortive_close(tcp::socket& socket);

// Streams over server-to-client frames and remembers what a silent client would have
// seen: pings, data frames, and the close frame's code (1005 when it had none).
class FrameScanner {
 public:
  void feed(const char* data, std::size_t size);
  std::uint64_t pings = 0;
  std::uint64_t pongs = 0;
  std::uint64_t data_frames = 0;
  std::uint64_t bytes = 0;
  std::optional<int> close_code;

 private:
  void finish_frame();
  std::string header_;
  std::size_t header_needed_ = 2;
  std::uint64_t payload_left_ = 0;
  bool in_payload_ = false;
  int opcode_ = 0;
  bool masked_ = false;
  unsigned char mask_[4] = {0, 0, 0, 0};
  std::string control_payload_;
};

// Reads whatever the socket holds without blocking (when idle_wait_ms > 0, waits that
// long for more as long as data keeps coming) and feeds it to the scanner, for at most
// max_seconds and max_bytes: a server without a send-queue cap would otherwise keep us
// draining for as long as it has echoes queued.
struct DrainResult {
  TcpState state = TcpState::open;  // open (nothing more for now), peer_closed (EOF), reset
  bool truncated = false;           // a limit stopped the drain while data kept coming
};
DrainResult drain_socket(int fd, FrameScanner& scanner, int idle_wait_ms, double max_seconds,
                         std::uint64_t max_bytes);

// Appends one whole client data frame: FIN, text or binary, masked with a key derived
// from `salt` (RFC 6455 section 5.3; the key only has to vary, not be secret). With
// `compress`, the payload goes deflated, RSV1 set (permessage-deflate, negotiated).
void append_masked_frame(std::string& out, const std::string& payload, bool binary,
                         std::uint64_t salt, bool compress = false);

// Bytes of a deterministic message: the echo mode regenerates it to check the echo.
// `json`: JSON-like text (--payload json), else random letters or bytes.
void fill_payload(std::string& out, std::uint64_t stream_id, std::uint64_t sequence,
                  std::size_t size, bool binary, bool json = false);

Clock::duration to_duration(double seconds);

}  // namespace wsload
