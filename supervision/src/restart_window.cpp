#include "wsvisor/supervision/restart_window.hpp"

namespace wsvisor {

bool restart_window::admit(time_point now) {
  // Restarts that left the window no longer count.
  while (!recent_.empty() && !counts_at(recent_.front(), now)) recent_.pop_front();
  recent_.push_back(now);
  if (recent_.size() <= limit_.max_restarts) return true;
  // Only the newest max_restarts + 1 entries can matter later on.
  recent_.pop_front();
  return false;
}

std::size_t restart_window::in_window(time_point now) const {
  std::size_t n = 0;
  for (const auto& at : recent_)
    if (counts_at(at, now)) ++n;
  return n;
}

}  // namespace wsvisor
