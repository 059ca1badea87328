// Durations in the configuration are strings with a unit ("250ms", "10s", "5m", "1h"):
// a bare number is ambiguous (seconds? milliseconds?), so it is refused with a hint.
#include <cstdint>
#include <string>

#include "config_internal.hpp"

namespace wsvisor {
namespace {

struct duration_unit {
  const char* suffix;
  int64_t milliseconds;
};

// Longest suffix first, so that "ms" is not read as "m" followed by garbage.
constexpr duration_unit units[] = {{"ms", 1}, {"h", 3'600'000}, {"m", 60'000}, {"s", 1'000}};

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

}  // namespace

namespace detail {

std::optional<duration> try_parse_duration(const std::string& text, std::string& problem) {
  const std::string got = ", got \"" + text + "\"";
  const std::string usage = "expected a duration with a unit (ms, s, m or h), e.g. \"250ms\"";
  const bool negative = !text.empty() && text.front() == '-';
  const std::string magnitude = negative ? text.substr(1) : text;
  size_t digits_end = 0;
  while (digits_end < magnitude.size() &&
         (is_digit(magnitude[digits_end]) || magnitude[digits_end] == '.'))
    ++digits_end;
  const std::string number = magnitude.substr(0, digits_end);
  const std::string suffix = magnitude.substr(digits_end);
  if (number.empty()) {
    problem = usage + got;
    return std::nullopt;
  }
  if (suffix.empty()) {
    problem = usage + got + ": add a unit, e.g. \"" + number + "s\"";
    return std::nullopt;
  }
  const duration_unit* unit = nullptr;
  for (const auto& candidate : units)
    if (suffix == candidate.suffix) unit = &candidate;
  if (unit == nullptr) {
    problem = usage + got + " (unknown unit \"" + suffix + "\")";
    return std::nullopt;
  }

  const std::string too_long =
      "expected a duration of at most " + format_duration(longest_duration);
  const size_t point = number.find('.');
  const std::string whole = number.substr(0, point);
  const std::string fraction = point == std::string::npos ? "" : number.substr(point + 1);
  const bool malformed = whole.empty() || (point != std::string::npos && fraction.empty()) ||
                         fraction.find('.') != std::string::npos;
  if (malformed) {
    problem = usage + got;
    return std::nullopt;
  }
  // 12 whole digits times an hour in milliseconds still fits in 63 bits; anything longer
  // is far beyond longest_duration anyway.
  if (whole.size() > 12 || fraction.size() > 9) {
    problem = too_long + got;
    return std::nullopt;
  }
  int64_t fraction_scale = 1;
  for (size_t i = 0; i < fraction.size(); ++i) fraction_scale *= 10;
  const int64_t whole_value = std::stoll(whole);
  const int64_t fraction_value = fraction.empty() ? 0 : std::stoll(fraction);
  const int64_t fraction_ms = fraction_value * unit->milliseconds;
  if (fraction_ms % fraction_scale != 0) {
    problem = "expected a whole number of milliseconds" + got;
    return std::nullopt;
  }
  const duration result{whole_value * unit->milliseconds + fraction_ms / fraction_scale};
  if (result > longest_duration) {
    problem = too_long + got;
    return std::nullopt;
  }
  return negative ? -result : result;
}

}  // namespace detail

duration parse_duration(const std::string& text, const std::string& key) {
  std::string problem;
  auto parsed = detail::try_parse_duration(text, problem);
  if (!parsed) throw config_error(detail::error_message("", key, problem));
  if (*parsed < duration::zero())
    throw config_error(
        detail::error_message("", key, "must not be negative, got \"" + text + "\""));
  return *parsed;
}

std::string format_duration(duration d) {
  if (d < duration::zero()) return "-" + format_duration(-d);
  if (d == duration::zero()) return "0s";
  // The largest unit that divides exactly: "5m" rather than "300s", "1500ms" stays.
  for (const auto& unit : {units[1], units[2], units[3]})
    if (d.count() % unit.milliseconds == 0)
      return std::to_string(d.count() / unit.milliseconds) + unit.suffix;
  return std::to_string(d.count()) + "ms";
}

}  // namespace wsvisor
