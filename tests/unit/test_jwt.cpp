// wsvisor_jwt's verify_hs256: the verified claims object, with no claim required (the
// rest of the JWT code is covered by test_net_auth through net's auth.hpp).
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "jwt_maker.hpp"
#include "wsvisor/jwt.hpp"

namespace {

constexpr std::string_view kSecret = "s3cret-for-tests";
const auto kNow = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));

std::string token(std::string_view payload, std::string_view secret = kSecret) {
  return wsvisor::testing::signed_jwt(wsvisor::testing::hs256_header, payload, secret);
}

}  // namespace

TEST_CASE("verify_hs256 returns the whole payload, sub or not") {
  const auto verified = wsvisor::verify_hs256(
      token(R"({"channel":"c","info":{"a":1},"exp":1700000001})"), kSecret, kNow);
  REQUIRE(verified.claims);
  CHECK(verified.problem == wsvisor::identity_problem::none);
  CHECK(verified.claims->at("channel").as_string() == "c");
  CHECK(verified.claims->at("info").as_object().at("a").as_int64() == 1);
  CHECK(wsvisor::verify_hs256(token("{}"), kSecret, kNow).claims);
}

TEST_CASE("verify_hs256 checks signature, alg, exp and nbf, and says why") {
  using wsvisor::identity_problem;
  const auto problem = [](const std::string& t) { return wsvisor::verify_hs256(t, kSecret, kNow); };
  CHECK(problem(token(R"({"exp":1700000000})")).problem == identity_problem::expired);
  CHECK_FALSE(problem(token(R"({"exp":1700000000})")).claims);
  CHECK(problem(token(R"({"nbf":1700000001})")).problem == identity_problem::not_yet_valid);
  CHECK(problem(token(R"({"exp":"never"})")).problem == identity_problem::malformed);
  CHECK(problem(token("{}", "other")).problem == identity_problem::bad_signature);
  CHECK(problem(wsvisor::testing::signed_jwt(R"({"alg":"none"})", "{}", kSecret)).problem ==
        identity_problem::bad_signature);
  CHECK(problem(token("[]")).problem == identity_problem::malformed);
  CHECK(problem("x.y").problem == identity_problem::malformed);
  // check_hs256_jwt still wants a sub.
  CHECK(wsvisor::check_hs256_jwt(token("{}"), kSecret, kNow).problem ==
        identity_problem::malformed);
  CHECK(*wsvisor::check_hs256_jwt(token(R"({"sub":"u"})"), kSecret, kNow).subject == "u");
}

TEST_CASE("jwt_numeric_date") {
  CHECK(*wsvisor::jwt_numeric_date(boost::json::value(5)) == 5.0);
  CHECK(*wsvisor::jwt_numeric_date(boost::json::value(5.5)) == 5.5);
  CHECK(*wsvisor::jwt_numeric_date(boost::json::value(uint64_t{7})) == 7.0);
  CHECK_FALSE(wsvisor::jwt_numeric_date(boost::json::value("5")));
  CHECK_FALSE(wsvisor::jwt_numeric_date(boost::json::value(nullptr)));
}
