#include "wsvisor/client_address.hpp"

#include <array>

namespace wsvisor {
namespace ip = boost::asio::ip;

namespace {

// IPv4-mapped IPv6 peers (::ffff:a.b.c.d) compare as the IPv4 address they carry.
ip::address normalized(const ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped())
    return ip::make_address_v4(ip::v4_mapped, address.to_v6());
  return address;
}

template <std::size_t N>
bool same_prefix(const std::array<unsigned char, N>& a, const std::array<unsigned char, N>& b,
                 unsigned prefix) {
  for (std::size_t i = 0; i < N && prefix > 0; ++i) {
    const unsigned bits = prefix >= 8 ? 8 : prefix;
    const unsigned char mask = static_cast<unsigned char>(0xff << (8 - bits));
    if ((a[i] & mask) != (b[i] & mask)) return false;
    prefix -= bits;
  }
  return true;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

}  // namespace

trusted_proxies::trusted_proxies(const std::vector<std::string>& cidrs) {
  for (const auto& cidr : cidrs) {
    const auto slash = cidr.find('/');
    boost::system::error_code ec;
    const auto base = normalized(ip::make_address(cidr.substr(0, slash), ec));
    if (ec) continue;
    const unsigned full = base.is_v4() ? 32 : 128;
    unsigned prefix = full;
    if (slash != std::string::npos) {
      try {
        prefix = static_cast<unsigned>(std::stoul(cidr.substr(slash + 1)));
      } catch (const std::exception&) {
        continue;
      }
      if (prefix > full) continue;
    }
    networks_.push_back({base, prefix});
  }
}

bool trusted_proxies::contains(const ip::address& address) const {
  const auto candidate = normalized(address);
  for (const auto& net : networks_) {
    if (net.base.is_v4() && candidate.is_v4()) {
      if (same_prefix(net.base.to_v4().to_bytes(), candidate.to_v4().to_bytes(), net.prefix))
        return true;
    } else if (net.base.is_v6() && candidate.is_v6()) {
      if (same_prefix(net.base.to_v6().to_bytes(), candidate.to_v6().to_bytes(), net.prefix))
        return true;
    }
  }
  return false;
}

bool trusted_proxies::vouches_for_identity(const ip::address& peer) const {
  if (networks_.empty()) return normalized(peer).is_loopback();
  return contains(peer);
}

std::string trusted_proxies::identity_rule() const {
  if (networks_.empty()) return "only from loopback peers (server.trusted_proxies is empty)";
  return "only from peers in server.trusted_proxies (" + std::to_string(networks_.size()) +
         (networks_.size() == 1 ? " network)" : " networks)");
}

std::string trusted_proxies::client_ip(const ip::address& peer,
                                       std::string_view forwarded_for) const {
  const auto peer_address = normalized(peer);
  if (forwarded_for.empty() || !contains(peer_address)) return peer_address.to_string();
  // Walk X-Forwarded-For from the right: each hop that is a trusted proxy passes the
  // question on; the first one that is not is the client.
  std::string last_valid = peer_address.to_string();
  while (!forwarded_for.empty()) {
    const auto comma = forwarded_for.rfind(',');
    const auto entry =
        trim(comma == std::string_view::npos ? forwarded_for : forwarded_for.substr(comma + 1));
    boost::system::error_code ec;
    const auto hop = normalized(ip::make_address(std::string(entry), ec));
    if (ec) return last_valid;  // a malformed hop: trust nothing beyond it
    last_valid = hop.to_string();
    if (!contains(hop)) return last_valid;
    if (comma == std::string_view::npos) break;
    forwarded_for = forwarded_for.substr(0, comma);
  }
  return last_valid;
}

}  // namespace wsvisor
