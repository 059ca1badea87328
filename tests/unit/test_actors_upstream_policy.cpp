// The arithmetic of calls to the backend (CONTRACT 11.1): what a reply means, when to
// retry, and the breaker, with explicit times.
#include <doctest/doctest.h>

#include <chrono>

#include "../../actors/src/upstream_policy.hpp"

using namespace std::chrono_literals;
using wsvisor::circuit_breaker;
using wsvisor::upstream_outcome;
using wsvisor::upstream_reply;

namespace {

upstream_reply status(unsigned code) {
  upstream_reply reply;
  reply.status = code;
  return reply;
}

upstream_reply failed(upstream_reply::outcome outcome) {
  upstream_reply reply;
  reply.result = outcome;
  return reply;
}

}  // namespace

TEST_CASE("classify: what is final, what is retried, what counts against the breaker") {
  using wsvisor::classify;
  CHECK(classify(status(200)).outcome == upstream_outcome::ok);
  CHECK(classify(status(204)).outcome == upstream_outcome::ok);
  for (unsigned code : {400u, 401u, 403u, 404u, 409u, 422u}) {
    const auto m = classify(status(code));
    CHECK(m.outcome == upstream_outcome::rejected);
    CHECK_FALSE(m.retryable);
    CHECK_FALSE(m.failure);  // the backend answered: it is well
  }
  for (unsigned code : {502u, 503u, 504u}) {
    const auto m = classify(status(code));
    CHECK(m.retryable);
    CHECK(m.failure);
  }
  CHECK(classify(status(429)).retryable);
  CHECK_FALSE(classify(status(429)).failure);
  CHECK_FALSE(classify(status(500)).retryable);
  CHECK(classify(status(500)).failure);
  CHECK(classify(failed(upstream_reply::outcome::connect_error)).retryable);
  CHECK(classify(failed(upstream_reply::outcome::timeout)).outcome == upstream_outcome::timeout);
  CHECK(classify(failed(upstream_reply::outcome::timeout)).retryable);
  CHECK_FALSE(classify(failed(upstream_reply::outcome::too_large)).retryable);
  CHECK(classify(failed(upstream_reply::outcome::too_large)).outcome == upstream_outcome::error);
  CHECK_FALSE(classify(failed(upstream_reply::outcome::malformed)).retryable);
  CHECK(classify(failed(upstream_reply::outcome::cancelled)).outcome ==
        upstream_outcome::cancelled);
  CHECK(classify(status(302)).outcome == upstream_outcome::error);
}

TEST_CASE("retry_delay: exponential with jitter, capped, and no more than `retries`") {
  using wsvisor::retry_delay;
  const wsvisor::retry_policy policy{3, 100ms, 1000ms};
  const auto error = failed(upstream_reply::outcome::connect_error);
  // Half fixed, half drawn: random 0 gives the lower bound, random 1 the full wait.
  CHECK(retry_delay(policy, error, 1, 0.0) == 50ms);
  CHECK(retry_delay(policy, error, 1, 1.0) == 100ms);
  CHECK(retry_delay(policy, error, 2, 1.0) == 200ms);
  CHECK(retry_delay(policy, error, 3, 1.0) == 400ms);
  CHECK_FALSE(retry_delay(policy, error, 4, 1.0));  // 3 retries spent
  const wsvisor::retry_policy long_one{10, 100ms, 1000ms};
  CHECK(retry_delay(long_one, error, 8, 1.0) == 1000ms);  // capped at backoff_max
  CHECK(retry_delay(long_one, error, 8, 0.5) == 750ms);
  CHECK_FALSE(retry_delay(policy, status(500), 1, 1.0));  // final
  CHECK_FALSE(retry_delay(policy, status(404), 1, 1.0));
  CHECK(retry_delay(policy, status(503), 1, 1.0) == 100ms);
}

TEST_CASE("retry_delay: a 429 waits its Retry-After, at most backoff_max") {
  using wsvisor::retry_delay;
  const wsvisor::retry_policy policy{2, 100ms, 2000ms};
  auto busy = status(429);
  busy.headers = {{"retry-after", "1"}};
  CHECK(retry_delay(policy, busy, 1, 0.0) == 1000ms);
  busy.headers = {{"retry-after", "30"}};
  CHECK(retry_delay(policy, busy, 1, 0.0) == 2000ms);
  busy.headers = {{"retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"}};  // a date: not used
  CHECK(retry_delay(policy, busy, 1, 1.0) == 100ms);
  busy.headers = {};
  CHECK(retry_delay(policy, busy, 1, 1.0) == 100ms);
}

TEST_CASE("the breaker opens after breaker_failures within the window") {
  circuit_breaker breaker(3, 10s, 5s);
  const auto t0 = wsvisor::upstream_clock::now();
  bool probe = false;
  breaker.record(t0, true, false);
  breaker.record(t0 + 1s, true, false);
  CHECK(breaker.allow(t0 + 2s, probe));
  CHECK(breaker.current() == circuit_breaker::state::closed);
  breaker.record(t0 + 3s, true, false);
  CHECK(breaker.current() == circuit_breaker::state::open);
  CHECK_FALSE(breaker.allow(t0 + 4s, probe));  // fails fast while open
  CHECK_FALSE(breaker.allow(t0 + 7s, probe));
}

TEST_CASE("failures older than the window do not count") {
  circuit_breaker breaker(3, 10s, 5s);
  const auto t0 = wsvisor::upstream_clock::now();
  breaker.record(t0, true, false);
  breaker.record(t0 + 1s, true, false);
  breaker.record(t0 + 12s, true, false);  // the first two have left the window
  CHECK(breaker.current() == circuit_breaker::state::closed);
  breaker.record(t0 + 12s, false, false);  // a success is not a failure
  breaker.record(t0 + 13s, true, false);
  CHECK(breaker.current() == circuit_breaker::state::closed);  // 2 within the window
  breaker.record(t0 + 14s, true, false);
  CHECK(breaker.current() == circuit_breaker::state::open);
}

TEST_CASE("after breaker_open one probe goes (half open): its result closes or reopens") {
  circuit_breaker breaker(1, 10s, 5s);
  const auto t0 = wsvisor::upstream_clock::now();
  breaker.record(t0, true, false);
  bool probe = false;
  CHECK_FALSE(breaker.allow(t0 + 4s, probe));
  CHECK(breaker.allow(t0 + 5s, probe));
  CHECK(probe);
  CHECK(breaker.current() == circuit_breaker::state::half_open);
  bool other = false;
  CHECK_FALSE(breaker.allow(t0 + 5s, other));  // only the probe until it answers
  SUBCASE("the probe fails: open again for breaker_open") {
    breaker.record(t0 + 6s, true, true);
    CHECK(breaker.current() == circuit_breaker::state::open);
    CHECK_FALSE(breaker.allow(t0 + 10s, probe));
    CHECK(breaker.allow(t0 + 11s, probe));
    CHECK(probe);
  }
  SUBCASE("the probe succeeds: closed, and the old failures are forgotten") {
    breaker.record(t0 + 6s, false, true);
    CHECK(breaker.current() == circuit_breaker::state::closed);
    CHECK(breaker.allow(t0 + 6s, probe));
    CHECK_FALSE(probe);
  }
  SUBCASE("the probe is abandoned (its connection closed): the next request probes") {
    breaker.abandon_probe();
    CHECK(breaker.current() == circuit_breaker::state::open);
    CHECK(breaker.allow(t0 + 6s, probe));
    CHECK(probe);
  }
}

TEST_CASE("results of requests sent before the breaker opened change nothing while open") {
  circuit_breaker breaker(1, 10s, 5s);
  const auto t0 = wsvisor::upstream_clock::now();
  breaker.record(t0, true, false);
  breaker.record(t0 + 1s, false, false);  // a late success of an older request
  CHECK(breaker.current() == circuit_breaker::state::open);
}
