// How the HTTP client to the backend reads a response (CONTRACT 11.1), without the
// socket: the limits a parser gets (max_response_bytes over the head, the framing and
// the body, interim answers included), which answers are interim, and the reply a
// complete response becomes. http_upstream.cpp drives Beast's parser with these over
// the connection; tests/fuzz/fuzz_upstream_response.cpp drives it over any bytes.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "wsvisor/upstream_port.hpp"

namespace wsvisor {

using upstream_response_parser =
    boost::beast::http::response_parser<boost::beast::http::string_body>;

// A fresh parser's limits: what `received` (the bytes of earlier interim answers) left of
// `max_response_bytes`, for the head as for the body; no body for the answer to a HEAD.
void limit_response_parser(upstream_response_parser& parser, uint64_t max_response_bytes,
                           uint64_t received, bool head_request);

// An interim answer (100 Continue, 103 Early Hints; not 101): the final one follows.
constexpr bool is_interim_status(unsigned status) {
  return status >= 100 && status < 200 && status != 101;
}

// ASCII lower case (header names, hosts).
std::string lowercase_ascii(std::string_view text);

// The reply of a complete final response: its status, its headers with names in lower
// case, its body.
upstream_reply reply_of(boost::beast::http::response<boost::beast::http::string_body>&& response);

}  // namespace wsvisor
