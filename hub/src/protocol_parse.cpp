// parse_frame: Centrifugo's JSON commands, one per line of a WebSocket text message.
//
// Boost.JSON validates each line (UTF-8, nesting bounded by max_depth; its parser keeps
// its own stack, so no input recurses) and gives the typed fields. "data" is taken as
// the client's own text instead of Boost's re-serialization, which would rewrite numbers
// (1.5 as 1.5E0, and integers beyond 64 bits rounded to a double): the raw span is found
// by a small scanner over the line, which Boost has already validated.
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "raw_json.hpp"
#include "wsvisor/hub/protocol.hpp"

namespace wsvisor::hub {

namespace json = boost::json;
using detail::compact;
using detail::is_json_space;
using detail::member_text;

namespace {

// ---- Typed fields. Each returns "" or why the field is wrong. A null is the field's
// default, as in protobuf's JSON mapping.

std::string wrong_type(std::string_view field, std::string_view expected) {
  return std::string(field) + " is not " + std::string(expected);
}

std::string read_string(const json::object& object, std::string_view field, std::string& out) {
  const json::value* value = object.if_contains(field);
  if (!value || value->is_null()) return {};
  if (!value->is_string()) return wrong_type(field, "a string");
  out.assign(value->as_string().data(), value->as_string().size());
  return {};
}

std::string read_bool(const json::object& object, std::string_view field, bool& out) {
  const json::value* value = object.if_contains(field);
  if (!value || value->is_null()) return {};
  if (!value->is_bool()) return wrong_type(field, "a boolean");
  out = value->as_bool();
  return {};
}

std::string read_uint64(const json::object& object, std::string_view field, uint64_t& out) {
  const json::value* value = object.if_contains(field);
  if (!value || value->is_null()) return {};
  if (value->is_uint64()) {
    out = value->as_uint64();
  } else if (value->is_int64() && value->as_int64() >= 0) {
    out = static_cast<uint64_t>(value->as_int64());
  } else {
    return wrong_type(field, "an unsigned integer");
  }
  return {};
}

std::string read_int64(const json::object& object, std::string_view field, int64_t& out) {
  const json::value* value = object.if_contains(field);
  if (!value || value->is_null()) return {};
  if (value->is_int64()) {
    out = value->as_int64();
  } else if (value->is_uint64() &&
             value->as_uint64() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    out = static_cast<int64_t>(value->as_uint64());
  } else {
    return wrong_type(field, "an integer");
  }
  return {};
}

// A member that must be an object when present: nullptr when absent or null.
const json::object* read_object(const json::object& object, std::string_view field,
                                std::string& why) {
  const json::value* value = object.if_contains(field);
  if (!value || value->is_null()) return nullptr;
  if (!value->is_object()) {
    why = wrong_type(field, "an object");
    return nullptr;
  }
  return &value->as_object();
}

// "data": the client's text, compacted; "" when absent or null. `body_text` is the
// command's object text, in which the member is looked up.
void read_data(const json::object& body, std::string_view body_text, std::string& out) {
  const json::value* value = body.if_contains("data");
  if (!value || value->is_null()) return;
  if (const auto text = member_text(body_text, "data")) out = compact(*text);
}

struct command_name {
  std::string_view name;
  command_kind kind;
};
// The command members of client.proto's Command ("ping" is the v1 ping, not in v2).
constexpr std::array<command_name, 11> kCommandNames{{
    {"connect", command_kind::connect},
    {"subscribe", command_kind::subscribe},
    {"unsubscribe", command_kind::unsubscribe},
    {"publish", command_kind::publish},
    {"presence", command_kind::presence},
    {"presence_stats", command_kind::presence_stats},
    {"history", command_kind::history},
    {"rpc", command_kind::rpc},
    {"send", command_kind::send},
    {"refresh", command_kind::refresh},
    {"sub_refresh", command_kind::sub_refresh},
}};

std::string read_position(const json::object& object, stream_position& position) {
  if (auto why = read_uint64(object, "offset", position.offset); !why.empty()) return why;
  return read_string(object, "epoch", position.epoch);
}

std::string read_connect(const json::object& body, command& out) {
  std::string why;
  if (why = read_string(body, "token", out.token); !why.empty()) return why;
  if (why = read_string(body, "name", out.name); !why.empty()) return why;
  if (why = read_string(body, "version", out.version); !why.empty()) return why;
  const json::object* subs = read_object(body, "subs", why);
  if (!why.empty()) return why;
  if (!subs) return {};
  for (const auto& [channel, request] : *subs) {
    if (!request.is_object()) return "subs entry is not an object";
    subscribe_request_recovery recovery;
    if (why = read_bool(request.as_object(), "recover", recovery.recover); !why.empty())
      return "subs." + why;
    if (why = read_position(request.as_object(), recovery.since); !why.empty())
      return "subs." + why;
    out.subs.emplace_back(std::string(channel), std::move(recovery));
  }
  return {};
}

std::string read_subscribe(const json::object& body, command& out) {
  std::string why;
  if (why = read_string(body, "channel", out.channel); !why.empty()) return why;
  if (why = read_string(body, "token", out.token); !why.empty()) return why;
  if (why = read_bool(body, "recover", out.recover); !why.empty()) return why;
  if (why = read_position(body, out.since); !why.empty()) return why;
  if (why = read_bool(body, "recoverable", out.recoverable); !why.empty()) return why;
  if (why = read_bool(body, "positioned", out.positioned); !why.empty()) return why;
  return read_bool(body, "join_leave", out.join_leave);
}

std::string read_history(const json::object& body, command& out) {
  std::string why;
  if (why = read_string(body, "channel", out.channel); !why.empty()) return why;
  if (why = read_int64(body, "limit", out.limit); !why.empty()) return why;
  if (why = read_bool(body, "reverse", out.reverse); !why.empty()) return why;
  const json::object* since = read_object(body, "since", why);
  if (!why.empty()) return why;
  if (since) {
    out.has_since = true;
    if (why = read_position(*since, out.since); !why.empty()) return "since." + why;
  }
  return {};
}

// The fields of one command's body, by kind.
std::string read_body(const json::object& body, std::string_view body_text, command& out) {
  switch (out.kind) {
    case command_kind::connect:
      read_data(body, body_text, out.data);
      return read_connect(body, out);
    case command_kind::subscribe:
      read_data(body, body_text, out.data);
      return read_subscribe(body, out);
    case command_kind::unsubscribe:
    case command_kind::presence:
    case command_kind::presence_stats:
      return read_string(body, "channel", out.channel);
    case command_kind::publish:
      read_data(body, body_text, out.data);
      return read_string(body, "channel", out.channel);
    case command_kind::history:
      return read_history(body, out);
    case command_kind::rpc:
      read_data(body, body_text, out.data);
      return read_string(body, "method", out.method);
    case command_kind::send:
      read_data(body, body_text, out.data);
      return {};
    case command_kind::refresh:
      return read_string(body, "token", out.token);
    case command_kind::sub_refresh:
      if (auto why = read_string(body, "channel", out.channel); !why.empty()) return why;
      return read_string(body, "token", out.token);
    case command_kind::ping:
      return {};
  }
  return {};
}

// One line: one command object.
std::string read_command(const json::value& value, std::string_view line, command& out) {
  if (!value.is_object()) return "a command is not a JSON object";
  const json::object& object = value.as_object();

  uint64_t id = 0;
  if (auto why = read_uint64(object, "id", id); !why.empty()) return why;
  if (id > std::numeric_limits<uint32_t>::max()) return "id is not a uint32";
  out.id = static_cast<uint32_t>(id);

  const json::value* body = nullptr;
  std::string_view body_name;
  for (const command_name& candidate : kCommandNames) {
    const json::value* member = object.if_contains(candidate.name);
    if (!member || member->is_null()) continue;
    if (body) return "several commands in one object";
    body = member;
    body_name = candidate.name;
    out.kind = candidate.kind;
  }
  if (!body) {
    // {} is the client's pong; an id with no command is nothing Centrifugo knows.
    if (out.id != 0) return "a command with an id but no method";
    out.kind = command_kind::ping;
    return {};
  }
  if (!body->is_object()) return std::string(body_name) + " is not an object";
  if (out.id == 0 && out.kind != command_kind::send)
    return std::string(body_name) + " without an id";
  const std::string_view body_text = member_text(line, body_name).value_or(std::string_view{});
  if (auto why = read_body(body->as_object(), body_text, out); !why.empty())
    return std::string(body_name) + ": " + why;
  return {};
}

}  // namespace

parsed_frame parse_frame(std::string_view frame, std::size_t max_depth) {
  parsed_frame result;
  json::parse_options options;
  options.max_depth = max_depth;
  // A small first block on the stack covers the usual command; the resource grows for
  // larger ones and is reset between lines, so that a batch holds one line's tree at once.
  std::array<unsigned char, 4096> first_block;
  json::monotonic_resource resource(first_block.data(), first_block.size());

  std::size_t line_number = 0;
  std::size_t begin = 0;
  while (begin <= frame.size()) {
    const std::size_t newline = frame.find('\n', begin);
    const std::size_t end = newline == std::string_view::npos ? frame.size() : newline;
    std::string_view line = frame.substr(begin, end - begin);
    begin = end + 1;
    ++line_number;
    while (!line.empty() && is_json_space(line.front())) line.remove_prefix(1);
    while (!line.empty() && is_json_space(line.back())) line.remove_suffix(1);
    if (line.empty()) continue;

    std::string why;
    {
      boost::system::error_code ec;
      const json::value value = json::parse(line, ec, &resource, options);
      if (ec) {
        why = "not JSON (" + ec.message() + ")";
      } else {
        command parsed;
        why = read_command(value, line, parsed);
        if (why.empty()) result.commands.push_back(std::move(parsed));
      }
    }
    resource.release();
    if (!why.empty()) {
      result.commands.clear();
      result.error = "line " + std::to_string(line_number) + ": " + why;
      return result;
    }
  }
  return result;
}

}  // namespace wsvisor::hub
