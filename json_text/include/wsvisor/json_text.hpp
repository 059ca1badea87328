// Text into JSON strings, for the JSON that wsvisor writes by hand (log lines, hub mode's
// replies and pushes): whatever bytes come from outside, the result is valid JSON.
#pragma once

#include <string>
#include <string_view>

namespace wsvisor::json_text {

// How the characters that JSON lets through as they are, or can escape two ways, are
// written; everything else is the same in both.
enum class escapes {
  // \b and \f as such, DEL (0x7f) as it is: the shortest JSON (hub mode's protocol).
  shortest,
  // \b, \f and DEL as \u0008, \u000c and \u007f, as every other control character but
  // \n, \r and \t: nothing a terminal acts on stays raw (log lines).
  controls_as_unicode,
};

// Appends `text` as the content of a JSON string, without the quotes: '"' and '\\'
// escaped, \n, \r and \t as such, the other control characters as \u00XX (see
// `escapes`), UTF-8 as it is, and each byte that is not part of a UTF-8 sequence
// (overlong forms, surrogates and code points above U+10FFFF are not UTF-8 either) as
// \ufffd.
void append_escaped(std::string& out, std::string_view text, escapes style);

// The same between quotes: a whole JSON string.
void append_quoted(std::string& out, std::string_view text, escapes style);

}  // namespace wsvisor::json_text
