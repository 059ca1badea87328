// The client IP behind trusted proxies (server.trusted_proxies, CONTRACT section 2):
// when the TCP peer is in one of the CIDRs, the client is the last address of
// X-Forwarded-For that is not.
#pragma once

#include <boost/asio/ip/address.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace wsvisor {

class trusted_proxies {
 public:
  // CIDRs were validated by the config loader; an entry that does not parse is skipped.
  explicit trusted_proxies(const std::vector<std::string>& cidrs);

  bool contains(const boost::asio::ip::address& address) const;

  // Whether a request from this TCP peer may assert who the user is (auth.mode =
  // "header"): a trusted proxy, or, when none is configured, a peer on loopback (a
  // proxy on the same host). Anyone else could name any user.
  bool vouches_for_identity(const boost::asio::ip::address& peer) const;

  // The configured rule in words, for the start-up log.
  std::string identity_rule() const;

  // `forwarded_for` is the X-Forwarded-For header ("" when absent).
  std::string client_ip(const boost::asio::ip::address& peer, std::string_view forwarded_for) const;

 private:
  struct network {
    boost::asio::ip::address base;
    unsigned prefix;
  };
  std::vector<network> networks_;
};

}  // namespace wsvisor
