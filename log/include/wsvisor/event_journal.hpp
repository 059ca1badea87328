// The last lifecycle and supervision events, kept in memory for the dashboard (CONTRACT
// 15): every structured line (log_event) at info or above, whatever the log level, as
// one JSON object each. A fixed ring of kKept entries, so a flood costs the same memory
// as a quiet day; readers ask for what came after the last sequence number they saw.
#pragma once

#include <spdlog/common.h>

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace wsvisor {

class log_field;

class event_journal {
 public:
  static constexpr size_t kKept = 100;

  // Keeps {"seq":n,"time":"<RFC 3339>","level":"...","event":"...","msg":"...",
  // "fields":{...}}, escaped as a JSON log line is.
  void record(spdlog::level::level_enum level, std::string_view event, std::string_view message,
              std::initializer_list<log_field> fields);

  struct batch {
    std::vector<std::string> entries;  // oldest first
    uint64_t last_seq = 0;             // the newest entry's (or `after`, when none)
    uint64_t missed = 0;               // entries after `after` that left the ring unread
  };
  // The entries with a sequence number above `after` (0: all kept).
  batch since(uint64_t after) const;

 private:
  mutable std::mutex mutex_;
  std::array<std::string, kKept> ring_;
  uint64_t last_seq_ = 0;  // entry n lives in ring_[(n - 1) % kKept]
};

// The process's journal, which log_event writes to.
event_journal& lifecycle_journal();

}  // namespace wsvisor
