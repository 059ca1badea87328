// What the subscribe and publish modes say on the wire: the few pieces of Centrifugo's
// bidirectional client protocol v2, JSON encoding, that a subscriber needs (connect,
// subscribe, ping/pong, the pushes), and the timestamped publication data that publish
// sends and subscribe times. Written from Centrifugo's protocol description, not from
// wsvisor's code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsload {

// CLOCK_MONOTONIC in nanoseconds: one clock for every process on this machine, so a
// timestamp written by the publisher process is read by the subscriber process.
std::uint64_t monotonic_ns();

// {"ts":<ts_ns>,"pad":"xx...x"} of exactly `size` bytes (of the smallest such object
// when size is below it, ~32 bytes).
std::string timestamped_data(std::uint64_t ts_ns, std::size_t size);

// The number after the first "ts": at or after `from`, if there is one.
std::optional<std::uint64_t> find_timestamp(std::string_view text, std::size_t from = 0);

// Client commands. The token is left out when empty (anonymous connect).
std::string connect_command(std::uint32_t id, const std::string& token);
// One frame of subscribe commands with ids first_id, first_id + 1, ..., one a line, as
// Centrifugo's SDKs batch them.
std::string subscribe_commands(std::uint32_t first_id, const std::vector<std::string>& channels);
// count 1: {base}; count K > 1: {base0, ..., base<K-1>}; count 0: none.
std::vector<std::string> channel_names(const std::string& base, int count);
// The answer to the server's ping (an empty command).
inline constexpr std::string_view kPong = "{}";

// One message (one line of a frame) from the server.
struct ServerMessage {
  enum class Kind { ping, reply, publication, disconnect, other_push, malformed };
  Kind kind = Kind::malformed;
  std::uint32_t id = 0;             // reply
  std::optional<int> error_code;    // reply: its "error"
  bool pong_wanted = false;         // connect reply: "pong": true
  std::optional<std::uint64_t> ts;  // publication: "ts" in its data
  int disconnect_code = 0;          // disconnect push
};
// Publications take a fast path (a scan for the push, its "pub" and the data's "ts", no
// JSON parse), so that the client's cost per delivery stays small; everything else is
// parsed with Boost.JSON.
ServerMessage parse_server_message(std::string_view line);

// Calls f(line) for each non-empty line of a frame (several replies may share one).
template <class F>
void for_each_line(std::string_view frame, F&& f) {
  while (!frame.empty()) {
    auto end = frame.find('\n');
    auto line = frame.substr(0, end);
    if (!line.empty()) f(line);
    if (end == std::string_view::npos) break;
    frame.remove_prefix(end + 1);
  }
}

}  // namespace wsload
