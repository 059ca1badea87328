// reconnect: a population of well-behaved clients, as a good SDK behaves. Each stays
// connected for the duration, sends one small echo message at a steady pace, and
// reconnects with jittered exponential backoff whenever it is closed, refused or loses
// the connection (also when it merely hears nothing for --silence-timeout-ms). With
// --scenario, faults are played on the server's admin API meanwhile (scenario.hpp) and
// everything is counted per fault window as well as for the whole run.
#include "connection.hpp"
#include "modes.hpp"
#include "scenario.hpp"
#include "stats.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <deque>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string_view>
#include <vector>

namespace wsload {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;

// What one window counts; the whole run is one more.
struct WindowStats {
  CounterMap closes_by_code;  // server close codes; "1006": no close frame; "silence"
  Counter reconnects{0};
  Counter reconnect_attempts{0};  // upgrade attempts of those reconnects, the last included
  LatencyHistogram time_to_reconnect_us;
  Counter refusals{0};
  CounterMap refusals_by_status;
  CounterMap refusals_by_reason;  // the body's {"error"}, when it says one
  Counter sent{0};
  Counter echoed{0};
  Counter lost{0};
  Counter late{0};
};

struct ReconnectStats {
  explicit ReconnectStats(std::vector<double> times)
      : fault_times(std::move(times)), windows(fault_times.size() + 1) {}

  std::size_t window_at(double elapsed_s) const { return window_index(fault_times, elapsed_s); }
  // Counts into the whole run and into one window.
  template <class Count>
  void count(std::size_t window, Count count) {
    count(total);
    count(windows[window]);
  }

  const std::vector<double> fault_times;
  WindowStats total;
  std::vector<WindowStats> windows;  // [0] before the first fault, [k] the k-th fault's

  Counter connects{0};        // 101s
  Counter first_connects{0};  // clients that got their first 101
  Counter attempts{0};        // every upgrade attempt
  Counter reconnects_unfinished{0};
  Counter unexpected{0};  // messages that are not the echo of one outstanding
  Counter in_flight_at_end{0};
  std::atomic<std::uint64_t> max_reconnect_attempts{0};
  LatencyHistogram time_to_first_connect_us;
  Gauge open;
  CounterMap errors;  // "phase: message"
};

std::uint64_t to_microseconds(Clock::duration duration) {
  return static_cast<std::uint64_t>(std::max<std::int64_t>(
      0, std::chrono::duration_cast<std::chrono::microseconds>(duration).count()));
}

// "<client> <sequence> xx..x": padded with 'x' to --size, never shorter than the numbers.
std::string message_text(std::uint64_t client, std::uint64_t sequence, std::size_t size) {
  std::string text = std::to_string(client) + " " + std::to_string(sequence) + " ";
  if (text.size() < size) text.append(size - text.size(), 'x');
  return text;
}

bool parse_message(std::string_view text, std::uint64_t& client, std::uint64_t& sequence) {
  const char* end = text.data() + text.size();
  auto [after_client, ec] = std::from_chars(text.data(), end, client);
  if (ec != std::errc() || after_client == end || *after_client != ' ') return false;
  auto [after_sequence, ec2] = std::from_chars(after_client + 1, end, sequence);
  return ec2 == std::errc() && after_sequence != end && *after_sequence == ' ';
}

// Retry-After (RFC 9110 10.2.3): delay-seconds, the form wsvisor sends, or an HTTP-date.
// Zero when it is missing or unreadable.
Clock::duration parse_retry_after(beast::string_view header) {
  std::string text(header);
  if (text.empty()) return Clock::duration::zero();
  char* end = nullptr;
  double seconds = std::strtod(text.c_str(), &end);
  if (end == text.c_str() + text.size() && std::isfinite(seconds) && seconds >= 0) {
    return to_duration(seconds);
  }
  std::tm date{};
  const char* parsed = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &date);
  if (parsed == nullptr || *parsed != '\0') return Clock::duration::zero();
  return to_duration(std::max(0.0, std::difftime(timegm(&date), std::time(nullptr))));
}

// The refusal's reason as the body says it: wsvisor's {"error":"<reason>"}.
std::string refusal_reason(const std::string& body) {
  boost::system::error_code ec;
  auto parsed = boost::json::parse(body, ec);
  if (ec || !parsed.is_object()) return "";
  for (const char* key : {"error", "reason"}) {
    if (auto* value = parsed.get_object().if_contains(key); value && value->is_string()) {
      return std::string(value->get_string());
    }
  }
  return "";
}

class ReconnectClient : public std::enable_shared_from_this<ReconnectClient> {
 public:
  ReconnectClient(Runner& runner, ReconnectStats& stats, std::uint64_t id)
      : runner_(runner),
        options_(runner.options()),
        stats_(stats),
        id_(id),
        strand_(asio::make_strand(runner.io())),
        retry_timer_(strand_),
        send_timer_(strand_),
        silence_timer_(strand_),
        random_(std::random_device{}() ^ (id * 0x9E3779B97F4A7C15ull)),
        interval_(to_duration(options_.message_interval_ms / 1000.0)),
        lost_after_(to_duration(options_.lost_after_ms / 1000.0)),
        silence_timeout_(to_duration(options_.silence_timeout_ms / 1000.0)) {
    if (options_.users > 0) {
      user_headers_.emplace_back("X-User-Id", "u" + std::to_string(id % options_.users));
    }
  }

  // The first connect waits for its --rate slot; reconnects only for their backoff.
  void start() {
    after_attempt_slot(strand_, retry_timer_, runner_,
                       [self = shared_from_this()] { self->attempt(); });
  }

  // At the soft stop, from the control strand.
  void stop() {
    asio::post(strand_, [self = shared_from_this()] { self->on_stop(); });
  }

 private:
  // One connection. Each gets a fresh stream, so that the handlers of one that has ended
  // finish on their own stream while the next one opens.
  struct Link {
    explicit Link(const Strand& strand) : ws(strand) {}
    WsStream ws;
    websocket::response_type response;
    beast::flat_buffer incoming;
    std::string outgoing;
    bool open = false;     // upgraded, and the read has not ended
    bool writing = false;  // a message write is in flight
    bool closing = false;  // our close at the end of the run has begun
    bool silent = false;   // we dropped it: nothing was heard for --silence-timeout-ms
  };
  using LinkPtr = std::shared_ptr<Link>;

  struct Outstanding {
    std::uint64_t sequence;
    Clock::time_point sent_at;
    std::size_t window;  // where it was sent, which is where its fate counts
  };

  void attempt() {
    if (stopping_) return;
    ++attempts_;
    ++stats_.attempts;
    auto link = std::make_shared<Link>(strand_);
    link_ = link;
    configure_websocket(link->ws, options_, user_headers_);
    async_open_websocket(
        link->ws, runner_, link->response,
        [self = shared_from_this(), link](OpenResult result) { self->on_open(link, result); });
  }

  void on_open(const LinkPtr& link, const OpenResult& result) {
    if (result.ec) {
      link_.reset();
      if (stopping_) return;  // cut short by the stop, or failed at the end: no retry
      auto wait = backoff();
      if (result.refused()) {
        wait = std::max(wait, refused(link->response, result.status));
      } else {
        stats_.errors.add(describe(result.phase, result.ec));
      }
      return retry_in(wait);
    }
    const auto now = Clock::now();
    ++stats_.connects;
    stats_.open.increment();
    link->open = true;
    link->ws.text(true);
    // Pings (and any control frame) count as hearing from the server.
    link->ws.control_callback(
        [this](websocket::frame_type, beast::string_view) { last_heard_ = Clock::now(); });
    last_heard_ = now;
    if (disconnected_at_) {
      const auto attempts = attempts_;
      const auto took_us = to_microseconds(now - *disconnected_at_);
      stats_.count(close_window_, [&](WindowStats& window) {
        ++window.reconnects;
        window.reconnect_attempts += attempts;
        window.time_to_reconnect_us.record(took_us);
      });
      auto most = stats_.max_reconnect_attempts.load(std::memory_order_relaxed);
      while (attempts > most &&
             !stats_.max_reconnect_attempts.compare_exchange_weak(most, attempts)) {
      }
      disconnected_at_.reset();
    } else {
      ++stats_.first_connects;
      stats_.time_to_first_connect_us.record(
          static_cast<std::uint64_t>(std::max(0.0, runner_.elapsed_s()) * 1e6));
    }
    attempts_ = 0;
    if (stopping_) return begin_close(link);
    read_next(link);
    watch_silence(link);
    // A random phase, so that clients that connected together do not send together.
    std::uniform_real_distribution<double> phase_s(0, options_.message_interval_ms / 1000.0);
    next_send_ = now + to_duration(phase_s(random_));
    schedule_send(link);
  }

  // Full jitter ("Exponential Backoff and Jitter", AWS): a random wait in
  // [0, min(max, base * 2^step)]; each wait moves the next one a doubling up.
  Clock::duration backoff() {
    const double bound_ms = std::min(
        options_.backoff_max_ms, options_.backoff_base_ms * std::ldexp(1.0, std::min(step_, 40)));
    ++step_;
    return to_duration(std::uniform_real_distribution<double>(0, bound_ms)(random_) / 1000.0);
  }

  // Counts a refused upgrade; returns the wait its Retry-After asks for.
  Clock::duration refused(const websocket::response_type& response, int status) {
    // A refusal met while reconnecting belongs to the window of the close that started it.
    const auto window = disconnected_at_ ? close_window_ : stats_.window_at(runner_.elapsed_s());
    const std::string reason = refusal_reason(response.body());
    stats_.count(window, [&](WindowStats& counts) {
      ++counts.refusals;
      counts.refusals_by_status.add(std::to_string(status));
      if (!reason.empty()) counts.refusals_by_reason.add(reason);
    });
    return parse_retry_after(response[http::field::retry_after]);
  }

  void retry_in(Clock::duration wait) {
    retry_timer_.expires_after(wait);
    retry_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->stopping_) return;
      self->attempt();
    });
  }

  void read_next(const LinkPtr& link) {
    link->ws.async_read(link->incoming, [self = shared_from_this(), link](
                                            boost::system::error_code ec, std::size_t) {
      self->on_read(link, ec);
    });
  }

  void on_read(const LinkPtr& link, boost::system::error_code ec) {
    if (ec) return ended(link, ec);
    last_heard_ = Clock::now();
    const auto data = link->incoming.data();
    on_echo(std::string_view(static_cast<const char*>(data.data()), data.size()));
    link->incoming.consume(link->incoming.size());
    read_next(link);
  }

  void on_echo(std::string_view text) {
    if (stopping_) return;  // the run is over: its outstanding messages are settled
    std::uint64_t client = 0;
    std::uint64_t sequence = 0;
    if (!parse_message(text, client, sequence) || client != id_ ||
        text != message_text(client, sequence, options_.size)) {
      ++stats_.unexpected;
      return;
    }
    auto found = std::find_if(outstanding_.begin(), outstanding_.end(),
                              [&](const Outstanding& o) { return o.sequence == sequence; });
    if (found == outstanding_.end()) {
      ++stats_.unexpected;  // echoed twice, or never sent
      return;
    }
    const bool late = Clock::now() - found->sent_at > lost_after_;
    stats_.count(found->window,
                 [&](WindowStats& window) { ++(late ? window.late : window.echoed); });
    outstanding_.erase(found);
  }

  // The read ended: the server closed, the connection broke, we dropped it for
  // silence, or our own close at the end of the run finished.
  void ended(const LinkPtr& link, boost::system::error_code ec) {
    if (!link->open) return;
    link->open = false;
    stats_.open.decrement();
    send_timer_.cancel();
    silence_timer_.cancel();
    if (link == link_) link_.reset();
    // A write still in flight ends with the socket.
    beast::get_lowest_layer(link->ws).close();
    if (link->closing) retry_timer_.cancel();  // the bound on our close: not needed now
    if (link->closing || stopping_) return;

    std::string why;
    if (link->silent) {
      why = "silence";
    } else if (ec == websocket::error::closed) {
      why = std::to_string(link->ws.reason().code);
    } else {
      why = "1006";  // no close frame
      stats_.errors.add(describe("read", ec));
    }
    const auto window = stats_.window_at(runner_.elapsed_s());
    stats_.count(window, [&](WindowStats& counts) { counts.closes_by_code.add(why); });
    // Sent and not echoed before the connection ended: lost.
    for (const auto& message : outstanding_) {
      stats_.count(message.window, [](WindowStats& counts) { ++counts.lost; });
    }
    outstanding_.clear();
    disconnected_at_ = Clock::now();
    close_window_ = window;
    // 1008 (rate limit, slow consumer) and 1013 (try again later) are the server shedding
    // load: each such close in a row starts the backoff one doubling higher. Every other
    // close, 1012 and 1001 (restart, going away) too, starts over from the base.
    shed_streak_ = (why == "1008" || why == "1013") ? shed_streak_ + 1 : 0;
    step_ = shed_streak_;
    retry_in(backoff());
  }

  // Lazily: the timer is not moved on every message; when it fires it looks at when the
  // server was last heard and waits again for the rest.
  void watch_silence(const LinkPtr& link) {
    if (options_.silence_timeout_ms <= 0) return;
    silence_timer_.expires_at(last_heard_ + silence_timeout_);
    silence_timer_.async_wait([self = shared_from_this(), link](boost::system::error_code ec) {
      if (ec || link != self->link_ || !link->open || self->stopping_) return;
      if (Clock::now() - self->last_heard_ < self->silence_timeout_) {
        return self->watch_silence(link);
      }
      // Whatever TCP says, a server that has said nothing this long is gone for us: drop
      // the socket (no close handshake, it would wait on the same silence).
      link->silent = true;
      beast::get_lowest_layer(link->ws).close();
    });
  }

  void schedule_send(const LinkPtr& link) {
    send_timer_.expires_at(next_send_);
    send_timer_.async_wait([self = shared_from_this(), link](boost::system::error_code ec) {
      if (ec || link != self->link_ || !link->open || self->stopping_) return;
      self->send(link);
    });
  }

  void send(const LinkPtr& link) {
    const auto now = Clock::now();
    // A steady pace without catch-up bursts: after a late tick the next is an interval on.
    next_send_ += interval_;
    if (next_send_ < now) next_send_ = now + interval_;
    // A write still in flight (the server stopped reading) skips this tick.
    if (!link->writing) {
      const auto sequence = next_sequence_++;
      link->outgoing = message_text(id_, sequence, options_.size);
      const auto window = stats_.window_at(runner_.elapsed_s());
      outstanding_.push_back({sequence, now, window});
      stats_.count(window, [](WindowStats& counts) { ++counts.sent; });
      link->writing = true;
      link->ws.async_write(
          asio::buffer(link->outgoing),
          [self = shared_from_this(), link](boost::system::error_code ec, std::size_t) {
            link->writing = false;
            // The read sees the same end and counts it; a close frame shows here as `closed`.
            if (ec && link->open && !link->closing && ec != websocket::error::closed) {
              self->stats_.errors.add(describe("write", ec));
            }
          });
    }
    schedule_send(link);
  }

  void on_stop() {
    stopping_ = true;
    retry_timer_.cancel();
    send_timer_.cancel();
    silence_timer_.cancel();
    const auto now = Clock::now();
    for (const auto& message : outstanding_) {
      if (now - message.sent_at > lost_after_) {
        stats_.count(message.window, [](WindowStats& counts) { ++counts.lost; });
      } else {
        ++stats_.in_flight_at_end;
      }
    }
    outstanding_.clear();
    if (disconnected_at_) ++stats_.reconnects_unfinished;
    if (!link_) return;
    if (link_->open) return begin_close(link_);
    beast::get_lowest_layer(link_->ws).close();  // still connecting
  }

  void begin_close(const LinkPtr& link) {
    link->closing = true;
    link->ws.async_close(websocket::close_code::normal,
                         [self = shared_from_this(), link](boost::system::error_code ec) {
                           self->retry_timer_.cancel();
                           if (ec && ec != asio::error::operation_aborted) {
                             self->stats_.errors.add(describe("close", ec));
                           }
                         });
    // A server that does not answer (a stalled connection) must not hold the close until
    // the hard deadline: half the grace period, then the socket goes.
    retry_timer_.expires_after(to_duration(options_.grace_s / 2));
    retry_timer_.async_wait([link](boost::system::error_code ec) {
      if (!ec && link->open) beast::get_lowest_layer(link->ws).close();
    });
  }

  Runner& runner_;
  const Options& options_;
  ReconnectStats& stats_;
  const std::uint64_t id_;
  Strand strand_;
  asio::steady_timer retry_timer_;  // backoff waits; at the end, the bound on the close
  asio::steady_timer send_timer_;
  asio::steady_timer silence_timer_;
  std::mt19937_64 random_;
  const Clock::duration interval_;
  const Clock::duration lost_after_;
  const Clock::duration silence_timeout_;
  Headers user_headers_;

  LinkPtr link_;  // the connection being opened or open; null while waiting to retry
  std::deque<Outstanding> outstanding_;
  std::uint64_t next_sequence_ = 0;
  Clock::time_point next_send_;
  Clock::time_point last_heard_;
  std::optional<Clock::time_point> disconnected_at_;  // set from a close to the next 101
  std::size_t close_window_ = 0;
  std::uint64_t attempts_ = 0;  // of the connect under way
  int step_ = 0;                // doublings of the next backoff wait
  int shed_streak_ = 0;         // 1008/1013 closes in a row
  bool stopping_ = false;
};

// {count, p50, p99, max} in milliseconds of a histogram in microseconds.
boost::json::object milliseconds_json(const LatencyHistogram& microseconds) {
  boost::json::object out;
  out["count"] = microseconds.count();
  if (microseconds.count() == 0) return out;
  auto raw = microseconds.to_json();
  for (const char* key : {"p50", "p99", "max"}) {
    out[key] = static_cast<double>(raw[key].as_uint64()) / 1000.0;
  }
  return out;
}

boost::json::object refusals_json(const WindowStats& counts) {
  boost::json::object out;
  out["total"] = counts.refusals.load();
  out["by_status"] = counts.refusals_by_status.to_json();
  out["by_reason"] = counts.refusals_by_reason.to_json();
  return out;
}

// What a window and the whole run share.
void add_counts(boost::json::object& out, const WindowStats& counts) {
  out["closes_by_code"] = counts.closes_by_code.to_json();
  out["reconnects"] = counts.reconnects.load();
  out["reconnect_attempts"] = counts.reconnect_attempts.load();
  out["time_to_reconnect_ms"] = milliseconds_json(counts.time_to_reconnect_us);
  out["refusals"] = refusals_json(counts);
  boost::json::object messages;
  messages["sent"] = counts.sent.load();
  messages["echoed"] = counts.echoed.load();
  messages["lost"] = counts.lost.load();
  messages["late"] = counts.late.load();
  out["messages"] = std::move(messages);
}

std::string closes_text(const WindowStats& counts) {
  std::string text;
  for (const auto& [code, count] : counts.closes_by_code.to_json()) {
    if (!text.empty()) text += ' ';
    text += std::string(code) + ":" + std::to_string(count.as_uint64());
  }
  return text.empty() ? "-" : text;
}

std::string reconnect_times_text(const LatencyHistogram& microseconds) {
  if (microseconds.count() == 0) return "-";
  char text[64];
  std::snprintf(text, sizeof text, "%.0f/%.0f/%.0f", microseconds.percentile(0.5) / 1000.0,
                microseconds.percentile(0.99) / 1000.0,
                static_cast<double>(microseconds.to_json()["max"].as_uint64()) / 1000.0);
  return text;
}

// One line per window on stderr, for people; the JSON has the same and more.
void print_fault_table(const Scenario& scenario, const ReconnectStats& stats,
                       const std::vector<FaultAnswer>& answers, double end_s) {
  std::ostringstream out;
  out << "wsload reconnect: per fault of " << scenario.path
      << " (closes and reconnects by the close's time, messages by the send's)\n";
  char line[512];
  const char* format = "  %-13s %-10s %-26s %7s %16s %8s %6s %6s  %s\n";
  std::snprintf(line, sizeof line, format, "window", "fault", "closes", "reconn", "ttr p50/p99/max",
                "refused", "lost", "late", "answer");
  out << line;
  for (std::size_t k = 0; k < stats.windows.size(); ++k) {
    const WindowStats& counts = stats.windows[k];
    double from_s = k == 0 ? 0.0 : scenario.faults[k - 1].at_s;
    double to_s = k < scenario.faults.size() ? scenario.faults[k].at_s : end_s;
    char span[64];
    std::snprintf(span, sizeof span, "%g-%gs", from_s, to_s);
    std::string action = k == 0 ? "(before)" : scenario.faults[k - 1].action;
    std::string answer = k == 0 ? "" : answers[k - 1].summary();
    std::snprintf(line, sizeof line, format, span, action.c_str(), closes_text(counts).c_str(),
                  std::to_string(counts.reconnects.load()).c_str(),
                  reconnect_times_text(counts.time_to_reconnect_us).c_str(),
                  std::to_string(counts.refusals.load()).c_str(),
                  std::to_string(counts.lost.load()).c_str(),
                  std::to_string(counts.late.load()).c_str(), answer.c_str());
    out << line;
  }
  std::cerr << out.str() << std::flush;
}

}  // namespace

boost::json::object run_reconnect(Runner& runner) {
  const Options& options = runner.options();
  const Scenario* scenario = options.scenario.get();
  ReconnectStats stats(scenario ? scenario->fault_times() : std::vector<double>{});
  auto clients = make_sessions(options.connections, [&](int i) {
    return std::make_shared<ReconnectClient>(runner, stats, i);
  });
  std::shared_ptr<FaultPlayer> player;
  if (scenario) player = std::make_shared<FaultPlayer>(runner, *scenario);
  runner.set_progress_report([&] {
    return std::to_string(stats.open.value()) + " connected, " +
           std::to_string(stats.total.reconnects.load()) + " reconnects, " +
           std::to_string(stats.total.refusals.load()) + " refusals, " +
           std::to_string(stats.total.lost.load()) + " lost, " +
           std::to_string(stats.total.late.load()) + " late";
  });

  std::int64_t connected_at_end = 0;
  for (auto& client : clients) client->start();
  if (player) player->start();
  runner.run([&] {
    connected_at_end = stats.open.value();
    if (player) player->stop();
    for (auto& client : clients) client->stop();
  });

  const WindowStats& total = stats.total;
  boost::json::object out;
  out["connections"] = options.connections;
  out["users"] = options.users;
  out["size"] = options.size;
  out["message_interval_ms"] = options.message_interval_ms;
  out["lost_after_ms"] = options.lost_after_ms;
  out["silence_timeout_ms"] = options.silence_timeout_ms;
  out["backoff"] = {{"base_ms", options.backoff_base_ms}, {"max_ms", options.backoff_max_ms}};
  out["attempts"] = stats.attempts.load();
  out["connects"] = stats.connects.load();
  out["first_connects"] = stats.first_connects.load();
  out["time_to_first_connect_ms"] = milliseconds_json(stats.time_to_first_connect_us);
  add_counts(out, total);
  out["reconnect_attempts"] = {{"total", total.reconnect_attempts.load()},
                               {"max", stats.max_reconnect_attempts.load()}};
  out["reconnects_unfinished"] = stats.reconnects_unfinished.load();
  auto& messages = out["messages"].as_object();
  messages["unexpected"] = stats.unexpected.load();
  messages["in_flight_at_end"] = stats.in_flight_at_end.load();
  out["connected_at_end"] = connected_at_end;
  out["errors"] = stats.errors.to_json();
  out["error_count"] = stats.errors.total();

  if (scenario) {
    const double end_s = runner.window().seconds;
    auto window_json = [&](std::size_t k) {
      boost::json::object window;
      window["from_s"] = k == 0 ? 0.0 : scenario->faults[k - 1].at_s;
      window["to_s"] = k < scenario->faults.size() ? scenario->faults[k].at_s : end_s;
      boost::json::object counts;
      add_counts(counts, stats.windows[k]);
      boost::json::object entry;
      if (k > 0) {
        const auto& fault = scenario->faults[k - 1];
        entry["at_s"] = fault.at_s;
        entry["line"] = fault.line;
        entry["request"] = fault.request;
        entry["answer"] = player->answers()[k - 1].to_json();
      }
      entry["window"] = std::move(window);
      for (auto& [key, value] : counts) entry[key] = value;
      return entry;
    };
    out["scenario"] = scenario->path;
    out["before_faults"] = window_json(0);
    boost::json::array faults;
    for (std::size_t k = 1; k < stats.windows.size(); ++k) faults.push_back(window_json(k));
    out["faults"] = std::move(faults);
    if (!options.quiet) print_fault_table(*scenario, stats, player->answers(), end_s);
  }
  return out;
}

}  // namespace wsload
