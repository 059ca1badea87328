#include "pubsub.hpp"

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <ctime>

namespace wsload {

std::uint64_t monotonic_ns() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1000000000ull +
         static_cast<std::uint64_t>(now.tv_nsec);
}

std::string timestamped_data(std::uint64_t ts_ns, std::size_t size) {
  std::string out = "{\"ts\":" + std::to_string(ts_ns) + ",\"pad\":\"";
  const std::size_t closing = 2;  // "}
  if (out.size() + closing < size) out.append(size - out.size() - closing, 'x');
  out += "\"}";
  return out;
}

std::optional<std::uint64_t> find_timestamp(std::string_view text, std::size_t from) {
  static constexpr std::string_view key = "\"ts\":";
  auto at = text.find(key, from);
  if (at == std::string_view::npos) return std::nullopt;
  at += key.size();
  while (at < text.size() && (text[at] == ' ' || text[at] == '\t')) ++at;
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data() + at, text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data() + at) return std::nullopt;
  return value;
}

std::string connect_command(std::uint32_t id, const std::string& token) {
  boost::json::object connect;
  if (!token.empty()) connect["token"] = token;
  boost::json::object command;
  command["id"] = id;
  command["connect"] = std::move(connect);
  return boost::json::serialize(command);
}

std::string subscribe_commands(std::uint32_t first_id, const std::vector<std::string>& channels) {
  std::string frame;
  for (std::size_t i = 0; i < channels.size(); ++i) {
    boost::json::object subscribe;
    subscribe["channel"] = channels[i];
    boost::json::object command;
    command["id"] = first_id + static_cast<std::uint32_t>(i);
    command["subscribe"] = std::move(subscribe);
    if (!frame.empty()) frame += '\n';
    frame += boost::json::serialize(command);
  }
  return frame;
}

std::vector<std::string> channel_names(const std::string& base, int count) {
  if (count == 1) return {base};
  std::vector<std::string> names;
  for (int i = 0; i < count; ++i) names.push_back(base + std::to_string(i));
  return names;
}

namespace {

std::string_view trim(std::string_view text) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

int int_field(const boost::json::object& object, const char* key) {
  auto found = object.find(key);
  if (found == object.end()) return 0;
  if (found->value().is_int64()) return static_cast<int>(found->value().get_int64());
  if (found->value().is_uint64()) return static_cast<int>(found->value().get_uint64());
  return 0;
}

}  // namespace

ServerMessage parse_server_message(std::string_view line) {
  ServerMessage message;
  line = trim(line);
  if (line == "{}") {
    message.kind = ServerMessage::Kind::ping;
    return message;
  }
  // {"push":{"channel":"c","pub":{"data":{"ts":...}}}}
  if (auto push = line.find("\"push\""); push != std::string_view::npos && push < 16) {
    if (auto pub = line.find("\"pub\"", push); pub != std::string_view::npos) {
      auto data = line.find("\"data\"", pub);
      message.kind = ServerMessage::Kind::publication;
      message.ts = find_timestamp(line, data == std::string_view::npos ? pub : data);
      return message;
    }
  }
  boost::system::error_code ec;
  auto value = boost::json::parse(boost::json::string_view(line.data(), line.size()), ec);
  if (ec || !value.is_object()) return message;  // malformed
  const auto& object = value.get_object();
  if (auto push = object.find("push"); push != object.end()) {
    if (!push->value().is_object()) return message;
    const auto& body = push->value().get_object();
    if (auto disconnect = body.find("disconnect");
        disconnect != body.end() && disconnect->value().is_object()) {
      message.kind = ServerMessage::Kind::disconnect;
      message.disconnect_code = int_field(disconnect->value().get_object(), "code");
    } else if (auto pub = body.find("pub"); pub != body.end() && pub->value().is_object()) {
      // One the fast path did not take ("push" not near the start).
      message.kind = ServerMessage::Kind::publication;
      const auto& publication = pub->value().get_object();
      if (auto data = publication.find("data");
          data != publication.end() && data->value().is_object()) {
        if (auto ts = data->value().get_object().find("ts");
            ts != data->value().get_object().end() && ts->value().is_number()) {
          boost::system::error_code number_ec;
          auto number = ts->value().to_number<std::uint64_t>(number_ec);
          if (!number_ec) message.ts = number;
        }
      }
    } else {
      message.kind = ServerMessage::Kind::other_push;
    }
    return message;
  }
  message.kind = ServerMessage::Kind::reply;
  message.id = static_cast<std::uint32_t>(int_field(object, "id"));
  if (auto error = object.find("error"); error != object.end() && error->value().is_object()) {
    message.error_code = int_field(error->value().get_object(), "code");
  }
  if (auto connect = object.find("connect");
      connect != object.end() && connect->value().is_object()) {
    auto pong = connect->value().get_object().find("pong");
    message.pong_wanted = pong != connect->value().get_object().end() && pong->value().is_bool() &&
                          pong->value().get_bool();
  }
  return message;
}

}  // namespace wsload
