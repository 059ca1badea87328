// Helpers shared by the loader's translation units; not part of the public interface.
#pragma once

#include <optional>
#include <string>

#include "wsvisor/config.hpp"

namespace wsvisor::detail {

// Parses a duration such as "250ms", "1.5s", "5m", "1h", or one with a leading '-' (a
// negative duration, which the caller refuses as such: "-1s" does not lack a unit). On
// failure returns nullopt and sets `problem` to what is wrong with the text, so callers
// can add where it came from.
std::optional<duration> try_parse_duration(const std::string& text, std::string& problem);

// What every duration must lie within: Asio timers overflow when a deadline is centuries
// away, and no setting of this server needs more than a year.
inline constexpr duration longest_duration = std::chrono::hours(24 * 365);

// Builds the message of a config_error: "config error: <where>: <key>: <problem>", where
// `where` and `key` are left out when empty.
std::string error_message(const std::string& where, const std::string& key,
                          const std::string& problem);

// The secret keys as "WSVISOR_A (a.b), ... and WSVISOR_C (c.d)", from the key table, so that
// --help names every one.
std::string secret_variables();

// The text of a configuration file; throws config_error naming `path` when it cannot be
// read (missing, a directory, no permission).
std::string read_config_file(const std::string& path);

}  // namespace wsvisor::detail
