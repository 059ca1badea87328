// Centrifugo's JSON client protocol (CONTRACT 13): every command parse_frame knows, the
// batching of several commands in one frame, everything malformed that must close the
// connection (never crash, never recurse on the input), and the exact bytes of the
// replies and pushes, each of which must parse back as JSON.
#include <doctest/doctest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "wsvisor/hub/protocol.hpp"

namespace hub = wsvisor::hub;
using hub::command_kind;
using hub::parse_frame;

namespace {

// The one command of a frame that must parse.
hub::command only(std::string_view frame) {
  auto parsed = parse_frame(frame);
  INFO("frame: " << frame << " error: " << parsed.error);
  REQUIRE(parsed.error.empty());
  REQUIRE(parsed.commands.size() == 1);
  return parsed.commands.front();
}

// True when the frame is refused: an error and no commands.
bool refused(std::string_view frame) {
  auto parsed = parse_frame(frame);
  return !parsed.error.empty() && parsed.commands.empty();
}

// The encoder's output is one JSON object.
boost::json::object as_json(const std::string& text) {
  boost::system::error_code ec;
  auto value = boost::json::parse(text, ec);
  INFO("text: " << text);
  REQUIRE_FALSE(ec);
  REQUIRE(value.is_object());
  return value.as_object();
}

}  // namespace

TEST_CASE("connect: token, name, version, data and subs") {
  const auto c = only(
      R"({"id":1,"connect":{"token":"t.o.k","name":"js","version":"5.7.4","data":{"a": [1, 2]},)"
      R"("subs":{"news":{"recover":true,"offset":5,"epoch":"x"},"chat":{}}}})");
  CHECK(c.kind == command_kind::connect);
  CHECK(c.id == 1);
  CHECK(c.token == "t.o.k");
  CHECK(c.name == "js");
  CHECK(c.version == "5.7.4");
  CHECK(c.data == R"({"a":[1,2]})");
  REQUIRE(c.subs.size() == 2);
  CHECK(c.subs[0].first == "news");
  CHECK(c.subs[0].second.recover);
  CHECK(c.subs[0].second.since.offset == 5);
  CHECK(c.subs[0].second.since.epoch == "x");
  CHECK(c.subs[1].first == "chat");
  CHECK_FALSE(c.subs[1].second.recover);
}

TEST_CASE("connect with nothing in it, as the SDK sends it without a token") {
  const auto c = only(R"({"id":1,"connect":{}})");
  CHECK(c.kind == command_kind::connect);
  CHECK(c.token.empty());
  CHECK(c.data.empty());
  CHECK(c.subs.empty());
}

TEST_CASE("subscribe: every field, unknown ones ignored") {
  const auto c = only(
      R"({"id":2,"subscribe":{"channel":"c","token":"tk","recover":true,"offset":3,"epoch":"e",)"
      R"("recoverable":true,"positioned":true,"join_leave":true,"data":"hi","flag":7,)"
      R"("delta":"fossil","tf":{"op":"eq"}}})");
  CHECK(c.kind == command_kind::subscribe);
  CHECK(c.id == 2);
  CHECK(c.channel == "c");
  CHECK(c.token == "tk");
  CHECK(c.recover);
  CHECK(c.since.offset == 3);
  CHECK(c.since.epoch == "e");
  CHECK(c.recoverable);
  CHECK(c.positioned);
  CHECK(c.join_leave);
  CHECK(c.data == R"("hi")");
}

TEST_CASE("an offset up to 2^64 - 1") {
  const auto c = only(R"({"id":2,"subscribe":{"channel":"c","offset":18446744073709551615}})");
  CHECK(c.since.offset == 18446744073709551615ull);
}

TEST_CASE("unsubscribe, publish, presence, presence_stats") {
  auto c = only(R"({"id":3,"unsubscribe":{"channel":"c"}})");
  CHECK(c.kind == command_kind::unsubscribe);
  CHECK(c.channel == "c");

  c = only(R"({"id":4,"publish":{"channel":"c","data":{"text":"hello"}}})");
  CHECK(c.kind == command_kind::publish);
  CHECK(c.id == 4);
  CHECK(c.channel == "c");
  CHECK(c.data == R"({"text":"hello"})");

  c = only(R"({"id":5,"presence":{"channel":"c"}})");
  CHECK(c.kind == command_kind::presence);
  CHECK(c.channel == "c");

  c = only(R"({"id":6,"presence_stats":{"channel":"c"}})");
  CHECK(c.kind == command_kind::presence_stats);
  CHECK(c.channel == "c");
}

TEST_CASE("history: limit, since, reverse") {
  auto c = only(R"({"id":7,"history":{"channel":"c","limit":10,"since":{"offset":1,"epoch":"e"},)"
                R"("reverse":true}})");
  CHECK(c.kind == command_kind::history);
  CHECK(c.channel == "c");
  CHECK(c.limit == 10);
  CHECK(c.has_since);
  CHECK(c.since.offset == 1);
  CHECK(c.since.epoch == "e");
  CHECK(c.reverse);

  c = only(R"({"id":7,"history":{"channel":"c","limit":-1}})");
  CHECK(c.limit == -1);
  CHECK_FALSE(c.has_since);
  CHECK_FALSE(c.reverse);
}

TEST_CASE("rpc, send, refresh, sub_refresh") {
  auto c = only(R"({"id":8,"rpc":{"method":"m","data":[true,null]}})");
  CHECK(c.kind == command_kind::rpc);
  CHECK(c.method == "m");
  CHECK(c.data == "[true,null]");

  c = only(R"({"send":{"data":{"x":1}}})");
  CHECK(c.kind == command_kind::send);
  CHECK(c.id == 0);
  CHECK(c.data == R"({"x":1})");

  c = only(R"({"id":9,"refresh":{"token":"new"}})");
  CHECK(c.kind == command_kind::refresh);
  CHECK(c.token == "new");

  c = only(R"({"id":10,"sub_refresh":{"channel":"c","token":"sub"}})");
  CHECK(c.kind == command_kind::sub_refresh);
  CHECK(c.channel == "c");
  CHECK(c.token == "sub");
}

TEST_CASE("{} is the client's pong") {
  const auto c = only("{}");
  CHECK(c.kind == command_kind::ping);
  CHECK(c.id == 0);
}

TEST_CASE("data is kept as the client wrote it, only compacted") {
  // Boost.JSON would write 1.5E0 and round the big integer; the SDK's peer must see these.
  // (No '\n' inside: a newline ends a command, as in Centrifugo's JSON stream.)
  const auto c = only(
      "{\"id\":4,\"publish\":{\"channel\":\"c\",\"data\":{ \"x\" : 1.5 ,\r\t\"big\": "
      "123456789012345678901234567890, \"s\": \"a b\\\"  c\" }}}");
  CHECK(c.data == R"({"x":1.5,"big":123456789012345678901234567890,"s":"a b\"  c"})");
}

TEST_CASE("data: the last of repeated keys, and an escaped key, as Boost.JSON reads them") {
  auto c = only(R"({"id":4,"publish":{"channel":"c","data":1,"data":2}})");
  CHECK(c.data == "2");
  c = only(R"({"id":4,"publish":{"channel":"c","d\u0061ta":{"k":"v"}}})");
  CHECK(c.data == R"({"k":"v"})");
  c = only(R"({"id":4,"publish":{"channel":"c","data":null}})");
  CHECK(c.data.empty());
  // A "data" nested in another member is not the command's.
  c = only(R"({"id":4,"publish":{"channel":"c","other":{"data":1},"data":"top"}})");
  CHECK(c.data == R"("top")");
}

TEST_CASE("to_string names every kind") {
  CHECK(std::string(to_string(command_kind::connect)) == "connect");
  CHECK(std::string(to_string(command_kind::presence_stats)) == "presence_stats");
  CHECK(std::string(to_string(command_kind::sub_refresh)) == "sub_refresh");
  CHECK(std::string(to_string(command_kind::ping)) == "ping");
}

TEST_CASE("batched frames: several lines, trailing newline, empty lines, CRLF") {
  auto parsed = parse_frame(
      "{\"id\":1,\"connect\":{}}\n{\"id\":2,\"subscribe\":{\"channel\":\"a\"}}\n\n  \n"
      "{\"id\":3,\"subscribe\":{\"channel\":\"b\"}}\r\n{}\n");
  REQUIRE(parsed.error.empty());
  REQUIRE(parsed.commands.size() == 4);
  CHECK(parsed.commands[0].kind == command_kind::connect);
  CHECK(parsed.commands[1].channel == "a");
  CHECK(parsed.commands[2].channel == "b");
  CHECK(parsed.commands[3].kind == command_kind::ping);

  CHECK(parse_frame("").commands.empty());
  CHECK(parse_frame("").error.empty());
  CHECK(parse_frame("\n\n").error.empty());
}

TEST_CASE("one bad line refuses the whole frame, and says which line") {
  auto parsed = parse_frame("{\"id\":1,\"connect\":{}}\n{\"id\":2,\"subscribe\":{\"channel\":5}}");
  CHECK(parsed.commands.empty());
  CHECK(parsed.error.find("line 2") != std::string::npos);
  CHECK(parsed.error.find("channel") != std::string::npos);
}

TEST_CASE("malformed and truncated frames are refused") {
  for (const char* frame :
       {"not json", "{", "{\"id\":1,\"connect\":{}", "{\"id\":1,\"connect\":{}}}", "[]", "1",
        "\"connect\"", "null", "{\"id\":1,\"connect\":{}} trailing",
        "{\"id\":1,\"connect\":{\"token\":\"abc}}", "{'id':1}", "{\"id\":1,}",
        "{\"id\":1,\"connect\":{}}{\"id\":2,\"connect\":{}}", "\xff\xfe", "{\"id\":1 /*c*/}",
        "{\"id\":1,\"publish\":{\"channel\":\"c\",\"data\":\"\xc3\x28\"}}"}) {
    INFO("frame: " << frame);
    CHECK(refused(frame));
  }
}

TEST_CASE("fields of the wrong type are refused") {
  for (const char* frame : {
           R"({"id":2,"subscribe":{"channel":5}})",
           R"({"id":2,"subscribe":{"channel":"c","offset":"5"}})",
           R"({"id":2,"subscribe":{"channel":"c","offset":-1}})",
           R"({"id":2,"subscribe":{"channel":"c","offset":1.5}})",
           R"({"id":2,"subscribe":{"channel":"c","recover":"yes"}})",
           R"({"id":2,"subscribe":{"channel":"c","epoch":1}})",
           R"({"id":-1,"subscribe":{"channel":"c"}})",
           R"({"id":"1","subscribe":{"channel":"c"}})",
           R"({"id":1.5,"subscribe":{"channel":"c"}})",
           R"({"id":4294967296,"subscribe":{"channel":"c"}})",
           R"({"id":1,"connect":{"token":7}})",
           R"({"id":1,"connect":{"subs":[]}})",
           R"({"id":1,"connect":{"subs":{"c":1}}})",
           R"({"id":1,"connect":{"subs":{"c":{"offset":"1"}}}})",
           R"({"id":7,"history":{"channel":"c","limit":"10"}})",
           R"({"id":7,"history":{"channel":"c","since":5}})",
           R"({"id":7,"history":{"channel":"c","since":{"offset":-3}}})",
           R"({"id":7,"history":{"channel":"c","reverse":1}})",
           R"({"id":8,"rpc":{"method":["m"]}})",
           R"({"id":3,"unsubscribe":"c"})",
           R"({"id":3,"unsubscribe":[]})",
       }) {
    INFO("frame: " << frame);
    CHECK(refused(frame));
  }
}

TEST_CASE("command shapes Centrifugo does not know are refused") {
  // Several commands in one object, an id without a command, a command that needs a
  // reply without an id (or with id 0).
  CHECK(refused(R"({"id":1,"connect":{},"subscribe":{"channel":"c"}})"));
  CHECK(refused(R"({"id":5})"));
  CHECK(refused(R"({"id":5,"unknown":{}})"));
  CHECK(refused(R"({"subscribe":{"channel":"c"}})"));
  CHECK(refused(R"({"id":0,"publish":{"channel":"c","data":1}})"));
  CHECK(refused(R"({"connect":{}})"));
  // A null command member is absent (protobuf's JSON mapping): {} with nulls is a pong.
  CHECK(only(R"({"connect":null})").kind == command_kind::ping);
  // send needs no id, and may carry one.
  CHECK(only(R"({"id":3,"send":{"data":1}})").kind == command_kind::send);
}

TEST_CASE("100,000-deep JSON is refused quickly, without recursion") {
  const auto started = std::chrono::steady_clock::now();
  const std::string arrays(100000, '[');
  CHECK(refused(arrays + std::string(100000, ']')));
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
  CHECK(refused(objects));
  const std::string in_data =
      R"({"id":4,"publish":{"channel":"c","data":)" + arrays + std::string(100000, ']') + "}}";
  CHECK(refused(in_data));
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(2));
}

TEST_CASE("the depth limit is max_depth") {
  // The command object and its body are two levels; data adds its own.
  const std::string frame = R"({"id":4,"publish":{"channel":"c","data":[[[1]]]}})";
  CHECK(parse_frame(frame, 5).error.empty());
  CHECK_FALSE(parse_frame(frame, 4).error.empty());
}

TEST_CASE("a 10 MB frame parses, data intact") {
  std::string big(10 * 1024 * 1024, 'x');
  const std::string frame = R"({"id":4,"publish":{"channel":"c","data":")" + big + "\"}}";
  const auto started = std::chrono::steady_clock::now();
  const auto c = only(frame);
  CHECK(c.data.size() == big.size() + 2);
  CHECK(c.data.front() == '"');
  // And 100,000 small commands in one frame.
  std::string many;
  for (int i = 1; i <= 100000; ++i)
    many += R"({"id":)" + std::to_string(i) + R"(,"publish":{"channel":"c","data":1}})" + "\n";
  const auto parsed = parse_frame(many);
  CHECK(parsed.error.empty());
  CHECK(parsed.commands.size() == 100000);
  CHECK(parsed.commands.back().id == 100000);
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(10));
}

TEST_CASE("error codes: messages and temporary as Centrifugo's") {
  CHECK(hub::error_message(hub::error_code::internal) == "internal server error");
  CHECK(hub::error_message(hub::error_code::unknown_channel) == "unknown channel");
  CHECK(hub::error_message(hub::error_code::token_expired) == "token expired");
  CHECK(hub::error_message(hub::error_code::unrecoverable_position) == "unrecoverable position");
  CHECK(hub::error_temporary(hub::error_code::internal));
  CHECK(hub::error_temporary(hub::error_code::too_many_requests));
  CHECK_FALSE(hub::error_temporary(hub::error_code::permission_denied));
  CHECK(hub::disconnect_bad_request.code == 3501);
  CHECK(std::string(hub::disconnect_connection_limit.reason) == "connection limit");
  CHECK(hub::disconnect_insufficient_state.code == 3010);
}

TEST_CASE("reply_error") {
  CHECK(hub::reply_error(3, hub::error_code::permission_denied) ==
        R"({"id":3,"error":{"code":103,"message":"permission denied"}})");
  CHECK(hub::reply_error(3, hub::error_code::internal) ==
        R"({"id":3,"error":{"code":100,"message":"internal server error","temporary":true}})");
  CHECK(hub::reply_error(4, 4001, "custom \"quoted\"", false) ==
        R"({"id":4,"error":{"code":4001,"message":"custom \"quoted\""}})");
}

TEST_CASE("reply_connect") {
  hub::connect_result result;
  result.client = "c1";
  result.version = "0.1.0";
  result.ping = 25;
  result.pong = true;
  CHECK(hub::reply_connect(1, result) ==
        R"({"id":1,"connect":{"client":"c1","version":"0.1.0","ping":25,"pong":true}})");

  result.expires = true;
  result.ttl = 60;
  result.data = R"({"hello":1})";
  result.node = "n1";
  hub::subscribe_result sub;
  sub.recoverable = true;
  sub.epoch = "ep";
  sub.offset = 0;
  result.subs.emplace_back("#alice", sub);
  result.subs.emplace_back("plain", hub::subscribe_result{});
  CHECK(hub::reply_connect(1, result) ==
        R"({"id":1,"connect":{"client":"c1","version":"0.1.0","expires":true,"ttl":60,)"
        R"("data":{"hello":1},"subs":{"#alice":{"recoverable":true,"epoch":"ep","offset":0},)"
        R"("plain":{}},"ping":25,"pong":true,"node":"n1"}})");
  as_json(hub::reply_connect(1, result));
}

TEST_CASE("reply_subscribe: plain, recoverable, recovered with publications") {
  hub::subscribe_result result;
  CHECK(hub::reply_subscribe(2, result) == R"({"id":2,"subscribe":{}})");

  result.positioned = true;
  result.epoch = "e";
  result.offset = 7;
  CHECK(hub::reply_subscribe(2, result) ==
        R"({"id":2,"subscribe":{"recoverable":false,"epoch":"e","offset":7,"positioned":true}})");

  hub::publication first;
  first.offset = 8;
  first.data = R"({"n":8})";
  hub::publication second;
  second.offset = 9;
  second.data = R"("nine")";
  second.info = hub::client_info{"bob", "c2", R"({"name":"Bob"})", ""};
  result = {};
  result.recoverable = true;
  result.epoch = "e";
  result.offset = 9;
  result.was_recovering = true;
  result.recovered = true;
  result.publications = {&first, &second};
  result.expires = true;
  result.ttl = 30;
  result.data = "[1]";
  CHECK(hub::reply_subscribe(2, result) ==
        R"({"id":2,"subscribe":{"expires":true,"ttl":30,"recoverable":true,"epoch":"e",)"
        R"("publications":[{"data":{"n":8},"offset":8},{"data":"nine","info":{"user":"bob",)"
        R"("client":"c2","conn_info":{"name":"Bob"}},"offset":9}],"recovered":true,"offset":9,)"
        R"("data":[1],"was_recovering":true}})");
  const auto parsed = as_json(hub::reply_subscribe(2, result));
  CHECK(parsed.at("subscribe").as_object().at("publications").as_array().size() == 2);
}

TEST_CASE("reply_empty, reply_rpc, reply_refresh, reply_sub_refresh") {
  CHECK(hub::reply_empty(3, command_kind::unsubscribe) == R"({"id":3,"unsubscribe":{}})");
  CHECK(hub::reply_empty(4, command_kind::publish) == R"({"id":4,"publish":{}})");
  CHECK(hub::reply_empty(4, command_kind::send).empty());
  CHECK(hub::reply_empty(4, command_kind::ping).empty());
  CHECK(hub::reply_rpc(8, R"({"r":1})") == R"({"id":8,"rpc":{"data":{"r":1}}})");
  CHECK(hub::reply_rpc(8, "") == R"({"id":8,"rpc":{}})");
  CHECK(hub::reply_refresh(9, "c1", "0.1.0", true, 120) ==
        R"({"id":9,"refresh":{"client":"c1","version":"0.1.0","expires":true,"ttl":120}})");
  CHECK(hub::reply_refresh(9, "c1", "", false, 0) == R"({"id":9,"refresh":{"client":"c1"}})");
  CHECK(hub::reply_sub_refresh(10, true, 5) ==
        R"({"id":10,"sub_refresh":{"expires":true,"ttl":5}})");
  CHECK(hub::reply_sub_refresh(10, false, 0) == R"({"id":10,"sub_refresh":{}})");
}

TEST_CASE("reply_presence and reply_presence_stats") {
  CHECK(hub::reply_presence(5, {}) == R"({"id":5,"presence":{"presence":{}}})");
  const std::vector<hub::client_info> clients{{"alice", "c1", "", R"({"room":1})"},
                                              {"", "c2", "", ""}};
  CHECK(hub::reply_presence(5, clients) ==
        R"({"id":5,"presence":{"presence":{"c1":{"user":"alice","client":"c1",)"
        R"("chan_info":{"room":1}},"c2":{"user":"","client":"c2"}}}})");
  CHECK(hub::reply_presence_stats(6, 0, 0) ==
        R"({"id":6,"presence_stats":{"num_clients":0,"num_users":0}})");
  CHECK(hub::reply_presence_stats(6, 3, 2) ==
        R"({"id":6,"presence_stats":{"num_clients":3,"num_users":2}})");
}

TEST_CASE("reply_history always carries publications, epoch and offset") {
  CHECK(hub::reply_history(7, {}, {0, "e"}) ==
        R"({"id":7,"history":{"publications":[],"epoch":"e","offset":0}})");
  hub::publication pub;
  pub.offset = 4;
  pub.data = "1";
  pub.tags = {{"k", "v"}, {"k2", "v\n2"}};
  CHECK(hub::reply_history(7, {&pub}, {4, "e"}) ==
        R"({"id":7,"history":{"publications":[{"data":1,"offset":4,"tags":{"k":"v","k2":"v\n2"}}],)"
        R"("epoch":"e","offset":4}})");
}

TEST_CASE("pushes") {
  hub::publication pub;
  pub.data = R"({"text":"hi"})";
  CHECK(hub::push_publication("news", pub) ==
        R"({"push":{"channel":"news","pub":{"data":{"text":"hi"}}}})");
  pub.offset = 12;
  pub.info = hub::client_info{"u", "c", "", ""};
  CHECK(
      hub::push_publication("news", pub) ==
      R"({"push":{"channel":"news","pub":{"data":{"text":"hi"},"info":{"user":"u","client":"c"},"offset":12}}})");

  const hub::client_info info{"alice", "c1", R"({"n":"A"})", R"({"r":1})"};
  CHECK(hub::push_join("room", info) ==
        R"({"push":{"channel":"room","join":{"info":{"user":"alice","client":"c1",)"
        R"("conn_info":{"n":"A"},"chan_info":{"r":1}}}}})");
  CHECK(hub::push_leave("room", info) ==
        R"({"push":{"channel":"room","leave":{"info":{"user":"alice","client":"c1",)"
        R"("conn_info":{"n":"A"},"chan_info":{"r":1}}}}})");
  CHECK(hub::push_unsubscribe("room", 2000, "server unsubscribe") ==
        R"({"push":{"channel":"room","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}})");

  hub::subscribe_result sub;
  CHECK(hub::push_subscribe("#alice", sub) == R"({"push":{"channel":"#alice","subscribe":{}}})");
  sub.recoverable = true;
  sub.epoch = "e";
  sub.offset = 3;
  sub.data = R"({"w":1})";
  sub.expires = true;  // not a field of the Subscribe push
  CHECK(hub::push_subscribe("#alice", sub) ==
        R"({"push":{"channel":"#alice","subscribe":{"recoverable":true,"epoch":"e","offset":3,)"
        R"("data":{"w":1}}}})");

  CHECK(hub::push_message(R"({"m":1})") == R"({"push":{"message":{"data":{"m":1}}}})");
  CHECK(hub::push_disconnect(3001, "shutdown", true) ==
        R"({"push":{"disconnect":{"code":3001,"reason":"shutdown","reconnect":true}}})");
  CHECK(hub::push_disconnect(3501, "bad request", false) ==
        R"({"push":{"disconnect":{"code":3501,"reason":"bad request"}}})");
  CHECK(hub::ping_frame() == "{}");
}

TEST_CASE("strings from outside are escaped, and bytes that are not UTF-8 replaced") {
  const std::string nasty = std::string("q\"b\\s/\x01\x1f\t\r\n\b\f") + "\xc3\xa9" +
                            "\xe2\x82\xac" + "\xf0\x9f\x98\x80" + "\xff" + "\xc3" + "\xed\xa0\x80" +
                            "\xc0\xaf";
  const std::string out = hub::push_unsubscribe(nasty, 2000, nasty);
  const auto parsed = as_json(out);
  const auto& channel = parsed.at("push").as_object().at("channel").as_string();
  CHECK(std::string_view(channel.data(), channel.size()) ==
        std::string("q\"b\\s/\x01\x1f\t\r\n\b\f") + "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" +
            "\xef\xbf\xbd\xef\xbf\xbd" + "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" +
            "\xef\xbf\xbd\xef\xbf\xbd");
  CHECK(out.find("\\u0001\\u001f\\t\\r\\n\\b\\f") != std::string::npos);
  // A user id with a quote cannot break out of its string in a presence reply.
  as_json(hub::reply_presence(1, {{"a\",\"x\":\"", "c\"", "", ""}}));
}

TEST_CASE("what parse_frame gives, encoded again, is JSON") {
  const auto c = only(R"({"id":4,"publish":{"channel":"c","data":{"k":[1,{"z":null}]}}})");
  hub::publication pub;
  pub.offset = 1;
  pub.data = c.data;
  const auto parsed = as_json(hub::push_publication(c.channel, pub));
  CHECK(boost::json::serialize(parsed.at("push").as_object().at("pub").as_object().at("data")) ==
        R"({"k":[1,{"z":null}]})");
  CHECK(as_json(hub::push_message(c.data)).size() == 1);
}
