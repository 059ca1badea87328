#include "stats.hpp"

#include <algorithm>
#include <cmath>

namespace wsload {

LatencyHistogram::LatencyHistogram() : buckets_(kBucketCount) {}

int LatencyHistogram::bucket_of(std::uint64_t value) {
  if (value < kExactBuckets) return static_cast<int>(value);
  int top_bit = 63 - __builtin_clzll(value);  // >= 7 here
  int shift = top_bit - 6;                    // keeps 7 significant bits: 64..127
  int sub = static_cast<int>(value >> shift) - kSubBuckets;
  int bucket = kExactBuckets + (shift - 1) * kSubBuckets + sub;
  return std::min(bucket, kBucketCount - 1);
}

std::uint64_t LatencyHistogram::bucket_value(int bucket) {
  if (bucket < kExactBuckets) return static_cast<std::uint64_t>(bucket);
  int shift = (bucket - kExactBuckets) / kSubBuckets + 1;
  std::uint64_t sub =
      static_cast<std::uint64_t>((bucket - kExactBuckets) % kSubBuckets) + kSubBuckets;
  // The middle of the bucket, so the error is at most half a bucket either way.
  return (sub << shift) + ((std::uint64_t{1} << shift) >> 1);
}

void LatencyHistogram::record(std::uint64_t value) {
  buckets_[bucket_of(value)].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
  auto seen_min = min_.load(std::memory_order_relaxed);
  while (value < seen_min && !min_.compare_exchange_weak(seen_min, value)) {
  }
  auto seen_max = max_.load(std::memory_order_relaxed);
  while (value > seen_max && !max_.compare_exchange_weak(seen_max, value)) {
  }
}

std::uint64_t LatencyHistogram::percentile(double quantile) const {
  std::uint64_t total = count();
  if (total == 0) return 0;
  auto rank = static_cast<std::uint64_t>(std::ceil(quantile * static_cast<double>(total)));
  rank = std::clamp<std::uint64_t>(rank, 1, total);
  std::uint64_t seen = 0;
  for (int bucket = 0; bucket < kBucketCount; ++bucket) {
    seen += buckets_[bucket].load(std::memory_order_relaxed);
    if (seen >= rank) {
      // Never report outside the observed range.
      return std::clamp(bucket_value(bucket), min_.load(), max_.load());
    }
  }
  return max_.load();
}

boost::json::object LatencyHistogram::to_json() const {
  boost::json::object out;
  std::uint64_t total = count();
  out["count"] = total;
  if (total == 0) return out;
  out["min"] = min_.load();
  out["mean"] = static_cast<double>(sum_.load()) / static_cast<double>(total);
  out["p50"] = percentile(0.50);
  out["p90"] = percentile(0.90);
  out["p99"] = percentile(0.99);
  out["p999"] = percentile(0.999);
  out["max"] = max_.load();
  return out;
}

void CounterMap::add(const std::string& key, std::uint64_t amount) {
  std::lock_guard lock(mutex_);
  counts_[key] += amount;
}

std::uint64_t CounterMap::total() const {
  std::lock_guard lock(mutex_);
  std::uint64_t sum = 0;
  for (const auto& [key, count] : counts_) sum += count;
  return sum;
}

std::uint64_t CounterMap::get(const std::string& key) const {
  std::lock_guard lock(mutex_);
  auto found = counts_.find(key);
  return found == counts_.end() ? 0 : found->second;
}

boost::json::object CounterMap::to_json() const {
  std::lock_guard lock(mutex_);
  boost::json::object out;
  for (const auto& [key, count] : counts_) out[key] = count;
  return out;
}

void DurationSamples::add(double seconds) {
  std::lock_guard lock(mutex_);
  samples_.push_back(seconds);
}

boost::json::object DurationSamples::to_json() const {
  std::vector<double> sorted;
  {
    std::lock_guard lock(mutex_);
    sorted = samples_;
  }
  boost::json::object out;
  out["count"] = sorted.size();
  if (sorted.empty()) return out;
  std::sort(sorted.begin(), sorted.end());
  auto at = [&](double quantile) {
    auto index = static_cast<std::size_t>(std::ceil(quantile * sorted.size()));
    return sorted[std::clamp<std::size_t>(index, 1, sorted.size()) - 1];
  };
  double sum = 0;
  for (double sample : sorted) sum += sample;
  out["min"] = sorted.front();
  out["mean"] = sum / static_cast<double>(sorted.size());
  out["p50"] = at(0.5);
  out["p90"] = at(0.9);
  out["max"] = sorted.back();
  return out;
}

void Gauge::increment() {
  auto now = value_.fetch_add(1, std::memory_order_relaxed) + 1;
  auto peak = peak_.load(std::memory_order_relaxed);
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
}

}  // namespace wsload
