// hold: many idle connections held open for the duration. Each keeps a read pending so
// that Beast answers the server's pings; what ends a connection early is recorded.
#include "connection.hpp"
#include "modes.hpp"
#include "stats.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <memory>
#include <vector>

namespace wsload {
namespace {

namespace asio = boost::asio;

struct HoldStats {
  Counter established{0};
  Counter failed{0};
  Counter closed_by_server{0};
  Counter closed_at_end{0};
  Counter messages_received{0};
  Gauge open;
  CounterMap refusals;
  CounterMap errors;
  CounterMap close_codes;
  DurationSamples time_to_server_close_s;
};

class HoldSession : public std::enable_shared_from_this<HoldSession> {
 public:
  HoldSession(Runner& runner, HoldStats& stats)
      : runner_(runner),
        stats_(stats),
        strand_(asio::make_strand(runner.io())),
        ws_(strand_),
        pacing_timer_(strand_) {}

  void start() {
    asio::post(strand_, [self = shared_from_this()] {
      self->pacing_timer_.expires_at(self->runner_.next_attempt_slot());
      self->pacing_timer_.async_wait([self](boost::system::error_code ec) {
        if (ec || self->stopping_) return;
        self->open();
      });
    });
  }

  void stop() {
    asio::post(strand_, [self = shared_from_this()] { self->on_stop(); });
  }

 private:
  void open() {
    configure_websocket(ws_, runner_.options());
    async_open_websocket(ws_, runner_, response_,
                         [self = shared_from_this()](OpenResult result) { self->on_open(result); });
  }

  void on_open(const OpenResult& result) {
    if (result.ec) {
      if (stopping_ && result.ec == asio::error::operation_aborted) return;
      ++stats_.failed;
      if (result.refused()) {
        stats_.refusals.add(std::to_string(result.status));
      } else {
        stats_.errors.add(describe(result.phase, result.ec));
      }
      return;
    }
    ++stats_.established;
    stats_.open.increment();
    open_ = true;
    established_at_ = Clock::now();
    if (stopping_) return begin_close();
    read_next();
  }

  void read_next() {
    ws_.async_read(buffer_, [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
      self->on_read(ec);
    });
  }

  void on_read(boost::system::error_code ec) {
    if (!ec) {
      ++stats_.messages_received;
      buffer_.consume(buffer_.size());
      return read_next();
    }
    if (!open_) return;
    open_ = false;
    stats_.open.decrement();
    if (closing_) {
      ++stats_.closed_at_end;
      return;
    }
    ++stats_.closed_by_server;
    stats_.time_to_server_close_s.add(seconds_between(established_at_, Clock::now()));
    if (ec == websocket::error::closed) {
      stats_.close_codes.add(std::to_string(ws_.reason().code));
    } else {
      // No close frame: what RFC 6455 reports as 1006.
      stats_.close_codes.add("1006");
      stats_.errors.add(describe("read", ec));
    }
  }

  void on_stop() {
    stopping_ = true;
    pacing_timer_.cancel();
    if (open_) return begin_close();
    if (!closing_) beast::get_lowest_layer(ws_).close();  // still connecting
  }

  void begin_close() {
    if (closing_) return;
    closing_ = true;
    ws_.async_close(websocket::close_code::normal,
                    [self = shared_from_this()](boost::system::error_code ec) {
                      if (ec && ec != asio::error::operation_aborted) {
                        self->stats_.errors.add(describe("close", ec));
                      }
                    });
  }

  Runner& runner_;
  HoldStats& stats_;
  Strand strand_;
  WsStream ws_;
  asio::steady_timer pacing_timer_;
  websocket::response_type response_;
  beast::flat_buffer buffer_;
  Clock::time_point established_at_;
  bool open_ = false;
  bool stopping_ = false;
  bool closing_ = false;
};

}  // namespace

boost::json::object run_hold(Runner& runner) {
  const Options& options = runner.options();
  HoldStats stats;
  std::vector<std::shared_ptr<HoldSession>> sessions;
  sessions.reserve(options.connections);
  for (int i = 0; i < options.connections; ++i) {
    sessions.push_back(std::make_shared<HoldSession>(runner, stats));
  }
  runner.set_progress_report([&] {
    return std::to_string(stats.open.value()) + " open, " + std::to_string(stats.failed.load()) +
           " failed, " + std::to_string(stats.closed_by_server.load()) + " closed by the server";
  });
  for (auto& session : sessions) session->start();
  std::int64_t open_at_end = 0;
  runner.run([&] {
    open_at_end = stats.open.value();
    for (auto& session : sessions) session->stop();
  });

  boost::json::object out;
  out["connections"] = options.connections;
  out["established"] = stats.established.load();
  out["failed"] = stats.failed.load();
  out["peak"] = stats.open.peak();
  out["open_at_end"] = open_at_end;
  out["closed_at_end"] = stats.closed_at_end.load();
  out["closed_by_server"] = stats.closed_by_server.load();
  out["close_codes"] = stats.close_codes.to_json();
  out["time_to_server_close_s"] = stats.time_to_server_close_s.to_json();
  out["messages_received"] = stats.messages_received.load();
  out["refusals"] = stats.refusals.to_json();
  out["errors"] = stats.errors.to_json();
  out["error_count"] = stats.errors.total();
  return out;
}

}  // namespace wsload
