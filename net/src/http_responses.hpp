// The HTTP answers wsvisor gives, built in one place so every JSON body, status and
// header of CONTRACT sections 3 and 4 is easy to find.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <string>

#include "wsvisor/metrics.hpp"

namespace wsvisor {

using http_response = boost::beast::http::response<boost::beast::http::string_body>;

http_response json_response(boost::beast::http::status status, std::string body, unsigned version,
                            bool keep_alive);

// `{"error":"<reason>"}` with the reason's status (or `status`, when not 0: the
// backend's for `rejected`), Connection: close, and Retry-After when `retry_after` is not
// zero.
http_response refusal_response(reject_reason reason, std::chrono::seconds retry_after,
                               unsigned version, unsigned status = 0);

boost::beast::http::status refusal_status(reject_reason reason);

// `{"error":"<code>"}`.
std::string error_body(const char* code);

// JSON text like boost::json::serialize, except that a double is written in plain
// decimal with millisecond precision ("uptime_s":2.017, not 2.017257041E0).
std::string json_text(const boost::json::value& value);

}  // namespace wsvisor
