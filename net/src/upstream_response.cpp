#include "upstream_response.hpp"

#include <algorithm>
#include <limits>

namespace wsvisor {

void limit_response_parser(upstream_response_parser& parser, uint64_t max_response_bytes,
                           uint64_t received, bool head_request) {
  const uint64_t left = max_response_bytes > received ? max_response_bytes - received : 0;
  parser.header_limit(static_cast<std::uint32_t>(
      std::min<uint64_t>(left, std::numeric_limits<std::uint32_t>::max())));
  parser.body_limit(left);
  // The answer to a HEAD has a Content-Length but no body.
  parser.skip(head_request);
}

std::string lowercase_ascii(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  return out;
}

upstream_reply reply_of(boost::beast::http::response<boost::beast::http::string_body>&& response) {
  upstream_reply reply;
  reply.result = upstream_reply::outcome::response;
  reply.status = response.result_int();
  for (const auto& field : response)
    reply.headers.emplace_back(lowercase_ascii(field.name_string()), std::string(field.value()));
  reply.body = std::move(response.body());
  return reply;
}

}  // namespace wsvisor
