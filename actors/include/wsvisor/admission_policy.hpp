// The limit guard's arithmetic, without actors: the checks of CONTRACT section 4 in
// their order, the accept token bucket, and the counts of slots held per user, per IP,
// per shard and in all. The limit_guard actor owns one instance; nobody else does.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "wsvisor/admission.hpp"
#include "wsvisor/config.hpp"

namespace wsvisor {

class admission_policy {
 public:
  struct verdict {
    bool admitted = false;
    reject_reason reason = reject_reason::starting;
    bool retry_after = false;  // whether the refusal carries Retry-After
    unsigned shard = 0;        // where the slot goes, when admitted
    bool above_soft = false;   // admitted between soft_connections and max_connections
  };

  admission_policy(const settings& config, unsigned shard_count);

  // Decides one upgrade and, when admitted, reserves its slot in every count at once.
  // `charge_token` is false when an upgrade that already paid (it waited for a sweep)
  // is decided again.
  verdict decide(const admission_request& request, steady_time now, bool tree_up, bool draining,
                 bool charge_token = true);

  // decide() in two steps, for the gateway's connect hook, which runs between them
  // (CONTRACT 12.1: after unauthorized, before ip_limit). precheck: starting, draining,
  // the token, the origin, unauthorized; a refusal, or nothing when they pass.
  // decide_caps: the IP, the user and the server, reserving the slot when admitted.
  std::optional<verdict> precheck(const admission_request& request, steady_time now, bool tree_up,
                                  bool draining, bool charge_token = true);
  verdict decide_caps(const admission_request& request);

  // A slot was released (its connection actor died).
  void release(unsigned shard, const std::string& user, const std::string& ip);

  // Rebuild after a restart: forget everything, then add() each slot that exists.
  void clear_counts();
  void add(unsigned shard, const std::string& user, const std::string& ip);

  uint64_t total() const { return total_; }
  uint64_t user_count(const std::string& user) const;
  uint64_t ip_count(const std::string& ip) const;
  uint64_t shard_count(unsigned shard) const { return per_shard_.at(shard); }
  // The `n` users (IPs) holding the most slots, highest first, ties by name.
  std::vector<std::pair<std::string, uint64_t>> top_users(size_t n) const;
  std::vector<std::pair<std::string, uint64_t>> top_ips(size_t n) const;

 private:
  bool take_token(steady_time now);
  unsigned least_loaded_shard() const;

  limits_settings limits_;
  std::vector<std::string> allowed_origins_;
  double tokens_;
  steady_time last_refill_{};
  uint64_t total_ = 0;
  std::unordered_map<std::string, uint64_t> per_user_;
  std::unordered_map<std::string, uint64_t> per_ip_;
  std::vector<uint64_t> per_shard_;
};

}  // namespace wsvisor
