// The effective configuration of wsvisor (CONTRACT section 2) and the loader that
// builds it from defaults, the TOML file, PORT, WSVISOR_* variables and --set.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace wsvisor {

using duration = std::chrono::milliseconds;

struct server_settings {
  std::string host = "0.0.0.0";
  uint16_t port = 8080;
  std::string ws_path = "/ws";
  unsigned io_threads = 0;       // 0 = cores
  unsigned actor_threads = 0;    // 0 = cores
  std::string scheduler = "io";  // "io" | "pool"
  duration handshake_timeout = std::chrono::seconds(10);
  uint64_t max_message_bytes = 65536;
  std::vector<std::string> allowed_origins;  // empty = any
  std::vector<std::string> trusted_proxies;  // CIDRs
  // TLS on the main port (CONTRACT 16): PEM files, both or neither ("" = plain).
  std::string tls_cert_file;
  std::string tls_key_file;
  // permessage-deflate (CONTRACT 16, RFC 7692): negotiated when a client offers it.
  bool compression = false;
  uint64_t compression_threshold = 256;   // smaller messages go uncompressed
  unsigned compression_window_bits = 15;  // 9..15: caps both directions' LZ77 window
  unsigned compression_mem_level = 8;     // 1..9: the deflater's hash memory
};

struct auth_settings {
  std::string mode = "none";  // "none" | "header" | "jwt"
  std::string user_header = "X-User-Id";
  std::string jwt_secret;  // secret: environment only, never printed
  // Accept a jwt_secret shorter than shortest_jwt_secret (for tests; refused by default).
  bool allow_weak_secret = false;
};

// RFC 7518 section 3.2: an HS256 key must be at least as long as the hash, 32 bytes; a
// shorter one can be found offline from a single signed token.
inline constexpr size_t shortest_jwt_secret = 32;

struct limits_settings {
  uint64_t max_connections = 10000;
  uint64_t soft_connections = 0;  // 0 = 90 % of max_connections (resolved by the loader)
  uint64_t max_per_user = 20;
  uint64_t max_per_ip = 1000;  // 0 = off
  double accept_rate = 2000;   // tokens per second
  uint64_t accept_burst = 4000;
  uint64_t max_pending_handshakes = 1024;
  double messages_per_second = 0;  // 0 = off
  uint64_t messages_burst = 100;
  uint64_t send_queue_bytes = 1048576;
  duration admission_timeout = std::chrono::seconds(1);
  duration retry_after = std::chrono::seconds(5);
  std::string user_overflow = "reject";  // "reject" | "evict_idle"
};

struct janitor_settings {
  duration sweep_interval = std::chrono::seconds(1);
  duration ping_interval = std::chrono::seconds(25);
  duration pong_timeout = std::chrono::seconds(10);
  duration probe_timeout = std::chrono::milliseconds(500);
  duration idle_timeout = duration::zero();  // 0 = off
  duration max_lifetime = duration::zero();  // 0 = off
  duration close_timeout = std::chrono::seconds(5);
};

struct supervision_settings {
  uint64_t connection_restarts = 3;
  duration connection_restart_period = std::chrono::seconds(60);
  uint64_t service_restarts = 5;
  duration service_restart_period = std::chrono::seconds(10);
  duration backoff_min = std::chrono::milliseconds(10);
  duration backoff_max = std::chrono::seconds(1);
};

struct shutdown_settings {
  duration drain_timeout = std::chrono::seconds(8);
  duration drain_spread = std::chrono::seconds(2);
};

struct log_settings {
  std::string level = "info";   // trace debug info warn error critical off
  std::string format = "text";  // "text" | "json"
};

struct admin_settings {
  std::string listen;  // "" = the main listener; else "host:port"
  std::string token;   // secret: environment only, never printed
  bool tls = false;    // admin.listen speaks TLS with the main port's certificate
};

struct faults_settings {
  bool enabled = false;
};

struct app_settings {
  std::string mode = "echo";
};

// The HTTP client to the backend (CONTRACT section 11.1), used by the gateway and hub modes.
struct upstream_settings {
  std::string url;  // "" = none; else http(s)://host[:port][/path], no trailing "/"
  duration timeout = std::chrono::seconds(5);  // per attempt
  uint64_t max_inflight = 256;                 // requests at once, whole process
  uint64_t per_connection_inflight = 1;        // 1 = replies in order
  uint64_t queue = 64;                         // waiting requests per connection
  unsigned retries = 2;                        // 0..10, after the first attempt
  duration backoff_min = std::chrono::milliseconds(100);
  duration backoff_max = std::chrono::seconds(2);
  uint64_t breaker_failures = 20;  // failed attempts within breaker_window open it
  duration breaker_window = std::chrono::seconds(10);
  duration breaker_open = std::chrono::seconds(5);
  std::vector<std::string> forward_headers = {"Cookie", "Authorization", "User-Agent", "Origin"};
  uint64_t max_response_bytes = 1048576;
  std::string token;  // secret: environment only, never printed; "Authorization: Bearer"
};

// The HTTP API for the backend (CONTRACT section 11.2).
struct api_settings {
  std::string key;     // secret: environment only, never printed; "" = every /api/* is 404
  std::string listen;  // "" = the main listener; else "host:port"
  uint64_t max_body_bytes = 1048576;  // larger request bodies get 413
  bool tls = false;                   // api.listen speaks TLS with the main port's certificate
};

// Lifecycle events POSTed to the backend (CONTRACT section 11.3).
struct events_settings {
  std::string url;  // "" = off; else a full http(s) URL (a query is kept)
  duration timeout = std::chrono::seconds(2);  // per attempt
  unsigned retries = 5;                        // 0..100, after the first attempt
  uint64_t queue = 10000;                      // events waiting; full: the oldest is dropped
};

// Gateway mode: plain WebSocket clients, the backend answers over HTTP (CONTRACT 12).
struct gateway_settings {
  std::string connect_path;                  // "" = no connect hook; appended to upstream.url
  std::string message_path = "/ws/message";  // appended to upstream.url
  uint64_t connect_concurrency = 64;         // connect hook calls at once
  bool error_frames = true;                  // a failed message gets a {"error":...} text frame
};

// One namespace of hub mode (CONTRACT 13.2), with Centrifugo's option names. The keys
// directly under [hub] are the default namespace's (name ""); [[hub.namespaces]] adds
// the others, for channels named "<name>:...".
struct hub_namespace {
  std::string name;  // [A-Za-z0-9_-]+, unique; "" = the default namespace
  bool presence = false;
  bool join_leave = false;
  uint64_t history_size = 0;  // publications kept per channel (0 = no history)
  duration history_ttl = std::chrono::milliseconds(0);  // how long each is kept (0 = none)
  bool force_recovery = false;  // every subscription is recoverable (needs history)
  bool allow_subscribe_for_client = false;
  bool allow_subscribe_for_anonymous = false;
  bool allow_publish_for_subscriber = false;
  bool allow_publish_for_client = false;
  bool allow_presence_for_subscriber = false;
  bool allow_history_for_subscriber = false;
  bool subscribe_proxy_enabled = false;  // needs hub.subscribe_proxy_path
  bool publish_proxy_enabled = false;    // needs hub.publish_proxy_path
};

// Hub mode: channels in Centrifugo's client protocol (CONTRACT 13). The loader checks the
// rules across keys: a history needs both history_size and history_ttl, force_recovery a
// history, a *_proxy_enabled namespace its hub.*_proxy_path, every proxy path upstream.url,
// and app.mode = "hub" some identity (auth.mode header/jwt, auth.jwt_secret,
// connect_proxy_path or allow_anonymous). `namespaces` comes from the file only.
struct hub_settings {
  bool allow_anonymous = false;  // a connect without any identity is let in (user "")
  duration connect_timeout = std::chrono::seconds(10);  // no connect command by then: 3502
  uint64_t channel_max_length = 255;                    // bytes
  bool user_personal_channel = false;  // every connection with a user is in "#<user>"
  uint64_t max_channels_per_connection = 128;
  uint64_t recovery_max_publications = 300;
  // The proxies (CONTRACT 13.4), each appended to upstream.url; "" = off.
  std::string connect_proxy_path;
  std::string refresh_proxy_path;
  std::string rpc_proxy_path;
  std::string send_proxy_path;
  std::string publish_proxy_path;
  std::string subscribe_proxy_path;
  hub_namespace defaults;                 // the keys directly under [hub]
  std::vector<hub_namespace> namespaces;  // [[hub.namespaces]]
};

// Cluster mode (CONTRACT 14): several nodes over one Redis.
struct cluster_settings {
  std::string mode = "off";  // "off" | "redis"
  // cluster.redis_url, parsed: redis://host[:port][/db]. The password is a secret of its
  // own (WSVISOR_CLUSTER_REDIS_PASSWORD), never part of the URL.
  std::string redis_url = "redis://127.0.0.1:6379/0";
  std::string redis_host = "127.0.0.1";
  uint16_t redis_port = 6379;
  unsigned redis_database = 0;
  std::string redis_password;
  std::string prefix = "wsvisor";  // every Redis key and channel starts with "<prefix>:"
  // "" = the server chooses one at start: the host name (lower case, [a-z0-9-]) plus "-" and
  // 6 random hex digits, checked with is_valid_node_id. The loader does no I/O.
  std::string node_id;
  std::chrono::milliseconds lease_ttl{10000};
  std::chrono::milliseconds lease_refresh{3000};
  std::chrono::milliseconds probe_interval{5000};
  std::string on_redis_down = "local";  // "local" | "reject"
  std::chrono::milliseconds api_timeout{1000};

  bool enabled() const { return mode == "redis"; }
};

struct settings {
  server_settings server;
  auth_settings auth;
  limits_settings limits;
  janitor_settings janitor;
  supervision_settings supervision;
  shutdown_settings shutdown;
  log_settings log;
  admin_settings admin;
  faults_settings faults;
  app_settings app;
  upstream_settings upstream;
  api_settings api;
  events_settings events;
  gateway_settings gateway;
  hub_settings hub;
  cluster_settings cluster;
};

// What the command line asks for.
enum class cli_action { run, help, version, check_config, health };

struct cli_result {
  cli_action action = cli_action::run;
  settings config;
  std::string config_path;  // the file that was read ("" = none)
  std::string help_text;    // filled for cli_action::help (and "wsvisor <version>" for version)
};

// A configuration or command-line error; `what()` names the key (and file:line where
// there is one) and the fix. main() prints it and exits 2.
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Environment as name -> value, so tests can pass their own.
using environment = std::map<std::string, std::string>;
environment process_environment();

// Parses argv (--help, --version, --config FILE, --set k=v..., --check-config),
// then builds the settings: defaults < file < PORT < WSVISOR_<SECTION>_<KEY> < --set.
// `default_config_path` is read when --config is not given and the file exists.
// Throws config_error.
cli_result parse_command_line(int argc, const char* const* argv, const environment& env,
                              const std::string& default_config_path = "config/wsvisor.toml");

// Builds settings from a TOML text (file name for messages), the environment and
// --set assignments ("section.key=value"). Throws config_error.
settings load_settings(const std::optional<std::string>& toml_text, const std::string& file_name,
                       const environment& env, const std::vector<std::string>& assignments);

// The effective configuration as TOML, secrets redacted ("<redacted>" when set).
std::string render_effective(const settings& s);

// The same, opening with a comment that names the file read (`config_path`, as in
// cli_result) or "built-in defaults" when it is "", so that --check-config says which file
// it validated. Still valid TOML whatever the path holds.
std::string render_effective(const settings& s, const std::string& config_path);

// Parses "250ms", "10s", "5m", "1h" (also "0s"). Throws config_error naming `key`.
duration parse_duration(const std::string& text, const std::string& key);

// Formats a duration the shortest exact way ("250ms", "10s", "5m").
std::string format_duration(duration d);

// Where a listener binds: an IP address (IPv6 without brackets) and a port (0 = any free one).
struct listen_endpoint {
  std::string address;
  uint16_t port = 0;
};

// admin.listen as the endpoint to bind ("[::1]:9090" gives "::1" and 9090); nullopt when it
// is "" (then the main listener serves /metrics and /admin/* too). The loader has checked
// the text, so any other value splits.
std::optional<listen_endpoint> admin_listen_endpoint(const settings& s);

// api.listen the same way; nullopt when it is "" (then the main listener serves /api/*).
std::optional<listen_endpoint> api_listen_endpoint(const settings& s);

// The longest cluster.node_id.
inline constexpr size_t longest_node_id = 64;

// A node id as cluster.node_id takes it: 1 to 64 characters of [a-z0-9-], not starting or
// ending with "-". For the server to check the one it makes from the host name (a long host
// name must be cut to leave room for "-" and the 6 hex digits).
bool is_valid_node_id(std::string_view id);

// An http:// or https:// URL of the configuration (upstream.url, events.url) split for the
// client that connects to it.
struct http_url {
  std::string scheme;  // "http" | "https"
  std::string host;    // a name or an IP address; IPv6 without brackets
  uint16_t port = 0;   // as written, else 80 for http and 443 for https
  std::string path;    // "" or beginning with "/", as written (percent-encoding kept)
  std::string query;   // after "?", "" when none; always "" for upstream.url
};

// Splits a URL the loader accepted (so upstream.url and events.url always split); nullopt
// for "" and for any text the loader would refuse.
std::optional<http_url> split_http_url(const std::string& url);

// Threads that run actors: server.io_threads in "io" mode, server.actor_threads in
// "pool" mode, with 0 resolved to the number of cores.
unsigned actor_thread_count(const settings& s);
unsigned io_thread_count(const settings& s);

}  // namespace wsvisor
