// The Redis client behind redis_port: one Asio TCP socket per connection, on a strand of
// its own, with hiredis 0.14 as the RESP codec only (redisFormatCommandArgv encodes a
// command, redisReader decodes replies). hiredis's sockets and async context would block
// or want their own event loop; Asio already has one.
//
// A connection walks resolve, connect, AUTH, SELECT (one deadline over all of them), then
// is ready: commands are written as they come (what arrives while a write is on the wire
// goes out with the next one) and replies are matched to commands first in, first out.
// Every member but the public entry points runs on the strand; send(), close() and the
// handle's destructor only post there, which is also why no callback is ever called
// inline from them.
#include "wsvisor/redis_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>

#include <hiredis/hiredis.h>

#include <climits>
#include <deque>
#include <limits>
#include <new>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace wsvisor {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

namespace {

using strand = net::strand<net::io_context::executor_type>;
using connection_kind = redis_port::connection_kind;
using completion = redis_connection::completion;

// Below Redis's default proto-max-bulk-len and far below INT_MAX, the largest length
// hiredis 0.14's formatter can return (its result is an int).
constexpr std::size_t max_command_bytes = std::size_t{512} << 20;
constexpr std::size_t read_chunk_bytes = 64 * 1024;
// A write buffer that grew past this (a large command) is given back once it is empty.
constexpr std::size_t kept_write_capacity = 1 << 20;

struct reader_deleter {
  void operator()(redisReader* reader) const { redisReaderFree(reader); }
};
using reader_ptr = std::unique_ptr<redisReader, reader_deleter>;

struct reply_deleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

// hiredis's reply tree as a redis_value. The reader nests arrays at most 8 deep (deeper
// is a protocol error), so the recursion is bounded.
redis_value to_value(const redisReply& reply) {
  redis_value value;
  switch (reply.type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      value.kind = reply.type == REDIS_REPLY_STRING   ? redis_value::type::string
                   : reply.type == REDIS_REPLY_STATUS ? redis_value::type::status
                                                      : redis_value::type::error;
      value.text.assign(reply.str, reply.len);
      break;
    case REDIS_REPLY_INTEGER:
      value.kind = redis_value::type::integer;
      value.integer = reply.integer;
      break;
    case REDIS_REPLY_ARRAY:
      value.kind = redis_value::type::array;
      value.elements.reserve(reply.elements);
      for (std::size_t i = 0; i < reply.elements; ++i)
        value.elements.push_back(reply.element[i] ? to_value(*reply.element[i]) : redis_value{});
      break;
    default:  // REDIS_REPLY_NIL: a nil bulk string or a nil array
      break;
  }
  return value;
}

redis_value error_reply(std::string text) {
  redis_value value;
  value.kind = redis_value::type::error;
  value.text = std::move(text);
  return value;
}

// argv in RESP, appended to `out`; "" when done, else why it cannot be sent.
std::string encode_command(const std::vector<std::string>& argv, std::string& out) {
  // "*0\r\n" is a valid encoding, but Redis answers nothing to it: every later reply
  // would then be matched to the command before it.
  if (argv.empty()) return "ERR empty command (not sent)";
  std::size_t bytes = 0;
  std::vector<const char*> pointers;
  std::vector<std::size_t> lengths;
  pointers.reserve(argv.size());
  lengths.reserve(argv.size());
  for (const auto& argument : argv) {
    bytes += argument.size() + 32;  // "$<length>\r\n" and "\r\n" take less than 32
    pointers.push_back(argument.data());
    lengths.push_back(argument.size());
  }
  if (bytes > max_command_bytes || argv.size() > static_cast<std::size_t>(INT_MAX))
    return "ERR command of about " + std::to_string(bytes) + " bytes is over the " +
           std::to_string(max_command_bytes >> 20) + " MiB a command may take (not sent)";
  char* formatted = nullptr;
  const int length = redisFormatCommandArgv(&formatted, static_cast<int>(argv.size()),
                                            pointers.data(), lengths.data());
  if (length < 0) throw std::bad_alloc();  // its only failure
  out.append(formatted, static_cast<std::size_t>(length));
  redisFreeCommand(formatted);
  return "";
}

// A command on its way from send() to the strand.
struct outgoing_command {
  std::string bytes;  // RESP; empty when refused
  std::string refusal;
  completion done;
};

// A command whose reply is awaited, in the order they were sent. A refused one was never
// written: it gets its made-up error reply when it comes to the front.
struct pending_command {
  completion done;
  std::optional<redis_value> refusal;
};

class client_connection final : public std::enable_shared_from_this<client_connection> {
 public:
  client_connection(net::io_context& io, const redis_client_options& options,
                    const redis_endpoint& where, connection_kind kind, redis_handlers handlers)
      : strand_(net::make_strand(io)),
        options_(options),
        where_(where),
        kind_(kind),
        handlers_(std::move(handlers)),
        socket_(strand_),
        resolver_(strand_),
        deadline_(strand_),
        reader_(redisReaderCreate()),
        read_buffer_(read_chunk_bytes) {
    if (!reader_) throw std::bad_alloc();
  }

  // Thread-safe entry points: they post to the strand and return.
  void start();
  void send(std::vector<std::string> argv, completion done);
  void close();
  // The caller dropped its last reference.
  void abandon();

 private:
  enum class state { connecting, handshaking, ready, finished };
  enum class ending { setup_failed, lost, closed };
  enum class handshake_step { auth, select };

  void resolve();
  void connect_to(const std::vector<tcp::endpoint>& endpoints);
  void on_connect(const error_code& ec);
  void on_deadline(const error_code& ec);
  void begin_handshake();
  void on_handshake_reply(const redis_value& reply);
  void become_ready();

  void queue(outgoing_command command);
  void write_user_bytes(std::string_view bytes);
  void write_next();
  void on_write(const error_code& ec);
  void read_next();
  void on_read(const error_code& ec, std::size_t bytes);
  void on_reply(redis_value reply);
  std::string reply_too_large(std::size_t bytes, bool complete) const;
  void settle_refusals();
  void close_if_abandoned_and_idle();

  std::string step_name() const;
  void broke(const std::string& why);
  void finish(ending how, const std::string& why);

  strand strand_;
  const redis_client_options options_;
  const redis_endpoint where_;
  const connection_kind kind_;
  redis_handlers handlers_;  // released when finished: they may hold what holds us
  tcp::socket socket_;
  tcp::resolver resolver_;
  net::steady_timer deadline_;
  reader_ptr reader_;
  std::vector<char> read_buffer_;
  // Bytes fed to the reader since the last complete reply: the reply it is still reading.
  std::size_t partial_reply_bytes_ = 0;

  state state_ = state::connecting;
  const char* setup_step_ = "resolve";  // before the handshake: where it is
  std::deque<handshake_step> handshake_;
  std::string held_;       // commands sent before ready, written when it is
  std::string outgoing_;   // commands waiting for the write on the wire to finish
  std::string in_flight_;  // the write on the wire
  bool writing_ = false;
  std::deque<pending_command> pending_;
  bool abandoned_ = false;
};

// What the caller holds. The connection itself is also held by its pending operations,
// so dropping this one must tell it to close, or its endless read would keep it open.
class connection_handle final : public redis_connection {
 public:
  explicit connection_handle(std::shared_ptr<client_connection> connection)
      : connection_(std::move(connection)) {}
  ~connection_handle() override { connection_->abandon(); }

  void send(std::vector<std::string> argv, completion done) override {
    connection_->send(std::move(argv), std::move(done));
  }
  void close() override { connection_->close(); }

 private:
  std::shared_ptr<client_connection> connection_;
};

class redis_client final : public redis_port {
 public:
  redis_client(net::io_context& io, redis_client_options options) : io_(io), options_(options) {}

  std::shared_ptr<redis_connection> connect(const redis_endpoint& where, connection_kind kind,
                                            redis_handlers handlers) override {
    auto connection =
        std::make_shared<client_connection>(io_, options_, where, kind, std::move(handlers));
    connection->start();
    return std::make_shared<connection_handle>(std::move(connection));
  }

 private:
  net::io_context& io_;
  const redis_client_options options_;
};

void client_connection::start() {
  net::post(strand_, [self = shared_from_this()] {
    if (self->state_ == state::finished) return;  // closed before it began
    self->deadline_.expires_after(self->where_.connect_timeout);
    self->deadline_.async_wait([self](const error_code& ec) { self->on_deadline(ec); });
    self->resolve();
  });
}

void client_connection::resolve() {
  error_code not_an_address;
  const auto address = net::ip::make_address(where_.host, not_an_address);
  if (!not_an_address) return connect_to({tcp::endpoint(address, where_.port)});
  // Asio resolves on a thread of its own (getaddrinfo blocks); the result comes back here.
  resolver_.async_resolve(
      where_.host, std::to_string(where_.port), tcp::resolver::numeric_service,
      [self = shared_from_this()](const error_code& ec, const tcp::resolver::results_type& found) {
        if (self->state_ == state::finished) return;
        if (ec) return self->finish(ending::setup_failed, "resolve: " + ec.message());
        std::vector<tcp::endpoint> endpoints;
        for (const auto& entry : found) endpoints.push_back(entry.endpoint());
        self->connect_to(endpoints);
      });
}

void client_connection::connect_to(const std::vector<tcp::endpoint>& endpoints) {
  setup_step_ = "connect";
  // Each address in turn (a name may have an IPv6 and an IPv4 one).
  net::async_connect(socket_, endpoints,
                     [self = shared_from_this()](const error_code& ec, const tcp::endpoint&) {
                       self->on_connect(ec);
                     });
}

void client_connection::on_connect(const error_code& ec) {
  if (state_ == state::finished) {
    // Closed while connecting: the connect may have reopened the socket for the next
    // address before it saw that.
    error_code ignored;
    socket_.close(ignored);
    return;
  }
  if (ec) return finish(ending::setup_failed, "connect: " + ec.message());
  // Commands are small and answered one by one: Nagle would hold each for an ACK.
  error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
  state_ = state::handshaking;
  read_next();
  begin_handshake();
}

void client_connection::on_deadline(const error_code& ec) {
  if (ec || state_ == state::ready || state_ == state::finished) return;  // cancelled, or done
  finish(ending::setup_failed, step_name() + ": timed out after " +
                                   std::to_string(where_.connect_timeout.count()) + " ms");
}

// AUTH and SELECT go out together (one write); the user's commands wait until both
// answered, so that none of them runs unauthenticated or on the wrong database.
void client_connection::begin_handshake() {
  std::string bytes;
  if (!where_.password.empty()) {
    std::vector<std::string> auth{"AUTH"};
    if (!where_.user.empty()) auth.push_back(where_.user);
    auth.push_back(where_.password);
    encode_command(auth, bytes);
    handshake_.push_back(handshake_step::auth);
  }
  if (where_.database != 0) {
    encode_command({"SELECT", std::to_string(where_.database)}, bytes);
    handshake_.push_back(handshake_step::select);
  }
  if (handshake_.empty()) return become_ready();
  outgoing_ += bytes;
  write_next();
}

void client_connection::on_handshake_reply(const redis_value& reply) {
  if (reply.is_error()) return finish(ending::setup_failed, step_name() + ": " + reply.text);
  handshake_.pop_front();
  if (handshake_.empty()) become_ready();
}

void client_connection::become_ready() {
  state_ = state::ready;
  deadline_.cancel();
  write_user_bytes(held_);
  std::string().swap(held_);
  settle_refusals();
  if (handlers_.on_ready) handlers_.on_ready("");
  close_if_abandoned_and_idle();
}

void client_connection::send(std::vector<std::string> argv, completion done) {
  // Encoded on the caller's thread: the strand only appends bytes.
  outgoing_command command;
  command.refusal = encode_command(argv, command.bytes);
  command.done = std::move(done);
  net::post(strand_, [self = shared_from_this(), command = std::move(command)]() mutable {
    self->queue(std::move(command));
  });
}

void client_connection::queue(outgoing_command command) {
  // A subscriber's commands have no `done`: their replies are pushes.
  if (kind_ == connection_kind::subscriber) {
    if (state_ != state::finished && command.refusal.empty()) write_user_bytes(command.bytes);
    return;
  }
  if (state_ == state::finished) {
    if (command.done) command.done(nullptr);
    return;
  }
  pending_command waiting{std::move(command.done), std::nullopt};
  if (command.refusal.empty())
    write_user_bytes(command.bytes);
  else
    waiting.refusal = error_reply(std::move(command.refusal));
  pending_.push_back(std::move(waiting));
  if (state_ == state::ready) settle_refusals();
}

void client_connection::write_user_bytes(std::string_view bytes) {
  if (bytes.empty()) return;
  if (state_ != state::ready) {
    held_ += bytes;
    return;
  }
  outgoing_ += bytes;
  write_next();
}

void client_connection::write_next() {
  if (writing_ || outgoing_.empty() || state_ == state::finished) return;
  writing_ = true;
  in_flight_.swap(outgoing_);
  net::async_write(
      socket_, net::buffer(in_flight_),
      [self = shared_from_this()](const error_code& ec, std::size_t) { self->on_write(ec); });
}

void client_connection::on_write(const error_code& ec) {
  writing_ = false;
  in_flight_.clear();
  if (in_flight_.capacity() > kept_write_capacity) std::string().swap(in_flight_);
  if (state_ == state::finished) return;
  if (ec) return broke("write: " + ec.message());
  write_next();
}

void client_connection::read_next() {
  socket_.async_read_some(net::buffer(read_buffer_),
                          [self = shared_from_this()](const error_code& ec, std::size_t bytes) {
                            self->on_read(ec, bytes);
                          });
}

void client_connection::on_read(const error_code& ec, std::size_t bytes) {
  if (state_ == state::finished) return;
  if (ec == net::error::eof) return broke("Redis closed the connection");
  if (ec) return broke("read: " + ec.message());
  if (redisReaderFeed(reader_.get(), read_buffer_.data(), bytes) != REDIS_OK)
    return broke(std::string("RESP reader: ") + reader_->errstr);
  partial_reply_bytes_ += bytes;
  for (;;) {
    void* raw = nullptr;
    // hiredis 0.14: an error (a protocol error, an array nested deeper than it reads) is
    // final; the reader must not be used again, and the connection cannot be resynced.
    if (redisReaderGetReply(reader_.get(), &raw) != REDIS_OK)
      return broke(std::string("protocol error: ") + reader_->errstr);
    if (!raw) break;  // the rest of a reply is still to come
    const reply_ptr reply(static_cast<redisReply*>(raw));
    // What the reader holds beyond this reply belongs to the next ones.
    const std::size_t unparsed = reader_->len - reader_->pos;
    const std::size_t reply_bytes = partial_reply_bytes_ - unparsed;
    partial_reply_bytes_ = unparsed;
    if (reply_bytes > options_.max_reply_bytes) return broke(reply_too_large(reply_bytes, true));
    on_reply(to_value(*reply));
    if (state_ == state::finished) return;
  }
  // The reader buffers a bulk string until the whole of it is in: this bounds that
  // before it is complete.
  if (partial_reply_bytes_ > options_.max_reply_bytes)
    return broke(reply_too_large(partial_reply_bytes_, false));
  read_next();
}

std::string client_connection::reply_too_large(std::size_t bytes, bool complete) const {
  return "a reply over max_reply_bytes (" + std::to_string(options_.max_reply_bytes) +
         "): " + std::to_string(bytes) + " bytes" + (complete ? "" : " and more to come");
}

void client_connection::on_reply(redis_value reply) {
  if (state_ == state::handshaking) return on_handshake_reply(reply);
  if (kind_ == connection_kind::subscriber) {
    if (handlers_.on_push) handlers_.on_push(std::move(reply));
    return;
  }
  // A refused command at the front was answered when it got there (settle_refusals).
  if (pending_.empty())
    return broke(
        "a reply no command was waiting for (SUBSCRIBE or MONITOR on a command "
        "connection?)");
  auto done = std::move(pending_.front().done);
  pending_.pop_front();
  if (done) done(&reply);
  settle_refusals();
  close_if_abandoned_and_idle();
}

void client_connection::settle_refusals() {
  while (state_ == state::ready && !pending_.empty() && pending_.front().refusal) {
    auto refused = std::move(pending_.front());
    pending_.pop_front();
    if (refused.done) refused.done(&*refused.refusal);
  }
}

void client_connection::close_if_abandoned_and_idle() {
  if (abandoned_ && pending_.empty() && state_ != state::finished) finish(ending::closed, "");
}

void client_connection::close() {
  net::post(strand_, [self = shared_from_this()] { self->finish(ending::closed, ""); });
}

void client_connection::abandon() {
  net::post(strand_, [self = shared_from_this()] {
    self->abandoned_ = true;
    // Commands on the wire, or waiting for on_ready, are answered first: the last reply
    // closes it (close_if_abandoned_and_idle).
    if (self->pending_.empty() || self->state_ == state::finished) self->finish(ending::closed, "");
  });
}

std::string client_connection::step_name() const {
  if (state_ != state::handshaking || handshake_.empty()) return setup_step_;
  if (handshake_.front() == handshake_step::auth) return "AUTH";
  return "SELECT " + std::to_string(where_.database);
}

// The connection cannot go on: lost once ready, else the setup failed at its step.
void client_connection::broke(const std::string& why) {
  if (state_ == state::ready) return finish(ending::lost, why);
  finish(ending::setup_failed, step_name() + ": " + why);
}

void client_connection::finish(ending how, const std::string& why) {
  if (state_ == state::finished) return;
  state_ = state::finished;
  deadline_.cancel();
  resolver_.cancel();
  // Ends the pending read and write: their handlers find the connection finished (the
  // write's buffer lives until its handler ran).
  error_code ignored;
  socket_.close(ignored);
  std::string().swap(held_);
  std::string().swap(outgoing_);
  auto pending = std::move(pending_);
  pending_.clear();
  auto handlers = std::move(handlers_);
  handlers_ = redis_handlers{};
  for (auto& command : pending)
    if (command.done) command.done(nullptr);
  if (how == ending::setup_failed && handlers.on_ready) handlers.on_ready(why);
  if (how == ending::lost && handlers.on_lost) handlers.on_lost(why);
}

}  // namespace

std::shared_ptr<redis_port> make_redis_client(net::io_context& io, redis_client_options options) {
  return std::make_shared<redis_client>(io, options);
}

}  // namespace wsvisor
