#include "wsvisor/event_journal.hpp"

#include <chrono>

#include "wsvisor/log.hpp"

namespace wsvisor {

void event_journal::record(spdlog::level::level_enum level, std::string_view event,
                           std::string_view message, std::initializer_list<log_field> fields) {
  // Formatted outside the lock; only the swap into the ring is inside it.
  std::string entry;
  entry.reserve(128 + 24 * fields.size());
  entry += R"(,"time":")";
  entry += rfc3339(std::chrono::system_clock::now());
  entry += R"(","level":")";
  const auto level_name = spdlog::level::to_string_view(level);
  entry.append(level_name.data(), level_name.size());
  entry += R"(","event":")";
  append_json_escaped(entry, event);
  entry += R"(","msg":")";
  append_json_escaped(entry, message);
  entry += R"(","fields":{)";
  const char* separator = "";
  for (const auto& field : fields) {
    entry += separator;
    separator = ",";
    field.append_json(entry);
  }
  entry += "}}";
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t seq = ++last_seq_;
  std::string head = R"({"seq":)" + std::to_string(seq);
  entry.insert(0, head);
  ring_[(seq - 1) % kKept].swap(entry);
}

event_journal::batch event_journal::since(uint64_t after) const {
  batch out;
  std::lock_guard<std::mutex> lock(mutex_);
  out.last_seq = std::max(after, last_seq_);
  if (after >= last_seq_) return out;
  const uint64_t oldest_kept = last_seq_ > kKept ? last_seq_ - kKept + 1 : 1;
  const uint64_t first = std::max(after + 1, oldest_kept);
  out.missed = first - (after + 1);
  out.entries.reserve(last_seq_ - first + 1);
  for (uint64_t seq = first; seq <= last_seq_; ++seq)
    out.entries.push_back(ring_[(seq - 1) % kKept]);
  return out;
}

event_journal& lifecycle_journal() {
  static event_journal journal;
  return journal;
}

}  // namespace wsvisor
