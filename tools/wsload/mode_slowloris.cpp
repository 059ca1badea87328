// slowloris: the upgrade request dribbled one byte at a time. A server with a
// handshake timeout closes (or answers) before the request is complete; one without
// lets the connection hold a pending-handshake slot for as long as we like.
#include "connection.hpp"
#include "modes.hpp"
#include "stats.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <memory>
#include <vector>

namespace wsload {
namespace {

namespace asio = boost::asio;

struct SlowlorisStats {
  Counter connected{0};
  Counter connect_failed{0};
  Counter upgraded{0};
  Counter still_dribbling_at_end{0};
  Counter awaiting_answer_at_end{0};
  CounterMap closed_before_upgrade;    // "fin" / "reset" / "answered"
  CounterMap answered_before_upgrade;  // HTTP status the server answered mid-request
  CounterMap refusals;                 // non-101 answer to the complete request
  CounterMap errors;
  DurationSamples time_to_close_s;
  std::atomic<int> unfinished{0};  // sessions not yet ended: the last one ends the run
};

class SlowlorisSession : public std::enable_shared_from_this<SlowlorisSession> {
 public:
  SlowlorisSession(Runner& runner, SlowlorisStats& stats)
      : runner_(runner),
        options_(runner.options()),
        stats_(stats),
        strand_(asio::make_strand(runner.io())),
        stream_(strand_),
        timer_(strand_),
        request_(upgrade_request(options_)) {}

  void start() {
    after_attempt_slot(strand_, timer_, runner_, [self = shared_from_this()] {
      if (self->done_) return;
      async_open_tcp(self->stream_, self->runner_,
                     [self](boost::system::error_code ec) { self->on_connect(ec); });
    });
  }

  void stop() {
    asio::post(strand_, [self = shared_from_this()] {
      if (!self->done_ && self->connected_) {
        if (self->sent_ < self->request_.size()) {
          ++self->stats_.still_dribbling_at_end;
        } else {
          ++self->stats_.awaiting_answer_at_end;
        }
      }
      self->end();
    });
  }

  std::size_t request_size() const { return request_.size(); }

 private:
  void on_connect(boost::system::error_code ec) {
    if (done_) return;
    if (ec) {
      ++stats_.connect_failed;
      stats_.errors.add(describe("connect", ec));
      return end();
    }
    ++stats_.connected;
    connected_ = true;
    connected_at_ = Clock::now();
    read_more();
    send_next_byte();
  }

  // A read is always pending, so that an early answer or close is seen at once, even
  // between two bytes.
  void read_more() {
    stream_.async_read_some(
        asio::buffer(chunk_),
        [self = shared_from_this()](boost::system::error_code ec, std::size_t size) {
          self->on_read(ec, size);
        });
  }

  void on_read(boost::system::error_code ec, std::size_t size) {
    if (done_) return;
    if (!ec) answer_.append(chunk_.data(), size);
    bool head_complete = answer_.find("\r\n\r\n") != std::string::npos;
    if (!ec && !head_complete) return read_more();
    int status = parse_status(answer_);
    if (sent_ < request_.size()) {
      // The server gave up on us before the request was complete.
      stats_.time_to_close_s.add(seconds_between(connected_at_, Clock::now()));
      if (status != 0) {
        stats_.closed_before_upgrade.add("answered");
        stats_.answered_before_upgrade.add(std::to_string(status));
      } else {
        stats_.closed_before_upgrade.add(ec == asio::error::eof ? "fin" : "reset");
      }
    } else if (status == 101) {
      ++stats_.upgraded;
    } else if (status != 0) {
      stats_.refusals.add(std::to_string(status));
    } else {
      stats_.errors.add(describe("read", ec));
    }
    end();
  }

  void send_next_byte() {
    if (done_) return;
    asio::async_write(stream_, asio::buffer(request_.data() + sent_, 1),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        self->on_written(ec);
                      });
  }

  void on_written(boost::system::error_code ec) {
    if (done_) return;
    if (ec) {
      // Usually the pending read reports the close first; this is the rest.
      stats_.time_to_close_s.add(seconds_between(connected_at_, Clock::now()));
      stats_.closed_before_upgrade.add("write failed");
      return end();
    }
    if (++sent_ == request_.size()) return;  // now only the answer is awaited
    timer_.expires_after(to_duration(options_.byte_interval_ms / 1000.0));
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->send_next_byte();
    });
  }

  void end() {
    if (done_) return;
    done_ = true;
    timer_.cancel();
    stream_.close();
    if (--stats_.unfinished == 0) runner_.request_stop();
  }

  Runner& runner_;
  const Options& options_;
  SlowlorisStats& stats_;
  Strand strand_;
  beast::tcp_stream stream_;
  asio::steady_timer timer_;
  const std::string request_;
  std::size_t sent_ = 0;
  std::array<char, 4096> chunk_{};
  std::string answer_;
  Clock::time_point connected_at_;
  bool connected_ = false;
  bool done_ = false;
};

}  // namespace

boost::json::object run_slowloris(Runner& runner) {
  const Options& options = runner.options();
  SlowlorisStats stats;
  auto sessions = make_sessions(
      options.connections, [&](int) { return std::make_shared<SlowlorisSession>(runner, stats); });
  runner.set_progress_report([&] {
    return std::to_string(stats.connected.load()) + " dribbling, " +
           std::to_string(stats.closed_before_upgrade.total()) + " closed before the upgrade";
  });
  stats.unfinished = options.connections;
  run_sessions(runner, sessions);

  boost::json::object out;
  out["connections"] = options.connections;
  out["byte_interval_ms"] = options.byte_interval_ms;
  out["request_bytes"] = sessions.empty() ? 0 : sessions.front()->request_size();
  out["connected"] = stats.connected.load();
  out["connect_failed"] = stats.connect_failed.load();
  out["closed_before_upgrade"] = stats.closed_before_upgrade.total();
  out["closed_before_upgrade_by"] = stats.closed_before_upgrade.to_json();
  out["answered_before_upgrade"] = stats.answered_before_upgrade.to_json();
  out["time_to_close_s"] = stats.time_to_close_s.to_json();
  out["upgraded"] = stats.upgraded.load();
  out["refusals"] = stats.refusals.to_json();
  out["still_dribbling_at_end"] = stats.still_dribbling_at_end.load();
  out["awaiting_answer_at_end"] = stats.awaiting_answer_at_end.load();
  out["errors"] = stats.errors.to_json();
  out["error_count"] = stats.errors.total();
  return out;
}

}  // namespace wsload
