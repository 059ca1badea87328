#include "http_responses.hpp"

#include <fmt/format.h>
#include <boost/json/serialize.hpp>

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
                               unsigned version, unsigned status) {
  auto response =
      json_response(status != 0 ? static_cast<http::status>(status) : refusal_status(reason),
                    error_body(to_string(reason)), version, false);
  if (retry_after.count() > 0)
    response.set(http::field::retry_after, std::to_string(retry_after.count()));
  return response;
}

std::string json_text(const boost::json::value& value) {
  switch (value.kind()) {
    case boost::json::kind::double_:
      return fmt::format("{:.3f}", value.get_double());
    case boost::json::kind::object: {
      std::string out = "{";
      for (const auto& [key, member] : value.get_object()) {
        if (out.size() > 1) out += ',';
        out += boost::json::serialize(boost::json::string_view(key));
        out += ':';
        out += json_text(member);
      }
      return out + "}";
    }
    case boost::json::kind::array: {
      std::string out = "[";
      for (const auto& element : value.get_array()) {
        if (out.size() > 1) out += ',';
        out += json_text(element);
      }
      return out + "]";
    }
    default:
      return boost::json::serialize(value);
  }
}

}  // namespace wsvisor
