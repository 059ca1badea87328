#include "fault_body.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <optional>

#include "wsvisor/config.hpp"
#include "wsvisor/frame_header.hpp"

namespace wsvisor {

namespace json = boost::json;

namespace {

using action = fault_request::action;
using target = fault_request::target;

constexpr const char* kActions =
    "\"action\" must be one of crash, poison, delay, clear, stall, latency, drop, close, reset, "
    "zombie, restart";
constexpr const char* kTargets =
    "\"target\" must be one of connection, limit_guard, janitor, shard, upstream, events, hub, "
    "cluster, client";
// The longest hold a stall or a latency may ask for, and the longest restart spread.
constexpr int64_t kMaxFaultMs = 600000;
constexpr auto kMaxSpread = std::chrono::minutes(10);

std::optional<action> action_named(const std::string& name) {
  static const std::pair<const char*, action> names[] = {
      {"crash", action::crash},   {"poison", action::poison},  {"delay", action::delay},
      {"clear", action::clear},   {"stall", action::stall},    {"latency", action::latency},
      {"drop", action::drop},     {"close", action::close},    {"reset", action::reset},
      {"zombie", action::zombie}, {"restart", action::restart}};
  for (const auto& [text, value] : names)
    if (name == text) return value;
  return std::nullopt;
}

std::optional<target> target_named(const std::string& name) {
  static const std::pair<const char*, target> names[] = {{"connection", target::connection},
                                                         {"limit_guard", target::limit_guard},
                                                         {"janitor", target::janitor},
                                                         {"shard", target::shard},
                                                         {"upstream", target::upstream},
                                                         {"events", target::events},
                                                         {"hub", target::hub},
                                                         {"cluster", target::cluster},
                                                         {"client", target::client}};
  for (const auto& [text, value] : names)
    if (name == text) return value;
  return std::nullopt;
}

bool toward_client(action what) {
  return what == action::stall || what == action::latency || what == action::drop ||
         what == action::close || what == action::reset || what == action::zombie ||
         what == action::restart;
}

// An integer field from `low` to `high`; `name` is absent: nullopt, with `error` empty.
std::optional<int64_t> integer_field(const json::object& object, const char* name, int64_t low,
                                     int64_t high, std::string& error) {
  const auto* field = object.if_contains(name);
  if (!field) return std::nullopt;
  if (!field->is_int64() || field->as_int64() < low || field->as_int64() > high) {
    error = std::string("\"") + name + "\" must be an integer from " + std::to_string(low) +
            " to " + std::to_string(high);
    return std::nullopt;
  }
  return field->as_int64();
}

std::optional<double> number_of(const json::value& value) {
  if (value.is_double()) return value.as_double();
  if (value.is_int64()) return static_cast<double>(value.as_int64());
  if (value.is_uint64()) return static_cast<double>(value.as_uint64());
  return std::nullopt;
}

// Which clients: user, id, connection or share, exactly one (restart: none is every
// connection). Returns the error text, "" when fine.
std::string read_selector(const json::object& object, fault_request& fault) {
  const char* needs =
      "a client fault needs one of \"user\" (string), \"id\" (positive integer), "
      "\"connection\" (\"<node>.<n>\") or \"share\" (0 < F <= 1)";
  int given = 0;
  if (const auto* user = object.if_contains("user")) {
    if (!user->is_string() || user->as_string().empty()) return needs;
    fault.user = std::string(user->as_string());
    ++given;
  }
  if (const auto* id = object.if_contains("id")) {
    if (id->is_int64() && id->as_int64() > 0)
      fault.id = static_cast<uint64_t>(id->as_int64());
    else if (id->is_uint64())
      fault.id = id->as_uint64();
    else
      return needs;
    ++given;
  }
  if (const auto* connection = object.if_contains("connection")) {
    if (!connection->is_string() || connection->as_string().empty()) return needs;
    fault.connection = std::string(connection->as_string());
    ++given;
  }
  if (const auto* share = object.if_contains("share")) {
    const auto value = number_of(*share);
    if (!value || !(*value > 0) || *value > 1) return "\"share\" must be a number with 0 < F <= 1";
    fault.share = *value;
    ++given;
  }
  if (given == 0 && fault.what != action::restart) return needs;
  if (given > 1) return "give only one of \"user\", \"id\", \"connection\" and \"share\"";
  return "";
}

// The parameters of each fault toward clients. Returns the error text, "" when fine.
std::string read_client_parameters(const json::object& object, fault_request& fault) {
  std::string error;
  switch (fault.what) {
    case action::stall:
    case action::latency: {
      const auto ms = integer_field(object, "ms", 1, kMaxFaultMs, error);
      if (!error.empty()) return error;
      if (!ms) return "\"ms\" is required: an integer from 1 to " + std::to_string(kMaxFaultMs);
      fault.delay_ms = static_cast<uint32_t>(*ms);
      if (fault.what == action::latency) {
        const auto jitter = integer_field(object, "jitter_ms", 0, *ms, error);
        if (!error.empty()) return error + " (at most \"ms\", so that no hold is negative)";
        fault.jitter_ms = static_cast<uint32_t>(jitter.value_or(0));
      }
      return "";
    }
    case action::drop: {
      const auto* ratio = object.if_contains("ratio");
      if (!ratio) return "\"ratio\" is required: a number from 0 to 1";
      const auto value = number_of(*ratio);
      if (!value || !(*value >= 0) || *value > 1) return "\"ratio\" must be a number from 0 to 1";
      fault.ratio = *value;
      return "";
    }
    case action::close: {
      const auto* code = object.if_contains("code");
      if (!code || !code->is_int64() || !is_sendable_close_code(code->as_int64()))
        return "\"code\" must be a close code a server may send: 1000-1003, 1007-1009, "
               "1011-1014 or 3000-4999";
      fault.code = static_cast<uint16_t>(code->as_int64());
      if (const auto* reason = object.if_contains("reason")) {
        if (!reason->is_string()) return "\"reason\" must be a string";
        // A close frame's payload is at most 125 bytes: 2 for the code, 123 for the text.
        if (reason->as_string().size() > 123)
          return "\"reason\" must be at most 123 bytes (a close frame holds 125)";
        fault.reason = std::string(reason->as_string());
      }
      return "";
    }
    case action::restart: {
      fault.spread = std::chrono::milliseconds(0);
      if (const auto* spread = object.if_contains("spread")) {
        if (!spread->is_string()) return "\"spread\" must be a duration such as \"2s\"";
        try {
          const auto value = std::chrono::duration_cast<std::chrono::milliseconds>(
              parse_duration(std::string(spread->as_string()), "spread"));
          if (value > kMaxSpread) return "\"spread\" must be at most 10m";
          fault.spread = value;
        } catch (const std::exception&) {
          return "\"spread\" must be a duration such as \"250ms\", \"2s\" or \"1m\"";
        }
      }
      return "";
    }
    default:
      return "";  // reset and zombie take no parameters
  }
}

}  // namespace

std::variant<fault_request, std::string> parse_fault(const std::string& body) {
  boost::system::error_code ec;
  const auto parsed = json::parse(body, ec);
  if (ec || !parsed.is_object()) return std::string("body must be a JSON object");
  const auto& object = parsed.as_object();
  const auto* what = object.if_contains("action");
  const auto named =
      what && what->is_string() ? action_named(std::string(what->as_string())) : std::nullopt;
  if (!named) return std::string(kActions);
  fault_request fault;
  fault.what = *named;
  if (fault.what == action::clear) return fault;

  const auto* on = object.if_contains("target");
  const auto aimed =
      on && on->is_string() ? target_named(std::string(on->as_string())) : std::nullopt;
  if (!aimed) return std::string(kTargets);
  fault.on = *aimed;

  if (fault.on == target::client) {
    if (!toward_client(fault.what))
      return std::string(
          "target client takes stall, latency, drop, close, reset, zombie or restart");
    if (auto error = read_selector(object, fault); !error.empty()) return error;
    if (auto error = read_client_parameters(object, fault); !error.empty()) return error;
    return fault;
  }
  if (toward_client(fault.what))
    return std::string("\"") + std::string(what->as_string()) +
           "\" is a fault toward clients: use \"target\":\"client\"";

  const bool upstream = fault.on == target::upstream;
  if (fault.on != target::connection && fault.what != action::crash &&
      !(upstream && fault.what == action::delay))
    return std::string(upstream ? "only \"crash\" and \"delay\" apply to upstream"
                                : "only \"crash\" applies to " + std::string(on->as_string()));
  // upstream: with user or id, those connections' upstream work; without, the service.
  if (fault.on == target::connection ||
      (upstream && (object.contains("user") || object.contains("id")))) {
    const auto* user = object.if_contains("user");
    const auto* id = object.if_contains("id");
    if (user && user->is_string())
      fault.user = std::string(user->as_string());
    else if (id && id->is_int64() && id->as_int64() > 0)
      fault.id = static_cast<uint64_t>(id->as_int64());
    else if (id && id->is_uint64())
      fault.id = id->as_uint64();
    else
      return std::string("a connection fault needs \"user\" (string) or \"id\" (positive integer)");
  }
  if (fault.on == target::shard) {
    if (const auto* index = object.if_contains("index")) {
      if (!index->is_int64() || index->as_int64() < 0)
        return std::string("\"index\" must be a non-negative integer");
      fault.shard_index = static_cast<uint64_t>(index->as_int64());  // range: the caller
    }
  }
  if (fault.what == action::delay) {
    const auto* ms = object.if_contains("ms");
    if (!ms || !ms->is_int64() || ms->as_int64() < 1 || ms->as_int64() > 60000)
      return std::string("\"ms\" must be an integer from 1 to 60000");
    fault.delay_ms = static_cast<uint32_t>(ms->as_int64());
  }
  return fault;
}

}  // namespace wsvisor
