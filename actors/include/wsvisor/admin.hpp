// What the admin API (CONTRACT sections 7 and 8) asks of the service tree and hears back.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "wsvisor/session_port.hpp"

namespace wsvisor {

struct connection_info {
  uint64_t id = 0;
  std::string user;
  std::string ip;
  std::chrono::system_clock::time_point opened_at;
  std::chrono::system_clock::time_point last_activity;
  const char* state = "handshake";  // "handshake" | "open" | "closing"
  uint64_t restarts = 0;
  uint64_t queued_bytes = 0;
};

struct tree_node {
  std::string name;
  std::string strategy;  // supervisors only
  uint64_t restarts = 0;
  std::optional<uint64_t> connections;  // shards only
  std::vector<tree_node> children;
};

// A fault of CONTRACT section 8.
struct fault_request {
  enum class action { crash, poison, delay, clear } what = action::crash;
  enum class target { connection, limit_guard, janitor, shard } on = target::connection;
  std::optional<std::string> user;  // target connection: by user
  std::optional<uint64_t> id;       //   or by id
  uint64_t shard_index = 0;         // as given: checked against the shard count before use
  uint32_t delay_ms = 0;
};

// Standing faults applied to a connection actor (and to the user's future ones).
struct standing_fault {
  bool poison = false;
  uint32_t delay_ms = 0;
  bool any() const { return poison || delay_ms > 0; }
};

}  // namespace wsvisor
