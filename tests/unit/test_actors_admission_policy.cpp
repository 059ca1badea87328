// The limit guard's arithmetic (CONTRACT section 4) without actors: the order of the
// checks, which refusals carry Retry-After, the accept token bucket, and the counts of
// slots per user, per IP, per shard and in all.
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "wsvisor/admission_policy.hpp"

using namespace std::chrono_literals;
using wsvisor::admission_policy;
using wsvisor::admission_request;
using wsvisor::reject_reason;
using wsvisor::settings;
using wsvisor::steady_time;

namespace {

// A base time far from the clock's epoch, as steady_clock::now() would give.
const steady_time t0 = steady_time{} + 1000s;

// Limits that no test trips over unless it means to.
settings roomy() {
  settings s;
  s.limits.max_connections = 1000;
  s.limits.soft_connections = 900;
  s.limits.max_per_user = 1000;
  s.limits.max_per_ip = 1000;
  s.limits.accept_rate = 1000;
  s.limits.accept_burst = 1000;
  return s;
}

admission_request anyone(std::string ip = "192.0.2.1", std::string user = "") {
  admission_request r;
  r.ip = std::move(ip);
  r.user = std::move(user);
  return r;
}

std::string reason_of(const admission_policy::verdict& v) {
  return v.admitted ? "admitted" : wsvisor::to_string(v.reason);
}

// Decides with the tree up and no drain.
std::string decide(admission_policy& policy, const admission_request& r, steady_time now = t0) {
  return reason_of(policy.decide(r, now, true, false));
}

// Fills the token bucket's burst so that the next attempt is rate limited.
void empty_bucket(admission_policy& policy, steady_time now) {
  admission_request bad = anyone();
  bad.identity_missing = true;  // refused (unauthorized), but it takes a token
  for (int i = 0; i < 10000; ++i)
    if (reason_of(policy.decide(bad, now, true, false)) == "rate_limited") return;
  FAIL("the token bucket never emptied");
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Order: a request failing two checks gets the earlier reason.

TEST_CASE("order 1: starting before draining") {
  admission_policy policy(roomy(), 1);
  const auto v = policy.decide(anyone(), t0, false, true);
  CHECK(reason_of(v) == "starting");
  CHECK(v.retry_after);
}

TEST_CASE("order 2: draining before rate_limited") {
  auto s = roomy();
  s.limits.accept_burst = 1;
  s.limits.accept_rate = 1;
  admission_policy policy(s, 1);
  empty_bucket(policy, t0);
  const auto v = policy.decide(anyone(), t0, true, true);
  CHECK(reason_of(v) == "draining");
  CHECK(v.retry_after);
}

TEST_CASE("order 3: rate_limited before forbidden_origin") {
  auto s = roomy();
  s.limits.accept_burst = 1;
  s.limits.accept_rate = 1;
  s.server.allowed_origins = {"https://good.example"};
  admission_policy policy(s, 1);
  empty_bucket(policy, t0);
  auto r = anyone();
  r.origin = "https://evil.example";
  const auto v = policy.decide(r, t0, true, false);
  CHECK(reason_of(v) == "rate_limited");
  CHECK(v.retry_after);
}

TEST_CASE("order 4: forbidden_origin before unauthorized") {
  auto s = roomy();
  s.server.allowed_origins = {"https://good.example"};
  admission_policy policy(s, 1);
  auto r = anyone();
  r.origin = "https://evil.example";
  r.identity_missing = true;
  const auto v = policy.decide(r, t0, true, false);
  CHECK(reason_of(v) == "forbidden_origin");
  CHECK_FALSE(v.retry_after);
}

TEST_CASE("order 5: unauthorized before ip_limit") {
  auto s = roomy();
  s.limits.max_per_ip = 1;
  admission_policy policy(s, 1);
  REQUIRE(decide(policy, anyone("192.0.2.9")) == "admitted");
  SUBCASE("identity missing") {
    auto r = anyone("192.0.2.9");
    r.identity_missing = true;
    const auto v = policy.decide(r, t0, true, false);
    CHECK(reason_of(v) == "unauthorized");
    CHECK_FALSE(v.retry_after);
  }
  SUBCASE("identity invalid") {
    auto r = anyone("192.0.2.9");
    r.identity_invalid = true;
    const auto v = policy.decide(r, t0, true, false);
    CHECK(reason_of(v) == "unauthorized");
    CHECK_FALSE(v.retry_after);
  }
}

TEST_CASE("order 6: ip_limit before user_limit") {
  auto s = roomy();
  s.limits.max_per_ip = 1;
  s.limits.max_per_user = 1;
  admission_policy policy(s, 1);
  REQUIRE(decide(policy, anyone("192.0.2.9", "alice")) == "admitted");
  const auto v = policy.decide(anyone("192.0.2.9", "alice"), t0, true, false);
  CHECK(reason_of(v) == "ip_limit");
  CHECK(v.retry_after);
}

TEST_CASE("order 7: user_limit before server_full") {
  auto s = roomy();
  s.limits.max_per_user = 1;
  s.limits.max_connections = 1;
  s.limits.soft_connections = 1;
  admission_policy policy(s, 1);
  REQUIRE(decide(policy, anyone("192.0.2.1", "alice")) == "admitted");
  const auto v = policy.decide(anyone("192.0.2.2", "alice"), t0, true, false);
  CHECK(reason_of(v) == "user_limit");
  CHECK(v.retry_after);
}

TEST_CASE("order 8: server_full") {
  auto s = roomy();
  s.limits.max_connections = 1;
  s.limits.soft_connections = 1;
  admission_policy policy(s, 1);
  REQUIRE(decide(policy, anyone("192.0.2.1", "alice")) == "admitted");
  const auto v = policy.decide(anyone("192.0.2.2", "bob"), t0, true, false);
  CHECK(reason_of(v) == "server_full");
  CHECK(v.retry_after);
}

TEST_CASE("every check failing at once: starting") {
  auto s = roomy();
  s.limits.max_connections = 1;
  s.limits.soft_connections = 1;
  s.limits.max_per_user = 1;
  s.limits.max_per_ip = 1;
  s.server.allowed_origins = {"https://good.example"};
  admission_policy policy(s, 1);
  REQUIRE(decide(policy, anyone("192.0.2.1", "alice")) == "admitted");
  auto r = anyone("192.0.2.1", "alice");
  r.origin = "https://evil.example";
  r.identity_invalid = true;
  CHECK(reason_of(policy.decide(r, t0, false, true)) == "starting");
  CHECK(reason_of(policy.decide(r, t0, true, true)) == "draining");
  CHECK(reason_of(policy.decide(r, t0, true, false)) == "forbidden_origin");
  r.origin.clear();
  CHECK(reason_of(policy.decide(r, t0, true, false)) == "unauthorized");
  r.identity_invalid = false;
  CHECK(reason_of(policy.decide(r, t0, true, false)) == "ip_limit");
  r.ip = "192.0.2.2";
  CHECK(reason_of(policy.decide(r, t0, true, false)) == "user_limit");
  r.user = "bob";
  CHECK(reason_of(policy.decide(r, t0, true, false)) == "server_full");
  CHECK(policy.total() == 1);
}

// ---------------------------------------------------------------------------------------
// Origins

TEST_CASE("origins: no header is allowed, an empty list allows any, else an exact match") {
  SUBCASE("empty allowed_origins: any origin") {
    admission_policy policy(roomy(), 1);
    auto r = anyone();
    r.origin = "https://anything.example";
    CHECK(decide(policy, r) == "admitted");
  }
  SUBCASE("a list") {
    auto s = roomy();
    s.server.allowed_origins = {"https://a.example", "http://b.example:8080"};
    admission_policy policy(s, 1);
    auto r = anyone();
    CHECK(decide(policy, r) == "admitted");  // no Origin header
    r.origin = "https://a.example";
    CHECK(decide(policy, r) == "admitted");
    r.origin = "http://b.example:8080";
    CHECK(decide(policy, r) == "admitted");
    for (const char* refused : {"http://a.example", "https://a.example:443", "https://a.example/",
                                "https://x.a.example", "http://b.example", "null"}) {
      CAPTURE(refused);
      r.origin = refused;
      CHECK(decide(policy, r) == "forbidden_origin");
    }
    CHECK(policy.total() == 3);
  }
}

// ---------------------------------------------------------------------------------------
// Token bucket

TEST_CASE("token bucket: the burst is admitted, then refused until it refills") {
  auto s = roomy();
  s.limits.accept_burst = 3;
  s.limits.accept_rate = 2;  // one token per 500 ms
  admission_policy policy(s, 1);
  for (int i = 0; i < 3; ++i) CHECK(decide(policy, anyone(), t0) == "admitted");
  CHECK(decide(policy, anyone(), t0) == "rate_limited");
  CHECK(decide(policy, anyone(), t0 + 100ms) == "rate_limited");
  CHECK(decide(policy, anyone(), t0 + 500ms) == "admitted");
  CHECK(decide(policy, anyone(), t0 + 500ms) == "rate_limited");
  CHECK(decide(policy, anyone(), t0 + 999ms) == "rate_limited");
  CHECK(decide(policy, anyone(), t0 + 1000ms) == "admitted");
  CHECK(policy.total() == 5);
}

TEST_CASE("token bucket: a long pause refills no more than the burst") {
  auto s = roomy();
  s.limits.accept_burst = 2;
  s.limits.accept_rate = 1;
  admission_policy policy(s, 1);
  CHECK(decide(policy, anyone(), t0) == "admitted");
  CHECK(decide(policy, anyone(), t0) == "admitted");
  CHECK(decide(policy, anyone(), t0) == "rate_limited");
  const auto later = t0 + 3600s;
  CHECK(decide(policy, anyone(), later) == "admitted");
  CHECK(decide(policy, anyone(), later) == "admitted");
  CHECK(decide(policy, anyone(), later) == "rate_limited");
}

TEST_CASE("token bucket: fractional rates accumulate") {
  auto s = roomy();
  s.limits.accept_burst = 1;
  s.limits.accept_rate = 0.5;  // one token per 2 s
  admission_policy policy(s, 1);
  CHECK(decide(policy, anyone(), t0) == "admitted");
  CHECK(decide(policy, anyone(), t0 + 1s) == "rate_limited");
  CHECK(decide(policy, anyone(), t0 + 1900ms) == "rate_limited");
  CHECK(decide(policy, anyone(), t0 + 2s) == "admitted");
}

TEST_CASE("token bucket: rate-limited attempts do not push the refill back") {
  auto s = roomy();
  s.limits.accept_burst = 1;
  s.limits.accept_rate = 1;
  admission_policy policy(s, 1);
  CHECK(decide(policy, anyone(), t0) == "admitted");
  // Hammering in between does not delay the next token past t0 + 1 s.
  for (int i = 1; i < 10; ++i)
    CHECK(decide(policy, anyone(), t0 + std::chrono::milliseconds(i * 100)) == "rate_limited");
  // (Within a microsecond: ten refills of 0.1 token add up to 0.9999999999999999 in
  // floating point.)
  CHECK(decide(policy, anyone(), t0 + 1s + 1us) == "admitted");
}

TEST_CASE("a decision again without charge_token takes no token") {
  auto s = roomy();
  s.limits.accept_burst = 1;
  s.limits.accept_rate = 1;
  admission_policy policy(s, 1);
  CHECK(decide(policy, anyone(), t0) == "admitted");
  // An upgrade that already paid and waited for a sweep is decided again for free ...
  CHECK(reason_of(policy.decide(anyone(), t0, true, false, false)) == "admitted");
  CHECK(reason_of(policy.decide(anyone(), t0, true, false, false)) == "admitted");
  // ... and still gets every other check.
  auto bad = anyone();
  bad.identity_invalid = true;
  CHECK(reason_of(policy.decide(bad, t0, true, false, false)) == "unauthorized");
  CHECK(reason_of(policy.decide(anyone(), t0, false, false, false)) == "starting");
  CHECK(reason_of(policy.decide(anyone(), t0, true, true, false)) == "draining");
  CHECK(decide(policy, anyone(), t0) == "rate_limited");
  CHECK(policy.total() == 3);
}

TEST_CASE("every attempt past starting/draining takes a token, admitted or not") {
  auto s = roomy();
  s.limits.accept_burst = 3;
  s.limits.accept_rate = 1;
  s.server.allowed_origins = {"https://good.example"};
  admission_policy policy(s, 1);
  auto bad_origin = anyone();
  bad_origin.origin = "https://evil.example";
  auto no_identity = anyone();
  no_identity.identity_missing = true;
  CHECK(decide(policy, bad_origin) == "forbidden_origin");
  CHECK(decide(policy, no_identity) == "unauthorized");
  CHECK(decide(policy, anyone()) == "admitted");
  CHECK(decide(policy, anyone()) == "rate_limited");
}

TEST_CASE("starting and draining take no token") {
  auto s = roomy();
  s.limits.accept_burst = 1;
  s.limits.accept_rate = 1;
  admission_policy policy(s, 1);
  for (int i = 0; i < 5; ++i) {
    CHECK(reason_of(policy.decide(anyone(), t0, false, false)) == "starting");
    CHECK(reason_of(policy.decide(anyone(), t0, true, true)) == "draining");
  }
  CHECK(decide(policy, anyone(), t0) == "admitted");
  CHECK(decide(policy, anyone(), t0) == "rate_limited");
}

// ---------------------------------------------------------------------------------------
// Caps and counts

TEST_CASE("max_connections: exactly that many are admitted, then server_full") {
  auto s = roomy();
  s.limits.max_connections = 5;
  s.limits.soft_connections = 4;
  s.limits.max_per_ip = 0;
  admission_policy policy(s, 2);
  for (int i = 0; i < 5; ++i) {
    CAPTURE(i);
    CHECK(decide(policy, anyone("192.0.2.1", "u" + std::to_string(i))) == "admitted");
  }
  CHECK(policy.total() == 5);
  for (int i = 0; i < 3; ++i) CHECK(decide(policy, anyone("192.0.2.1", "other")) == "server_full");
  CHECK(policy.total() == 5);
  CHECK(policy.user_count("other") == 0);
  CHECK(policy.ip_count("192.0.2.1") == 5);
  CHECK(policy.shard_count(0) + policy.shard_count(1) == 5);
}

TEST_CASE("above_soft: set once the total passes soft_connections") {
  auto s = roomy();
  s.limits.max_connections = 4;
  s.limits.soft_connections = 2;
  admission_policy policy(s, 1);
  CHECK_FALSE(policy.decide(anyone(), t0, true, false).above_soft);
  CHECK_FALSE(policy.decide(anyone(), t0, true, false).above_soft);
  CHECK(policy.decide(anyone(), t0, true, false).above_soft);
  CHECK(policy.decide(anyone(), t0, true, false).above_soft);
  CHECK(decide(policy, anyone()) == "server_full");
}

TEST_CASE("release frees exactly one slot and its per-user and per-IP counts") {
  auto s = roomy();
  s.limits.max_connections = 3;
  s.limits.soft_connections = 3;
  admission_policy policy(s, 1);
  REQUIRE(decide(policy, anyone("192.0.2.1", "alice")) == "admitted");
  REQUIRE(decide(policy, anyone("192.0.2.1", "alice")) == "admitted");
  REQUIRE(decide(policy, anyone("192.0.2.2", "bob")) == "admitted");
  CHECK(decide(policy, anyone("192.0.2.3", "carol")) == "server_full");
  CHECK(policy.user_count("alice") == 2);
  CHECK(policy.ip_count("192.0.2.1") == 2);

  policy.release(0, "alice", "192.0.2.1");
  CHECK(policy.total() == 2);
  CHECK(policy.shard_count(0) == 2);
  CHECK(policy.user_count("alice") == 1);
  CHECK(policy.ip_count("192.0.2.1") == 1);
  CHECK(policy.user_count("bob") == 1);
  CHECK(policy.ip_count("192.0.2.2") == 1);

  CHECK(decide(policy, anyone("192.0.2.3", "carol")) == "admitted");
  CHECK(decide(policy, anyone("192.0.2.4", "dave")) == "server_full");

  policy.release(0, "alice", "192.0.2.1");
  policy.release(0, "bob", "192.0.2.2");
  policy.release(0, "carol", "192.0.2.3");
  CHECK(policy.total() == 0);
  CHECK(policy.shard_count(0) == 0);
  CHECK(policy.user_count("alice") == 0);
  CHECK(policy.ip_count("192.0.2.1") == 0);
}

TEST_CASE("a release that matches nothing never drives a count below zero") {
  admission_policy policy(roomy(), 2);
  policy.release(0, "ghost", "192.0.2.66");
  policy.release(7, "ghost", "192.0.2.66");  // out-of-range shard: ignored, no throw
  CHECK(policy.total() == 0);
  CHECK(policy.shard_count(0) == 0);
  CHECK(policy.shard_count(1) == 0);
  CHECK(policy.user_count("ghost") == 0);
  CHECK(policy.ip_count("192.0.2.66") == 0);
  REQUIRE(decide(policy, anyone("192.0.2.1", "alice")) == "admitted");
  policy.release(0, "bob", "192.0.2.2");  // someone else's release
  CHECK(policy.user_count("alice") == 1);
  CHECK(policy.ip_count("192.0.2.1") == 1);
}

TEST_CASE("max_per_user: a user's cap never charges another user") {
  auto s = roomy();
  s.limits.max_per_user = 2;
  admission_policy policy(s, 1);
  CHECK(decide(policy, anyone("192.0.2.1", "alice")) == "admitted");
  CHECK(decide(policy, anyone("192.0.2.2", "alice")) == "admitted");
  CHECK(decide(policy, anyone("192.0.2.3", "alice")) == "user_limit");
  CHECK(policy.user_count("alice") == 2);
  // Same IP as alice's connections, another user: admitted up to its own cap.
  CHECK(decide(policy, anyone("192.0.2.1", "bob")) == "admitted");
  CHECK(decide(policy, anyone("192.0.2.1", "bob")) == "admitted");
  CHECK(decide(policy, anyone("192.0.2.1", "bob")) == "user_limit");
  CHECK(decide(policy, anyone("192.0.2.1", "alicia")) == "admitted");
  CHECK(policy.user_count("alice") == 2);
  CHECK(policy.user_count("bob") == 2);
  CHECK(policy.user_count("alicia") == 1);
  policy.release(0, "alice", "192.0.2.1");
  CHECK(decide(policy, anyone("192.0.2.9", "alice")) == "admitted");
  CHECK(decide(policy, anyone("192.0.2.9", "alice")) == "user_limit");
}

TEST_CASE("anonymous connections (user \"\") are not subject to max_per_user") {
  auto s = roomy();
  s.limits.max_per_user = 1;
  s.limits.max_per_ip = 0;
  admission_policy policy(s, 1);
  for (int i = 0; i < 10; ++i) CHECK(decide(policy, anyone("192.0.2.1", "")) == "admitted");
  CHECK(policy.user_count("") == 0);
  CHECK(policy.total() == 10);
  policy.release(0, "", "192.0.2.1");
  CHECK(policy.total() == 9);
}

TEST_CASE("max_per_ip caps one IP and no other") {
  auto s = roomy();
  s.limits.max_per_ip = 2;
  admission_policy policy(s, 1);
  CHECK(decide(policy, anyone("192.0.2.1", "a")) == "admitted");
  CHECK(decide(policy, anyone("192.0.2.1", "b")) == "admitted");
  CHECK(decide(policy, anyone("192.0.2.1", "c")) == "ip_limit");
  CHECK(decide(policy, anyone("192.0.2.1", "")) == "ip_limit");
  CHECK(decide(policy, anyone("192.0.2.10", "c")) == "admitted");
  CHECK(decide(policy, anyone("2001:db8::1", "d")) == "admitted");
  CHECK(policy.ip_count("192.0.2.1") == 2);
  policy.release(0, "a", "192.0.2.1");
  CHECK(decide(policy, anyone("192.0.2.1", "c")) == "admitted");
}

TEST_CASE("max_per_ip = 0 is off") {
  auto s = roomy();
  s.limits.max_per_ip = 0;
  s.limits.max_per_user = 0;
  admission_policy policy(s, 1);
  for (int i = 0; i < 50; ++i) CHECK(decide(policy, anyone("192.0.2.1")) == "admitted");
  CHECK(policy.ip_count("192.0.2.1") == 50);
}

TEST_CASE("the slot goes to the least loaded shard") {
  admission_policy policy(roomy(), 3);
  std::vector<unsigned> shards;
  for (int i = 0; i < 6; ++i) {
    const auto v = policy.decide(anyone(), t0, true, false);
    REQUIRE(v.admitted);
    shards.push_back(v.shard);
  }
  CHECK(policy.shard_count(0) == 2);
  CHECK(policy.shard_count(1) == 2);
  CHECK(policy.shard_count(2) == 2);
  // Free two slots of shard 1: the next two go there.
  policy.release(1, "", "192.0.2.1");
  policy.release(1, "", "192.0.2.1");
  CHECK(policy.decide(anyone(), t0, true, false).shard == 1);
  CHECK(policy.decide(anyone(), t0, true, false).shard == 1);
  // Balanced again: any shard, and the loads stay within one of each other.
  const auto next = policy.decide(anyone(), t0, true, false);
  REQUIRE(next.admitted);
  CHECK(next.shard < 3);
  CHECK(policy.shard_count(next.shard) == 3);
  CHECK(policy.total() == 7);
}

TEST_CASE("a shard count of 0 still has one shard") {
  admission_policy policy(roomy(), 0);
  const auto v = policy.decide(anyone(), t0, true, false);
  CHECK(v.admitted);
  CHECK(v.shard == 0);
  CHECK(policy.shard_count(0) == 1);
}

TEST_CASE("clear_counts and add rebuild the counts, and the caps apply to them") {
  auto s = roomy();
  s.limits.max_connections = 4;
  s.limits.soft_connections = 4;
  s.limits.max_per_user = 2;
  s.limits.max_per_ip = 3;
  admission_policy policy(s, 2);
  for (int i = 0; i < 4; ++i) REQUIRE(decide(policy, anyone("192.0.2.5", "")) != "rate_limited");

  policy.clear_counts();
  CHECK(policy.total() == 0);
  CHECK(policy.shard_count(0) == 0);
  CHECK(policy.shard_count(1) == 0);
  CHECK(policy.ip_count("192.0.2.5") == 0);

  // Rebuild from the connections that really exist.
  policy.add(0, "alice", "192.0.2.1");
  policy.add(0, "alice", "192.0.2.2");
  policy.add(1, "", "192.0.2.1");
  CHECK(policy.total() == 3);
  CHECK(policy.shard_count(0) == 2);
  CHECK(policy.shard_count(1) == 1);
  CHECK(policy.user_count("alice") == 2);
  CHECK(policy.user_count("") == 0);
  CHECK(policy.ip_count("192.0.2.1") == 2);
  CHECK(policy.ip_count("192.0.2.2") == 1);

  CHECK(decide(policy, anyone("192.0.2.3", "alice")) == "user_limit");
  const auto v = policy.decide(anyone("192.0.2.1", "bob"), t0, true, false);
  CHECK(reason_of(v) == "admitted");
  CHECK(v.shard == 1);  // the least loaded after the rebuild
  CHECK(decide(policy, anyone("192.0.2.1", "carol")) == "ip_limit");
  CHECK(decide(policy, anyone("192.0.2.9", "carol")) == "server_full");
}
