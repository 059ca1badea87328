// The HTTP/1.1 client behind upstream_port, after Beast's http_client_async(_ssl).cpp:
// one `exchange` per attempt walks resolve, connect, TLS handshake, write and read, one
// on_* member per step. Everything of one client (its attempts, its idle pool, their
// sockets and timers) runs on one strand: start() and cancel() only post there. That
// keeps the pool lock-free and simple; the price is that the client's own work (parsing
// and serializing, not waiting) takes one io thread at a time.
#include "wsvisor/http_upstream.hpp"

#include "upstream_response.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

namespace wsvisor {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

namespace {

using outcome = upstream_reply::outcome;
using strand = net::strand<net::io_context::executor_type>;
using tls_stream = beast::ssl_stream<beast::tcp_stream>;

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

// RFC 7230 3.2.6 token: methods and header names.
bool is_token(std::string_view text) {
  if (text.empty()) return false;
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

// A header value may not end the line early: Beast writes values as they are, so a CR or
// LF in one would let the caller's data add headers or a second request.
bool is_field_value(std::string_view text) {
  return std::none_of(text.begin(), text.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return (byte < 0x20 && c != '\t') || byte == 0x7f;
  });
}

// Where an attempt goes, from its absolute URL.
struct target_url {
  bool tls = false;
  std::string host;  // lower case; an IPv6 literal without its brackets
  bool host_is_address = false;
  unsigned short port = 0;
  std::string target;       // path and query, at least "/"
  std::string host_header;  // host[:port], as the Host header wants it
  std::string pool_key;     // which idle connections may carry it: scheme and host_header
};

// http://host[:port]/path?query (https:// too); "" when it parses, else why not. No
// userinfo (credentials belong in headers), the fragment is dropped (never sent).
std::string parse_url(std::string_view url, target_url& out) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return "no scheme (http:// or https://)";
  const auto scheme = url.substr(0, scheme_end);
  if (iequals(scheme, "http")) {
    out.tls = false;
    out.port = 80;
  } else if (iequals(scheme, "https")) {
    out.tls = true;
    out.port = 443;
  } else {
    return "unsupported scheme '" + std::string(scheme) + "'";
  }
  std::string_view rest = url.substr(scheme_end + 3);
  const auto authority_end = std::min(rest.find_first_of("/?#"), rest.size());
  std::string_view authority = rest.substr(0, authority_end);
  std::string_view path = rest.substr(authority_end);
  if (authority.find('@') != std::string_view::npos) return "userinfo is not supported";

  std::string_view port_text;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return "unterminated IPv6 literal";
    out.host = std::string(authority.substr(1, close - 1));
    beast::error_code ec;
    net::ip::make_address_v6(out.host, ec);
    if (ec) return "invalid IPv6 literal '" + out.host + "'";
    out.host_is_address = true;
    const auto after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':') return "junk after the IPv6 literal";
    has_port = !after.empty();
    if (has_port) port_text = after.substr(1);
  } else {
    const auto colon = authority.find(':');
    has_port = colon != std::string_view::npos;
    if (has_port) port_text = authority.substr(colon + 1);
    out.host = lowercase_ascii(authority.substr(0, has_port ? colon : authority.size()));
    const bool name_chars = std::all_of(out.host.begin(), out.host.end(), [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-' || c == '.' || c == '_';
    });
    if (out.host.empty() || !name_chars) return "invalid host '" + out.host + "'";
    beast::error_code ec;
    net::ip::make_address_v4(out.host, ec);
    out.host_is_address = !ec;
  }
  if (has_port && !port_text.empty()) {  // "host:" means the default port (RFC 3986 3.2.3)
    unsigned long port = 0;
    for (const char c : port_text) {
      if (c < '0' || c > '9' || port > 65535)
        return "invalid port '" + std::string(port_text) + "'";
      port = port * 10 + static_cast<unsigned long>(c - '0');
    }
    if (port == 0 || port > 65535) return "invalid port '" + std::string(port_text) + "'";
    out.port = static_cast<unsigned short>(port);
  }

  path = path.substr(0, std::min(path.find('#'), path.size()));
  out.target = path.empty() || path.front() == '?' ? "/" + std::string(path) : std::string(path);
  // What goes on the request line must be visible ASCII: a space or a CR would end it.
  const bool visible = std::all_of(out.target.begin(), out.target.end(),
                                   [](char c) { return c > 0x20 && c < 0x7f; });
  if (!visible) return "the path or query holds a character that must be percent-encoded";

  const bool default_port = out.port == (out.tls ? 443 : 80);
  out.host_header = out.host.find(':') != std::string::npos ? "[" + out.host + "]" : out.host;
  if (!default_port) out.host_header += ":" + std::to_string(out.port);
  out.pool_key = (out.tls ? "https://" : "http://") + out.host_header;
  return "";
}

// Headers the port writes itself: the caller's would contradict them (two lengths, or a
// length with a transfer coding, is how requests get smuggled).
bool is_ports_own_header(std::string_view name) {
  return iequals(name, "host") || iequals(name, "content-length") || iequals(name, "connection") ||
         iequals(name, "transfer-encoding");
}

upstream_reply failure(outcome result, std::string error) {
  upstream_reply reply;
  reply.result = result;
  reply.error = std::move(error);
  return reply;
}

enum class step { resolve, connect, handshake, write, read };

const char* to_string(step where) {
  switch (where) {
    case step::resolve:
      return "resolve";
    case step::connect:
      return "connect";
    case step::handshake:
      return "TLS handshake";
    case step::write:
      return "write";
    case step::read:
      return "read";
  }
  return "?";
}

// The one place where an error code becomes an outcome. `response_started`: a byte of
// the response had arrived when it happened.
upstream_reply classify(const beast::error_code& ec, step where, bool response_started) {
  const std::string what = std::string(to_string(where)) + ": " + ec.message();
  if (ec == http::error::header_limit || ec == http::error::body_limit ||
      ec == http::error::buffer_overflow)
    return failure(outcome::too_large, "response over max_response_bytes (" + what + ")");
  if (where == step::resolve || where == step::connect || where == step::handshake)
    return failure(outcome::connect_error, what);
  // Beast's parser said the bytes are not HTTP, or their framing is broken (end_of_stream
  // alone is the peer closing before a byte: that is the transport's case below).
  if (ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
      ec != http::error::end_of_stream)
    return failure(outcome::malformed, what);
  // The connection broke (reset, closed, TLS cut short): before the response it is as if
  // there had been no connection (worth a retry, the delivery id makes that safe); in the
  // middle of one, the response is cut short.
  if (!response_started)
    return failure(outcome::connect_error, "connection lost before the response (" + what + ")");
  return failure(outcome::malformed, "response cut short (" + what + ")");
}

// One connection to a backend, between attempts in the idle pool.
struct connection {
  explicit connection(const strand& executor)
      : stream(std::in_place_type<beast::tcp_stream>, executor) {}
  connection(const strand& executor, ssl::context& tls)
      : stream(std::in_place_type<tls_stream>, executor, tls) {}

  beast::tcp_stream& tcp() {
    return std::visit([](auto& s) -> beast::tcp_stream& { return beast::get_lowest_layer(s); },
                      stream);
  }

  // Whether an idle connection may carry a request: the server has neither closed it
  // (EOF) nor written anything on it (a 408 before closing, say: read as the next
  // request's answer it would be a wrong one). A non-blocking peek, no wait.
  bool still_open() {
    if (buffer.size() != 0) return false;
    char byte = 0;
    const auto n = ::recv(tcp().socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }

  std::variant<beast::tcp_stream, tls_stream> stream;
  beast::flat_buffer buffer;
};

class exchange;

class http_upstream final : public upstream_port,
                            public std::enable_shared_from_this<http_upstream> {
 public:
  http_upstream(net::io_context& io, http_upstream_options options)
      : strand_(net::make_strand(io)), options_(options) {}

  uint64_t start(upstream_attempt attempt, completion done) override;
  void cancel(uint64_t attempt_id) override;

  // The rest runs on the strand only.
  const strand& executor() const { return strand_; }
  const http_upstream_options& options() const { return options_; }
  // A live idle connection to `key` (scheme + Host), or nullptr.
  std::unique_ptr<connection> take_idle(const std::string& key);
  void give_back(const std::string& key, std::unique_ptr<connection> idle);
  // nullptr and `error` set when TLS cannot be set up.
  std::unique_ptr<connection> new_connection(bool tls, std::string& error);
  void forget(uint64_t attempt_id) { running_.erase(attempt_id); }

 private:
  strand strand_;
  const http_upstream_options options_;
  std::atomic<uint64_t> next_id_{1};
  // Weak: an attempt is kept alive by its own pending handlers (its deadline timer is
  // one until it finishes), so a stopped io_context frees it instead of a cycle.
  std::unordered_map<uint64_t, std::weak_ptr<exchange>> running_;
  // Per key, oldest first: the newest is taken (the likeliest to be alive).
  std::unordered_map<std::string, std::vector<std::unique_ptr<connection>>> idle_;
  std::optional<ssl::context> tls_;  // made on the first https attempt
};

// One attempt: one request, one response (or a failure), one call of `done`.
class exchange : public std::enable_shared_from_this<exchange> {
 public:
  exchange(std::shared_ptr<http_upstream> client, uint64_t id, upstream_attempt attempt,
           upstream_port::completion done)
      : client_(std::move(client)),
        id_(id),
        attempt_(std::move(attempt)),
        done_(std::move(done)),
        deadline_(client_->executor()),
        resolver_(client_->executor()) {}

  void run();
  // Ends the attempt now with `result` (timeout, cancelled): closing the socket makes
  // whatever is pending complete with operation_aborted, which then finds it finished.
  void abort(outcome result, std::string error);

 private:
  std::string build_request();
  void connect_fresh();
  void on_resolve(beast::error_code ec, const tcp::resolver::results_type& results);
  void do_connect();
  void on_connect(beast::error_code ec, const tcp::endpoint&);
  void on_handshake(beast::error_code ec);
  void do_write();
  void on_write(beast::error_code ec, std::size_t);
  void do_read();
  void on_read(beast::error_code ec, std::size_t bytes);
  void on_deadline(beast::error_code ec);
  void new_parser();
  bool response_started() const;
  void fail(beast::error_code ec, step where);
  void succeed();
  void finish(upstream_reply reply);

  std::shared_ptr<http_upstream> client_;
  const uint64_t id_;
  upstream_attempt attempt_;
  upstream_port::completion done_;
  net::steady_timer deadline_;
  tcp::resolver resolver_;
  target_url url_;
  std::vector<tcp::endpoint> endpoints_;
  http::request<http::string_body> request_;
  std::optional<http::response_parser<http::string_body>> parser_;
  std::unique_ptr<connection> connection_;
  uint64_t received_ = 0;  // bytes of this response the parser took: head, framing, body
  bool reused_ = false;    // connection_ came from the idle pool
  bool retried_ = false;
  bool finished_ = false;
};

uint64_t http_upstream::start(upstream_attempt attempt, completion done) {
  const uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
  // Posted even from the strand: `done` is never called inline from start().
  net::post(strand_, [self = shared_from_this(), id, attempt = std::move(attempt),
                      done = std::move(done)]() mutable {
    auto call = std::make_shared<exchange>(self, id, std::move(attempt), std::move(done));
    self->running_.emplace(id, call);
    call->run();
  });
  return id;
}

void http_upstream::cancel(uint64_t attempt_id) {
  net::post(strand_, [self = shared_from_this(), attempt_id] {
    const auto found = self->running_.find(attempt_id);
    if (found == self->running_.end()) return;  // finished, or never started
    if (auto call = found->second.lock()) call->abort(outcome::cancelled, "cancelled");
  });
}

std::unique_ptr<connection> http_upstream::take_idle(const std::string& key) {
  const auto found = idle_.find(key);
  if (found == idle_.end()) return nullptr;
  auto& pool = found->second;
  while (!pool.empty()) {
    auto idle = std::move(pool.back());
    pool.pop_back();
    if (idle->still_open()) return idle;
    // Closed (or spoken on) by the server while idle: dropped, which closes it.
  }
  return nullptr;
}

void http_upstream::give_back(const std::string& key, std::unique_ptr<connection> idle) {
  if (options_.max_idle_per_host == 0) return;
  auto& pool = idle_[key];
  if (pool.size() >= options_.max_idle_per_host) pool.erase(pool.begin());  // the oldest
  pool.push_back(std::move(idle));
}

std::unique_ptr<connection> http_upstream::new_connection(bool tls, std::string& error) {
  if (!tls) return std::make_unique<connection>(strand_);
  if (!tls_) {
    try {
      ssl::context context(ssl::context::tls_client);
      // The system's CA store (SSL_CERT_FILE and SSL_CERT_DIR when set, as OpenSSL reads
      // them), and no protocol older than TLS 1.2.
      context.set_default_verify_paths();
      context.set_verify_mode(ssl::verify_peer);
      SSL_CTX_set_min_proto_version(context.native_handle(), TLS1_2_VERSION);
      tls_.emplace(std::move(context));
    } catch (const std::exception& e) {
      error = std::string("TLS setup: ") + e.what();
      return nullptr;
    }
  }
  return std::make_unique<connection>(strand_, *tls_);
}

void exchange::run() {
  if (auto why = parse_url(attempt_.url, url_); !why.empty())
    return finish(failure(outcome::connect_error, "invalid URL: " + why));
  if (auto why = build_request(); !why.empty()) return finish(failure(outcome::connect_error, why));
  // One deadline for the whole attempt: resolve, connect, handshake, write and response.
  deadline_.expires_after(attempt_.timeout);
  deadline_.async_wait(beast::bind_front_handler(&exchange::on_deadline, shared_from_this()));
  connection_ = client_->take_idle(url_.pool_key);
  if (!connection_) return connect_fresh();
  reused_ = true;
  do_write();
}

std::string exchange::build_request() {
  if (!is_token(attempt_.method)) return "invalid method '" + attempt_.method + "'";
  request_.method_string(attempt_.method);
  request_.target(url_.target);
  request_.version(11);
  request_.set(http::field::host, url_.host_header);
  for (const auto& [name, value] : attempt_.headers) {
    if (!is_token(name)) return "invalid header name '" + name + "'";
    if (!is_field_value(value)) return "invalid value of header '" + name + "'";
    if (!is_ports_own_header(name)) request_.insert(name, value);
  }
  request_.set(http::field::connection, "keep-alive");
  request_.body() = std::move(attempt_.body);
  request_.prepare_payload();  // Content-Length (none for a GET without a body)
  return "";
}

void exchange::connect_fresh() {
  if (url_.host_is_address) {
    endpoints_.assign(1, tcp::endpoint(net::ip::make_address(url_.host), url_.port));
    return do_connect();
  }
  resolver_.async_resolve(url_.host, std::to_string(url_.port), tcp::resolver::numeric_service,
                          beast::bind_front_handler(&exchange::on_resolve, shared_from_this()));
}

void exchange::on_resolve(beast::error_code ec, const tcp::resolver::results_type& results) {
  if (finished_) return;
  if (ec) return fail(ec, step::resolve);
  endpoints_.clear();
  for (const auto& entry : results) endpoints_.push_back(entry.endpoint());
  do_connect();
}

void exchange::do_connect() {
  std::string error;
  connection_ = client_->new_connection(url_.tls, error);
  if (!connection_) return finish(failure(outcome::connect_error, error));
  // Each address in turn (a name may have an IPv6 and an IPv4 one).
  connection_->tcp().async_connect(
      endpoints_, beast::bind_front_handler(&exchange::on_connect, shared_from_this()));
}

void exchange::on_connect(beast::error_code ec, const tcp::endpoint&) {
  if (finished_) return;
  if (ec) return fail(ec, step::connect);
  if (!url_.tls) return do_write();
  auto& stream = std::get<tls_stream>(connection_->stream);
  // SNI for names only (RFC 6066 3: never an IP literal); the certificate must name the
  // host (a name, or an IP literal in its subjectAltName).
  if (!url_.host_is_address && !SSL_set_tlsext_host_name(stream.native_handle(), url_.host.c_str()))
    return fail({static_cast<int>(::ERR_get_error()), net::error::get_ssl_category()},
                step::handshake);
  stream.set_verify_callback(ssl::host_name_verification(url_.host), ec);
  if (ec) return fail(ec, step::handshake);
  stream.async_handshake(ssl::stream_base::client,
                         beast::bind_front_handler(&exchange::on_handshake, shared_from_this()));
}

void exchange::on_handshake(beast::error_code ec) {
  if (finished_) return;
  if (ec) return fail(ec, step::handshake);
  do_write();
}

void exchange::do_write() {
  std::visit(
      [this](auto& stream) {
        http::async_write(stream, request_,
                          beast::bind_front_handler(&exchange::on_write, shared_from_this()));
      },
      connection_->stream);
}

void exchange::on_write(beast::error_code ec, std::size_t) {
  if (finished_) return;
  if (ec) return fail(ec, step::write);
  received_ = 0;
  new_parser();
  do_read();
}

// The parser's own limits keep memory bounded within a read (a header or a declared
// length over the limit fails at once); on_read counts the whole response on the wire.
void exchange::new_parser() {
  parser_.emplace();
  limit_response_parser(*parser_, client_->options().max_response_bytes, received_,
                        request_.method() == http::verb::head);
}

void exchange::do_read() {
  std::visit(
      [this](auto& stream) {
        http::async_read_some(stream, connection_->buffer, *parser_,
                              beast::bind_front_handler(&exchange::on_read, shared_from_this()));
      },
      connection_->stream);
}

void exchange::on_read(beast::error_code ec, std::size_t bytes) {
  if (finished_) return;
  received_ += bytes;
  if (ec) return fail(ec, step::read);
  const uint64_t max = client_->options().max_response_bytes;
  if (received_ > max)
    return finish(failure(outcome::too_large,
                          "response over max_response_bytes (" + std::to_string(max) + ")"));
  if (!parser_->is_done()) return do_read();
  if (is_interim_status(parser_->get().result_int())) {
    // An interim answer (100 Continue, 103 Early Hints): the final one follows. It
    // counts against the limit like the rest.
    new_parser();
    return do_read();
  }
  succeed();
}

bool exchange::response_started() const {
  return received_ > 0 || (parser_ && parser_->got_some()) ||
         (connection_ && connection_->buffer.size() > 0);
}

void exchange::fail(beast::error_code ec, step where) {
  // A connection from the idle pool that fails before any byte of the response arrived
  // was most likely closed by the server while idle (its keep-alive timeout crossed our
  // request): the request is sent again once, on a fresh connection, within the same
  // deadline. The request may have reached the server anyway (it may have closed after
  // reading it), so this can deliver twice; that is harmless here since every upstream
  // request carries its X-Wsvisor-Delivery id (CONTRACT 11.1) and the backend drops
  // duplicates, exactly as it does for the upstream service's own retries.
  const bool before_response = where == step::write || (where == step::read && !response_started());
  if (reused_ && !retried_ && before_response) {
    retried_ = true;
    reused_ = false;
    connection_.reset();  // nothing pending on it: its one operation just completed
    return connect_fresh();
  }
  finish(classify(ec, where, response_started()));
}

void exchange::succeed() {
  const bool keep_alive = parser_->keep_alive();
  upstream_reply reply = reply_of(parser_->release());
  // Reusable only when the server keeps it open, nothing unasked-for came after the
  // response, and the protocol is still HTTP (not after a 101).
  if (keep_alive && connection_->buffer.size() == 0 && reply.status >= 200)
    client_->give_back(url_.pool_key, std::move(connection_));
  finish(std::move(reply));
}

void exchange::on_deadline(beast::error_code ec) {
  if (ec || finished_) return;  // cancelled: the attempt finished first
  abort(outcome::timeout,
        "no complete response within " + std::to_string(attempt_.timeout.count()) + " ms");
}

void exchange::abort(outcome result, std::string error) {
  if (finished_) return;
  finish(failure(result, std::move(error)));
}

void exchange::finish(upstream_reply reply) {
  if (finished_) return;
  finished_ = true;
  deadline_.cancel();
  resolver_.cancel();
  // A connection not given back is closed, which also ends whatever is pending on it
  // (timeout, cancel); the object itself lives on until those handlers have run.
  if (connection_) connection_->tcp().close();
  client_->forget(id_);
  auto done = std::move(done_);
  if (done) done(std::move(reply));
}

}  // namespace

std::shared_ptr<upstream_port> make_http_upstream(net::io_context& io,
                                                  http_upstream_options options) {
  return std::make_shared<http_upstream>(io, options);
}

}  // namespace wsvisor
