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

const char* readiness_status(const service& tree) {
  if (tree.draining()) return "draining";
  return tree.ready() ? "ready" : "starting";
}

}  // namespace

http_session::http_session(net::ip::tcp::socket&& socket, std::shared_ptr<server_state> state,
                           bool admin_listener)
    : stream_(std::move(socket)),
      state_(state),
      pending_(std::move(state)),
      accepted_at_(std::chrono::steady_clock::now()),
      admin_listener_(admin_listener) {}

void http_session::run() {
  // handshake_timeout runs from accept to the 101 or the HTTP answer.
  stream_.expires_after(state_->config.server.handshake_timeout);
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
  if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
      ec == net::error::operation_aborted || ec == net::error::connection_reset ||
      ec == net::error::eof) {
    return close_socket();
  }
  if (ec) {
    // Malformed: 400, then close (CONTRACT section 3).
    return answer(json_response(http::status::bad_request, error_body("bad_request"), 11, false));
  }
  auto request = parser_->release();
  const bool keep_alive = request.keep_alive();
  const unsigned version = request.version();
  routing_options options;
  options.ws_path = state_->config.server.ws_path;
  options.admin_elsewhere = !state_->config.admin.listen.empty();
  options.is_admin_listener = admin_listener_;
  const std::string_view method(request.method_string().data(), request.method_string().size());
  const std::string_view target(request.target().data(), request.target().size());

  switch (route_request(method, target, beast::websocket::is_upgrade(request), options)) {
    case route::websocket: {
      const auto peer = stream_.socket().remote_endpoint(ec);
      if (ec) return close_socket();
      const auto forwarded = request.find("X-Forwarded-For");
      const std::string client_ip = state_->proxies.client_ip(
          peer.address(), forwarded == request.end() ? std::string_view{}
                                                     : std::string_view(forwarded->value().data(),
                                                                        forwarded->value().size()));
      stream_.expires_never();
      std::make_shared<websocket_session>(std::move(stream_), std::move(request), state_,
                                          std::move(pending_), accepted_at_, client_ip)
          ->run();
      return;
    }
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
                       boost::json::serialize(body), version, keep_alive);
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

void http_session::answer(http_response response) {
  pending_.release();  // answered: no longer a pending handshake
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
