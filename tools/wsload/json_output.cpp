#include "json_output.hpp"

#include <boost/json/serialize.hpp>

#include <cmath>
#include <cstdio>

namespace wsload {
namespace {

void append(std::string& out, const boost::json::value& value) {
  switch (value.kind()) {
    case boost::json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, member] : value.get_object()) {
        if (!first) out += ',';
        first = false;
        out += boost::json::serialize(boost::json::value(key));  // escapes the key
        out += ':';
        append(out, member);
      }
      out += '}';
      break;
    }
    case boost::json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& element : value.get_array()) {
        if (!first) out += ',';
        first = false;
        append(out, element);
      }
      out += ']';
      break;
    }
    case boost::json::kind::double_: {
      double number = value.get_double();
      if (!std::isfinite(number)) {
        out += "null";  // JSON has no NaN or infinity
        break;
      }
      // Six decimals are below anything wsload measures (microseconds in seconds).
      char text[64];
      std::snprintf(text, sizeof text, "%.6f", number);
      std::string digits = text;
      if (digits.find('.') != std::string::npos) {
        digits.erase(digits.find_last_not_of('0') + 1);
        if (digits.back() == '.') digits.pop_back();
      }
      if (digits == "-0") digits = "0";
      out += digits;
      break;
    }
    default:
      out += boost::json::serialize(value);
      break;
  }
}

}  // namespace

std::string to_json_line(const boost::json::value& value) {
  std::string out;
  append(out, value);
  return out;
}

}  // namespace wsload
