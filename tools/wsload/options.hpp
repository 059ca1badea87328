// Command line of wsload: one options struct shared by every mode.
#pragma once

#include <boost/asio/ip/address.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace wsload {

struct Options {
  std::string mode;

  // Target (loopback only, see validate_loopback in options.cpp).
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::string path = "/ws";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string subprotocol;
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

  std::string host_header() const { return host + ":" + std::to_string(port); }
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
