// Centrifugo's bidirectional client protocol v2, JSON encoding (CONTRACT 13): the
// commands a client sends, parsed from one WebSocket text message, and the replies and
// pushes the server sends, encoded to the exact bytes of one JSON object each. Field
// names are those of centrifugal/protocol definitions/client.proto; like Centrifugo's
// JSON, false, zero and empty fields are left out, so that the SDK sees what it would
// see from Centrifugo. Pure functions: no I/O, no state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsvisor::hub {

// The codes of error replies (Centrifugo's docs/server/codes.md). An error fails one
// command; the connection stays.
enum class error_code : uint16_t {
  internal = 100,
  unauthorized = 101,
  unknown_channel = 102,
  permission_denied = 103,
  method_not_found = 104,
  already_subscribed = 105,
  limit_exceeded = 106,
  bad_request = 107,
  not_available = 108,
  token_expired = 109,
  expired = 110,
  too_many_requests = 111,
  unrecoverable_position = 112,
};

// Centrifugo's message for the code ("internal server error", "unauthorized", ...).
std::string_view error_message(error_code code);

// Whether the SDK should retry the command by itself: 100 and 111, as Centrifugo marks them.
bool error_temporary(error_code code);

// A disconnect: the WebSocket close code and reason Centrifugo uses (and the SDK acts on:
// 3000-3499 reconnect, 3500-3999 do not).
struct disconnect_code {
  uint16_t code;
  const char* reason;
};
inline constexpr disconnect_code disconnect_shutdown{3001, "shutdown"};
inline constexpr disconnect_code disconnect_server_error{3004, "internal server error"};
inline constexpr disconnect_code disconnect_expired{3005, "connection expired"};
inline constexpr disconnect_code disconnect_insufficient_state{3010, "insufficient state"};
inline constexpr disconnect_code disconnect_invalid_token{3500, "invalid token"};
inline constexpr disconnect_code disconnect_bad_request{3501, "bad request"};
inline constexpr disconnect_code disconnect_stale{3502, "stale"};
inline constexpr disconnect_code disconnect_force_no_reconnect{3503, "force disconnect"};
inline constexpr disconnect_code disconnect_connection_limit{3504, "connection limit"};
inline constexpr disconnect_code disconnect_channel_limit{3505, "channel limit"};
// Beyond the list above, for the cases Centrifugo has a code of its own for.
inline constexpr disconnect_code disconnect_subscription_expired{3006, "subscription expired"};
inline constexpr disconnect_code disconnect_slow{3008, "slow"};
inline constexpr disconnect_code disconnect_force_reconnect{3011, "force reconnect"};
inline constexpr disconnect_code disconnect_no_pong{3012, "no pong"};
inline constexpr disconnect_code disconnect_too_many_requests{3013, "too many requests"};
inline constexpr disconnect_code disconnect_permission_denied{3507, "permission denied"};

// The codes of an unsubscribe push (the subscription ends, the connection stays):
// 2000-2499 the SDK does not resubscribe, 2500-2999 it does.
inline constexpr disconnect_code unsubscribe_server{2000, "server unsubscribe"};
inline constexpr disconnect_code unsubscribe_insufficient_state{2500, "insufficient state"};
inline constexpr disconnect_code unsubscribe_expired{2501, "subscription expired"};

// A place in a channel's stream: the offset of a publication and the stream's epoch.
struct stream_position {
  uint64_t offset = 0;
  std::string epoch;
};

enum class command_kind : uint8_t {
  connect,
  subscribe,
  unsubscribe,
  publish,
  presence,
  presence_stats,
  history,
  rpc,
  send,
  refresh,
  sub_refresh,
  ping,  // an empty {} command: the client's pong to the server's {} ping
};

// "connect", "subscribe", ..., "ping": the command label of wsvisor_hub_commands_total.
const char* to_string(command_kind kind);

// One entry of connect.subs: a server-side subscription the client recovers.
struct subscribe_request_recovery {
  bool recover = false;
  stream_position since;
};

// One parsed command. Only the fields of its kind are set; the rest keep their defaults.
struct command {
  uint32_t id = 0;  // 0 only for send and ping, which get no reply
  command_kind kind = command_kind::ping;
  std::string channel;  // subscribe, unsubscribe, publish, presence, presence_stats, history,
                        // sub_refresh
  std::string token;    // connect, refresh, subscribe, sub_refresh
  std::string data;     // compact JSON text of "data" (connect, subscribe, publish, rpc, send);
                        // "" when absent
  std::string method;   // rpc
  std::string name, version;  // connect: the SDK's name and version
  std::vector<std::pair<std::string, subscribe_request_recovery>> subs;  // connect.subs
  bool recover = false;   // subscribe: recover from `since`
  stream_position since;  // subscribe (with recover), history (with has_since)
  bool recoverable = false, positioned = false, join_leave = false;  // subscribe flags
  int64_t limit = 0;                                                 // history
  bool has_since = false;                                            // history: `since` was given
  bool reverse = false;                                              // history
};

struct parsed_frame {
  std::vector<command> commands;  // in the order they came
  std::string error;              // "" = ok; else why the frame is malformed, for the log
};

// One WebSocket text message: one or more JSON commands separated by '\n' (empty lines
// ignored). Anything malformed (not JSON, not an object, a field of the wrong type, an
// unknown command, several commands in one object, no id on a command that needs a
// reply, nesting deeper than max_depth, a "data" that is not JSON) sets `error` and
// leaves `commands` empty: the caller closes with disconnect_bad_request. Never recurses
// on the input, so any depth is refused, not a stack overflow.
parsed_frame parse_frame(std::string_view frame, std::size_t max_depth = 64);

// Who a publication, join, leave or presence entry is about. conn_info and chan_info are
// raw JSON (from a token or a proxy, already validated) or "" for none.
struct client_info {
  std::string user, client, conn_info, chan_info;
};

struct publication {
  uint64_t offset = 0;              // 0 = the channel keeps no history: not written
  std::string data;                 // raw JSON
  std::optional<client_info> info;  // the publisher, for publications from a client
  std::vector<std::pair<std::string, std::string>> tags;
};

// The result of a subscribe, as a reply, a subscribe push or an entry of connect.subs.
// The publications are borrowed for the encoding call only.
struct subscribe_result {
  bool expires = false;
  uint32_t ttl = 0;  // seconds until the subscription expires (with expires)
  bool recoverable = false;
  bool positioned = false;
  std::string epoch;
  uint64_t offset = 0;
  bool was_recovering = false;
  bool recovered = false;
  std::vector<const publication*> publications;
  std::string data;  // raw JSON or ""
};

struct connect_result {
  std::string client, version, node;
  std::string data;  // raw JSON or ""
  bool expires = false;
  uint32_t ttl = 0;   // seconds until the connection expires (with expires)
  uint32_t ping = 0;  // seconds between the server's pings
  bool pong = false;  // the client must answer them
  std::vector<std::pair<std::string, subscribe_result>> subs;  // server-side subscriptions
};

// Replies: {"id":N,"<kind>":{...}} or {"id":N,"error":{...}}. No trailing newline: a
// caller that sends several in one frame joins them with '\n'.
std::string reply_error(uint32_t id, error_code code);
// An error of the caller's own (a proxy's custom code and message).
std::string reply_error(uint32_t id, uint32_t code, std::string_view message, bool temporary);
std::string reply_connect(uint32_t id, const connect_result& result);
std::string reply_subscribe(uint32_t id, const subscribe_result& result);
// A result with no fields: {"id":N,"unsubscribe":{}}, publish, ... (for command_kind::send
// and ping, which get no reply, "").
std::string reply_empty(uint32_t id, command_kind kind);
std::string reply_presence(uint32_t id, const std::vector<client_info>& clients);
std::string reply_presence_stats(uint32_t id, uint64_t num_clients, uint64_t num_users);
// The publications (oldest first, or as the range gave them) and the stream's top position.
std::string reply_history(uint32_t id, const std::vector<const publication*>& publications,
                          const stream_position& top);
std::string reply_rpc(uint32_t id, std::string_view data_json);
std::string reply_refresh(uint32_t id, std::string_view client, std::string_view version,
                          bool expires, uint32_t ttl);
std::string reply_sub_refresh(uint32_t id, bool expires, uint32_t ttl);

// Pushes: {"push":{...}}, with no id.
std::string push_publication(std::string_view channel, const publication& pub);
std::string push_join(std::string_view channel, const client_info& info);
std::string push_leave(std::string_view channel, const client_info& info);
std::string push_unsubscribe(std::string_view channel, uint16_t code, std::string_view reason);
std::string push_subscribe(std::string_view channel, const subscribe_result& result);
std::string push_message(std::string_view data_json);
std::string push_disconnect(uint16_t code, std::string_view reason, bool reconnect);

// The server's ping, "{}" (the same bytes are the client's pong).
std::string ping_frame();

}  // namespace wsvisor::hub
