// The configuration loader. One table of keys (section, name, type, valid range, how to
// print it) drives the file, PORT, the WSVISOR_* variables, --set and render_effective
// alike, so a key added to the table is parsed, validated, overridable and printed
// everywhere at once, and the rules of CONTRACT section 2 live in one place.
#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>
#include <type_traits>

#include <toml++/toml.h>

#include "config_internal.hpp"
#include "wsvisor/config.hpp"

namespace wsvisor {

std::string detail::error_message(const std::string& where, const std::string& key,
                                  const std::string& problem) {
  std::string message = "config error: ";
  if (!where.empty()) message += where + ": ";
  if (!key.empty()) message += key + ": ";
  return message + problem;
}

namespace {

using detail::error_message;

// What render_effective prints for a secret that is set; also accepted (and ignored) as
// the value of a secret key in a file, so that --check-config output can be fed back.
const std::string redacted = "<redacted>";

// Variables of the build and test tooling that share the prefix but are no settings; the
// end-to-end tests export them to the server's environment.
const std::set<std::string> tooling_variables = {"WSVISOR_BIN", "WSVISOR_SOURCE_DIR"};

[[noreturn]] void fail(const std::string& where, const std::string& key,
                       const std::string& problem) {
  throw config_error(error_message(where, key, problem));
}

// A TOML basic string, so that render_effective is valid TOML whatever the text holds.
std::string quote(const std::string& text) {
  std::string quoted = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        quoted += "\\\"";
        break;
      case '\\':
        quoted += "\\\\";
        break;
      case '\n':
        quoted += "\\n";
        break;
      case '\t':
        quoted += "\\t";
        break;
      case '\r':
        quoted += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char escape[8];
          std::snprintf(escape, sizeof escape, "\\u%04x", c);
          quoted += escape;
        } else {
          quoted += static_cast<char>(c);
        }
    }
  }
  return quoted + "\"";
}

// The shortest text that reads back as the same double, always with a '.' or an
// exponent so that TOML sees a float.
std::string format_real(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  std::string text(buffer, result.ptr);
  if (text.find_first_of(".einf") == std::string::npos) text += ".0";
  return text;
}

// How a value the user gave is shown after "got" (never used for secrets).
std::string describe(const toml::node& node) {
  if (auto text = node.value_exact<std::string>()) {
    constexpr size_t shown = 80;
    return text->size() > shown ? quote(text->substr(0, shown)) + "..." : quote(*text);
  }
  if (auto integer = node.value_exact<int64_t>()) return std::to_string(*integer);
  if (auto real = node.value_exact<double>()) return format_real(*real);
  if (auto flag = node.value_exact<bool>()) return *flag ? "true" : "false";
  if (node.is_array()) return "an array";
  if (node.is_table()) return "a table";
  return "a date or time";
}

// ---------------------------------------------------------------------------------------
// Validators of the text-valued keys.

bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// A port written in decimal, within [lowest, 65535].
bool is_port_text(const std::string& text, unsigned lowest) {
  if (text.empty() || text.size() > 5) return false;
  if (!std::all_of(text.begin(), text.end(), is_digit)) return false;
  const unsigned port = static_cast<unsigned>(std::stoul(text));
  return port >= lowest && port <= 65535;
}

bool is_ipv6(const std::string& text) {
  in6_addr address;
  return inet_pton(AF_INET6, text.c_str(), &address) == 1;
}

// A host name or IPv4 literal: letters, digits, '.', '-', '_'.
bool is_plain_host(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return is_alpha(c) || is_digit(c) || c == '.' || c == '-' || c == '_';
  });
}

// "host:port" or "[host]:port" split into host (without brackets) and port text; false when
// the shape is wrong. `bracketed` tells which form it was.
bool split_address(const std::string& text, std::string& host, std::string& port, bool& bracketed) {
  bracketed = !text.empty() && text.front() == '[';
  if (bracketed) {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return false;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    return true;
  }
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  host = text.substr(0, colon);
  port = text.substr(colon + 1);
  return true;
}

// "host:port" or "[v6]:port" where host may be a name (as in an Origin).
bool split_host_port(const std::string& text, std::string& host, std::string& port) {
  bool bracketed = false;
  if (!split_address(text, host, port, bracketed)) return false;
  return bracketed ? is_ipv6(host) : is_plain_host(host);
}

bool is_ip_literal(const std::string& text) {
  in_addr v4;
  return inet_pton(AF_INET, text.c_str(), &v4) == 1 || is_ipv6(text);
}

std::string lower_case(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// The address a listener binds for `host`: an IP literal as it is, "localhost" as
// 127.0.0.1. Other names are refused, not resolved: the loader does no I/O, and a name that
// resolves now may resolve elsewhere, to several addresses or not at all when the server
// binds, which would pass --check-config and fail at start with exit 1.
std::optional<std::string> bind_address(const std::string& host) {
  if (is_ip_literal(host)) return host;
  if (lower_case(host) == "localhost") return std::string("127.0.0.1");
  return std::nullopt;
}

// What to write instead of a host that bind_address refuses; `port` is "" for server.host
// and the port of admin.listen, so that the examples are complete values.
std::string bind_address_hint(const std::string& host, const std::string& port) {
  const auto example = [&port](const std::string& address, const std::string& what) {
    if (port.empty()) return quote(address) + " (" + what + ")";
    const bool v6 = address.find(':') != std::string::npos;
    return quote((v6 ? "[" + address + "]" : address) + ":" + port) + " (" + what + ")";
  };
  const std::string examples =
      "write an address such as " + example("0.0.0.0", "every IPv4 interface") + ", " +
      example("127.0.0.1", "this machine only") + " or " + example("::", "every IPv6 interface");
  const bool name_like = is_plain_host(host) &&
                         std::any_of(host.begin(), host.end(), [](char c) { return is_alpha(c); });
  if (name_like)
    return "host names are not resolved (only \"localhost\" is, as 127.0.0.1); " + examples;
  return examples;
}

// server.host: an IP literal or "localhost" (stored as 127.0.0.1).
std::optional<std::string> checked_bind_host(const std::string& text, std::string& hint) {
  if (auto address = bind_address(text)) return address;
  const bool bracketed = text.size() > 2 && text.front() == '[' && text.back() == ']';
  if (bracketed && is_ipv6(text.substr(1, text.size() - 2)))
    hint = "write the IPv6 address without brackets: " + quote(text.substr(1, text.size() - 2));
  else
    hint = bind_address_hint(text, "");
  return std::nullopt;
}

// admin.listen and api.listen: "" (the main listener), "address:port" or "[v6
// address]:port", with "localhost" stored as 127.0.0.1 like server.host. `example_port` is
// the port of the example in the hint, one that suits the key.
std::optional<std::string> checked_listen_address(const std::string& text, std::string& hint,
                                                  const std::string& example_port) {
  if (text.empty()) return text;
  std::string host, port;
  bool bracketed = false;
  if (!split_address(text, host, port, bracketed)) {
    hint = "write address:port, e.g. \"127.0.0.1:" + example_port +
           "\" or \"[::1]:" + example_port + "\"";
    return std::nullopt;
  }
  if (!is_port_text(port, 0)) {
    hint = "the port must be a number from 0 to 65535 (0 = any free port)";
    return std::nullopt;
  }
  if (bracketed) {
    if (is_ipv6(host)) return text;
    hint = "brackets hold an IPv6 address, e.g. \"[::1]:" + port + "\"";
    return std::nullopt;
  }
  if (is_ipv6(host)) {
    hint = "an IPv6 address goes in brackets: " + quote("[" + host + "]:" + port);
    return std::nullopt;
  }
  if (auto address = bind_address(host)) return *address + ":" + port;
  hint = bind_address_hint(host, port);
  return std::nullopt;
}

// "" or a path: checked when the file is read (net), here only for what no file name
// should hold.
bool is_file_path(const std::string& text) {
  return std::none_of(text.begin(), text.end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

bool is_ws_path(const std::string& text) {
  return !text.empty() && text.front() == '/' &&
         std::none_of(text.begin(), text.end(), [](unsigned char c) {
           return c <= 0x20 || c == 0x7f || c == '?' || c == '#';
         });
}

// A name of lower-case letters, digits and the characters of `punctuation`, from 1 to
// `longest` characters; on failure says why in `hint` when a fix is plain.
std::optional<std::string> checked_name(const std::string& text, size_t longest,
                                        const std::string& punctuation, std::string& hint) {
  const auto allowed = [&punctuation](char c) {
    return (c >= 'a' && c <= 'z') || is_digit(c) || punctuation.find(c) != std::string::npos;
  };
  if (!text.empty() && text.size() <= longest && std::all_of(text.begin(), text.end(), allowed))
    return text;
  const std::string lower = lower_case(text);
  if (text.size() > longest)
    hint = "it has " + std::to_string(text.size()) + " characters";
  else if (!text.empty() && std::all_of(lower.begin(), lower.end(), allowed))
    hint = "names are lower case: write " + quote(lower);
  return std::nullopt;
}

// app.mode: "echo", "gateway", "hub", or an application an embedding program registers. The
// loader cannot know which names a program registers (it does so before it starts the
// server), so it checks the form and the server refuses a name nobody registered.
std::optional<std::string> checked_app_mode(const std::string& text, std::string& hint) {
  return checked_name(text, 32, "_-", hint);
}

// cluster.node_id: "" (the server picks one at start: the loader does no I/O, and the host
// name is I/O) or a name is_valid_node_id accepts. It goes in every connection id
// ("<node_id>.<n>") and in Redis keys, hence the short, plain alphabet.
std::optional<std::string> checked_node_id(const std::string& text, std::string& hint) {
  if (text.empty() || is_valid_node_id(text)) return text;
  if (text.size() > longest_node_id)
    hint = "it has " + std::to_string(text.size()) + " characters";
  else if (text.front() == '-' || text.back() == '-')
    hint = "it starts or ends with \"-\"";
  else if (is_valid_node_id(lower_case(text)))
    hint = "names are lower case: write " + quote(lower_case(text));
  return std::nullopt;
}

// RFC 7230 token characters: what an HTTP header name may contain.
bool is_header_name(const std::string& text) {
  static const std::string punctuation = "!#$%&'*+-.^_`|~";
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return is_alpha(c) || is_digit(c) || punctuation.find(c) != std::string::npos;
  });
}

// scheme://host[:port], exactly what browsers send in Origin (no path, no trailing '/').
std::optional<std::string> checked_origin(const std::string& text) {
  const size_t separator = text.find("://");
  if (separator == std::string::npos || separator == 0 || !is_alpha(text.front()))
    return std::nullopt;
  const std::string scheme = text.substr(0, separator);
  const bool scheme_ok = std::all_of(scheme.begin(), scheme.end(), [](char c) {
    return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.';
  });
  if (!scheme_ok) return std::nullopt;
  const std::string authority = text.substr(separator + 3);
  std::string host, port;
  if (split_host_port(authority, host, port)) {
    if (!is_port_text(port, 1)) return std::nullopt;
  } else if (!(authority.size() > 2 && authority.front() == '[' && authority.back() == ']' &&
               is_ipv6(authority.substr(1, authority.size() - 2))) &&
             !is_plain_host(authority)) {
    return std::nullopt;
  }
  return text;
}

// An IPv4 or IPv6 network; a bare address becomes a /32 or /128 so that consumers always
// see address/prefix.
std::optional<std::string> checked_cidr(const std::string& text) {
  const size_t slash = text.find('/');
  const std::string address = text.substr(0, slash);
  in_addr v4;
  unsigned longest_prefix = 0;
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1)
    longest_prefix = 32;
  else if (is_ipv6(address))
    longest_prefix = 128;
  else
    return std::nullopt;
  if (slash == std::string::npos) return address + "/" + std::to_string(longest_prefix);
  const std::string prefix = text.substr(slash + 1);
  if (prefix.empty() || prefix.size() > 3 || !std::all_of(prefix.begin(), prefix.end(), is_digit))
    return std::nullopt;
  if (std::stoul(prefix) > longest_prefix) return std::nullopt;
  return address + "/" + std::to_string(std::stoul(prefix));
}

// An IP literal as its family and bytes; an IPv4-mapped IPv6 address counts as the IPv4
// one, since that is the address such a socket takes.
struct ip_address {
  int family = AF_INET;
  std::array<unsigned char, 16> bytes{};
};

std::optional<ip_address> parse_ip(const std::string& text) {
  ip_address ip;
  in_addr v4;
  in6_addr v6;
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    std::memcpy(ip.bytes.data(), &v4, sizeof v4);
    return ip;
  }
  if (inet_pton(AF_INET6, text.c_str(), &v6) != 1) return std::nullopt;
  if (IN6_IS_ADDR_V4MAPPED(&v6)) {
    std::memcpy(ip.bytes.data(), v6.s6_addr + 12, 4);
    return ip;
  }
  ip.family = AF_INET6;
  std::memcpy(ip.bytes.data(), v6.s6_addr, sizeof v6.s6_addr);
  return ip;
}

bool is_wildcard(const ip_address& ip) {
  return std::all_of(ip.bytes.begin(), ip.bytes.end(), [](unsigned char b) { return b == 0; });
}

// Whether two listeners on these addresses and one port collide at bind: the same address,
// or a wildcard of the family ("0.0.0.0" takes every IPv4 address). "::" takes IPv4 too:
// Linux binds it dual-stack unless net.ipv6.bindv6only is set, and Asio does not change that.
bool addresses_overlap(const ip_address& a, const ip_address& b) {
  if (a.family == b.family) return a.bytes == b.bytes || is_wildcard(a) || is_wildcard(b);
  return is_wildcard(a.family == AF_INET6 ? a : b);
}

// ---------------------------------------------------------------------------------------
// http(s) URLs (upstream.url, events.url). Parsed by hand: std::regex breaks the ASan
// build with GCC 12, and a hand parser can say which part is wrong.

bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// RFC 3986 pchar and '/' (and '?' in a query), with '%' only as the start of "%XX": what a
// path or query may hold as it goes on the request line.
std::optional<std::string> bad_url_character(const std::string& text, bool in_query) {
  static const std::string allowed = "-._~!$&'()*+,;=:@/";
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 2 < text.size() && is_hex(text[i + 1]) && is_hex(text[i + 2])) {
        i += 2;
        continue;
      }
      return std::string("a \"%\" not followed by two hex digits (write \"%25\" for \"%\")");
    }
    if (is_alpha(c) || is_digit(c) || allowed.find(c) != std::string::npos ||
        (in_query && c == '?'))
      continue;
    char code[8];
    std::snprintf(code, sizeof code, "%%%02X", static_cast<unsigned char>(c));
    const unsigned char byte = static_cast<unsigned char>(c);
    const std::string shown = byte == ' ' ? "a space"
                              : byte > 0x20 && byte < 0x7f
                                  ? quote(std::string(1, c))
                                  : "a control character or non-ASCII byte";
    return "a character that must be percent-encoded: " + shown + " (write \"" + code + "\")";
  }
  return std::nullopt;
}

// A host name: dot-separated labels of letters, digits, '-' and '_' (container service
// names have them), 1 to 63 characters each, not starting or ending with '-'.
bool is_host_name(const std::string& text) {
  if (text.empty() || text.size() > 253) return false;
  size_t start = 0;
  while (true) {
    const size_t dot = std::min(text.find('.', start), text.size());
    const std::string label = text.substr(start, dot - start);
    const bool label_ok =
        !label.empty() && label.size() <= 63 && label.front() != '-' && label.back() != '-' &&
        std::all_of(label.begin(), label.end(),
                    [](char c) { return is_alpha(c) || is_digit(c) || c == '-' || c == '_'; });
    if (!label_ok) return false;
    if (dot == text.size()) return true;
    start = dot + 1;
  }
}

// A URL as an error shows it: a password in "user:password@" is not printed, with or
// without a scheme in front.
std::string without_credentials(const std::string& url) {
  const size_t separator = url.find("://");
  const size_t start = separator == std::string::npos ? 0 : separator + 3;
  const size_t authority_end = std::min(url.find_first_of("/?#", start), url.size());
  const size_t at = url.rfind('@', authority_end);
  if (at == std::string::npos || at < start) return url;
  return url.substr(0, start) + redacted + url.substr(at);
}

// A URL's authority split into host and port: "[v6]:port", "[v6]", "host:port", "host"
// (for the last two, the port is whatever follows the first ":"; the caller checks it).
// nullopt when the brackets are wrong, with `problem` showing `example`.
struct authority_parts {
  std::string host;  // IPv6 without its brackets
  std::string port;
  bool has_port = false;  // a ":" followed the host (the port may still be empty)
};

std::optional<authority_parts> split_authority(const std::string& authority,
                                               const std::string& example,
                                               const std::string& after_host,
                                               std::string& problem) {
  authority_parts parts;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string::npos || !is_ipv6(authority.substr(1, close - 1))) {
      problem = "brackets hold an IPv6 address, e.g. " + quote(example);
      return std::nullopt;
    }
    parts.host = authority.substr(1, close - 1);
    const std::string after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':') {
      problem = "after \"]\" comes \":port\" or " + after_host;
      return std::nullopt;
    }
    parts.has_port = !after.empty();
    if (parts.has_port) parts.port = after.substr(1);
    return parts;
  }
  const size_t colon = authority.find(':');
  parts.host = authority.substr(0, colon);
  parts.has_port = colon != std::string::npos;
  if (parts.has_port) parts.port = authority.substr(colon + 1);
  return parts;
}

// cluster.redis_url: redis://host[:port][/db], host a name, an IPv4 address or a bracketed
// IPv6 one. No credentials in the URL (the file is not the place for a password) and no
// rediss:// (TLS to Redis is not built).
struct redis_address {
  std::string host;
  uint16_t port = 6379;
  unsigned database = 0;
};

std::optional<redis_address> parse_redis_url(const std::string& text, std::string& hint) {
  const std::string scheme = "redis://";
  if (lower_case(text.substr(0, scheme.size())) != scheme) {
    hint = lower_case(text.substr(0, 9)) == "rediss://"
               ? "TLS to Redis (rediss://) is not supported: reach Redis over a private network"
               : "the scheme must be redis://, e.g. \"redis://127.0.0.1:6379/0\"";
    return std::nullopt;
  }
  const std::string rest = text.substr(scheme.size());
  const size_t authority_end = std::min(rest.find('/'), rest.size());
  const std::string authority = rest.substr(0, authority_end);
  if (authority.find('@') != std::string::npos) {
    hint = "no user:password@ in the URL: set WSVISOR_CLUSTER_REDIS_PASSWORD";
    return std::nullopt;
  }
  const auto parts = split_authority(authority, "redis://[::1]:6379", "\"/db\"", hint);
  if (!parts) return std::nullopt;
  redis_address address;
  address.host = parts->host;
  if (address.host.empty() || !(is_ipv6(address.host) || is_host_name(address.host))) {
    hint = "the host is missing or not a host name (write redis://host[:port][/db])";
    return std::nullopt;
  }
  if (parts->has_port) {
    if (!is_port_text(parts->port, 1)) {
      hint = "the port is 1 to 65535";
      return std::nullopt;
    }
    address.port = static_cast<uint16_t>(std::stoul(parts->port));
  }
  std::string database = authority_end < rest.size() ? rest.substr(authority_end + 1) : "";
  if (!database.empty()) {
    if (database.size() > 5 || !std::all_of(database.begin(), database.end(), is_digit) ||
        std::stoul(database) > 15) {
      hint = "the database after \"/\" is a number from 0 to 15 (Redis's default count)";
      return std::nullopt;
    }
    address.database = static_cast<unsigned>(std::stoul(database));
  }
  return address;
}

// What kind of URL a key takes: a base (upstream.url: the hook paths are appended, so no
// query) or a full one (events.url: the request goes to it as it is).
struct url_rules {
  bool base = false;
  std::string credentials_fix;  // how to authenticate instead of user:password@
};

// Splits and checks an http(s) URL; on failure returns nullopt and says what is wrong in
// `problem`.
std::optional<http_url> parse_http_url(const std::string& text, const url_rules& rules,
                                       std::string& problem) {
  const size_t separator = text.find("://");
  if (separator == std::string::npos) {
    const std::string before_colon = lower_case(text.substr(0, text.find(':')));
    if (before_colon == "http" || before_colon == "https")
      problem = "the scheme is followed by \"://\", e.g. \"" + before_colon + "://host:8000\"";
    else
      problem = "it has no scheme: write \"http://" + without_credentials(text) +
                "\" or \"https://" + without_credentials(text) + "\"";
    return std::nullopt;
  }
  http_url url;
  url.scheme = lower_case(text.substr(0, separator));
  if (url.scheme != "http" && url.scheme != "https") {
    problem = "the scheme must be http:// or https://, not " + quote(text.substr(0, separator + 3));
    return std::nullopt;
  }
  const std::string rest = text.substr(separator + 3);
  const size_t authority_end = std::min(rest.find_first_of("/?#"), rest.size());
  const std::string authority = rest.substr(0, authority_end);
  std::string tail = rest.substr(authority_end);

  if (authority.find('@') != std::string::npos) {
    problem =
        "user:password@ is not supported (--check-config prints the URL): " + rules.credentials_fix;
    return std::nullopt;
  }
  const auto parts = split_authority(authority, "http://[::1]:8000", "the path", problem);
  if (!parts) return std::nullopt;
  url.host = parts->host;
  const std::string& port = parts->port;
  const bool has_port = parts->has_port;
  if (authority.empty() || authority.front() != '[') {
    if (has_port) {
      if (port.find(':') != std::string::npos) {
        // "::1:8000" reads best as [::1]:8000, the way admin.listen suggests it.
        const size_t last = authority.rfind(':');
        const std::string bracketed =
            is_ipv6(authority.substr(0, last)) && is_port_text(authority.substr(last + 1), 1)
                ? "[" + authority.substr(0, last) + "]" + authority.substr(last)
                : "[" + authority + "]";
        problem =
            "an IPv6 address goes in brackets: " + quote(url.scheme + "://" + bracketed + tail);
        return std::nullopt;
      }
    }
    if (url.host.empty()) {
      problem = "the host is missing (write " + url.scheme + "://host[:port][/path])";
      return std::nullopt;
    }
    const bool numeric = std::all_of(url.host.begin(), url.host.end(),
                                     [](char c) { return is_digit(c) || c == '.'; });
    in_addr v4;
    if (numeric && inet_pton(AF_INET, url.host.c_str(), &v4) != 1) {
      problem = quote(url.host) + " is not an IPv4 address";
      return std::nullopt;
    }
    if (!numeric && !is_host_name(url.host)) {
      problem = quote(url.host) +
                " is not a host name (dot-separated labels of letters, digits, \"-\" and \"_\"), "
                "an IPv4 address or an IPv6 address in brackets";
      return std::nullopt;
    }
  }
  if (has_port && !is_port_text(port, 1)) {
    problem = port.empty() ? "the port after \":\" is missing"
                           : "the port must be a number from 1 to 65535, got " + quote(port);
    return std::nullopt;
  }
  url.port = has_port ? static_cast<uint16_t>(std::stoul(port)) : url.scheme == "https" ? 443 : 80;

  const size_t hash = tail.find('#');
  if (hash != std::string::npos) {
    problem =
        "a fragment (" + quote(tail.substr(hash)) + ") is never sent to a server: leave it out";
    return std::nullopt;
  }
  const size_t question = tail.find('?');
  if (question != std::string::npos) {
    if (rules.base) {
      problem = "a base URL takes no query (" + quote(tail.substr(question)) +
                "): the hook paths are appended to it";
      return std::nullopt;
    }
    url.query = tail.substr(question + 1);
    tail.resize(question);
  }
  url.path = tail;
  if (auto bad = bad_url_character(url.path, false)) {
    problem = "the path has " + *bad;
    return std::nullopt;
  }
  if (auto bad = bad_url_character(url.query, true)) {
    problem = "the query has " + *bad;
    return std::nullopt;
  }
  return url;
}

// ---------------------------------------------------------------------------------------
// The key table.

// Names where a node came from: "wsvisor.toml:12", "environment variable X", "--set k=v".
using where_of = std::function<std::string(const toml::node&)>;

// table_list: hub.namespaces, an array of tables that only a file can hold (the loader
// reads it itself, see settings_builder::assign_namespaces).
enum class value_kind { text, integer, real, duration, boolean, text_list, secret, table_list };

// How a refused text is shown in an error (after "got", and in "--set key=value"): as it is, or
// with a part that must not be printed hidden.
using text_shown = std::function<std::string(const std::string&)>;

struct key_spec {
  std::string section;
  std::string name;
  value_kind kind;
  // Validates the node and stores it; throws config_error naming the key.
  std::function<void(settings&, const toml::node&, const where_of&)> assign;
  // The current value as a TOML value.
  std::function<std::string(const settings&)> render;
  // Set for keys whose text may hold what must not be printed (nullptr: shown as it is).
  text_shown shown = nullptr;

  std::string full_name() const { return section + "." + name; }
  std::string environment_variable() const {
    std::string variable = "WSVISOR_" + section + "_" + name;
    std::transform(variable.begin(), variable.end(), variable.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return variable;
  }
};

[[noreturn]] void fail_expected(const where_of& where, const toml::node& node,
                                const std::string& key, const std::string& expected) {
  fail(where(node), key, "expected " + expected + ", got " + describe(node));
}

template <class Field>
key_spec integer_key(std::string section, std::string name, Field field, int64_t lowest,
                     int64_t highest, std::string expected) {
  key_spec spec{section, name, value_kind::integer, {}, {}};
  spec.assign = [key = spec.full_name(), field, lowest, highest, expected](
                    settings& s, const toml::node& node, const where_of& where) {
    const auto value = node.value_exact<int64_t>();
    if (!value || *value < lowest || *value > highest) fail_expected(where, node, key, expected);
    field(s) = static_cast<std::remove_reference_t<decltype(field(s))>>(*value);
  };
  spec.render = [field](const settings& s) { return std::to_string(field(s)); };
  return spec;
}

template <class Field>
key_spec real_key(std::string section, std::string name, Field field,
                  std::function<bool(double)> valid, std::string expected) {
  key_spec spec{section, name, value_kind::real, {}, {}};
  spec.assign = [key = spec.full_name(), field, valid, expected](
                    settings& s, const toml::node& node, const where_of& where) {
    // An integer is a fine rate too: "accept_rate = 2000".
    std::optional<double> value = node.value_exact<double>();
    if (auto integer = node.value_exact<int64_t>()) value = static_cast<double>(*integer);
    if (!value || !std::isfinite(*value) || !valid(*value))
      fail_expected(where, node, key, expected);
    field(s) = *value;
  };
  spec.render = [field](const settings& s) { return format_real(field(s)); };
  return spec;
}

template <class Field>
key_spec duration_key(std::string section, std::string name, Field field,
                      std::function<bool(duration)> valid, std::string expected) {
  key_spec spec{section, name, value_kind::duration, {}, {}};
  spec.assign = [key = spec.full_name(), field, valid, expected](
                    settings& s, const toml::node& node, const where_of& where) {
    // Checked before the unit: "-1s" has one, and a number gets the sign fixed first.
    const auto refuse_negative = [&] {
      fail(where(node), key,
           "must not be negative, got " + describe(node) + ": expected " + expected);
    };
    const auto text = node.value_exact<std::string>();
    if (!text) {
      if (node.value_exact<int64_t>().value_or(0) < 0 || node.value_exact<double>().value_or(0) < 0)
        refuse_negative();
      std::string problem =
          "expected " + expected + " as a string with a unit, got " + describe(node);
      if (node.is_number()) problem += ": write \"" + describe(node) + "s\" (or ms, m, h)";
      fail(where(node), key, problem);
    }
    std::string problem;
    const auto value = detail::try_parse_duration(*text, problem);
    if (!value) fail(where(node), key, problem);
    if (*value < duration::zero()) refuse_negative();
    if (!valid(*value)) fail_expected(where, node, key, expected);
    field(s) = *value;
  };
  spec.render = [field](const settings& s) { return quote(format_duration(field(s))); };
  return spec;
}

// Checks a text value: returns what to store (possibly rewritten: "localhost" becomes
// "127.0.0.1"), or nullopt with a hint on what to write instead ("" for none).
using text_check = std::function<std::optional<std::string>(const std::string&, std::string&)>;

// gateway.connect_path and gateway.message_path: appended to upstream.url, so a path of the
// URL rules ("" only where it turns the hook off).
text_check hook_path_check(bool may_be_empty) {
  return [may_be_empty](const std::string& text, std::string& hint) -> std::optional<std::string> {
    if (text.empty() && may_be_empty) return text;
    if (text.empty() || text.front() != '/') {
      if (!text.empty()) hint = "it is appended to upstream.url: write " + quote("/" + text);
      return std::nullopt;
    }
    if (auto bad = bad_url_character(text, false)) {
      hint = "the path has " + *bad;
      return std::nullopt;
    }
    return text;
  };
}

// upstream.url and events.url: "" (none) or a URL parse_http_url accepts. A base URL is
// stored without a trailing "/", so that appending "/ws/message" gives one slash, not two
// (a backend may route "//ws/message" elsewhere); the scheme is stored in lower case.
text_check url_check(url_rules rules) {
  return [rules](const std::string& text, std::string& hint) -> std::optional<std::string> {
    if (text.empty()) return text;
    const auto url = parse_http_url(text, rules, hint);
    if (!url) return std::nullopt;
    std::string stored = url->scheme + text.substr(url->scheme.size());
    if (rules.base)
      while (!stored.empty() && stored.back() == '/') stored.pop_back();
    return stored;
  };
}

template <class Field>
key_spec checked_text_key(std::string section, std::string name, Field field, text_check check,
                          std::string expected, text_shown shown = nullptr) {
  key_spec spec{section, name, value_kind::text, {}, {}};
  spec.assign = [key = spec.full_name(), field, check, expected, shown](
                    settings& s, const toml::node& node, const where_of& where) {
    const auto text = node.value_exact<std::string>();
    std::string hint;
    const auto value = text ? check(*text, hint) : std::nullopt;
    const std::string got = text && shown ? quote(shown(*text)) : describe(node);
    if (!value)
      fail(where(node), key,
           "expected " + expected + ", got " + got + (hint.empty() ? "" : ": " + hint));
    field(s) = *value;
  };
  spec.render = [field](const settings& s) { return quote(field(s)); };
  spec.shown = shown;
  return spec;
}

template <class Field>
key_spec text_key(std::string section, std::string name, Field field,
                  std::function<bool(const std::string&)> valid, std::string expected) {
  return checked_text_key(
      std::move(section), std::move(name), field,
      [valid](const std::string& text, std::string&) {
        return valid(text) ? std::optional<std::string>(text) : std::nullopt;
      },
      std::move(expected));
}

template <class Field>
key_spec choice_key(std::string section, std::string name, Field field,
                    std::vector<std::string> choices) {
  std::string expected = "one of";
  for (const auto& choice : choices)
    expected += (&choice == &choices.front() ? " " : ", ") + quote(choice);
  return text_key(
      std::move(section), std::move(name), field,
      [choices](const std::string& text) {
        return std::find(choices.begin(), choices.end(), text) != choices.end();
      },
      expected);
}

template <class Field>
key_spec list_key(std::string section, std::string name, Field field,
                  std::function<std::optional<std::string>(const std::string&)> checked,
                  std::string expected) {
  key_spec spec{section, name, value_kind::text_list, {}, {}};
  spec.assign = [key = spec.full_name(), field, checked, expected](
                    settings& s, const toml::node& node, const where_of& where) {
    const toml::array* array = node.as_array();
    if (array == nullptr) fail_expected(where, node, key, "an array of strings, each " + expected);
    std::vector<std::string> values;
    for (size_t i = 0; i < array->size(); ++i) {
      const toml::node& element = *array->get(i);
      const auto text = element.value_exact<std::string>();
      const auto value = text ? checked(*text) : std::nullopt;
      if (!value) fail_expected(where, element, key + "[" + std::to_string(i) + "]", expected);
      values.push_back(*value);
    }
    field(s) = std::move(values);
  };
  spec.render = [field](const settings& s) {
    std::string text = "[";
    for (const auto& value : field(s)) text += (text.size() > 1 ? ", " : "") + quote(value);
    return text + "]";
  };
  return spec;
}

template <class Field>
key_spec flag_key(std::string section, std::string name, Field field) {
  key_spec spec{section, name, value_kind::boolean, {}, {}};
  spec.assign = [key = spec.full_name(), field](settings& s, const toml::node& node,
                                                const where_of& where) {
    const auto value = node.value_exact<bool>();
    if (!value) fail_expected(where, node, key, "true or false");
    field(s) = *value;
  };
  spec.render = [field](const settings& s) { return field(s) ? "true" : "false"; };
  return spec;
}

// What a secret is used as: anything (a signing key), or text that goes in an HTTP header
// (a bearer token wsvisor sends, a key a client sends), where a space, a control character
// or a non-ASCII byte would break the request or never match.
enum class secret_use { any, header_value };

// Secrets are assigned from the environment only (the loader enforces it); the value is
// never shown, not even in an error.
template <class Field>
key_spec secret_key(std::string section, std::string name, Field field,
                    secret_use use = secret_use::any) {
  key_spec spec{section, name, value_kind::secret, {}, {}};
  spec.assign = [key = spec.full_name(), variable = spec.environment_variable(), field, use](
                    settings& s, const toml::node& node, const where_of& where) {
    const std::string value = node.value_or(std::string());
    const bool header_safe = std::all_of(value.begin(), value.end(), [](char c) {
      return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
    });
    if (use == secret_use::header_value && !header_safe)
      fail(where(node), key,
           "holds a space, a control character or a non-ASCII byte, which cannot go in an "
           "HTTP header (the value is not shown): set " +
               variable + " to visible ASCII characters only, e.g. $(openssl rand -hex 32)");
    field(s) = value;
  };
  spec.render = [field](const settings& s) { return quote(field(s).empty() ? "" : redacted); };
  return spec;
}

constexpr int64_t largest_integer = std::numeric_limits<int64_t>::max();
constexpr int64_t most_threads = 1024;

bool positive(duration d) {
  return d > duration::zero();
}
bool not_negative(duration d) {
  return d >= duration::zero();
}

// The ports that examples of admin.listen and api.listen suggest: apart from 8080, the main
// listener's default, and from each other.
constexpr uint16_t admin_example_port = 9090;
constexpr uint16_t api_example_port = 9091;

text_check listen_check(uint16_t example_port) {
  return [example_port](const std::string& text, std::string& hint) {
    return checked_listen_address(text, hint, std::to_string(example_port));
  };
}

// The options of one hub namespace (CONTRACT 13.2, Centrifugo's names) as keys of
// `section`: "hub" for the default namespace's, which are keys of [hub] like any other,
// and "hub.namespaces[i]" for the i-th [[hub.namespaces]] table (then `ns` picks that
// namespace), so that both are checked, and printed, by the same specs.
template <class Namespace>
std::vector<key_spec> namespace_option_keys(const std::string& section, Namespace ns) {
  const auto flag = [&section, ns](const std::string& name, bool hub_namespace::*member) {
    return flag_key(
        section, name, [ ns, member ](auto& s) -> auto& { return ns(s).*member; });
  };
  // clang-format off
  return {
    flag("presence", &hub_namespace::presence),
    flag("join_leave", &hub_namespace::join_leave),
    integer_key(section, "history_size",
                [ns](auto& s) -> auto& { return ns(s).history_size; }, 0, 1000000,
                "an integer from 0 to 1000000 (0 = no history)"),
    duration_key(section, "history_ttl",
                 [ns](auto& s) -> auto& { return ns(s).history_ttl; }, not_negative,
                 "a duration (\"0s\" = no history)"),
    flag("force_recovery", &hub_namespace::force_recovery),
    flag("allow_subscribe_for_client", &hub_namespace::allow_subscribe_for_client),
    flag("allow_subscribe_for_anonymous", &hub_namespace::allow_subscribe_for_anonymous),
    flag("allow_publish_for_subscriber", &hub_namespace::allow_publish_for_subscriber),
    flag("allow_publish_for_client", &hub_namespace::allow_publish_for_client),
    flag("allow_presence_for_subscriber", &hub_namespace::allow_presence_for_subscriber),
    flag("allow_history_for_subscriber", &hub_namespace::allow_history_for_subscriber),
    flag("subscribe_proxy_enabled", &hub_namespace::subscribe_proxy_enabled),
    flag("publish_proxy_enabled", &hub_namespace::publish_proxy_enabled),
  };
  // clang-format on
}

// The section of the i-th [[hub.namespaces]] table, as messages name its keys.
std::string namespace_section(size_t i) {
  return "hub.namespaces[" + std::to_string(i) + "]";
}

std::vector<key_spec> namespace_option_keys(size_t i) {
  return namespace_option_keys(
      namespace_section(i), [i](auto& s) -> auto& { return s.hub.namespaces[i]; });
}

// A namespace name: what goes before ":" in a channel name.
bool is_namespace_name(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return is_alpha(c) || is_digit(c) || c == '_' || c == '-';
  });
}

// hub.namespaces: read from [[hub.namespaces]] tables by the file layer only (the
// environment and --set refuse it), printed as those tables. It must be the last key of
// [hub] in the table: what render_keys prints after a [[hub.namespaces]] table would be
// in that table.
key_spec namespaces_key() {
  key_spec spec{"hub", "namespaces", value_kind::table_list, {}, {}};
  spec.assign = [](settings&, const toml::node& node, const where_of& where) {
    fail(where(node), "hub.namespaces", "is read by the file layer only");  // never reached
  };
  spec.render = [](const settings& s) {
    if (s.hub.namespaces.empty())
      return std::string("# hub.namespaces: none (each [[hub.namespaces]] table adds one)\n");
    std::string text;
    for (size_t i = 0; i < s.hub.namespaces.size(); ++i) {
      text += "\n[[hub.namespaces]]\nname = " + quote(s.hub.namespaces[i].name) + "\n";
      for (const auto& option : namespace_option_keys(i))
        text += option.name + " = " + option.render(s) + "\n";
    }
    return text;
  };
  return spec;
}

// The hub's proxy paths (CONTRACT 13.4), appended to upstream.url like the gateway's.
template <class Field>
key_spec proxy_path_key(const std::string& name, Field field, const std::string& example) {
  return checked_text_key("hub", name, field, hook_path_check(true),
                          "\"\" (off) or a path beginning with \"/\", e.g. " + quote(example));
}

const std::vector<key_spec>& key_table() {
  static const std::vector<key_spec> keys = [] {
    const std::string listen_expected =
        "\"\" (the main listener) or host:port with an IP address as host";
    const std::string positive_integer = "a positive integer";
    const std::string non_negative_integer = "a non-negative integer";
    const std::string positive_duration = "a duration above zero";
    const std::string threads = "an integer from 0 to 1024 (0 = one per core)";
    // clang-format off
    std::vector<key_spec> table{
      checked_text_key("server", "host", [](auto& s) -> auto& { return s.server.host; },
                       checked_bind_host, "an IP address (or \"localhost\")"),
      integer_key("server", "port", [](auto& s) -> auto& { return s.server.port; }, 0, 65535,
                  "an integer from 0 to 65535 (0 = any free port)"),
      text_key("server", "ws_path", [](auto& s) -> auto& { return s.server.ws_path; },
               is_ws_path, "a path beginning with \"/\", e.g. \"/ws\""),
      integer_key("server", "io_threads", [](auto& s) -> auto& { return s.server.io_threads; },
                  0, most_threads, threads),
      integer_key("server", "actor_threads",
                  [](auto& s) -> auto& { return s.server.actor_threads; }, 0, most_threads,
                  threads),
      choice_key("server", "scheduler", [](auto& s) -> auto& { return s.server.scheduler; },
                 {"io", "pool"}),
      duration_key("server", "handshake_timeout",
                   [](auto& s) -> auto& { return s.server.handshake_timeout; }, positive,
                   positive_duration),
      integer_key("server", "max_message_bytes",
                  [](auto& s) -> auto& { return s.server.max_message_bytes; }, 1,
                  largest_integer, positive_integer),
      list_key("server", "allowed_origins",
               [](auto& s) -> auto& { return s.server.allowed_origins; }, checked_origin,
               "an origin scheme://host[:port], e.g. \"https://example.com\" (no path)"),
      list_key("server", "trusted_proxies",
               [](auto& s) -> auto& { return s.server.trusted_proxies; }, checked_cidr,
               "an IPv4 or IPv6 address or CIDR, e.g. \"10.0.0.0/8\""),
      text_key("server", "tls_cert_file",
               [](auto& s) -> auto& { return s.server.tls_cert_file; }, is_file_path,
               "a file path (no control characters) of a PEM certificate chain (\"\" = no TLS)"),
      text_key("server", "tls_key_file", [](auto& s) -> auto& { return s.server.tls_key_file; },
               is_file_path,
               "a file path (no control characters) of the certificate's PEM private key "
               "(\"\" = no TLS)"),
      flag_key("server", "compression", [](auto& s) -> auto& { return s.server.compression; }),
      integer_key("server", "compression_threshold",
                  [](auto& s) -> auto& { return s.server.compression_threshold; }, 0,
                  largest_integer, non_negative_integer),
      integer_key("server", "compression_window_bits",
                  [](auto& s) -> auto& { return s.server.compression_window_bits; }, 9, 15,
                  "an integer from 9 to 15 (RFC 7692's max_window_bits; zlib cannot do 8)"),
      integer_key("server", "compression_mem_level",
                  [](auto& s) -> auto& { return s.server.compression_mem_level; }, 1, 9,
                  "an integer from 1 to 9 (zlib's memLevel)"),

      choice_key("auth", "mode", [](auto& s) -> auto& { return s.auth.mode; },
                 {"none", "header", "jwt"}),
      text_key("auth", "user_header", [](auto& s) -> auto& { return s.auth.user_header; },
               is_header_name, "an HTTP header name, e.g. \"X-User-Id\""),
      secret_key("auth", "jwt_secret", [](auto& s) -> auto& { return s.auth.jwt_secret; }),
      flag_key("auth", "allow_weak_secret",
               [](auto& s) -> auto& { return s.auth.allow_weak_secret; }),

      integer_key("limits", "max_connections",
                  [](auto& s) -> auto& { return s.limits.max_connections; }, 1,
                  largest_integer, positive_integer),
      integer_key("limits", "soft_connections",
                  [](auto& s) -> auto& { return s.limits.soft_connections; }, 0,
                  largest_integer,
                  "a non-negative integer (0 = 90 % of limits.max_connections)"),
      integer_key("limits", "max_per_user", [](auto& s) -> auto& { return s.limits.max_per_user; },
                  0, largest_integer, "a non-negative integer (0 = off)"),
      integer_key("limits", "max_per_ip", [](auto& s) -> auto& { return s.limits.max_per_ip; },
                  0, largest_integer, "a non-negative integer (0 = off)"),
      real_key("limits", "accept_rate", [](auto& s) -> auto& { return s.limits.accept_rate; },
               [](double rate) { return rate > 0; }, "a number of accepts per second above 0"),
      integer_key("limits", "accept_burst", [](auto& s) -> auto& { return s.limits.accept_burst; },
                  1, largest_integer, positive_integer),
      integer_key("limits", "max_pending_handshakes",
                  [](auto& s) -> auto& { return s.limits.max_pending_handshakes; }, 1,
                  largest_integer, positive_integer),
      real_key("limits", "messages_per_second",
               [](auto& s) -> auto& { return s.limits.messages_per_second; },
               [](double rate) { return rate >= 0; },
               "a number of messages per second >= 0 (0 = off)"),
      integer_key("limits", "messages_burst",
                  [](auto& s) -> auto& { return s.limits.messages_burst; }, 1, largest_integer,
                  positive_integer),
      integer_key("limits", "send_queue_bytes",
                  [](auto& s) -> auto& { return s.limits.send_queue_bytes; }, 1,
                  largest_integer, positive_integer),
      duration_key("limits", "admission_timeout",
                   [](auto& s) -> auto& { return s.limits.admission_timeout; }, positive,
                   positive_duration),
      duration_key("limits", "retry_after", [](auto& s) -> auto& { return s.limits.retry_after; },
                   [](duration d) { return d >= std::chrono::seconds(1); },
                   "a duration of at least 1s (Retry-After is in whole seconds)"),
      choice_key("limits", "user_overflow",
                 [](auto& s) -> auto& { return s.limits.user_overflow; },
                 {"reject", "evict_idle"}),

      duration_key("janitor", "sweep_interval",
                   [](auto& s) -> auto& { return s.janitor.sweep_interval; }, positive,
                   positive_duration),
      duration_key("janitor", "ping_interval",
                   [](auto& s) -> auto& { return s.janitor.ping_interval; }, positive,
                   positive_duration),
      duration_key("janitor", "pong_timeout",
                   [](auto& s) -> auto& { return s.janitor.pong_timeout; }, positive,
                   positive_duration),
      duration_key("janitor", "probe_timeout",
                   [](auto& s) -> auto& { return s.janitor.probe_timeout; }, positive,
                   positive_duration),
      duration_key("janitor", "idle_timeout",
                   [](auto& s) -> auto& { return s.janitor.idle_timeout; }, not_negative,
                   "a duration (\"0s\" = off)"),
      duration_key("janitor", "max_lifetime",
                   [](auto& s) -> auto& { return s.janitor.max_lifetime; }, not_negative,
                   "a duration (\"0s\" = off)"),
      duration_key("janitor", "close_timeout",
                   [](auto& s) -> auto& { return s.janitor.close_timeout; }, positive,
                   positive_duration),

      integer_key("supervision", "connection_restarts",
                  [](auto& s) -> auto& { return s.supervision.connection_restarts; }, 0,
                  largest_integer, non_negative_integer),
      duration_key("supervision", "connection_restart_period",
                   [](auto& s) -> auto& { return s.supervision.connection_restart_period; },
                   positive, positive_duration),
      integer_key("supervision", "service_restarts",
                  [](auto& s) -> auto& { return s.supervision.service_restarts; }, 0,
                  largest_integer, non_negative_integer),
      duration_key("supervision", "service_restart_period",
                   [](auto& s) -> auto& { return s.supervision.service_restart_period; },
                   positive, positive_duration),
      duration_key("supervision", "backoff_min",
                   [](auto& s) -> auto& { return s.supervision.backoff_min; }, not_negative,
                   "a duration (\"0s\" = restart at once)"),
      duration_key("supervision", "backoff_max",
                   [](auto& s) -> auto& { return s.supervision.backoff_max; }, not_negative,
                   "a duration"),

      duration_key("shutdown", "drain_timeout",
                   [](auto& s) -> auto& { return s.shutdown.drain_timeout; }, positive,
                   positive_duration),
      duration_key("shutdown", "drain_spread",
                   [](auto& s) -> auto& { return s.shutdown.drain_spread; }, not_negative,
                   "a duration (\"0s\" = close all at once)"),

      choice_key("log", "level", [](auto& s) -> auto& { return s.log.level; },
                 {"trace", "debug", "info", "warn", "error", "critical", "off"}),
      choice_key("log", "format", [](auto& s) -> auto& { return s.log.format; },
                 {"text", "json"}),

      checked_text_key("admin", "listen", [](auto& s) -> auto& { return s.admin.listen; },
                       listen_check(admin_example_port), listen_expected),
      secret_key("admin", "token", [](auto& s) -> auto& { return s.admin.token; }),
      flag_key("admin", "tls", [](auto& s) -> auto& { return s.admin.tls; }),

      flag_key("faults", "enabled", [](auto& s) -> auto& { return s.faults.enabled; }),

      checked_text_key("app", "mode", [](auto& s) -> auto& { return s.app.mode; },
                       checked_app_mode,
                       "\"echo\", \"gateway\", \"hub\" or the name of an application that an "
                       "embedding program registers (1 to 32 characters of a-z, 0-9, \"_\" and "
                       "\"-\")"),

      checked_text_key("upstream", "url", [](auto& s) -> auto& { return s.upstream.url; },
                       url_check({true, "set WSVISOR_UPSTREAM_TOKEN to send a bearer token"}),
                       "\"\" or an http:// or https:// base URL, e.g. \"http://127.0.0.1:8000\"",
                       without_credentials),
      duration_key("upstream", "timeout", [](auto& s) -> auto& { return s.upstream.timeout; },
                   positive, positive_duration),
      integer_key("upstream", "max_inflight",
                  [](auto& s) -> auto& { return s.upstream.max_inflight; }, 1, largest_integer,
                  positive_integer),
      integer_key("upstream", "per_connection_inflight",
                  [](auto& s) -> auto& { return s.upstream.per_connection_inflight; }, 1,
                  largest_integer, positive_integer),
      integer_key("upstream", "queue", [](auto& s) -> auto& { return s.upstream.queue; }, 1,
                  largest_integer, positive_integer),
      integer_key("upstream", "retries", [](auto& s) -> auto& { return s.upstream.retries; }, 0,
                  10, "an integer from 0 to 10"),
      duration_key("upstream", "backoff_min",
                   [](auto& s) -> auto& { return s.upstream.backoff_min; }, not_negative,
                   "a duration (\"0s\" = retry at once)"),
      duration_key("upstream", "backoff_max",
                   [](auto& s) -> auto& { return s.upstream.backoff_max; }, not_negative,
                   "a duration"),
      integer_key("upstream", "breaker_failures",
                  [](auto& s) -> auto& { return s.upstream.breaker_failures; }, 1,
                  largest_integer, positive_integer),
      duration_key("upstream", "breaker_window",
                   [](auto& s) -> auto& { return s.upstream.breaker_window; }, positive,
                   positive_duration),
      duration_key("upstream", "breaker_open",
                   [](auto& s) -> auto& { return s.upstream.breaker_open; }, positive,
                   positive_duration),
      list_key("upstream", "forward_headers",
               [](auto& s) -> auto& { return s.upstream.forward_headers; },
               [](const std::string& text) {
                 return is_header_name(text) ? std::optional<std::string>(text) : std::nullopt;
               },
               "an HTTP header name, e.g. \"Cookie\""),
      integer_key("upstream", "max_response_bytes",
                  [](auto& s) -> auto& { return s.upstream.max_response_bytes; }, 1,
                  largest_integer, positive_integer),
      secret_key("upstream", "token", [](auto& s) -> auto& { return s.upstream.token; },
                 secret_use::header_value),

      secret_key("api", "key", [](auto& s) -> auto& { return s.api.key; },
                 secret_use::header_value),
      checked_text_key("api", "listen", [](auto& s) -> auto& { return s.api.listen; },
                       listen_check(api_example_port), listen_expected),
      integer_key("api", "max_body_bytes", [](auto& s) -> auto& { return s.api.max_body_bytes; },
                  1, largest_integer, positive_integer),
      flag_key("api", "tls", [](auto& s) -> auto& { return s.api.tls; }),

      checked_text_key("events", "url", [](auto& s) -> auto& { return s.events.url; },
                       url_check({false, "wsvisor sends events without credentials, so receive "
                                         "them on an address only wsvisor reaches"}),
                       "\"\" (off) or an http:// or https:// URL, e.g. "
                       "\"http://127.0.0.1:8000/events\"",
                       without_credentials),
      duration_key("events", "timeout", [](auto& s) -> auto& { return s.events.timeout; },
                   positive, positive_duration),
      integer_key("events", "retries", [](auto& s) -> auto& { return s.events.retries; }, 0, 100,
                  "an integer from 0 to 100"),
      integer_key("events", "queue", [](auto& s) -> auto& { return s.events.queue; }, 1,
                  largest_integer, positive_integer),

      checked_text_key("gateway", "connect_path",
                       [](auto& s) -> auto& { return s.gateway.connect_path; },
                       hook_path_check(true),
                       "\"\" (no connect hook) or a path beginning with \"/\", e.g. \"/ws/connect\""),
      checked_text_key("gateway", "message_path",
                       [](auto& s) -> auto& { return s.gateway.message_path; },
                       hook_path_check(false),
                       "a path beginning with \"/\", e.g. \"/ws/message\""),
      integer_key("gateway", "connect_concurrency",
                  [](auto& s) -> auto& { return s.gateway.connect_concurrency; }, 1,
                  largest_integer, positive_integer),
      flag_key("gateway", "error_frames", [](auto& s) -> auto& { return s.gateway.error_frames; }),

      flag_key("hub", "allow_anonymous", [](auto& s) -> auto& { return s.hub.allow_anonymous; }),
      duration_key("hub", "connect_timeout",
                   [](auto& s) -> auto& { return s.hub.connect_timeout; }, positive,
                   positive_duration),
      integer_key("hub", "channel_max_length",
                  [](auto& s) -> auto& { return s.hub.channel_max_length; }, 1, 65535,
                  "an integer from 1 to 65535 (bytes)"),
      flag_key("hub", "user_personal_channel",
               [](auto& s) -> auto& { return s.hub.user_personal_channel; }),
      integer_key("hub", "max_channels_per_connection",
                  [](auto& s) -> auto& { return s.hub.max_channels_per_connection; }, 1, 100000,
                  "an integer from 1 to 100000"),
      integer_key("hub", "recovery_max_publications",
                  [](auto& s) -> auto& { return s.hub.recovery_max_publications; }, 1, 100000,
                  "an integer from 1 to 100000"),
      proxy_path_key("connect_proxy_path",
                     [](auto& s) -> auto& { return s.hub.connect_proxy_path; },
                     "/centrifugo/connect"),
      proxy_path_key("refresh_proxy_path",
                     [](auto& s) -> auto& { return s.hub.refresh_proxy_path; },
                     "/centrifugo/refresh"),
      proxy_path_key("rpc_proxy_path", [](auto& s) -> auto& { return s.hub.rpc_proxy_path; },
                     "/centrifugo/rpc"),
      proxy_path_key("send_proxy_path", [](auto& s) -> auto& { return s.hub.send_proxy_path; },
                     "/centrifugo/send"),
      proxy_path_key("publish_proxy_path",
                     [](auto& s) -> auto& { return s.hub.publish_proxy_path; },
                     "/centrifugo/publish"),
      proxy_path_key("subscribe_proxy_path",
                     [](auto& s) -> auto& { return s.hub.subscribe_proxy_path; },
                     "/centrifugo/subscribe"),
    };
    // The default namespace's options are keys of [hub]; hub.namespaces comes last of [hub].
    for (auto& option :
         namespace_option_keys("hub", [](auto& s) -> auto& { return s.hub.defaults; }))
      table.push_back(std::move(option));
    table.push_back(namespaces_key());

    const std::vector<key_spec> cluster_keys = {
      choice_key("cluster", "mode", [](auto& s) -> auto& { return s.cluster.mode; },
                 {"off", "redis"}),
      checked_text_key("cluster", "redis_url", [](auto& s) -> auto& { return s.cluster.redis_url; },
                       [](const std::string& text, std::string& hint) -> std::optional<std::string> {
                         if (!parse_redis_url(text, hint)) return std::nullopt;
                         return text;
                       },
                       "a URL redis://host[:port][/db], e.g. \"redis://127.0.0.1:6379/0\"",
                       without_credentials),
      secret_key("cluster", "redis_password",
                 [](auto& s) -> auto& { return s.cluster.redis_password; }),
      checked_text_key("cluster", "prefix", [](auto& s) -> auto& { return s.cluster.prefix; },
                       [](const std::string& text, std::string& hint) {
                         return checked_name(text, 64, "_-:.", hint);
                       },
                       "1 to 64 characters of a-z, A-Z, 0-9 and \"_-:.\", e.g. \"wsvisor\""),
      checked_text_key("cluster", "node_id", [](auto& s) -> auto& { return s.cluster.node_id; },
                       checked_node_id,
                       "\"\" (the host name and 6 random hex digits, chosen at start) or 1 to 64 "
                       "characters of a-z, 0-9 and \"-\", not starting or ending with \"-\", e.g. "
                       "\"ws-eu-1\""),
      duration_key("cluster", "lease_ttl", [](auto& s) -> auto& { return s.cluster.lease_ttl; },
                   positive, positive_duration),
      duration_key("cluster", "lease_refresh",
                   [](auto& s) -> auto& { return s.cluster.lease_refresh; }, positive,
                   positive_duration),
      duration_key("cluster", "probe_interval",
                   [](auto& s) -> auto& { return s.cluster.probe_interval; }, positive,
                   positive_duration),
      choice_key("cluster", "on_redis_down",
                 [](auto& s) -> auto& { return s.cluster.on_redis_down; }, {"local", "reject"}),
      duration_key("cluster", "api_timeout",
                   [](auto& s) -> auto& { return s.cluster.api_timeout; }, positive,
                   positive_duration),
    };
    for (const auto& key : cluster_keys) table.push_back(key);
    // clang-format on
    return table;
  }();
  return keys;
}

const key_spec* find_key(const std::string& section, const std::string& name) {
  for (const auto& spec : key_table())
    if (spec.section == section && spec.name == name) return &spec;
  return nullptr;
}

std::vector<std::string> section_names() {
  std::vector<std::string> sections;
  for (const auto& spec : key_table())
    if (sections.empty() || sections.back() != spec.section) sections.push_back(spec.section);
  return sections;
}

std::string joined(const std::vector<std::string>& names) {
  std::string text;
  for (const auto& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

// Why section.name is not a key, listing what is there instead.
std::string unknown_key_problem(const std::string& section) {
  std::vector<std::string> names;
  for (const auto& spec : key_table())
    if (spec.section == section) names.push_back(spec.name);
  if (names.empty())
    return "unknown section \"" + section + "\"; the sections are " + joined(section_names());
  return "unknown key; [" + section + "] has " + joined(names);
}

}  // namespace

std::string detail::secret_variables() {
  std::vector<std::string> secrets;
  for (const auto& spec : key_table())
    if (spec.kind == value_kind::secret)
      secrets.push_back(spec.environment_variable() + " (" + spec.full_name() + ")");
  std::string text;
  for (size_t i = 0; i < secrets.size(); ++i)
    text += (i == 0 ? "" : i + 1 == secrets.size() ? " and " : ", ") + secrets[i];
  return text;
}

namespace {

// Why the environment and --set cannot set hub.namespaces.
std::string namespaces_only_in_file_problem() {
  return "namespaces are set only in the configuration file, one [[hub.namespaces]] table "
         "each (see config/wsvisor.toml); the environment and --set cannot set them. The "
         "default namespace's options are keys of [hub] and can be: e.g. --set "
         "hub.presence=true or WSVISOR_HUB_PRESENCE=true";
}

std::string secret_problem(const key_spec& spec) {
  return "secrets are read only from the environment (never from a file or the command "
         "line): set the environment variable " +
         spec.environment_variable() + " instead";
}

// A value as TOML text, as a user writes it (toml++ prints 'literal' strings and pads
// arrays).
std::string toml_text(const toml::node& node) {
  if (const auto string = node.value_exact<std::string>()) return quote(*string);
  if (const toml::array* array = node.as_array()) {
    std::string text = "[";
    for (const auto& element : *array) text += (text.size() > 1 ? ", " : "") + toml_text(element);
    return text + "]";
  }
  std::ostringstream text;
  node.visit([&text](const auto& value) { text << value; });
  return text.str();
}

// Refuses a key above every [section] header: keys live in sections, so say which section
// one of that name belongs to (and how to write it there), or that there is none.
[[noreturn]] void fail_top_level_key(const std::string& where, const std::string& name,
                                     const toml::node& node) {
  std::string sections, rewritten;
  for (const auto& spec : key_table()) {
    if (spec.name != name) continue;
    if (spec.kind == value_kind::secret) fail(where, spec.full_name(), secret_problem(spec));
    if (spec.kind == value_kind::table_list)
      fail(where, "",
           "`" + name +
               "` belongs under [hub]: write each namespace as a [[hub.namespaces]] "
               "table");
    const std::string separator = sections.empty() ? "" : " or ";
    sections += separator + "[" + spec.section + "]";
    rewritten += separator + "[" + spec.section + "] " + name + " = " + toml_text(node);
  }
  if (sections.empty())
    fail(where, name,
         "unknown top-level key; every key belongs under one of the sections " +
             joined(section_names()));
  fail(where, "", "`" + name + "` belongs under " + sections + ": write it as " + rewritten);
}

// A parse error on a line such as `host = 0.0.0.0` or `ping_interval = 10s` comes from a
// value TOML cannot read unquoted (toml++ says it is a malformed float or integer, which
// does not point at the fix). Returns the key ("server.host", by the [section] above the
// line) and how to write the line; nullopt for other errors.
struct quoting_hint {
  std::string key;
  std::string fix;
};

bool is_toml_value(const std::string& text) {
  try {
    return toml::parse("value = " + text).contains("value");
  } catch (const toml::parse_error&) {
    return false;
  }
}

// A line read left to right: blanks skipped, runs of characters taken.
class line_reader {
 public:
  explicit line_reader(std::string_view line) : rest_(line) {}
  void skip_blanks() {
    while (!rest_.empty() && (rest_.front() == ' ' || rest_.front() == '\t'))
      rest_.remove_prefix(1);
  }
  bool take(char c) {
    skip_blanks();
    if (rest_.empty() || rest_.front() != c) return false;
    rest_.remove_prefix(1);
    return true;
  }
  template <class Allowed>
  std::string_view take_run(Allowed allowed) {
    skip_blanks();
    size_t n = 0;
    while (n < rest_.size() && allowed(rest_[n])) ++n;
    const auto run = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return run;
  }
  // Nothing left but blanks and a comment.
  bool at_end() {
    skip_blanks();
    return rest_.empty() || rest_.front() == '#';
  }

 private:
  std::string_view rest_;
};

bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

// `[name]` (blanks and a comment allowed): the section's name.
std::optional<std::string> section_header(std::string_view line) {
  line_reader reader(line);
  if (!reader.take('[')) return std::nullopt;
  const auto name = reader.take_run(is_name_char);
  if (name.empty() || !reader.take(']') || !reader.at_end()) return std::nullopt;
  return std::string(name);
}

// `key = word`, where the word has no quote, bracket, brace, '#', '=', ',', '\' or
// blank: a value written without the quotes it needs, or a number or a boolean.
std::optional<std::pair<std::string, std::string>> bare_entry(std::string_view line) {
  line_reader reader(line);
  const auto name = reader.take_run([](char c) { return is_name_char(c) || c == '.'; });
  if (name.empty() || !reader.take('=')) return std::nullopt;
  const auto word = reader.take_run([](char c) {
    return c != ' ' && c != '\t' &&
           std::string_view("\"'[]{}#=,\\").find(c) == std::string_view::npos;
  });
  if (word.empty() || !reader.at_end()) return std::nullopt;
  return std::make_pair(std::string(name), std::string(word));
}

// `[[name]]` or `[[name.name]]` (blanks and a comment allowed): the array's name.
std::optional<std::string> array_header(std::string_view line) {
  line_reader reader(line);
  if (!reader.take('[') || !reader.take('[')) return std::nullopt;
  const auto name = reader.take_run([](char c) { return is_name_char(c) || c == '.'; });
  if (name.empty() || !reader.take(']') || !reader.take(']') || !reader.at_end())
    return std::nullopt;
  return std::string(name);
}

std::optional<quoting_hint> unquoted_value_hint(const std::string& text, size_t line_number) {
  std::istringstream lines(text);
  std::string line, section;
  std::map<std::string, size_t> tables_of_array;  // [[name]] headers seen so far
  for (size_t number = 1; number <= line_number && std::getline(lines, line); ++number) {
    if (number == line_number) break;
    if (auto header = section_header(line)) {
      section = *header;
    } else if (auto array = array_header(line)) {
      // The keys of the i-th [[hub.namespaces]] are named hub.namespaces[i].key.
      section = *array + "[" + std::to_string(tables_of_array[*array]++) + "]";
    }
  }
  const auto entry = bare_entry(line);
  if (!entry) return std::nullopt;
  const std::string& name = entry->first;
  const std::string& word = entry->second;
  // A word that is TOML on its own (a number, a boolean, a date): the error is elsewhere.
  if (is_toml_value(word)) return std::nullopt;

  const std::string key = section.empty() ? name : section + "." + name;
  const size_t dot = key.find('.');
  const key_spec* spec =
      dot == std::string::npos ? nullptr : find_key(key.substr(0, dot), key.substr(dot + 1));
  if (spec == nullptr || spec->kind == value_kind::text || spec->kind == value_kind::duration)
    return quoting_hint{key, "text needs quotes: " + name + " = " + quote(word)};
  if (spec->kind == value_kind::text_list)
    return quoting_hint{key,
                        "write a list of quoted strings: " + name + " = [" + quote(word) + "]"};
  if (spec->kind == value_kind::secret) return quoting_hint{key, secret_problem(*spec)};
  return std::nullopt;  // a number or a boolean: quotes would not help
}

// The placeholders render_effective prints for a secret; harmless in a file.
bool is_secret_placeholder(const toml::node& node) {
  const auto text = node.value_exact<std::string>();
  return text && (text->empty() || *text == redacted);
}

// What a value from the environment or --set looks meant as when it begins like TOML that
// is more than a bare word ("" when it does not): such a value that fails to parse is a
// typo, not a string. A text key never takes an array or a table, so there '[' and '{'
// begin a bare word ("[::1]:9090" for admin.listen). A secret is never judged: a parse
// error about it could hint at its text.
std::string toml_intent(const std::string& raw, value_kind kind) {
  if (raw.empty() || kind == value_kind::secret) return "";
  const bool text = kind == value_kind::text;
  switch (raw.front()) {
    case '"':
    case '\'':
      return "a quoted TOML string";
    case '[':
      return text ? "" : "a TOML array";
    case '{':
      return text ? "" : "a TOML inline table";
    default:
      return "";
  }
}

std::string toml_intent_fix(char opener) {
  const std::string shell = ", and in a shell put the whole value in single quotes";
  switch (opener) {
    case '[':
      return "write a complete array, e.g. [\"a\", \"b\"]" + shell;
    case '{':
      return "write a complete inline table, e.g. {name = \"value\"}" + shell;
    default:
      return "close the quote, or leave the quotes out (a bare word is a string)";
  }
}

// A value from the environment or --set: TOML when it parses as one value, else the bare
// text as a string. For a text key the bare text wins even when it looks like a number
// (WSVISOR_SERVER_HOST=1234), and a list key takes one bare string as a list of one.
// `where` and `key` name the value in an error.
toml::table value_from_text(const std::string& raw, value_kind kind, const std::string& where,
                            const std::string& key) {
  toml::table holder;
  try {
    holder = toml::parse("value = " + raw);
  } catch (const toml::parse_error& error) {
    const std::string intent = toml_intent(raw, kind);
    if (!intent.empty())
      fail(where, key,
           "starts like " + intent + " but is not valid TOML (the TOML parser says \"" +
               std::string(error.description()) + "\"): " + toml_intent_fix(raw.front()));
    holder.clear();
  }
  if (holder.size() != 1 || !holder.contains("value")) {
    holder.clear();
    holder.insert_or_assign("value", raw);
  }
  const toml::node& value = *holder.get("value");
  if ((kind == value_kind::text || kind == value_kind::secret) && !value.is_string()) {
    holder.insert_or_assign("value", raw);
  } else if (kind == value_kind::text_list && value.is_string()) {
    toml::array list;
    if (!value.value_exact<std::string>()->empty()) list.push_back(*value.value<std::string>());
    holder.insert_or_assign("value", std::move(list));
  }
  return holder;
}

std::string trimmed(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

// Applies the layers in order of precedence and checks the rules that span keys.
class settings_builder {
 public:
  void apply_file(const std::string& text, const std::string& file_name) {
    toml::table root;
    try {
      root = toml::parse(text, file_name);
    } catch (const toml::parse_error& error) {
      const auto line = error.source().begin.line;
      const std::string at = file_name + ":" + std::to_string(line);
      const std::string problem = "invalid TOML: " + std::string(error.description());
      if (const auto hint = unquoted_value_hint(text, line))
        fail(at, hint->key, problem + "; " + hint->fix);
      fail(at, "", problem);
    }
    const where_of where = [file_name](const toml::node& node) {
      const auto line = node.source().begin.line;
      return line == 0 ? file_name : file_name + ":" + std::to_string(line);
    };

    // toml++ iterates keys alphabetically; sorting by line reports the first mistake in
    // the file first.
    struct entry {
      size_t line;
      std::string section;
      std::string name;  // "" for the section itself when it is not a table
      const toml::node* node;
    };
    std::vector<entry> entries;
    for (const auto& [section, section_node] : root) {
      const toml::table* table = section_node.as_table();
      if (table == nullptr || !is_section(std::string(section.str()))) {
        entries.push_back(
            {section_node.source().begin.line, std::string(section.str()), "", &section_node});
        continue;
      }
      for (const auto& [name, node] : *table)
        entries.push_back(
            {node.source().begin.line, std::string(section.str()), std::string(name.str()), &node});
    }
    std::stable_sort(entries.begin(), entries.end(),
                     [](const entry& a, const entry& b) { return a.line < b.line; });

    for (const auto& [line, section, name, node] : entries) {
      if (name.empty()) {
        if (!is_section(section) && node->is_table())
          fail(where(*node), "", unknown_key_problem(section));
        if (!is_section(section)) fail_top_level_key(where(*node), section, *node);
        fail(where(*node), section, "expected a table: write [" + section + "]");
      }
      const key_spec* spec = find_key(section, name);
      if (spec == nullptr) fail(where(*node), section + "." + name, unknown_key_problem(section));
      if (spec->kind == value_kind::table_list) {
        assign_namespaces(*node, where);
        continue;
      }
      if (spec->kind == value_kind::secret) {
        if (is_secret_placeholder(*node)) continue;
        fail(where(*node), spec->full_name(), secret_problem(*spec));
      }
      assign(*spec, *node, where);
    }
  }

  // PORT: set by container platforms; the lowest of the environment layers.
  void apply_port(const environment& env) {
    const auto port = env.find("PORT");
    if (port == env.end()) return;
    assign_text(*find_key("server", "port"), port->second, "environment variable PORT");
  }

  void apply_environment(const environment& env) {
    std::map<std::string, const key_spec*> key_of_variable;
    for (const auto& spec : key_table()) key_of_variable[spec.environment_variable()] = &spec;
    for (const auto& [variable, value] : env) {
      if (variable.rfind("WSVISOR_", 0) != 0 || tooling_variables.count(variable) != 0) continue;
      const auto found = key_of_variable.find(variable);
      const std::string where = "environment variable " + variable;
      if (variable.rfind("WSVISOR_HUB_NAMESPACES", 0) == 0)
        fail(where, "hub.namespaces", namespaces_only_in_file_problem());
      if (found == key_of_variable.end())
        fail(where, "",
             "names no configuration key (the form is WSVISOR_<SECTION>_<KEY>, e.g. "
             "WSVISOR_LIMITS_MAX_CONNECTIONS for limits.max_connections)");
      const key_spec& spec = *found->second;
      if (spec.kind == value_kind::secret) {
        // Taken verbatim: a secret is never parsed as TOML nor shown in a message.
        toml::table holder;
        holder.insert_or_assign("value", value);
        assign(spec, *holder.get("value"), [where](const toml::node&) { return where; });
      } else {
        assign_text(spec, value, where);
      }
    }
  }

  void apply_assignments(const std::vector<std::string>& assignments) {
    for (const auto& assignment : assignments) {
      const size_t equals = assignment.find('=');
      const std::string key = trimmed(assignment.substr(0, equals));
      const size_t dot = key.find('.');
      if (equals == std::string::npos || dot == std::string::npos || dot == 0)
        fail("--set " + assignment, "",
             "expected section.key=value, e.g. limits.max_connections=5000");
      const std::string section = key.substr(0, dot);
      if (section == "hub" && key.compare(dot + 1, 10, "namespaces") == 0)
        fail("--set " + key, "hub.namespaces", namespaces_only_in_file_problem());
      const key_spec* spec = find_key(section, key.substr(dot + 1));
      // The value is not echoed for unknown keys and secrets: it may be a secret.
      if (spec == nullptr) fail("--set " + key, "", unknown_key_problem(section));
      const std::string raw = trimmed(assignment.substr(equals + 1));
      if (spec->kind == value_kind::secret) {
        const toml::table holder = value_from_text(raw, value_kind::secret, "", "");
        if (is_secret_placeholder(*holder.get("value"))) continue;
        fail("--set " + key, "", secret_problem(*spec));
      }
      assign_text(*spec, raw, "--set " + (spec->shown ? key + "=" + spec->shown(raw) : assignment));
    }
  }

  settings finish() {
    auto& limits = result_.limits;
    if (limits.soft_connections > limits.max_connections)
      fail(origin_of("limits.soft_connections"), "limits.soft_connections",
           "expected 0 (= 90 % of limits.max_connections) or at most limits.max_connections (" +
               std::to_string(limits.max_connections) + note("limits.max_connections") + "), got " +
               std::to_string(limits.soft_connections));
    if (limits.soft_connections == 0) {
      // 90 % without overflowing for huge maxima, and at least one connection.
      const uint64_t ninety_percent =
          limits.max_connections / 10 * 9 + limits.max_connections % 10 * 9 / 10;
      limits.soft_connections = std::max<uint64_t>(1, ninety_percent);
    }

    const auto& janitor = result_.janitor;
    if (janitor.probe_timeout >= limits.admission_timeout)
      fail(origin_of("janitor.probe_timeout"), "janitor.probe_timeout",
           "expected a duration below limits.admission_timeout (" +
               format_duration(limits.admission_timeout) + note("limits.admission_timeout") +
               ") so that a sweep can finish within an admission, got \"" +
               format_duration(janitor.probe_timeout) + "\"");

    require_no_longer("supervision.backoff_min", result_.supervision.backoff_min,
                      "supervision.backoff_max", result_.supervision.backoff_max);
    require_no_longer("shutdown.drain_spread", result_.shutdown.drain_spread,
                      "shutdown.drain_timeout", result_.shutdown.drain_timeout);
    require_no_longer("upstream.backoff_min", result_.upstream.backoff_min, "upstream.backoff_max",
                      result_.upstream.backoff_max);
    check_forward_headers_are_distinct();
    finish_cluster();

    if (result_.auth.mode == "jwt" && result_.auth.jwt_secret.empty())
      fail(origin_of("auth.mode"), "auth.jwt_secret",
           "auth.mode = \"jwt\" needs the HS256 signing secret: set the environment variable "
           "WSVISOR_AUTH_JWT_SECRET");
    // Checked whatever the mode: a weak key in the environment is a mistake waiting for
    // auth.mode = "jwt". The message never shows the secret, nor its length.
    const auto& auth = result_.auth;
    if (!auth.jwt_secret.empty() && auth.jwt_secret.size() < shortest_jwt_secret &&
        !auth.allow_weak_secret)
      fail(origin_of("auth.jwt_secret"), "auth.jwt_secret",
           "shorter than " + std::to_string(shortest_jwt_secret) +
               " bytes, the minimum for an HS256 key (RFC 7518 section 3.2: a shorter one can "
               "be found offline from one signed token): set WSVISOR_AUTH_JWT_SECRET to at "
               "least " +
               std::to_string(shortest_jwt_secret) +
               " random bytes, e.g. $(openssl rand -base64 32), or set "
               "auth.allow_weak_secret = true to accept it (for tests only)");

    // Without a backend, every gateway connection would fail at its first message; refused
    // here so that --check-config catches it rather than the first client.
    if (result_.app.mode == "gateway" && result_.upstream.url.empty())
      fail(origin_of("app.mode"), "app.mode",
           "\"gateway\" sends connections and messages to the backend at upstream.url, which is "
           "\"\"" +
               note("upstream.url") +
               ": set upstream.url to the backend's base URL, e.g. url = "
               "\"http://127.0.0.1:8000\" under [upstream], or "
               "WSVISOR_UPSTREAM_URL=http://127.0.0.1:8000");

    check_hub();
    check_listeners_are_apart();
    check_tls();
    return result_;
  }

 private:
  // [[hub.namespaces]]: an array of tables, each a name and namespace options. Replaces
  // what an earlier layer set (only the file sets it). Unknown keys are named
  // hub.namespaces[i].key, with the file and line.
  void assign_namespaces(const toml::node& node, const where_of& where) {
    const toml::array* array = node.as_array();
    if (array == nullptr) {
      if (node.is_table())
        fail(where(node), "hub.namespaces",
             "expected an array of tables: write each namespace as a [[hub.namespaces]] table "
             "(two brackets)");
      fail_expected(where, node, "hub.namespaces",
                    "an array of tables, one [[hub.namespaces]] table per namespace");
    }
    auto& namespaces = result_.hub.namespaces;
    namespaces.assign(array->size(), hub_namespace{});
    std::map<std::string, size_t> index_of_name;
    for (size_t i = 0; i < array->size(); ++i) {
      const toml::node& element = *array->get(i);
      const std::string section = namespace_section(i);
      const toml::table* table = element.as_table();
      if (table == nullptr)
        fail_expected(where, element, section,
                      "a table with a name and the namespace's options, e.g. {name = \"chat\", "
                      "presence = true}");
      origins_[section] = where(element);
      const auto options = namespace_option_keys(i);
      std::string known = "name";
      for (const auto& option : options) known += ", " + option.name;

      // In the order of the file, so that the first mistake is the one reported.
      std::vector<std::pair<std::string, const toml::node*>> entries;
      for (const auto& [name, value] : *table)
        entries.emplace_back(std::string(name.str()), &value);
      std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
        return a.second->source().begin.line < b.second->source().begin.line;
      });
      bool named = false;
      for (const auto& [name, value] : entries) {
        if (name == "name") {
          const auto text = value->value_exact<std::string>();
          if (!text || !is_namespace_name(*text))
            fail_expected(where, *value, section + ".name",
                          "a namespace name of letters, digits, \"_\" and \"-\", e.g. \"chat\" "
                          "(for the channels \"chat:...\"; the keys of [hub] itself are the "
                          "default namespace's)");
          const auto [earlier, fresh] = index_of_name.emplace(*text, i);
          if (!fresh)
            fail(where(*value), section + ".name",
                 quote(*text) + " is already the name of " + namespace_section(earlier->second) +
                     " (" + origin_of(namespace_section(earlier->second) + ".name") +
                     "): give each namespace a name of its own");
          namespaces[i].name = *text;
          origins_[section + ".name"] = where(*value);
          named = true;
          continue;
        }
        const auto option =
            std::find_if(options.begin(), options.end(),
                         [&wanted = name](const key_spec& spec) { return spec.name == wanted; });
        if (option == options.end())
          fail(where(*value), section + "." + name,
               "unknown key; a [[hub.namespaces]] table has " + known);
        assign(*option, *value, where);
      }
      if (!named)
        fail(where(element), section + ".name",
             "missing: every [[hub.namespaces]] table needs a name, e.g. name = \"chat\" for the "
             "channels \"chat:...\"");
    }
    origins_["hub.namespaces"] = where(node);
  }

  // The rules across the keys of [hub], [[hub.namespaces]], [upstream] and [auth].
  void check_hub() const {
    const auto& hub = result_.hub;
    check_namespace("hub", "the default namespace", hub.defaults);
    for (size_t i = 0; i < hub.namespaces.size(); ++i)
      check_namespace(namespace_section(i), "namespace " + quote(hub.namespaces[i].name),
                      hub.namespaces[i]);

    // Every proxy posts to upstream.url + its path.
    for (const auto& [name, path] : std::vector<std::pair<std::string, std::string>>{
             {"connect_proxy_path", hub.connect_proxy_path},
             {"refresh_proxy_path", hub.refresh_proxy_path},
             {"rpc_proxy_path", hub.rpc_proxy_path},
             {"send_proxy_path", hub.send_proxy_path},
             {"publish_proxy_path", hub.publish_proxy_path},
             {"subscribe_proxy_path", hub.subscribe_proxy_path}}) {
      if (path.empty() || !result_.upstream.url.empty()) continue;
      const std::string key = "hub." + name;
      fail(origin_of(key), key,
           quote(path) +
               " is a proxy to the backend, posted to upstream.url + this path, and "
               "upstream.url is \"\"" +
               note("upstream.url") +
               ": set upstream.url to the backend's base URL, e.g. url = "
               "\"http://127.0.0.1:8000\" under [upstream] (or "
               "WSVISOR_UPSTREAM_URL=http://127.0.0.1:8000), or set " +
               key + " = \"\" to turn that proxy off");
    }

    // Hub mode must be able to tell who a client is, or let in anonymous ones.
    const auto& auth = result_.auth;
    if (result_.app.mode == "hub" && auth.mode == "none" && auth.jwt_secret.empty() &&
        hub.connect_proxy_path.empty() && !hub.allow_anonymous)
      fail(origin_of("app.mode"), "app.mode",
           "\"hub\" has no way to identify a client: auth.mode is \"none\"" + note("auth.mode") +
               ", WSVISOR_AUTH_JWT_SECRET is not set, hub.connect_proxy_path is \"\"" +
               note("hub.connect_proxy_path") + " and hub.allow_anonymous is false" +
               note("hub.allow_anonymous") +
               ". Do one of: set auth.mode = \"header\" or \"jwt\" (the user comes with the "
               "upgrade request); set WSVISOR_AUTH_JWT_SECRET (auth.jwt_secret: the token of "
               "the connect command is checked with it); set hub.connect_proxy_path (the backend "
               "at upstream.url decides, e.g. \"/centrifugo/connect\"); or set "
               "hub.allow_anonymous = true (clients without identity come in as user \"\")");
  }

  // One namespace's options: `prefix` is how its keys are named ("hub" or
  // "hub.namespaces[i]"), `who` how the message calls it.
  void check_namespace(const std::string& prefix, const std::string& who,
                       const hub_namespace& ns) const {
    const std::string size_key = prefix + ".history_size";
    const std::string ttl_key = prefix + ".history_ttl";
    // Where a namespace key came from; for one a [[hub.namespaces]] table leaves out, the
    // table.
    const auto from = [this, &prefix](const std::string& key) {
      const std::string where = origin_of(key);
      return where.empty() ? origin_of(prefix) : where;
    };
    const std::string both =
        ": Centrifugo keeps a history only with both, a size and a time to live";
    if (ns.history_size > 0 && ns.history_ttl == duration::zero())
      fail(from(size_key), ttl_key,
           who + " keeps " + std::to_string(ns.history_size) + " publications (" + size_key +
               note(size_key) + ") for \"0s\" (" + ttl_key + note(ttl_key) + ")" + both +
               ": set history_ttl too, e.g. history_ttl = \"300s\", or history_size = 0 for no "
               "history");
    if (ns.history_size == 0 && ns.history_ttl > duration::zero())
      fail(from(ttl_key), size_key,
           who + " keeps publications for " + quote(format_duration(ns.history_ttl)) + " (" +
               ttl_key + note(ttl_key) + ") but none of them (" + size_key + " = 0" +
               note(size_key) + ")" + both +
               ": set history_size too, e.g. history_size = 100, or history_ttl = \"0s\" for "
               "no history");
    const std::string recovery_key = prefix + ".force_recovery";
    if (ns.force_recovery && ns.history_size == 0)
      fail(from(recovery_key), recovery_key,
           who + " recovers every subscription, from a history it does not keep (" + size_key +
               " = 0" + note(size_key) +
               "): set history_size and history_ttl, e.g. history_size = 100 and history_ttl = "
               "\"300s\", or force_recovery = false");
    const auto require_proxy = [&](const std::string& option, bool enabled,
                                   const std::string& path_name, const std::string& path,
                                   const std::string& what, const std::string& example) {
      if (!enabled || !path.empty()) return;
      const std::string key = prefix + "." + option;
      const std::string path_key = "hub." + path_name;
      fail(from(key), key,
           who + " sends its " + what + " to the backend at upstream.url + " + path_key +
               ", which is \"\"" + note(path_key) + ": set " + path_key + ", e.g. " + path_name +
               " = " + quote(example) + " under [hub] (with upstream.url), or " + option +
               " = false");
    };
    require_proxy("subscribe_proxy_enabled", ns.subscribe_proxy_enabled, "subscribe_proxy_path",
                  result_.hub.subscribe_proxy_path, "subscribe requests", "/centrifugo/subscribe");
    require_proxy("publish_proxy_enabled", ns.publish_proxy_enabled, "publish_proxy_path",
                  result_.hub.publish_proxy_path, "client publications", "/centrifugo/publish");
  }

  static bool is_section(const std::string& section) {
    const auto sections = section_names();
    return std::find(sections.begin(), sections.end(), section) != sections.end();
  }

  void assign(const key_spec& spec, const toml::node& node, const where_of& where) {
    spec.assign(result_, node, where);
    origins_[spec.full_name()] = where(node);
  }

  void assign_text(const key_spec& spec, const std::string& raw, const std::string& where) {
    const toml::table holder = value_from_text(raw, spec.kind, where, spec.full_name());
    assign(spec, *holder.get("value"), [where](const toml::node&) { return where; });
  }

  // A duration that may not exceed another key's; the message names both keys and where
  // each value came from.
  void require_no_longer(const std::string& key, duration value, const std::string& limit_key,
                         duration limit) const {
    if (value <= limit) return;
    fail(origin_of(key), key,
         "expected a duration no longer than " + limit_key + " (" + format_duration(limit) +
             note(limit_key) + "), got \"" + format_duration(value) + "\"");
  }

  // cluster.redis_url split for the client (the key's check accepted it), and a lease
  // that is refreshed before it can expire.
  void finish_cluster() {
    auto& cluster = result_.cluster;
    std::string hint;
    const auto address = parse_redis_url(cluster.redis_url, hint);
    if (!address) fail(origin_of("cluster.redis_url"), "cluster.redis_url", hint);
    cluster.redis_host = address->host;
    cluster.redis_port = address->port;
    cluster.redis_database = address->database;
    if (cluster.lease_refresh >= cluster.lease_ttl)
      fail(origin_of("cluster.lease_refresh"), "cluster.lease_refresh",
           "expected a duration below cluster.lease_ttl (" + format_duration(cluster.lease_ttl) +
               note("cluster.lease_ttl") +
               ") so that a live node refreshes its lease before it expires, got \"" +
               format_duration(cluster.lease_refresh) + "\"");
  }

  // Header names are case-insensitive, and the connect hook sends the forwarded ones as
  // the members of a JSON object in lower case: "Cookie" and "cookie" would be one member
  // twice.
  void check_forward_headers_are_distinct() const {
    const auto& headers = result_.upstream.forward_headers;
    std::set<std::string> seen;
    for (size_t i = 0; i < headers.size(); ++i)
      if (!seen.insert(lower_case(headers[i])).second)
        fail(origin_of("upstream.forward_headers"),
             "upstream.forward_headers[" + std::to_string(i) + "]",
             quote(headers[i]) +
                 " is already in the list (header names are case-insensitive): "
                 "name each header once");
  }

  // TLS needs both files; admin.tls and api.tls need them and a listener of their own.
  void check_tls() const {
    const auto& server = result_.server;
    if (server.tls_cert_file.empty() != server.tls_key_file.empty()) {
      const bool cert = !server.tls_cert_file.empty();
      const std::string missing = cert ? "server.tls_key_file" : "server.tls_cert_file";
      fail(origin_of(cert ? "server.tls_cert_file" : "server.tls_key_file"), missing,
           "TLS needs both a certificate and its key, and only " +
               std::string(cert ? "server.tls_cert_file" : "server.tls_key_file") +
               " is set: set " + missing + " too, or neither for plain ws://");
    }
    for (const auto& [key, on, listen] : {std::tuple<std::string, bool, std::string>{
                                              "admin", result_.admin.tls, result_.admin.listen},
                                          {"api", result_.api.tls, result_.api.listen}}) {
      if (!on) continue;
      if (server.tls_cert_file.empty())
        fail(origin_of(key + ".tls"), key + ".tls",
             key +
                 ".listen speaks TLS with the main port's certificate, and none is set: set "
                 "server.tls_cert_file and server.tls_key_file, or " +
                 key + ".tls = false");
      if (listen.empty())
        fail(origin_of(key + ".tls"), key + ".tls",
             "applies to " + key + ".listen, which is \"\" (" + key +
                 " is served on the main port, which follows server.tls_cert_file): set " + key +
                 ".listen or drop " + key + ".tls");
    }
  }

  // A listener of its own (admin.listen, api.listen) on the port and an overlapping address
  // of another passes every per-key rule and then fails at bind (exit 1); port 0 on either
  // side is any free port and cannot collide.
  void check_listeners_are_apart() const {
    const auto& server = result_.server;
    const listen_endpoint main{server.host, server.port};
    const std::string main_address =
        "the main listener's address (server.host = " + quote(server.host) + note("server.host") +
        "; server.port = " + std::to_string(server.port) + note("server.port") + ")";
    const auto admin = admin_listen_endpoint(result_);
    const auto api = api_listen_endpoint(result_);
    if (admin)
      require_apart({"admin.listen", result_.admin.listen, *admin, "/metrics and /admin/*"}, main,
                    main_address, admin_example_port, {server.port});
    if (api) {
      const own_listener mine{"api.listen", result_.api.listen, *api, "/api/*"};
      const std::vector<uint16_t> taken = {server.port, admin ? admin->port : server.port};
      require_apart(mine, main, main_address, api_example_port, taken);
      if (admin)
        require_apart(mine, *admin,
                      "admin.listen's address (admin.listen = " + quote(result_.admin.listen) +
                          note("admin.listen") + ")",
                      api_example_port, taken);
    }
  }

  // A listener of its own: its key and text, where it binds, and what it serves.
  struct own_listener {
    std::string key;
    std::string text;
    listen_endpoint endpoint;
    std::string served;
  };

  void require_apart(const own_listener& listener, const listen_endpoint& other,
                     const std::string& other_address, uint16_t example_port,
                     const std::vector<uint16_t>& taken) const {
    const listen_endpoint& mine = listener.endpoint;
    if (mine.port == 0 || mine.port != other.port) return;
    const auto mine_ip = parse_ip(mine.address);
    const auto other_ip = parse_ip(other.address);
    if (!mine_ip || !other_ip || !addresses_overlap(*mine_ip, *other_ip)) return;
    // The example is the first port from example_port on that no other listener has.
    while (std::count(taken.begin(), taken.end(), example_port) != 0) ++example_port;
    const bool v6 = mine.address.find(':') != std::string::npos;
    const std::string example =
        (v6 ? "[" + mine.address + "]" : mine.address) + ":" + std::to_string(example_port);
    fail(origin_of(listener.key), listener.key,
         quote(listener.text) + " is " + other_address +
             ", and two listeners cannot share it: give " + listener.key +
             " a port of its own, e.g. " + quote(example) + ", or set it to \"\" to serve " +
             listener.served + " on the main listener");
  }

  std::string origin_of(const std::string& key) const {
    const auto found = origins_.find(key);
    return found == origins_.end() ? "" : found->second;
  }

  // " from <where>" or ", the default": tells which layer set the other key of a rule.
  std::string note(const std::string& key) const {
    const std::string where = origin_of(key);
    return where.empty() ? ", the default" : " from " + where;
  }

  settings result_;
  std::map<std::string, std::string> origins_;  // key -> where its value came from
};

unsigned threads_or_cores(unsigned configured) {
  if (configured != 0) return configured;
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

settings load_settings(const std::optional<std::string>& toml_text, const std::string& file_name,
                       const environment& env, const std::vector<std::string>& assignments) {
  settings_builder builder;
  if (toml_text) builder.apply_file(*toml_text, file_name);
  builder.apply_port(env);
  builder.apply_environment(env);
  builder.apply_assignments(assignments);
  return builder.finish();
}

namespace {

std::string render_keys(const settings& s) {
  std::string text;
  std::string section;
  for (const auto& spec : key_table()) {
    if (spec.section != section) {
      section = spec.section;
      text += "\n[" + section + "]\n";
    }
    // hub.namespaces prints [[hub.namespaces]] tables of its own (the last key of [hub]).
    if (spec.kind == value_kind::table_list)
      text += spec.render(s);
    else
      text += spec.name + " = " + spec.render(s) + "\n";
  }
  return text;
}

// TOML allows no control character but tab in a comment; a file name may hold any.
std::string comment_safe(std::string text) {
  for (char& c : text)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) c = '?';
  return text;
}

}  // namespace

std::string render_effective(const settings& s) {
  return "# wsvisor effective configuration (secrets redacted)\n" + render_keys(s);
}

std::string render_effective(const settings& s, const std::string& config_path) {
  const std::string source = config_path.empty() ? "built-in defaults, no file read"
                                                 : "read from " + comment_safe(config_path);
  return "# wsvisor effective configuration (" + source + ")\n# secrets redacted\n" +
         render_keys(s);
}

namespace {

std::optional<listen_endpoint> split_listen(const std::string& listen) {
  std::string host, port;
  bool bracketed = false;
  if (listen.empty() || !split_address(listen, host, port, bracketed) || !is_port_text(port, 0))
    return std::nullopt;
  return listen_endpoint{host, static_cast<uint16_t>(std::stoul(port))};
}

}  // namespace

std::optional<listen_endpoint> admin_listen_endpoint(const settings& s) {
  return split_listen(s.admin.listen);
}

std::optional<listen_endpoint> api_listen_endpoint(const settings& s) {
  return split_listen(s.api.listen);
}

bool is_valid_node_id(std::string_view id) {
  const auto allowed = [](char c) { return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-'; };
  return !id.empty() && id.size() <= longest_node_id && id.front() != '-' && id.back() != '-' &&
         std::all_of(id.begin(), id.end(), allowed);
}

std::optional<http_url> split_http_url(const std::string& url) {
  std::string problem;
  return url.empty() ? std::nullopt : parse_http_url(url, url_rules{}, problem);
}

unsigned io_thread_count(const settings& s) {
  return threads_or_cores(s.server.io_threads);
}

unsigned actor_thread_count(const settings& s) {
  return s.server.scheduler == "pool" ? threads_or_cores(s.server.actor_threads)
                                      : io_thread_count(s);
}

}  // namespace wsvisor
