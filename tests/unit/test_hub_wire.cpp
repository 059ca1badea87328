// Hub mode across nodes: the text of one Pub/Sub message (hub::wire). Every field comes
// back byte for byte (raw JSON data is never re-serialized), and anything malformed is
// refused as a whole.
#include <doctest/doctest.h>

#include <string>
#include <variant>

#include "wsvisor/hub/wire.hpp"

namespace hub = wsvisor::hub;
namespace wire = wsvisor::hub::wire;

namespace {

hub::client_info info_of(std::string user, std::string client) {
  hub::client_info info;
  info.user = std::move(user);
  info.client = std::move(client);
  info.conn_info = R"({"name":"a:b"})";
  info.chan_info = "";
  return info;
}

}  // namespace

TEST_CASE("a publication with info and tags comes back exactly, with the offset and epoch") {
  hub::publication pub;
  pub.offset = 42;
  pub.data = R"({"x": 1.10, "s":"12:34\n"})";  // kept as written: 1.10, the spacing
  pub.info = info_of("user:1", "c-1");
  pub.tags = {{"k:1", "v\n2"}, {"", ""}};
  const auto text = wire::encode_publication(pub, "ab12cd34");
  CHECK(text.rfind("p42:ab12cd34:", 0) == 0);
  auto message = wire::decode(text);
  REQUIRE(message);
  const auto* got = std::get_if<wire::published>(&*message);
  REQUIRE(got);
  CHECK(got->epoch == "ab12cd34");
  CHECK(got->pub.offset == 42);
  CHECK(got->pub.data == pub.data);
  REQUIRE(got->pub.info);
  CHECK(got->pub.info->user == "user:1");
  CHECK(got->pub.info->client == "c-1");
  CHECK(got->pub.info->conn_info == R"({"name":"a:b"})");
  CHECK(got->pub.tags == pub.tags);
}

TEST_CASE("the publish script's form: body from encode_publication_body, offset 0 and no epoch") {
  hub::publication pub;
  pub.data = "[]";
  auto message = wire::decode("p0::" + wire::encode_publication_body(pub));
  REQUIRE(message);
  const auto& got = std::get<wire::published>(*message);
  CHECK(got.pub.offset == 0);
  CHECK(got.epoch.empty());
  CHECK(got.pub.data == "[]");
  CHECK_FALSE(got.pub.info);
  CHECK(got.pub.tags.empty());
}

TEST_CASE("joins, leaves and unsubscribe orders") {
  const auto info = info_of("u", "c");
  auto joined = wire::decode(wire::encode_join(info));
  REQUIRE(joined);
  CHECK(std::get<wire::joined>(*joined).info.client == "c");
  auto left = wire::decode(wire::encode_leave(info));
  REQUIRE(left);
  CHECK(std::get<wire::left>(*left).info.user == "u");
  auto order = wire::decode(wire::encode_unsubscribe("u", ""));
  REQUIRE(order);
  CHECK(std::get<wire::unsubscribed>(*order).user == "u");
  CHECK(std::get<wire::unsubscribed>(*order).client.empty());
  auto back = wire::decode_client_info(wire::encode_client_info(info));
  REQUIRE(back);
  CHECK(back->conn_info == info.conn_info);
}

TEST_CASE("malformed messages are refused, never half read") {
  hub::publication pub;
  pub.data = R"({"a":1})";
  const auto good = wire::encode_publication(pub, "e");
  for (std::size_t cut = 0; cut < good.size(); ++cut)
    CHECK_MESSAGE(!wire::decode(good.substr(0, cut)), "prefix of length " << cut);
  CHECK_FALSE(wire::decode(good + "x"));  // trailing bytes
  CHECK_FALSE(wire::decode("x1:a"));      // unknown kind
  CHECK_FALSE(wire::decode("p-1:e:1:a-0:"));
  CHECK_FALSE(wire::decode("p1:e:99999999999999999999999:a-0:"));  // length overflows
  CHECK_FALSE(wire::decode("p1:e:5:a-0:"));                        // length past the end
  CHECK_FALSE(wire::decode("j1:u1:c0:"));                          // a field missing
  CHECK_FALSE(wire::decode_client_info("1:u1:c0:0:x"));
  CHECK_FALSE(wire::decode(""));
}
