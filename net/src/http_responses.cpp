#include "http_responses.hpp"

namespace wsvisor {
namespace http = boost::beast::http;

std::string error_body(const char* code) {
  return std::string("{\"error\":\"") + code + "\"}";
}

http_response json_response(http::status status, std::string body, unsigned version,
                            bool keep_alive) {
  http_response response{status, version};
  response.set(http::field::server, "wsvisor");
  response.set(http::field::content_type, "application/json");
  response.set(http::field::cache_control, "no-store");
  response.keep_alive(keep_alive);
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

http::status refusal_status(reject_reason reason) {
  switch (reason) {
    case reject_reason::rate_limited:
    case reject_reason::ip_limit:
    case reject_reason::user_limit:
      return http::status::too_many_requests;
    case reject_reason::forbidden_origin:
      return http::status::forbidden;
    case reject_reason::unauthorized:
      return http::status::unauthorized;
    default:
      return http::status::service_unavailable;
  }
}

http_response refusal_response(reject_reason reason, std::chrono::seconds retry_after,
                               unsigned version) {
  auto response =
      json_response(refusal_status(reason), error_body(to_string(reason)), version, false);
  if (retry_after.count() > 0)
    response.set(http::field::retry_after, std::to_string(retry_after.count()));
  return response;
}

}  // namespace wsvisor
