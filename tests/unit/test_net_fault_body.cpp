// POST /admin/faults bodies (net/src/fault_body.hpp, CONTRACT 8): every fault toward
// clients read with its parameters, and every bad body refused with an error that names
// the field, so that nothing half-read is ever applied.
#include <doctest/doctest.h>

#include <string>
#include <variant>

#include "../../net/src/fault_body.hpp"

using wsvisor::fault_request;
using wsvisor::parse_fault;

namespace {

fault_request parsed(const std::string& body) {
  auto result = parse_fault(body);
  if (auto* error = std::get_if<std::string>(&result)) FAIL_CHECK(body << ": " << *error);
  REQUIRE(std::holds_alternative<fault_request>(result));
  return std::get<fault_request>(result);
}

std::string refused(const std::string& body) {
  auto result = parse_fault(body);
  REQUIRE_MESSAGE(std::holds_alternative<std::string>(result), body);
  return std::get<std::string>(result);
}

}  // namespace

TEST_CASE("each fault toward clients is read with its parameters") {
  auto stall = parsed(R"({"action":"stall","target":"client","user":"u","ms":1500})");
  CHECK(stall.what == fault_request::action::stall);
  CHECK(stall.on == fault_request::target::client);
  CHECK(stall.user == "u");
  CHECK(stall.delay_ms == 1500);

  auto latency = parsed(R"({"action":"latency","target":"client","id":7,"ms":200,"jitter_ms":50})");
  CHECK(latency.id == 7u);
  CHECK(latency.delay_ms == 200);
  CHECK(latency.jitter_ms == 50);
  CHECK(parsed(R"({"action":"latency","target":"client","id":7,"ms":200})").jitter_ms == 0);

  auto drop = parsed(R"({"action":"drop","target":"client","share":0.5,"ratio":0.1})");
  CHECK(drop.share == doctest::Approx(0.5));
  CHECK(drop.ratio == doctest::Approx(0.1));
  CHECK(parsed(R"({"action":"drop","target":"client","user":"u","ratio":1})").ratio == 1.0);
  CHECK(parsed(R"({"action":"drop","target":"client","user":"u","ratio":0})").ratio == 0.0);

  auto close = parsed(R"({"action":"close","target":"client","connection":"n1.4","code":4000,)"
                      R"("reason":"bye"})");
  CHECK(close.connection == "n1.4");
  CHECK(close.code == 4000);
  CHECK(close.reason == "bye");

  CHECK(parsed(R"({"action":"reset","target":"client","user":"u"})").what ==
        fault_request::action::reset);
  CHECK(parsed(R"({"action":"zombie","target":"client","share":1})").share == 1.0);

  auto restart = parsed(R"({"action":"restart","target":"client","spread":"2s"})");
  CHECK(restart.spread == std::chrono::milliseconds(2000));
  CHECK_FALSE(restart.user);
  CHECK_FALSE(restart.share);
  CHECK(parsed(R"({"action":"restart","target":"client"})").spread.count() == 0);
  CHECK(parsed(R"({"action":"restart","target":"client","user":"u","spread":"250ms"})").spread ==
        std::chrono::milliseconds(250));
}

TEST_CASE("bad bodies are refused with the field named") {
  CHECK(refused("{") == "body must be a JSON object");
  CHECK(refused("[1]") == "body must be a JSON object");
  CHECK(refused(R"({"action":"melt","target":"client","user":"u"})").find("\"action\"") == 0);
  CHECK(refused(R"({"action":"stall","target":"moon","user":"u","ms":1})").find("\"target\"") == 0);
  CHECK(refused(R"({"action":"stall","target":"client","user":"u","ms":-1})").find("\"ms\"") == 0);
  CHECK(refused(R"({"action":"stall","target":"client","user":"u","ms":600001})").find("\"ms\"") ==
        0);
  CHECK(refused(R"({"action":"stall","target":"client","user":"u","ms":1.5})").find("\"ms\"") == 0);
  CHECK(refused(R"({"action":"stall","target":"client","user":"u"})").find("\"ms\" is required") ==
        0);
  CHECK(refused(R"({"action":"latency","target":"client","user":"u","ms":10,"jitter_ms":11})")
            .find("\"jitter_ms\"") == 0);
  CHECK(refused(R"({"action":"drop","target":"client","user":"u","ratio":2})") ==
        "\"ratio\" must be a number from 0 to 1");
  CHECK(refused(R"({"action":"drop","target":"client","user":"u"})") ==
        "\"ratio\" is required: a number from 0 to 1");
  CHECK(refused(R"({"action":"drop","target":"client","user":"u","ratio":"0.5"})")
            .find("\"ratio\"") == 0);
  CHECK(
      refused(R"({"action":"close","target":"client","user":"u","code":1006})").find("\"code\"") ==
      0);
  CHECK(refused(R"({"action":"close","target":"client","user":"u","code":4000,"reason":7})") ==
        "\"reason\" must be a string");
  CHECK(refused(R"({"action":"close","target":"client","user":"u","code":4000,"reason":")" +
                std::string(124, 'x') + "\"}")
            .find("\"reason\"") == 0);
  CHECK(refused(R"({"action":"restart","target":"client","spread":"later"})").find("\"spread\"") ==
        0);
  CHECK(refused(R"({"action":"restart","target":"client","spread":"11m"})") ==
        "\"spread\" must be at most 10m");
  // Selectors: one, and well formed (restart alone may go without).
  CHECK(refused(R"({"action":"zombie","target":"client"})").find("a client fault needs") == 0);
  CHECK(refused(R"({"action":"zombie","target":"client","share":0})").find("\"share\"") == 0);
  CHECK(refused(R"({"action":"zombie","target":"client","share":1.01})").find("\"share\"") == 0);
  CHECK(refused(R"({"action":"zombie","target":"client","id":0})").find("a client fault") == 0);
  CHECK(refused(R"({"action":"zombie","target":"client","user":""})").find("a client fault") == 0);
  CHECK(refused(R"({"action":"zombie","target":"client","user":"u","share":0.5})")
            .find("give only one") == 0);
  // Client actions need target client, and target client takes only them.
  CHECK(refused(R"({"action":"zombie","target":"connection","user":"u"})")
            .find("is a fault toward clients") != std::string::npos);
  CHECK(refused(R"({"action":"crash","target":"client","user":"u"})").find("target client") == 0);
}

TEST_CASE("the v1 faults read as before") {
  auto crash = parsed(R"({"action":"crash","target":"connection","user":"u","id":3})");
  CHECK(crash.user == "u");  // user wins over id, as in v1
  CHECK(parsed(R"({"action":"delay","target":"connection","id":3,"ms":5})").delay_ms == 5);
  CHECK(parsed(R"({"action":"clear"})").what == fault_request::action::clear);
  CHECK(parsed(R"({"action":"crash","target":"shard","index":1})").shard_index == 1);
  CHECK(refused(R"({"action":"poison","target":"janitor"})") ==
        "only \"crash\" applies to janitor");
}
