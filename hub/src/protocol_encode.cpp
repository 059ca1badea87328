// The replies and pushes of Centrifugo's JSON protocol. Members are written in
// client.proto's field order and left out when false, zero or empty, as Centrifugo's
// encoder does, except where a comment says why not.
#include <cstdint>
#include <string>
#include <string_view>

#include "json_writer.hpp"
#include "wsvisor/hub/protocol.hpp"

namespace wsvisor::hub {

using detail::json_writer;

std::string_view error_message(error_code code) {
  switch (code) {
    case error_code::internal:
      return "internal server error";
    case error_code::unauthorized:
      return "unauthorized";
    case error_code::unknown_channel:
      return "unknown channel";
    case error_code::permission_denied:
      return "permission denied";
    case error_code::method_not_found:
      return "method not found";
    case error_code::already_subscribed:
      return "already subscribed";
    case error_code::limit_exceeded:
      return "limit exceeded";
    case error_code::bad_request:
      return "bad request";
    case error_code::not_available:
      return "not available";
    case error_code::token_expired:
      return "token expired";
    case error_code::expired:
      return "expired";
    case error_code::too_many_requests:
      return "too many requests";
    case error_code::unrecoverable_position:
      return "unrecoverable position";
  }
  return "internal server error";
}

bool error_temporary(error_code code) {
  return code == error_code::internal || code == error_code::too_many_requests;
}

const char* to_string(command_kind kind) {
  switch (kind) {
    case command_kind::connect:
      return "connect";
    case command_kind::subscribe:
      return "subscribe";
    case command_kind::unsubscribe:
      return "unsubscribe";
    case command_kind::publish:
      return "publish";
    case command_kind::presence:
      return "presence";
    case command_kind::presence_stats:
      return "presence_stats";
    case command_kind::history:
      return "history";
    case command_kind::rpc:
      return "rpc";
    case command_kind::send:
      return "send";
    case command_kind::refresh:
      return "refresh";
    case command_kind::sub_refresh:
      return "sub_refresh";
    case command_kind::ping:
      return "ping";
  }
  return "ping";
}

namespace {

void write_client_info(json_writer& json, const client_info& info) {
  // ClientInfo always carries user and client, even empty (an anonymous user is "").
  json.string("user", info.user);
  json.string("client", info.client);
  json.raw_if_set("conn_info", info.conn_info);
  json.raw_if_set("chan_info", info.chan_info);
}

void write_publication(json_writer& json, const publication& pub) {
  json.raw_if_set("data", pub.data);
  if (pub.info) {
    json.begin_object("info");
    write_client_info(json, *pub.info);
    json.end_object();
  }
  json.number_if_set("offset", pub.offset);
  if (!pub.tags.empty()) {
    json.begin_object("tags");
    for (const auto& [key, value] : pub.tags) json.string(key, value);
    json.end_object();
  }
}

void write_publications(json_writer& json, const std::vector<const publication*>& publications) {
  json.begin_array("publications");
  for (const publication* pub : publications) {
    json.begin_object();
    write_publication(json, *pub);
    json.end_object();
  }
  json.end_array();
}

// The stream position of a recoverable or positioned subscription is written even when
// false, "" or 0 (Centrifugo leaves those out): the SDK then always finds the position it
// must keep, and a fresh stream (offset 0) reads the same as any other.
bool has_stream(const subscribe_result& result) {
  return result.recoverable || result.positioned;
}

void write_recoverable_and_epoch(json_writer& json, const subscribe_result& result) {
  if (has_stream(result)) {
    json.boolean("recoverable", result.recoverable);
    json.string("epoch", result.epoch);
  } else {
    json.string_if_set("epoch", result.epoch);
  }
}

void write_offset(json_writer& json, const subscribe_result& result) {
  if (has_stream(result))
    json.number("offset", result.offset);
  else
    json.number_if_set("offset", result.offset);
}

void write_subscribe_result(json_writer& json, const subscribe_result& result) {
  json.true_if_set("expires", result.expires);
  json.number_if_set("ttl", result.ttl);
  write_recoverable_and_epoch(json, result);
  if (!result.publications.empty()) write_publications(json, result.publications);
  json.true_if_set("recovered", result.recovered);
  write_offset(json, result);
  json.true_if_set("positioned", result.positioned);
  json.raw_if_set("data", result.data);
  json.true_if_set("was_recovering", result.was_recovering);
}

// {"id":N,"<name>":{ ... }}: the reply envelope; the body is written by `body`.
template <typename Body>
std::string reply(uint32_t id, std::string_view name, Body&& body) {
  std::string out;
  json_writer json(out);
  json.begin_object();
  json.number_if_set("id", id);
  json.begin_object(name);
  body(json);
  json.end_object();
  json.end_object();
  return out;
}

// {"push":{"channel":"c","<name>":{ ... }}}.
template <typename Body>
std::string push(std::string_view channel, std::string_view name, Body&& body) {
  std::string out;
  json_writer json(out);
  json.begin_object();
  json.begin_object("push");
  json.string_if_set("channel", channel);
  json.begin_object(name);
  body(json);
  json.end_object();
  json.end_object();
  json.end_object();
  return out;
}

}  // namespace

std::string reply_error(uint32_t id, error_code code) {
  return reply_error(id, static_cast<uint32_t>(code), error_message(code), error_temporary(code));
}

std::string reply_error(uint32_t id, uint32_t code, std::string_view message, bool temporary) {
  return reply(id, "error", [&](json_writer& json) {
    json.number_if_set("code", code);
    json.string_if_set("message", message);
    json.true_if_set("temporary", temporary);
  });
}

std::string reply_connect(uint32_t id, const connect_result& result) {
  return reply(id, "connect", [&](json_writer& json) {
    json.string_if_set("client", result.client);
    json.string_if_set("version", result.version);
    json.true_if_set("expires", result.expires);
    json.number_if_set("ttl", result.ttl);
    json.raw_if_set("data", result.data);
    if (!result.subs.empty()) {
      json.begin_object("subs");
      for (const auto& [channel, sub] : result.subs) {
        json.begin_object(channel);
        write_subscribe_result(json, sub);
        json.end_object();
      }
      json.end_object();
    }
    json.number_if_set("ping", result.ping);
    json.true_if_set("pong", result.pong);
    json.string_if_set("node", result.node);
  });
}

std::string reply_subscribe(uint32_t id, const subscribe_result& result) {
  return reply(id, "subscribe", [&](json_writer& json) { write_subscribe_result(json, result); });
}

std::string reply_empty(uint32_t id, command_kind kind) {
  // send and the pong get no reply at all.
  if (kind == command_kind::send || kind == command_kind::ping) return {};
  return reply(id, to_string(kind), [](json_writer&) {});
}

std::string reply_presence(uint32_t id, const std::vector<client_info>& clients) {
  return reply(id, "presence", [&](json_writer& json) {
    // Always there, {} when nobody is: the SDK reads result.presence.
    json.begin_object("presence");
    for (const client_info& info : clients) {
      json.begin_object(info.client);
      write_client_info(json, info);
      json.end_object();
    }
    json.end_object();
  });
}

std::string reply_presence_stats(uint32_t id, uint64_t num_clients, uint64_t num_users) {
  return reply(id, "presence_stats", [&](json_writer& json) {
    json.number("num_clients", num_clients);
    json.number("num_users", num_users);
  });
}

std::string reply_history(uint32_t id, const std::vector<const publication*>& publications,
                          const stream_position& top) {
  return reply(id, "history", [&](json_writer& json) {
    // All three always, as Centrifugo writes them: the top position is the point of a
    // history call with limit 0.
    write_publications(json, publications);
    json.string("epoch", top.epoch);
    json.number("offset", top.offset);
  });
}

std::string reply_rpc(uint32_t id, std::string_view data_json) {
  return reply(id, "rpc", [&](json_writer& json) { json.raw_if_set("data", data_json); });
}

std::string reply_refresh(uint32_t id, std::string_view client, std::string_view version,
                          bool expires, uint32_t ttl) {
  return reply(id, "refresh", [&](json_writer& json) {
    json.string_if_set("client", client);
    json.string_if_set("version", version);
    json.true_if_set("expires", expires);
    json.number_if_set("ttl", ttl);
  });
}

std::string reply_sub_refresh(uint32_t id, bool expires, uint32_t ttl) {
  return reply(id, "sub_refresh", [&](json_writer& json) {
    json.true_if_set("expires", expires);
    json.number_if_set("ttl", ttl);
  });
}

std::string push_publication(std::string_view channel, const publication& pub) {
  return push(channel, "pub", [&](json_writer& json) { write_publication(json, pub); });
}

std::string push_join(std::string_view channel, const client_info& info) {
  return push(channel, "join", [&](json_writer& json) {
    json.begin_object("info");
    write_client_info(json, info);
    json.end_object();
  });
}

std::string push_leave(std::string_view channel, const client_info& info) {
  return push(channel, "leave", [&](json_writer& json) {
    json.begin_object("info");
    write_client_info(json, info);
    json.end_object();
  });
}

std::string push_unsubscribe(std::string_view channel, uint16_t code, std::string_view reason) {
  return push(channel, "unsubscribe", [&](json_writer& json) {
    json.number_if_set("code", code);
    json.string_if_set("reason", reason);
  });
}

std::string push_subscribe(std::string_view channel, const subscribe_result& result) {
  // The Subscribe push has only the stream fields and data of a subscribe result.
  return push(channel, "subscribe", [&](json_writer& json) {
    write_recoverable_and_epoch(json, result);
    write_offset(json, result);
    json.true_if_set("positioned", result.positioned);
    json.raw_if_set("data", result.data);
  });
}

std::string push_message(std::string_view data_json) {
  return push({}, "message", [&](json_writer& json) { json.raw_if_set("data", data_json); });
}

std::string push_disconnect(uint16_t code, std::string_view reason, bool reconnect) {
  return push({}, "disconnect", [&](json_writer& json) {
    json.number_if_set("code", code);
    json.string_if_set("reason", reason);
    json.true_if_set("reconnect", reconnect);
  });
}

std::string ping_frame() {
  return "{}";
}

}  // namespace wsvisor::hub
