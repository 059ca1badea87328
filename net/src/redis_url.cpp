// cluster.redis_url's parser. Pure (no Asio, no I/O) and kept apart from the client, so
// that a configuration check can call it without a connection.
#include <algorithm>
#include <optional>
#include <string>
#include <string_view>

#include "wsvisor/redis_client.hpp"

namespace wsvisor {

namespace {

constexpr std::string_view url_key = "cluster.redis_url: ";

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool starts_with_ignoring_case(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() &&
         std::equal(prefix.begin(), prefix.end(), text.begin(),
                    [](char a, char b) { return lower(a) == lower(b); });
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoded (a password may hold any byte that way); false on a '%' without two hex
// digits after it.
bool percent_decode(std::string_view text, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) return false;
    const int high = hex_value(text[i + 1]);
    const int low = hex_value(text[i + 2]);
    if (high < 0 || low < 0) return false;
    out += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return true;
}

// Decimal digits only (no sign, no space), at most `max`.
std::optional<unsigned long> decimal(std::string_view text, unsigned long max) {
  if (text.empty()) return std::nullopt;
  unsigned long value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned long>(c - '0');
    if (value > max) return std::nullopt;
  }
  return value;
}

bool is_host_name(std::string_view host) {
  return std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '.' || c == '_';
  });
}

bool is_ipv6_text(std::string_view host) {
  return std::all_of(host.begin(), host.end(),
                     [](char c) { return hex_value(c) >= 0 || c == ':' || c == '.'; });
}

}  // namespace

std::optional<redis_endpoint> parse_redis_url(const std::string& url, std::string& error) {
  // The URL itself is never quoted back: it may hold the password.
  const auto fail = [&error](const std::string& why) -> std::optional<redis_endpoint> {
    error = std::string(url_key) + why;
    return std::nullopt;
  };
  if (starts_with_ignoring_case(url, "rediss://"))
    return fail("TLS (rediss://) is not supported; the scheme must be redis://");
  constexpr std::string_view scheme = "redis://";
  if (!starts_with_ignoring_case(url, scheme)) return fail("the scheme must be redis://");
  std::string_view rest(url);
  rest.remove_prefix(scheme.size());

  redis_endpoint where;
  // The last '@': a password may hold '@', '/' or '#' without percent-encoding them.
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view credentials = rest.substr(0, at);
    rest.remove_prefix(at + 1);
    const auto colon = credentials.find(':');
    if (colon == std::string_view::npos)
      return fail("the credentials before '@' must be user:password or :password");
    if (!percent_decode(credentials.substr(0, colon), where.user))
      return fail("the user has a '%' without two hex digits after it");
    if (!percent_decode(credentials.substr(colon + 1), where.password))
      return fail("the password has a '%' without two hex digits after it");
    if (where.password.empty()) return fail("the password after ':' is empty");
  }
  if (rest.find_first_of("?#") != std::string_view::npos)
    return fail("query parameters and fragments are not supported");

  const auto slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  std::string_view port_text;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return fail("the IPv6 address has no closing ']'");
    const std::string_view host = authority.substr(1, close - 1);
    if (host.empty() || !is_ipv6_text(host)) return fail("the host is not an IPv6 address");
    where.host = std::string(host);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':')
      return fail("only ':port' may follow the IPv6 address");
    has_port = !after.empty();
    if (has_port) port_text = after.substr(1);
  } else {
    const auto colon = authority.find(':');
    if (colon != std::string_view::npos && authority.find(':', colon + 1) != std::string_view::npos)
      return fail("an IPv6 address must be in brackets: redis://[::1]:6379");
    has_port = colon != std::string_view::npos;
    if (has_port) port_text = authority.substr(colon + 1);
    const std::string_view host = authority.substr(0, colon);
    if (host.empty()) return fail("the host is missing");
    if (!is_host_name(host)) return fail("the host '" + std::string(host) + "' is not a name");
    where.host = std::string(host);
  }
  // "host:" is the default port, as RFC 3986 3.2.3 has it.
  if (has_port && !port_text.empty()) {
    const auto port = decimal(port_text, 65535);
    if (!port || *port == 0)
      return fail("the port must be a number from 1 to 65535 (got '" + std::string(port_text) +
                  "')");
    where.port = static_cast<uint16_t>(*port);
  }
  if (slash != std::string_view::npos && slash + 1 < rest.size()) {
    const std::string_view database_text = rest.substr(slash + 1);
    // Redis's `databases` is an int: nothing larger can be SELECTed.
    const auto database = decimal(database_text, 2147483647);
    if (!database)
      return fail("the database after '/' must be a number (got '" + std::string(database_text) +
                  "')");
    where.database = static_cast<unsigned>(*database);
  }
  return where;
}

}  // namespace wsvisor
