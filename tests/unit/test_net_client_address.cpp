// The client IP behind trusted proxies (server.trusted_proxies, CONTRACT section 2): when
// the TCP peer is in one of the CIDRs, the client is the last X-Forwarded-For address
// that is not; otherwise the peer itself, whatever the header says.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "wsvisor/client_address.hpp"

using wsvisor::trusted_proxies;

namespace {

boost::asio::ip::address ip(const std::string& text) {
  return boost::asio::ip::make_address(text);
}

}  // namespace

TEST_CASE("no trusted proxies: always the peer") {
  const trusted_proxies none({});
  CHECK(none.client_ip(ip("203.0.113.7"), "") == "203.0.113.7");
  CHECK(none.client_ip(ip("203.0.113.7"), "1.2.3.4") == "203.0.113.7");
  CHECK(none.client_ip(ip("10.0.0.1"), "1.2.3.4, 10.0.0.2") == "10.0.0.1");
  CHECK_FALSE(none.contains(ip("10.0.0.1")));
}

TEST_CASE("peer not trusted: the peer IP, regardless of X-Forwarded-For") {
  const trusted_proxies proxies({"10.0.0.0/8"});
  CHECK(proxies.client_ip(ip("203.0.113.7"), "") == "203.0.113.7");
  CHECK(proxies.client_ip(ip("203.0.113.7"), "1.2.3.4") == "203.0.113.7");
  CHECK(proxies.client_ip(ip("203.0.113.7"), "1.2.3.4, 10.0.0.2") == "203.0.113.7");
  CHECK(proxies.client_ip(ip("203.0.113.7"), "garbage") == "203.0.113.7");
  CHECK(proxies.client_ip(ip("11.0.0.1"), "1.2.3.4") == "11.0.0.1");
}

TEST_CASE("peer trusted: the last X-Forwarded-For address that is not trusted") {
  const trusted_proxies proxies({"10.0.0.0/8"});
  CHECK(proxies.client_ip(ip("10.0.0.1"), "1.2.3.4") == "1.2.3.4");
  // The client may send a forged X-Forwarded-For; the proxy appends what it saw.
  CHECK(proxies.client_ip(ip("10.0.0.1"), "6.6.6.6, 1.2.3.4") == "1.2.3.4");
  CHECK(proxies.client_ip(ip("10.0.0.1"), "10.9.9.9, 6.6.6.6, 1.2.3.4") == "1.2.3.4");
  // No header: the proxy itself is all we know.
  CHECK(proxies.client_ip(ip("10.0.0.1"), "") == "10.0.0.1");
}

TEST_CASE("a chain of several trusted proxies") {
  const trusted_proxies proxies({"10.0.0.0/8", "192.168.1.0/24"});
  CHECK(proxies.client_ip(ip("10.0.0.1"), "1.2.3.4, 192.168.1.20") == "1.2.3.4");
  CHECK(proxies.client_ip(ip("10.0.0.1"), "1.2.3.4, 10.0.0.3, 192.168.1.20") == "1.2.3.4");
  CHECK(proxies.client_ip(ip("10.0.0.1"), "6.6.6.6, 1.2.3.4, 10.0.0.3, 192.168.1.20") == "1.2.3.4");
  // 192.168.2.x is not trusted: it is the client, even though a trusted one is further left.
  CHECK(proxies.client_ip(ip("10.0.0.1"), "10.0.0.9, 192.168.2.5, 192.168.1.20") == "192.168.2.5");
}

TEST_CASE("every hop trusted: the leftmost address") {
  const trusted_proxies proxies({"10.0.0.0/8"});
  CHECK(proxies.client_ip(ip("10.0.0.1"), "10.0.0.3") == "10.0.0.3");
  CHECK(proxies.client_ip(ip("10.0.0.1"), "10.0.0.4, 10.0.0.3, 10.0.0.2") == "10.0.0.4");
}

TEST_CASE("whitespace around X-Forwarded-For entries is ignored") {
  const trusted_proxies proxies({"10.0.0.0/8"});
  CHECK(proxies.client_ip(ip("10.0.0.1"), "  1.2.3.4  ") == "1.2.3.4");
  CHECK(proxies.client_ip(ip("10.0.0.1"), "6.6.6.6,1.2.3.4,10.0.0.2") == "1.2.3.4");
  CHECK(proxies.client_ip(ip("10.0.0.1"), "6.6.6.6 ,\t1.2.3.4\t, 10.0.0.2") == "1.2.3.4");
}

TEST_CASE("a malformed hop stops the walk: nothing to its left is believed") {
  const trusted_proxies proxies({"10.0.0.0/8"});
  // The rightmost entry is malformed: the trusted peer is the last address we know.
  CHECK(proxies.client_ip(ip("10.0.0.1"), "garbage") == "10.0.0.1");
  CHECK(proxies.client_ip(ip("10.0.0.1"), "1.2.3.4, garbage") == "10.0.0.1");
  CHECK(proxies.client_ip(ip("10.0.0.1"), "1.2.3.4:5678") == "10.0.0.1");
  CHECK(proxies.client_ip(ip("10.0.0.1"), "1.2.3.4, ") == "10.0.0.1");
  CHECK(proxies.client_ip(ip("10.0.0.1"), "1.2.3.4,") == "10.0.0.1");
  CHECK(proxies.client_ip(ip("10.0.0.1"), "unknown") == "10.0.0.1");
  CHECK(proxies.client_ip(ip("10.0.0.1"), "999.1.1.1") == "10.0.0.1");
  CHECK(proxies.client_ip(ip("10.0.0.1"), ",") == "10.0.0.1");
  // Garbage behind a trusted hop: the last valid address, never the garbage and never
  // what stands left of it.
  CHECK(proxies.client_ip(ip("10.0.0.1"), "1.2.3.4, garbage, 10.0.0.2") == "10.0.0.2");
  CHECK(proxies.client_ip(ip("10.0.0.1"), "1.2.3.4,, 10.0.0.2") == "10.0.0.2");
  // An untrusted address is found before the walk reaches the garbage: it is the client.
  CHECK(proxies.client_ip(ip("10.0.0.1"), "garbage, 1.2.3.4, 10.0.0.2") == "1.2.3.4");
}

TEST_CASE("IPv6 peers and IPv6 X-Forwarded-For entries") {
  const trusted_proxies proxies({"fd00::/8", "2001:db8:1::/48"});
  CHECK(proxies.contains(ip("fd12:3456::1")));
  CHECK(proxies.contains(ip("2001:db8:1:ffff::1")));
  CHECK_FALSE(proxies.contains(ip("2001:db8:2::1")));
  CHECK_FALSE(proxies.contains(ip("10.0.0.1")));
  CHECK(proxies.client_ip(ip("fd00::1"), "2001:db8:2::7") == "2001:db8:2::7");
  CHECK(proxies.client_ip(ip("fd00::1"), "2001:db8:2::7, 2001:db8:1::5") == "2001:db8:2::7");
  CHECK(proxies.client_ip(ip("fd00::1"), "1.2.3.4, fd00::2") == "1.2.3.4");
  CHECK(proxies.client_ip(ip("2001:db8:2::1"), "1.2.3.4") == "2001:db8:2::1");
  // Not trusted: the peer in its canonical text form.
  CHECK(proxies.client_ip(ip("2001:0db8:0002:0000:0000:0000:0000:0001"), "") == "2001:db8:2::1");
}

TEST_CASE("IPv4-mapped IPv6 peers count as the IPv4 address they carry") {
  const trusted_proxies proxies({"10.0.0.0/8"});
  CHECK(proxies.contains(ip("::ffff:10.1.2.3")));
  CHECK_FALSE(proxies.contains(ip("::ffff:11.1.2.3")));
  CHECK(proxies.client_ip(ip("::ffff:10.0.0.1"), "1.2.3.4") == "1.2.3.4");
  // The same client has the same IP whichever socket family it came through, so per-IP
  // caps count it once.
  CHECK(proxies.client_ip(ip("::ffff:203.0.113.7"), "1.2.3.4") == "203.0.113.7");
  CHECK(proxies.client_ip(ip("::ffff:203.0.113.7"), "") == "203.0.113.7");
  CHECK(proxies.client_ip(ip("::ffff:10.0.0.1"), "::ffff:1.2.3.4") == "1.2.3.4");
  CHECK(proxies.client_ip(ip("::ffff:10.0.0.1"), "1.2.3.4, ::ffff:10.0.0.2") == "1.2.3.4");

  // A CIDR written in the mapped form applies to plain IPv4 peers too.
  const trusted_proxies mapped({"::ffff:10.0.0.1"});
  CHECK(mapped.contains(ip("10.0.0.1")));
  CHECK(mapped.contains(ip("::ffff:10.0.0.1")));
  CHECK_FALSE(mapped.contains(ip("10.0.0.2")));
}

TEST_CASE("CIDR prefixes /0, /8, /32, /128 and a bare address") {
  SUBCASE("/0 of IPv4 trusts every IPv4 address and no IPv6 one") {
    const trusted_proxies all_v4({"0.0.0.0/0"});
    CHECK(all_v4.contains(ip("1.2.3.4")));
    CHECK(all_v4.contains(ip("255.255.255.255")));
    CHECK(all_v4.contains(ip("::ffff:1.2.3.4")));
    CHECK_FALSE(all_v4.contains(ip("2001:db8::1")));
    // Everything is trusted: the leftmost entry.
    CHECK(all_v4.client_ip(ip("1.1.1.1"), "2.2.2.2, 3.3.3.3") == "2.2.2.2");
  }
  SUBCASE("/0 of IPv6") {
    const trusted_proxies all_v6({"::/0"});
    CHECK(all_v6.contains(ip("2001:db8::1")));
    CHECK(all_v6.contains(ip("::1")));
    CHECK_FALSE(all_v6.contains(ip("1.2.3.4")));
  }
  SUBCASE("/8") {
    const trusted_proxies eight({"10.0.0.0/8"});
    CHECK(eight.contains(ip("10.0.0.0")));
    CHECK(eight.contains(ip("10.255.255.255")));
    CHECK_FALSE(eight.contains(ip("9.255.255.255")));
    CHECK_FALSE(eight.contains(ip("11.0.0.0")));
  }
  SUBCASE("non-byte-aligned prefixes") {
    const trusted_proxies twelve({"172.16.0.0/12"});
    CHECK(twelve.contains(ip("172.16.0.1")));
    CHECK(twelve.contains(ip("172.31.255.255")));
    CHECK_FALSE(twelve.contains(ip("172.32.0.0")));
    CHECK_FALSE(twelve.contains(ip("172.15.255.255")));
    const trusted_proxies v6({"2001:db8::/33"});
    CHECK(v6.contains(ip("2001:db8:7fff::1")));
    CHECK_FALSE(v6.contains(ip("2001:db8:8000::1")));
  }
  SUBCASE("/32 and a bare IPv4 address are exactly that address") {
    const trusted_proxies one({"10.0.0.1/32", "192.168.0.1"});
    CHECK(one.contains(ip("10.0.0.1")));
    CHECK_FALSE(one.contains(ip("10.0.0.2")));
    CHECK_FALSE(one.contains(ip("10.0.0.0")));
    CHECK(one.contains(ip("192.168.0.1")));
    CHECK_FALSE(one.contains(ip("192.168.0.2")));
  }
  SUBCASE("/128 and a bare IPv6 address are exactly that address") {
    const trusted_proxies one({"2001:db8::1/128", "::1"});
    CHECK(one.contains(ip("2001:db8::1")));
    CHECK_FALSE(one.contains(ip("2001:db8::2")));
    CHECK(one.contains(ip("::1")));
    CHECK_FALSE(one.contains(ip("::2")));
  }
}

TEST_CASE("CIDR entries that do not parse are skipped, the others still apply") {
  const trusted_proxies proxies(
      {"not-an-ip", "10.0.0.0/33", "2001:db8::/129", "10.0.0.0/abc", "", "/8", "192.168.0.0/16"});
  CHECK(proxies.contains(ip("192.168.3.4")));
  CHECK_FALSE(proxies.contains(ip("10.0.0.1")));
  CHECK_FALSE(proxies.contains(ip("2001:db8::1")));
  CHECK(proxies.client_ip(ip("192.168.0.1"), "1.2.3.4") == "1.2.3.4");
  CHECK(proxies.client_ip(ip("10.0.0.1"), "1.2.3.4") == "10.0.0.1");
}

TEST_CASE("vouches_for_identity: trusted proxies, or loopback when none are configured") {
  const trusted_proxies none({});
  CHECK(none.vouches_for_identity(ip("127.0.0.1")));
  CHECK(none.vouches_for_identity(ip("127.5.6.7")));
  CHECK(none.vouches_for_identity(ip("::1")));
  CHECK(none.vouches_for_identity(ip("::ffff:127.0.0.1")));
  CHECK_FALSE(none.vouches_for_identity(ip("203.0.113.7")));
  CHECK_FALSE(none.vouches_for_identity(ip("10.0.0.1")));

  const trusted_proxies proxies({"10.0.0.0/8"});
  CHECK(proxies.vouches_for_identity(ip("10.1.2.3")));
  // With proxies configured, loopback is just another untrusted peer.
  CHECK_FALSE(proxies.vouches_for_identity(ip("127.0.0.1")));
  CHECK_FALSE(proxies.vouches_for_identity(ip("203.0.113.7")));
}
