// slow: a consumer that sends without ever reading. The echoes pile up in our receive
// buffer, then in the server's socket, then in the server's own send queue, which the
// server must cap (close 1008 "slow consumer", then TCP close).
#include "modes.hpp"
#include "raw_session.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <random>
#include <vector>

namespace wsload {
namespace {

namespace asio = boost::asio;

struct SlowStats {
  Counter bytes_sent{0};
  Counter messages_sent{0};
  Counter write_pending_at_end{0};
  CounterMap write_errors;
};

// One masked client frame carrying `payload`. The same bytes are sent again and again:
// the server cannot tell, and building it once keeps the client cheap.
std::string client_frame(const std::string& payload, bool binary) {
  std::string frame;
  frame.push_back(static_cast<char>(0x80 | (binary ? 0x2 : 0x1)));
  auto size = payload.size();
  if (size < 126) {
    frame.push_back(static_cast<char>(0x80 | size));
  } else if (size <= 0xffff) {
    frame.push_back(static_cast<char>(0x80 | 126));
    frame.push_back(static_cast<char>(size >> 8));
    frame.push_back(static_cast<char>(size & 0xff));
  } else {
    frame.push_back(static_cast<char>(0x80 | 127));
    for (int shift = 56; shift >= 0; shift -= 8) {
      frame.push_back(static_cast<char>((std::uint64_t{size} >> shift) & 0xff));
    }
  }
  std::mt19937 random{std::random_device{}()};
  char mask[4];
  for (auto& byte : mask) byte = static_cast<char>(random());
  frame.append(mask, 4);
  for (std::size_t i = 0; i < size; ++i)
    frame.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
  return frame;
}

class SlowSession : public RawSession {
 public:
  SlowSession(Runner& runner, RawStats& stats, SlowStats& slow_stats, std::uint64_t id)
      // Wait a little during the final drain: the server may still hold echoes and
      // its close frame behind our full receive window.
      : RawSession(runner, stats, id, 50), slow_stats_(slow_stats), pace_timer_(strand_) {}

 protected:
  void on_established() override {
    std::string payload;
    fill_payload(payload, id_, 0, options_.size, options_.binary);
    frame_ = client_frame(payload, options_.binary);
    write_next();
  }

  void on_stopping() override {
    pace_timer_.cancel();
    if (writing_) ++slow_stats_.write_pending_at_end;
    stream_.cancel();
  }

 private:
  std::shared_ptr<SlowSession> self() {
    return std::static_pointer_cast<SlowSession>(shared_from_this());
  }

  void write_next() {
    writing_ = true;
    asio::async_write(
        stream_, asio::buffer(frame_),
        [self = self()](boost::system::error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(boost::system::error_code ec) {
    writing_ = false;
    if (stopping_) return;
    if (ec) {
      slow_stats_.write_errors.add(ec.message());
      // EPIPE / ECONNRESET: the server has closed; the kernel's state says how.
      auto state = probe_tcp_state(fd());
      note_server_closed(state == TcpState::open ? TcpState::reset : state);
      return;
    }
    ++slow_stats_.messages_sent;
    slow_stats_.bytes_sent += options_.size;
    if (options_.message_rate <= 0) return write_next();
    pace_timer_.expires_after(to_duration(1.0 / options_.message_rate));
    pace_timer_.async_wait([self = self()](boost::system::error_code ec) {
      if (!ec && !self->stopping_) self->write_next();
    });
  }

  SlowStats& slow_stats_;
  asio::steady_timer pace_timer_;
  std::string frame_;
  bool writing_ = false;
};

}  // namespace

boost::json::object run_slow(Runner& runner) {
  const Options& options = runner.options();
  RawStats stats;
  SlowStats slow_stats;
  auto sessions = make_sessions(options.connections, [&](int i) {
    return std::make_shared<SlowSession>(runner, stats, slow_stats, i);
  });
  runner.set_progress_report([&] {
    return std::to_string(slow_stats.bytes_sent.load()) + " bytes sent, " +
           std::to_string(stats.closed_by_server.total()) + " closed by the server";
  });
  run_sessions(runner, sessions);

  boost::json::object out;
  out["connections"] = options.connections;
  out["size"] = options.size;
  out["message_rate"] = options.message_rate;
  out["bytes_sent"] = slow_stats.bytes_sent.load();
  out["messages_sent"] = slow_stats.messages_sent.load();
  out["write_errors"] = slow_stats.write_errors.to_json();
  out["write_pending_at_end"] = slow_stats.write_pending_at_end.load();
  stats.add_to(out);
  return out;
}

}  // namespace wsload
