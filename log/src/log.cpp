#include "wsvisor/log.hpp"

#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ctime>
#include <set>

#include "wsvisor/event_journal.hpp"
#include "wsvisor/json_text.hpp"

namespace wsvisor {
namespace {

// A structured line's payload in JSON format starts with this byte (never part of a
// message of ours): the formatter then writes the members that follow as they are.
constexpr char kMembersMarker = '\x1e';

std::atomic<log_format> current_format{log_format::text};

// A text value's escape of a control character: \xHH.
void append_hex_escape(std::string& out, unsigned char c) {
  static constexpr char hex[] = "0123456789abcdef";
  out += "\\x";
  out += hex[c >> 4];
  out += hex[c & 0xf];
}

// Text values that need no quotes: what cannot be mistaken for a separator, a quote or
// the start of another field.
bool is_plain(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-' || c == ':' || c == '/' || c == '@' || c == '+' || c == ',' ||
         c == '[' || c == ']' || c == '#' || c == '*';
}

}  // namespace

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const auto since_epoch = t.time_since_epoch();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
  const std::time_t tt = seconds.count();
  std::tm utc{};
  gmtime_r(&tt, &utc);
  char text[64];  // room for any int GCC's format checker can imagine
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(millis));
  return text;
}

namespace {

// One JSON object per line: {"time":"<RFC 3339 UTC, ms>","level":"info","msg":"...",...}.
class json_formatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    dest.append(std::string_view(R"({"time":")"));
    const auto time = rfc3339(msg.time);
    dest.append(time.data(), time.data() + time.size());
    dest.append(std::string_view(R"(","level":")"));
    const auto level = spdlog::level::to_string_view(msg.level);
    dest.append(level.data(), level.data() + level.size());
    dest.append(std::string_view("\","));
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    if (!payload.empty() && payload.front() == kMembersMarker) {
      dest.append(payload.data() + 1, payload.data() + payload.size());
    } else {
      std::string members = "\"msg\":\"";
      append_json_escaped(members, payload);
      members += '"';
      dest.append(members.data(), members.data() + members.size());
    }
    dest.append(std::string_view("}\n"));
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<json_formatter>();
  }
};

std::mutex throttles_mutex;
std::set<log_throttle*>& throttles() {
  static std::set<log_throttle*> all;
  return all;
}

}  // namespace

void append_json_escaped(std::string& out, std::string_view text) {
  json_text::append_escaped(out, text, json_text::escapes::controls_as_unicode);
}

void append_text_value(std::string& out, std::string_view text) {
  if (!text.empty() && std::all_of(text.begin(), text.end(), is_plain)) {
    out.append(text);
    return;
  }
  out += '"';
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20 || u == 0x7f)
          append_hex_escape(out, u);
        else
          out += c;  // UTF-8 (or not) bytes from 0x80 up cannot end a line
    }
  }
  out += '"';
}

bool log_field::append_scalar(std::string& out) const {
  switch (kind_) {
    case kind::signed_integer:
      out += std::to_string(signed_);
      return true;
    case kind::unsigned_integer:
      out += std::to_string(unsigned_);
      return true;
    case kind::real:
      out += fmt::format("{:.3f}", real_);
      return true;
    case kind::boolean:
      out += flag_ ? "true" : "false";
      return true;
    default:
      return false;
  }
}

void log_field::append_text(std::string& out) const {
  out.append(key_);
  out += '=';
  if (append_scalar(out)) return;
  if (kind_ == kind::null) {
    out += '-';
  } else if (kind_ == kind::counts) {
    std::string joined;
    for (const auto& [name, count] : *counts_) {
      if (!joined.empty()) joined += ',';
      joined += name + "=" + std::to_string(count);
    }
    append_text_value(out, joined);
  } else {
    append_text_value(out, text_);
  }
}

void log_field::append_json(std::string& out) const {
  out += '"';
  append_json_escaped(out, key_);
  out += "\":";
  if (append_scalar(out)) return;
  if (kind_ == kind::null) {
    out += "null";
  } else if (kind_ == kind::counts) {
    out += '{';
    const char* separator = "";
    for (const auto& [name, count] : *counts_) {
      out += separator;
      separator = ",";
      out += '"';
      append_json_escaped(out, name);
      out += "\":" + std::to_string(count);
    }
    out += '}';
  } else {
    out += '"';
    append_json_escaped(out, text_);
    out += '"';
  }
}

void setup_logging(std::string_view level, log_format format, spdlog::sink_ptr sink) {
  if (!sink) sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("wsvisor", std::move(sink));
  current_format = format;
  if (format == log_format::json) {
    logger->set_formatter(std::make_unique<json_formatter>());
  } else {
    logger->set_formatter(std::make_unique<spdlog::pattern_formatter>(
        "%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc));
  }
  logger->set_level(spdlog::level::from_str(std::string(level)));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

void log_event(spdlog::level::level_enum level, std::string_view event, std::string_view message,
               std::initializer_list<log_field> fields) {
  // The dashboard's journal keeps what an info log would show, at any log level.
  if (level >= spdlog::level::info && level != spdlog::level::off)
    lifecycle_journal().record(level, event, message, fields);
  auto* logger = spdlog::default_logger_raw();
  if (!logger->should_log(level)) return;
  std::string line;
  line.reserve(96 + 24 * fields.size());
  if (current_format == log_format::json) {
    line += kMembersMarker;
    line += "\"msg\":\"";
    append_json_escaped(line, message);
    line += "\",\"event\":\"";
    append_json_escaped(line, event);
    line += '"';
    for (const auto& field : fields) {
      line += ',';
      field.append_json(line);
    }
  } else {
    line.append(message);
    for (const auto& field : fields) {
      line += ' ';
      field.append_text(line);
    }
  }
  logger->log(level, std::string_view(line));
}

log_throttle::log_throttle(std::string summary_event, std::string summary_message,
                           unsigned full_per_second)
    : event_(std::move(summary_event)),
      message_(std::move(summary_message)),
      full_per_second_(full_per_second) {
  std::lock_guard<std::mutex> lock(throttles_mutex);
  throttles().insert(this);
}

log_throttle::~log_throttle() {
  std::lock_guard<std::mutex> lock(throttles_mutex);
  throttles().erase(this);
}

bool log_throttle::admit(std::string_view reason, time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  flush_locked(now);
  if (shown_ < full_per_second_) {
    ++shown_;
    return true;
  }
  auto it = held_back_.find(reason);
  if (it == held_back_.end()) it = held_back_.emplace(std::string(reason), 0).first;
  ++it->second;
  return false;
}

void log_throttle::flush(time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  flush_locked(now);
}

void log_throttle::flush_locked(time_point now) {
  if (now - window_start_ < std::chrono::seconds(1)) return;
  if (!held_back_.empty()) {
    std::vector<std::pair<std::string, uint64_t>> by_reason(held_back_.begin(), held_back_.end());
    uint64_t total = 0;
    for (const auto& [reason, n] : by_reason) total += n;
    const double window_s = std::chrono::duration<double>(now - window_start_).count();
    log_event(spdlog::level::info, event_, message_,
              {{"not_shown", total},
               {"shown", static_cast<uint64_t>(shown_)},
               {"window_s", window_s},
               log_field::counts("by_reason", by_reason)});
  }
  held_back_.clear();
  shown_ = 0;
  window_start_ = now;
}

void flush_log_summaries() {
  std::lock_guard<std::mutex> lock(throttles_mutex);
  for (auto* throttle : throttles()) throttle->flush();
}

}  // namespace wsvisor
