// Thread-safe counters and distributions that the modes fill and print as JSON.
#pragma once

#include <boost/json/object.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace wsload {

// Log-linear histogram of non-negative integers (microseconds here): exact below 128,
// then 64 buckets per power of two, so any percentile is within 1.6 % of the truth
// while memory stays fixed however many samples arrive. Lock-free: every I/O thread
// records into the same buckets with relaxed atomics.
class LatencyHistogram {
 public:
  LatencyHistogram();
  void record(std::uint64_t value);
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  // Smallest bucket value at or above which a share (1 - quantile) of the samples lies.
  std::uint64_t percentile(double quantile) const;
  boost::json::object to_json() const;

 private:
  static constexpr int kExactBuckets = 128;
  static constexpr int kSubBuckets = 64;
  static constexpr int kBucketCount = kExactBuckets + 58 * kSubBuckets;
  static int bucket_of(std::uint64_t value);
  static std::uint64_t bucket_value(int bucket);

  std::vector<std::atomic<std::uint64_t>> buckets_;
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_{0};
  std::atomic<std::uint64_t> min_{UINT64_MAX};
  std::atomic<std::uint64_t> max_{0};
};

// Counts by a key that is only known at run time (HTTP status, close code, error text).
// Errors and refusals are rare next to messages, so a mutex is cheap enough.
class CounterMap {
 public:
  void add(const std::string& key, std::uint64_t amount = 1);
  std::uint64_t total() const;
  std::uint64_t get(const std::string& key) const;
  boost::json::object to_json() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::uint64_t> counts_;
};

// Exact samples of a few thousand durations (time until the server closed a socket).
class DurationSamples {
 public:
  void add(double seconds);
  // {count, min, mean, p50, p90, max} in seconds, or {count: 0}.
  boost::json::object to_json() const;

 private:
  mutable std::mutex mutex_;
  std::vector<double> samples_;
};

// Running count with its high-water mark (open connections).
class Gauge {
 public:
  void increment();
  void decrement() { value_.fetch_sub(1, std::memory_order_relaxed); }
  std::int64_t value() const { return value_.load(std::memory_order_relaxed); }
  std::int64_t peak() const { return peak_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
  std::atomic<std::int64_t> peak_{0};
};

using Counter = std::atomic<std::uint64_t>;

}  // namespace wsload
