// Structured log lines (log/): text key=value with values from outside quoted and
// escaped, JSON members, and the throttle that summarises floods of refusals.
#include <doctest/doctest.h>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <boost/json/parse.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "wsvisor/log.hpp"

using wsvisor::log_event;
using wsvisor::log_field;
using wsvisor::log_format;

namespace {

// Captures what the default logger writes, in one format, for one test.
struct captured_log {
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();
  explicit captured_log(log_format format, const char* level = "info") {
    wsvisor::setup_logging(level, format, std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  }
  ~captured_log() {
    wsvisor::setup_logging("info", log_format::text);  // back to text for the next test
    spdlog::set_default_logger(previous);
  }
  std::vector<std::string> lines() {
    spdlog::default_logger()->flush();
    std::vector<std::string> all;
    std::istringstream in(out.str());
    for (std::string line; std::getline(in, line);) all.push_back(line);
    return all;
  }
};

std::string text_value(std::string_view value) {
  std::string out;
  wsvisor::append_text_value(out, value);
  return out;
}

std::string json_escaped(std::string_view value) {
  std::string out;
  wsvisor::append_json_escaped(out, value);
  return out;
}

}  // namespace

TEST_CASE("text values: plain ones bare, anything else quoted and escaped") {
  CHECK(text_value("alice") == "alice");
  CHECK(text_value("127.0.0.1") == "127.0.0.1");
  CHECK(text_value("::1") == "::1");
  CHECK(text_value("user:bob") == "user:bob");
  CHECK(text_value("") == "\"\"");
  CHECK(text_value("alice smith") == "\"alice smith\"");
  CHECK(text_value("a=b") == "\"a=b\"");
  CHECK(text_value("say \"hi\"") == "\"say \\\"hi\\\"\"");
  CHECK(text_value("back\\slash") == "\"back\\\\slash\"");
  CHECK(text_value("two\nlines") == "\"two\\nlines\"");
  CHECK(text_value("cr\rtab\t") == "\"cr\\rtab\\t\"");
  CHECK(text_value(std::string("nul\0bell\x07", 9)) == "\"nul\\x00bell\\x07\"");
  CHECK(text_value("caf\xc3\xa9") == "\"caf\xc3\xa9\"");  // UTF-8 stays, but is quoted
}

TEST_CASE("JSON escapes: quotes, backslashes, control characters, and never invalid UTF-8") {
  CHECK(json_escaped("plain") == "plain");
  CHECK(json_escaped("a\"b\\c") == "a\\\"b\\\\c");
  CHECK(json_escaped("n\nr\rt\t") == "n\\nr\\rt\\t");
  CHECK(json_escaped(std::string("\x01\x1f\x7f", 3)) == "\\u0001\\u001f\\u007f");
  CHECK(json_escaped("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  CHECK(json_escaped("bad \xff end") == "bad \\ufffd end");
  CHECK(json_escaped("overlong \xc0\xaf") == "overlong \\ufffd\\ufffd");
  CHECK(json_escaped("surrogate \xed\xa0\x80") == "surrogate \\ufffd\\ufffd\\ufffd");
  CHECK(json_escaped("cut \xe2\x82") == "cut \\ufffd\\ufffd");
}

TEST_CASE("a text line: the message, then key=value fields, a forged field stays a value") {
  captured_log log(log_format::text);
  const std::string user = "mallory code=1000\n2026-01-01 info forged";
  log_event(spdlog::level::info, "connection_closed", "connection closed",
            {{"id", uint64_t{7}},
             log_field::optional("user", user),
             {"ip", "::1"},
             {"code", uint16_t{1006}},
             {"duration_s", 1.5},
             {"open", false}});
  const auto lines = log.lines();
  REQUIRE(lines.size() == 1);
  const auto& line = lines.front();
  CHECK(line.find(" info connection closed id=7 user=\"mallory code=1000\\n2026-01-01 info "
                  "forged\" ip=::1 code=1006 duration_s=1.500 open=false") != std::string::npos);
}

TEST_CASE("a JSON line: one object, the fields as members, null for an absent user") {
  captured_log log(log_format::json);
  const std::vector<std::pair<std::string, uint64_t>> counts{{"rate_limited", 3}, {"ip_limit", 1}};
  log_event(spdlog::level::warn, "refusals_summary", "summary \"quoted\"",
            {log_field::optional("user", ""),
             {"ip", "127.0.0.1"},
             {"signed", int64_t{-4}},
             {"ratio", 0.25},
             log_field::counts("by_reason", counts)});
  spdlog::info("a plain line with \"quotes\"\nand a newline");
  const auto lines = log.lines();
  REQUIRE(lines.size() == 2);
  const auto first = boost::json::parse(lines[0]).as_object();
  CHECK(first.at("level").as_string() == "warning");
  CHECK(first.at("msg").as_string() == "summary \"quoted\"");
  CHECK(first.at("event").as_string() == "refusals_summary");
  CHECK(first.at("user").is_null());
  CHECK(first.at("ip").as_string() == "127.0.0.1");
  CHECK(first.at("signed").as_int64() == -4);
  CHECK(first.at("ratio").as_double() == doctest::Approx(0.25));
  CHECK(first.at("by_reason").as_object().at("rate_limited").to_number<int>() == 3);
  CHECK(first.at("time").as_string().size() == 24);  // 2026-12-01T00:00:00.000Z
  const auto second = boost::json::parse(lines[1]).as_object();
  CHECK(second.at("msg").as_string() == "a plain line with \"quotes\"\nand a newline");
  CHECK_FALSE(second.contains("event"));
}

TEST_CASE("nothing is formatted below the level") {
  captured_log log(log_format::text, "info");
  log_event(spdlog::level::debug, "ping", "heartbeat ping", {{"id", 1}});
  CHECK(log.lines().empty());
}

TEST_CASE("log_throttle: the first lines of each second in full, the rest in one summary") {
  captured_log log(log_format::json);
  wsvisor::log_throttle throttle("refusals_summary", "refusals not logged one by one", 3);
  const auto t0 = std::chrono::steady_clock::now();
  int shown = 0;
  for (int i = 0; i < 10; ++i)
    if (throttle.admit(i % 2 ? "rate_limited" : "user_limit", t0)) ++shown;
  CHECK(shown == 3);
  throttle.flush(t0 + std::chrono::milliseconds(500));  // the second is not over
  CHECK(log.lines().empty());
  throttle.flush(t0 + std::chrono::seconds(1));
  auto lines = log.lines();
  REQUIRE(lines.size() == 1);
  const auto summary = boost::json::parse(lines[0]).as_object();
  CHECK(summary.at("event").as_string() == "refusals_summary");
  CHECK(summary.at("not_shown").to_number<int>() == 7);
  CHECK(summary.at("shown").to_number<int>() == 3);
  const auto& by_reason = summary.at("by_reason").as_object();
  CHECK(by_reason.at("rate_limited").to_number<int>() +
            by_reason.at("user_limit").to_number<int>() ==
        7);
  // A new second: lines are shown in full again, and a quiet second writes nothing.
  CHECK(throttle.admit("rate_limited", t0 + std::chrono::seconds(1)));
  throttle.flush(t0 + std::chrono::seconds(3));
  CHECK(log.lines().size() == 1);
}
