#include "wsvisor/hub/wire.hpp"

#include <charconv>

namespace wsvisor::hub::wire {

namespace {

void put(std::string& out, std::string_view field) {
  out += std::to_string(field.size());
  out += ':';
  out.append(field.data(), field.size());
}

void put_info(std::string& out, const client_info& info) {
  put(out, info.user);
  put(out, info.client);
  put(out, info.conn_info);
  put(out, info.chan_info);
}

// Reads what put() wrote, from the front of `in`.
class reader {
 public:
  explicit reader(std::string_view in) : in_(in) {}

  std::optional<uint64_t> number(char until) {
    const auto end = in_.find(until);
    if (end == std::string_view::npos || end == 0) return std::nullopt;
    uint64_t value = 0;
    auto [ptr, ec] = std::from_chars(in_.data(), in_.data() + end, value);
    if (ec != std::errc{} || ptr != in_.data() + end) return std::nullopt;
    in_.remove_prefix(end + 1);
    return value;
  }

  std::optional<std::string> field() {
    auto length = number(':');
    if (!length || *length > in_.size()) return std::nullopt;
    std::string value(in_.substr(0, *length));
    in_.remove_prefix(*length);
    return value;
  }

  std::optional<std::string> until(char end) {
    const auto at = in_.find(end);
    if (at == std::string_view::npos) return std::nullopt;
    std::string value(in_.substr(0, at));
    in_.remove_prefix(at + 1);
    return value;
  }

  std::optional<client_info> info() {
    client_info info;
    auto user = field(), client = field(), conn = field(), chan = field();
    if (!user || !client || !conn || !chan) return std::nullopt;
    info.user = std::move(*user);
    info.client = std::move(*client);
    info.conn_info = std::move(*conn);
    info.chan_info = std::move(*chan);
    return info;
  }

  bool empty() const { return in_.empty(); }
  char take() {
    const char c = in_.front();
    in_.remove_prefix(1);
    return c;
  }

 private:
  std::string_view in_;
};

}  // namespace

std::string encode_publication_body(const publication& pub) {
  std::string out;
  out.reserve(pub.data.size() + 32);
  put(out, pub.data);
  if (pub.info) {
    out += 'i';
    put_info(out, *pub.info);
  } else {
    out += '-';
  }
  out += std::to_string(pub.tags.size());
  out += ':';
  for (const auto& [key, value] : pub.tags) {
    put(out, key);
    put(out, value);
  }
  return out;
}

std::string encode_publication(const publication& pub, const std::string& epoch) {
  return "p" + std::to_string(pub.offset) + ":" + epoch + ":" + encode_publication_body(pub);
}

std::string encode_client_info(const client_info& info) {
  std::string out;
  put_info(out, info);
  return out;
}

std::string encode_join(const client_info& info) {
  return "j" + encode_client_info(info);
}

std::string encode_leave(const client_info& info) {
  return "l" + encode_client_info(info);
}

std::string encode_unsubscribe(const std::string& user, const std::string& client) {
  std::string out = "u";
  put(out, user);
  put(out, client);
  return out;
}

std::optional<client_info> decode_client_info(std::string_view text) {
  reader in(text);
  auto info = in.info();
  if (!info || !in.empty()) return std::nullopt;
  return info;
}

std::optional<message> decode(std::string_view text) {
  if (text.empty()) return std::nullopt;
  reader in(text);
  switch (in.take()) {
    case 'p': {
      published out;
      auto offset = in.number(':');
      if (!offset) return std::nullopt;
      auto epoch = in.until(':');
      auto data = in.field();
      if (!epoch || !data || in.empty()) return std::nullopt;
      out.pub.offset = *offset;
      out.epoch = std::move(*epoch);
      out.pub.data = std::move(*data);
      const char has_info = in.take();
      if (has_info == 'i') {
        auto info = in.info();
        if (!info) return std::nullopt;
        out.pub.info = std::move(*info);
      } else if (has_info != '-') {
        return std::nullopt;
      }
      auto tags = in.number(':');
      if (!tags) return std::nullopt;
      for (uint64_t i = 0; i < *tags; ++i) {
        auto key = in.field(), value = in.field();
        if (!key || !value) return std::nullopt;
        out.pub.tags.emplace_back(std::move(*key), std::move(*value));
      }
      if (!in.empty()) return std::nullopt;
      return out;
    }
    case 'j':
    case 'l': {
      auto info = in.info();
      if (!info || !in.empty()) return std::nullopt;
      if (text.front() == 'j') return joined{std::move(*info)};
      return left{std::move(*info)};
    }
    case 'u': {
      auto user = in.field(), client = in.field();
      if (!user || !client || !in.empty()) return std::nullopt;
      return unsubscribed{std::move(*user), std::move(*client)};
    }
    default:
      return std::nullopt;
  }
}

}  // namespace wsvisor::hub::wire
