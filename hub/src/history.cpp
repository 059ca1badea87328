#include "wsvisor/hub/history.hpp"

#include <algorithm>
#include <atomic>
#include <random>
#include <utility>

namespace wsvisor::hub {

namespace {

// What a kept publication costs, roughly: the entry and the text it owns.
std::size_t footprint(const publication& pub) {
  std::size_t bytes = sizeof(publication) + pub.data.capacity();
  if (pub.info)
    bytes += pub.info->user.capacity() + pub.info->client.capacity() +
             pub.info->conn_info.capacity() + pub.info->chan_info.capacity();
  for (const auto& [key, value] : pub.tags)
    bytes += sizeof(std::pair<std::string, std::string>) + key.capacity() + value.capacity();
  return bytes;
}

}  // namespace

channel_history::channel_history(uint64_t size, clock::duration ttl, std::string epoch)
    : size_limit_(std::max<uint64_t>(size, 1)), ttl_(ttl), epoch_(std::move(epoch)) {}

channel_history channel_history::restored(uint64_t size, clock::duration ttl, stream_position top,
                                          std::vector<publication> kept, clock::time_point now) {
  channel_history history(size, ttl, std::move(top.epoch));
  history.top_offset_ = top.offset;
  // The consecutive run that ends at the top, newest backwards.
  std::size_t first = kept.size();
  uint64_t expected = top.offset;
  while (first > 0 && expected > 0 && kept[first - 1].offset == expected) {
    --first;
    --expected;
  }
  for (std::size_t i = first; i < kept.size(); ++i) {
    const std::size_t bytes = footprint(kept[i]);
    history.entries_.push_back(entry{std::move(kept[i]), now + ttl, bytes});
    history.bytes_ += bytes;
  }
  while (history.entries_.size() > history.size_limit_) history.drop_front();
  return history;
}

void channel_history::drop_front() {
  bytes_ -= entries_.front().bytes;
  entries_.pop_front();
}

void channel_history::drop_expired(clock::time_point now) {
  // Appended in time order, so the expired ones are all at the front.
  while (!entries_.empty() && entries_.front().expires_at <= now) drop_front();
}

const publication& channel_history::append(publication pub, clock::time_point now) {
  drop_expired(now);
  pub.offset = ++top_offset_;
  const std::size_t bytes = footprint(pub);
  entries_.push_back(entry{std::move(pub), now + ttl_, bytes});
  bytes_ += bytes;
  while (entries_.size() > size_limit_) drop_front();
  return entries_.back().pub;
}

stream_position channel_history::top() const {
  return stream_position{top_offset_, epoch_};
}

channel_history::recovery channel_history::recover(const stream_position& since, uint64_t max,
                                                   clock::time_point now) {
  drop_expired(now);
  recovery result;
  if (since.epoch != epoch_ || since.offset > top_offset_) return result;
  // The kept entries are the consecutive offsets up to the top: the missed ones are all
  // kept exactly when there are at least as many entries as publications missed.
  const uint64_t missed = top_offset_ - since.offset;
  if (missed > max || missed > entries_.size()) return result;
  result.recovered = true;
  result.publications.reserve(missed);
  for (auto it = entries_.end() - static_cast<std::ptrdiff_t>(missed); it != entries_.end(); ++it)
    result.publications.push_back(&it->pub);
  return result;
}

std::variant<std::vector<const publication*>, error_code> channel_history::range(
    std::optional<stream_position> since, int64_t limit, bool reverse, clock::time_point now) {
  drop_expired(now);
  // [first, last): indexes into entries_ of the candidates, oldest first.
  std::size_t first = 0;
  std::size_t last = entries_.size();
  const uint64_t oldest_kept = top_offset_ - entries_.size() + 1;  // when any is kept
  if (since) {
    if (since->epoch != epoch_) return error_code::unrecoverable_position;
    if (!reverse) {
      if (since->offset > top_offset_) return error_code::unrecoverable_position;
      const uint64_t after = top_offset_ - since->offset;
      // Publications right after the position are gone: a page from there would skip them.
      if (after > entries_.size()) return error_code::unrecoverable_position;
      first = entries_.size() - after;
    } else {
      if (since->offset > top_offset_ + 1) return error_code::unrecoverable_position;
      // Those before the position; none when it is older than all that is kept.
      last = since->offset <= oldest_kept || entries_.empty()
                 ? 0
                 : static_cast<std::size_t>(since->offset - oldest_kept);
    }
  }
  std::size_t count = last - first;
  if (limit >= 0) count = std::min<std::size_t>(count, static_cast<uint64_t>(limit));

  std::vector<const publication*> publications;
  publications.reserve(count);
  if (!reverse) {
    for (std::size_t i = first; i < first + count; ++i) publications.push_back(&entries_[i].pub);
  } else {
    for (std::size_t i = last; i > last - count; --i) publications.push_back(&entries_[i - 1].pub);
  }
  return publications;
}

void channel_history::clear() {
  entries_.clear();
  bytes_ = 0;
}

std::size_t channel_history::size(clock::time_point now) {
  drop_expired(now);
  return entries_.size();
}

bool channel_history::expired(clock::time_point now) const {
  return entries_.empty() || entries_.back().expires_at <= now;
}

std::string new_epoch() {
  // A random start, then a counter through a bijection of 32-bit numbers (an odd
  // multiplier and xor-shifts are invertible): 2^32 epochs in a row, all different, that
  // still look unrelated to each other and to the previous run's.
  static const uint32_t start = [] {
    std::random_device device;
    return static_cast<uint32_t>(device());
  }();
  static std::atomic<uint32_t> counter{0};
  uint32_t x = start + counter.fetch_add(1, std::memory_order_relaxed);
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  static constexpr char hex[] = "0123456789abcdef";
  std::string epoch(8, '0');
  for (int i = 7; i >= 0; --i, x >>= 4) epoch[static_cast<std::size_t>(i)] = hex[x & 0xf];
  return epoch;
}

}  // namespace wsvisor::hub
