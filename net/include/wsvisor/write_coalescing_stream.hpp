// A stream layer under Beast's websocket::stream that turns many small writes into one
// system call.
//
// Beast writes one frame per async_write and holds its write lock until the socket has
// taken the frame, so N queued messages cost N sendmsg calls. This layer takes every
// write whole (async_write_some always accepts all the bytes, at once and in order, so
// whole frames written by different callers never interleave) and completes it by a
// post. A write that finds nothing buffered while a read waits on the socket (a
// request/response peer: nothing else is coming) is sent within the call, from the
// caller's buffers. Any other write is copied into a buffer of its own, which goes to
// the socket corked: after the executor has run what was already queued, and for a few
// rounds more while the reader is still working through bytes it has (a pipelining
// peer's requests, whose replies are on the way); then everything accepted meanwhile
// leaves in one call. What the socket does not take at once is written asynchronously.
// Frames (data, ping, pong, close) keep their order because they all pass through here.
// Under a next layer that encrypts (TLS, see transport_stream) the layer never writes
// the socket itself: each flush hands what was accepted to that layer in one write, which
// OpenSSL turns into as few records (16 KiB each) and system calls as it can.
//
// Bounds: past high_water bytes accepted and not yet written, a write is held until the
// buffer drains, so a slow peer still backs writes up into the caller's own queue.
// After a write error every later write fails with that error. The websocket close
// (async_teardown) waits until every accepted byte is written.
//
// Close frames can be held (hold_close_frames): a close frame that Beast writes on its
// own (its answer to the peer's close, or the close that fails a connection on a
// protocol error) waits, and the writes that come after it go first, until the owner
// releases it. The session uses this so that the replies to messages already read
// leave before the close (RFC 6455: no data after a close frame).
//
// Bytes read ahead of the stream (the HTTP parser's buffer after the upgrade request,
// which may hold the first frames) can be handed in with prime(); the reader gets them
// before anything from the socket.
//
// Lifetime: the next layer and the buffers live in a shared core that the write in
// flight keeps alive, so destroying this object while a write is in flight (or corked)
// is safe; the destructor then closes the lowest layer on the executor, which ends it.
#pragma once

#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace wsvisor {
namespace detail {

// A move-only handler behind one signature. Only this layer's rare waits (a write over
// high_water, a close behind a write) store one; each is completed by a post on the
// stream's executor, which is also the executor of the Beast operation inside.
template <class... Args>
class stored_handler {
 public:
  stored_handler() = default;
  template <class Handler>
  explicit stored_handler(Handler&& handler)
      : impl_(std::make_unique<holder<std::decay_t<Handler>>>(std::forward<Handler>(handler))) {}

  explicit operator bool() const noexcept { return impl_ != nullptr; }
  void operator()(Args... args) {
    auto impl = std::move(impl_);
    impl->invoke(args...);
  }

 private:
  struct base {
    virtual ~base() = default;
    virtual void invoke(Args... args) = 0;
  };
  template <class Handler>
  struct holder final : base {
    explicit holder(Handler&& h) : handler(std::move(h)) {}
    explicit holder(const Handler& h) : handler(h) {}
    void invoke(Args... args) override { std::move(handler)(args...); }
    Handler handler;
  };
  std::unique_ptr<base> impl_;
};

// Whether the layer may write to the socket itself, from the caller's buffers: not when
// the next layer encrypts (a transport whose encrypted() says so), whose bytes must pass
// through it.
template <class Layer, class = void>
struct reports_encryption : std::false_type {};
template <class Layer>
struct reports_encryption<Layer, std::void_t<decltype(std::declval<const Layer&>().encrypted())>>
    : std::true_type {};
template <class Layer>
bool may_write_socket(const Layer& layer) {
  if constexpr (reports_encryption<Layer>::value) {
    return !layer.encrypted();
  } else {
    return true;
  }
}

// Completes a read that passed through the layer: notes that no read waits on the
// socket any more, then calls the reader's handler, whose executor, allocator and
// cancellation slot it keeps (see the associator below; a bind_executor would copy the
// executor on every read).
template <class Core, class Handler>
struct read_completion {
  std::shared_ptr<Core> core;
  Handler handler;
  void operator()(boost::beast::error_code ec, std::size_t bytes) {
    core->socket_read_pending = false;
    std::move(handler)(ec, bytes);
  }
};

}  // namespace detail

template <class NextLayer>
class write_coalescing_stream {
 public:
  using next_layer_type = NextLayer;
  using executor_type = typename NextLayer::executor_type;

  // Accepted-but-unwritten bytes past which a write waits for the socket.
  static constexpr std::size_t high_water = 64 * 1024;
  // A drained buffer larger than this is freed (an idle connection keeps nothing big).
  static constexpr std::size_t keep_capacity = 4 * 1024;
  // Longest wait for more frames, in trips through the executor's queue.
  static constexpr unsigned max_cork_rounds = 16;

  template <class... Args>
  explicit write_coalescing_stream(Args&&... args)
      : core_(std::make_shared<core>(std::forward<Args>(args)...)) {}

  write_coalescing_stream(write_coalescing_stream&&) = default;
  write_coalescing_stream& operator=(write_coalescing_stream&&) = default;

  ~write_coalescing_stream() {
    if (!core_ || (!core_->flushing && !core_->flush_posted)) return;
    // A write is in flight or corked and may run on the executor right now: close from
    // there, so that it cannot keep a socket open for a peer that never reads.
    boost::asio::post(core_->next.get_executor(), [c = core_] {
      boost::beast::error_code ignored;
      boost::beast::get_lowest_layer(c->next).socket().close(ignored);
    });
  }

  executor_type get_executor() noexcept { return core_->next.get_executor(); }
  next_layer_type& next_layer() noexcept { return core_->next; }
  const next_layer_type& next_layer() const noexcept { return core_->next; }

  // Writes handed to the next layer so far (each one system call or more): with
  // writes_accepted(), how well writes coalesce.
  std::uint64_t flushes() const noexcept { return core_->flush_count; }
  std::uint64_t writes_accepted() const noexcept { return core_->accept_count; }

  // Bytes accepted and not yet handed to the next layer, or being written.
  std::size_t buffered_bytes() const noexcept {
    return core_->pending.size() + core_->sending.size();
  }

  // Bytes already read from the socket by someone else (the HTTP parser): the next
  // reads return them first.
  void prime(std::string bytes) { core_->primed = std::move(bytes); }

  // While on, a close frame written through this layer is held: its write completes,
  // later writes go out before it, and `on_held` is posted to the executor. Off: close
  // frames go in order like any frame. Turning it off does not release a held one.
  void hold_close_frames(bool on, std::function<void()> on_held = {}) {
    core_->hold_closes = on;
    core_->on_close_held = std::move(on_held);
  }
  bool close_frame_held() const noexcept { return !core_->held_close.empty(); }

  // Releases a held close frame after everything accepted so far; with `code`, the
  // frame sent is a close with that code and no reason instead (the peer's close code
  // was one the RFC forbids, and the connection is failed with 1002). Without a held
  // frame, does nothing.
  void release_close(std::optional<std::uint16_t> code = std::nullopt) {
    core_->release_close(code);
  }

  // Reads pass through. The layer notes whether one is waiting on the socket: while
  // none is, the reader is still working through bytes it already has (pipelined
  // messages), so more writes are likely on their way and the flush waits for them.
  template <class MutableBufferSequence, class ReadHandler>
  auto async_read_some(const MutableBufferSequence& buffers, ReadHandler&& handler) {
    return boost::asio::async_initiate<ReadHandler, void(boost::beast::error_code, std::size_t)>(
        [](auto handler, std::shared_ptr<core> c, const MutableBufferSequence& buffers) {
          if (!c->primed.empty()) {
            // What the HTTP parser read past the request, before the socket's bytes.
            const std::size_t n = boost::asio::buffer_copy(buffers, boost::asio::buffer(c->primed));
            c->primed.erase(0, n);
            auto executor = c->next.get_executor();
            return boost::asio::post(
                executor,
                boost::beast::bind_handler(std::move(handler), boost::beast::error_code{}, n));
          }
          c->socket_read_pending = true;
          auto& next = c->next;
          next.async_read_some(buffers, detail::read_completion<core, decltype(handler)>{
                                            std::move(c), std::move(handler)});
        },
        handler, core_, buffers);
  }

  template <class ConstBufferSequence, class WriteHandler>
  auto async_write_some(const ConstBufferSequence& buffers, WriteHandler&& handler) {
    return boost::asio::async_initiate<WriteHandler, void(boost::beast::error_code, std::size_t)>(
        [](auto handler, std::shared_ptr<core> c, const ConstBufferSequence& buffers) {
          c->accept(std::move(handler), buffers);
        },
        handler, core_, buffers);
  }

  // The websocket close: shuts the socket down once everything accepted is written.
  template <class TeardownHandler>
  friend void async_teardown(boost::beast::role_type role, write_coalescing_stream& stream,
                             TeardownHandler&& handler) {
    stream.core_->teardown(role, std::forward<TeardownHandler>(handler));
  }

  // Synchronous close (Beast's blocking API, not used by wsvisor): unwritten bytes are
  // dropped, as a blocking caller cannot wait for this layer's asynchronous write.
  friend void teardown(boost::beast::role_type role, write_coalescing_stream& stream,
                       boost::beast::error_code& ec) {
    using boost::beast::websocket::teardown;
    teardown(role, stream.core_->next, ec);
  }

 private:
  using write_handler = detail::stored_handler<boost::beast::error_code, std::size_t>;
  using teardown_handler = detail::stored_handler<boost::beast::error_code>;

  struct core : std::enable_shared_from_this<core> {
    template <class... Args>
    explicit core(Args&&... args) : next(std::forward<Args>(args)...) {}

    template <class Handler, class ConstBufferSequence>
    void accept(Handler&& handler, const ConstBufferSequence& buffers) {
      const std::size_t size = boost::asio::buffer_size(buffers);
      ++accept_count;
      if (error) return complete(std::forward<Handler>(handler), error, 0);
      if (hold_closes && held_close.empty() && starts_close_frame(buffers)) {
        held_close.resize(size);
        boost::asio::buffer_copy(boost::asio::buffer(held_close), buffers);
        if (on_close_held) boost::asio::post(next.get_executor(), std::move(on_close_held));
        return complete(std::forward<Handler>(handler), boost::beast::error_code{}, size);
      }
      if (!flushing && !flush_posted && pending.empty() && socket_read_pending) {
        // A reader waiting on the socket has consumed every request it got, so nothing
        // else is on its way to join this write (a request/response peer): it goes now,
        // straight from the caller's buffers. Only what the socket does not take is
        // copied, and written when the socket can take more. Under TLS everything is
        // copied and handed to the encrypting layer at once.
        ++flush_count;
        if (detail::may_write_socket(next)) {
          boost::beast::error_code ec;
          const std::size_t sent = send_now(buffers, ec);
          if (ec) {
            error = ec;
            return complete(std::forward<Handler>(handler), error, 0);
          }
          if (sent == size)
            return complete(std::forward<Handler>(handler), boost::beast::error_code{}, size);
          boost::beast::buffers_suffix<ConstBufferSequence> rest(buffers);
          rest.consume(sent);
          append(rest, size - sent);
        } else {
          append(buffers, size);
        }
        write_pending();
      } else {
        append(buffers, size);
        if (!flushing && !flush_posted) schedule_flush();
      }
      if (pending.size() + sending.size() <= high_water)
        return complete(std::forward<Handler>(handler), boost::beast::error_code{}, size);
      held = write_handler(std::forward<Handler>(handler));  // Beast writes one at a time
      held_size = size;
    }

    // FIN set, opcode 8 (RFC 6455 5.5.1): a close frame begins. Beast writes each
    // control frame in a write of its own.
    template <class ConstBufferSequence>
    static bool starts_close_frame(const ConstBufferSequence& buffers) {
      for (auto it = boost::asio::buffer_sequence_begin(buffers);
           it != boost::asio::buffer_sequence_end(buffers); ++it) {
        const boost::asio::const_buffer b(*it);
        if (b.size() == 0) continue;
        return *static_cast<const unsigned char*>(b.data()) == 0x88;
      }
      return false;
    }

    void release_close(std::optional<std::uint16_t> code) {
      if (held_close.empty()) return;
      std::string frame = std::move(held_close);
      held_close.clear();
      if (code) {
        frame = {'\x88', '\x02', static_cast<char>(*code >> 8), static_cast<char>(*code & 0xff)};
      }
      if (error) {
        // Never to be written; a close that waited for it goes on (and fails) now.
        if (!flushing && closer) start_teardown(std::move(closer));
        return;
      }
      pending.append(frame);
      if (!flushing && !flush_posted) schedule_flush();
    }

    template <class ConstBufferSequence>
    void append(const ConstBufferSequence& buffers, std::size_t size) {
      const std::size_t offset = pending.size();
      pending.resize(offset + size);
      boost::asio::buffer_copy(boost::asio::buffer(&pending[offset], size), buffers);
    }

    // A plain non-blocking send: what the socket takes at once, with no asynchronous
    // operation (whose completion, at one message in flight, costs as much as the send).
    // "Would block" is no error: nothing was sent.
    template <class ConstBufferSequence>
    std::size_t send_now(const ConstBufferSequence& buffers, boost::beast::error_code& ec) {
      auto& socket = boost::beast::get_lowest_layer(next).socket();
      if (!socket.non_blocking()) socket.non_blocking(true, ec);
      if (ec) return 0;
      const std::size_t sent = socket.write_some(buffers, ec);
      if (ec == boost::asio::error::would_block) ec = {};
      return ec ? 0 : sent;
    }

    template <class Handler, class... Args>
    void complete(Handler&& handler, Args... args) {
      // Posted: an initiating function must not call its handler itself.
      boost::asio::post(next.get_executor(),
                        boost::beast::bind_handler(std::forward<Handler>(handler), args...));
    }

    // Corked until the executor has run what is already queued (uWebSockets corks per
    // event-loop iteration), and for up to max_cork_rounds more rounds while the reader
    // is still consuming bytes it has (see async_read_some): the frames written
    // meanwhile leave in the same system call.
    void schedule_flush() {
      flush_posted = true;
      boost::asio::post(next.get_executor(), [self = this->shared_from_this()] {
        self->flush_posted = false;
        if (self->flushing || self->pending.empty()) return;
        if (!self->socket_read_pending && !self->closer && self->cork_rounds < max_cork_rounds &&
            self->pending.size() < high_water) {
          ++self->cork_rounds;
          return self->schedule_flush();
        }
        self->cork_rounds = 0;
        self->flush();
      });
    }

    // Everything pending leaves in one system call if the socket takes it; the rest
    // goes by async_write.
    void flush() {
      ++flush_count;
      if (!detail::may_write_socket(next)) return write_pending();  // TLS: one record per 16 KiB
      boost::beast::error_code ec;
      const std::size_t sent = send_now(boost::asio::buffer(pending), ec);
      if (!ec && sent < pending.size()) {
        pending.erase(0, sent);
        return write_pending();
      }
      flushing = true;  // on_flushed expects the bytes in `sending`, as after a write
      sending.swap(pending);
      on_flushed(ec);
    }

    void write_pending() {
      flushing = true;
      sending.swap(pending);
      boost::asio::async_write(
          next, boost::asio::buffer(sending),
          [self = this->shared_from_this()](boost::beast::error_code ec, std::size_t) {
            self->on_flushed(ec);
          });
    }

    void on_flushed(boost::beast::error_code ec) {
      flushing = false;
      if (ec && !error) error = ec;
      if (error) pending.clear();  // never to be written
      if (sending.capacity() > keep_capacity) {
        std::string().swap(sending);
      } else {
        sending.clear();
      }
      // What was written meanwhile is corked again, so that it can gather more.
      if (!error && !pending.empty() && !flush_posted) schedule_flush();
      if (held && (error || pending.size() + sending.size() <= high_water))
        complete(std::move(held), error, error ? 0 : held_size);
      if (!flushing && pending.empty() && held_close.empty() && closer)
        start_teardown(std::move(closer));
    }

    template <class TeardownHandler>
    void teardown(boost::beast::role_type role, TeardownHandler&& handler) {
      teardown_role = role;
      teardown_handler h(std::forward<TeardownHandler>(handler));
      if (flushing || !pending.empty() || !held_close.empty()) {
        closer = std::move(h);  // on_flushed starts it once everything is written
        if (!flushing && !flush_posted) schedule_flush();
        return;
      }
      start_teardown(std::move(h));
    }

    void start_teardown(teardown_handler handler) {
      using boost::beast::websocket::async_teardown;
      async_teardown(teardown_role, next, std::move(handler));
    }

    NextLayer next;
    std::string primed;   // read ahead by someone else, returned before the socket's bytes
    std::string pending;  // accepted, waiting for the write in flight to finish
    std::string sending;  // the write in flight
    bool flushing = false;
    bool flush_posted = false;
    bool socket_read_pending = false;
    unsigned cork_rounds = 0;
    std::uint64_t accept_count = 0;
    std::uint64_t flush_count = 0;
    boost::beast::error_code error;  // the first write error: later writes fail with it
    write_handler held;              // a write over high_water, completed when the buffer drains
    std::size_t held_size = 0;
    teardown_handler closer;  // a close waiting for the write in flight
    boost::beast::role_type teardown_role = boost::beast::role_type::server;
    bool hold_closes = false;
    std::string held_close;  // a close frame waiting for release_close()
    std::function<void()> on_close_held;
  };

  std::shared_ptr<core> core_;
};

}  // namespace wsvisor

// Every associated property of a read_completion is its reader handler's.
template <template <typename, typename> class Associator, class Core, class Handler,
          class DefaultCandidate>
struct boost::asio::associator<Associator, wsvisor::detail::read_completion<Core, Handler>,
                               DefaultCandidate> : Associator<Handler, DefaultCandidate> {
  static typename Associator<Handler, DefaultCandidate>::type get(
      const wsvisor::detail::read_completion<Core, Handler>& completion) noexcept {
    return Associator<Handler, DefaultCandidate>::get(completion.handler);
  }
  static auto get(const wsvisor::detail::read_completion<Core, Handler>& completion,
                  const DefaultCandidate& candidate) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(completion.handler, candidate)) {
    return Associator<Handler, DefaultCandidate>::get(completion.handler, candidate);
  }
};
