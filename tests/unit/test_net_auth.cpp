// Identity and subprotocols (CONTRACT sections 2 and 5): base64url, HS256 JWTs (built
// here with OpenSSL's HMAC), where a token is looked for, identify() per auth.mode and
// the subprotocol the 101 selects. Malformed input of every kind must be refused, never
// crash.
#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "jwt_maker.hpp"
#include "wsvisor/auth.hpp"

namespace http = boost::beast::http;
using namespace std::chrono_literals;
using wsvisor::base64url_decode;
using wsvisor::base64url_encode;
using wsvisor::upgrade_request;
using wsvisor::verify_hs256_jwt;

namespace {

constexpr std::string_view kSecret = "s3cret-for-tests";

std::string make_jwt(std::string_view header_json, std::string_view payload_json,
                     std::string_view secret = kSecret) {
  return wsvisor::testing::signed_jwt(header_json, payload_json, secret);
}

constexpr std::string_view kHs256Header = wsvisor::testing::hs256_header;

std::string make_token(std::string_view payload_json, std::string_view secret = kSecret) {
  return make_jwt(kHs256Header, payload_json, secret);
}

// A fixed "now": 2023-11-14T22:13:20Z.
constexpr long long kNow = 1700000000;
std::chrono::system_clock::time_point at(long long seconds_since_epoch) {
  return std::chrono::system_clock::time_point(std::chrono::seconds(seconds_since_epoch));
}

long long wall_clock_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string payload(std::string_view sub, long long exp) {
  return R"({"sub":")" + std::string(sub) + R"(","exp":)" + std::to_string(exp) + "}";
}

upgrade_request request(std::string target = "/ws") {
  upgrade_request r{http::verb::get, target, 11};
  r.set(http::field::host, "localhost");
  return r;
}

wsvisor::auth_settings auth_mode(std::string mode) {
  wsvisor::auth_settings auth;
  auth.mode = std::move(mode);
  auth.jwt_secret = std::string(kSecret);
  return auth;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// base64url

TEST_CASE("base64url_encode matches RFC 4648 vectors, URL alphabet, no padding") {
  CHECK(base64url_encode("") == "");
  CHECK(base64url_encode("f") == "Zg");
  CHECK(base64url_encode("fo") == "Zm8");
  CHECK(base64url_encode("foo") == "Zm9v");
  CHECK(base64url_encode("foob") == "Zm9vYg");
  CHECK(base64url_encode("fooba") == "Zm9vYmE");
  CHECK(base64url_encode("foobar") == "Zm9vYmFy");
  // Standard base64 would say "+/8=": the URL alphabet uses '-' and '_'.
  CHECK(base64url_encode(std::string("\xfb\xff", 2)) == "-_8");
  CHECK(base64url_encode(std::string("\xff\xff\xff", 3)) == "____");
  CHECK(base64url_encode(std::string("\xfb\xef\xbe", 3)) == "----");
}

TEST_CASE("base64url_decode decodes the RFC 4648 vectors") {
  CHECK(base64url_decode("") == std::optional<std::string>(""));
  CHECK(base64url_decode("Zg") == std::optional<std::string>("f"));
  CHECK(base64url_decode("Zm8") == std::optional<std::string>("fo"));
  CHECK(base64url_decode("Zm9v") == std::optional<std::string>("foo"));
  CHECK(base64url_decode("Zm9vYg") == std::optional<std::string>("foob"));
  CHECK(base64url_decode("Zm9vYmE") == std::optional<std::string>("fooba"));
  CHECK(base64url_decode("Zm9vYmFy") == std::optional<std::string>("foobar"));
  CHECK(base64url_decode("-_8") == std::optional<std::string>(std::string("\xfb\xff", 2)));
}

TEST_CASE("base64url round trips every byte value and every length") {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  CHECK(base64url_decode(base64url_encode(all)) == std::optional<std::string>(all));
  for (std::size_t length = 0; length <= 40; ++length) {
    std::string bytes;
    for (std::size_t i = 0; i < length; ++i) bytes.push_back(static_cast<char>(255 - i * 7));
    const auto encoded = base64url_encode(bytes);
    CAPTURE(length);
    CHECK(encoded.find('=') == std::string::npos);
    CHECK(encoded.find('+') == std::string::npos);
    CHECK(encoded.find('/') == std::string::npos);
    CHECK(encoded.size() == (length * 4 + 2) / 3);
    CHECK(base64url_decode(encoded) == std::optional<std::string>(bytes));
  }
}

TEST_CASE("base64url_decode refuses characters outside the alphabet and dangling sextets") {
  CHECK_FALSE(base64url_decode("Zg==").has_value());  // padding is not base64url
  CHECK_FALSE(base64url_decode("Zm9v+g").has_value());
  CHECK_FALSE(base64url_decode("Zm9v/g").has_value());
  CHECK_FALSE(base64url_decode("Zm 9v").has_value());
  CHECK_FALSE(base64url_decode("Zm9v\n").has_value());
  CHECK_FALSE(base64url_decode("Zm.9v").has_value());
  CHECK_FALSE(base64url_decode(std::string("Zm\0v", 4)).has_value());
  CHECK_FALSE(base64url_decode("\xc3\xa9").has_value());
  // One character carries 6 bits: not a byte.
  CHECK_FALSE(base64url_decode("A").has_value());
  CHECK_FALSE(base64url_decode("Zm9vY").has_value());
}

// ---------------------------------------------------------------------------------------
// verify_hs256_jwt

TEST_CASE("a valid HS256 token yields its sub") {
  const auto token = make_token(payload("alice", kNow + 60));
  CHECK(verify_hs256_jwt(token, kSecret, at(kNow)) == std::optional<std::string>("alice"));
  // Other claims and header members do not matter.
  const auto rich = make_jwt(R"({"typ":"JWT","kid":"k1","alg":"HS256"})",
                             R"({"iss":"x","sub":"bob","iat":1,"exp":9999999999,"n":[1,2]})");
  CHECK(verify_hs256_jwt(rich, kSecret, at(kNow)) == std::optional<std::string>("bob"));
  // A sub with characters that need JSON escapes.
  const auto escaped = make_token(R"({"sub":"caf\u00e9 \"q\""})");
  CHECK(verify_hs256_jwt(escaped, kSecret, at(kNow)) ==
        std::optional<std::string>("caf\xc3\xa9 \"q\""));
}

TEST_CASE("a token without exp is accepted") {
  const auto token = make_token(R"({"sub":"alice"})");
  CHECK(verify_hs256_jwt(token, kSecret, at(kNow)) == std::optional<std::string>("alice"));
  // Far in the future (year 2185; 10x would overflow system_clock's nanoseconds).
  CHECK(verify_hs256_jwt(token, kSecret, at(kNow * 4)) == std::optional<std::string>("alice"));
}

TEST_CASE("exp is checked against the `now` passed in") {
  const auto token = make_token(payload("alice", kNow));
  CHECK(verify_hs256_jwt(token, kSecret, at(kNow - 1)) == std::optional<std::string>("alice"));
  CHECK_FALSE(verify_hs256_jwt(token, kSecret, at(kNow)).has_value());  // expired at exp
  CHECK_FALSE(verify_hs256_jwt(token, kSecret, at(kNow + 1)).has_value());
  CHECK_FALSE(verify_hs256_jwt(make_token(payload("alice", 0)), kSecret, at(kNow)).has_value());
  CHECK_FALSE(verify_hs256_jwt(make_token(payload("alice", -5)), kSecret, at(kNow)).has_value());
  // Fractional exp (NumericDate may be non-integer).
  const auto fractional = make_token(R"({"sub":"alice","exp":1700000000.5})");
  CHECK(verify_hs256_jwt(fractional, kSecret, at(kNow)) == std::optional<std::string>("alice"));
  CHECK_FALSE(verify_hs256_jwt(fractional, kSecret, at(kNow + 1)).has_value());
  // exp that is not a number is not a valid token.
  CHECK_FALSE(
      verify_hs256_jwt(make_token(R"({"sub":"alice","exp":"9999999999"})"), kSecret, at(kNow))
          .has_value());
  CHECK_FALSE(
      verify_hs256_jwt(make_token(R"({"sub":"alice","exp":null})"), kSecret, at(kNow)).has_value());
}

TEST_CASE("a wrong signature or a wrong secret is refused") {
  const auto token = make_token(payload("alice", kNow + 60));
  CHECK_FALSE(verify_hs256_jwt(token, "another-secret", at(kNow)).has_value());
  CHECK_FALSE(verify_hs256_jwt(token, "", at(kNow)).has_value());
  CHECK_FALSE(verify_hs256_jwt(make_token(payload("alice", kNow + 60), "other"), kSecret, at(kNow))
                  .has_value());

  // Flip one character of the signature.
  auto tampered = token;
  tampered.back() = tampered.back() == 'A' ? 'B' : 'A';
  CHECK_FALSE(verify_hs256_jwt(tampered, kSecret, at(kNow)).has_value());

  // Keep the signature, change the claims (privilege escalation attempt).
  const auto dot1 = token.find('.');
  const auto dot2 = token.find('.', dot1 + 1);
  const std::string forged = token.substr(0, dot1) + "." +
                             base64url_encode(payload("root", kNow + 60)) + token.substr(dot2);
  CHECK_FALSE(verify_hs256_jwt(forged, kSecret, at(kNow)).has_value());

  // A truncated signature and an empty one.
  CHECK_FALSE(verify_hs256_jwt(token.substr(0, token.size() - 4), kSecret, at(kNow)).has_value());
  CHECK_FALSE(verify_hs256_jwt(token.substr(0, dot2 + 1), kSecret, at(kNow)).has_value());
  // The signature with something appended.
  CHECK_FALSE(verify_hs256_jwt(token + "AAAA", kSecret, at(kNow)).has_value());
}

TEST_CASE("alg none and alg HS512 are refused") {
  const std::string claims = payload("alice", kNow + 60);
  // alg none, unsigned (empty signature) and "signed" with the HS256 key anyway.
  const std::string unsigned_token =
      base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." + base64url_encode(claims) + ".";
  CHECK_FALSE(verify_hs256_jwt(unsigned_token, kSecret, at(kNow)).has_value());
  CHECK_FALSE(
      verify_hs256_jwt(make_jwt(R"({"alg":"none"})", claims), kSecret, at(kNow)).has_value());
  CHECK_FALSE(
      verify_hs256_jwt(make_jwt(R"({"alg":"None"})", claims), kSecret, at(kNow)).has_value());
  // HS512 header (here with an HS256 MAC, which is what a confused verifier would accept).
  CHECK_FALSE(
      verify_hs256_jwt(make_jwt(R"({"alg":"HS512","typ":"JWT"})", claims), kSecret, at(kNow))
          .has_value());
  CHECK_FALSE(
      verify_hs256_jwt(make_jwt(R"({"alg":"hs256"})", claims), kSecret, at(kNow)).has_value());
  CHECK_FALSE(
      verify_hs256_jwt(make_jwt(R"({"typ":"JWT"})", claims), kSecret, at(kNow)).has_value());
  CHECK_FALSE(verify_hs256_jwt(make_jwt(R"({"alg":256})", claims), kSecret, at(kNow)).has_value());
}

TEST_CASE("malformed tokens are refused without crashing") {
  const auto good = make_token(payload("alice", kNow + 60));
  const auto now = at(kNow);
  SUBCASE("structure") {
    CHECK_FALSE(verify_hs256_jwt("", kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt("no-dots-at-all", kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt(".", kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt("..", kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt("...", kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt("a.b", kSecret, now).has_value());
    // Only the two dots, i.e. the first two parts of a good token.
    CHECK_FALSE(verify_hs256_jwt(good.substr(0, good.rfind('.')), kSecret, now).has_value());
    // Four parts (a JWE-like shape) and a trailing dot.
    CHECK_FALSE(verify_hs256_jwt(good + ".xyz", kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt(good + ".", kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt("." + good, kSecret, now).has_value());
    // Whitespace around an otherwise valid token.
    CHECK_FALSE(verify_hs256_jwt(" " + good, kSecret, now).has_value());
  }
  SUBCASE("bad base64url in a part") {
    const auto dot1 = good.find('.');
    const auto dot2 = good.find('.', dot1 + 1);
    CHECK_FALSE(verify_hs256_jwt("*" + good.substr(1), kSecret, now).has_value());
    auto bad_payload = good;
    bad_payload[dot1 + 1] = '+';
    CHECK_FALSE(verify_hs256_jwt(bad_payload, kSecret, now).has_value());
    auto bad_signature = good;
    bad_signature[dot2 + 1] = '/';
    CHECK_FALSE(verify_hs256_jwt(bad_signature, kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt(good + "=", kSecret, now).has_value());
  }
  SUBCASE("correctly signed but not JSON, or not an object") {
    CHECK_FALSE(verify_hs256_jwt(make_jwt("not json", payload("alice", kNow + 60)), kSecret, now)
                    .has_value());
    CHECK_FALSE(verify_hs256_jwt(make_jwt(kHs256Header, "not json"), kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt(make_jwt(kHs256Header, ""), kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt(make_jwt("", ""), kSecret, now).has_value());
    CHECK_FALSE(
        verify_hs256_jwt(make_jwt(kHs256Header, R"({"sub":"alice")"), kSecret, now).has_value());
    CHECK_FALSE(
        verify_hs256_jwt(make_jwt(kHs256Header, R"(["sub","alice"])"), kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt(make_jwt(kHs256Header, R"("alice")"), kSecret, now).has_value());
    CHECK_FALSE(
        verify_hs256_jwt(make_jwt(R"(["alg","HS256"])", payload("alice", kNow + 60)), kSecret, now)
            .has_value());
    CHECK_FALSE(
        verify_hs256_jwt(make_jwt(kHs256Header, std::string(5000, '[')), kSecret, now).has_value());
    // A raw control character inside a JSON string is not JSON.
    CHECK_FALSE(
        verify_hs256_jwt(make_jwt(kHs256Header, std::string("{\"sub\":\"a\0\"}", 12)), kSecret, now)
            .has_value());
    CHECK_FALSE(
        verify_hs256_jwt(make_jwt(kHs256Header, "\xff\xfe\x00\x01"), kSecret, now).has_value());
  }
  SUBCASE("sub missing, empty or not a string") {
    CHECK_FALSE(verify_hs256_jwt(make_token(R"({"exp":9999999999})"), kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt(make_token(R"({})"), kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt(make_token(R"({"sub":""})"), kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt(make_token(R"({"sub":42})"), kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt(make_token(R"({"sub":null})"), kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt(make_token(R"({"sub":["alice"]})"), kSecret, now).has_value());
    CHECK_FALSE(
        verify_hs256_jwt(make_token(R"({"sub":{"id":"alice"}})"), kSecret, now).has_value());
    CHECK_FALSE(verify_hs256_jwt(make_token(R"({"sub":true})"), kSecret, now).has_value());
  }
}

// ---------------------------------------------------------------------------------------
// find_token

TEST_CASE("find_token: Authorization: Bearer") {
  auto r = request();
  r.set(http::field::authorization, "Bearer abc.def.ghi");
  CHECK(wsvisor::find_token(r) == std::optional<std::string>("abc.def.ghi"));
}

TEST_CASE("find_token: a jwt.<token> subprotocol entry") {
  auto r = request();
  r.set(http::field::sec_websocket_protocol, "wsvisor.v1, jwt.abc.def.ghi");
  CHECK(wsvisor::find_token(r) == std::optional<std::string>("abc.def.ghi"));

  auto second_line = request();
  second_line.insert(http::field::sec_websocket_protocol, "chat");
  second_line.insert(http::field::sec_websocket_protocol, " jwt.xyz ");
  CHECK(wsvisor::find_token(second_line) == std::optional<std::string>("xyz"));
}

TEST_CASE("find_token: ?token=") {
  CHECK(wsvisor::find_token(request("/ws?token=abc.def.ghi")) ==
        std::optional<std::string>("abc.def.ghi"));
  CHECK(wsvisor::find_token(request("/ws?a=1&token=t2&b=2")) == std::optional<std::string>("t2"));
  CHECK(wsvisor::find_token(request("/ws?a=1&token=t3")) == std::optional<std::string>("t3"));
  CHECK_FALSE(wsvisor::find_token(request("/ws?mytoken=x")).has_value());
  CHECK_FALSE(wsvisor::find_token(request("/ws?tokens=x")).has_value());
  CHECK_FALSE(wsvisor::find_token(request("/ws?x=token=y")).value_or("") == "y");
  CHECK_FALSE(wsvisor::find_token(request("/ws?token")).has_value());
  CHECK_FALSE(wsvisor::find_token(request("/ws/token=x")).has_value());
}

TEST_CASE("find_token: nothing when no source carries a token") {
  CHECK_FALSE(wsvisor::find_token(request()).has_value());
  auto r = request("/ws?a=b");
  r.set(http::field::authorization, "Basic dXNlcjpwYXNz");
  r.set(http::field::sec_websocket_protocol, "wsvisor.v1, chat, jwt.");
  CHECK_FALSE(wsvisor::find_token(r).has_value());
  auto empty_bearer = request();
  empty_bearer.set(http::field::authorization, "Bearer ");
  CHECK_FALSE(wsvisor::find_token(empty_bearer).has_value());
}

TEST_CASE("find_token precedence: Bearer, then subprotocol, then query") {
  auto all = request("/ws?token=from-query");
  all.set(http::field::authorization, "Bearer from-header");
  all.set(http::field::sec_websocket_protocol, "jwt.from-protocol");
  CHECK(wsvisor::find_token(all) == std::optional<std::string>("from-header"));

  auto no_header = request("/ws?token=from-query");
  no_header.set(http::field::sec_websocket_protocol, "jwt.from-protocol");
  CHECK(wsvisor::find_token(no_header) == std::optional<std::string>("from-protocol"));

  auto basic_header = request("/ws?token=from-query");
  basic_header.set(http::field::authorization, "Basic abc");
  CHECK(wsvisor::find_token(basic_header) == std::optional<std::string>("from-query"));
}

// ---------------------------------------------------------------------------------------
// identify

TEST_CASE("identify, auth.mode = none: anonymous, never missing") {
  const auto auth = auth_mode("none");
  const auto who = wsvisor::identify(request(), auth, true);
  CHECK(who.user == "");
  CHECK_FALSE(who.missing);
  CHECK_FALSE(who.invalid);

  auto with_header = request("/ws?token=garbage");
  with_header.set("X-User-Id", "alice");
  with_header.set(http::field::authorization, "Bearer garbage");
  const auto still = wsvisor::identify(with_header, auth, true);
  CHECK(still.user == "");
  CHECK_FALSE(still.missing);
  CHECK_FALSE(still.invalid);
}

TEST_CASE("identify, auth.mode = header") {
  auto auth = auth_mode("header");
  SUBCASE("missing header -> missing") {
    const auto who = wsvisor::identify(request(), auth, true);
    CHECK(who.missing);
    CHECK(who.user == "");
  }
  SUBCASE("empty header -> missing") {
    auto r = request();
    r.set("X-User-Id", "");
    CHECK(wsvisor::identify(r, auth, true).missing);
  }
  SUBCASE("header present -> that user") {
    auto r = request();
    r.set("X-User-Id", "alice");
    const auto who = wsvisor::identify(r, auth, true);
    CHECK(who.user == "alice");
    CHECK_FALSE(who.missing);
    CHECK_FALSE(who.invalid);
    // Field names are case-insensitive.
    auto lower = request();
    lower.set("x-user-id", "bob");
    CHECK(wsvisor::identify(lower, auth, true).user == "bob");
  }
  SUBCASE("a custom user_header") {
    auth.user_header = "X-Authenticated-User";
    auto r = request();
    r.set("X-User-Id", "alice");
    CHECK(wsvisor::identify(r, auth, true).missing);
    r.set("X-Authenticated-User", "carol");
    const auto who = wsvisor::identify(r, auth, true);
    CHECK(who.user == "carol");
    CHECK_FALSE(who.missing);
  }
}

TEST_CASE("identify, auth.mode = jwt") {
  const auto auth = auth_mode("jwt");
  const long long now = wall_clock_now();
  SUBCASE("no token -> missing") {
    const auto who = wsvisor::identify(request(), auth, true);
    CHECK(who.missing);
    CHECK_FALSE(who.invalid);
    CHECK(who.user == "");
  }
  SUBCASE("a valid token from each source -> its sub") {
    const auto token = make_token(payload("alice", now + 3600));
    auto bearer = request();
    bearer.set(http::field::authorization, "Bearer " + token);
    auto protocol = request();
    protocol.set(http::field::sec_websocket_protocol, "wsvisor.v1, jwt." + token);
    auto query = request("/ws?token=" + token);
    for (const auto* r : {&bearer, &protocol, &query}) {
      const auto who = wsvisor::identify(*r, auth, true);
      CHECK(who.user == "alice");
      CHECK_FALSE(who.missing);
      CHECK_FALSE(who.invalid);
    }
  }
  SUBCASE("an expired token -> invalid") {
    auto r = request();
    r.set(http::field::authorization, "Bearer " + make_token(payload("alice", now - 10)));
    const auto who = wsvisor::identify(r, auth, true);
    CHECK(who.invalid);
    CHECK(who.user == "");
  }
  SUBCASE("a token signed with another secret -> invalid") {
    auto r = request();
    r.set(http::field::authorization,
          "Bearer " + make_token(payload("alice", now + 3600), "not-the-secret"));
    const auto who = wsvisor::identify(r, auth, true);
    CHECK(who.invalid);
    CHECK(who.user == "");
  }
  SUBCASE("garbage -> invalid") {
    auto r = request("/ws?token=garbage");
    const auto who = wsvisor::identify(r, auth, true);
    CHECK(who.invalid);
    CHECK(who.user == "");
  }
  SUBCASE("the Bearer token wins even when a valid one comes later") {
    auto r = request("/ws?token=" + make_token(payload("mallory", now + 3600)));
    r.set(http::field::authorization, "Bearer " + make_token(payload("alice", now + 3600)));
    CHECK(wsvisor::identify(r, auth, true).user == "alice");
  }
}

// ---------------------------------------------------------------------------------------
// select_subprotocol

TEST_CASE("select_subprotocol: wsvisor.v1 when offered, wherever it is") {
  auto only = request();
  only.set(http::field::sec_websocket_protocol, "wsvisor.v1");
  CHECK(wsvisor::select_subprotocol(only) == "wsvisor.v1");

  auto after_others = request();
  after_others.set(http::field::sec_websocket_protocol, "chat, jwt.abc.def.ghi, wsvisor.v1");
  CHECK(wsvisor::select_subprotocol(after_others) == "wsvisor.v1");

  auto second_line = request();
  second_line.insert(http::field::sec_websocket_protocol, "jwt.abc");
  second_line.insert(http::field::sec_websocket_protocol, "wsvisor.v1");
  CHECK(wsvisor::select_subprotocol(second_line) == "wsvisor.v1");
}

TEST_CASE("select_subprotocol: the jwt.<token> entry when wsvisor.v1 is not offered") {
  auto r = request();
  r.set(http::field::sec_websocket_protocol, "chat, jwt.abc.def.ghi");
  CHECK(wsvisor::select_subprotocol(r) == "jwt.abc.def.ghi");

  auto second_line = request();
  second_line.insert(http::field::sec_websocket_protocol, "chat");
  second_line.insert(http::field::sec_websocket_protocol, "jwt.xyz");
  CHECK(wsvisor::select_subprotocol(second_line) == "jwt.xyz");

  // The entry selected is the one whose token find_token uses.
  auto two = request();
  two.set(http::field::sec_websocket_protocol, "jwt.first, jwt.second");
  CHECK(wsvisor::select_subprotocol(two) == "jwt.first");
  CHECK(wsvisor::find_token(two) == std::optional<std::string>("first"));
}

TEST_CASE("select_subprotocol: nothing otherwise") {
  CHECK(wsvisor::select_subprotocol(request()) == "");
  auto r = request();
  r.set(http::field::sec_websocket_protocol, "chat, superchat");
  CHECK(wsvisor::select_subprotocol(r) == "");
  auto near_misses = request();
  near_misses.set(http::field::sec_websocket_protocol,
                  "wsvisor.v1x, xwsvisor.v1, wsvisor.v2, WSVISOR.V1, jwt., jwt");
  CHECK(wsvisor::select_subprotocol(near_misses) == "");
  auto empty = request();
  empty.set(http::field::sec_websocket_protocol, "");
  CHECK(wsvisor::select_subprotocol(empty) == "");
  auto commas = request();
  commas.set(http::field::sec_websocket_protocol, " , ,, ");
  CHECK(wsvisor::select_subprotocol(commas) == "");
}

TEST_CASE("select_subprotocol trims spaces and tabs around entries") {
  auto r = request();
  r.set(http::field::sec_websocket_protocol, "  chat ,\twsvisor.v1\t ,other");
  CHECK(wsvisor::select_subprotocol(r) == "wsvisor.v1");
  auto jwt = request();
  jwt.set(http::field::sec_websocket_protocol, "chat ,   jwt.tok  ");
  CHECK(wsvisor::select_subprotocol(jwt) == "jwt.tok");
  CHECK(wsvisor::find_token(jwt) == std::optional<std::string>("tok"));
  auto no_space = request();
  no_space.set(http::field::sec_websocket_protocol, "chat,wsvisor.v1");
  CHECK(wsvisor::select_subprotocol(no_space) == "wsvisor.v1");
}

TEST_CASE("identify, auth.mode = header: the header is believed only from a vouched peer") {
  const auto auth = auth_mode("header");
  auto r = request();
  r.set("X-User-Id", "alice");
  const auto who = wsvisor::identify(r, auth, false);
  CHECK(who.user == "");
  CHECK(who.invalid);
  CHECK(who.problem == wsvisor::identity_problem::untrusted_peer);
  // No header at all is still "missing", whoever sends it.
  const auto none = wsvisor::identify(request(), auth, false);
  CHECK(none.missing);
  CHECK(none.problem == wsvisor::identity_problem::missing);
}

TEST_CASE("check_hs256_jwt names why a token is refused") {
  using wsvisor::identity_problem;
  const auto check = [](const std::string& token) {
    return wsvisor::check_hs256_jwt(token, kSecret, at(kNow)).problem;
  };
  CHECK(check(make_token(payload("alice", kNow + 60))) == identity_problem::none);
  CHECK(check("garbage") == identity_problem::malformed);
  CHECK(check("a.b") == identity_problem::malformed);
  CHECK(check(make_token(payload("alice", kNow + 60), "another-secret")) ==
        identity_problem::bad_signature);
  CHECK(check(make_jwt(R"({"alg":"HS512"})", payload("alice", kNow + 60))) ==
        identity_problem::bad_signature);
  CHECK(check(make_token(payload("alice", kNow - 1))) == identity_problem::expired);
  CHECK(check(make_token(R"({"sub":"alice","exp":"tomorrow"})")) == identity_problem::malformed);
  CHECK(check(make_token(R"({"exp":)" + std::to_string(kNow + 60) + "}")) ==
        identity_problem::malformed);
}

TEST_CASE("nbf: a token is not valid before its not-before time (RFC 7519 4.1.5)") {
  using wsvisor::identity_problem;
  const auto with_nbf = [](long long nbf) {
    return make_token(R"({"sub":"alice","exp":)" + std::to_string(kNow + 3600) + R"(,"nbf":)" +
                      std::to_string(nbf) + "}");
  };
  CHECK(wsvisor::check_hs256_jwt(with_nbf(kNow + 30), kSecret, at(kNow)).problem ==
        identity_problem::not_yet_valid);
  CHECK_FALSE(wsvisor::verify_hs256_jwt(with_nbf(kNow + 30), kSecret, at(kNow)));
  CHECK(wsvisor::verify_hs256_jwt(with_nbf(kNow), kSecret, at(kNow)) ==
        std::optional<std::string>("alice"));
  CHECK(wsvisor::verify_hs256_jwt(with_nbf(kNow - 30), kSecret, at(kNow)) ==
        std::optional<std::string>("alice"));
  CHECK(wsvisor::check_hs256_jwt(make_token(R"({"sub":"alice","nbf":"soon"})"), kSecret, at(kNow))
            .problem == identity_problem::malformed);
}

TEST_CASE("the Bearer scheme is case-insensitive (RFC 7235 2.1)") {
  for (const char* scheme : {"Bearer", "bearer", "BEARER", "bEaReR"}) {
    auto r = request();
    r.set(http::field::authorization, std::string(scheme) + " tok");
    CHECK(wsvisor::find_token(r) == std::optional<std::string>("tok"));
  }
}
