// Structured log lines (CONTRACT section 5: one line per lifecycle event). A line is an
// event name, a message and fields. In text format the fields follow the message as
// key=value, a value quoted and escaped when it holds anything but plain characters;
// in JSON format every field is a member of the line's object, next to time, level, msg
// and event. Values from outside (user ids, IPs, reasons) cannot forge a line or a field
// in either format.
//
// Lines that come in floods (admission refusals) go through a log_throttle: the first
// few of each second in full, the rest counted into one summary line per second.
#pragma once

#include <spdlog/common.h>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace wsvisor {

enum class log_format { text, json };

// RFC 3339 UTC with milliseconds, as in JSON log lines: 2026-11-28T02:49:45.640Z. Also
// the time format of the admin and server APIs and of lifecycle events.
std::string rfc3339(std::chrono::system_clock::time_point t);

// Configures the default logger on stderr (or on `sink`, for tests). Throws spdlog_ex on
// an unknown level name (the config loader validates it first).
void setup_logging(std::string_view level, log_format format, spdlog::sink_ptr sink = nullptr);

// One field of a structured line. Holds views: build it in the call, as in
// log_event(level, "e", "msg", {{"user", user}, {"code", code}}).
class log_field {
 public:
  log_field(std::string_view key, std::string_view value) : key_(key), kind_(kind::text) {
    text_ = value;
  }
  log_field(std::string_view key, const std::string& value)
      : log_field(key, std::string_view(value)) {}
  log_field(std::string_view key, const char* value) : log_field(key, std::string_view(value)) {}
  template <
      class Integer,
      std::enable_if_t<std::is_integral_v<Integer> && !std::is_same_v<Integer, bool>, int> = 0>
  log_field(std::string_view key, Integer value) : key_(key) {
    if constexpr (std::is_signed_v<Integer>) {
      kind_ = kind::signed_integer;
      signed_ = value;
    } else {
      kind_ = kind::unsigned_integer;
      unsigned_ = value;
    }
  }
  log_field(std::string_view key, double value) : key_(key), kind_(kind::real), real_(value) {}
  log_field(std::string_view key, bool value) : key_(key), kind_(kind::boolean), flag_(value) {}

  // A string that may be absent: "" is written `-` in text and null in JSON.
  static log_field optional(std::string_view key, std::string_view value) {
    log_field f(key, value);
    if (value.empty()) f.kind_ = kind::null;
    return f;
  }
  // Counts by name: {"a":1,"b":2} in JSON, a=1,b=2 (quoted) in text.
  static log_field counts(std::string_view key,
                          const std::vector<std::pair<std::string, uint64_t>>& by_name) {
    log_field f(key, std::string_view{});
    f.kind_ = kind::counts;
    f.counts_ = &by_name;
    return f;
  }

  void append_text(std::string& out) const;
  void append_json(std::string& out) const;

 private:
  // Numbers and booleans, written the same in both formats; false for the other kinds.
  bool append_scalar(std::string& out) const;
  enum class kind { text, null, signed_integer, unsigned_integer, real, boolean, counts };
  std::string_view key_;
  kind kind_ = kind::text;
  std::string_view text_;
  int64_t signed_ = 0;
  uint64_t unsigned_ = 0;
  double real_ = 0;
  bool flag_ = false;
  const std::vector<std::pair<std::string, uint64_t>>* counts_ = nullptr;
};

// Writes one structured line at `level` (nothing is formatted when the level is off).
void log_event(spdlog::level::level_enum level, std::string_view event, std::string_view message,
               std::initializer_list<log_field> fields = {});

// Escapes for the two formats (exposed for tests): a JSON string's content
// (wsvisor/json_text.hpp's, with \b, \f and DEL as \u00XX), and a text value (bare when
// it is plain, else quoted).
void append_json_escaped(std::string& out, std::string_view text);
void append_text_value(std::string& out, std::string_view text);

// Lets the first `full_per_second` lines of a flood through in full each second and
// counts the rest by reason; the counts go out as one summary line (event `summary_event`)
// when the second is over: at the next line, or at flush_log_summaries(), which main
// calls once a second.
class log_throttle {
 public:
  log_throttle(std::string summary_event, std::string summary_message, unsigned full_per_second);
  ~log_throttle();
  log_throttle(const log_throttle&) = delete;
  log_throttle& operator=(const log_throttle&) = delete;

  using time_point = std::chrono::steady_clock::time_point;
  // Whether this line may be written in full; if not, it is counted under `reason`.
  bool admit(std::string_view reason, time_point now = std::chrono::steady_clock::now());
  // Writes the summary of a second that is over.
  void flush(time_point now = std::chrono::steady_clock::now());

 private:
  void flush_locked(time_point now);
  const std::string event_;
  const std::string message_;
  const unsigned full_per_second_;
  std::mutex mutex_;
  std::chrono::steady_clock::time_point window_start_{};
  unsigned shown_ = 0;
  std::map<std::string, uint64_t, std::less<>> held_back_;
};

// Flushes every log_throttle's finished second (main's once-a-second timer, and exit).
void flush_log_summaries();

}  // namespace wsvisor
