// Command line of wsload: one options struct shared by every mode.
#pragma once

#include <boost/asio/ip/address.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace wsload {

struct Scenario;  // scenario.hpp

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Options {
  std::string mode;

  // Target (loopback only, see validate_loopback in options.cpp).
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::string path = "/ws";
  Headers headers;
  std::string subprotocol;
  bool tls = false;  // wss: TLS before the upgrade (the certificate is not verified)
  std::vector<boost::asio::ip::address> source_addrs;

  // Time bounds: the soft stop ends the load, the hard deadline ends the process' I/O.
  double duration_s = 5.0;
  double grace_s = 5.0;
  double warmup_s = 0.0;  // echo: between the ramp and the measuring window
  int threads = 1;

  // Load shape.
  int connections = 10;
  int in_flight = 1;
  std::size_t size = 64;
  bool binary = false;
  // echo: permessage-deflate offered (client_no_context_takeover) and every message sent
  // compressed; replies inflated by Beast.
  bool compression = false;
  bool json_payload = false;  // echo: JSON-like text (compressible) instead of random letters
  std::uint64_t count = 0;
  std::uint64_t cycles = 1000;
  int concurrency = 50;
  double abort_fraction = 0.0;
  double reset_fraction = 0.0;
  double rate = 0.0;          // new connection attempts per second over all workers, 0 = unpaced
  double message_rate = 0.0;  // slow: messages per second per connection, 0 = as fast as possible
  double byte_interval_ms = 100.0;
  double handshake_timeout_s = 10.0;
  double probe_interval_ms = 250.0;
  bool quiet = false;

  // subscribe, publish: Centrifugo's client protocol and server API (wsvisor's hub mode),
  // or "uws": the uWebSockets pub/sub peer of bench/servers/uws_pubsub.js.
  std::string protocol = "centrifugo";
  std::string channel = "bench";
  int channels = 1;  // subscribe: 1 = the channel itself, K > 1 = channel0..channel<K-1>
  std::string token;
  std::string api_key;  // publish: X-API-Key, else $WSVISOR_API_KEY
  std::string api_path = "/api/publish";

  // reconnect: a population of well-behaved clients that reconnect with jittered
  // exponential backoff, and (--scenario) the faults it plays on the server's admin API.
  int users = 0;  // K > 0: client i sends X-User-Id: u<i % K>
  double backoff_base_ms = 100;
  double backoff_max_ms = 5000;
  double message_interval_ms = 1000;
  double lost_after_ms = 5000;
  double silence_timeout_ms = 10000;  // 0 = off
  std::string scenario_path;
  std::shared_ptr<const Scenario> scenario;  // loaded by parse_options from scenario_path
  std::string admin_token;                   // else $WSVISOR_ADMIN_TOKEN
  std::uint16_t admin_port = 0;              // 0 = --port

  std::string host_header() const { return host + ":" + std::to_string(port); }
  std::uint16_t admin_target_port() const { return admin_port != 0 ? admin_port : port; }
};

enum class ParseOutcome { run, help, error };

struct ParseResult {
  ParseOutcome outcome = ParseOutcome::error;
  Options options;
  std::string error;
};

ParseResult parse_options(int argc, char** argv);
std::string usage_text();

}  // namespace wsload
