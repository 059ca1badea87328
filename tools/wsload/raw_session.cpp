#include "raw_session.hpp"

#include <boost/asio/post.hpp>

namespace wsload {

namespace asio = boost::asio;

void RawStats::add_to(boost::json::object& out) const {
  out["established"] = established.load();
  out["failed"] = failed.load();
  out["peak"] = open.peak();
  out["closed_by_server"] = closed_by_server.to_json();
  out["closed_by_server_total"] = closed_by_server.total();
  out["time_to_close_s"] = time_to_close_s.to_json();
  out["open_at_end"] = open_at_end.load();
  out["close_codes"] = close_codes.to_json();
  out["pings_seen"] = pings_seen.load();
  out["data_frames_seen"] = data_frames_seen.load();
  out["bytes_drained"] = bytes_drained.load();
  out["drains_truncated"] = drains_truncated.load();
  out["refusals"] = refusals.to_json();
  out["errors"] = errors.to_json();
  out["error_count"] = errors.total();
}

RawSession::RawSession(Runner& runner, RawStats& stats, std::uint64_t id, int drain_wait_ms)
    : runner_(runner),
      options_(runner.options()),
      stats_(stats),
      id_(id),
      strand_(asio::make_strand(runner.io())),
      stream_(strand_),
      pacing_timer_(strand_),
      probe_timer_(strand_),
      drain_wait_ms_(drain_wait_ms) {}

void RawSession::start() {
  after_attempt_slot(strand_, pacing_timer_, runner_, [self = shared_from_this()] {
    if (!self->stopping_) self->open();
  });
}

void RawSession::open() {
  async_open_tcp(stream_, runner_, [self = shared_from_this()](boost::system::error_code ec) {
    if (ec) return self->on_upgrade(ec, 0);
    async_raw_upgrade(
        self->stream_, self->options_, self->buffer_,
        [self](boost::system::error_code ec, int status) { self->on_upgrade(ec, status); });
  });
}

void RawSession::on_upgrade(boost::system::error_code ec, int status) {
  if (stopping_ && ec == asio::error::operation_aborted) return;
  if (ec || status != 101) {
    ++stats_.failed;
    if (ec) {
      stats_.errors.add(describe("upgrade", ec));
    } else {
      stats_.refusals.add(std::to_string(status));
    }
    return;
  }
  ++stats_.established;
  stats_.open.increment();
  established_ = true;
  established_at_ = Clock::now();
  if (stopping_) return finish();
  schedule_probe();
  on_established();
}

void RawSession::schedule_probe() {
  probe_timer_.expires_after(to_duration(options_.probe_interval_ms / 1000.0));
  probe_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->stopping_ || self->server_closed_) return;
    auto state = probe_tcp_state(self->fd());
    if (state != TcpState::open) return self->note_server_closed(state);
    self->schedule_probe();
  });
}

void RawSession::note_server_closed(TcpState state) {
  if (server_closed_ || !established_) return;
  server_closed_ = true;
  stats_.closed_by_server.add(to_string(state));
  stats_.time_to_close_s.add(seconds_between(established_at_, Clock::now()));
}

void RawSession::stop() {
  asio::post(strand_, [self = shared_from_this()] {
    self->stopping_ = true;
    self->pacing_timer_.cancel();
    self->probe_timer_.cancel();
    if (self->established_) return self->finish();
    self->stream_.close();  // still connecting or upgrading: give up on it
  });
}

// The only read this connection ever does: everything the server sent, to see the
// frames (pings, close code) a client that never reads was sent.
void RawSession::finish() {
  on_stopping();
  FrameScanner scanner;
  scanner.feed(buffer_.data(), buffer_.size());
  // 64 MiB is far more than kernel buffers hold: past it the server is still sending
  // from a queue of its own.
  auto [state, truncated] = drain_socket(fd(), scanner, drain_wait_ms_, 1.0, 64u << 20);
  if (truncated) ++stats_.drains_truncated;
  if (state == TcpState::open) {
    ++stats_.open_at_end;
  } else {
    note_server_closed(state);
  }
  stats_.pings_seen += scanner.pings;
  stats_.data_frames_seen += scanner.data_frames;
  stats_.bytes_drained += scanner.bytes;
  if (scanner.close_code) stats_.close_codes.add(std::to_string(*scanner.close_code));
  stats_.open.decrement();
  stream_.close();
}

}  // namespace wsload
