// subscribe: C connections subscribe (Centrifugo's connect + subscribe, or nothing for
// the uWS peer, which subscribes every connection itself) and count the publications
// they receive, each timed by the "ts" in its data. As in echo, the rate and latencies
// count only in the measuring window, after every connection is subscribed (or has
// failed) and --warmup.
#include "modes.hpp"
#include "pubsub.hpp"
#include "stats.hpp"
#include "ws_session.hpp"

#include <boost/beast/core/buffers_to_string.hpp>

#include <deque>
#include <memory>
#include <vector>

namespace wsload {
namespace {

namespace asio = boost::asio;

struct SubscribeStats : WsSessionStats {
  Counter connect_ok{0};
  Counter subscribed{0};  // every channel of the connection acknowledged
  Counter settled{0};     // subscribed or failed: the ramp ends when all are
  Counter deliveries{0};
  Counter deliveries_in_window{0};
  Counter without_ts{0};
  Counter pings{0};
  Counter pongs_sent{0};
  Counter other_pushes{0};
  Counter unexpected_replies{0};
  Counter malformed{0};
  LatencyHistogram latency_us;  // window only
  CounterMap connect_errors;
  CounterMap subscribe_errors;
  CounterMap disconnect_pushes;
};

constexpr std::uint32_t kConnectId = 1;
constexpr std::uint32_t kFirstSubscribeId = 2;

class SubscribeSession : public WsSession {
 public:
  SubscribeSession(Runner& runner, SubscribeStats& stats, const std::vector<std::string>& channels)
      : WsSession(runner, stats),
        stats_(stats),
        channels_(channels),
        centrifugo_(options_.protocol == "centrifugo") {}

 private:
  void on_open_failed() override { settle(); }

  void on_established() override {
    ws_.text(true);
    if (centrifugo_) {
      send(connect_command(kConnectId, options_.token));
    } else {
      ++stats_.subscribed;  // the peer subscribed the connection when it opened
      settle();
    }
  }

  // Once per connection: subscribed, or given up on.
  void settle() {
    if (settled_) return;
    settled_ = true;
    if (++stats_.settled == std::uint64_t(options_.connections)) runner_.ramp_done();
  }

  void on_message() override {
    auto data = buffer_.cdata();
    std::string_view frame(static_cast<const char*>(data.data()), data.size());
    if (centrifugo_) {
      for_each_line(frame, [this](std::string_view line) { handle(parse_server_message(line)); });
    } else if (ws_.got_text()) {
      deliver(find_timestamp(frame));
    }
    buffer_.consume(buffer_.size());
    read_next();
  }

  void handle(const ServerMessage& message) {
    using Kind = ServerMessage::Kind;
    switch (message.kind) {
      case Kind::publication:
        return deliver(message.ts);
      case Kind::ping:
        ++stats_.pings;
        if (pong_wanted_ && !stopping_) {
          ++stats_.pongs_sent;
          send(std::string(kPong));
        }
        return;
      case Kind::reply:
        return on_reply(message);
      case Kind::disconnect:
        stats_.disconnect_pushes.add(std::to_string(message.disconnect_code));
        return;
      case Kind::other_push:
        ++stats_.other_pushes;
        return;
      case Kind::malformed:
        ++stats_.malformed;
        return;
    }
  }

  void on_reply(const ServerMessage& reply) {
    if (reply.id == kConnectId && !connected_) {
      connected_ = true;
      if (reply.error_code) {
        stats_.connect_errors.add(std::to_string(*reply.error_code));
        return settle();
      }
      ++stats_.connect_ok;
      pong_wanted_ = reply.pong_wanted;
      if (channels_.empty()) {
        ++stats_.subscribed;
        return settle();
      }
      subscribe_replies_left_ = channels_.size();
      return send(subscribe_commands(kFirstSubscribeId, channels_));
    }
    bool subscribe_reply = reply.id >= kFirstSubscribeId &&
                           reply.id < kFirstSubscribeId + channels_.size() &&
                           subscribe_replies_left_ > 0;
    if (!subscribe_reply) {
      ++stats_.unexpected_replies;
      return;
    }
    if (reply.error_code) {
      stats_.subscribe_errors.add(std::to_string(*reply.error_code));
      subscribe_failed_ = true;
    }
    if (--subscribe_replies_left_ == 0) {
      if (!subscribe_failed_) ++stats_.subscribed;
      settle();
    }
  }

  void deliver(std::optional<std::uint64_t> ts) {
    ++stats_.deliveries;
    if (!ts) ++stats_.without_ts;
    if (!runner_.measuring()) return;
    ++stats_.deliveries_in_window;
    if (ts) {
      auto now = monotonic_ns();
      stats_.latency_us.record(now > *ts ? (now - *ts) / 1000 : 0);
    }
  }

  // Commands and pongs go out one Beast write at a time, in order.
  void send(std::string text) {
    outgoing_.push_back(std::move(text));
    if (!writing_) write_next();
  }

  void write_next() {
    writing_ = true;
    ws_.async_write(asio::buffer(outgoing_.front()),
                    [self = std::static_pointer_cast<SubscribeSession>(shared_from_this())](
                        boost::system::error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(boost::system::error_code ec) {
    writing_ = false;
    outgoing_.pop_front();
    if (ec) {
      if (open_ && !closing_) stats_.errors.add(describe("write", ec));
      if (close_after_write_) {
        closing_ = true;  // what ends the read now is our own close, not the server's
        beast::get_lowest_layer(ws_).close();
      }
      return;
    }
    if (close_after_write_) return begin_close();
    if (!outgoing_.empty()) write_next();
  }

  void on_ended(bool) override { settle(); }

  void begin_close() override {
    if (writing_ && !closing_) {
      // Beast takes one write at a time; the close goes after the one in flight.
      outgoing_.resize(1);
      close_after_write_ = true;
      return;
    }
    WsSession::begin_close();
  }

  SubscribeStats& stats_;
  const std::vector<std::string>& channels_;
  const bool centrifugo_;
  std::deque<std::string> outgoing_;
  std::size_t subscribe_replies_left_ = 0;
  bool connected_ = false;
  bool pong_wanted_ = false;
  bool subscribe_failed_ = false;
  bool settled_ = false;
  bool writing_ = false;
  bool close_after_write_ = false;
};

}  // namespace

boost::json::object run_subscribe(Runner& runner) {
  const Options& options = runner.options();
  const auto channels = options.protocol == "centrifugo"
                            ? channel_names(options.channel, options.channels)
                            : std::vector<std::string>{};
  SubscribeStats stats;
  auto sessions = make_sessions(options.connections, [&](int) {
    return std::make_shared<SubscribeSession>(runner, stats, channels);
  });
  // Paced connections start over connections / --rate seconds; each is then bounded by
  // --handshake-timeout twice (TCP connect, upgrade), and once more for the replies.
  double pacing_s = options.rate > 0 ? options.connections / options.rate : 0.0;
  runner.use_window(pacing_s + 3 * options.handshake_timeout_s, options.warmup_s);
  runner.set_progress_report([&] {
    return std::to_string(stats.open.value()) + " open, " +
           std::to_string(stats.subscribed.load()) + " subscribed, " +
           std::to_string(stats.deliveries.load()) + " deliveries, " +
           std::to_string(stats.closed_by_server.load()) + " closed by the server";
  });
  std::int64_t open_at_end = 0;
  run_sessions(runner, sessions, [&] { open_at_end = stats.open.value(); });

  auto window = runner.window();
  auto window_json = window.to_json("all_subscribed",
                                    stats.subscribed.load() == std::uint64_t(options.connections),
                                    options.warmup_s);
  window_json["deliveries"] = stats.deliveries_in_window.load();
  window_json["cpu_s"] = window.cpu_s;  // wsload's own: near seconds, the client is the limit

  boost::json::object out;
  out["protocol"] = options.protocol;
  out["connections"] = options.connections;
  out["channels"] = options.protocol == "centrifugo" ? options.channels : 1;
  out["established"] = stats.established.load();
  out["failed"] = stats.failed.load();
  if (options.protocol == "centrifugo") {
    out["connect_ok"] = stats.connect_ok.load();
    out["connect_errors"] = stats.connect_errors.to_json();
    out["subscribe_errors"] = stats.subscribe_errors.to_json();
  }
  out["subscribed"] = stats.subscribed.load();
  out["deliveries"] = stats.deliveries.load();
  out["deliveries_per_second"] = window.per_second(stats.deliveries_in_window.load());
  out["latency_us"] = stats.latency_us.to_json();
  out["window"] = window_json;
  out["deliveries_without_ts"] = stats.without_ts.load();
  out["pings"] = stats.pings.load();
  out["pongs_sent"] = stats.pongs_sent.load();
  out["disconnect_pushes"] = stats.disconnect_pushes.to_json();
  out["other_pushes"] = stats.other_pushes.load();
  out["unexpected_replies"] = stats.unexpected_replies.load();
  out["malformed"] = stats.malformed.load();
  out["peak"] = stats.open.peak();
  out["open_at_end"] = open_at_end;
  out["closed_by_server"] = stats.closed_by_server.load();
  out["close_codes"] = stats.close_codes.to_json();
  out["refusals"] = stats.refusals.to_json();
  out["errors"] = stats.errors.to_json();
  out["error_count"] = stats.errors.total();
  return out;
}

}  // namespace wsload
