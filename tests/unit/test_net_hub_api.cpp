// The pure parts of the hub API (net/src/hub_api.hpp, CONTRACT 13.6): request bodies,
// the two error modes and Centrifugo's mapping of its codes to HTTP statuses, batch
// parsing and the JSON of every answer, as docs/server/server_api.md of
// centrifugal/centrifugal.dev shows them.
#include <doctest/doctest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <string>
#include <variant>
#include <vector>

#include "../../net/src/hub_api.hpp"

namespace json = boost::json;
using wsvisor::hub_api_reply;
using wsvisor::hub_batch_command;

namespace {

json::value parsed(const std::string& text) {
  return json::parse(text);
}

hub_api_reply ok(json::object result) {
  hub_api_reply reply;
  reply.result = std::move(result);
  return reply;
}

std::vector<hub_batch_command> commands_of(const std::string& body) {
  auto batch = wsvisor::parse_hub_batch(json::parse(body).as_object());
  REQUIRE(std::holds_alternative<std::vector<hub_batch_command>>(batch));
  return std::get<std::vector<hub_batch_command>>(batch);
}

hub_api_reply refusal_of(const std::string& body) {
  auto batch = wsvisor::parse_hub_batch(json::parse(body).as_object());
  REQUIRE(std::holds_alternative<hub_api_reply>(batch));
  return std::get<hub_api_reply>(batch);
}

}  // namespace

TEST_CASE("transport error mode: Centrifugo's MapErrorToHTTPCode") {
  using wsvisor::hub_error_http_status;
  CHECK(hub_error_http_status(100) == 500);  // internal
  CHECK(hub_error_http_status(102) == 404);  // unknown channel
  CHECK(hub_error_http_status(104) == 404);  // not found
  CHECK(hub_error_http_status(107) == 400);  // bad request
  CHECK(hub_error_http_status(108) == 400);  // not available
  CHECK(hub_error_http_status(112) == 416);  // unrecoverable position
  CHECK(hub_error_http_status(113) == 409);  // conflict
  // Every other code is an internal error there, even the client protocol's own.
  for (uint32_t other : {101u, 103u, 105u, 106u, 109u, 110u, 111u, 0u, 1000u}) {
    CAPTURE(other);
    CHECK(hub_error_http_status(other) == 500);
  }
}

TEST_CASE("the transport mode is asked for with X-Centrifugo-Error-Mode: transport") {
  using wsvisor::hub_transport_error_mode;
  CHECK(hub_transport_error_mode("transport"));
  CHECK_FALSE(hub_transport_error_mode(std::nullopt));
  // Centrifugo compares the value exactly.
  for (const char* other : {"", "Transport", "TRANSPORT", "transport ", "default", "json"}) {
    CAPTURE(other);
    CHECK_FALSE(hub_transport_error_mode(std::string_view(other)));
  }
}

TEST_CASE("Centrifugo's error messages") {
  CHECK(wsvisor::hub_error_message(100) == "internal server error");
  CHECK(wsvisor::hub_error_message(102) == "unknown channel");
  CHECK(wsvisor::hub_error_message(104) == "not found");
  CHECK(wsvisor::hub_error_message(107) == "bad request");
  CHECK(wsvisor::hub_error_message(108) == "not available");
  CHECK(wsvisor::hub_error_message(112) == "unrecoverable position");
  CHECK(wsvisor::hub_error_message(4000) == "");
  const auto defaulted = wsvisor::hub_error(102);
  CHECK(defaulted.error == 102);
  CHECK(defaulted.message == "unknown channel");
  CHECK(wsvisor::hub_error(107, "\"channel\" required").message == "\"channel\" required");
}

TEST_CASE("a request body is a JSON object, else 107") {
  using wsvisor::hub_request_body;
  auto good = hub_request_body(R"({"channel":"chat:x","data":{"text":"hi"}})");
  REQUIRE(std::holds_alternative<json::object>(good));
  CHECK(std::get<json::object>(good).at("channel") == "chat:x");
  CHECK(std::holds_alternative<json::object>(hub_request_body("{}")));
  CHECK(std::holds_alternative<json::object>(hub_request_body(" { } \n")));
  for (const char* bad : {"", "not json", "{", R"({"a":1} x)", "[]", "[{}]", "\"text\"", "42",
                          "null", "true", "{\"a\":\"\xff\"}"}) {
    CAPTURE(bad);
    auto answer = hub_request_body(bad);
    REQUIRE(std::holds_alternative<hub_api_reply>(answer));
    CHECK(std::get<hub_api_reply>(answer).error == 107);
    CHECK(std::get<hub_api_reply>(answer).message == "bad request");
  }
  // Publication data may nest, but not without bound.
  const std::string deep_ok = "{\"a\":" + std::string(60, '[') + std::string(60, ']') + "}";
  CHECK(std::holds_alternative<json::object>(hub_request_body(deep_ok)));
  const std::string too_deep = "{\"a\":" + std::string(500, '[') + std::string(500, ']') + "}";
  CHECK(std::holds_alternative<hub_api_reply>(hub_request_body(too_deep)));
}

TEST_CASE("a method's answer: result, or the error in the chosen mode") {
  using wsvisor::hub_method_answer;
  const auto published = ok(json::object{{"offset", 1}, {"epoch", "abcd"}});
  for (bool transport : {false, true}) {
    const auto answer = hub_method_answer(published, transport);
    CHECK(answer.status == 200);
    CHECK(parsed(answer.body) == parsed(R"({"result":{"offset":1,"epoch":"abcd"}})"));
  }
  CHECK(parsed(hub_method_answer(ok({}), false).body) == parsed(R"({"result":{}})"));

  const auto unknown = wsvisor::hub_error(102);
  const auto by_default = hub_method_answer(unknown, false);
  CHECK(by_default.status == 200);
  CHECK(parsed(by_default.body) == parsed(R"({"error":{"code":102,"message":"unknown channel"}})"));
  // The transport mode: the status, and the error object itself (Centrifugo's example:
  // 400 with {"code":107,"message":"bad request"}).
  const auto transport = hub_method_answer(unknown, true);
  CHECK(transport.status == 404);
  CHECK(parsed(transport.body) == parsed(R"({"code":102,"message":"unknown channel"})"));
  const auto bad = hub_method_answer(wsvisor::hub_error(107), true);
  CHECK(bad.status == 400);
  CHECK(parsed(bad.body) == parsed(R"({"code":107,"message":"bad request"})"));
  // An error from the actors without a message gets Centrifugo's.
  hub_api_reply bare;
  bare.error = 108;
  CHECK(parsed(hub_method_answer(bare, false).body) ==
        parsed(R"({"error":{"code":108,"message":"not available"}})"));
}

TEST_CASE("a result keeps the backend's numbers as they came") {
  const auto data = parsed(R"({"x":0.1,"big":12345678901234567,"neg":-3,"e":1.5e-7})");
  const auto answer = wsvisor::hub_method_answer(ok(json::object{{"data", data}}), false);
  CHECK(parsed(answer.body).at("result").at("data") == data);
}

TEST_CASE("batch: each command names one method and gives it an object") {
  const auto commands = commands_of(R"({"commands":[
      {"publish":{"channel":"a","data":{}}},
      {"broadcast":{"channels":["a","b"],"data":1}},
      {"history":{"channel":"a","limit":2}},
      {"info":{}},
      {"nope":{}},
      {},
      5,
      {"publish":{"channel":"a"},"broadcast":{"channels":[]}},
      {"presence":"chat"},
      {"channels":{},"id":7}
    ],"parallel":true})");
  REQUIRE(commands.size() == 10);
  CHECK(commands[0].method == "publish");
  CHECK_FALSE(commands[0].refused);
  CHECK(commands[0].params == parsed(R"({"channel":"a","data":{}})").as_object());
  CHECK(commands[1].method == "broadcast");
  CHECK_FALSE(commands[1].refused);
  CHECK(commands[2].method == "history");
  CHECK(commands[2].params.at("limit") == 2);
  CHECK(commands[3].method == "info");
  CHECK_FALSE(commands[3].refused);
  // No method named: Centrifugo's batch answers 104 (not found).
  REQUIRE(commands[4].refused);
  CHECK(commands[4].refused->error == 104);
  REQUIRE(commands[5].refused);
  CHECK(commands[5].refused->error == 104);
  // Not an object, two methods, a request that is not an object: 107.
  REQUIRE(commands[6].refused);
  CHECK(commands[6].refused->error == 107);
  REQUIRE(commands[7].refused);
  CHECK(commands[7].refused->error == 107);
  REQUIRE(commands[8].refused);
  CHECK(commands[8].refused->error == 107);
  // Keys that are no method are ignored, as a protobuf decoder ignores unknown fields.
  CHECK(commands[9].method == "channels");
  CHECK_FALSE(commands[9].refused);
}

TEST_CASE("batch: every method of hub_call is a command, batch itself is not") {
  for (const auto& method : wsvisor::hub_api_methods()) {
    CAPTURE(method);
    const auto commands = commands_of("{\"commands\":[{\"" + method + "\":{}}]}");
    REQUIRE(commands.size() == 1);
    CHECK(commands[0].method == method);
    CHECK_FALSE(commands[0].refused);
  }
  CHECK(wsvisor::hub_api_methods().size() == 12);
  const auto nested = commands_of(R"({"commands":[{"batch":{"commands":[]}}]})");
  REQUIRE(nested[0].refused);
  CHECK(nested[0].refused->error == 104);
}

TEST_CASE("batch: the whole request refused, or no commands") {
  CHECK(commands_of("{}").empty());
  CHECK(commands_of(R"({"commands":[]})").empty());
  CHECK(commands_of(R"({"commands":null})").empty());
  CHECK(commands_of(R"({"commands":[],"parallel":false})").empty());
  CHECK(refusal_of(R"({"commands":{}})").error == 107);
  CHECK(refusal_of(R"({"commands":"publish"})").error == 107);
  CHECK(refusal_of(R"({"commands":[],"parallel":"yes"})").error == 107);
  std::string many = "{\"commands\":[";
  for (std::size_t i = 0; i < wsvisor::kHubBatchMaxCommands; ++i)
    many += std::string(i ? "," : "") + "{\"info\":{}}";
  CHECK(commands_of(many + "]}").size() == wsvisor::kHubBatchMaxCommands);
  CHECK(refusal_of(many + ",{\"info\":{}}]}").error == 107);
}

TEST_CASE("batch replies: Centrifugo's Reply, in order, always 200") {
  json::array replies;
  replies.push_back(wsvisor::hub_batch_reply("publish", ok({})));
  replies.push_back(wsvisor::hub_batch_reply("publish", wsvisor::hub_error(102)));
  replies.push_back(
      wsvisor::hub_batch_reply("history", ok(json::object{{"offset", 4}, {"epoch", "qFhv"}})));
  const auto answer = wsvisor::hub_batch_answer(replies);
  CHECK(answer.status == 200);
  // The doc's example, plus a history reply.
  CHECK(parsed(answer.body) == parsed(R"({"replies":[
      {"publish":{}},
      {"error":{"code":102,"message":"unknown channel"}},
      {"history":{"offset":4,"epoch":"qFhv"}}]})"));
  CHECK(parsed(wsvisor::hub_batch_answer({}).body) == parsed(R"({"replies":[]})"));
}
