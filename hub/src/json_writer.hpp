// Appends one JSON object's bytes to a string, member by member, in the order the
// encoders of protocol_encode.cpp write them (those of client.proto). Private to the
// library: only the encoders build JSON this way.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "wsvisor/json_text.hpp"

namespace wsvisor::hub::detail {

// Appends `text` as a JSON string, quotes included: '"', '\\' and control characters
// escaped, and every byte sequence that is not UTF-8 replaced with U+FFFD, so that what
// comes from outside (user ids, channel names, reasons) always yields valid JSON.
inline void append_json_string(std::string& out, std::string_view text) {
  json_text::append_quoted(out, text, json_text::escapes::shortest);
}

class json_writer {
 public:
  explicit json_writer(std::string& out) : out_(out) {}

  void begin_object() {
    separate();
    out_ += '{';
  }
  void begin_object(std::string_view key) {
    write_key(key);
    out_ += '{';
  }
  void end_object() { out_ += '}'; }
  void begin_array(std::string_view key) {
    write_key(key);
    out_ += '[';
  }
  void end_array() { out_ += ']'; }

  void string(std::string_view key, std::string_view value) {
    write_key(key);
    append_json_string(out_, value);
  }
  void string_if_set(std::string_view key, std::string_view value) {
    if (!value.empty()) string(key, value);
  }
  void number(std::string_view key, uint64_t value) {
    write_key(key);
    out_ += std::to_string(value);
  }
  void number_if_set(std::string_view key, uint64_t value) {
    if (value != 0) number(key, value);
  }
  void boolean(std::string_view key, bool value) {
    write_key(key);
    out_ += value ? "true" : "false";
  }
  void true_if_set(std::string_view key, bool value) {
    if (value) boolean(key, true);
  }
  // Raw JSON (already valid), left out when "".
  void raw_if_set(std::string_view key, std::string_view json) {
    if (json.empty()) return;
    write_key(key);
    out_ += json;
  }
  // A key whose value the caller writes next (an object through begin_object()).
  void write_key(std::string_view key) {
    separate();
    append_json_string(out_, key);
    out_ += ':';
  }

 private:
  // A comma before every member or element but the first: the first follows '{' or '['.
  void separate() {
    if (!out_.empty() && out_.back() != '{' && out_.back() != '[' && out_.back() != ':')
      out_ += ',';
  }

  std::string& out_;
};

}  // namespace wsvisor::hub::detail
