#include "wsvisor/admission_policy.hpp"

#include <algorithm>

namespace wsvisor {
namespace {

void decrement(std::unordered_map<std::string, uint64_t>& counts, const std::string& key) {
  auto it = counts.find(key);
  if (it == counts.end()) return;
  if (--it->second == 0) counts.erase(it);  // no empty entries left behind
}

// The n entries with the highest counts, highest first (ties by key, so that the
// dashboard's tables do not flicker): a partial sort of pointers, not of the map.
std::vector<std::pair<std::string, uint64_t>> highest(
    const std::unordered_map<std::string, uint64_t>& counts, size_t n) {
  using entry = const std::pair<const std::string, uint64_t>*;
  std::vector<entry> all;
  all.reserve(counts.size());
  for (const auto& kv : counts) all.push_back(&kv);
  const auto before = [](entry a, entry b) {
    return a->second != b->second ? a->second > b->second : a->first < b->first;
  };
  const size_t kept = std::min(n, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(kept), all.end(),
                    before);
  std::vector<std::pair<std::string, uint64_t>> top;
  top.reserve(kept);
  for (size_t i = 0; i < kept; ++i) top.emplace_back(all[i]->first, all[i]->second);
  return top;
}

uint64_t count_of(const std::unordered_map<std::string, uint64_t>& counts, const std::string& key) {
  auto it = counts.find(key);
  return it == counts.end() ? 0 : it->second;
}

admission_policy::verdict refuse(reject_reason reason, bool retry_after) {
  admission_policy::verdict v;
  v.reason = reason;
  v.retry_after = retry_after;
  return v;
}

}  // namespace

admission_policy::admission_policy(const settings& config, unsigned shard_count)
    : limits_(config.limits),
      allowed_origins_(config.server.allowed_origins),
      tokens_(static_cast<double>(config.limits.accept_burst)),
      per_shard_(std::max(1u, shard_count), 0) {}

bool admission_policy::take_token(steady_time now) {
  if (last_refill_ != steady_time{}) {
    const double elapsed = std::chrono::duration<double>(now - last_refill_).count();
    tokens_ = std::min(static_cast<double>(limits_.accept_burst),
                       tokens_ + std::max(0.0, elapsed) * limits_.accept_rate);
  }
  last_refill_ = now;
  // A whole token, give or take the rounding of repeated refills.
  if (tokens_ < 1.0 - 1e-9) return false;
  tokens_ = std::max(0.0, tokens_ - 1.0);
  return true;
}

unsigned admission_policy::least_loaded_shard() const {
  return static_cast<unsigned>(std::min_element(per_shard_.begin(), per_shard_.end()) -
                               per_shard_.begin());
}

admission_policy::verdict admission_policy::decide(const admission_request& request,
                                                   steady_time now, bool tree_up, bool draining,
                                                   bool charge_token) {
  if (auto refused = precheck(request, now, tree_up, draining, charge_token)) return *refused;
  return decide_caps(request);
}

std::optional<admission_policy::verdict> admission_policy::precheck(
    const admission_request& request, steady_time now, bool tree_up, bool draining,
    bool charge_token) {
  if (!tree_up) return refuse(reject_reason::starting, true);
  if (draining) return refuse(reject_reason::draining, true);
  if (charge_token && !take_token(now)) return refuse(reject_reason::rate_limited, true);
  if (!request.origin.empty() && !allowed_origins_.empty() &&
      std::find(allowed_origins_.begin(), allowed_origins_.end(), request.origin) ==
          allowed_origins_.end())
    return refuse(reject_reason::forbidden_origin, false);
  if (request.identity_missing || request.identity_invalid)
    return refuse(reject_reason::unauthorized, false);
  return std::nullopt;
}

admission_policy::verdict admission_policy::decide_caps(const admission_request& request) {
  if (limits_.max_per_ip != 0 && count_of(per_ip_, request.ip) >= limits_.max_per_ip)
    return refuse(reject_reason::ip_limit, true);
  if (!request.user.empty() && limits_.max_per_user != 0 &&
      count_of(per_user_, request.user) >= limits_.max_per_user)
    return refuse(reject_reason::user_limit, true);
  if (total_ >= limits_.max_connections) return refuse(reject_reason::server_full, true);

  verdict v;
  v.admitted = true;
  v.shard = least_loaded_shard();
  add(v.shard, request.user, request.ip);
  v.above_soft = total_ > limits_.soft_connections;
  return v;
}

void admission_policy::add(unsigned shard, const std::string& user, const std::string& ip) {
  ++total_;
  ++per_shard_.at(shard);
  if (!user.empty()) ++per_user_[user];
  ++per_ip_[ip];
}

void admission_policy::release(unsigned shard, const std::string& user, const std::string& ip) {
  if (total_ > 0) --total_;
  if (shard < per_shard_.size() && per_shard_[shard] > 0) --per_shard_[shard];
  if (!user.empty()) decrement(per_user_, user);
  decrement(per_ip_, ip);
}

void admission_policy::clear_counts() {
  total_ = 0;
  per_user_.clear();
  per_ip_.clear();
  std::fill(per_shard_.begin(), per_shard_.end(), 0);
}

uint64_t admission_policy::user_count(const std::string& user) const {
  return count_of(per_user_, user);
}

uint64_t admission_policy::ip_count(const std::string& ip) const {
  return count_of(per_ip_, ip);
}

std::vector<std::pair<std::string, uint64_t>> admission_policy::top_users(size_t n) const {
  return highest(per_user_, n);
}

std::vector<std::pair<std::string, uint64_t>> admission_policy::top_ips(size_t n) const {
  return highest(per_ip_, n);
}

}  // namespace wsvisor
