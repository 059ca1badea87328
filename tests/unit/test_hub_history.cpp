// The stream of one channel (CONTRACT 13.5): offsets, epoch, the size and ttl bounds (time
// is passed in, so nothing sleeps), the all-or-nothing recovery decision and the history
// command's ranges.
#include <doctest/doctest.h>

#include <chrono>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "wsvisor/hub/history.hpp"

namespace hub = wsvisor::hub;
using namespace std::chrono_literals;
using clock_type = hub::channel_history::clock;

namespace {

const clock_type::time_point t0 = clock_type::time_point(1000s);

hub::publication pub(std::string data) {
  hub::publication p;
  p.data = std::move(data);
  return p;
}

// Offsets of a list of publications, for compact checks.
std::vector<uint64_t> offsets(const std::vector<const hub::publication*>& pubs) {
  std::vector<uint64_t> out;
  for (const auto* p : pubs) out.push_back(p->offset);
  return out;
}

// A stream of `count` publications 1..count appended at t0, t0+1s, ...
hub::channel_history filled(uint64_t size, clock_type::duration ttl, uint64_t count) {
  hub::channel_history history(size, ttl, "ep");
  for (uint64_t i = 1; i <= count; ++i)
    history.append(pub(std::to_string(i)), t0 + std::chrono::seconds(i - 1));
  return history;
}

std::vector<uint64_t> range_offsets(hub::channel_history& history,
                                    std::optional<hub::stream_position> since, int64_t limit,
                                    bool reverse, clock_type::time_point now) {
  auto result = history.range(std::move(since), limit, reverse, now);
  REQUIRE(std::holds_alternative<std::vector<const hub::publication*>>(result));
  return offsets(std::get<std::vector<const hub::publication*>>(result));
}

bool unrecoverable(hub::channel_history& history, hub::stream_position since, bool reverse,
                   clock_type::time_point now) {
  auto result = history.range(std::move(since), -1, reverse, now);
  return std::holds_alternative<hub::error_code>(result) &&
         std::get<hub::error_code>(result) == hub::error_code::unrecoverable_position;
}

}  // namespace

TEST_CASE("offsets count from 1, the top follows, the epoch stays") {
  hub::channel_history history(10, 60s, "ep");
  CHECK(history.top().offset == 0);
  CHECK(history.top().epoch == "ep");
  CHECK(history.epoch() == "ep");
  CHECK(history.append(pub("a"), t0).offset == 1);
  const auto& second = history.append(pub("b"), t0);
  CHECK(second.offset == 2);
  CHECK(second.data == "b");
  CHECK(history.top().offset == 2);
  CHECK(history.size(t0) == 2);
}

TEST_CASE("size bounds the stream: the oldest go, offsets go on") {
  auto history = filled(3, 1h, 10);
  CHECK(history.size(t0 + 10s) == 3);
  CHECK(history.top().offset == 10);
  CHECK(range_offsets(history, std::nullopt, -1, false, t0 + 10s) ==
        std::vector<uint64_t>{8, 9, 10});
}

TEST_CASE("ttl drops each publication once it is older than ttl") {
  auto history = filled(100, 10s, 5);  // appended at t0 .. t0+4s
  CHECK(history.size(t0 + 9s) == 5);
  CHECK(history.size(t0 + 10s) == 4);  // the first (t0) is 10 s old: gone
  CHECK(history.size(t0 + 12s) == 2);
  CHECK_FALSE(history.expired(t0 + 13s));
  CHECK(history.size(t0 + 14s) == 0);
  CHECK(history.expired(t0 + 14s));
  // The offsets and the epoch outlive the publications.
  CHECK(history.top().offset == 5);
  CHECK(history.append(pub("x"), t0 + 20s).offset == 6);
  CHECK_FALSE(history.expired(t0 + 20s));
}

TEST_CASE("bytes follow what is kept") {
  hub::channel_history history(2, 1h, "ep");
  CHECK(history.bytes() == 0);
  history.append(pub(std::string(1000, 'a')), t0);
  const auto one = history.bytes();
  CHECK(one >= 1000);
  history.append(pub(std::string(1000, 'b')), t0);
  history.append(pub(std::string(1000, 'c')), t0);
  for (int i = 0; i < 1000; ++i) history.append(pub(std::string(1000, 'd')), t0);
  // Two kept, whatever was appended.
  CHECK(history.bytes() <= 2 * one + 64);
  history.clear();
  CHECK(history.bytes() == 0);
}

TEST_CASE("recover: exact position, nothing missed, and every missed one in order") {
  auto history = filled(10, 1h, 5);
  auto r = history.recover({5, "ep"}, 300, t0 + 5s);
  CHECK(r.recovered);
  CHECK(r.publications.empty());
  r = history.recover({2, "ep"}, 300, t0 + 5s);
  CHECK(r.recovered);
  CHECK(offsets(r.publications) == std::vector<uint64_t>{3, 4, 5});
  CHECK(r.publications.front()->data == "3");
  r = history.recover({0, "ep"}, 300, t0 + 5s);
  CHECK(r.recovered);
  CHECK(offsets(r.publications) == std::vector<uint64_t>{1, 2, 3, 4, 5});
}

TEST_CASE("recover: never partial") {
  SUBCASE("too old: dropped by size") {
    auto history = filled(3, 1h, 10);  // keeps 8, 9, 10
    CHECK_FALSE(history.recover({6, "ep"}, 300, t0 + 10s).recovered);
    CHECK(history.recover({7, "ep"}, 300, t0 + 10s).recovered);
  }
  SUBCASE("too old: dropped by ttl") {
    auto history = filled(100, 10s, 5);  // t0 .. t0+4s
    CHECK(history.recover({0, "ep"}, 300, t0 + 9s).recovered);
    CHECK_FALSE(history.recover({0, "ep"}, 300, t0 + 10s).recovered);
    CHECK(history.recover({1, "ep"}, 300, t0 + 10s).recovered);
  }
  SUBCASE("too many") {
    auto history = filled(100, 1h, 10);
    CHECK_FALSE(history.recover({6, "ep"}, 3, t0 + 10s).recovered);
    const auto r = history.recover({7, "ep"}, 3, t0 + 10s);
    CHECK(r.recovered);
    CHECK(r.publications.size() == 3);
  }
  SUBCASE("wrong epoch") {
    auto history = filled(100, 1h, 10);
    const auto r = history.recover({10, "other"}, 300, t0 + 10s);
    CHECK_FALSE(r.recovered);
    CHECK(r.publications.empty());
    CHECK_FALSE(history.recover({10, ""}, 300, t0 + 10s).recovered);
  }
  SUBCASE("future offset") {
    auto history = filled(100, 1h, 10);
    CHECK_FALSE(history.recover({11, "ep"}, 300, t0 + 10s).recovered);
  }
  SUBCASE("after clear") {
    auto history = filled(100, 1h, 10);
    history.clear();
    CHECK(history.size(t0 + 10s) == 0);
    CHECK(history.top().offset == 10);
    CHECK(history.top().epoch == "ep");
    CHECK_FALSE(history.recover({9, "ep"}, 300, t0 + 10s).recovered);
    CHECK(history.recover({10, "ep"}, 300, t0 + 10s).recovered);
    CHECK(history.append(pub("next"), t0 + 11s).offset == 11);
    CHECK(offsets(history.recover({10, "ep"}, 300, t0 + 11s).publications) ==
          std::vector<uint64_t>{11});
  }
}

TEST_CASE("range without since: oldest first, or newest first when reverse") {
  auto history = filled(100, 1h, 5);
  const auto now = t0 + 5s;
  CHECK(range_offsets(history, std::nullopt, 0, false, now).empty());
  CHECK(range_offsets(history, std::nullopt, -1, false, now) ==
        std::vector<uint64_t>{1, 2, 3, 4, 5});
  CHECK(range_offsets(history, std::nullopt, 2, false, now) == std::vector<uint64_t>{1, 2});
  CHECK(range_offsets(history, std::nullopt, 2, true, now) == std::vector<uint64_t>{5, 4});
  CHECK(range_offsets(history, std::nullopt, -1, true, now) ==
        std::vector<uint64_t>{5, 4, 3, 2, 1});
  CHECK(range_offsets(history, std::nullopt, 100, false, now).size() == 5);
}

TEST_CASE("range with since: after it, or before it when reverse") {
  auto history = filled(100, 1h, 10);
  const auto now = t0 + 10s;
  CHECK(range_offsets(history, hub::stream_position{0, "ep"}, 3, false, now) ==
        std::vector<uint64_t>{1, 2, 3});
  CHECK(range_offsets(history, hub::stream_position{7, "ep"}, -1, false, now) ==
        std::vector<uint64_t>{8, 9, 10});
  CHECK(range_offsets(history, hub::stream_position{10, "ep"}, -1, false, now).empty());
  CHECK(range_offsets(history, hub::stream_position{11, "ep"}, 3, true, now) ==
        std::vector<uint64_t>{10, 9, 8});
  CHECK(range_offsets(history, hub::stream_position{4, "ep"}, 10, true, now) ==
        std::vector<uint64_t>{3, 2, 1});
  CHECK(range_offsets(history, hub::stream_position{1, "ep"}, 10, true, now).empty());
}

TEST_CASE("range with a since that is not in this stream: unrecoverable_position") {
  auto history = filled(3, 1h, 10);  // keeps 8, 9, 10
  const auto now = t0 + 10s;
  CHECK(unrecoverable(history, {7, "other"}, false, now));
  CHECK(unrecoverable(history, {7, "other"}, true, now));
  CHECK(unrecoverable(history, {11, "ep"}, false, now));
  CHECK(unrecoverable(history, {12, "ep"}, true, now));
  CHECK(unrecoverable(history, {5, "ep"}, false, now));  // 6 and 7 are gone
  CHECK_FALSE(unrecoverable(history, {7, "ep"}, false, now));
  // Backwards, the end of what is kept is the end of the page, not an error.
  CHECK(range_offsets(history, hub::stream_position{5, "ep"}, -1, true, now).empty());
  CHECK(range_offsets(history, hub::stream_position{9, "ep"}, -1, true, now) ==
        std::vector<uint64_t>{8});
}

TEST_CASE("an empty stream") {
  hub::channel_history history(10, 1h, "ep");
  CHECK(history.expired(t0));
  CHECK(range_offsets(history, std::nullopt, -1, false, t0).empty());
  CHECK(range_offsets(history, hub::stream_position{0, "ep"}, -1, false, t0).empty());
  CHECK(range_offsets(history, hub::stream_position{1, "ep"}, -1, true, t0).empty());
  CHECK(history.recover({0, "ep"}, 300, t0).recovered);
  CHECK_FALSE(history.recover({1, "ep"}, 300, t0).recovered);
}

TEST_CASE("new_epoch: 8 hex digits, never the same twice in a run") {
  std::set<std::string> seen;
  for (int i = 0; i < 100000; ++i) {
    const auto epoch = hub::new_epoch();
    REQUIRE(epoch.size() == 8);
    REQUIRE(epoch.find_first_not_of("0123456789abcdef") == std::string::npos);
    REQUIRE(seen.insert(epoch).second);
  }
}

TEST_CASE("restored: a stream another store kept (cluster mode) recovers and pages as its own") {
  std::vector<hub::publication> kept;
  for (uint64_t offset = 6; offset <= 9; ++offset) {
    auto p = pub(std::to_string(offset));
    p.offset = offset;
    kept.push_back(std::move(p));
  }
  auto history = hub::channel_history::restored(10, 1h, {9, "ep"}, kept, t0);
  CHECK(history.top().offset == 9);
  CHECK(history.top().epoch == "ep");
  const auto recovered = history.recover({6, "ep"}, 300, t0);
  REQUIRE(recovered.recovered);
  CHECK(offsets(recovered.publications) == std::vector<uint64_t>{7, 8, 9});
  CHECK(history.recover({5, "ep"}, 300, t0).recovered);
  CHECK_FALSE(history.recover({4, "ep"}, 300, t0).recovered);  // 5 is not kept
  CHECK_FALSE(history.recover({6, "other"}, 300, t0).recovered);
  CHECK(range_offsets(history, std::nullopt, 2, false, t0) == std::vector<uint64_t>{6, 7});
  // Each kept one lives ttl from the restore.
  CHECK(history.size(t0 + 1h) == 0);
}

TEST_CASE("restored: only the run that ends at the top is kept, within the size") {
  std::vector<hub::publication> kept;
  for (uint64_t offset : {2, 3, 5, 6, 7}) {  // 4 is missing: 2 and 3 cannot be recovered
    auto p = pub(std::to_string(offset));
    p.offset = offset;
    kept.push_back(std::move(p));
  }
  auto gap = hub::channel_history::restored(10, 1h, {7, "ep"}, kept, t0);
  CHECK(gap.size(t0) == 3);
  CHECK_FALSE(gap.recover({2, "ep"}, 300, t0).recovered);
  CHECK(gap.recover({4, "ep"}, 300, t0).recovered);
  auto small = hub::channel_history::restored(2, 1h, {7, "ep"}, kept, t0);
  CHECK(small.size(t0) == 2);
  CHECK(offsets(small.recover({5, "ep"}, 300, t0).publications) == std::vector<uint64_t>{6, 7});
  // A top past the newest kept one (removed since): nothing is kept.
  auto behind = hub::channel_history::restored(10, 1h, {9, "ep"}, kept, t0);
  CHECK(behind.size(t0) == 0);
  CHECK(behind.top().offset == 9);
}
