#include "connect_hook.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>

namespace wsvisor {
namespace json = boost::json;

namespace {

// Valid UTF-8 (no overlong forms, no surrogates) and no control characters: a user id
// goes into logs, headers (X-Wsvisor-User) and JSON.
bool is_clean_text(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t n = 0;
    uint32_t code = 0;
    uint32_t min = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      n = 2, code = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 3, code = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 4, code = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (i + n > text.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3f);
    }
    if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
    i += n;
  }
  return true;
}

connect_answer unavailable(std::string problem) {
  connect_answer answer;
  answer.what = connect_answer::kind::unavailable;
  answer.problem = std::move(problem);
  return answer;
}

}  // namespace

std::string connect_hook_body(const admission_request& request, const std::string& connection) {
  json::object body;
  body["connection"] = connection;
  body["ip"] = request.ip;
  if (request.user.empty())
    body["user"] = nullptr;
  else
    body["user"] = request.user;
  const auto question = request.target.find('?');
  body["path"] = request.target.substr(0, question);
  body["query"] =
      question == std::string::npos ? std::string() : request.target.substr(question + 1);
  json::array subprotocols;
  for (const auto& offered : request.subprotocols) subprotocols.emplace_back(offered);
  body["subprotocols"] = std::move(subprotocols);
  json::object headers;
  for (const auto& [name, value] : request.forwarded_headers) headers[name] = value;
  body["headers"] = std::move(headers);
  return json::serialize(body);
}

connect_answer interpret_connect_answer(const upstream_result& result,
                                        const admission_request& request) {
  if (result.outcome == upstream_outcome::rejected &&
      (result.status == 401 || result.status == 403 || result.status == 429)) {
    connect_answer answer;
    answer.what = connect_answer::kind::rejected;
    answer.status = result.status;
    answer.retry_after = result.retry_after;
    return answer;
  }
  if (result.outcome != upstream_outcome::ok)
    return unavailable(std::string("the backend answered ") +
                       (result.status ? std::to_string(result.status) : to_string(result.outcome)));
  if (result.status != 200)
    return unavailable("the backend answered " + std::to_string(result.status) + ", not 200");
  connect_answer answer;
  answer.what = connect_answer::kind::admitted;
  if (result.body.empty()) return answer;  // 200 with no body: admitted as asked
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = 32;
  const auto parsed = json::parse(result.body, ec, {}, options);
  // boost::json refuses a string that is not UTF-8 as a syntax error: the cause names
  // both, so that the backend's author knows where to look.
  if (ec)
    return unavailable("the answer is not valid JSON (" + ec.message() +
                       "; strings must be UTF-8)");
  if (!parsed.is_object()) return unavailable("the answer is not a JSON object");
  const auto& object = parsed.as_object();
  if (const auto* user = object.if_contains("user"); user && !user->is_null()) {
    if (!user->is_string()) return unavailable("\"user\" is not a string");
    const std::string text(user->as_string());
    if (text.empty() || text.size() > kMaxHookUserBytes || !is_clean_text(text))
      return unavailable("\"user\" is empty, longer than 1024 bytes, or not clean UTF-8");
    answer.user = text;
  }
  if (const auto* meta = object.if_contains("meta"); meta && !meta->is_null()) {
    answer.meta = json::serialize(*meta);
    if (answer.meta.size() > kMaxHookMetaBytes)
      return unavailable("\"meta\" is over 4 KiB as compact JSON");
  }
  if (const auto* subprotocol = object.if_contains("subprotocol");
      subprotocol && !subprotocol->is_null()) {
    if (!subprotocol->is_string()) return unavailable("\"subprotocol\" is not a string");
    const std::string chosen(subprotocol->as_string());
    if (std::find(request.subprotocols.begin(), request.subprotocols.end(), chosen) ==
        request.subprotocols.end())
      return unavailable("\"subprotocol\" is not one the client offered");
    answer.subprotocol = chosen;
  }
  return answer;
}

}  // namespace wsvisor
