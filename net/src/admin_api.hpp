// The admin API (CONTRACT sections 7 and 8): authentication, parameters, and the JSON
// answers, on top of the service tree's admin calls.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "http_responses.hpp"
#include "server_state.hpp"

namespace wsvisor {

using admin_request = boost::beast::http::request<boost::beast::http::string_body>;

// Answers one /admin/* request; `respond` is called exactly once, from any thread.
void handle_admin_request(const admin_request& request, const std::shared_ptr<server_state>& state,
                          std::function<void(http_response)> respond);

// The query parameters of a target, percent-decoded; nullopt when malformed.
std::optional<std::map<std::string, std::string>> parse_query(std::string_view target);

// RFC 3339 UTC with milliseconds: 2026-11-28T02:49:45.640Z.
std::string rfc3339(std::chrono::system_clock::time_point t);

}  // namespace wsvisor
