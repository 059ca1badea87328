// The buffer a WebSocket session reads one message into: a DynamicBuffer (Asio's v1
// concept, what Beast's websocket reads take) over a std::string that is handed over
// whole when the message is complete.
//
// Why not beast::flat_buffer: an idle connection's pending read has already prepared
// its buffer, and Beast's async_read prepares 1,536 bytes, which is about a fifth of
// what an idle connection costs. A fresh std::string has room for 15 bytes without
// the heap, so a session that reads the first bytes of each message with that as its
// limit holds no read buffer at all while idle. And take() moves the message out, so
// it reaches the connection actor without a copy.
#pragma once

#include <boost/asio/buffer.hpp>

#include <cstddef>
#include <stdexcept>
#include <string>

namespace wsvisor {

class message_buffer {
 public:
  using const_buffers_type = boost::asio::const_buffer;
  using mutable_buffers_type = boost::asio::mutable_buffer;

  message_buffer() = default;
  explicit message_buffer(std::size_t max_size) : max_size_(max_size) {}

  // Readable bytes: the message so far.
  std::size_t size() const noexcept { return size_; }
  std::size_t max_size() const noexcept { return max_size_; }
  // What the string holds without allocating (15 bytes for an empty string).
  std::size_t capacity() const noexcept { return bytes_.capacity(); }

  const_buffers_type data() const noexcept { return {bytes_.data(), size_}; }

  // n writable bytes after the readable ones; throws std::length_error past max_size()
  // (Beast turns that into error::buffer_overflow).
  mutable_buffers_type prepare(std::size_t n) {
    if (n > max_size_ - size_) throw std::length_error("message_buffer: max_size exceeded");
    bytes_.resize(size_ + n);
    return {&bytes_[size_], n};
  }

  // Moves n written bytes (at most what prepare() offered) to the readable ones.
  void commit(std::size_t n) noexcept {
    size_ += n < bytes_.size() - size_ ? n : bytes_.size() - size_;
    bytes_.resize(size_);
  }

  // Drops the first n readable bytes.
  void consume(std::size_t n) {
    if (n >= size_) {
      clear();
      return;
    }
    bytes_.erase(0, n);
    size_ -= n;
  }

  // Empties the buffer, keeping what it has allocated (it is reused for the next message).
  void clear() noexcept {
    bytes_.clear();
    size_ = 0;
  }

  // The message, moved out; the buffer starts over empty, with no heap memory.
  std::string take() {
    bytes_.resize(size_);
    std::string message = std::move(bytes_);
    bytes_ = std::string();
    size_ = 0;
    return message;
  }

 private:
  std::string bytes_;  // readable bytes, then (between prepare and commit) writable ones
  std::size_t size_ = 0;
  std::size_t max_size_ = std::string().max_size();
};

}  // namespace wsvisor
