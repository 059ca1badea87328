// GET /admin/events (CONTRACT 15): the dashboard's feed, server-sent events on the HTTP
// connection the request came on. It opens with `hello` and the journal's kept events,
// then every interval sends the events since the last it sent and a `snapshot`.
//
// A dashboard cannot slow the server: one write is in flight at most, a tick that finds
// it still in flight sends nothing (the journal keeps what the next write will carry,
// `gap` counting what left the ring meanwhile), the socket's send buffer is small, and a
// stream whose write has not completed for kStallLimit is cut, as a slow consumer is.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <memory>
#include <string>

#include "server_state.hpp"
#include "wsvisor/transport_stream.hpp"

namespace wsvisor {

class event_stream : public std::enable_shared_from_this<event_stream> {
 public:
  static constexpr std::chrono::milliseconds kInterval{500};
  static constexpr std::chrono::seconds kStallLimit{10};
  // The kernel's send buffer for a stream: a few snapshots, so that a dashboard that
  // does not read is found out in seconds and holds little memory meanwhile.
  static constexpr int kSendBufferBytes = 64 * 1024;

  // `slot`: one unit of server_state::event_stream_budget, held until the stream ends.
  event_stream(transport_stream stream, std::shared_ptr<server_state> state, pending_handshake slot,
               std::string peer);
  ~event_stream();
  void run();

 private:
  void tick();
  void on_snapshot(std::string snapshot);
  // Appends the journal's events past the last one sent (and a gap, if some were missed).
  void append_events(std::string& out);
  void write(std::string text);
  void read_until_closed();
  void end(const char* why);

  transport_stream stream_;  // the HTTP connection the request came on (plain or TLS)
  boost::asio::steady_timer timer_;
  std::shared_ptr<server_state> state_;
  pending_handshake slot_;
  const std::string peer_;
  std::string out_;  // the write in flight
  bool writing_ = false;
  bool collecting_ = false;
  bool ended_ = false;
  std::chrono::steady_clock::time_point write_started_{};
  uint64_t last_seq_ = 0;
  std::array<char, 256> discard_{};
};

}  // namespace wsvisor
