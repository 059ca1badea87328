// Cluster mode's entries as Redis keeps them (P:conns:<node>): what a node writes, the
// scripts read (the user, to find its claim) and a reaping node reads back to emit the
// node_lost disconnects, so every field must survive the round trip, and a damaged
// entry must be refused rather than half read.
#include <doctest/doctest.h>

#include <boost/json/parse.hpp>

#include "../../actors/src/cluster_service.hpp"

using wsvisor::cluster_entry;
using wsvisor::cluster_entry_json;
using wsvisor::parse_cluster_entry;

TEST_CASE("a cluster entry survives the round trip through its JSON") {
  cluster_entry entry;
  entry.id = 42;
  entry.user = "al\"ice\n";
  entry.ip = "10.0.0.7";
  entry.meta = R"({"plan":"pro","n":[1,2]})";
  entry.opened_at_ms = 1796219399469;
  entry.opened = true;
  const auto json = cluster_entry_json(entry);
  // The scripts read it with cjson: it is one JSON object, the user a string.
  const auto object = boost::json::parse(json).as_object();
  CHECK(object.at("user").as_string() == "al\"ice\n");
  CHECK(object.at("meta").is_object());
  const auto back = parse_cluster_entry(json);
  REQUIRE(back);
  CHECK(back->id == 42);
  CHECK(back->user == entry.user);
  CHECK(back->ip == entry.ip);
  CHECK(boost::json::parse(back->meta) == boost::json::parse(entry.meta));
  CHECK(back->opened_at_ms == entry.opened_at_ms);
  CHECK(back->opened);
  CHECK(back->claimed);  // an entry with a user holds its claim
}

TEST_CASE("no user and no meta are null, and come back empty") {
  cluster_entry entry;
  entry.id = 7;
  entry.ip = "::1";
  const auto json = cluster_entry_json(entry);
  const auto object = boost::json::parse(json).as_object();
  CHECK(object.at("user").is_null());
  CHECK(object.at("meta").is_null());
  CHECK_FALSE(object.at("opened").as_bool());
  const auto back = parse_cluster_entry(json);
  REQUIRE(back);
  CHECK(back->user.empty());
  CHECK(back->meta.empty());
  CHECK_FALSE(back->claimed);
}

TEST_CASE("a damaged entry is refused, not half read") {
  for (const std::string text : {"", "not json", "[1,2]", "\"text\"", "{\"id\":"}) {
    CAPTURE(text);
    CHECK_FALSE(parse_cluster_entry(text));
  }
  // Fields of the wrong type are left at their defaults, never misread.
  const auto odd = parse_cluster_entry(R"({"id":"x","user":5,"opened":"yes"})");
  REQUIRE(odd);
  CHECK(odd->id == 0);
  CHECK(odd->user.empty());
  CHECK_FALSE(odd->opened);
}
