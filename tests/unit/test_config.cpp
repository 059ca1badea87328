// Tests of the configuration loader against CONTRACT sections 1 and 2.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "wsvisor/config.hpp"

using namespace wsvisor;
using namespace std::chrono_literals;

namespace {

const std::string test_file = "test.toml";

settings load(const std::optional<std::string>& toml, const environment& env = {},
              const std::vector<std::string>& assignments = {}) {
  return load_settings(toml, test_file, env, assignments);
}

// The message of the config_error that `action` throws ("" when it throws none, which
// fails the calling check).
std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const config_error& error) {
    return error.what();
  }
  return "";
}

std::string load_error(const std::optional<std::string>& toml, const environment& env = {},
                       const std::vector<std::string>& assignments = {}) {
  return error_of([&] { load(toml, env, assignments); });
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A scratch directory of this test process, removed at exit of each test that uses it.
struct scratch_directory {
  std::filesystem::path path = std::filesystem::temp_directory_path() /
                               ("wsvisor-test-config-" + std::to_string(::getpid()));
  scratch_directory() { std::filesystem::create_directories(path); }
  ~scratch_directory() { std::filesystem::remove_all(path); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return (path / name).string();
  }
};

cli_result run_cli(std::vector<std::string> arguments, const environment& env = {},
                   const std::string& default_config_path = "/nonexistent/wsvisor.toml") {
  arguments.insert(arguments.begin(), "wsvisor");
  std::vector<const char*> argv;
  for (const auto& argument : arguments) argv.push_back(argument.c_str());
  return parse_command_line(static_cast<int>(argv.size()), argv.data(), env, default_config_path);
}

std::string cli_error(const std::vector<std::string>& arguments, const environment& env = {}) {
  return error_of([&] { run_cli(arguments, env); });
}

// The switches of a namespace (or of [hub]'s default namespace): presence, join_leave,
// force_recovery and the six allow_* are `on`, the two *_proxy_enabled `proxies`.
void check_namespace_switches(const hub_namespace& n, bool on, bool proxies) {
  CHECK(n.presence == on);
  CHECK(n.join_leave == on);
  CHECK(n.force_recovery == on);
  CHECK(n.allow_subscribe_for_client == on);
  CHECK(n.allow_subscribe_for_anonymous == on);
  CHECK(n.allow_publish_for_subscriber == on);
  CHECK(n.allow_publish_for_client == on);
  CHECK(n.allow_presence_for_subscriber == on);
  CHECK(n.allow_history_for_subscriber == on);
  CHECK(n.subscribe_proxy_enabled == proxies);
  CHECK(n.publish_proxy_enabled == proxies);
}

std::string repository_root() {
  if (const char* root = std::getenv("WSVISOR_SOURCE_DIR")) return root;
  const std::string this_file = __FILE__;
  return this_file.substr(0, this_file.size() - std::string("tests/unit/test_config.cpp").size());
}

}  // namespace

TEST_CASE("without a file every key has its built-in default") {
  const settings s = load(std::nullopt);
  CHECK(s.server.host == "0.0.0.0");
  CHECK(s.server.port == 8080);
  CHECK(s.server.ws_path == "/ws");
  CHECK(s.server.io_threads == 0);
  CHECK(s.server.actor_threads == 0);
  CHECK(s.server.scheduler == "io");
  CHECK(s.server.handshake_timeout == 10s);
  CHECK(s.server.max_message_bytes == 65536);
  CHECK(s.server.allowed_origins.empty());
  CHECK(s.server.trusted_proxies.empty());
  CHECK(s.auth.mode == "none");
  CHECK(s.auth.user_header == "X-User-Id");
  CHECK(s.auth.jwt_secret.empty());
  CHECK_FALSE(s.auth.allow_weak_secret);
  CHECK(s.limits.max_connections == 10000);
  CHECK(s.limits.soft_connections == 9000);  // 0 resolves to 90 % of max_connections
  CHECK(s.limits.max_per_user == 20);
  CHECK(s.limits.max_per_ip == 1000);
  CHECK(s.limits.accept_rate == 2000);
  CHECK(s.limits.accept_burst == 4000);
  CHECK(s.limits.max_pending_handshakes == 1024);
  CHECK(s.limits.messages_per_second == 0);
  CHECK(s.limits.messages_burst == 100);
  CHECK(s.limits.send_queue_bytes == 1048576);
  CHECK(s.limits.admission_timeout == 1s);
  CHECK(s.limits.retry_after == 5s);
  CHECK(s.limits.user_overflow == "reject");
  CHECK(s.janitor.sweep_interval == 1s);
  CHECK(s.janitor.ping_interval == 25s);
  CHECK(s.janitor.pong_timeout == 10s);
  CHECK(s.janitor.probe_timeout == 500ms);
  CHECK(s.janitor.idle_timeout == 0s);
  CHECK(s.janitor.max_lifetime == 0s);
  CHECK(s.janitor.close_timeout == 5s);
  CHECK(s.supervision.connection_restarts == 3);
  CHECK(s.supervision.connection_restart_period == 60s);
  CHECK(s.supervision.service_restarts == 5);
  CHECK(s.supervision.service_restart_period == 10s);
  CHECK(s.supervision.backoff_min == 10ms);
  CHECK(s.supervision.backoff_max == 1s);
  CHECK(s.shutdown.drain_timeout == 8s);
  CHECK(s.shutdown.drain_spread == 2s);
  CHECK(s.log.level == "info");
  CHECK(s.log.format == "text");
  CHECK(s.admin.listen.empty());
  CHECK(s.admin.token.empty());
  CHECK_FALSE(s.faults.enabled);
  CHECK(s.app.mode == "echo");
  CHECK(s.upstream.url.empty());
  CHECK(s.upstream.timeout == 5s);
  CHECK(s.upstream.max_inflight == 256);
  CHECK(s.upstream.per_connection_inflight == 1);
  CHECK(s.upstream.queue == 64);
  CHECK(s.upstream.retries == 2);
  CHECK(s.upstream.backoff_min == 100ms);
  CHECK(s.upstream.backoff_max == 2s);
  CHECK(s.upstream.breaker_failures == 20);
  CHECK(s.upstream.breaker_window == 10s);
  CHECK(s.upstream.breaker_open == 5s);
  CHECK(s.upstream.forward_headers ==
        std::vector<std::string>{"Cookie", "Authorization", "User-Agent", "Origin"});
  CHECK(s.upstream.max_response_bytes == 1048576);
  CHECK(s.upstream.token.empty());
  CHECK(s.api.key.empty());
  CHECK(s.api.listen.empty());
  CHECK(s.api.max_body_bytes == 1048576);
  CHECK(s.events.url.empty());
  CHECK(s.events.timeout == 2s);
  CHECK(s.events.retries == 5);
  CHECK(s.events.queue == 10000);
  CHECK(s.gateway.connect_path.empty());
  CHECK(s.gateway.message_path == "/ws/message");
  CHECK(s.gateway.connect_concurrency == 64);
  CHECK(s.gateway.error_frames);
  CHECK_FALSE(s.hub.allow_anonymous);
  CHECK(s.hub.connect_timeout == 10s);
  CHECK(s.hub.channel_max_length == 255);
  CHECK_FALSE(s.hub.user_personal_channel);
  CHECK(s.hub.max_channels_per_connection == 128);
  CHECK(s.hub.recovery_max_publications == 300);
  CHECK(s.hub.connect_proxy_path.empty());
  CHECK(s.hub.refresh_proxy_path.empty());
  CHECK(s.hub.rpc_proxy_path.empty());
  CHECK(s.hub.send_proxy_path.empty());
  CHECK(s.hub.publish_proxy_path.empty());
  CHECK(s.hub.subscribe_proxy_path.empty());
  CHECK(s.hub.defaults.name.empty());
  CHECK(s.hub.defaults.history_size == 0);
  CHECK(s.hub.defaults.history_ttl == 0s);
  check_namespace_switches(s.hub.defaults, false, false);
  CHECK(s.hub.namespaces.empty());
  CHECK(s.cluster.node_id.empty());  // the server chooses one at start
}

TEST_CASE("a file sets keys of every type") {
  const settings s = load(R"(
[server]
host = "127.0.0.1"
port = 9001
ws_path = "/socket"
io_threads = 2
actor_threads = 3
scheduler = "pool"
handshake_timeout = "2500ms"
max_message_bytes = 1024
allowed_origins = ["https://a.example", "http://localhost:3000", "http://[::1]:8080"]
trusted_proxies = ["10.0.0.0/8", "192.168.1.7", "fd00::/8", "::1"]

[auth]
mode = "header"
user_header = "X-Forwarded-User"
allow_weak_secret = true

[limits]
max_connections = 500
soft_connections = 400
max_per_user = 0
max_per_ip = 0
accept_rate = 12.5
accept_burst = 10
max_pending_handshakes = 8
messages_per_second = 100
messages_burst = 5
send_queue_bytes = 4096
admission_timeout = "2s"
retry_after = "1m"
user_overflow = "evict_idle"

[janitor]
sweep_interval = "200ms"
ping_interval = "5s"
pong_timeout = "3s"
probe_timeout = "1s"
idle_timeout = "30m"
max_lifetime = "1h"
close_timeout = "1.5s"

[supervision]
connection_restarts = 0
connection_restart_period = "5s"
service_restarts = 1
service_restart_period = "1m"
backoff_min = "0s"
backoff_max = "0s"

[shutdown]
drain_timeout = "30s"
drain_spread = "30s"

[log]
level = "debug"
format = "json"

[admin]
listen = "127.0.0.1:9090"

[faults]
enabled = true

[app]
mode = "echo"

[upstream]
url = "https://backend.internal:8443/hooks"
timeout = "750ms"
max_inflight = 1
per_connection_inflight = 4
queue = 1
retries = 0
backoff_min = "0s"
backoff_max = "0s"
breaker_failures = 1
breaker_window = "1m"
breaker_open = "30s"
forward_headers = ["X-Request-Id"]
max_response_bytes = 1

[api]
listen = "127.0.0.1:9091"
max_body_bytes = 1

[events]
url = "http://events.internal/wsvisor?source=eu-1"
timeout = "1ms"
retries = 100
queue = 1

[gateway]
connect_path = "/hooks/connect"
message_path = "/"
connect_concurrency = 1
error_frames = false

[hub]
allow_anonymous = true
connect_timeout = "1500ms"
channel_max_length = 65535
user_personal_channel = true
max_channels_per_connection = 100000
recovery_max_publications = 1
connect_proxy_path = "/centrifugo/connect"
refresh_proxy_path = "/centrifugo/refresh"
rpc_proxy_path = "/centrifugo/rpc"
send_proxy_path = "/centrifugo/send"
publish_proxy_path = "/centrifugo/publish"
subscribe_proxy_path = "/centrifugo/subscribe"
presence = true
join_leave = true
history_size = 1000000
history_ttl = "5m"
force_recovery = true
allow_subscribe_for_client = true
allow_subscribe_for_anonymous = true
allow_publish_for_subscriber = true
allow_publish_for_client = true
allow_presence_for_subscriber = true
allow_history_for_subscriber = true
subscribe_proxy_enabled = true
publish_proxy_enabled = true

[[hub.namespaces]]
name = "chat"
presence = true
history_size = 10
history_ttl = "30s"

[cluster]
node_id = "ws-eu-1"
)");
  CHECK(s.server.host == "127.0.0.1");
  CHECK(s.server.port == 9001);
  CHECK(s.server.ws_path == "/socket");
  CHECK(s.server.io_threads == 2);
  CHECK(s.server.actor_threads == 3);
  CHECK(s.server.scheduler == "pool");
  CHECK(s.server.handshake_timeout == 2500ms);
  CHECK(s.server.max_message_bytes == 1024);
  CHECK(s.server.allowed_origins == std::vector<std::string>{"https://a.example",
                                                             "http://localhost:3000",
                                                             "http://[::1]:8080"});
  // A bare address is a network of one.
  CHECK(s.server.trusted_proxies ==
        std::vector<std::string>{"10.0.0.0/8", "192.168.1.7/32", "fd00::/8", "::1/128"});
  CHECK(s.auth.mode == "header");
  CHECK(s.auth.user_header == "X-Forwarded-User");
  CHECK(s.auth.allow_weak_secret);
  CHECK(s.limits.max_connections == 500);
  CHECK(s.limits.soft_connections == 400);
  CHECK(s.limits.max_per_user == 0);
  CHECK(s.limits.max_per_ip == 0);
  CHECK(s.limits.accept_rate == 12.5);
  CHECK(s.limits.accept_burst == 10);
  CHECK(s.limits.max_pending_handshakes == 8);
  CHECK(s.limits.messages_per_second == 100);
  CHECK(s.limits.messages_burst == 5);
  CHECK(s.limits.send_queue_bytes == 4096);
  CHECK(s.limits.admission_timeout == 2s);
  CHECK(s.limits.retry_after == 60s);
  CHECK(s.limits.user_overflow == "evict_idle");
  CHECK(s.janitor.sweep_interval == 200ms);
  CHECK(s.janitor.ping_interval == 5s);
  CHECK(s.janitor.pong_timeout == 3s);
  CHECK(s.janitor.probe_timeout == 1s);
  CHECK(s.janitor.idle_timeout == 30min);
  CHECK(s.janitor.max_lifetime == 1h);
  CHECK(s.janitor.close_timeout == 1500ms);
  CHECK(s.supervision.connection_restarts == 0);
  CHECK(s.supervision.connection_restart_period == 5s);
  CHECK(s.supervision.service_restarts == 1);
  CHECK(s.supervision.service_restart_period == 60s);
  CHECK(s.supervision.backoff_min == 0s);
  CHECK(s.supervision.backoff_max == 0s);
  CHECK(s.shutdown.drain_timeout == 30s);
  CHECK(s.shutdown.drain_spread == 30s);
  CHECK(s.log.level == "debug");
  CHECK(s.log.format == "json");
  CHECK(s.admin.listen == "127.0.0.1:9090");
  CHECK(s.faults.enabled);
  CHECK(s.app.mode == "echo");
  CHECK(s.upstream.url == "https://backend.internal:8443/hooks");
  CHECK(s.upstream.timeout == 750ms);
  CHECK(s.upstream.max_inflight == 1);
  CHECK(s.upstream.per_connection_inflight == 4);
  CHECK(s.upstream.queue == 1);
  CHECK(s.upstream.retries == 0);
  CHECK(s.upstream.backoff_min == 0s);
  CHECK(s.upstream.backoff_max == 0s);
  CHECK(s.upstream.breaker_failures == 1);
  CHECK(s.upstream.breaker_window == 60s);
  CHECK(s.upstream.breaker_open == 30s);
  CHECK(s.upstream.forward_headers == std::vector<std::string>{"X-Request-Id"});
  CHECK(s.upstream.max_response_bytes == 1);
  CHECK(s.api.listen == "127.0.0.1:9091");
  CHECK(s.api.max_body_bytes == 1);
  CHECK(s.events.url == "http://events.internal/wsvisor?source=eu-1");
  CHECK(s.events.timeout == 1ms);
  CHECK(s.events.retries == 100);
  CHECK(s.events.queue == 1);
  CHECK(s.gateway.connect_path == "/hooks/connect");
  CHECK(s.gateway.message_path == "/");
  CHECK(s.gateway.connect_concurrency == 1);
  CHECK_FALSE(s.gateway.error_frames);
  CHECK(s.hub.allow_anonymous);
  CHECK(s.hub.connect_timeout == 1500ms);
  CHECK(s.hub.channel_max_length == 65535);
  CHECK(s.hub.user_personal_channel);
  CHECK(s.hub.max_channels_per_connection == 100000);
  CHECK(s.hub.recovery_max_publications == 1);
  CHECK(s.hub.connect_proxy_path == "/centrifugo/connect");
  CHECK(s.hub.refresh_proxy_path == "/centrifugo/refresh");
  CHECK(s.hub.rpc_proxy_path == "/centrifugo/rpc");
  CHECK(s.hub.send_proxy_path == "/centrifugo/send");
  CHECK(s.hub.publish_proxy_path == "/centrifugo/publish");
  CHECK(s.hub.subscribe_proxy_path == "/centrifugo/subscribe");
  CHECK(s.hub.defaults.history_size == 1000000);
  CHECK(s.hub.defaults.history_ttl == 5min);
  check_namespace_switches(s.hub.defaults, true, true);
  REQUIRE(s.hub.namespaces.size() == 1);
  CHECK(s.hub.namespaces[0].name == "chat");
  CHECK(s.hub.namespaces[0].presence);
  CHECK(s.hub.namespaces[0].history_size == 10);
  CHECK(s.hub.namespaces[0].history_ttl == 30s);
  CHECK_FALSE(s.hub.namespaces[0].join_leave);  // not the default namespace's: its own default
  CHECK(s.cluster.node_id == "ws-eu-1");
}

TEST_CASE("soft_connections: 0 is 90 % of max_connections, at least 1, up to max is kept") {
  CHECK(load("limits.max_connections = 5").limits.soft_connections == 4);
  CHECK(load("limits.max_connections = 1").limits.soft_connections == 1);
  CHECK(
      load("limits.max_connections = 100\nlimits.soft_connections = 100").limits.soft_connections ==
      100);
  // Resolved after every layer: a max from the environment moves the default watermark.
  CHECK(load(std::nullopt, {{"WSVISOR_LIMITS_MAX_CONNECTIONS", "50"}}).limits.soft_connections ==
        45);
}

TEST_CASE("precedence: defaults < file < PORT < WSVISOR_<SECTION>_<KEY> < --set") {
  const std::string file = "[server]\nport = 1001\n";
  CHECK(load(std::nullopt).server.port == 8080);
  CHECK(load(file).server.port == 1001);
  CHECK(load(file, {{"PORT", "1002"}}).server.port == 1002);
  CHECK(load(file, {{"PORT", "1002"}, {"WSVISOR_SERVER_PORT", "1003"}}).server.port == 1003);
  CHECK(load(file, {{"PORT", "1002"}, {"WSVISOR_SERVER_PORT", "1003"}}, {"server.port=1004"})
            .server.port == 1004);
  // Each layer only overrides the keys it names.
  const settings s =
      load("[log]\nlevel = \"debug\"\nformat = \"json\"\n", {{"WSVISOR_LOG_LEVEL", "warn"}});
  CHECK(s.log.level == "warn");
  CHECK(s.log.format == "json");
  // The last --set of a key wins.
  CHECK(load(std::nullopt, {}, {"log.level=error", "log.level=trace"}).log.level == "trace");
}

TEST_CASE("PORT sets server.port and its errors name PORT") {
  CHECK(load(std::nullopt, {{"PORT", "3000"}}).server.port == 3000);
  CHECK(load(std::nullopt, {{"PORT", "0"}}).server.port == 0);
  const std::string message = load_error(std::nullopt, {{"PORT", "http"}});
  CHECK(contains(message, "environment variable PORT"));
  CHECK(contains(message, "server.port"));
  CHECK(contains(load_error(std::nullopt, {{"PORT", "65536"}}), "0 to 65535"));
}

TEST_CASE("WSVISOR_<SECTION>_<KEY> variables map to keys and are read like --set values") {
  const settings s = load(std::nullopt, {{"WSVISOR_LIMITS_MAX_CONNECTIONS", "5000"},
                                         {"WSVISOR_JANITOR_PING_INTERVAL", "2s"},
                                         {"WSVISOR_SERVER_ALLOWED_ORIGINS", R"(["https://a.b"])"},
                                         {"WSVISOR_SERVER_TRUSTED_PROXIES", "10.1.0.0/16"},
                                         {"WSVISOR_SERVER_HOST", "127.0.0.1"},
                                         {"WSVISOR_AUTH_USER_HEADER", "\"X-Id\""},
                                         {"WSVISOR_FAULTS_ENABLED", "true"},
                                         {"WSVISOR_LIMITS_ACCEPT_RATE", "0.5"},
                                         {"WSVISOR_UPSTREAM_URL", "http://127.0.0.1:8000"},
                                         {"WSVISOR_UPSTREAM_FORWARD_HEADERS", "Cookie"},
                                         {"WSVISOR_UPSTREAM_RETRIES", "10"},
                                         {"WSVISOR_API_LISTEN", "[::1]:9091"},
                                         {"WSVISOR_EVENTS_URL", "https://e.example/in"},
                                         {"WSVISOR_EVENTS_RETRIES", "0"},
                                         {"WSVISOR_GATEWAY_CONNECT_CONCURRENCY", "8"},
                                         {"WSVISOR_GATEWAY_CONNECT_PATH", "/c"},
                                         {"WSVISOR_GATEWAY_ERROR_FRAMES", "false"},
                                         {"WSVISOR_CLUSTER_NODE_ID", "1234"},
                                         {"WSVISOR_HUB_ALLOW_ANONYMOUS", "true"},
                                         {"WSVISOR_HUB_CONNECT_TIMEOUT", "1s"},
                                         {"WSVISOR_HUB_HISTORY_SIZE", "50"},
                                         {"WSVISOR_HUB_HISTORY_TTL", "1m"},
                                         {"WSVISOR_HUB_RPC_PROXY_PATH", "/rpc"},
                                         {"HOME", "/root"},
                                         {"WSVISOR_BIN", "/build/wsvisor"},
                                         {"WSVISOR_SOURCE_DIR", "/src"}});
  CHECK(s.limits.max_connections == 5000);
  CHECK(s.janitor.ping_interval == 2s);
  CHECK(s.server.allowed_origins == std::vector<std::string>{"https://a.b"});
  CHECK(s.server.trusted_proxies == std::vector<std::string>{"10.1.0.0/16"});
  CHECK(s.server.host == "127.0.0.1");
  CHECK(s.auth.user_header == "X-Id");
  CHECK(s.faults.enabled);
  CHECK(s.limits.accept_rate == 0.5);
  CHECK(s.upstream.url == "http://127.0.0.1:8000");
  CHECK(s.upstream.forward_headers == std::vector<std::string>{"Cookie"});
  CHECK(s.upstream.retries == 10);
  CHECK(s.api.listen == "[::1]:9091");
  CHECK(s.events.url == "https://e.example/in");
  CHECK(s.events.retries == 0);
  CHECK(s.gateway.connect_concurrency == 8);
  CHECK(s.gateway.connect_path == "/c");
  CHECK_FALSE(s.gateway.error_frames);
  CHECK(s.cluster.node_id == "1234");  // a text key keeps digits as text
  CHECK(s.hub.allow_anonymous);
  CHECK(s.hub.connect_timeout == 1s);
  CHECK(s.hub.defaults.history_size == 50);
  CHECK(s.hub.defaults.history_ttl == 1min);
  CHECK(s.hub.rpc_proxy_path == "/rpc");
  // An empty value for a list key is the empty list.
  CHECK(load("server.allowed_origins = [\"https://x.y\"]", {{"WSVISOR_SERVER_ALLOWED_ORIGINS", ""}})
            .server.allowed_origins.empty());
}

TEST_CASE("a WSVISOR_ variable that names no key is an error naming the variable") {
  for (const std::string variable :
       {"WSVISOR_LIMITS_MAX_CONECTIONS", "WSVISOR_LIMIT_MAX_CONNECTIONS", "WSVISOR_PORT",
        "WSVISOR_limits_max_connections", "WSVISOR_"}) {
    CAPTURE(variable);
    const std::string message = load_error(std::nullopt, {{variable, "5"}});
    CHECK(contains(message, "config error: environment variable " + variable + ": "));
    CHECK(contains(message, "names no configuration key"));
  }
}

TEST_CASE("an environment value of the wrong type is an error naming the variable") {
  const std::string message = load_error(std::nullopt, {{"WSVISOR_LIMITS_MAX_CONNECTIONS", "abc"}});
  CHECK(message ==
        "config error: environment variable WSVISOR_LIMITS_MAX_CONNECTIONS: "
        "limits.max_connections: expected a positive integer, got \"abc\"");
}

TEST_CASE("secrets come from the environment only, verbatim, and are never shown") {
  const std::string token = "s3cr3t-token";
  const std::string jwt_secret = "[1, \"not toml to me\", \"and 32 bytes or more\"]";
  const environment env = {{"WSVISOR_ADMIN_TOKEN", token}, {"WSVISOR_AUTH_JWT_SECRET", jwt_secret}};
  const settings s = load("auth.mode = \"jwt\"", env);
  CHECK(s.admin.token == token);
  CHECK(s.auth.jwt_secret == jwt_secret);

  const std::string rendered = render_effective(s);
  CHECK_FALSE(contains(rendered, token));
  CHECK_FALSE(contains(rendered, "not toml to me"));
  CHECK(contains(rendered, "token = \"<redacted>\""));
  CHECK(contains(rendered, "jwt_secret = \"<redacted>\""));
  const std::string unset = render_effective(load(std::nullopt));
  CHECK(contains(unset, "token = \"\""));
  CHECK(contains(unset, "jwt_secret = \"\""));

  SUBCASE("in the file it is an error that points to the environment variable") {
    const std::string message = load_error("[admin]\ntoken = \"" + token + "\"\n");
    CHECK(contains(message, "test.toml:2: admin.token: "));
    CHECK(contains(message, "WSVISOR_ADMIN_TOKEN"));
    CHECK_FALSE(contains(message, token));
    const std::string jwt = load_error("[auth]\njwt_secret = 42\n");
    CHECK(contains(jwt, "test.toml:2: auth.jwt_secret: "));
    CHECK(contains(jwt, "WSVISOR_AUTH_JWT_SECRET"));
  }
  SUBCASE("on the command line it is an error that does not echo the value") {
    const std::string message = load_error(std::nullopt, {}, {"admin.token=" + token});
    CHECK(contains(message, "--set admin.token"));
    CHECK(contains(message, "WSVISOR_ADMIN_TOKEN"));
    CHECK_FALSE(contains(message, token));
    // A mistyped secret key is not echoed either.
    CHECK_FALSE(contains(load_error(std::nullopt, {}, {"admin.tokn=" + token}), token));
  }
  SUBCASE("the placeholders render_effective prints are accepted and keep the secret") {
    const settings fed_back = load("[admin]\ntoken = \"<redacted>\"\n[auth]\njwt_secret = \"\"\n",
                                   {{"WSVISOR_ADMIN_TOKEN", token}});
    CHECK(fed_back.admin.token == token);
    CHECK(fed_back.auth.jwt_secret.empty());
  }
  SUBCASE("an empty secret variable is no secret") {
    CHECK(load(std::nullopt, {{"WSVISOR_ADMIN_TOKEN", ""}}).admin.token.empty());
  }
}

TEST_CASE("upstream.token comes from WSVISOR_UPSTREAM_TOKEN only, as header-safe text") {
  const std::string token = "tok-3n.~+/=_";
  const settings s = load(std::nullopt, {{"WSVISOR_UPSTREAM_TOKEN", token}});
  CHECK(s.upstream.token == token);
  CHECK(contains(render_effective(s), "\n[upstream]\n"));
  CHECK(contains(render_effective(s), "\ntoken = \"<redacted>\"\n"));
  CHECK_FALSE(contains(render_effective(s), token));

  const std::string in_file = load_error("[upstream]\ntoken = \"" + token + "\"\n");
  CHECK(contains(in_file, "test.toml:2: upstream.token: "));
  CHECK(contains(in_file, "set the environment variable WSVISOR_UPSTREAM_TOKEN instead"));
  CHECK_FALSE(contains(in_file, token));
  const std::string on_set = load_error(std::nullopt, {}, {"upstream.token=" + token});
  CHECK(contains(on_set, "--set upstream.token: "));
  CHECK_FALSE(contains(on_set, token));

  // It goes in an Authorization header: "!" to "~" only, and never echoed when refused.
  CHECK(load(std::nullopt, {{"WSVISOR_UPSTREAM_TOKEN", "!~"}}).upstream.token == "!~");
  for (const std::string bad : {"has space", "line\r\n", "tab\t", "caf\xc3\xa9", "del\x7f"}) {
    CAPTURE(bad);
    const std::string message = load_error(std::nullopt, {{"WSVISOR_UPSTREAM_TOKEN", bad}});
    CHECK(message ==
          "config error: environment variable WSVISOR_UPSTREAM_TOKEN: upstream.token: holds a "
          "space, a control character or a non-ASCII byte, which cannot go in an HTTP header "
          "(the value is not shown): set WSVISOR_UPSTREAM_TOKEN to visible ASCII characters "
          "only, e.g. $(openssl rand -hex 32)");
  }
}

TEST_CASE("api.key comes from WSVISOR_API_KEY only, as header-safe text") {
  const std::string key = "k3y-for-the-backend";
  const settings s = load(std::nullopt, {{"WSVISOR_API_KEY", key}});
  CHECK(s.api.key == key);
  const std::string rendered = render_effective(s);
  CHECK(contains(rendered, "\n[api]\nkey = \"<redacted>\"\n"));
  CHECK_FALSE(contains(rendered, key));
  CHECK(contains(render_effective(load(std::nullopt)), "\n[api]\nkey = \"\"\n"));

  const std::string in_file = load_error("[api]\nkey = \"" + key + "\"\n");
  CHECK(contains(in_file, "test.toml:2: api.key: "));
  CHECK(contains(in_file, "set the environment variable WSVISOR_API_KEY instead"));
  CHECK_FALSE(contains(in_file, key));
  CHECK_FALSE(contains(load_error(std::nullopt, {}, {"api.key=" + key}), key));
  // A top-level `key` belongs to [api], and is not echoed either.
  const std::string top_level = load_error("key = \"" + key + "\"\n");
  CHECK(contains(top_level, "test.toml:1: api.key: "));
  CHECK_FALSE(contains(top_level, key));

  // A key with a space could never be sent in X-API-Key or Authorization.
  const std::string spaced = load_error(std::nullopt, {{"WSVISOR_API_KEY", "two words"}});
  CHECK(contains(spaced, "environment variable WSVISOR_API_KEY: api.key: holds a space"));
  CHECK(contains(spaced, "set WSVISOR_API_KEY to visible ASCII characters only"));
  CHECK_FALSE(contains(spaced, "two words"));
}

TEST_CASE("a JWT secret shorter than 32 bytes is refused unless auth.allow_weak_secret") {
  const std::string weak = "short-secret";
  const std::string message =
      load_error("auth.mode = \"jwt\"", {{"WSVISOR_AUTH_JWT_SECRET", weak}});
  CHECK(message ==
        "config error: environment variable WSVISOR_AUTH_JWT_SECRET: auth.jwt_secret: shorter "
        "than 32 bytes, the minimum for an HS256 key (RFC 7518 section 3.2: a shorter one can be "
        "found offline from one signed token): set WSVISOR_AUTH_JWT_SECRET to at least 32 random "
        "bytes, e.g. $(openssl rand -base64 32), or set auth.allow_weak_secret = true to accept "
        "it (for tests only)");
  CHECK_FALSE(contains(message, weak));
  // Whatever the mode: the secret is checked when it is given.
  CHECK(contains(load_error(std::nullopt, {{"WSVISOR_AUTH_JWT_SECRET", weak}}), "shorter than 32"));
  // 31 bytes are too few, 32 are enough; bytes, not characters ("é" is two).
  CHECK(contains(load_error(std::nullopt, {{"WSVISOR_AUTH_JWT_SECRET", std::string(31, 'x')}}),
                 "auth.jwt_secret: shorter than 32 bytes"));
  CHECK(load(std::nullopt, {{"WSVISOR_AUTH_JWT_SECRET", std::string(32, 'x')}}).auth.jwt_secret ==
        std::string(32, 'x'));
  std::string sixteen_accents;
  for (int i = 0; i < 16; ++i) sixteen_accents += "\xc3\xa9";
  CHECK(load(std::nullopt, {{"WSVISOR_AUTH_JWT_SECRET", sixteen_accents}}).auth.jwt_secret.size() ==
        32);

  // The escape hatch, from any layer.
  CHECK(
      load("auth.allow_weak_secret = true", {{"WSVISOR_AUTH_JWT_SECRET", weak}}).auth.jwt_secret ==
      weak);
  CHECK(load(std::nullopt,
             {{"WSVISOR_AUTH_JWT_SECRET", weak}, {"WSVISOR_AUTH_ALLOW_WEAK_SECRET", "true"}})
            .auth.allow_weak_secret);
  const settings allowed = load("auth.mode = \"jwt\"", {{"WSVISOR_AUTH_JWT_SECRET", weak}},
                                {"auth.allow_weak_secret=true"});
  CHECK(allowed.auth.jwt_secret == weak);
  CHECK(contains(render_effective(allowed), "\nallow_weak_secret = true\n"));
  CHECK_FALSE(contains(render_effective(allowed), weak));
}

TEST_CASE("--set reads TOML values and takes a bare word as a string") {
  const settings s = load(
      std::nullopt, {},
      {"janitor.ping_interval=2s", R"(server.allowed_origins=["https://a.b"])",
       "limits.max_connections=5000", "faults.enabled=true", "server.host=0.0.0.0",
       "log.level=\"warn\"", "admin.listen=", " limits.max_per_ip = 7 ", "server.ws_path=/a=b"});
  CHECK(s.janitor.ping_interval == 2s);
  CHECK(s.server.allowed_origins == std::vector<std::string>{"https://a.b"});
  CHECK(s.limits.max_connections == 5000);
  CHECK(s.faults.enabled);
  CHECK(s.server.host == "0.0.0.0");
  CHECK(s.log.level == "warn");
  CHECK(s.admin.listen.empty());
  CHECK(s.limits.max_per_ip == 7);
  CHECK(s.server.ws_path == "/a=b");  // only the first '=' separates key and value
}

TEST_CASE("a value that starts like TOML and does not parse is an error, not a string") {
  CHECK(load_error(std::nullopt, {}, {R"(server.allowed_origins=["https://a.b")"}) ==
        "config error: --set server.allowed_origins=[\"https://a.b\": server.allowed_origins: "
        "starts like a TOML array but is not valid TOML (the TOML parser says \"Error while "
        "parsing array: encountered end-of-file\"): write a complete array, e.g. [\"a\", \"b\"], "
        "and in a shell put the whole value in single quotes");
  // What a shell leaves of an unquoted --set 'server.trusted_proxies=["10.0.0.0/8"]'.
  CHECK(contains(load_error(std::nullopt, {}, {"server.trusted_proxies=[10.0.0.0/8]"}),
                 "server.trusted_proxies: starts like a TOML array but is not valid TOML"));
  CHECK(contains(load_error(std::nullopt, {}, {"faults.enabled={on"}),
                 "faults.enabled: starts like a TOML inline table but is not valid TOML"));
  const std::string quoted = load_error(std::nullopt, {}, {"log.level=\"warn"});
  CHECK(contains(quoted, "--set log.level=\"warn: log.level: starts like a quoted TOML string"));
  CHECK(contains(quoted, "close the quote, or leave the quotes out"));
  CHECK(contains(load_error(std::nullopt, {}, {"server.ws_path='/ws"}), "quoted TOML string"));

  // The environment shares the rule and names the variable.
  CHECK(contains(load_error(std::nullopt, {{"WSVISOR_SERVER_ALLOWED_ORIGINS", "[\"https://a.b\""}}),
                 "environment variable WSVISOR_SERVER_ALLOWED_ORIGINS: server.allowed_origins: "
                 "starts like a TOML array"));
  CHECK(contains(load_error(std::nullopt, {{"PORT", "[8080"}}),
                 "environment variable PORT: server.port: starts like a TOML array"));

  // Bare words stay strings: a text key never takes an array, so '[' begins a word there.
  const settings s =
      load(std::nullopt, {}, {"admin.listen=[::1]:9090", "server.ws_path=/x[y]", "log.level=warn"});
  CHECK(s.admin.listen == "[::1]:9090");
  CHECK(s.server.ws_path == "/x[y]");
  CHECK(s.log.level == "warn");
  CHECK(contains(load_error(std::nullopt, {}, {"limits.max_connections=lots"}),
                 "expected a positive integer, got \"lots\""));

  // Secrets are never parsed: taken verbatim from the environment, refused on --set for
  // being a secret, and never the subject of a parse error.
  const std::string jwt_secret = "\"an unterminated quote, and long enough";
  CHECK(load(std::nullopt, {{"WSVISOR_AUTH_JWT_SECRET", jwt_secret}}).auth.jwt_secret ==
        jwt_secret);
  const std::string on_set = load_error(std::nullopt, {}, {"admin.token=[oops"});
  CHECK(contains(on_set, "WSVISOR_ADMIN_TOKEN"));
  CHECK_FALSE(contains(on_set, "TOML parser"));
}

TEST_CASE("--set errors name the --set argument") {
  CHECK(load_error(std::nullopt, {}, {"limits.max_connections=abc"}) ==
        "config error: --set limits.max_connections=abc: limits.max_connections: expected a "
        "positive integer, got \"abc\"");
  CHECK(contains(load_error(std::nullopt, {}, {"limits.max_connections"}),
                 "--set limits.max_connections: expected section.key=value"));
  CHECK(contains(load_error(std::nullopt, {}, {"port=80"}), "expected section.key=value"));
  const std::string unknown = load_error(std::nullopt, {}, {"limits.max_conections=5"});
  CHECK(contains(unknown, "limits.max_conections: unknown key"));
  CHECK(contains(unknown, "max_connections"));  // lists what the section does have
  CHECK(contains(load_error(std::nullopt, {}, {"limitz.x=5"}), "unknown section \"limitz\""));
  CHECK(contains(load_error(std::nullopt, {}, {"server.port=80.5"}),
                 "--set server.port=80.5: server.port: expected an integer from 0 to 65535"));
}

TEST_CASE("the example message of the brief, exactly") {
  CHECK(load_error("# limits\n[limits]\nmax_connections = \"abc\"\n") ==
        "config error: test.toml:3: limits.max_connections: expected a positive integer, got "
        "\"abc\"");
}

// One bad value per rule: the message names the key, the file and line, and what is
// expected.
TEST_CASE("every per-key rule is enforced with the key and file:line in the message") {
  struct bad_value {
    std::string section;
    std::string line;  // "key = value"
    std::string key;   // what the message must name
    std::string expected;
  };
  const std::vector<bad_value> cases = {
      {"server", "host = \"\"", "server.host", "an IP address"},
      {"server", "host = \"a b\"", "server.host", "an IP address"},
      {"server", "host = 0", "server.host", "an IP address"},
      {"server", "port = 65536", "server.port", "0 to 65535"},
      {"server", "port = -1", "server.port", "0 to 65535"},
      {"server", "port = \"8080\"", "server.port", "0 to 65535"},
      {"server", "ws_path = \"ws\"", "server.ws_path", "beginning with \"/\""},
      {"server", "io_threads = 1025", "server.io_threads", "0 to 1024"},
      {"server", "actor_threads = -1", "server.actor_threads", "0 to 1024"},
      {"server", "scheduler = \"fast\"", "server.scheduler", "one of \"io\", \"pool\""},
      {"server", "handshake_timeout = \"0s\"", "server.handshake_timeout", "above zero"},
      {"server", "max_message_bytes = 0", "server.max_message_bytes", "positive integer"},
      {"server", "allowed_origins = [\"https://a.b/\"]", "server.allowed_origins[0]",
       "scheme://host[:port]"},
      {"server", "allowed_origins = [\"https://ok.example\", \"a.b\"]", "server.allowed_origins[1]",
       "scheme://host[:port]"},
      {"server", "allowed_origins = [\"https://a.b:0\"]", "server.allowed_origins[0]",
       "scheme://host[:port]"},
      {"server", "allowed_origins = \"https://a.b\"", "server.allowed_origins", "an array of"},
      {"server", "trusted_proxies = [\"10.0.0.0/33\"]", "server.trusted_proxies[0]", "CIDR"},
      {"server", "trusted_proxies = [\"::1/129\"]", "server.trusted_proxies[0]", "CIDR"},
      {"server", "trusted_proxies = [\"proxy.local\"]", "server.trusted_proxies[0]", "CIDR"},
      {"server", "trusted_proxies = [10]", "server.trusted_proxies[0]", "CIDR"},
      {"auth", "mode = \"basic\"", "auth.mode", "one of \"none\", \"header\", \"jwt\""},
      {"auth", "user_header = \"\"", "auth.user_header", "HTTP header name"},
      {"auth", "user_header = \"X User\"", "auth.user_header", "HTTP header name"},
      {"limits", "max_connections = 0", "limits.max_connections", "positive integer"},
      {"limits", "soft_connections = -1", "limits.soft_connections", "non-negative"},
      {"limits", "max_per_user = -1", "limits.max_per_user", "non-negative"},
      {"limits", "max_per_ip = -1", "limits.max_per_ip", "non-negative"},
      {"limits", "accept_rate = 0", "limits.accept_rate", "above 0"},
      {"limits", "accept_rate = nan", "limits.accept_rate", "above 0"},
      {"limits", "accept_burst = 0", "limits.accept_burst", "positive integer"},
      {"limits", "max_pending_handshakes = 0", "limits.max_pending_handshakes", "positive integer"},
      {"limits", "messages_per_second = -1.5", "limits.messages_per_second", ">= 0"},
      {"limits", "messages_burst = 0", "limits.messages_burst", "positive integer"},
      {"limits", "send_queue_bytes = 0", "limits.send_queue_bytes", "positive integer"},
      {"limits", "admission_timeout = \"0ms\"", "limits.admission_timeout", "above zero"},
      {"limits", "retry_after = \"500ms\"", "limits.retry_after", "at least 1s"},
      {"limits", "user_overflow = \"evict\"", "limits.user_overflow", "\"evict_idle\""},
      {"janitor", "sweep_interval = \"0s\"", "janitor.sweep_interval", "above zero"},
      {"janitor", "ping_interval = \"0m\"", "janitor.ping_interval", "above zero"},
      {"janitor", "pong_timeout = \"0h\"", "janitor.pong_timeout", "above zero"},
      {"janitor", "probe_timeout = \"0s\"", "janitor.probe_timeout", "above zero"},
      {"janitor", "idle_timeout = 30", "janitor.idle_timeout", "write \"30s\""},
      {"janitor", "max_lifetime = \"-1s\"", "janitor.max_lifetime", "must not be negative"},
      {"janitor", "close_timeout = \"0s\"", "janitor.close_timeout", "above zero"},
      {"supervision", "connection_restarts = -1", "supervision.connection_restarts",
       "non-negative"},
      {"supervision", "connection_restart_period = \"0s\"", "supervision.connection_restart_period",
       "above zero"},
      {"supervision", "service_restarts = -3", "supervision.service_restarts", "non-negative"},
      {"supervision", "service_restart_period = \"0s\"", "supervision.service_restart_period",
       "above zero"},
      {"supervision", "backoff_min = \"soon\"", "supervision.backoff_min", "with a unit"},
      {"supervision", "backoff_max = \"1d\"", "supervision.backoff_max", "unknown unit \"d\""},
      {"shutdown", "drain_timeout = \"0s\"", "shutdown.drain_timeout", "above zero"},
      {"shutdown", "drain_spread = true", "shutdown.drain_spread", "got true"},
      {"log", "level = \"verbose\"", "log.level", "\"critical\", \"off\""},
      {"log", "format = \"xml\"", "log.format", "one of \"text\", \"json\""},
      {"admin", "listen = \"localhost\"", "admin.listen", "host:port"},
      {"admin", "listen = \"localhost:99999\"", "admin.listen", "host:port"},
      {"admin", "listen = \":9090\"", "admin.listen", "host:port"},
      {"auth", "allow_weak_secret = 1", "auth.allow_weak_secret", "true or false"},
      {"faults", "enabled = \"yes\"", "faults.enabled", "true or false"},
      {"app", "mode = \"Chat\"", "app.mode", "names are lower case: write \"chat\""},
      {"app", "mode = \"\"", "app.mode",
       "\"echo\", \"gateway\", \"hub\" or the name of an application"},
      {"upstream", "url = \"backend:8000\"", "upstream.url", "it has no scheme"},
      {"upstream", "url = 8000", "upstream.url", "base URL"},
      {"upstream", "timeout = \"0s\"", "upstream.timeout", "above zero"},
      {"upstream", "max_inflight = 0", "upstream.max_inflight", "positive integer"},
      {"upstream", "per_connection_inflight = 0", "upstream.per_connection_inflight",
       "positive integer"},
      {"upstream", "queue = 0", "upstream.queue", "positive integer"},
      {"upstream", "retries = 11", "upstream.retries", "0 to 10"},
      {"upstream", "retries = -1", "upstream.retries", "0 to 10"},
      {"upstream", "backoff_min = \"-1ms\"", "upstream.backoff_min", "must not be negative"},
      {"upstream", "backoff_max = 2", "upstream.backoff_max", "write \"2s\""},
      {"upstream", "breaker_failures = 0", "upstream.breaker_failures", "positive integer"},
      {"upstream", "breaker_window = \"0s\"", "upstream.breaker_window", "above zero"},
      {"upstream", "breaker_open = \"0ms\"", "upstream.breaker_open", "above zero"},
      {"upstream", "forward_headers = [\"Cookie\", \"X Bad\"]", "upstream.forward_headers[1]",
       "an HTTP header name"},
      {"upstream", "forward_headers = \"Cookie\"", "upstream.forward_headers", "an array of"},
      {"upstream", "max_response_bytes = 0", "upstream.max_response_bytes", "positive integer"},
      {"api", "listen = \"localhost\"", "api.listen", "host:port"},
      {"api", "listen = \"127.0.0.1:65536\"", "api.listen", "host:port"},
      {"api", "max_body_bytes = 0", "api.max_body_bytes", "positive integer"},
      {"events", "url = \"events.internal\"", "events.url", "it has no scheme"},
      {"events", "url = [\"http://h\"]", "events.url", "an http:// or https:// URL"},
      {"events", "timeout = \"0s\"", "events.timeout", "above zero"},
      {"events", "retries = 101", "events.retries", "0 to 100"},
      {"events", "retries = -1", "events.retries", "0 to 100"},
      {"events", "queue = 0", "events.queue", "positive integer"},
      {"gateway", "connect_path = \"connect\"", "gateway.connect_path",
       "a path beginning with \"/\", e.g. \"/ws/connect\", got \"connect\": it is appended to "
       "upstream.url: write \"/connect\""},
      {"gateway", "connect_path = \"/a b\"", "gateway.connect_path",
       "the path has a character that must be percent-encoded: a space (write \"%20\")"},
      {"gateway", "message_path = \"\"", "gateway.message_path",
       "expected a path beginning with \"/\", e.g. \"/ws/message\", got \"\""},
      {"gateway", "message_path = \"ws/message\"", "gateway.message_path", "write \"/ws/message\""},
      {"gateway", "message_path = \"/m?x=1\"", "gateway.message_path", "\"?\" (write \"%3F\")"},
      {"gateway", "message_path = \"/m#x\"", "gateway.message_path", "\"#\" (write \"%23\")"},
      {"gateway", "connect_concurrency = 0", "gateway.connect_concurrency", "positive integer"},
      {"gateway", "error_frames = \"yes\"", "gateway.error_frames", "true or false"},
      {"hub", "allow_anonymous = 1", "hub.allow_anonymous", "true or false"},
      {"hub", "connect_timeout = \"0s\"", "hub.connect_timeout", "above zero"},
      {"hub", "connect_timeout = 10", "hub.connect_timeout", "write \"10s\""},
      {"hub", "channel_max_length = 0", "hub.channel_max_length", "1 to 65535"},
      {"hub", "channel_max_length = 65536", "hub.channel_max_length", "1 to 65535"},
      {"hub", "user_personal_channel = \"yes\"", "hub.user_personal_channel", "true or false"},
      {"hub", "max_channels_per_connection = 0", "hub.max_channels_per_connection", "1 to 100000"},
      {"hub", "max_channels_per_connection = 100001", "hub.max_channels_per_connection",
       "1 to 100000"},
      {"hub", "recovery_max_publications = 0", "hub.recovery_max_publications", "1 to 100000"},
      {"hub", "recovery_max_publications = 100001", "hub.recovery_max_publications", "1 to 100000"},
      {"hub", "connect_proxy_path = \"connect\"", "hub.connect_proxy_path",
       "expected \"\" (off) or a path beginning with \"/\", e.g. \"/centrifugo/connect\", got "
       "\"connect\": it is appended to upstream.url: write \"/connect\""},
      {"hub", "refresh_proxy_path = \"refresh\"", "hub.refresh_proxy_path", "write \"/refresh\""},
      {"hub", "rpc_proxy_path = \"/a b\"", "hub.rpc_proxy_path", "a space (write \"%20\")"},
      {"hub", "send_proxy_path = 1", "hub.send_proxy_path", "e.g. \"/centrifugo/send\""},
      {"hub", "publish_proxy_path = \"/p?x\"", "hub.publish_proxy_path", "(write \"%3F\")"},
      {"hub", "subscribe_proxy_path = \"s\"", "hub.subscribe_proxy_path", "write \"/s\""},
      {"hub", "presence = \"on\"", "hub.presence", "true or false"},
      {"hub", "join_leave = 0", "hub.join_leave", "true or false"},
      {"hub", "history_size = -1", "hub.history_size", "0 to 1000000 (0 = no history)"},
      {"hub", "history_size = 1000001", "hub.history_size", "0 to 1000000"},
      {"hub", "history_size = \"10\"", "hub.history_size", "0 to 1000000"},
      {"hub", "history_ttl = \"-1s\"", "hub.history_ttl", "must not be negative"},
      {"hub", "history_ttl = 300", "hub.history_ttl", "write \"300s\""},
      {"hub", "force_recovery = 1", "hub.force_recovery", "true or false"},
      {"hub", "allow_subscribe_for_client = 1", "hub.allow_subscribe_for_client", "true or false"},
      {"hub", "allow_subscribe_for_anonymous = 1", "hub.allow_subscribe_for_anonymous",
       "true or false"},
      {"hub", "allow_publish_for_subscriber = 1", "hub.allow_publish_for_subscriber",
       "true or false"},
      {"hub", "allow_publish_for_client = 1", "hub.allow_publish_for_client", "true or false"},
      {"hub", "allow_presence_for_subscriber = 1", "hub.allow_presence_for_subscriber",
       "true or false"},
      {"hub", "allow_history_for_subscriber = 1", "hub.allow_history_for_subscriber",
       "true or false"},
      {"hub", "subscribe_proxy_enabled = 1", "hub.subscribe_proxy_enabled", "true or false"},
      {"hub", "publish_proxy_enabled = 1", "hub.publish_proxy_enabled", "true or false"},
      {"hub", "name = \"chat\"", "hub.name", "unknown key; [hub] has allow_anonymous"},
  };
  for (const auto& bad : cases) {
    CAPTURE(bad.line);
    const std::string message = load_error("# line 1\n[" + bad.section + "]\n" + bad.line + "\n");
    CHECK(contains(message, "config error: test.toml:3: " + bad.key + ": "));
    CHECK(contains(message, bad.expected));
  }
}

TEST_CASE("server.host is an IP address or localhost (127.0.0.1), names are not resolved") {
  for (const std::string address :
       {"0.0.0.0", "127.0.0.1", "10.1.2.3", "::", "::1", "fe80::1", "::ffff:192.0.2.1"}) {
    CAPTURE(address);
    CHECK(load("server.host = \"" + address + "\"").server.host == address);
  }
  // The effective configuration shows the address that is bound.
  const settings local = load("[server]\nhost = \"localhost\"\n");
  CHECK(local.server.host == "127.0.0.1");
  CHECK(contains(render_effective(local), "\nhost = \"127.0.0.1\"\n"));
  CHECK(load(std::nullopt, {{"WSVISOR_SERVER_HOST", "LocalHost"}}).server.host == "127.0.0.1");

  CHECK(load_error("[server]\nhost = \"example.com\"\n") ==
        "config error: test.toml:2: server.host: expected an IP address (or \"localhost\"), got "
        "\"example.com\": host names are not resolved (only \"localhost\" is, as 127.0.0.1); "
        "write an address such as \"0.0.0.0\" (every IPv4 interface), \"127.0.0.1\" (this "
        "machine only) or \"::\" (every IPv6 interface)");
  const std::string from_set = load_error(std::nullopt, {}, {"server.host=my-host"});
  CHECK(contains(from_set, "--set server.host=my-host: server.host: "));
  CHECK(contains(from_set, "host names are not resolved"));
  CHECK(contains(load_error(std::nullopt, {{"WSVISOR_SERVER_HOST", "db.internal"}}),
                 "environment variable WSVISOR_SERVER_HOST: server.host: "));
  // Not a name, so no word about resolving; still the addresses to use instead.
  const std::string bad_v4 = load_error("server.host = \"10.0.0.256\"");
  CHECK_FALSE(contains(bad_v4, "not resolved"));
  CHECK(contains(bad_v4, "write an address such as \"0.0.0.0\""));
  CHECK(contains(load_error("server.host = \"[::1]\""),
                 "write the IPv6 address without brackets: \"::1\""));
}

// admin.listen and api.listen share their rules and messages; only the example port
// differs.
TEST_CASE(
    "admin.listen, api.listen: an IP address and a port; localhost is 127.0.0.1; IPv6 in "
    "brackets") {
  struct listen_key {
    std::string section;
    std::string port;  // of the examples in the messages
    std::function<std::optional<listen_endpoint>(const settings&)> endpoint;
    std::function<std::string(const settings&)> value;
  };
  for (const auto& [section, port, endpoint, value] : std::vector<listen_key>{
           {"admin", "9090", admin_listen_endpoint,
            [](const settings& s) { return s.admin.listen; }},
           {"api", "9091", api_listen_endpoint, [](const settings& s) { return s.api.listen; }}}) {
    CAPTURE(section);
    const std::string key = section + ".listen";
    for (const std::string& listen : std::vector<std::string>{
             "127.0.0.1:" + port, "0.0.0.0:0", "[::1]:" + port, "[::]:" + port, "[::]:65535"}) {
      CAPTURE(listen);
      CHECK(value(load(key + " = \"" + listen + "\"")) == listen);
    }
    CHECK(value(load(std::nullopt, {}, {key + "=[::1]:" + port})) == "[::1]:" + port);
    CHECK(value(load(key + " = \"localhost:" + port + "\"")) == "127.0.0.1:" + port);
    // What the listener binds: the address without brackets.
    const auto v6 = endpoint(load(key + " = \"[::1]:" + port + "\""));
    REQUIRE(v6);
    CHECK(v6->address == "::1");
    CHECK(std::to_string(v6->port) == port);
    const auto v4 = endpoint(load(key + " = \"localhost:0\""));
    REQUIRE(v4);
    CHECK(v4->address == "127.0.0.1");
    CHECK(v4->port == 0);
    CHECK_FALSE(endpoint(load(std::nullopt)));

    CHECK(load_error("[" + section + "]\nlisten = \"metrics.local:" + port + "\"\n") ==
          "config error: test.toml:2: " + key +
              ": expected \"\" (the main listener) or host:port with an IP address as host, got "
              "\"metrics.local:" +
              port +
              "\": host names are not resolved (only \"localhost\" is, as 127.0.0.1); write an "
              "address such as \"0.0.0.0:" +
              port + "\" (every IPv4 interface), \"127.0.0.1:" + port +
              "\" (this machine only) or \"[::]:" + port + "\" (every IPv6 interface)");
    CHECK(contains(load_error(key + " = \"::1:" + port + "\""),
                   "an IPv6 address goes in brackets: \"[::1]:" + port + "\""));
    CHECK(contains(load_error(key + " = \"[localhost]:" + port + "\""),
                   "brackets hold an IPv6 address"));
    CHECK(contains(load_error(key + " = \"127.0.0.1:http\""),
                   "the port must be a number from 0 to 65535"));
    CHECK(contains(load_error(key + " = \"127.0.0.1:65536\""),
                   "the port must be a number from 0 to 65535"));
    CHECK(
        contains(load_error(key + " = \"" + port + "\""),
                 "write address:port, e.g. \"127.0.0.1:" + port + "\" or \"[::1]:" + port + "\""));
  }
}

TEST_CASE("TLS needs both files, and admin.tls and api.tls need them and a port of their own") {
  CHECK(load_error("[server]\ntls_cert_file = \"/etc/wsvisor/cert.pem\"\n") ==
        "config error: test.toml:2: server.tls_key_file: TLS needs both a certificate and its "
        "key, and only server.tls_cert_file is set: set server.tls_key_file too, or neither for "
        "plain ws://");
  CHECK(contains(load_error(std::nullopt, {}, {"server.tls_key_file=/k.pem"}),
                 "server.tls_cert_file: TLS needs both"));
  CHECK(contains(load_error(std::nullopt, {}, {"admin.tls=true", "admin.listen=127.0.0.1:9090"}),
                 "admin.tls: admin.listen speaks TLS with the main port's certificate, and none "
                 "is set"));
  CHECK(contains(
      load_error(std::nullopt, {},
                 {"server.tls_cert_file=/c.pem", "server.tls_key_file=/k.pem", "api.tls=true"}),
      "api.tls: applies to api.listen, which is \"\""));
  CHECK(contains(load_error("[server]\ntls_key_file = \"/k\\u0001.pem\"\n"),
                 "server.tls_key_file: expected a file path (no control characters)"));
  // Both files: the paths are kept as given (the files are read when the server starts).
  const auto both = load(std::nullopt, {},
                         {"server.tls_cert_file=/c.pem", "server.tls_key_file=/k.pem",
                          "admin.listen=127.0.0.1:9090", "admin.tls=true"});
  CHECK(both.server.tls_cert_file == "/c.pem");
  CHECK(both.server.tls_key_file == "/k.pem");
  CHECK(both.admin.tls);
  CHECK_FALSE(both.api.tls);
}

TEST_CASE("admin.listen may not take the main listener's address") {
  CHECK(load_error("[server]\nhost = \"127.0.0.1\"\n[admin]\nlisten = \"0.0.0.0:8080\"\n") ==
        "config error: test.toml:4: admin.listen: \"0.0.0.0:8080\" is the main listener's "
        "address (server.host = \"127.0.0.1\" from test.toml:2; server.port = 8080, the "
        "default), and two listeners cannot share it: give admin.listen a port of its own, e.g. "
        "\"0.0.0.0:9090\", or set it to \"\" to serve /metrics and /admin/* on the main "
        "listener");
  // Same or overlapping addresses on one port collide, whichever side is the wildcard.
  for (const auto& [host, listen] : std::vector<std::pair<std::string, std::string>>{
           {"0.0.0.0", "127.0.0.1:8080"},
           {"127.0.0.1", "127.0.0.1:8080"},
           {"localhost", "localhost:8080"},
           {"::", "127.0.0.1:8080"},  // "::" is dual-stack
           {"::", "[::1]:8080"},
           {"::1", "[::]:8080"},
           {"127.0.0.1", "[::ffff:127.0.0.1]:8080"}}) {
    CAPTURE(host);
    CAPTURE(listen);
    const std::string message =
        load_error(std::nullopt, {}, {"server.host=" + host, "admin.listen=" + listen});
    CHECK(contains(message, "--set admin.listen=" + listen + ": admin.listen: "));
    CHECK(contains(message, "server.host = "));
    CHECK(contains(message, "server.port = 8080"));
  }
  // The port may come from another layer; the message says which.
  CHECK(contains(load_error("admin.listen = \"127.0.0.1:3000\"", {{"PORT", "3000"}}),
                 "server.port = 3000 from environment variable PORT"));
  CHECK(contains(load_error("admin.listen = \"[::]:9090\"", {}, {"server.port=9090"}),
                 "e.g. \"[::]:9091\""));

  // Apart: another port, port 0 (any free port) on either side, or disjoint addresses.
  for (const auto& [host, listen] : std::vector<std::pair<std::string, std::string>>{
           {"0.0.0.0", "127.0.0.1:9090"},
           {"0.0.0.0", "0.0.0.0:0"},
           {"127.0.0.1", "127.0.0.2:8080"},
           {"0.0.0.0", "[::1]:8080"},  // an IPv4 wildcard does not take IPv6
           {"::1", "127.0.0.1:8080"}}) {
    CAPTURE(host);
    CAPTURE(listen);
    CHECK(load(std::nullopt, {}, {"server.host=" + host, "admin.listen=" + listen}).admin.listen ==
          listen);
  }
  CHECK(load(std::nullopt, {}, {"server.port=0", "admin.listen=0.0.0.0:0"}).server.port == 0);
}

TEST_CASE("upstream.url: an http(s) base URL with a host, an optional port and path") {
  for (const auto& [url, stored] : std::vector<std::pair<std::string, std::string>>{
           {"", ""},
           {"http://127.0.0.1:8000", "http://127.0.0.1:8000"},
           {"https://backend", "https://backend"},
           {"http://my_service:1", "http://my_service:1"},  // compose service names have '_'
           {"http://a.b.example:65535/api/v1", "http://a.b.example:65535/api/v1"},
           {"http://[::1]:8000/x", "http://[::1]:8000/x"},
           {"https://[2001:db8::1]", "https://[2001:db8::1]"},
           {"http://h/a%20b/~user;v=1", "http://h/a%20b/~user;v=1"},
           // Stored so that appending "/ws/message" gives one "/": no trailing "/".
           {"http://h/", "http://h"},
           {"http://h/api//", "http://h/api"},
           {"HTTPS://Backend", "https://Backend"},  // the scheme is case-insensitive
       }) {
    CAPTURE(url);
    CHECK(load("upstream.url = \"" + url + "\"").upstream.url == stored);
  }
  CHECK(load(std::nullopt, {}, {"upstream.url=http://[::1]:8000"}).upstream.url ==
        "http://[::1]:8000");
  const std::string longest_label(63, 'a');
  CHECK(load("upstream.url = \"http://" + longest_label + ".example\"").upstream.url.size() > 63);

  CHECK(load_error("[upstream]\nurl = \"backend:8000\"\n") ==
        "config error: test.toml:2: upstream.url: expected \"\" or an http:// or https:// base "
        "URL, e.g. \"http://127.0.0.1:8000\", got \"backend:8000\": it has no scheme: write "
        "\"http://backend:8000\" or \"https://backend:8000\"");
  // What is wrong, part by part.
  for (const auto& [url, problem] : std::vector<std::pair<std::string, std::string>>{
           {"http:/h", "the scheme is followed by \"://\", e.g. \"http://host:8000\""},
           {"ws://h", "the scheme must be http:// or https://, not \"ws://\""},
           {"ftp://h", "not \"ftp://\""},
           {"http://", "the host is missing"},
           {"http:///path", "the host is missing"},
           {"http://:8000", "the host is missing"},
           {"http://10.0.0.256", "\"10.0.0.256\" is not an IPv4 address"},
           {"http://1.2.3", "\"1.2.3\" is not an IPv4 address"},
           {"http://-h", "\"-h\" is not a host name"},
           {"http://h-.example", "is not a host name"},
           {"http://a..b", "is not a host name"},
           {"http://h!", "is not a host name"},
           {"http://" + std::string(64, 'a'), "is not a host name"},
           {"http://[::1", "brackets hold an IPv6 address"},
           {"http://[h]:80", "brackets hold an IPv6 address"},
           {"http://[::1]x", "after \"]\" comes \":port\" or the path"},
           {"http://::1:8000/x", "an IPv6 address goes in brackets: \"http://[::1]:8000/x\""},
           {"http://fe80::1", "an IPv6 address goes in brackets: \"http://[fe80::1]\""},
           {"http://h:", "the port after \":\" is missing"},
           {"http://h:0", "the port must be a number from 1 to 65535, got \"0\""},
           {"http://h:65536", "from 1 to 65535, got \"65536\""},
           {"http://h:http", "from 1 to 65535, got \"http\""},
           {"http://h/x?a=1", "a base URL takes no query (\"?a=1\"): the hook paths are appended"},
           {"http://h/x#top", "a fragment (\"#top\") is never sent to a server: leave it out"},
           {"http://h/a b",
            "the path has a character that must be percent-encoded: a space "
            "(write \"%20\")"},
           {"http://h/a\\b", "must be percent-encoded: \"\\\\\" (write \"%5C\")"},
           {"http://h/caf\u00e9", "a control character or non-ASCII byte (write \"%C3\")"},
           {"http://h/100%", "a \"%\" not followed by two hex digits (write \"%25\" for \"%\")"},
           {"http://h/%zz", "not followed by two hex digits"},
       }) {
    CAPTURE(url);
    const std::string message = load_error(std::nullopt, {}, {"upstream.url=" + url});
    CHECK(contains(message, "upstream.url: expected \"\" or an http:// or https:// base URL"));
    CHECK(contains(message, problem));
  }

  // Credentials are refused and not echoed (--check-config would print them), wherever they
  // come from.
  const std::string with_password = "http://user:hunter2@backend:8000";
  for (const std::string& message :
       {load_error("upstream.url = \"" + with_password + "\""),
        load_error(std::nullopt, {{"WSVISOR_UPSTREAM_URL", with_password}}),
        load_error(std::nullopt, {}, {"upstream.url=" + with_password})}) {
    CAPTURE(message);
    CHECK(contains(message,
                   "got \"http://<redacted>@backend:8000\": user:password@ is not "
                   "supported (--check-config prints the URL): set "
                   "WSVISOR_UPSTREAM_TOKEN to send a bearer token"));
    CHECK_FALSE(contains(message, "hunter2"));
  }
  // Without the scheme too, where the fix repeats the URL.
  const std::string schemeless = load_error(std::nullopt, {}, {"upstream.url=user:hunter2@b:80"});
  CHECK(contains(schemeless, "it has no scheme: write \"http://<redacted>@b:80\""));
  CHECK_FALSE(contains(schemeless, "hunter2"));
}

TEST_CASE("events.url: a full http(s) URL, checked as upstream.url, and it may have a query") {
  for (const std::string url :
       {"", "http://127.0.0.1:8000/events", "https://[::1]/", "http://h?token=a%2Fb", "http://h"}) {
    CAPTURE(url);
    CHECK(load("events.url = \"" + url + "\"").events.url == url);  // stored as written
  }
  CHECK(load_error("[events]\nurl = \"ftp://h/e\"\n") ==
        "config error: test.toml:2: events.url: expected \"\" (off) or an http:// or https:// "
        "URL, e.g. \"http://127.0.0.1:8000/events\", got \"ftp://h/e\": the scheme must be "
        "http:// or https://, not \"ftp://\"");
  for (const auto& [url, problem] : std::vector<std::pair<std::string, std::string>>{
           {"http://h:0/e", "the port must be a number from 1 to 65535"},
           {"http://h/e#x", "a fragment (\"#x\") is never sent to a server"},
           {"http://h/e?a b", "the query has a character that must be percent-encoded: a space"},
           {"http://h/e?%", "the query has a \"%\" not followed by two hex digits"},
           {"http://[::1/e", "brackets hold an IPv6 address"},
       }) {
    CAPTURE(url);
    CHECK(contains(load_error(std::nullopt, {{"WSVISOR_EVENTS_URL", url}}),
                   "environment variable WSVISOR_EVENTS_URL: events.url: expected"));
    CHECK(contains(load_error(std::nullopt, {{"WSVISOR_EVENTS_URL", url}}), problem));
  }
  const std::string with_password = load_error("events.url = \"https://u:pw-123@h/e\"");
  CHECK(contains(with_password,
                 "got \"https://<redacted>@h/e\": user:password@ is not "
                 "supported (--check-config prints the URL): wsvisor sends "
                 "events without credentials"));
  CHECK_FALSE(contains(with_password, "pw-123"));
}

TEST_CASE("split_http_url gives what a client connects to") {
  const auto plain = split_http_url("http://backend");
  REQUIRE(plain);
  CHECK(plain->scheme == "http");
  CHECK(plain->host == "backend");
  CHECK(plain->port == 80);
  CHECK(plain->path.empty());
  CHECK(plain->query.empty());
  const auto tls = split_http_url("https://[::1]/hooks/v1?x=1");
  REQUIRE(tls);
  CHECK(tls->scheme == "https");
  CHECK(tls->host == "::1");
  CHECK(tls->port == 443);
  CHECK(tls->path == "/hooks/v1");
  CHECK(tls->query == "x=1");
  const auto ported = split_http_url(load("upstream.url = \"HTTP://10.0.0.1:8000/\"").upstream.url);
  REQUIRE(ported);
  CHECK(ported->scheme == "http");
  CHECK(ported->port == 8000);
  CHECK(ported->path.empty());
  CHECK_FALSE(split_http_url(""));
  CHECK_FALSE(split_http_url("backend:8000"));
}

TEST_CASE("upstream.forward_headers names each header once, whatever the case") {
  CHECK(load("upstream.forward_headers = []").upstream.forward_headers.empty());
  CHECK(load("upstream.forward_headers = [\"X-A\", \"X-B\"]").upstream.forward_headers.size() == 2);
  CHECK(load_error("[upstream]\nforward_headers = [\"Cookie\", \"Origin\", \"cookie\"]\n") ==
        "config error: test.toml:2: upstream.forward_headers[2]: \"cookie\" is already in the "
        "list (header names are case-insensitive): name each header once");
}

TEST_CASE("api.listen may not take the main listener's address nor admin.listen's") {
  CHECK(load_error("[server]\nhost = \"127.0.0.1\"\n[api]\nlisten = \"0.0.0.0:8080\"\n") ==
        "config error: test.toml:4: api.listen: \"0.0.0.0:8080\" is the main listener's address "
        "(server.host = \"127.0.0.1\" from test.toml:2; server.port = 8080, the default), and two "
        "listeners cannot share it: give api.listen a port of its own, e.g. \"0.0.0.0:9091\", or "
        "set it to \"\" to serve /api/* on the main listener");
  CHECK(load_error("[admin]\nlisten = \"127.0.0.1:9090\"\n[api]\nlisten = \"[::]:9090\"\n") ==
        "config error: test.toml:4: api.listen: \"[::]:9090\" is admin.listen's address "
        "(admin.listen = \"127.0.0.1:9090\" from test.toml:2), and two listeners cannot share "
        "it: give api.listen a port of its own, e.g. \"[::]:9091\", or set it to \"\" to serve "
        "/api/* on the main listener");
  // The example skips the ports the other listeners have.
  CHECK(contains(
      load_error(std::nullopt, {},
                 {"server.port=9091", "admin.listen=0.0.0.0:9092", "api.listen=127.0.0.1:9091"}),
      "e.g. \"127.0.0.1:9093\""));
  CHECK(contains(
      load_error(std::nullopt, {}, {"admin.listen=127.0.0.1:9091", "api.listen=127.0.0.1:9091"}),
      "e.g. \"127.0.0.1:9092\""));
  // Apart: other ports, port 0, disjoint addresses.
  for (const std::vector<std::string>& sets : std::vector<std::vector<std::string>>{
           {"api.listen=127.0.0.1:9091", "admin.listen=127.0.0.1:9090"},
           {"api.listen=0.0.0.0:0", "admin.listen=0.0.0.0:0", "server.port=0"},
           {"api.listen=127.0.0.1:9090", "admin.listen=127.0.0.2:9090"},
           {"api.listen=[::1]:8080"},
           {"api.listen=127.0.0.1:9090"}}) {
    CAPTURE(sets.front());
    CHECK_FALSE(load(std::nullopt, {}, sets).api.listen.empty());
  }
}

TEST_CASE("app.mode: echo, gateway, hub, or a name an embedding program registers") {
  const std::string longest(32, 'z');
  for (const std::string mode : {"echo", "chat_v2", "a", "0", "-", "my-app", longest.c_str()}) {
    CAPTURE(mode);
    CHECK(load("app.mode = \"" + mode + "\"").app.mode == mode);
  }
  // "hub" needs a way to identify clients (see the hub test cases).
  CHECK(load("app.mode = \"hub\"\nhub.allow_anonymous = true").app.mode == "hub");
  CHECK(load(std::nullopt, {{"WSVISOR_APP_MODE", "gateway"}, {"WSVISOR_UPSTREAM_URL", "http://b"}})
            .app.mode == "gateway");
  const std::string expected =
      "expected \"echo\", \"gateway\", \"hub\" or the name of an application that an embedding "
      "program registers (1 to 32 characters of a-z, 0-9, \"_\" and \"-\"), got ";
  CHECK(load_error("[app]\nmode = \"" + longest + "z\"\n") ==
        "config error: test.toml:2: app.mode: " + expected + "\"" + longest +
            "z\": it has 33 characters");
  CHECK(load_error("[app]\nmode = \"Echo\"\n") ==
        "config error: test.toml:2: app.mode: " + expected +
            "\"Echo\": names are lower case: write \"echo\"");
  for (const std::string mode : {"my app", "chat.v2", "caf\xc3\xa9", "a/b"}) {
    CAPTURE(mode);
    CHECK(load_error(std::nullopt, {}, {"app.mode=" + mode}) ==
          "config error: --set app.mode=" + mode + ": app.mode: " + expected + "\"" + mode + "\"");
  }
  CHECK(contains(load_error("app.mode = 1"), expected + "1"));
}

TEST_CASE("cluster: defaults, the Redis URL split, and the password from the environment only") {
  const settings defaults = load(std::nullopt);
  CHECK(defaults.cluster.mode == "off");
  CHECK_FALSE(defaults.cluster.enabled());
  CHECK(defaults.cluster.redis_host == "127.0.0.1");
  CHECK(defaults.cluster.redis_port == 6379);
  CHECK(defaults.cluster.redis_database == 0);
  CHECK(defaults.cluster.prefix == "wsvisor");
  CHECK(defaults.cluster.lease_ttl == std::chrono::seconds(10));
  CHECK(defaults.cluster.lease_refresh == std::chrono::seconds(3));
  CHECK(defaults.cluster.probe_interval == std::chrono::seconds(5));
  CHECK(defaults.cluster.on_redis_down == "local");
  CHECK(defaults.cluster.api_timeout == std::chrono::seconds(1));

  const settings s =
      load("[cluster]\nmode = \"redis\"\nredis_url = \"redis://cache.internal:6390/3\"\n",
           {{"WSVISOR_CLUSTER_REDIS_PASSWORD", "s3cret"}});
  CHECK(s.cluster.enabled());
  CHECK(s.cluster.redis_host == "cache.internal");
  CHECK(s.cluster.redis_port == 6390);
  CHECK(s.cluster.redis_database == 3);
  CHECK(s.cluster.redis_password == "s3cret");
  const settings v6 = load(std::nullopt, {}, {"cluster.redis_url=redis://[::1]"});
  CHECK(v6.cluster.redis_host == "::1");
  CHECK(v6.cluster.redis_port == 6379);

  const std::string expected =
      "cluster.redis_url: expected a URL redis://host[:port][/db], e.g. "
      "\"redis://127.0.0.1:6379/0\", got ";
  CHECK(load_error("[cluster]\nredis_url = \"http://h:6379\"\n") ==
        "config error: test.toml:2: " + expected +
            "\"http://h:6379\": the scheme must be redis://, e.g. \"redis://127.0.0.1:6379/0\"");
  // The password never shows, and the fix is named.
  const std::string with_password =
      load_error("[cluster]\nredis_url = \"redis://:hunter2@h:6379\"\n");
  CHECK_FALSE(contains(with_password, "hunter2"));
  CHECK(contains(with_password, "set WSVISOR_CLUSTER_REDIS_PASSWORD"));
  CHECK(contains(load_error(std::nullopt, {}, {"cluster.redis_url=redis://h:0"}),
                 "the port is 1 to 65535"));
  CHECK(contains(load_error(std::nullopt, {}, {"cluster.redis_url=redis://h:6379/16"}),
                 "a number from 0 to 15"));
  CHECK(contains(load_error(std::nullopt, {}, {"cluster.redis_url=rediss://h"}),
                 "TLS to Redis (rediss://) is not supported"));
  CHECK(contains(load_error(std::nullopt, {}, {"cluster.redis_url=redis://"}),
                 "the host is missing"));
  CHECK(contains(load_error(std::nullopt, {}, {"cluster.mode=sentinel"}),
                 "cluster.mode: expected one of \"off\", \"redis\""));
  CHECK(contains(load_error(std::nullopt, {}, {"cluster.on_redis_down=drop"}),
                 "expected one of \"local\", \"reject\""));
  CHECK(contains(load_error("[cluster]\nredis_password = \"x\"\n"),
                 "WSVISOR_CLUSTER_REDIS_PASSWORD"));
  CHECK(load_error(std::nullopt, {}, {"cluster.lease_refresh=10s"}) ==
        "config error: --set cluster.lease_refresh=10s: cluster.lease_refresh: expected a "
        "duration below cluster.lease_ttl (10s, the default) so that a live node refreshes its "
        "lease before it expires, got "
        "\"10s\"");
}

TEST_CASE("cluster.node_id: \"\" or 1 to 64 of [a-z0-9-], no \"-\" at either end") {
  const std::string longest(64, 'n');
  for (const std::string id : {"", "a", "0", "ws-1", "a-b-c", "web-7f3a9c", longest.c_str()}) {
    CAPTURE(id);
    CHECK(load("cluster.node_id = \"" + id + "\"").cluster.node_id == id);
    if (!id.empty()) CHECK(is_valid_node_id(id));
  }
  const std::string expected =
      "cluster.node_id: expected \"\" (the host name and 6 random hex digits, chosen at start) or "
      "1 to 64 characters of a-z, 0-9 and \"-\", not starting or ending with \"-\", e.g. "
      "\"ws-eu-1\", got ";
  CHECK(load_error("[cluster]\nnode_id = \"" + longest + "n\"\n") ==
        "config error: test.toml:2: " + expected + "\"" + longest + "n\": it has 65 characters");
  CHECK(load_error("[cluster]\nnode_id = \"-ws\"\n") ==
        "config error: test.toml:2: " + expected + "\"-ws\": it starts or ends with \"-\"");
  CHECK(load_error(std::nullopt, {{"WSVISOR_CLUSTER_NODE_ID", "Web-1"}}) ==
        "config error: environment variable WSVISOR_CLUSTER_NODE_ID: " + expected +
            "\"Web-1\": names are lower case: write \"web-1\"");
  for (const std::string id : {"ws-", "ws_1", "ws.1", "ws 1", "-", "caf\xc3\xa9"}) {
    CAPTURE(id);
    CHECK(contains(load_error(std::nullopt, {}, {"cluster.node_id=" + id}),
                   "--set cluster.node_id=" + id + ": " + expected));
  }
  // What the server checks a node id of its own making with.
  // The list holds const char*: the 65 bytes must outlive it (a temporary's c_str() did not).
  const std::string too_long(65, 'a');
  for (const std::string id : {"", "ws-", "-ws", "WS", "ws_1", too_long.c_str()}) {
    CAPTURE(id);
    CHECK_FALSE(is_valid_node_id(id));
  }
}

// ------------------------------------------------------------------ hub mode (CONTRACT 13)

TEST_CASE("[[hub.namespaces]]: a name each and the namespace options, in the file's order") {
  const settings s = load(R"(# line 1
[hub]
presence = true

[[hub.namespaces]]
name = "chat"
presence = true
join_leave = true
history_size = 100
history_ttl = "300s"
force_recovery = true
allow_subscribe_for_client = true
allow_subscribe_for_anonymous = true
allow_publish_for_subscriber = true
allow_publish_for_client = true
allow_presence_for_subscriber = true
allow_history_for_subscriber = true

[[hub.namespaces]]
name = "Feed_2-b"

[[hub.namespaces]]
name = "dialog"
allow_subscribe_for_client = true
)");
  CHECK(s.hub.defaults.presence);
  REQUIRE(s.hub.namespaces.size() == 3);
  const hub_namespace& chat = s.hub.namespaces[0];
  CHECK(chat.name == "chat");
  CHECK(chat.history_size == 100);
  CHECK(chat.history_ttl == 300s);
  check_namespace_switches(chat, true, false);
  // A namespace does not inherit the [hub] keys: those are the default namespace's.
  const hub_namespace& feed = s.hub.namespaces[1];
  CHECK(feed.name == "Feed_2-b");
  CHECK_FALSE(feed.presence);
  CHECK(feed.history_size == 0);
  CHECK(feed.history_ttl == 0s);
  CHECK(s.hub.namespaces[2].name == "dialog");
  CHECK(s.hub.namespaces[2].allow_subscribe_for_client);

  // TOML's other spellings of an array of tables are the same thing.
  const settings inline_form =
      load("[hub]\nnamespaces = [{name = \"a\", presence = true}, {name = \"b\"}]\n");
  REQUIRE(inline_form.hub.namespaces.size() == 2);
  CHECK(inline_form.hub.namespaces[0].presence);
  CHECK(inline_form.hub.namespaces[1].name == "b");
  CHECK(load("hub.namespaces = []").hub.namespaces.empty());
  // Without [hub] of its own.
  CHECK(load("[[hub.namespaces]]\nname = \"x\"\n").hub.namespaces.size() == 1);
}

TEST_CASE("[[hub.namespaces]] errors name hub.namespaces[i].key with file:line") {
  SUBCASE("an unknown key") {
    CHECK(load_error("[[hub.namespaces]]\nname = \"a\"\n\n[[hub.namespaces]]\nname = \"b\"\n"
                     "colour = \"red\"\n") ==
          "config error: test.toml:6: hub.namespaces[1].colour: unknown key; a "
          "[[hub.namespaces]] table has name, presence, join_leave, history_size, history_ttl, "
          "force_recovery, allow_subscribe_for_client, allow_subscribe_for_anonymous, "
          "allow_publish_for_subscriber, allow_publish_for_client, "
          "allow_presence_for_subscriber, allow_history_for_subscriber, "
          "subscribe_proxy_enabled, publish_proxy_enabled");
    // [hub] keys that are not namespace options are not namespace keys either.
    CHECK(contains(load_error("[[hub.namespaces]]\nname = \"a\"\nconnect_timeout = \"1s\"\n"),
                   "test.toml:3: hub.namespaces[0].connect_timeout: unknown key"));
    // A sub-table is a key of the table above it.
    CHECK(contains(load_error("[[hub.namespaces]]\nname = \"a\"\n[hub.namespaces.x]\ny = 1\n"),
                   "hub.namespaces[0].x: unknown key"));
  }
  SUBCASE("an option of the wrong type or out of range") {
    CHECK(load_error("[[hub.namespaces]]\nname = \"a\"\nhistory_size = -5\n") ==
          "config error: test.toml:3: hub.namespaces[0].history_size: expected an integer from "
          "0 to 1000000 (0 = no history), got -5");
    CHECK(contains(load_error("[[hub.namespaces]]\nname = \"a\"\npresence = \"yes\"\n"),
                   "test.toml:3: hub.namespaces[0].presence: expected true or false"));
    CHECK(contains(load_error("[[hub.namespaces]]\nname = \"a\"\nhistory_ttl = 30\n"),
                   "test.toml:3: hub.namespaces[0].history_ttl: expected a duration (\"0s\" = no "
                   "history) as a string with a unit, got 30: write \"30s\""));
    // An unquoted duration: the TOML error names the namespace's key.
    const std::string unquoted = load_error(
        "[hub]\n[[hub.namespaces]]\nname = \"a\"\n[[hub.namespaces]]\nname = \"b\"\n"
        "history_ttl = 10s\n");
    CHECK(contains(unquoted, "test.toml:6: hub.namespaces[1].history_ttl: invalid TOML"));
    CHECK(contains(unquoted, "text needs quotes: history_ttl = \"10s\""));
  }
  SUBCASE("the name: required, letters, digits, _ and -, unique") {
    CHECK(load_error("[hub]\n[[hub.namespaces]]\npresence = true\n") ==
          "config error: test.toml:2: hub.namespaces[0].name: missing: every [[hub.namespaces]] "
          "table needs a name, e.g. name = \"chat\" for the channels \"chat:...\"");
    for (const std::string name : {"", "chat room", "a:b", "a#b", "caf\xc3\xa9", "a.b"}) {
      CAPTURE(name);
      CHECK(contains(load_error("[[hub.namespaces]]\nname = \"" + name + "\"\n"),
                     "config error: test.toml:2: hub.namespaces[0].name: expected a namespace "
                     "name of letters, digits, \"_\" and \"-\", e.g. \"chat\""));
    }
    CHECK(contains(load_error("[[hub.namespaces]]\nname = 7\n"),
                   "hub.namespaces[0].name: expected a namespace name"));
    CHECK(load_error("[[hub.namespaces]]\nname = \"chat\"\n[[hub.namespaces]]\nname = \"x\"\n"
                     "[[hub.namespaces]]\nname = \"chat\"\n") ==
          "config error: test.toml:6: hub.namespaces[2].name: \"chat\" is already the name of "
          "hub.namespaces[0] (test.toml:2): give each namespace a name of its own");
    // Names are case-sensitive, as channel names are.
    CHECK(load("[[hub.namespaces]]\nname = \"chat\"\n[[hub.namespaces]]\nname = \"Chat\"\n")
              .hub.namespaces.size() == 2);
  }
  SUBCASE("not an array of tables") {
    CHECK(load_error("[hub.namespaces]\nname = \"chat\"\n") ==
          "config error: test.toml:1: hub.namespaces: expected an array of tables: write each "
          "namespace as a [[hub.namespaces]] table (two brackets)");
    CHECK(contains(load_error("[hub]\nnamespaces = 5\n"),
                   "test.toml:2: hub.namespaces: expected an array of tables, one "
                   "[[hub.namespaces]] table per namespace, got 5"));
    CHECK(contains(load_error("[hub]\nnamespaces = [\"chat\"]\n"),
                   "test.toml:2: hub.namespaces[0]: expected a table with a name"));
    CHECK(contains(load_error("namespaces = [{name = \"a\"}]\n"),
                   "test.toml:1: `namespaces` belongs under [hub]: write each namespace as a "
                   "[[hub.namespaces]] table"));
  }
}

TEST_CASE("hub keys come from the environment and --set; namespaces only from the file") {
  CHECK(load(std::nullopt, {{"WSVISOR_HUB_ALLOW_ANONYMOUS", "true"}}).hub.allow_anonymous);
  CHECK_FALSE(load("hub.allow_anonymous = true", {{"WSVISOR_HUB_ALLOW_ANONYMOUS", "false"}})
                  .hub.allow_anonymous);
  // The default namespace's options too, and --set wins.
  const settings s = load(std::nullopt, {{"WSVISOR_HUB_PRESENCE", "true"}},
                          {"hub.presence=false", "hub.join_leave=true", "hub.history_size=5",
                           "hub.history_ttl=10s", "hub.channel_max_length=64"});
  CHECK_FALSE(s.hub.defaults.presence);
  CHECK(s.hub.defaults.join_leave);
  CHECK(s.hub.defaults.history_size == 5);
  CHECK(s.hub.defaults.history_ttl == 10s);
  CHECK(s.hub.channel_max_length == 64);
  CHECK(contains(load_error(std::nullopt, {{"WSVISOR_HUB_ALLOW_ANONYMOUS", "maybe"}}),
                 "environment variable WSVISOR_HUB_ALLOW_ANONYMOUS: hub.allow_anonymous: "
                 "expected true or false, got \"maybe\""));

  // Namespaces are tables: neither layer can write one, and says so.
  const std::string problem =
      "namespaces are set only in the configuration file, one [[hub.namespaces]] table each (see "
      "config/wsvisor.toml); the environment and --set cannot set them. The default namespace's "
      "options are keys of [hub] and can be: e.g. --set hub.presence=true or "
      "WSVISOR_HUB_PRESENCE=true";
  CHECK(load_error(std::nullopt, {}, {"hub.namespaces=[{name = \"chat\"}]"}) ==
        "config error: --set hub.namespaces: hub.namespaces: " + problem);
  CHECK(load_error(std::nullopt, {}, {"hub.namespaces[0].presence=true"}) ==
        "config error: --set hub.namespaces[0].presence: hub.namespaces: " + problem);
  CHECK(load_error(std::nullopt, {{"WSVISOR_HUB_NAMESPACES", "[]"}}) ==
        "config error: environment variable WSVISOR_HUB_NAMESPACES: hub.namespaces: " + problem);
  CHECK(contains(load_error(std::nullopt, {{"WSVISOR_HUB_NAMESPACES_CHAT_PRESENCE", "true"}}),
                 "WSVISOR_HUB_NAMESPACES_CHAT_PRESENCE: hub.namespaces: namespaces are set only "
                 "in the configuration file"));
  // The file's namespaces stay when other layers set [hub] keys.
  const settings layered = load("[[hub.namespaces]]\nname = \"chat\"\n", {}, {"hub.presence=true"});
  REQUIRE(layered.hub.namespaces.size() == 1);
  CHECK(layered.hub.namespaces[0].name == "chat");
}

TEST_CASE("hub: a history needs both history_size and history_ttl (Centrifugo's rule)") {
  CHECK(load_error("[hub]\nhistory_size = 10\n") ==
        "config error: test.toml:2: hub.history_ttl: the default namespace keeps 10 publications "
        "(hub.history_size from test.toml:2) for \"0s\" (hub.history_ttl, the default): "
        "Centrifugo keeps a history only with both, a size and a time to live: set history_ttl "
        "too, e.g. history_ttl = \"300s\", or history_size = 0 for no history");
  CHECK(load_error("[hub]\nhistory_ttl = \"1m\"\n") ==
        "config error: test.toml:2: hub.history_size: the default namespace keeps publications "
        "for \"1m\" (hub.history_ttl from test.toml:2) but none of them (hub.history_size = 0, "
        "the default): Centrifugo keeps a history only with both, a size and a time to live: set "
        "history_size too, e.g. history_size = 100, or history_ttl = \"0s\" for no history");
  // In a namespace: its keys, and the namespace's name.
  const std::string in_namespace = load_error(
      "[[hub.namespaces]]\nname = \"a\"\n[[hub.namespaces]]\nname = \"chat\"\n"
      "history_size = 10\n");
  CHECK(contains(in_namespace,
                 "config error: test.toml:5: hub.namespaces[1].history_ttl: "
                 "namespace \"chat\" keeps 10 publications"));
  CHECK(contains(in_namespace, "set history_ttl too"));
  // A namespace that leaves both out is located at its table.
  CHECK(contains(load_error("[[hub.namespaces]]\nname = \"a\"\nhistory_ttl = \"5s\"\n"),
                 "test.toml:3: hub.namespaces[0].history_size: namespace \"a\" keeps "
                 "publications for \"5s\""));
  // From other layers: the message says where each came from.
  CHECK(contains(load_error(std::nullopt, {{"WSVISOR_HUB_HISTORY_SIZE", "3"}}),
                 "environment variable WSVISOR_HUB_HISTORY_SIZE: hub.history_ttl: "));
  CHECK(load(std::nullopt, {}, {"hub.history_size=3", "hub.history_ttl=1s"})
            .hub.defaults.history_size == 3);
}

TEST_CASE("hub: force_recovery needs a history") {
  CHECK(load_error("[hub]\nforce_recovery = true\n") ==
        "config error: test.toml:2: hub.force_recovery: the default namespace recovers every "
        "subscription, from a history it does not keep (hub.history_size = 0, the default): set "
        "history_size and history_ttl, e.g. history_size = 100 and history_ttl = \"300s\", or "
        "force_recovery = false");
  CHECK(contains(load_error("[[hub.namespaces]]\nname = \"n\"\nforce_recovery = true\n"),
                 "test.toml:3: hub.namespaces[0].force_recovery: namespace \"n\" recovers every "
                 "subscription"));
  CHECK(load("[hub]\nforce_recovery = true\nhistory_size = 1\nhistory_ttl = \"1s\"\n")
            .hub.defaults.force_recovery);
}

TEST_CASE("hub: a namespace's proxy needs hub.<proxy>_proxy_path, and every path upstream.url") {
  const std::string url = "upstream.url = \"http://127.0.0.1:8000\"\n";
  CHECK(load_error(url + "[hub]\nsubscribe_proxy_enabled = true\n") ==
        "config error: test.toml:3: hub.subscribe_proxy_enabled: the default namespace sends its "
        "subscribe requests to the backend at upstream.url + hub.subscribe_proxy_path, which is "
        "\"\", the default: set hub.subscribe_proxy_path, e.g. subscribe_proxy_path = "
        "\"/centrifugo/subscribe\" under [hub] (with upstream.url), or subscribe_proxy_enabled = "
        "false");
  CHECK(load_error(url + "[hub]\npublish_proxy_enabled = true\n") ==
        "config error: test.toml:3: hub.publish_proxy_enabled: the default namespace sends its "
        "client publications to the backend at upstream.url + hub.publish_proxy_path, which is "
        "\"\", the default: set hub.publish_proxy_path, e.g. publish_proxy_path = "
        "\"/centrifugo/publish\" under [hub] (with upstream.url), or publish_proxy_enabled = "
        "false");
  CHECK(
      contains(load_error(url + "[[hub.namespaces]]\nname = \"p\"\npublish_proxy_enabled = true\n"),
               "test.toml:4: hub.namespaces[0].publish_proxy_enabled: namespace \"p\" sends its "
               "client publications"));
  const settings ok = load(url +
                           "[hub]\nsubscribe_proxy_path = \"/s\"\npublish_proxy_path = \"/p\"\n"
                           "subscribe_proxy_enabled = true\n[[hub.namespaces]]\nname = \"p\"\n"
                           "publish_proxy_enabled = true\n");
  CHECK(ok.hub.defaults.subscribe_proxy_enabled);
  CHECK(ok.hub.namespaces.at(0).publish_proxy_enabled);

  for (const std::string key : {"connect_proxy_path", "refresh_proxy_path", "rpc_proxy_path",
                                "send_proxy_path", "publish_proxy_path", "subscribe_proxy_path"}) {
    CAPTURE(key);
    CHECK(load_error("[hub]\n" + key + " = \"/hook\"\n") ==
          "config error: test.toml:2: hub." + key +
              ": \"/hook\" is a proxy to the backend, posted to upstream.url + this path, and "
              "upstream.url is \"\", the default: set upstream.url to the backend's base URL, "
              "e.g. url = \"http://127.0.0.1:8000\" under [upstream] (or "
              "WSVISOR_UPSTREAM_URL=http://127.0.0.1:8000), or set hub." +
              key + " = \"\" to turn that proxy off");
    CHECK(contains(load_error(std::nullopt, {}, {"hub." + key + "=/x"}),
                   "--set hub." + key + "=/x: hub." + key + ": \"/x\" is a proxy"));
    CHECK(load(url + "hub." + key + " = \"/hook\"").upstream.url == "http://127.0.0.1:8000");
  }
}

TEST_CASE("hub mode needs a way to identify a client, or allow_anonymous") {
  const std::string message = load_error("[app]\nmode = \"hub\"\n");
  CHECK(message ==
        "config error: test.toml:2: app.mode: \"hub\" has no way to identify a client: auth.mode "
        "is \"none\", the default, WSVISOR_AUTH_JWT_SECRET is not set, hub.connect_proxy_path is "
        "\"\", the default and hub.allow_anonymous is false, the default. Do one of: set "
        "auth.mode = \"header\" or \"jwt\" (the user comes with the upgrade request); set "
        "WSVISOR_AUTH_JWT_SECRET (auth.jwt_secret: the token of the connect command is checked "
        "with it); set hub.connect_proxy_path (the backend at upstream.url decides, e.g. "
        "\"/centrifugo/connect\"); or set hub.allow_anonymous = true (clients without identity "
        "come in as user \"\")");
  CHECK(contains(load_error(std::nullopt, {}, {"app.mode=hub"}), "--set app.mode=hub: app.mode: "));
  CHECK(contains(load_error(std::nullopt, {{"WSVISOR_APP_MODE", "hub"}}),
                 "environment variable WSVISOR_APP_MODE: app.mode: \"hub\" has no way"));

  // Each of the four fixes is enough on its own.
  const std::string secret(shortest_jwt_secret, 's');
  const std::string hub = "app.mode = \"hub\"\n";
  CHECK(load(hub + "auth.mode = \"header\"").app.mode == "hub");
  CHECK(load(hub + "auth.mode = \"jwt\"", {{"WSVISOR_AUTH_JWT_SECRET", secret}}).app.mode == "hub");
  // A secret alone (auth.mode "none"): tokens come in the connect command.
  const settings by_token = load(hub, {{"WSVISOR_AUTH_JWT_SECRET", secret}});
  CHECK(by_token.auth.mode == "none");
  CHECK(by_token.auth.jwt_secret == secret);
  CHECK(load(hub + "upstream.url = \"http://127.0.0.1:8000\"\n"
                   "hub.connect_proxy_path = \"/centrifugo/connect\"")
            .hub.connect_proxy_path == "/centrifugo/connect");
  CHECK(load(hub, {{"WSVISOR_HUB_ALLOW_ANONYMOUS", "true"}}).hub.allow_anonymous);
  // A connect proxy still needs its upstream.url.
  CHECK(contains(load_error(hub + "hub.connect_proxy_path = \"/c\""),
                 "hub.connect_proxy_path: \"/c\" is a proxy to the backend"));
  // auth.mode = "jwt" still needs its secret, in hub mode too.
  CHECK(contains(load_error(hub + "auth.mode = \"jwt\""),
                 "auth.jwt_secret: auth.mode = \"jwt\" needs the HS256 signing secret"));
  // Other modes need none of these.
  CHECK(load(std::nullopt).app.mode == "echo");
}

TEST_CASE("--check-config prints [hub] and every namespace") {
  const std::string url = "upstream.url = \"http://127.0.0.1:8000\"\n";
  const settings s = load(url + R"(
app.mode = "hub"
[hub]
allow_anonymous = true
rpc_proxy_path = "/rpc"
[[hub.namespaces]]
name = "chat"
history_size = 10
history_ttl = "2m"
)");
  const std::string rendered = render_effective(s, "test.toml");
  CHECK(contains(rendered, "\n[hub]\nallow_anonymous = true\n"));
  CHECK(contains(rendered, "\nrpc_proxy_path = \"/rpc\"\n"));
  CHECK(contains(rendered,
                 "\n[[hub.namespaces]]\nname = \"chat\"\npresence = false\njoin_leave = false\n"
                 "history_size = 10\nhistory_ttl = \"2m\"\nforce_recovery = false\n"));
  CHECK_FALSE(contains(rendered, "# hub.namespaces: none"));
  // The namespace tables end [hub]; [cluster] follows, and it all reads back.
  CHECK(rendered.find("[[hub.namespaces]]") < rendered.find("\n[cluster]\n"));
  CHECK(render_effective(load_settings(rendered, "effective.toml", {}, {})) == render_effective(s));
}

TEST_CASE("config/wsvisor.toml's example [[hub.namespaces]] is valid once uncommented") {
  const std::string path = repository_root() + "/config/wsvisor.toml";
  std::ifstream file(path);
  REQUIRE_MESSAGE(file, "cannot open " << path);
  std::string line, example;
  bool in_example = false;
  while (std::getline(file, line)) {
    if (line == "# [[hub.namespaces]]") in_example = true;
    if (!in_example) continue;
    if (line.rfind("# ", 0) != 0) break;
    example += line.substr(2) + "\n";
  }
  REQUIRE_FALSE(example.empty());
  const settings s = load(example);
  REQUIRE(s.hub.namespaces.size() == 1);
  CHECK(s.hub.namespaces[0].name == "chat");
  CHECK(s.hub.namespaces[0].history_size > 0);
}

TEST_CASE("valid values at the edges of each range are accepted") {
  const settings s = load(R"(
server.port = 65535
server.io_threads = 1024
server.host = "::"
server.allowed_origins = ["app://x", "http://localhost", "https://[::1]", "https://a.b:65535"]
server.trusted_proxies = ["0.0.0.0/0", "::/0"]
limits.messages_per_second = 0
limits.retry_after = "1s"
janitor.idle_timeout = "0s"
admin.listen = "[::1]:0"
)");
  CHECK(s.server.port == 65535);
  CHECK(s.server.io_threads == 1024);
  CHECK(s.server.allowed_origins.size() == 4);
  CHECK(s.server.trusted_proxies == std::vector<std::string>{"0.0.0.0/0", "::/0"});
  CHECK(s.admin.listen == "[::1]:0");
}

TEST_CASE("rules across keys name the key, and where both values came from") {
  SUBCASE("an explicit soft_connections above max_connections") {
    const std::string message =
        load_error("[limits]\nmax_connections = 100\nsoft_connections = 101\n");
    CHECK(contains(message, "test.toml:3: limits.soft_connections: "));
    CHECK(contains(message, "at most limits.max_connections (100 from test.toml:2)"));
    CHECK(contains(load_error(std::nullopt, {{"WSVISOR_LIMITS_SOFT_CONNECTIONS", "10001"}}),
                   "environment variable WSVISOR_LIMITS_SOFT_CONNECTIONS: "
                   "limits.soft_connections: "));
  }
  SUBCASE("probe_timeout not below admission_timeout") {
    const std::string message = load_error("[limits]\nadmission_timeout = \"500ms\"\n");
    CHECK(contains(message, "config error: janitor.probe_timeout: "));
    CHECK(contains(message, "below limits.admission_timeout (500ms from test.toml:2)"));
    CHECK(contains(load_error("[janitor]\nprobe_timeout = \"2s\"\n"),
                   "test.toml:2: janitor.probe_timeout: "));
  }
  SUBCASE("backoff_min above backoff_max") {
    CHECK(contains(load_error("[supervision]\nbackoff_min = \"2s\"\n"),
                   "test.toml:2: supervision.backoff_min: "));
  }
  SUBCASE("upstream.backoff_min above upstream.backoff_max") {
    CHECK(load("[upstream]\nbackoff_min = \"2s\"\n").upstream.backoff_min == 2s);  // equal is fine
    CHECK(load_error("[upstream]\nbackoff_min = \"2001ms\"\n") ==
          "config error: test.toml:2: upstream.backoff_min: expected a duration no longer than "
          "upstream.backoff_max (2s, the default), got \"2001ms\"");
    CHECK(load_error("[upstream]\nbackoff_max = \"50ms\"\n") ==
          "config error: upstream.backoff_min: expected a duration no longer than "
          "upstream.backoff_max (50ms from test.toml:2), got \"100ms\"");
  }
  SUBCASE("drain_spread above drain_timeout") {
    CHECK(contains(load_error("[shutdown]\ndrain_spread = \"9s\"\n"),
                   "test.toml:2: shutdown.drain_spread: "));
  }
  SUBCASE("gateway mode without upstream.url") {
    CHECK(load_error("[app]\nmode = \"gateway\"\n") ==
          "config error: test.toml:2: app.mode: \"gateway\" sends connections and messages to "
          "the backend at upstream.url, which is \"\", the default: set upstream.url to the "
          "backend's base URL, e.g. url = \"http://127.0.0.1:8000\" under [upstream], or "
          "WSVISOR_UPSTREAM_URL=http://127.0.0.1:8000");
    CHECK(contains(load_error("[upstream]\nurl = \"\"\n", {}, {"app.mode=gateway"}),
                   "--set app.mode=gateway: app.mode: \"gateway\" sends connections and "
                   "messages to the backend at upstream.url, which is \"\" from test.toml:2"));
    CHECK(load("app.mode = \"gateway\"\nupstream.url = \"http://127.0.0.1:8000\"").app.mode ==
          "gateway");
    // Other modes do not need one (the hub's proxies are optional).
    CHECK(load("app.mode = \"hub\"\nhub.allow_anonymous = true").upstream.url.empty());
  }
  SUBCASE("jwt mode without a secret") {
    const std::string message = load_error("[auth]\nmode = \"jwt\"\n");
    CHECK(contains(message, "test.toml:2: auth.jwt_secret: "));
    CHECK(contains(message, "WSVISOR_AUTH_JWT_SECRET"));
  }
}

TEST_CASE("unknown sections and keys, non-tables and bad TOML are errors with file:line") {
  const std::string section = load_error("[server]\nport = 1\n\n[limitz]\nmax = 1\n");
  CHECK(contains(section, "test.toml:4: "));
  CHECK(contains(section, "unknown section \"limitz\""));
  const std::string key = load_error("[server]\nport = 1\nprot = 2\n");
  CHECK(contains(key, "test.toml:3: server.prot: unknown key"));
  CHECK(contains(key, "ws_path"));
  CHECK(contains(load_error("server = 5\n"), "test.toml:1: server: expected a table"));
  const std::string syntax = load_error("[server]\nport = = 1\n");
  CHECK(contains(syntax, "config error: test.toml:2: invalid TOML"));
  CHECK(contains(load_error("[server]\nport = 1\nport = 2\n"), "test.toml:3: invalid TOML"));
  // The first mistake in the file is the one reported.
  CHECK(contains(load_error("[server]\nws_path = \"x\"\nhost = \"\"\n"), "server.ws_path"));
}

TEST_CASE("a key above every [section] says which section it belongs under") {
  CHECK(load_error("port = 8080\n") ==
        "config error: test.toml:1: `port` belongs under [server]: write it as [server] port = "
        "8080");
  CHECK(load_error("# top\nallowed_origins = [\"https://a.b\"]\n[server]\nport = 1\n") ==
        "config error: test.toml:2: `allowed_origins` belongs under [server]: write it as "
        "[server] allowed_origins = [\"https://a.b\"]");
  // A name two sections share: both are offered.
  CHECK(contains(load_error("mode = \"echo\"\n"),
                 "`mode` belongs under [auth] or [app] or [cluster]: write it as [auth] mode = "
                 "\"echo\" or [app] mode = \"echo\" or [cluster] mode = \"echo\""));
  // A secret is not echoed: it belongs in the environment.
  const std::string secret = load_error("token = \"hunter2-hunter2\"\n");
  CHECK(contains(secret, "test.toml:1: admin.token: "));
  CHECK(contains(secret, "WSVISOR_ADMIN_TOKEN"));
  CHECK_FALSE(contains(secret, "hunter2"));
  CHECK(load_error("verbose = true\n") ==
        "config error: test.toml:1: verbose: unknown top-level key; every key belongs under one "
        "of the sections server, auth, limits, janitor, supervision, shutdown, log, admin, "
        "faults, app, upstream, api, events, gateway, hub, cluster");
  // A table that is no section stays an unknown section.
  CHECK(contains(load_error("[port]\nx = 1\n"), "unknown section \"port\""));
}

TEST_CASE("an unquoted text value is a TOML error that suggests the quotes") {
  CHECK(load_error("[server]\nhost = 0.0.0.0\n") ==
        "config error: test.toml:2: server.host: invalid TOML: Error while parsing "
        "floating-point: expected decimal digit or exponent, saw '.'; text needs quotes: host = "
        "\"0.0.0.0\"");
  CHECK(contains(load_error("[janitor]\n# every 10 s\nping_interval = 10s   # comment\n"),
                 "test.toml:3: janitor.ping_interval: invalid TOML: "));
  CHECK(contains(load_error("[janitor]\nping_interval = 10s\n"),
                 "text needs quotes: ping_interval = \"10s\""));
  CHECK(contains(load_error("[admin]\nlisten = 127.0.0.1:9090\n"), "admin.listen: invalid TOML: "));
  CHECK(contains(load_error("server.ws_path = /ws\n"),
                 "server.ws_path: invalid TOML: Error while parsing value: could not determine "
                 "value type; text needs quotes: server.ws_path = \"/ws\""));
  CHECK(contains(load_error("[auth]\nmode = jwt\n"), "auth.mode: invalid TOML"));
  CHECK(contains(load_error("[server]\nallowed_origins = https://a.b\n"),
                 "write a list of quoted strings: allowed_origins = [\"https://a.b\"]"));
  // A secret is never echoed, even unquoted.
  const std::string secret = load_error("[auth]\njwt_secret = s3cr3t.s3cr3t\n");
  CHECK(contains(secret, "WSVISOR_AUTH_JWT_SECRET"));
  CHECK_FALSE(contains(secret, "s3cr3t"));
  // No hint where quotes would not help or the error is elsewhere.
  CHECK(load_error("[faults]\nenabled = yes\n").find("quotes") == std::string::npos);
  CHECK(load_error("[server]\nport = 1\nport = 2\n").find("quotes") == std::string::npos);
  CHECK(load_error("[server]\nport = = 1\n").find("quotes") == std::string::npos);
}

TEST_CASE("durations: units, fractions, the need for a unit, and the shortest format") {
  CHECK(parse_duration("250ms", "k") == 250ms);
  CHECK(parse_duration("10s", "k") == 10s);
  CHECK(parse_duration("5m", "k") == 5min);
  CHECK(parse_duration("1h", "k") == 1h);
  CHECK(parse_duration("0s", "k") == 0ms);
  CHECK(parse_duration("1.5s", "k") == 1500ms);
  CHECK(parse_duration("0.25m", "k") == 15s);
  CHECK(parse_duration("8760h", "k") == 8760h);

  const std::string bare = error_of([] { parse_duration("10", "janitor.ping_interval"); });
  CHECK(contains(bare, "janitor.ping_interval: "));
  CHECK(contains(bare, "add a unit, e.g. \"10s\""));
  for (const std::string text : {"", "s", "ms", "10 s", "10sec", "1d", "-", "--1s", "1.s", ".5s",
                                 "1.2.3s", "0.5ms", "8761h", "99999999999999h", " 1s"}) {
    CAPTURE(text);
    CHECK(contains(error_of([&] { parse_duration(text, "some.key"); }), "some.key: expected"));
  }

  CHECK(error_of([] { parse_duration("-1s", "some.key"); }) ==
        "config error: some.key: must not be negative, got \"-1s\"");

  CHECK(format_duration(0ms) == "0s");
  CHECK(format_duration(250ms) == "250ms");
  CHECK(format_duration(1500ms) == "1500ms");
  CHECK(format_duration(10s) == "10s");
  CHECK(format_duration(90s) == "90s");
  CHECK(format_duration(5min) == "5m");
  CHECK(format_duration(2h) == "2h");
  for (const duration value : std::vector<duration>{1ms, 999ms, 1001ms, 61s, 59min, 25h})
    CHECK(parse_duration(format_duration(value), "k") == value);
}

TEST_CASE("a negative duration is refused as negative, for every duration key") {
  CHECK(load_error(std::nullopt, {}, {"janitor.idle_timeout=-1s"}) ==
        "config error: --set janitor.idle_timeout=-1s: janitor.idle_timeout: must not be "
        "negative, got \"-1s\": expected a duration (\"0s\" = off)");
  CHECK(load_error("[janitor]\nping_interval = -5\n") ==
        "config error: test.toml:2: janitor.ping_interval: must not be negative, got -5: "
        "expected a duration above zero");
  CHECK(contains(load_error("shutdown.drain_spread = -0.5"), "must not be negative, got -0.5"));

  // The duration keys are the ones whose default renders as a quoted duration.
  std::istringstream defaults(render_effective(load(std::nullopt)));
  std::string section, line;
  size_t duration_keys = 0;
  while (std::getline(defaults, line)) {
    if (line.rfind("[", 0) == 0) section = line.substr(1, line.size() - 2);
    const size_t equals = line.find(" = \"");
    if (equals == std::string::npos || line.back() != '"') continue;
    const std::string value = line.substr(equals + 4, line.size() - equals - 5);
    if (!error_of([&] { parse_duration(value, "k"); }).empty()) continue;
    const std::string key = section + "." + line.substr(0, equals);
    CAPTURE(key);
    ++duration_keys;
    for (const std::string negative : {"-1s", "-250ms", "-0.5m"}) {
      const std::string message = load_error(std::nullopt, {}, {key + "=" + negative});
      CHECK(contains(message, key + ": must not be negative, got \"" + negative + "\""));
      CHECK_FALSE(contains(message, "with a unit"));
    }
  }
  CHECK(duration_keys == 28);
}

TEST_CASE("render_effective prints every key as TOML that reads back to the same settings") {
  const environment secrets = {{"WSVISOR_ADMIN_TOKEN", "t"},
                               {"WSVISOR_AUTH_JWT_SECRET", std::string(shortest_jwt_secret, 'j')},
                               {"WSVISOR_UPSTREAM_TOKEN", "u"},
                               {"WSVISOR_API_KEY", "k"}};
  const settings customised = load(
      R"(
[server]
host = "::1"
port = 0
allowed_origins = ["https://a.example", "http://b.example:81"]
trusted_proxies = ["10.0.0.1"]
scheduler = "pool"
handshake_timeout = "1.5s"
ws_path = "/odd\"path\\"
[auth]
mode = "jwt"
[limits]
accept_rate = 0.1
messages_per_second = 1e20
soft_connections = 3
[janitor]
idle_timeout = "90m"
max_lifetime = "25h"
[log]
level = "off"
[admin]
listen = "127.0.0.1:9090"
[faults]
enabled = true
[upstream]
url = "https://[::1]:8443/a%2Fb"
forward_headers = ["Cookie", "X-Trace"]
backoff_min = "1.5s"
[api]
listen = "[::1]:0"
[events]
url = "http://e/x?q=1&r=%22"
[gateway]
connect_path = "/c%20d"
error_frames = false
[hub]
allow_anonymous = true
connect_timeout = "250ms"
subscribe_proxy_path = "/sub"
history_size = 3
history_ttl = "90s"
[[hub.namespaces]]
name = "chat"
presence = true
subscribe_proxy_enabled = true
[[hub.namespaces]]
name = "Feed_2-b"
history_size = 1
history_ttl = "1h"
force_recovery = true
[cluster]
node_id = "n-1"
)",
      secrets);
  const std::string rendered = render_effective(customised);
  const settings fed_back = load_settings(rendered, "effective.toml", secrets, {});
  CHECK(render_effective(fed_back) == rendered);
  CHECK(fed_back.server.host == "::1");
  CHECK(fed_back.server.ws_path == "/odd\"path\\");
  CHECK(fed_back.limits.accept_rate == 0.1);
  CHECK(fed_back.limits.messages_per_second == 1e20);
  CHECK(fed_back.server.handshake_timeout == 1500ms);
  REQUIRE(fed_back.hub.namespaces.size() == 2);
  CHECK(fed_back.hub.namespaces[0].name == "chat");
  CHECK(fed_back.hub.namespaces[0].subscribe_proxy_enabled);
  CHECK(fed_back.hub.namespaces[1].name == "Feed_2-b");
  CHECK(fed_back.hub.namespaces[1].history_ttl == 1h);
  CHECK(fed_back.hub.defaults.history_size == 3);
  CHECK(contains(rendered, "\n[hub]\nallow_anonymous = true\nconnect_timeout = \"250ms\"\n"));
  CHECK(contains(rendered,
                 "\npublish_proxy_enabled = false\n\n[[hub.namespaces]]\nname = \"chat\"\n"
                 "presence = true\njoin_leave = false\nhistory_size = 0\n"));
  CHECK(contains(rendered, "\n[[hub.namespaces]]\nname = \"Feed_2-b\"\n"));

  // Every key appears, under its section.
  const std::string defaults = render_effective(load(std::nullopt));
  for (const std::string line : {"[server]",
                                 "host = \"0.0.0.0\"",
                                 "port = 8080",
                                 "ws_path = \"/ws\"",
                                 "io_threads = 0",
                                 "actor_threads = 0",
                                 "scheduler = \"io\"",
                                 "handshake_timeout = \"10s\"",
                                 "max_message_bytes = 65536",
                                 "allowed_origins = []",
                                 "trusted_proxies = []",
                                 "[auth]",
                                 "mode = \"none\"",
                                 "user_header = \"X-User-Id\"",
                                 "jwt_secret = \"\"",
                                 "allow_weak_secret = false",
                                 "[limits]",
                                 "max_connections = 10000",
                                 "soft_connections = 9000",
                                 "max_per_user = 20",
                                 "max_per_ip = 1000",
                                 "accept_rate = 2000.0",
                                 "accept_burst = 4000",
                                 "max_pending_handshakes = 1024",
                                 "messages_per_second = 0.0",
                                 "messages_burst = 100",
                                 "send_queue_bytes = 1048576",
                                 "admission_timeout = \"1s\"",
                                 "retry_after = \"5s\"",
                                 "user_overflow = \"reject\"",
                                 "[janitor]",
                                 "sweep_interval = \"1s\"",
                                 "ping_interval = \"25s\"",
                                 "pong_timeout = \"10s\"",
                                 "probe_timeout = \"500ms\"",
                                 "idle_timeout = \"0s\"",
                                 "max_lifetime = \"0s\"",
                                 "close_timeout = \"5s\"",
                                 "[supervision]",
                                 "connection_restarts = 3",
                                 "connection_restart_period = \"1m\"",
                                 "service_restarts = 5",
                                 "service_restart_period = \"10s\"",
                                 "backoff_min = \"10ms\"",
                                 "backoff_max = \"1s\"",
                                 "[shutdown]",
                                 "drain_timeout = \"8s\"",
                                 "drain_spread = \"2s\"",
                                 "[log]",
                                 "level = \"info\"",
                                 "format = \"text\"",
                                 "[admin]",
                                 "listen = \"\"",
                                 "token = \"\"",
                                 "[faults]",
                                 "enabled = false",
                                 "[app]",
                                 "mode = \"echo\"",
                                 "[upstream]",
                                 "url = \"\"",
                                 "timeout = \"5s\"",
                                 "max_inflight = 256",
                                 "per_connection_inflight = 1",
                                 "queue = 64",
                                 "retries = 2",
                                 "backoff_min = \"100ms\"",
                                 "backoff_max = \"2s\"",
                                 "breaker_failures = 20",
                                 "breaker_window = \"10s\"",
                                 "breaker_open = \"5s\"",
                                 "forward_headers = [\"Cookie\", \"Authorization\", "
                                 "\"User-Agent\", \"Origin\"]",
                                 "max_response_bytes = 1048576",
                                 "token = \"\"",
                                 "[api]",
                                 "key = \"\"",
                                 "listen = \"\"",
                                 "max_body_bytes = 1048576",
                                 "[events]",
                                 "url = \"\"",
                                 "timeout = \"2s\"",
                                 "retries = 5",
                                 "queue = 10000",
                                 "[gateway]",
                                 "connect_path = \"\"",
                                 "message_path = \"/ws/message\"",
                                 "connect_concurrency = 64",
                                 "error_frames = true",
                                 "[hub]",
                                 "allow_anonymous = false",
                                 "connect_timeout = \"10s\"",
                                 "channel_max_length = 255",
                                 "user_personal_channel = false",
                                 "max_channels_per_connection = 128",
                                 "recovery_max_publications = 300",
                                 "connect_proxy_path = \"\"",
                                 "refresh_proxy_path = \"\"",
                                 "rpc_proxy_path = \"\"",
                                 "send_proxy_path = \"\"",
                                 "publish_proxy_path = \"\"",
                                 "subscribe_proxy_path = \"\"",
                                 "presence = false",
                                 "join_leave = false",
                                 "history_size = 0",
                                 "history_ttl = \"0s\"",
                                 "force_recovery = false",
                                 "allow_subscribe_for_client = false",
                                 "allow_subscribe_for_anonymous = false",
                                 "allow_publish_for_subscriber = false",
                                 "allow_publish_for_client = false",
                                 "allow_presence_for_subscriber = false",
                                 "allow_history_for_subscriber = false",
                                 "subscribe_proxy_enabled = false",
                                 "publish_proxy_enabled = false",
                                 "# hub.namespaces: none (each [[hub.namespaces]] table adds one)",
                                 "[cluster]",
                                 "node_id = \"\""}) {
    CAPTURE(line);
    CHECK(contains(defaults, "\n" + line + "\n"));
  }
  CHECK(render_effective(load(defaults)) == defaults);
}

TEST_CASE("the effective configuration names the file it was read from, as a TOML comment") {
  scratch_directory scratch;
  const std::string path = scratch.write("custom.toml", "[server]\nport = 7000\n");
  const cli_result cli = run_cli({"--config", path, "--check-config"});
  const std::string from_file = render_effective(cli.config, cli.config_path);
  CHECK(from_file.rfind(
            "# wsvisor effective configuration (read from " + path + ")\n# secrets redacted\n",
            0) == 0);
  CHECK(contains(from_file, "\nport = 7000\n"));

  const cli_result defaults = run_cli({"--check-config"});
  CHECK(render_effective(defaults.config, defaults.config_path)
            .rfind("# wsvisor effective configuration (built-in defaults, no file read)\n", 0) ==
        0);

  // Valid TOML that reads back to the same settings, whatever the file name holds.
  for (const std::string& odd_path : std::vector<std::string>{path, "we\nird\r\x01name.toml", ""}) {
    const std::string rendered = render_effective(cli.config, odd_path);
    CHECK(render_effective(load_settings(rendered, "effective.toml", {}, {})) ==
          render_effective(cli.config));
  }
}

TEST_CASE("config/wsvisor.toml documents exactly the built-in defaults") {
  const std::string path = repository_root() + "/config/wsvisor.toml";
  std::ifstream file(path);
  REQUIRE_MESSAGE(file, "cannot open " << path);
  const std::string text{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
  CHECK(render_effective(load_settings(text, "wsvisor.toml", {}, {})) ==
        render_effective(load(std::nullopt)));
  // Every key is in the file, under its own section (a key left out would silently take
  // its default, and names such as "url" or "timeout" recur in several sections).
  const auto keys_by_section = [](const std::string& toml) {
    std::set<std::string> keys;
    std::istringstream lines(toml);
    std::string line, section;
    while (std::getline(lines, line)) {
      if (line.rfind("[", 0) == 0) section = line.substr(1, line.find(']') - 1);
      const size_t equals = line.find(" = ");
      if (!line.empty() && line[0] != '#' && line[0] != '[' && equals != std::string::npos)
        keys.insert(section + "." + line.substr(0, equals));
    }
    return keys;
  };
  const auto documented = keys_by_section(text);
  const auto rendered = keys_by_section(render_effective(load(std::nullopt)));
  for (const auto& key : rendered) {
    CAPTURE(key);
    CHECK(documented.count(key) == 1);
  }
  // The keys of CONTRACT sections 2, 11, 12 and 13 (hub.namespaces, printed as tables of
  // its own, is none of these lines), section 14's cluster keys, section 16's TLS keys
  // (server.tls_cert_file, server.tls_key_file, admin.tls, api.tls) and compression keys
  // (server.compression, _threshold, _window_bits, _mem_level), and
  // auth.allow_weak_secret.
  CHECK(rendered.size() == 116);
}

TEST_CASE("command line: --help, --version, --check-config and running") {
  const cli_result help = run_cli({"--help"});
  CHECK(help.action == cli_action::help);
  for (const std::string flag : {"--help", "--version", "--config", "--set", "--check-config"})
    CHECK(contains(help.help_text, flag));
  // Every secret, from the key table.
  CHECK(contains(help.help_text,
                 "Secrets come only from the environment: WSVISOR_AUTH_JWT_SECRET "
                 "(auth.jwt_secret), WSVISOR_ADMIN_TOKEN (admin.token), WSVISOR_UPSTREAM_TOKEN "
                 "(upstream.token), WSVISOR_API_KEY (api.key) and WSVISOR_CLUSTER_REDIS_PASSWORD "
                 "(cluster.redis_password)."));
  CHECK(run_cli({"-h"}).action == cli_action::help);
  // Asking for help works even when the rest would fail.
  CHECK(run_cli({"--help", "--config", "/nonexistent.toml"}).action == cli_action::help);

  const cli_result version = run_cli({"--version"});
  CHECK(version.action == cli_action::version);
  CHECK(version.help_text == std::string("wsvisor ") + WSVISOR_VERSION);

  const cli_result check = run_cli({"--check-config", "--set", "server.port=1234"});
  CHECK(check.action == cli_action::check_config);
  CHECK(check.config.server.port == 1234);

  const cli_result run = run_cli({}, {{"PORT", "4321"}});
  CHECK(run.action == cli_action::run);
  CHECK(run.config_path.empty());  // the default path does not exist: defaults only
  CHECK(run.config.server.port == 4321);
  CHECK(run.config.limits.soft_connections == 9000);
}

TEST_CASE("command line: --config, the default path, repeated --set") {
  scratch_directory scratch;
  const std::string path =
      scratch.write("custom.toml", "[server]\nport = 7000\nws_path = \"/x\"\n");
  const cli_result given = run_cli({"--config", path, "--set", "server.port=7001", "--set",
                                    "log.level=debug", "--set=faults.enabled=true"});
  CHECK(given.config_path == path);
  CHECK(given.config.server.port == 7001);
  CHECK(given.config.server.ws_path == "/x");
  CHECK(given.config.log.level == "debug");
  CHECK(given.config.faults.enabled);

  const cli_result by_default = run_cli({}, {}, path);
  CHECK(by_default.config_path == path);
  CHECK(by_default.config.server.port == 7000);

  // Errors in the file name the file as it was given.
  const std::string bad = scratch.write("bad.toml", "[server]\n\nport = \"x\"\n");
  CHECK(contains(cli_error({"--config", bad}), bad + ":3: server.port: "));
}

TEST_CASE("command line errors: unknown flag, stray argument, missing or unreadable file") {
  CHECK(contains(cli_error({"--verbose"}), "--verbose"));
  CHECK(contains(cli_error({"run"}), "run"));
  CHECK(contains(cli_error({"--set", "log.level=debug", "log.format=json"}), "log.format=json"));
  CHECK(contains(cli_error({"--config"}), "--config"));
  CHECK(contains(cli_error({"--config", "/nonexistent/wsvisor.toml"}),
                 "--config /nonexistent/wsvisor.toml: no such file"));
  CHECK(contains(cli_error({"--config", "/tmp"}), "is a directory"));
  CHECK(contains(cli_error({"--set", "limits.max_connections=0"}), "limits.max_connections"));
  CHECK(contains(cli_error({}, {{"WSVISOR_NOPE", "1"}}), "WSVISOR_NOPE"));
  if (::geteuid() != 0) {  // root reads any file
    scratch_directory scratch;
    const std::string path = scratch.write("locked.toml", "");
    std::filesystem::permissions(path, std::filesystem::perms::none);
    CHECK(contains(cli_error({"--config", path}), "cannot read"));
  }
}

TEST_CASE("thread counts: 0 means one per core, and the mode picks which key runs actors") {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  settings s = load(std::nullopt);
  CHECK(io_thread_count(s) == cores);
  CHECK(actor_thread_count(s) == cores);
  s.server.io_threads = 3;
  s.server.actor_threads = 5;
  CHECK(io_thread_count(s) == 3);
  CHECK(actor_thread_count(s) == 3);  // "io": actors run on the I/O threads
  s.server.scheduler = "pool";
  CHECK(actor_thread_count(s) == 5);
  s.server.actor_threads = 0;
  CHECK(actor_thread_count(s) == cores);
}

TEST_CASE("process_environment reads the real environment") {
  ::setenv("WSVISOR_TEST_CONFIG_PROBE", "a=b", 1);
  const environment env = process_environment();
  ::unsetenv("WSVISOR_TEST_CONFIG_PROBE");
  REQUIRE(env.count("WSVISOR_TEST_CONFIG_PROBE") == 1);
  CHECK(env.at("WSVISOR_TEST_CONFIG_PROBE") == "a=b");
}
