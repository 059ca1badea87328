#include "http_session.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/json/object.hpp>

#include <openssl/crypto.h>

#include <boost/json/serialize.hpp>
#include <cctype>

#include <prometheus/counter.h>
#include <spdlog/spdlog.h>

#include "event_stream.hpp"
#include "http_exchange.hpp"
#include "websocket_session.hpp"
#include "wsvisor/client_address.hpp"
#include "wsvisor/http_router.hpp"

namespace wsvisor {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;

namespace {

// Requests are small (no endpoint takes a large body): bound what a client can make
// the server hold.
constexpr std::uint32_t kHeaderLimit = 16 * 1024;
constexpr std::uint64_t kBodyLimit = 64 * 1024;

// How long a connection in the health lane has to send its probe.
constexpr std::chrono::milliseconds kHealthLaneWait{500};

bool is_health(const route_match& match) {
  return match.what == route_match::kind::endpoint &&
         match.found->family == endpoint_family::health;
}

bool secret_matches(std::string_view presented, const std::string& secret) {
  // Constant time, so that a secret cannot be guessed byte by byte from timings.
  return presented.size() == secret.size() &&
         CRYPTO_memcmp(presented.data(), secret.data(), secret.size()) == 0;
}

// The case-insensitive prefix "scheme " of an Authorization value, cut off.
std::optional<std::string_view> credentials(std::string_view value, std::string_view scheme) {
  if (value.size() <= scheme.size() || value[scheme.size()] != ' ') return std::nullopt;
  for (std::size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(value[i])) != scheme[i]) return std::nullopt;
  return value.substr(scheme.size() + 1);
}

// Who may call an endpoint (CONTRACT 7 and 11.2); nullopt when the caller may, else
// the status to answer: 404 while the secret is not configured (the API does not
// exist), 401 for a missing or wrong one.
std::optional<http::status> refused_by_auth(endpoint_auth auth,
                                            const http::request<http::string_body>& request,
                                            const settings& config) {
  if (auth == endpoint_auth::none) return std::nullopt;
  const auto& secret = auth == endpoint_auth::admin_token ? config.admin.token : config.api.key;
  if (secret.empty()) return http::status::not_found;
  const auto field = request.find(http::field::authorization);
  const std::string_view authorization =
      field == request.end() ? std::string_view{}
                             : std::string_view(field->value().data(), field->value().size());
  if (auth == endpoint_auth::admin_token) {
    // The admin token: Authorization: Bearer only (v1).
    const auto token = authorization.substr(0, 7) == "Bearer "
                           ? std::optional<std::string_view>(authorization.substr(7))
                           : std::nullopt;
    if (token && secret_matches(*token, secret)) return std::nullopt;
    return http::status::unauthorized;
  }
  // The API key: X-API-Key: K, Authorization: apikey K or Authorization: Bearer K.
  const auto header = request.find("X-API-Key");
  if (header != request.end() &&
      secret_matches(std::string_view(header->value().data(), header->value().size()), secret))
    return std::nullopt;
  for (std::string_view scheme : {"apikey", "bearer"})
    if (auto key = credentials(authorization, scheme); key && secret_matches(*key, secret))
      return std::nullopt;
  return http::status::unauthorized;
}

std::optional<std::string_view> header_value(const http::request<http::string_body>& request,
                                             http::field name) {
  const auto field = request.find(name);
  if (field == request.end()) return std::nullopt;
  return std::string_view(field->value().data(), field->value().size());
}

// Every X-Forwarded-For line, in order, as one comma-separated list (RFC 7230 3.2.2):
// a proxy that appends a line of its own must not leave the client's first line to
// decide the client IP.
std::string forwarded_for(const http::request<http::string_body>& request) {
  std::string joined;
  const auto [first, last] = request.equal_range("X-Forwarded-For");
  for (auto field = first; field != last; ++field) {
    if (!joined.empty()) joined += ", ";
    joined.append(field->value().data(), field->value().size());
  }
  return joined;
}

}  // namespace

void refuse_handshake_limit(server_state& state, uint64_t limit) {
  state.stats.admissions_rejected(reject_reason::handshake_limit).Increment();
  if (state.refusal_log.admit("handshake_limit"))
    log_event(spdlog::level::info, "refused",
              "connection refused: too many handshakes pending (limits.max_pending_handshakes)",
              {{"reason", "handshake_limit"}, {"limit", limit}});
}

http_session::http_session(net::ip::tcp::socket&& socket, std::shared_ptr<server_state> state,
                           listener_role role, pending_handshake pending, http_lane lane)
    : stream_(std::move(socket)),
      state_(std::move(state)),
      pending_(std::move(pending)),
      accepted_at_(std::chrono::steady_clock::now()),
      role_(role),
      lane_(lane) {}

void http_session::run() {
  // handshake_timeout runs from accept to the 101 or the HTTP answer.
  const auto timeout = state_->config.server.handshake_timeout;
  stream_.next_layer().expires_after(
      lane_ == http_lane::health_only
          ? std::min<std::chrono::milliseconds>(kHealthLaneWait, timeout)
          : timeout);
  auto tls = state_->tls_for(role_);
  if (!tls) return do_read();
  // TLS first (CONTRACT 16), within the same deadline: a client that sends no
  // ClientHello, or stalls in the middle, is cut by it like one that sends no request.
  stream_.start_tls(std::move(tls));
  stream_.async_handshake(
      net::ssl::stream_base::server,
      beast::bind_front_handler(&http_session::on_handshake, shared_from_this()));
}

void http_session::on_handshake(beast::error_code ec) {
  if (!ec) return do_read();
  log_event(spdlog::level::debug, "tls_handshake_failed", "TLS handshake failed",
            {{"error", ec.message()}});
  if (lane_ == http_lane::health_only)
    refuse_handshake_limit(*state_, state_->config.limits.max_pending_handshakes);
  close_socket();
}

void http_session::do_read() {
  parser_.emplace();
  parser_->header_limit(kHeaderLimit);
  // The server API takes bodies up to api.max_body_bytes; nothing else needs more than
  // kBodyLimit, but one limit for the connection keeps the parser simple.
  parser_->body_limit(std::max<std::uint64_t>(kBodyLimit, state_->config.api.max_body_bytes));
  http::async_read(stream_, buffer_, *parser_,
                   beast::bind_front_handler(&http_session::on_read, shared_from_this()));
}

void http_session::on_read(beast::error_code ec, std::size_t) {
  const bool health_lane = lane_ == http_lane::health_only;
  if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
      ec == net::error::operation_aborted || ec == net::error::connection_reset ||
      ec == net::error::eof || ec.category() == net::error::get_ssl_category() ||
      ec == net::ssl::error::stream_truncated) {
    if (health_lane) refuse_handshake_limit(*state_, state_->config.limits.max_pending_handshakes);
    return close_socket();
  }
  if (ec == http::error::body_limit)
    return answer(json_response(
        http::status::payload_too_large,
        R"({"error":"bad_request","detail":"the body is larger than api.max_body_bytes"})", 11,
        false));
  if (ec) {
    // Malformed: 400, then close (CONTRACT section 3).
    return answer(json_response(http::status::bad_request, error_body("bad_request"), 11, false));
  }
  auto request = parser_->release();
  const bool keep_alive = request.keep_alive() && !health_lane;
  const unsigned version = request.version();
  const auto& config = state_->config;
  routing_options options;
  options.ws_path = config.server.ws_path;
  options.admin_elsewhere = !config.admin.listen.empty();
  options.api_elsewhere = !config.api.listen.empty();
  options.listener = role_;
  const std::string_view method(request.method_string().data(), request.method_string().size());
  const std::string_view target(request.target().data(), request.target().size());

  const auto found =
      state_->routes.match(method, target, beast::websocket::is_upgrade(request), options);
  if (health_lane && !is_health(found)) {
    // Past max_pending_handshakes only health probes get an answer.
    refuse_handshake_limit(*state_, config.limits.max_pending_handshakes);
    return close_socket();
  }
  switch (found.what) {
    case route_match::kind::websocket:
      return upgrade(std::move(request));
    case route_match::kind::upgrade_required: {
      auto response = json_response(http::status::upgrade_required, error_body("upgrade_required"),
                                    version, keep_alive);
      response.set(http::field::upgrade, "websocket");
      response.set(http::field::connection, keep_alive ? "Upgrade, keep-alive" : "Upgrade, close");
      return answer(std::move(response));
    }
    case route_match::kind::method_not_allowed: {
      auto response = json_response(http::status::method_not_allowed,
                                    error_body("method_not_allowed"), version, keep_alive);
      response.set(http::field::allow, found.allow);
      return answer(std::move(response));
    }
    case route_match::kind::not_found:
      return answer(
          json_response(http::status::not_found, error_body("not_found"), version, keep_alive));
    case route_match::kind::endpoint:
      break;
  }
  const endpoint& e = *found.found;
  const bool api = e.family == endpoint_family::api;
  // Every answer of the server API is counted by method and status (11.2).
  auto respond = [self = shared_from_this(), api,
                  method = std::string(method)](http_response response) {
    if (api) self->state_->stats.api_requests(method, response.result_int()).Increment();
    net::post(self->stream_.get_executor(), [self, response = std::move(response)]() mutable {
      self->answer(std::move(response));
    });
  };
  if (auto status = refused_by_auth(e.auth, request, config))
    return respond(json_response(
        *status, error_body(*status == http::status::not_found ? "not_found" : "unauthorized"),
        version, keep_alive));
  if (api && request.body().size() > config.api.max_body_bytes)
    return respond(json_response(
        http::status::payload_too_large,
        R"({"error":"bad_request","detail":"the body is larger than api.max_body_bytes"})", version,
        false));
  auto query = parse_query(target);
  if (!query)
    return respond(json_response(http::status::bad_request,
                                 R"({"error":"bad_request","detail":"malformed query string"})",
                                 version, keep_alive));
  http_exchange exchange;
  exchange.request = std::make_shared<const http::request<http::string_body>>(std::move(request));
  exchange.state = state_;
  exchange.path = std::string(target_path(exchange.request->target()));
  exchange.query = std::move(*query);
  exchange.version = version;
  exchange.keep_alive = keep_alive;
  exchange.respond = std::move(respond);
  exchange.open_event_stream = [self = shared_from_this()](pending_handshake slot) {
    net::post(self->stream_.get_executor(), [self, slot = std::move(slot)]() mutable {
      self->become_event_stream(std::move(slot));
    });
  };
  e.handler(exchange);
}

void http_session::become_event_stream(pending_handshake slot) {
  // The stream holds a place of its own budget: it no longer counts as a pending handshake.
  pending_.release();
  stream_.next_layer().expires_never();
  beast::error_code ec;
  const auto peer = stream_.next_layer().socket().remote_endpoint(ec);
  const std::string ip = ec ? std::string("-") : peer.address().to_string();
  std::make_shared<event_stream>(std::move(stream_), state_, std::move(slot), ip)->run();
}

void http_session::upgrade(http::request<http::string_body>&& request) {
  const unsigned version = request.version();
  // RFC 6455 4.2.1: refused here, before admission takes a token or a slot, and
  // answered before the socket closes (Beast's own answer would be lost under the
  // coalescing layer).
  switch (check_websocket_handshake(header_value(request, http::field::sec_websocket_version),
                                    header_value(request, http::field::sec_websocket_key))) {
    case handshake_check::ok:
      break;
    case handshake_check::bad_key: {
      auto response =
          json_response(http::status::bad_request, error_body("bad_websocket_key"), version, false);
      return answer(std::move(response));
    }
    case handshake_check::no_version:
    case handshake_check::bad_version: {
      const bool missing = !header_value(request, http::field::sec_websocket_version);
      auto response = json_response(
          missing ? http::status::bad_request : http::status::upgrade_required,
          error_body(missing ? "missing_websocket_version" : "unsupported_websocket_version"),
          version, false);
      response.set(http::field::sec_websocket_version, "13");
      return answer(std::move(response));
    }
  }
  beast::error_code ec;
  const auto peer = stream_.next_layer().socket().remote_endpoint(ec);
  if (ec) return close_socket();
  const std::string client_ip = state_->proxies.client_ip(peer.address(), forwarded_for(request));
  const bool peer_vouched = state_->proxies.vouches_for_identity(peer.address());
  // What the parser read past the request: the client's first frames, when it sent
  // them in the same write as the upgrade.
  std::string read_ahead(static_cast<const char*>(buffer_.data().data()), buffer_.size());
  buffer_.consume(buffer_.size());
  stream_.next_layer().expires_never();
  std::make_shared<websocket_session>(std::move(stream_), std::move(request), state_,
                                      std::move(pending_), accepted_at_, client_ip,
                                      std::move(read_ahead), peer_vouched)
      ->run();
}

void http_session::answer(http_response response) {
  // The connection keeps its place in max_pending_handshakes while it lives (an idle
  // keep-alive connection too): the budget bounds open HTTP connections, not requests.
  response_ = std::make_shared<http_response>(std::move(response));
  const bool close = response_->need_eof();
  http::async_write(stream_, *response_,
                    beast::bind_front_handler(&http_session::on_write, shared_from_this(), close));
}

void http_session::on_write(bool close, beast::error_code ec, std::size_t) {
  response_.reset();
  if (ec || close) return close_socket();
  // Keep-alive: the next request has handshake_timeout to arrive.
  stream_.next_layer().expires_after(state_->config.server.handshake_timeout);
  do_read();
}

void http_session::close_socket() {
  beast::error_code ignored;
  // A TLS connection ends without close_notify: its answer carried a length or ended
  // the HTTP exchange, and waiting for the peer's close_notify would hold the slot.
  stream_.next_layer().socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
  stream_.next_layer().close();
}

}  // namespace wsvisor
