#include "wsvisor/json_text.hpp"

#include <cstdint>

namespace wsvisor::json_text {

namespace {

// The number of bytes of the well-formed UTF-8 sequence at `text[i]`, or 0.
std::size_t utf8_sequence(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  std::size_t length = 0;
  uint32_t min = 0;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
    min = 0x80;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    min = 0x800;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  uint32_t code = lead & (0xff >> (length + 1));
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3f);
  }
  if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return 0;
  return length;
}

// The two-character escape of an ASCII byte, or nullptr when it has none in `style`.
const char* short_escape(unsigned char c, escapes style) {
  switch (c) {
    case '"':
      return "\\\"";
    case '\\':
      return "\\\\";
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    case '\b':
      return style == escapes::shortest ? "\\b" : nullptr;
    case '\f':
      return style == escapes::shortest ? "\\f" : nullptr;
    default:
      return nullptr;
  }
}

}  // namespace

void append_escaped(std::string& out, std::string_view text, escapes style) {
  static constexpr char hex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (const char* escape = short_escape(c, style)) {
      out += escape;
    } else if (c < 0x20 || (c == 0x7f && style == escapes::controls_as_unicode)) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    } else if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (const auto n = utf8_sequence(text, i); n > 0) {
      out.append(text.substr(i, n));
      i += n - 1;
    } else {
      out += "\\ufffd";  // not UTF-8: JSON text must be
    }
  }
}

void append_quoted(std::string& out, std::string_view text, escapes style) {
  out.reserve(out.size() + text.size() + 2);
  out += '"';
  append_escaped(out, text, style);
  out += '"';
}

}  // namespace wsvisor::json_text
