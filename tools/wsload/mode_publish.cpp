// publish: the companion of subscribe. K publishers keep one publication outstanding
// each, evenly spaced at --message-rate in all or as fast as the answers come:
// POST /api/publish over keep-alive HTTP/1.1 (Centrifugo's server API, as wsvisor's hub
// mode serves it), or a WebSocket message that the uWS peer publishes and acknowledges.
// Each publication's data carries the CLOCK_MONOTONIC time at which it was sent.
#include "connection.hpp"
#include "modes.hpp"
#include "pubsub.hpp"
#include "stats.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace wsload {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;

struct PublishStats {
  Counter sent{0};
  Counter ok{0};
  Counter ok_in_window{0};
  Counter failed{0};
  Counter late{0};
  Counter connections_opened{0};
  std::atomic<std::uint64_t> max_lag_us{0};
  LatencyHistogram response_us;
  CounterMap http_statuses;  // answers other than 200, and refused upgrades
  CounterMap api_errors;     // Centrifugo's {"error":{"code":N}} in a 200
  CounterMap errors;
};

// The publications' send times: evenly spaced at --message-rate in all, or now when
// unpaced; none once --count have been claimed. A publisher that falls behind does not
// catch up in a burst: the next slot is one interval after the late one, so the rate
// achieved (publications_per_second) shows the shortfall and `late` counts the sends
// that left over 1 ms after the slot they had been given.
class Schedule {
 public:
  Schedule(double rate, std::uint64_t count) : rate_(rate), count_(count) {}

  std::optional<Clock::time_point> claim() {
    std::lock_guard lock(mutex_);
    if (count_ != 0 && claimed_ >= count_) return std::nullopt;
    ++claimed_;
    auto now = Clock::now();
    if (rate_ <= 0) return now;
    auto slot = std::max(now, next_);
    next_ = slot + to_duration(1.0 / rate_);
    return slot;
  }

 private:
  std::mutex mutex_;
  const double rate_;
  const std::uint64_t count_;
  std::uint64_t claimed_ = 0;
  Clock::time_point next_ = Clock::now();
};

struct Outcome {
  bool ok = false;
  bool reconnect = false;  // the connection is gone (or the server will close it)
};

// One publisher: connect, then claim a slot, wait for it, publish, wait for the answer,
// again; a broken connection is reopened 100 ms later. The transport is the subclass's.
class Publisher : public std::enable_shared_from_this<Publisher> {
 public:
  Publisher(Runner& runner, PublishStats& stats, Schedule& schedule, std::atomic<int>& active)
      : runner_(runner),
        options_(runner.options()),
        stats_(stats),
        strand_(asio::make_strand(runner.io())),
        schedule_(schedule),
        active_(active),
        timer_(strand_) {}
  virtual ~Publisher() = default;

  void start() {
    ++active_;
    asio::post(strand_, [self = shared_from_this()] { self->connect(); });
  }

  void stop() {
    asio::post(strand_, [self = shared_from_this()] {
      self->stopping_ = true;
      self->timer_.cancel();
      if (!self->busy_) self->finish();
    });
  }

 protected:
  // TCP connect (and upgrade); done(true) when the connection can publish.
  virtual void open(std::function<void(bool)> done) = 0;
  // Sends one publication and waits for its answer.
  virtual void publish(const std::string& data, std::function<void(Outcome)> done) = 0;
  // graceful: the run is over (WebSocket close handshake); else the connection broke.
  virtual void close(bool graceful) = 0;

  Runner& runner_;
  const Options& options_;
  PublishStats& stats_;
  Strand strand_;

 private:
  void connect() {
    if (stopping_) return finish();
    busy_ = true;
    open([self = shared_from_this()](bool ok) {
      self->busy_ = false;
      if (self->stopping_) return self->finish();
      if (!ok) return self->reconnect_later();
      ++self->stats_.connections_opened;
      self->next();
    });
  }

  void reconnect_later() {
    timer_.expires_after(std::chrono::milliseconds(100));
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->stopping_) return self->finish();
      self->connect();
    });
  }

  void next() {
    if (stopping_) return finish();
    auto slot = schedule_.claim();
    if (!slot) return finish();  // --count reached
    timer_.expires_at(*slot);
    timer_.async_wait([self = shared_from_this(), slot = *slot](boost::system::error_code ec) {
      if (ec || self->stopping_) return self->finish();
      self->send(slot);
    });
  }

  void send(Clock::time_point slot) {
    auto now = Clock::now();
    auto lag_us = static_cast<std::uint64_t>(std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::microseconds>(now - slot).count()));
    if (lag_us > 1000) ++stats_.late;
    auto seen = stats_.max_lag_us.load(std::memory_order_relaxed);
    while (lag_us > seen && !stats_.max_lag_us.compare_exchange_weak(seen, lag_us)) {
    }
    data_ = timestamped_data(monotonic_ns(), options_.size);
    ++stats_.sent;
    busy_ = true;
    publish(data_, [self = shared_from_this(), sent_at = now](Outcome outcome) {
      self->busy_ = false;
      if (outcome.ok) {
        ++self->stats_.ok;
        if (self->runner_.measuring()) ++self->stats_.ok_in_window;
        self->stats_.response_us.record(static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - sent_at).count()));
      } else {
        ++self->stats_.failed;
      }
      if (outcome.reconnect) {
        self->close(false);
        if (self->stopping_) return self->finish();
        return self->connect();
      }
      self->next();
    });
  }

  // Once: the publisher is done (stop, --count reached); the last one ends the run.
  void finish() {
    if (finished_) return;
    finished_ = true;
    close(true);
    if (--active_ == 0) runner_.request_stop();
  }

  Schedule& schedule_;
  std::atomic<int>& active_;
  asio::steady_timer timer_;
  std::string data_;
  bool busy_ = false;
  bool stopping_ = false;
  bool finished_ = false;
};

// Centrifugo's server API: POST {"channel":C,"data":D}, answered 200 {"result":{}} or
// 200 {"error":{"code":N,"message":"..."}}.
class HttpPublisher : public Publisher {
 public:
  using Publisher::Publisher;

 protected:
  void open(std::function<void(bool)> done) override {
    if (!stream_) {
      stream_.emplace(strand_);
      request_.method(http::verb::post);
      request_.target(options_.api_path);
      request_.version(11);
      request_.set(http::field::host, options_.host_header());
      request_.set(http::field::user_agent, "wsload");
      request_.set(http::field::content_type, "application/json");
      const char* env_key = std::getenv("WSVISOR_API_KEY");
      auto key = !options_.api_key.empty() ? options_.api_key : env_key ? env_key : "";
      if (!key.empty()) request_.set("X-API-Key", key);
      request_.keep_alive(true);
      prefix_ = "{\"channel\":" + boost::json::serialize(boost::json::string(options_.channel)) +
                ",\"data\":";
    }
    buffer_.clear();
    async_open_tcp(*stream_, runner_, [this, done = std::move(done)](boost::system::error_code ec) {
      if (ec) stats_.errors.add(describe("connect", ec));
      done(!ec);
    });
  }

  void publish(const std::string& data, std::function<void(Outcome)> done) override {
    request_.body() = prefix_;
    request_.body() += data;
    request_.body() += '}';
    request_.prepare_payload();
    stream_->expires_after(to_duration(options_.handshake_timeout_s));
    http::async_write(*stream_, request_,
                      [this, self = shared_from_this(), done = std::move(done)](
                          boost::system::error_code ec, std::size_t) mutable {
                        if (ec) {
                          stats_.errors.add(describe("write", ec));
                          return done({false, true});
                        }
                        response_ = {};
                        http::async_read(*stream_, buffer_, response_,
                                         [this, self, done = std::move(done)](
                                             boost::system::error_code ec, std::size_t) {
                                           stream_->expires_never();
                                           if (ec) {
                                             stats_.errors.add(describe("read", ec));
                                             return done({false, true});
                                           }
                                           done({judge(), !response_.keep_alive()});
                                         });
                      });
  }

  void close(bool) override {
    if (!stream_) return;
    boost::system::error_code ignored;
    stream_->socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_->close();
  }

 private:
  bool judge() {
    if (response_.result_int() != 200) {
      stats_.http_statuses.add(std::to_string(response_.result_int()));
      return false;
    }
    const auto& body = response_.body();
    if (body.find("\"error\"") == std::string::npos) return true;
    boost::system::error_code ec;
    auto value = boost::json::parse(body, ec);
    std::string code = "unparsed";
    if (!ec && value.is_object()) {
      if (auto* error = value.get_object().if_contains("error"); error && error->is_object()) {
        if (auto* number = error->get_object().if_contains("code")) {
          code = boost::json::serialize(*number);
        }
      } else {
        return true;  // "error" was only in the result
      }
    }
    stats_.api_errors.add(code);
    return false;
  }

  std::optional<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
  std::string prefix_;
};

// The uWS peer (bench/servers/uws_pubsub.js): a WebSocket to its publisher path; each
// text message is published to the topic, and the peer answers it with a short
// acknowledgement once app.publish has returned.
class WsPublisher : public Publisher {
 public:
  using Publisher::Publisher;

 protected:
  void open(std::function<void(bool)> done) override {
    ws_.emplace(strand_);
    configure_websocket(*ws_, options_);
    async_open_websocket(*ws_, runner_, upgrade_,
                         [this, self = shared_from_this(), done = std::move(done)](OpenResult r) {
                           if (r.refused()) {
                             stats_.http_statuses.add(std::to_string(r.status));
                           } else if (r.ec) {
                             stats_.errors.add(describe(r.phase, r.ec));
                           }
                           if (!r.ec) ws_->text(true);
                           done(!r.ec);
                         });
  }

  void publish(const std::string& data, std::function<void(Outcome)> done) override {
    ws_->async_write(asio::buffer(data), [this, self = shared_from_this(), done = std::move(done)](
                                             boost::system::error_code ec, std::size_t) mutable {
      if (ec) {
        stats_.errors.add(describe("write", ec));
        return done({false, true});
      }
      ws_->async_read(
          ack_, [this, self, done = std::move(done)](boost::system::error_code ec, std::size_t) {
            ack_.consume(ack_.size());
            if (ec) {
              stats_.errors.add(describe("read", ec));
              return done({false, true});
            }
            done({true, false});
          });
    });
  }

  void close(bool graceful) override {
    if (!ws_) return;
    if (graceful && ws_->is_open()) {
      ws_->async_close(websocket::close_code::normal,
                       [self = shared_from_this()](boost::system::error_code) {});
      return;
    }
    beast::get_lowest_layer(*ws_).close();
  }

 private:
  std::optional<WsStream> ws_;
  websocket::response_type upgrade_;
  beast::flat_buffer ack_;
};

}  // namespace

boost::json::object run_publish(Runner& runner) {
  const Options& options = runner.options();
  PublishStats stats;
  Schedule schedule(options.message_rate, options.count);
  std::atomic<int> active{0};
  std::vector<std::shared_ptr<Publisher>> publishers;
  for (int i = 0; i < options.in_flight; ++i) {
    if (options.protocol == "centrifugo") {
      publishers.push_back(std::make_shared<HttpPublisher>(runner, stats, schedule, active));
    } else {
      publishers.push_back(std::make_shared<WsPublisher>(runner, stats, schedule, active));
    }
  }
  runner.set_progress_report([&] {
    return std::to_string(stats.ok.load()) + " published, " + std::to_string(stats.failed.load()) +
           " failed, " + std::to_string(stats.late.load()) + " late";
  });
  run_sessions(runner, publishers);

  auto window = runner.window();
  boost::json::object out;
  out["protocol"] = options.protocol;
  out["channel"] = options.channel;
  out["in_flight"] = options.in_flight;
  out["size"] = options.size;
  out["message_rate"] = options.message_rate;
  out["publications_sent"] = stats.sent.load();
  out["publications_ok"] = stats.ok.load();
  out["publications_failed"] = stats.failed.load();
  out["publications_per_second"] = window.per_second(stats.ok_in_window.load());
  out["publish_seconds"] = window.seconds;
  out["response_latency_us"] = stats.response_us.to_json();
  out["late"] = stats.late.load();
  out["max_lag_ms"] = double(stats.max_lag_us.load()) / 1000.0;
  out["connections_opened"] = stats.connections_opened.load();
  out["http_statuses"] = stats.http_statuses.to_json();
  out["api_errors"] = stats.api_errors.to_json();
  out["errors"] = stats.errors.to_json();
  out["error_count"] = stats.errors.total();
  return out;
}

}  // namespace wsload
