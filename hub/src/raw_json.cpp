// The raw-text scanner: every function assumes valid JSON (the caller had Boost.JSON
// validate it) and stays within the text whatever it holds.
#include "raw_json.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

namespace wsvisor::hub::detail {

namespace {

std::size_t skip_space(std::string_view text, std::size_t i) {
  while (i < text.size() && is_json_space(text[i])) ++i;
  return i;
}

// text[i] is the opening quote; returns the index after the closing one.
std::size_t skip_string(std::string_view text, std::size_t i) {
  ++i;
  while (i < text.size() && text[i] != '"') i += text[i] == '\\' ? 2 : 1;
  return i < text.size() ? i + 1 : text.size();
}

// text[i] starts a value; returns the index after it. Nesting is counted, not recursed.
std::size_t skip_value(std::string_view text, std::size_t i) {
  if (i >= text.size()) return i;
  if (text[i] == '"') return skip_string(text, i);
  if (text[i] == '{' || text[i] == '[') {
    std::size_t depth = 0;
    while (i < text.size()) {
      const char c = text[i];
      if (c == '"') {
        i = skip_string(text, i);
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
      ++i;
    }
    return i;
  }
  while (i < text.size() && text[i] != ',' && text[i] != '}' && text[i] != ']' &&
         !is_json_space(text[i]))
    ++i;
  return i;
}

}  // namespace

std::optional<std::string_view> member_text(std::string_view object, std::string_view key) {
  std::optional<std::string_view> found;
  std::size_t i = skip_space(object, 0);
  if (i >= object.size() || object[i] != '{') return found;
  ++i;
  while (true) {
    i = skip_space(object, i);
    if (i >= object.size() || object[i] != '"') break;
    const std::size_t key_end = skip_string(object, i);
    const std::string_view key_token = object.substr(i, key_end - i);
    bool matches;
    if (key_token.find('\\') == std::string_view::npos) {
      matches = key_token.substr(1, key_token.size() - 2) == key;
    } else {
      // An escaped key ("d\u0061ta"): what it decodes to decides, as for Boost.
      boost::system::error_code ec;
      const boost::json::value decoded = boost::json::parse(key_token, ec);
      matches = !ec && decoded.is_string() && decoded.as_string() == key;
    }
    i = skip_space(object, key_end);
    if (i >= object.size() || object[i] != ':') break;
    const std::size_t value_begin = skip_space(object, i + 1);
    const std::size_t value_end = skip_value(object, value_begin);
    if (matches) found = object.substr(value_begin, value_end - value_begin);
    i = skip_space(object, value_end);
    if (i >= object.size() || object[i] != ',') break;
    ++i;
  }
  return found;
}

std::string compact(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '"') {
      const std::size_t end = skip_string(text, i);
      out.append(text.data() + i, end - i);
      i = end;
    } else {
      if (!is_json_space(text[i])) out += text[i];
      ++i;
    }
  }
  return out;
}

}  // namespace wsvisor::hub::detail
