#include "scenario.hpp"

#include "connection.hpp"

#include <boost/asio/post.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

namespace wsload {

namespace asio = boost::asio;
namespace http = boost::beast::http;

namespace {

// How a header line's value becomes its option's value.
enum class ValueKind { as_is, seconds, milliseconds };

struct HeaderKey {
  const char* key;
  const char* flag;
  ValueKind kind;
};

const std::vector<HeaderKey>& header_keys() {
  static const std::vector<HeaderKey> keys = {
      {"connections", "--connections", ValueKind::as_is},
      {"users", "--users", ValueKind::as_is},
      {"duration", "--duration", ValueKind::seconds},
      {"message-interval", "--message-interval-ms", ValueKind::milliseconds},
      {"silence-timeout", "--silence-timeout-ms", ValueKind::milliseconds},
      {"lost-after", "--lost-after-ms", ValueKind::milliseconds},
      {"rate", "--rate", ValueKind::as_is},
  };
  return keys;
}

std::string known_keys() {
  std::string list;
  for (const auto& key : header_keys()) list += (list.empty() ? "" : ", ") + std::string(key.key);
  return list;
}

std::string trim(const std::string& text) {
  auto first = text.find_first_not_of(" \t\r");
  if (first == std::string::npos) return "";
  auto last = text.find_last_not_of(" \t\r");
  return text.substr(first, last - first + 1);
}

// The first word of `text` (split at blanks), and what follows it, trimmed.
std::pair<std::string, std::string> split_word(const std::string& text) {
  auto blank = text.find_first_of(" \t");
  if (blank == std::string::npos) return {text, ""};
  return {text.substr(0, blank), trim(text.substr(blank))};
}

// "250ms", "10s", "1.5m" in seconds; none when it is not a non-negative time with a unit.
std::optional<double> parse_time(const std::string& text) {
  std::size_t used = 0;
  double number = 0;
  try {
    number = std::stod(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  const std::string unit = text.substr(used);
  if (!std::isfinite(number) || number < 0 || text[0] == '+' || text[0] == '-') {
    return std::nullopt;
  }
  if (unit == "ms") return number / 1000.0;
  if (unit == "s") return number;
  if (unit == "m") return number * 60.0;
  return std::nullopt;
}

// Shortest text that reads back as the same double, as options.cpp's to_double parses it.
std::string number_text(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

std::string time_text(double seconds) {
  std::ostringstream out;
  out << seconds << "s";
  return out.str();
}

}  // namespace

std::vector<double> Scenario::fault_times() const {
  std::vector<double> times;
  for (const auto& fault : faults) times.push_back(fault.at_s);
  return times;
}

std::size_t window_index(const std::vector<double>& fault_times, double elapsed_s) {
  return static_cast<std::size_t>(
      std::upper_bound(fault_times.begin(), fault_times.end(), elapsed_s) - fault_times.begin());
}

Scenario load_scenario(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw ScenarioError(path + ": cannot be read");
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) throw ScenarioError(path + ": cannot be read");
  return parse_scenario(text.str(), path);
}

Scenario parse_scenario(const std::string& text, const std::string& path) {
  Scenario scenario;
  scenario.path = path;
  std::map<std::string, int> key_lines;  // a key seen, and where
  std::istringstream lines(text);
  std::string raw;
  int number = 0;
  while (std::getline(lines, raw)) {
    ++number;
    auto fail = [&](const std::string& what) {
      throw ScenarioError(path + ":" + std::to_string(number) + ": " + what);
    };
    const std::string line = trim(raw);
    if (line.empty() || line[0] == '#') continue;
    auto [word, rest] = split_word(line);

    if (word == "at") {
      auto [when, after_time] = split_word(rest);
      auto [verb, body] = split_word(after_time);
      if (when.empty() || verb != "fault" || body.empty()) {
        fail("expected 'at <time> fault <json object>'");
      }
      auto at_s = parse_time(when);
      if (!at_s)
        fail("'" + when + "' is not a time: expected a number with a unit (250ms, 10s, 1.5m)");
      if (!scenario.faults.empty() && *at_s <= scenario.faults.back().at_s) {
        // Each fault's window runs up to the next one's time, so they must be in order.
        fail("at " + when + " is not after the previous fault (at " +
             time_text(scenario.faults.back().at_s) + ", line " +
             std::to_string(scenario.faults.back().line) + ")");
      }
      boost::system::error_code ec;
      auto request = boost::json::parse(body, ec);
      if (ec) fail("the fault's JSON does not parse: " + ec.message());
      if (!request.is_object()) fail("the fault's JSON is not an object");
      ScenarioFault fault;
      fault.line = number;
      fault.at_s = *at_s;
      fault.body = body;
      if (auto* action = request.get_object().if_contains("action");
          action && action->is_string()) {
        fault.action = std::string(action->get_string());
      }
      fault.request = std::move(request);
      scenario.faults.push_back(std::move(fault));
      continue;
    }

    auto key = std::find_if(header_keys().begin(), header_keys().end(),
                            [&](const HeaderKey& k) { return word == k.key; });
    if (key == header_keys().end()) {
      fail("unknown line '" + word + "': expected a comment (#), a setting (" + known_keys() +
           ") or 'at <time> fault <json object>'");
    }
    if (!scenario.faults.empty()) {
      fail("'" + word + "' after the first 'at' line: the settings come first");
    }
    if (auto seen = key_lines.find(word); seen != key_lines.end()) {
      fail("'" + word + "' is set twice (also on line " + std::to_string(seen->second) + ")");
    }
    key_lines[word] = number;
    if (rest.empty() || rest.find_first_of(" \t") != std::string::npos) {
      fail("'" + word + "' needs exactly one value");
    }
    std::string value = rest;
    if (key->kind != ValueKind::as_is) {
      auto seconds = parse_time(rest);
      if (!seconds) {
        fail(word + ": '" + rest +
             "' is not a time: expected a number with a unit (250ms, 10s, 1.5m)");
      }
      value = number_text(key->kind == ValueKind::seconds ? *seconds : *seconds * 1000.0);
    }
    scenario.settings.push_back({number, word, key->flag, value});
  }
  return scenario;
}

std::string admin_token(const Options& options) {
  if (!options.admin_token.empty()) return options.admin_token;
  const char* from_environment = std::getenv("WSVISOR_ADMIN_TOKEN");
  return from_environment ? from_environment : "";
}

boost::json::object FaultAnswer::to_json() const {
  boost::json::object out;
  out["sent"] = sent;
  if (!sent) return out;
  out["sent_at_s"] = sent_at_s;
  if (status != 0) {
    out["status"] = status;
    out["latency_ms"] = latency_ms;
  } else {
    out["status"] = nullptr;
  }
  if (applied) out["applied"] = *applied;
  if (!error.empty()) out["error"] = error;
  return out;
}

std::string FaultAnswer::summary() const {
  if (!sent) return "not sent (the run ended first)";
  if (status == 0) return "no answer: " + error;
  std::string text = std::to_string(status);
  if (applied) text += " applied " + std::to_string(*applied);
  if (!error.empty()) text += " " + error;
  return text;
}

FaultPlayer::FaultPlayer(Runner& runner, const Scenario& scenario)
    : runner_(runner),
      scenario_(scenario),
      strand_(asio::make_strand(runner.io())),
      timer_(strand_),
      token_(admin_token(runner.options())),
      answers_(scenario.faults.size()) {}

void FaultPlayer::start() {
  asio::post(strand_, [self = shared_from_this()] { self->wait_for(0); });
}

void FaultPlayer::stop() {
  asio::post(strand_, [self = shared_from_this()] {
    self->stopping_ = true;
    self->timer_.cancel();
  });
}

void FaultPlayer::wait_for(std::size_t index) {
  if (stopping_ || index >= scenario_.faults.size()) return;
  double wait_s = std::max(0.0, scenario_.faults[index].at_s - runner_.elapsed_s());
  timer_.expires_after(to_duration(wait_s));
  timer_.async_wait([self = shared_from_this(), index](boost::system::error_code ec) {
    if (ec || self->stopping_) return;
    self->send(index);
  });
}

namespace {

// One POST and its answer; the handlers hold it.
struct Exchange {
  explicit Exchange(const Strand& strand) : stream(strand) {}
  beast::tcp_stream stream;
  http::request<http::string_body> request;
  http::response<http::string_body> response;
  beast::flat_buffer buffer;
  Clock::time_point started = Clock::now();
};

}  // namespace

void FaultPlayer::send(std::size_t index) {
  const Options& options = runner_.options();
  const ScenarioFault& fault = scenario_.faults[index];
  auto exchange = std::make_shared<Exchange>(strand_);
  auto& request = exchange->request;
  request.method(http::verb::post);
  request.target("/admin/faults");
  request.version(11);
  request.set(http::field::host, options.host + ":" + std::to_string(options.admin_target_port()));
  request.set(http::field::user_agent, "wsload");
  request.set(http::field::authorization, "Bearer " + token_);
  request.set(http::field::content_type, "application/json");
  request.keep_alive(false);
  request.body() = fault.body;
  request.prepare_payload();

  FaultAnswer& answer = answers_[index];
  answer.sent = true;
  answer.sent_at_s = runner_.elapsed_s();

  // Every step ends here, once: the answer is recorded and the next fault waits its turn.
  auto finish = [this, self = shared_from_this(), exchange, index,
                 &fault](const std::string& failure) {
    FaultAnswer& answer = answers_[index];
    if (!failure.empty()) {
      answer.error = failure;
    } else {
      answer.status = static_cast<int>(exchange->response.result_int());
      answer.latency_ms =
          std::chrono::duration<double, std::milli>(Clock::now() - exchange->started).count();
      const std::string& body = exchange->response.body();
      boost::system::error_code ec;
      auto parsed = boost::json::parse(body, ec);
      if (!ec && parsed.is_object()) {
        const auto& object = parsed.get_object();
        if (auto* applied = object.if_contains("applied"); applied && applied->is_int64()) {
          answer.applied = applied->get_int64();
        }
        if (auto* error = object.if_contains("error"); error && error->is_string()) {
          answer.error = std::string(error->get_string());
        }
      } else if (answer.status != 200) {
        // Not the admin API's JSON (a proxy's page, an empty 404): show its start.
        answer.error = body.substr(0, 200);
      }
    }
    boost::system::error_code ignored;
    exchange->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    exchange->stream.close();
    runner_.progress("at " + time_text(fault.at_s) + " fault " +
                     (fault.action.empty() ? "(no action)" : fault.action) + ": " +
                     answer.summary());
    wait_for(index + 1);
  };

  exchange->stream.expires_after(to_duration(options.handshake_timeout_s));
  tcp::endpoint admin(runner_.target().address(), options.admin_target_port());
  exchange->stream.async_connect(admin, [exchange, finish](boost::system::error_code ec) {
    if (ec) return finish(describe("connect", ec));
    http::async_write(exchange->stream, exchange->request,
                      [exchange, finish](boost::system::error_code ec, std::size_t) {
                        if (ec) return finish(describe("write", ec));
                        http::async_read(exchange->stream, exchange->buffer, exchange->response,
                                         [finish](boost::system::error_code ec, std::size_t) {
                                           finish(ec ? describe("read", ec) : "");
                                         });
                      });
  });
}

}  // namespace wsload
