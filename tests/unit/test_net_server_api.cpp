// The gateway's server API bodies (net/src/server_api_protocol.hpp, CONTRACT 11.2 and
// 12.3): whom a call addresses, what /api/send sends, how /api/disconnect closes, and
// the 400's detail for each bad body.
#include <doctest/doctest.h>

#include <string>
#include <variant>

#include "../../net/src/server_api_protocol.hpp"

using namespace wsvisor;

namespace {

constexpr std::string_view kNode = "node-a";

std::string send_refused(std::string_view body) {
  const auto parsed = parse_api_send(body, kNode);
  REQUIRE(std::holds_alternative<std::string>(parsed));
  return std::get<std::string>(parsed);
}

}  // namespace

TEST_CASE("/api/send: text to a user, binary to this node's connection, another node's is gone") {
  auto text = std::get<api_send_request>(parse_api_send(R"({"user":"alice","data":"hi"})", kNode));
  CHECK(text.text);
  CHECK(text.payload == "hi");
  CHECK(text.target.selector.what == connection_selector::kind::user);
  CHECK(text.target.selector.users == std::vector<std::string>{"alice"});
  auto binary = std::get<api_send_request>(
      parse_api_send(R"({"connection":"node-a.7","b64data":"AAH/"})", kNode));
  CHECK_FALSE(binary.text);
  CHECK(binary.payload == std::string("\x00\x01\xff", 3));
  CHECK(binary.target.selector.id == 7);
  CHECK_FALSE(binary.target.gone);
  auto other =
      std::get<api_send_request>(parse_api_send(R"({"connection":"node-b.7","data":""})", kNode));
  CHECK(other.target.gone);
  CHECK(other.target.connection == "node-b.7");
}

TEST_CASE("/api/send: each bad body names the field") {
  CHECK(send_refused("{").rfind("the body is not JSON", 0) == 0);
  CHECK(send_refused("[]") == "the body must be a JSON object");
  CHECK(send_refused(R"({"data":"x"})") == R"(give exactly one of "connection", "user", "users")");
  CHECK(send_refused(R"({"user":"a","users":["b"],"data":"x"})") ==
        R"(give exactly one of "connection", "user", "users")");
  CHECK(send_refused(R"({"connection":"nodot","data":"x"})") ==
        R"("connection" must be a connection id, "<node_id>.<n>")");
  CHECK(send_refused(R"({"user":"","data":"x"})") == R"("user" must be a non-empty string)");
  CHECK(send_refused(R"({"users":["a",""],"data":"x"})") ==
        R"("users" must be an array of non-empty strings)");
  CHECK(send_refused(R"({"user":"a"})") ==
        R"(give exactly one of "data" (text) and "b64data" (binary))");
  CHECK(send_refused(R"({"user":"a","data":1})") == R"("data" must be a string)");
  CHECK(send_refused(R"({"user":"a","b64data":"A-=="})") == R"("b64data" is not valid base64)");
  std::string deep(100, '[');
  CHECK(send_refused(R"({"user":"a","data":)" + deep).rfind("the body is not JSON", 0) == 0);
}

TEST_CASE("/api/disconnect: 4003 by default, 4000-4999 and a reason of at most 123 bytes") {
  auto plain = std::get<api_disconnect_request>(parse_api_disconnect(R"({"user":"a"})", kNode));
  CHECK(plain.code == 4003);
  CHECK(plain.reason == "api disconnect");
  auto chosen = std::get<api_disconnect_request>(
      parse_api_disconnect(R"({"user":"a","code":4999,"reason":"bye"})", kNode));
  CHECK(chosen.code == 4999);
  CHECK(chosen.reason == "bye");
  for (const char* body : {R"({"user":"a","code":1005})", R"({"user":"a","code":70000})",
                           R"({"user":"a","code":"4001"})"})
    CHECK(std::get<std::string>(parse_api_disconnect(body, kNode)) ==
          R"("code" must be an integer from 4000 to 4999)");
  const std::string long_reason = R"({"user":"a","reason":")" + std::string(124, 'r') + R"("})";
  CHECK(std::get<std::string>(parse_api_disconnect(long_reason, kNode)) ==
        R"("reason" must be a string of at most 123 bytes)");
  CHECK(std::get<std::string>(parse_api_disconnect(R"({"users":["a"]})", kNode)) ==
        R"(give exactly one of "connection", "user")");
}
