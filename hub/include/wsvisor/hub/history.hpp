// The in-memory stream of one channel with history (CONTRACT 13.5): publications with
// offsets 1, 2, ... under one epoch, bounded by the namespace's history_size and
// history_ttl, and the decisions built on it: whether a subscriber's position can be
// recovered and which publications a history command returns. Not thread-safe: one
// owner (the channel's actor) calls it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "wsvisor/hub/protocol.hpp"

namespace wsvisor::hub {

class channel_history {
 public:
  using clock = std::chrono::steady_clock;

  // size > 0 publications kept at most, each for ttl > 0; `epoch` names this stream (a
  // new one each time a stream is created, so that positions in a lost one are refused).
  channel_history(uint64_t size, clock::duration ttl, std::string epoch);

  // Stores the publication with the next offset (1, 2, ...), dropping the oldest past
  // `size` and those older than ttl. The returned reference (offset set) is valid until
  // the next call that changes the stream: callers encode or copy it at once.
  const publication& append(publication pub, clock::time_point now);

  // A stream as another store keeps it (cluster mode: Redis), to answer recover and range
  // from: `top` is the last offset assigned, `kept` the publications still kept, oldest
  // first. Only the run of consecutive offsets that ends at top.offset is kept (what
  // comes before a gap cannot be recovered across it); each expires ttl after `now`.
  static channel_history restored(uint64_t size, clock::duration ttl, stream_position top,
                                  std::vector<publication> kept, clock::time_point now);

  // {the last offset assigned (0 before any), epoch}.
  stream_position top() const;
  const std::string& epoch() const { return epoch_; }

  struct recovery {
    bool recovered = false;
    std::vector<const publication*> publications;  // oldest first; empty unless recovered
  };
  // Never partial: recovered only if since.epoch is this epoch, since.offset <= top, every
  // publication after since.offset is still kept (none dropped by size or ttl) and there
  // are at most `max` of them; then all of them, in order.
  recovery recover(const stream_position& since, uint64_t max, clock::time_point now);

  // The history command (and API), as Centrifugo's memory engine answers it:
  //  - limit 0: no publications (the caller answers with the top position only); limit < 0:
  //    all that are kept (the caller clamps to its own maximum first); else at most limit.
  //  - without since: the oldest `limit` (reverse: the newest `limit`, newest first).
  //  - with since, forward: those after since.offset, oldest first; reverse: those before
  //    since.offset, newest first.
  //  - unrecoverable_position when since.epoch is not this epoch, since.offset is past the
  //    top (forward) or past top + 1 (reverse), or (forward) publications right after
  //    since.offset were dropped.
  // The pointers are valid until the next call that changes the stream.
  std::variant<std::vector<const publication*>, error_code> range(
      std::optional<stream_position> since, int64_t limit, bool reverse, clock::time_point now);

  // history_remove: drops every publication, keeps the offset counter and the epoch (so
  // that a position taken before is still in this stream, only no longer recoverable).
  void clear();

  // Publications kept at `now` (after dropping the expired ones).
  std::size_t size(clock::time_point now);

  // Approximate bytes held by the kept publications (for bounds tests and metrics).
  std::size_t bytes() const { return bytes_; }

  // True when nothing is kept at `now` anymore: the owner may forget the stream once it
  // has no subscribers either (a new one then gets a new epoch).
  bool expired(clock::time_point now) const;

 private:
  struct entry {
    publication pub;
    clock::time_point expires_at;
    std::size_t bytes;
  };
  void drop_expired(clock::time_point now);
  void drop_front();

  uint64_t size_limit_;
  clock::duration ttl_;
  std::string epoch_;
  uint64_t top_offset_ = 0;
  std::size_t bytes_ = 0;
  std::deque<entry> entries_;  // oldest first, consecutive offsets
};

// A new stream's epoch: 8 random hex digits (random_device once, then a counter mixed in,
// so that two streams made in the same process never share one).
std::string new_epoch();

}  // namespace wsvisor::hub
