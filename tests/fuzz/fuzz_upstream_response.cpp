// libFuzzer target: the backend's HTTP responses as the client to the backend reads them
// (net/src/upstream_response.cpp with Beast's parser, CONTRACT 11.1), then what the
// upstream policy makes of the reply (actors/src/upstream_policy.cpp: its meaning, a
// 429's Retry-After, the retry delay). The input arrives in pieces as from a socket
// (its first byte sets the piece size); interim answers are skipped as the client does.
// Any bytes give a reply within max_response_bytes, or an error of the parser.
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "../../actors/src/upstream_policy.hpp"
#include "../../net/src/upstream_response.hpp"

namespace {

constexpr uint64_t kMaxResponseBytes = 16 * 1024;

void check_reply(const wsvisor::upstream_reply& reply) {
  // Beast takes any three digits as the status; only 2xx is a success, whatever else.
  if (reply.status > 999) __builtin_trap();
  const bool success = reply.status >= 200 && reply.status < 300;
  if ((wsvisor::classify(reply).outcome == wsvisor::upstream_outcome::ok) != success)
    __builtin_trap();
  if (reply.body.size() > kMaxResponseBytes) __builtin_trap();
  for (const auto& [name, value] : reply.headers)
    for (char c : name)
      if (c >= 'A' && c <= 'Z') __builtin_trap();
  const auto after = wsvisor::retry_after_of(reply);
  if (after && (after->count() < 0 || after->count() > 999999999)) __builtin_trap();
  wsvisor::retry_policy policy;
  policy.retries = 3;
  policy.backoff_min = std::chrono::milliseconds(100);
  policy.backoff_max = std::chrono::milliseconds(2000);
  for (unsigned attempts = 1; attempts <= 4; ++attempts) {
    const auto delay = wsvisor::retry_delay(policy, reply, attempts, 0.5);
    if (delay && (delay->count() < 0 || *delay > policy.backoff_max)) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::size_t piece = 1 + data[0] % 64;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const bool head_request = data[0] & 0x80;
  uint64_t received = 0;
  std::optional<wsvisor::upstream_response_parser> parser;
  parser.emplace();
  wsvisor::limit_response_parser(*parser, kMaxResponseBytes, received, head_request);
  std::string pending;
  boost::beast::error_code ec;
  while (true) {
    const std::size_t take = std::min(piece, input.size());
    pending.append(input.substr(0, take));
    input.remove_prefix(take);
    const std::size_t used = parser->put(boost::asio::buffer(pending), ec);
    pending.erase(0, used);
    received += used;
    if (used == 0 && take == 0 && !ec) return 0;  // nothing more to give it
    if (ec == boost::beast::http::error::need_more) {
      ec = {};
      if (input.empty()) {
        parser->put_eof(ec);
        if (ec || !parser->is_done()) return 0;  // cut short: the client's malformed
      } else {
        continue;
      }
    }
    if (ec) return 0;  // not HTTP, broken framing, over the limit
    if (received > kMaxResponseBytes) return 0;
    if (!parser->is_done()) {
      if (input.empty() && pending.empty()) return 0;
      continue;
    }
    if (wsvisor::is_interim_status(parser->get().result_int())) {
      parser.emplace();
      wsvisor::limit_response_parser(*parser, kMaxResponseBytes, received, head_request);
      continue;
    }
    check_reply(wsvisor::reply_of(parser->release()));
    return 0;
  }
}
