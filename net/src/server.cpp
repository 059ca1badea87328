#include "wsvisor/server.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/bind_handler.hpp>

#include <prometheus/counter.h>
#include <wsvisor/log.hpp>

#include <vector>

#include "http_session.hpp"
#include "server_state.hpp"
#include "wsvisor/http_router.hpp"

namespace wsvisor {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// Connections past a listener's max_pending_handshakes still get a short look, in a
// small lane of their own: a health probe (GET /health/...) sent at once is answered,
// anything else is closed and counted as handshake_limit. A liveness probe that fails
// under a slowloris flood would make the platform restart a healthy server.
constexpr uint64_t kHealthLaneSlots = 64;

bool out_of_descriptors(const beast::error_code& ec) {
  return ec == net::error::no_descriptors || ec == net::error::no_buffer_space ||
         ec == net::error::no_memory || ec.value() == ENFILE;
}

}  // namespace

// Accepts TCP connections on one address and starts an http_session for each.
class listener : public std::enable_shared_from_this<listener> {
 public:
  listener(std::shared_ptr<server_state> state, listener_role role)
      : state_(std::move(state)),
        acceptor_(net::make_strand(state_->io)),
        pause_(acceptor_.get_executor()),
        budget_(std::make_shared<handshake_budget>(state_->config.limits.max_pending_handshakes)),
        health_lane_(std::make_shared<handshake_budget>(kHealthLaneSlots)),
        role_(role) {}

  std::string open(const std::string& host, unsigned short port) {
    beast::error_code ec;
    const auto address = net::ip::make_address(host, ec);
    if (ec) return "invalid listen address '" + host + "': " + ec.message();
    const tcp::endpoint endpoint{address, port};
    const auto where = host_port(host, port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    // The kernel's backlog: a spike waits there, not in a refusal.
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) return "cannot listen on " + where + ": " + ec.message();
    return "";
  }

  unsigned short port() const {
    beast::error_code ec;
    return acceptor_.local_endpoint(ec).port();
  }

  void start() { do_accept(); }

  void stop() {
    net::post(acceptor_.get_executor(), [self = shared_from_this()] {
      beast::error_code ignored;
      self->pause_.cancel();
      self->acceptor_.close(ignored);
    });
  }

 private:
  void do_accept() {
    acceptor_.async_accept(state_->connection_executor(),
                           beast::bind_front_handler(&listener::on_accept, shared_from_this()));
  }

  void on_accept(beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      if (out_of_descriptors(ec)) {
        // Out of file descriptors: pause briefly and retry; never spin, never exit.
        if (!paused_logged_)
          log_event(spdlog::level::warn, "accept_paused",
                    "accept paused: the process is at its open-file limit (raise `ulimit -n` "
                    "or lower limits.max_connections); retrying every 50 ms",
                    {{"error", ec.message()}});
        paused_logged_ = true;
        pause_.expires_after(std::chrono::milliseconds(50));
        pause_.async_wait([self = shared_from_this()](beast::error_code wait_ec) {
          if (!wait_ec) self->do_accept();
        });
        return;
      }
      log_event(spdlog::level::debug, "accept_failed", "accept failed", {{"error", ec.message()}});
      return do_accept();
    }
    paused_logged_ = false;
    if (budget_->try_take()) {
      std::make_shared<http_session>(std::move(socket), state_, role_, pending_handshake(budget_),
                                     http_lane::full)
          ->run();
    } else if (health_lane_->try_take()) {
      std::make_shared<http_session>(std::move(socket), state_, role_,
                                     pending_handshake(health_lane_), http_lane::health_only)
          ->run();
    } else {
      refuse_handshake_limit(*state_, budget_->limit());
      beast::error_code ignored;
      socket.close(ignored);
    }
    do_accept();
  }

  std::shared_ptr<server_state> state_;
  tcp::acceptor acceptor_;
  net::steady_timer pause_;
  std::shared_ptr<handshake_budget> budget_;
  std::shared_ptr<handshake_budget> health_lane_;
  listener_role role_;
  bool paused_logged_ = false;
};

std::string host_port(const std::string& host, unsigned port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

server::server(net::io_context& io, const settings& config, service& tree, metrics& stats)
    : state_(std::make_shared<server_state>(io, config, tree, stats)) {}

server::~server() {
  stop_accepting();
}

std::string server::load_tls() {
  if (!state_->tls.enabled()) return "";
  return state_->tls.reload();
}

void server::reload_tls() {
  if (!state_->tls.enabled()) {
    log_event(spdlog::level::info, "tls_reload",
              "SIGHUP: nothing to reload (server.tls_cert_file is not set)");
    return;
  }
  if (auto error = state_->tls.reload(); !error.empty()) {
    log_event(spdlog::level::err, "tls_reload_failed",
              "SIGHUP: the certificate and key were not reloaded; connections keep using the "
              "ones loaded before: " +
                  error,
              {{"cert_file", state_->tls.cert_file()}});
    return;
  }
  log_event(spdlog::level::info, "tls_reloaded",
            "SIGHUP: certificate and key reloaded; new connections use them",
            {{"cert_file", state_->tls.cert_file()}});
}

std::string server::listen() {
  const auto& config = state_->config;
  main_listener_ = std::make_shared<listener>(state_, listener_role::main);
  if (auto error = main_listener_->open(config.server.host, config.server.port); !error.empty())
    return error + " (server.host / server.port)";
  if (!config.admin.listen.empty()) {
    const auto endpoint = *admin_listen_endpoint(config);  // validated by the loader
    admin_listener_ = std::make_shared<listener>(state_, listener_role::admin);
    if (auto error = admin_listener_->open(endpoint.address, endpoint.port); !error.empty())
      return error + " (admin.listen)";
  }
  if (!config.api.listen.empty()) {
    const auto endpoint = *api_listen_endpoint(config);  // validated by the loader
    api_listener_ = std::make_shared<listener>(state_, listener_role::api);
    if (auto error = api_listener_->open(endpoint.address, endpoint.port); !error.empty())
      return error + " (api.listen)";
  }
  main_listener_->start();
  if (admin_listener_) admin_listener_->start();
  if (api_listener_) api_listener_->start();
  if (config.auth.mode == "header")
    log_event(spdlog::level::info, "auth_rule",
              "auth.mode = \"header\": the user header is believed " +
                  state_->proxies.identity_rule() + "; from any other peer: 401 unauthorized",
              {{"user_header", config.auth.user_header}});
  return "";
}

void server::on_drain_request(std::function<void()> begin_drain) {
  state_->request_drain = std::move(begin_drain);
}

unsigned short server::port() const {
  return main_listener_ ? main_listener_->port() : 0;
}

void server::stop_accepting() {
  if (main_listener_) main_listener_->stop();
  if (admin_listener_) admin_listener_->stop();
  if (api_listener_) api_listener_->stop();
}

}  // namespace wsvisor
