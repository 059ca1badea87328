// The network side of wsvisor: the Beast listener(s), HTTP routing and WebSocket
// sessions, and the io scheduler that runs CAF's actors on the same io_context.
#pragma once

#include <caf/actor_system_config.hpp>

#include <boost/asio/io_context.hpp>

#include <functional>
#include <memory>
#include <string>

#include "wsvisor/config.hpp"
#include "wsvisor/metrics.hpp"
#include "wsvisor/service.hpp"

namespace wsvisor {

// server.scheduler = "io": makes `config` run CAF's scheduler on `io`.
void use_io_scheduler(caf::actor_system_config& config, boost::asio::io_context& io);

// "host:port", with an IPv6 host in brackets ("[::1]:8080").
std::string host_port(const std::string& host, unsigned port);

struct server_state;
class listener;

class server {
 public:
  server(boost::asio::io_context& io, const settings& config, service& service, metrics& stats);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // TLS (server.tls_cert_file and server.tls_key_file set): reads the certificate and
  // key. Returns the error (which key, which file, OpenSSL's reason) or "". Before
  // listen(); without TLS it does nothing.
  std::string load_tls();
  // SIGHUP: reads them again; new connections use the new ones, open ones keep theirs.
  // A failure keeps the current ones and is logged with its cause.
  void reload_tls();

  // Binds and starts accepting on server.host:server.port (and admin.listen when set).
  // Returns an error text naming the address and the cause, or "" on success.
  std::string listen();

  // The port actually bound (server.port may be 0 = any free port).
  unsigned short port() const;

  // What POST /admin/drain does: the same as SIGTERM. Set before listen().
  void on_drain_request(std::function<void()> begin_drain);

  // Stops accepting new TCP connections (the end of a drain).
  void stop_accepting();

 private:
  std::shared_ptr<server_state> state_;
  std::shared_ptr<listener> main_listener_;
  std::shared_ptr<listener> admin_listener_;  // only when admin.listen is set
  std::shared_ptr<listener> api_listener_;    // only when api.listen is set
};

}  // namespace wsvisor
