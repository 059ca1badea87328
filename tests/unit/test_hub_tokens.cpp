// Centrifugo's connection and subscription tokens (CONTRACT 13.1): the claims read from a
// good token, and expired, forged, wrongly signed and malformed ones told apart (expired:
// error 109, the SDK fetches a new one; invalid: disconnect 3500).
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "jwt_maker.hpp"
#include "wsvisor/hub/tokens.hpp"

namespace hub = wsvisor::hub;
using hub::token_problem;

namespace {

constexpr std::string_view kSecret = "a-secret-of-at-least-32-bytes-for-tests";
constexpr long long kNow = 1700000000;

std::chrono::system_clock::time_point at(long long seconds) {
  return std::chrono::system_clock::time_point(std::chrono::seconds(seconds));
}

std::string token(std::string_view payload, std::string_view secret = kSecret) {
  return wsvisor::testing::signed_jwt(wsvisor::testing::hs256_header, payload, secret);
}

}  // namespace

TEST_CASE("connection token: every claim") {
  const auto t = token(
      R"({"sub":"alice","exp":1700000100,"info":{"name": "Alice", "score": 1.5},)"
      R"("channels":["news","#alice"],"subs":{"room":{"info":{"r":1},"data":{"welcome":true}},)"
      R"("bare":{}},"meta":{"plan":"pro"}})");
  const auto verified = hub::verify_connection_token(t, kSecret, at(kNow));
  CHECK(verified.problem == token_problem::none);
  CHECK(verified.why.empty());
  const auto& c = verified.claims;
  CHECK(c.user == "alice");
  REQUIRE(c.expires_at);
  CHECK(*c.expires_at == 1700000100);
  CHECK(c.info == R"({"name":"Alice","score":1.5})");
  CHECK(c.channels == std::vector<std::string>{"news", "#alice"});
  REQUIRE(c.subs.size() == 2);
  CHECK(c.subs[0].channel == "room");
  CHECK(c.subs[0].info == R"({"r":1})");
  CHECK(c.subs[0].data == R"({"welcome":true})");
  CHECK(c.subs[1].channel == "bare");
  CHECK(c.subs[1].info.empty());
  CHECK(c.meta == R"({"plan":"pro"})");
}

TEST_CASE("connection token: minimal, anonymous, no expiry") {
  auto verified = hub::verify_connection_token(token(R"({"sub":"bob"})"), kSecret, at(kNow));
  CHECK(verified.problem == token_problem::none);
  CHECK(verified.claims.user == "bob");
  CHECK_FALSE(verified.claims.expires_at);
  CHECK(verified.claims.info.empty());
  CHECK(verified.claims.channels.empty());

  // Centrifugo lets an empty (or missing) sub connect as anonymous.
  verified = hub::verify_connection_token(token(R"({"sub":""})"), kSecret, at(kNow));
  CHECK(verified.problem == token_problem::none);
  CHECK(verified.claims.user.empty());
  verified = hub::verify_connection_token(token(R"({})"), kSecret, at(kNow));
  CHECK(verified.problem == token_problem::none);
}

TEST_CASE("connection token: expire_at decides the connection's expiry, exp the token's") {
  auto verified = hub::verify_connection_token(
      token(R"({"sub":"a","exp":1700000100,"expire_at":1700009999})"), kSecret, at(kNow));
  CHECK(verified.problem == token_problem::none);
  REQUIRE(verified.claims.expires_at);
  CHECK(*verified.claims.expires_at == 1700009999);
  verified = hub::verify_connection_token(token(R"({"sub":"a","exp":1700000100,"expire_at":0})"),
                                          kSecret, at(kNow));
  CHECK(verified.problem == token_problem::none);
  CHECK_FALSE(verified.claims.expires_at);
  verified =
      hub::verify_connection_token(token(R"({"sub":"a","expire_at":"soon"})"), kSecret, at(kNow));
  CHECK(verified.problem == token_problem::invalid);
}

TEST_CASE("connection token: expired, bad signature, wrong alg, malformed") {
  const auto expired =
      hub::verify_connection_token(token(R"({"sub":"a","exp":1700000000})"), kSecret, at(kNow));
  CHECK(expired.problem == token_problem::expired);
  CHECK_FALSE(expired.why.empty());

  const auto forged =
      hub::verify_connection_token(token(R"({"sub":"a"})", "another-secret"), kSecret, at(kNow));
  CHECK(forged.problem == token_problem::invalid);
  CHECK(forged.why == "bad_signature");

  // An expired token with a bad signature is invalid, not expired: nothing in it counts.
  CHECK(hub::verify_connection_token(token(R"({"sub":"a","exp":1})", "another-secret"), kSecret,
                                     at(kNow))
            .problem == token_problem::invalid);

  for (const char* header : {R"({"alg":"none"})", R"({"alg":"HS512"})", R"({"typ":"JWT"})"}) {
    INFO("header: " << header);
    const auto t = wsvisor::testing::signed_jwt(header, R"({"sub":"a"})", kSecret);
    CHECK(hub::verify_connection_token(t, kSecret, at(kNow)).problem == token_problem::invalid);
  }

  for (const char* payload :
       {R"({"sub":5})", R"({"sub":"a","channels":"news"})", R"({"sub":"a","channels":[1]})",
        R"({"sub":"a","subs":[]})", R"({"sub":"a","subs":{"c":1}})", R"(["sub"])", "not json"}) {
    INFO("payload: " << payload);
    CHECK(hub::verify_connection_token(token(payload), kSecret, at(kNow)).problem ==
          token_problem::invalid);
  }
  for (const char* text : {"", "a.b", "a.b.c.d", "...", "not a token"}) {
    INFO("token: " << text);
    CHECK(hub::verify_connection_token(text, kSecret, at(kNow)).problem == token_problem::invalid);
  }
  // nbf in the future: not valid yet, so invalid (only exp makes "expired").
  CHECK(hub::verify_connection_token(token(R"({"sub":"a","nbf":1700000100})"), kSecret, at(kNow))
            .problem == token_problem::invalid);
}

TEST_CASE("subscription token: claims, and the channel claim is required") {
  auto verified = hub::verify_subscription_token(
      token(R"({"sub":"alice","channel":"chat:room","exp":1700000500,"info":{"role":"mod"}})"),
      kSecret, at(kNow));
  CHECK(verified.problem == token_problem::none);
  CHECK(verified.claims.user == "alice");
  CHECK(verified.claims.channel == "chat:room");
  REQUIRE(verified.claims.expires_at);
  CHECK(*verified.claims.expires_at == 1700000500);
  CHECK(verified.claims.info == R"({"role":"mod"})");

  verified = hub::verify_subscription_token(token(R"({"channel":"c"})"), kSecret, at(kNow));
  CHECK(verified.problem == token_problem::none);
  CHECK(verified.claims.user.empty());

  for (const char* payload : {R"({"sub":"alice"})", R"({"sub":"alice","channel":""})",
                              R"({"sub":"alice","channel":7})"}) {
    INFO("payload: " << payload);
    const auto refused = hub::verify_subscription_token(token(payload), kSecret, at(kNow));
    CHECK(refused.problem == token_problem::invalid);
    CHECK_FALSE(refused.why.empty());
  }

  CHECK(hub::verify_subscription_token(token(R"({"sub":"a","channel":"c","exp":1700000000})"),
                                       kSecret, at(kNow))
            .problem == token_problem::expired);
  CHECK(hub::verify_subscription_token(token(R"({"sub":"a","channel":"c"})", "wrong"), kSecret,
                                       at(kNow))
            .problem == token_problem::invalid);
}
