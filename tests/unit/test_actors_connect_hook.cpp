// The gateway's connect hook (CONTRACT 12.1): what the backend is told, and what every
// kind of answer means, bad ones included.
#include <doctest/doctest.h>

#include <boost/json/parse.hpp>

#include <string>

#include "../../actors/src/connect_hook.hpp"

using wsvisor::connect_answer;
using wsvisor::upstream_outcome;
using wsvisor::upstream_result;

namespace {

wsvisor::admission_request request() {
  wsvisor::admission_request r;
  r.ip = "198.51.100.7";
  r.target = "/ws?room=7&x=y";
  r.subprotocols = {"demo.v2", "wsvisor.v1"};
  r.forwarded_headers = {{"cookie", "session=alice"}, {"user-agent", "test"}};
  return r;
}

upstream_result answer(unsigned status, std::string body,
                       upstream_outcome outcome = upstream_outcome::ok) {
  upstream_result r;
  r.outcome = outcome;
  r.status = status;
  r.body = std::move(body);
  return r;
}

connect_answer interpret(const upstream_result& r) {
  return wsvisor::interpret_connect_answer(r, request());
}

}  // namespace

TEST_CASE("the hook's request body carries the upgrade as CONTRACT 12.1 says") {
  auto r = request();
  const auto body = boost::json::parse(wsvisor::connect_hook_body(r, "node-1.42")).as_object();
  CHECK(body.at("connection").as_string() == "node-1.42");
  CHECK(body.at("ip").as_string() == "198.51.100.7");
  CHECK(body.at("user").is_null());
  CHECK(body.at("path").as_string() == "/ws");
  CHECK(body.at("query").as_string() == "room=7&x=y");
  CHECK(body.at("subprotocols").as_array().size() == 2);
  CHECK(body.at("headers").as_object().at("cookie").as_string() == "session=alice");
  r.user = "bob";
  r.target = "/ws";
  const auto with_user = boost::json::parse(wsvisor::connect_hook_body(r, "n.1")).as_object();
  CHECK(with_user.at("user").as_string() == "bob");
  CHECK(with_user.at("query").as_string() == "");
}

TEST_CASE("200 admits, with the backend's user, meta and subprotocol") {
  const auto a = interpret(answer(200, R"({"user":"alice","meta":{"plan": "pro", "n": [1, 2]},
                                            "subprotocol":"demo.v2"})"));
  REQUIRE(a.what == connect_answer::kind::admitted);
  CHECK(a.user == std::optional<std::string>("alice"));
  CHECK(a.meta == R"({"plan":"pro","n":[1,2]})");  // compact
  CHECK(a.subprotocol == "demo.v2");
  const auto empty = interpret(answer(200, ""));
  CHECK(empty.what == connect_answer::kind::admitted);
  CHECK_FALSE(empty.user);
  CHECK(interpret(answer(200, "{}")).what == connect_answer::kind::admitted);
}

TEST_CASE("401, 403 and 429 reject with their status, 429 keeps its Retry-After") {
  for (unsigned status : {401u, 403u, 429u}) {
    auto r = answer(status, "", upstream_outcome::rejected);
    r.retry_after = std::chrono::seconds(status == 429 ? 3 : 0);
    const auto a = interpret(r);
    CHECK(a.what == connect_answer::kind::rejected);
    CHECK(a.status == status);
  }
  auto busy = answer(429, "", upstream_outcome::rejected);
  busy.retry_after = std::chrono::seconds(3);
  CHECK(interpret(busy).retry_after == std::chrono::seconds(3));
}

TEST_CASE("anything else is upstream_unavailable") {
  CHECK(interpret(answer(404, "", upstream_outcome::rejected)).what ==
        connect_answer::kind::unavailable);
  CHECK(interpret(answer(400, "", upstream_outcome::rejected)).what ==
        connect_answer::kind::unavailable);
  CHECK(interpret(answer(503, "", upstream_outcome::error)).what ==
        connect_answer::kind::unavailable);
  CHECK(interpret(answer(0, "", upstream_outcome::timeout)).what ==
        connect_answer::kind::unavailable);
  CHECK(interpret(answer(0, "", upstream_outcome::breaker)).what ==
        connect_answer::kind::unavailable);
  CHECK(interpret(answer(201, "{}")).what == connect_answer::kind::unavailable);
}

TEST_CASE("bad answers are upstream_unavailable, never a crash nor a strange identity") {
  const auto bad = [](const std::string& body) {
    return interpret(answer(200, body)).what == connect_answer::kind::unavailable;
  };
  CHECK(bad("not json"));
  CHECK(bad("[1,2]"));
  CHECK(bad(R"({"user":42})"));
  CHECK(bad(R"({"user":""})"));
  CHECK(bad(R"({"user":")" + std::string(10 * 1024, 'u') + "\"}"));
  CHECK(bad("{\"user\":\"bad-\xff\xfe-utf8\"}"));
  CHECK(bad(R"({"user":"new\nline"})"));
  CHECK(bad(R"({"meta":")" + std::string(5000, 'm') + "\"}"));
  CHECK(bad(R"({"subprotocol":"not.offered"})"));
  CHECK(bad(R"({"subprotocol":7})"));
  CHECK(bad(std::string(100, '[') + std::string(100, ']')));  // deeper than 32
  CHECK_FALSE(bad(R"({"user":"café ☕"})"));
  CHECK_FALSE(bad(R"({"meta":")" + std::string(4000, 'm') + "\"}"));
  CHECK_FALSE(bad(R"({"user":null,"meta":null,"subprotocol":null})"));
}
