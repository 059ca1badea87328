// The text of members of JSON that is known to be valid, as written, for the fields that
// are passed on verbatim ("data", "info", ...): Boost.JSON's re-serialization would
// rewrite numbers (1.5 as 1.5E0, integers beyond 64 bits rounded to a double). Private to
// the library.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace wsvisor::hub::detail {

inline bool is_json_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

// The text of the value of member `key` of the object that `object` holds (its whole text,
// braces included, surrounding whitespace allowed); the last one when the key repeats, as
// Boost.JSON keeps the last. nullopt when there is none.
std::optional<std::string_view> member_text(std::string_view object, std::string_view key);

// The value's text without the whitespace between tokens.
std::string compact(std::string_view text);

}  // namespace wsvisor::hub::detail
