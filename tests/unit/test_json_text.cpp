// wsvisor_json_text: text into JSON strings, in both of its styles (hub mode's shortest
// escapes, the log lines' \u00XX for every control character), and never invalid UTF-8.
#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "wsvisor/json_text.hpp"

using wsvisor::json_text::escapes;

namespace {

std::string escaped(std::string_view text, escapes style) {
  std::string out = "<";  // appended to, never replaced
  wsvisor::json_text::append_escaped(out, text, style);
  return out;
}

}  // namespace

TEST_CASE("both styles: quotes, backslashes, \\n \\r \\t, other control characters, UTF-8") {
  for (const auto style : {escapes::shortest, escapes::controls_as_unicode}) {
    CAPTURE(static_cast<int>(style));
    CHECK(escaped("", style) == "<");
    CHECK(escaped("plain /text/ <&>", style) == "<plain /text/ <&>");
    CHECK(escaped("a\"b\\c", style) == "<a\\\"b\\\\c");
    CHECK(escaped("n\nr\rt\t", style) == "<n\\nr\\rt\\t");
    CHECK(escaped(std::string("\0\x01\x1f", 3), style) == "<\\u0000\\u0001\\u001f");
    CHECK(escaped("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf", style) ==
          "<caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf");
  }
}

TEST_CASE("the styles differ in \\b, \\f and DEL only") {
  const std::string controls("\b\f\x7f", 3);
  CHECK(escaped(controls, escapes::shortest) == "<\\b\\f\x7f");
  CHECK(escaped(controls, escapes::controls_as_unicode) == "<\\u0008\\u000c\\u007f");
}

TEST_CASE("each byte that is not part of a UTF-8 sequence becomes \\ufffd") {
  for (const auto style : {escapes::shortest, escapes::controls_as_unicode}) {
    CAPTURE(static_cast<int>(style));
    CHECK(escaped("bad \xff end", style) == "<bad \\ufffd end");
    CHECK(escaped("\x80", style) == "<\\ufffd");  // a lone continuation
    CHECK(escaped("overlong \xc0\xaf", style) == "<overlong \\ufffd\\ufffd");      // 2 bytes
    CHECK(escaped("\xe0\x80\xaf", style) == "<\\ufffd\\ufffd\\ufffd");             // 3 bytes
    CHECK(escaped("\xf0\x80\x80\xaf", style) == "<\\ufffd\\ufffd\\ufffd\\ufffd");  // 4 bytes
    CHECK(escaped("surrogate \xed\xa0\x80", style) == "<surrogate \\ufffd\\ufffd\\ufffd");
    CHECK(escaped("\xf4\x90\x80\x80", style) == "<\\ufffd\\ufffd\\ufffd\\ufffd");  // > U+10FFFF
    CHECK(escaped("cut \xe2\x82", style) == "<cut \\ufffd\\ufffd");
    CHECK(escaped("\xc3(", style) == "<\\ufffd(");  // the byte after a bad lead is read again
  }
}

TEST_CASE("append_quoted: the same between quotes") {
  std::string out = "x:";
  wsvisor::json_text::append_quoted(out, "a\"\b\x7f\xff", escapes::shortest);
  CHECK(out == "x:\"a\\\"\\b\x7f\\ufffd\"");
  out.clear();
  wsvisor::json_text::append_quoted(out, "", escapes::controls_as_unicode);
  CHECK(out == "\"\"");
}
