// echo: C connections each keep K messages outstanding and check every echo byte for
// byte, measuring the round trip of each message. Rate and latency count only in the
// runner's measuring window: after every connection is up (or has failed) and --warmup.
#include "connection.hpp"
#include "modes.hpp"
#include "stats.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <cstring>
#include <deque>
#include <memory>
#include <vector>

namespace wsload {
namespace {

namespace asio = boost::asio;

struct EchoStats {
  Counter sent{0};
  Counter received{0};
  Counter mismatches{0};
  Counter connections_ok{0};
  Counter connections_failed{0};
  Counter connections_settled{0};  // up or failed: the ramp ends when all are
  Counter received_in_window{0};
  Counter closed_by_server{0};
  Counter abandoned_in_flight{0};
  LatencyHistogram latency_us;  // window only
  CounterMap refusals;
  CounterMap errors;
};

class EchoSession : public std::enable_shared_from_this<EchoSession> {
 public:
  EchoSession(Runner& runner, EchoStats& stats, std::uint64_t id)
      : runner_(runner),
        options_(runner.options()),
        stats_(stats),
        id_(id),
        strand_(asio::make_strand(runner.io())),
        ws_(strand_),
        drain_timer_(strand_) {}

  void start() {
    asio::post(strand_, [self = shared_from_this()] { self->open(); });
  }

  // Called from the runner's control strand at the soft stop.
  void stop() {
    asio::post(strand_, [self = shared_from_this()] { self->on_stop(); });
  }

 private:
  std::uint64_t in_flight() const { return next_send_ - next_receive_; }

  void open() {
    if (runner_.stopping()) return;
    configure_websocket(ws_, options_);
    async_open_websocket(ws_, runner_, response_,
                         [self = shared_from_this()](OpenResult result) { self->on_open(result); });
  }

  void on_open(const OpenResult& result) {
    if (result.ec && stopping_ && result.ec == asio::error::operation_aborted) return;
    if (result.ec) {
      ++stats_.connections_failed;
      count_open_failure(result, stats_.refusals, stats_.errors);
      return settled();
    }
    ++stats_.connections_ok;
    settled();
    open_ = true;
    ws_.binary(options_.binary);
    if (stopping_) return begin_close();
    read_next();
    send_more();
  }

  void settled() {
    if (++stats_.connections_settled == std::uint64_t(options_.connections)) runner_.ramp_done();
  }

  // Every free in-flight slot is filled at once, and the frames leave in one write, as
  // a pipelining client sends them. They are framed and masked here (RFC 6455 section
  // 5.2) and handed to the coalescing layer under the Beast stream, which keeps them in
  // order with Beast's own control frames; Beast still reads.
  void send_more() {
    if (!open_ || stopping_ || writing_ || in_flight() >= std::uint64_t(options_.in_flight)) {
      return;
    }
    outgoing_.clear();
    batch_ = 0;
    const auto now = Clock::now();
    while (in_flight() < std::uint64_t(options_.in_flight)) {
      fill_payload(payload_, id_, next_send_, options_.size, options_.binary,
                   options_.json_payload);
      append_masked_frame(outgoing_, payload_, options_.binary, next_send_, options_.compression);
      sent_at_.push_back(now);
      ++next_send_;
      ++batch_;
    }
    writing_ = true;
    ws_.next_layer().async_write_some(
        asio::buffer(outgoing_), [self = shared_from_this()](boost::system::error_code ec,
                                                             std::size_t) { self->on_write(ec); });
  }

  void on_write(boost::system::error_code ec) {
    writing_ = false;
    if (ec) return fail("write", ec);
    stats_.sent += batch_;
    send_more();
  }

  void read_next() {
    ws_.async_read(incoming_, [self = shared_from_this()](boost::system::error_code ec,
                                                          std::size_t) { self->on_read(ec); });
  }

  void on_read(boost::system::error_code ec) {
    if (ec) return fail("read", ec);
    if (sent_at_.empty()) {
      // The server sent something we did not ask for.
      ++stats_.mismatches;
      incoming_.consume(incoming_.size());
      return read_next();
    }
    auto latency = Clock::now() - sent_at_.front();
    sent_at_.pop_front();
    fill_payload(expected_, id_, next_receive_, options_.size, options_.binary,
                 options_.json_payload);
    ++next_receive_;
    bool same = ws_.got_binary() == options_.binary && incoming_.size() == expected_.size() &&
                std::memcmp(incoming_.data().data(), expected_.data(), expected_.size()) == 0;
    if (!same) ++stats_.mismatches;
    incoming_.consume(incoming_.size());
    ++stats_.received;
    if (runner_.measuring()) {
      ++stats_.received_in_window;
      stats_.latency_us.record(static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(latency).count()));
    }
    if (stopping_ && in_flight() == 0) return begin_close();
    send_more();
    read_next();
  }

  void on_stop() {
    stopping_ = true;
    if (closed_ || closing_) return;
    if (!open_) {
      // Still connecting: give up on it.
      beast::get_lowest_layer(ws_).close();
      return;
    }
    if (in_flight() == 0) return begin_close();
    // Wait for the outstanding echoes, but not past half the grace period: the rest of
    // it is for the close handshake.
    drain_timer_.expires_after(to_duration(options_.grace_s / 2));
    drain_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->closing_ || self->closed_) return;
      self->stats_.abandoned_in_flight += self->in_flight();
      self->begin_close();
    });
  }

  void begin_close() {
    closing_ = true;
    drain_timer_.cancel();
    ws_.async_close(websocket::close_code::normal,
                    [self = shared_from_this()](boost::system::error_code ec) {
                      if (ec && !self->closed_) {
                        self->stats_.errors.add(describe("close", ec));
                      }
                      self->closed_ = true;
                    });
  }

  void fail(const char* phase, boost::system::error_code ec) {
    if (closing_ || closed_) return;  // the read/write that our own close ended
    closed_ = true;
    drain_timer_.cancel();
    if (ec == websocket::error::closed) {
      ++stats_.closed_by_server;
      stats_.errors.add(std::string(phase) + ": closed by the server with " +
                        std::to_string(ws_.reason().code));
    } else {
      stats_.errors.add(describe(phase, ec));
    }
    beast::get_lowest_layer(ws_).close();
  }

  Runner& runner_;
  const Options& options_;
  EchoStats& stats_;
  const std::uint64_t id_;
  Strand strand_;
  WsStream ws_;
  asio::steady_timer drain_timer_;
  websocket::response_type response_;
  beast::flat_buffer incoming_;
  std::string payload_;
  std::string outgoing_;  // the frames of one batch
  std::uint64_t batch_ = 0;
  std::string expected_;
  std::deque<Clock::time_point> sent_at_;
  std::uint64_t next_send_ = 0;
  std::uint64_t next_receive_ = 0;
  bool open_ = false;
  bool writing_ = false;
  bool stopping_ = false;
  bool closing_ = false;
  bool closed_ = false;
};

}  // namespace

boost::json::object run_echo(Runner& runner) {
  const Options& options = runner.options();
  EchoStats stats;
  auto sessions = make_sessions(
      options.connections, [&](int i) { return std::make_shared<EchoSession>(runner, stats, i); });
  // Each connection is bounded by --handshake-timeout twice (TCP connect, then upgrade),
  // so by then every one is up or has failed.
  runner.use_window(2 * options.handshake_timeout_s, options.warmup_s);
  runner.set_progress_report([&] {
    return std::to_string(stats.connections_ok.load()) + " connected, " +
           std::to_string(stats.received.load()) + " echoes, " +
           std::to_string(stats.mismatches.load()) + " mismatches";
  });
  run_sessions(runner, sessions);

  auto window = runner.window();
  auto window_json =
      window.to_json("all_connected", stats.connections_failed.load() == 0, options.warmup_s);
  window_json["messages_received"] = stats.received_in_window.load();

  boost::json::object out;
  out["connections"] = options.connections;
  out["in_flight"] = options.in_flight;
  out["size"] = options.size;
  out["binary"] = options.binary;
  out["connections_ok"] = stats.connections_ok.load();
  out["connections_failed"] = stats.connections_failed.load();
  out["messages_sent"] = stats.sent.load();
  out["messages_received"] = stats.received.load();
  out["messages_per_second"] = window.per_second(stats.received_in_window.load());
  out["latency_us"] = stats.latency_us.to_json();
  out["window"] = window_json;
  out["mismatches"] = stats.mismatches.load();
  out["closed_by_server"] = stats.closed_by_server.load();
  out["abandoned_in_flight"] = stats.abandoned_in_flight.load();
  out["refusals"] = stats.refusals.to_json();
  out["errors"] = stats.errors.to_json();
  out["error_count"] = stats.errors.total();
  return out;
}

}  // namespace wsload
