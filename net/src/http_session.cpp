#include "http_session.hpp"

#include <boost/asio/post.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <prometheus/counter.h>
#include <spdlog/spdlog.h>

#include "admin_api.hpp"
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

const char* readiness_status(const service& tree) {
  if (tree.draining()) return "draining";
  return tree.ready() ? "ready" : "starting";
}

bool is_health(route r) {
  return r == route::health_live || r == route::health_ready || r == route::health;
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
                           bool admin_listener, pending_handshake pending, http_lane lane)
    : stream_(std::move(socket)),
      state_(std::move(state)),
      pending_(std::move(pending)),
      accepted_at_(std::chrono::steady_clock::now()),
      admin_listener_(admin_listener),
      lane_(lane) {}

void http_session::run() {
  // handshake_timeout runs from accept to the 101 or the HTTP answer.
  const auto timeout = state_->config.server.handshake_timeout;
  stream_.expires_after(lane_ == http_lane::health_only
                            ? std::min<std::chrono::milliseconds>(kHealthLaneWait, timeout)
                            : timeout);
  do_read();
}

void http_session::do_read() {
  parser_.emplace();
  parser_->header_limit(kHeaderLimit);
  parser_->body_limit(kBodyLimit);
  http::async_read(stream_, buffer_, *parser_,
                   beast::bind_front_handler(&http_session::on_read, shared_from_this()));
}

void http_session::on_read(beast::error_code ec, std::size_t) {
  const bool health_lane = lane_ == http_lane::health_only;
  if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
      ec == net::error::operation_aborted || ec == net::error::connection_reset ||
      ec == net::error::eof) {
    if (health_lane) refuse_handshake_limit(*state_, state_->config.limits.max_pending_handshakes);
    return close_socket();
  }
  if (ec) {
    // Malformed: 400, then close (CONTRACT section 3).
    return answer(json_response(http::status::bad_request, error_body("bad_request"), 11, false));
  }
  auto request = parser_->release();
  const bool keep_alive = request.keep_alive() && !health_lane;
  const unsigned version = request.version();
  routing_options options;
  options.ws_path = state_->config.server.ws_path;
  options.admin_elsewhere = !state_->config.admin.listen.empty();
  options.is_admin_listener = admin_listener_;
  const std::string_view method(request.method_string().data(), request.method_string().size());
  const std::string_view target(request.target().data(), request.target().size());

  const route found = route_request(method, target, beast::websocket::is_upgrade(request), options);
  if (health_lane && !is_health(found)) {
    // Past max_pending_handshakes only health probes get an answer.
    refuse_handshake_limit(*state_, state_->config.limits.max_pending_handshakes);
    return close_socket();
  }
  switch (found) {
    case route::websocket:
      return upgrade(std::move(request));
    case route::health_live:
      return serve_health_live(version, keep_alive);
    case route::health_ready:
      return answer(health_ready(version, keep_alive));
    case route::health:
      return answer(health(version, keep_alive));
    case route::metrics:
      return answer(metrics_text(version, keep_alive));
    case route::admin:
      return handle_admin_request(request, state_, [self = shared_from_this()](http_response r) {
        net::post(self->stream_.get_executor(),
                  [self, r = std::move(r)]() mutable { self->answer(std::move(r)); });
      });
    case route::upgrade_required: {
      auto response = json_response(http::status::upgrade_required, error_body("upgrade_required"),
                                    version, keep_alive);
      response.set(http::field::upgrade, "websocket");
      response.set(http::field::connection, keep_alive ? "Upgrade, keep-alive" : "Upgrade, close");
      return answer(std::move(response));
    }
    case route::method_not_allowed: {
      auto response = json_response(http::status::method_not_allowed,
                                    error_body("method_not_allowed"), version, keep_alive);
      response.set(http::field::allow, "GET, HEAD");
      return answer(std::move(response));
    }
    case route::not_found:
      return answer(
          json_response(http::status::not_found, error_body("not_found"), version, keep_alive));
  }
}

void http_session::serve_health_live(unsigned version, bool keep_alive) {
  // Alive = this I/O thread answers (we are running) and a round trip through the root
  // supervisor comes back within 1 s.
  state_->tree.ping_root([self = shared_from_this(), version, keep_alive](bool answered) {
    net::post(self->stream_.get_executor(), [self, version, keep_alive, answered] {
      self->answer(
          json_response(answered ? http::status::ok : http::status::service_unavailable,
                        answered ? R"({"status":"alive"})" : R"({"status":"unresponsive"})",
                        version, keep_alive));
    });
  });
}

http_response http_session::health_ready(unsigned version, bool keep_alive) const {
  const bool ready = state_->tree.ready();
  return json_response(ready ? http::status::ok : http::status::service_unavailable,
                       std::string(R"({"status":")") + readiness_status(state_->tree) + "\"}",
                       version, keep_alive);
}

http_response http_session::health(unsigned version, bool keep_alive) const {
  const auto& limits = state_->config.limits;
  boost::json::object body;
  body["status"] = readiness_status(state_->tree);
  body["uptime_s"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - state_->started_at).count();
  body["connections"] = state_->tree.connections();
  body["limits"] = {{"max_connections", limits.max_connections},
                    {"soft_connections", limits.soft_connections},
                    {"max_per_user", limits.max_per_user},
                    {"max_per_ip", limits.max_per_ip}};
  boost::json::object restarts;
  for (int k = 0; k < static_cast<int>(actor_kind::count_); ++k) {
    const auto kind = static_cast<actor_kind>(k);
    restarts[to_string(kind)] = static_cast<uint64_t>(state_->stats.actor_restarts(kind).Value());
  }
  body["restarts"] = std::move(restarts);
  return json_response(state_->tree.ready() ? http::status::ok : http::status::service_unavailable,
                       json_text(body), version, keep_alive);
}

http_response http_session::metrics_text(unsigned version, bool keep_alive) const {
  http_response response{http::status::ok, version};
  response.set(http::field::server, "wsvisor");
  response.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  response.keep_alive(keep_alive);
  response.body() = state_->stats.render();
  response.prepare_payload();
  return response;
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
  const auto peer = stream_.socket().remote_endpoint(ec);
  if (ec) return close_socket();
  const std::string client_ip = state_->proxies.client_ip(peer.address(), forwarded_for(request));
  const bool peer_vouched = state_->proxies.vouches_for_identity(peer.address());
  // What the parser read past the request: the client's first frames, when it sent
  // them in the same write as the upgrade.
  std::string read_ahead(static_cast<const char*>(buffer_.data().data()), buffer_.size());
  buffer_.consume(buffer_.size());
  stream_.expires_never();
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
  stream_.expires_after(state_->config.server.handshake_timeout);
  do_read();
}

void http_session::close_socket() {
  beast::error_code ignored;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
  stream_.close();
}

}  // namespace wsvisor
