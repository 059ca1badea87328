#include "options.hpp"

#include "scenario.hpp"

#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>

namespace wsload {
namespace {

const std::vector<std::string> kModes = {"echo", "connect",   "hold",      "storm",   "zombie",
                                         "slow", "slowloris", "subscribe", "publish", "reconnect"};

// Thrown by the value readers; turned into a usage error naming the flag.
struct BadValue : std::runtime_error {
  using std::runtime_error::runtime_error;
};

double to_double(const std::string& text, double min, double max) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    throw BadValue("not a number: '" + text + "'");
  }
  if (used != text.size() || !std::isfinite(value)) throw BadValue("not a number: '" + text + "'");
  if (value < min || value > max) {
    std::ostringstream message;
    message << text << " is outside [" << min << ", " << max << "]";
    throw BadValue(message.str());
  }
  return value;
}

std::uint64_t to_uint(const std::string& text, std::uint64_t min, std::uint64_t max) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw BadValue("not a whole number: '" + text + "'");
  }
  if (value < min || value > max) {
    throw BadValue(text + " is outside [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return value;
}

// A switch: "on" or "off".
bool to_switch(const std::string& text) {
  if (text != "on" && text != "off") throw BadValue("expected on or off");
  return text == "on";
}

// wsload may only ever send to this machine: every address it dials or binds must be
// in 127.0.0.0/8 or ::1.
boost::asio::ip::address loopback_address(const std::string& text) {
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(text == "localhost" ? "127.0.0.1" : text, ec);
  if (ec) throw BadValue("not an IP address: '" + text + "'");
  if (!address.is_loopback()) throw BadValue(text + " is not a loopback address");
  return address;
}

struct Flag {
  std::string name;
  std::string value_name;  // empty: a switch without value
  std::string help;
  std::function<void(Options&, const std::string&)> apply;
};

const std::vector<Flag>& flags() {
  static const std::vector<Flag> table = {
      {"--mode", "MODE", "the mode, instead of the first argument",
       [](Options& o, const std::string& v) {
         if (std::find(kModes.begin(), kModes.end(), v) == kModes.end()) {
           throw BadValue("unknown mode '" + v + "'");
         }
         if (!o.mode.empty() && o.mode != v) throw BadValue("the mode is given twice");
         o.mode = v;
       }},
      {"--host", "ADDR", "server address, loopback only (127.0.0.1)",
       [](Options& o, const std::string& v) { o.host = loopback_address(v).to_string(); }},
      {"--port", "N", "server port (8080)",
       [](Options& o, const std::string& v) {
         o.port = static_cast<std::uint16_t>(to_uint(v, 1, 65535));
       }},
      {"--path", "PATH", "WebSocket path (/ws)",
       [](Options& o, const std::string& v) {
         if (v.empty() || v[0] != '/') throw BadValue("the path must start with '/'");
         o.path = v;
       }},
      {"--duration", "SECONDS",
       "how long the load runs (5); every mode stops by itself then, and the hard deadline "
       "is duration + grace (echo: the duration is its measuring window, after the ramp and "
       "--warmup; its hard deadline adds the ramp bound and the warm-up)",
       [](Options& o, const std::string& v) { o.duration_s = to_double(v, 0.01, 86400); }},
      {"--warmup", "SECONDS",
       "echo, subscribe: once every connection is up (or has failed), wait this long before the "
       "measuring window opens; --duration then counts from the window's opening, so the run "
       "lasts ramp + warm-up + duration (0)",
       [](Options& o, const std::string& v) { o.warmup_s = to_double(v, 0, 86400); }},
      {"--grace", "SECONDS",
       "time after the duration for clean closes before everything is abandoned (5)",
       [](Options& o, const std::string& v) { o.grace_s = to_double(v, 0.1, 3600); }},
      {"--threads", "N", "I/O threads (1)",
       [](Options& o, const std::string& v) { o.threads = static_cast<int>(to_uint(v, 1, 64)); }},
      {"--header", "'NAME: VALUE'", "extra upgrade request header, repeatable (e.g. X-User-Id: u1)",
       [](Options& o, const std::string& v) {
         auto colon = v.find(':');
         if (colon == std::string::npos || colon == 0) throw BadValue("expected 'Name: value'");
         std::string value = v.substr(colon + 1);
         value.erase(0, value.find_first_not_of(" \t"));
         o.headers.emplace_back(v.substr(0, colon), value);
       }},
      {"--subprotocol", "NAME", "offer this Sec-WebSocket-Protocol",
       [](Options& o, const std::string& v) { o.subprotocol = v; }},
      {"--tls", "on|off",
       "every mode that upgrades (echo, connect, storm, hold, subscribe, publish, reconnect): "
       "wss, TLS before the upgrade; the server's certificate is not verified (a load test "
       "of one's own server) (off)",
       [](Options& o, const std::string& v) { o.tls = to_switch(v); }},
      {"--source-addrs", "A,B,...",
       "bind client sockets round-robin to these loopback addresses (e.g. "
       "127.0.0.1,127.0.0.2) so that more than ~28k connections reach one port",
       [](Options& o, const std::string& v) {
         o.source_addrs.clear();
         std::stringstream list(v);
         std::string item;
         while (std::getline(list, item, ',')) {
           if (!item.empty()) o.source_addrs.push_back(loopback_address(item));
         }
         if (o.source_addrs.empty()) throw BadValue("no address given");
       }},
      {"--connections", "N",
       "connections (echo, hold, zombie, slow, slowloris, subscribe, reconnect) or concurrent "
       "workers "
       "(connect) (10)",
       [](Options& o, const std::string& v) {
         o.connections = static_cast<int>(to_uint(v, 1, 1000000));
       }},
      {"--in-flight", "K",
       "echo: messages outstanding per connection, 1 = request/response; publish: "
       "publications outstanding, each on a keep-alive connection of its own (1)",
       [](Options& o, const std::string& v) {
         o.in_flight = static_cast<int>(to_uint(v, 1, 100000));
       }},
      {"--size", "BYTES",
       "echo, slow, reconnect: message size; publish: size of the publication's data, "
       "{\"ts\":...,\"pad\":\"x..\"} (64)",
       [](Options& o, const std::string& v) { o.size = to_uint(v, 1, 64u << 20); }},
      {"--binary", "", "echo, slow: send binary messages instead of text",
       [](Options& o, const std::string&) { o.binary = true; }},
      {"--compression", "on|off",
       "echo: offer permessage-deflate (RFC 7692, client_no_context_takeover) and send every "
       "message compressed (off)",
       [](Options& o, const std::string& v) { o.compression = to_switch(v); }},
      {"--payload", "random|json",
       "echo: random letters (every message differs; compresses poorly) or JSON-like text "
       "(records with field names and numbers, as an API sends; compresses well) (random)",
       [](Options& o, const std::string& v) {
         if (v != "random" && v != "json") throw BadValue("expected random or json");
         o.json_payload = v == "json";
       }},
      {"--count", "N",
       "connect: stop after N attempts; publish: after N publications (0 = only the duration "
       "bounds it)",
       [](Options& o, const std::string& v) { o.count = to_uint(v, 0, UINT64_MAX); }},
      {"--cycles", "N", "storm: connect/disconnect cycles (1000)",
       [](Options& o, const std::string& v) { o.cycles = to_uint(v, 1, 10000000); }},
      {"--concurrency", "N", "storm: cycles run at once (50)",
       [](Options& o, const std::string& v) {
         o.concurrency = static_cast<int>(to_uint(v, 1, 100000));
       }},
      {"--abort-fraction", "F", "storm: share of cycles aborted mid-handshake (0)",
       [](Options& o, const std::string& v) { o.abort_fraction = to_double(v, 0, 1); }},
      {"--reset-fraction", "F", "storm: share of cycles reset with TCP RST after the upgrade (0)",
       [](Options& o, const std::string& v) { o.reset_fraction = to_double(v, 0, 1); }},
      {"--rate", "PER_SECOND",
       "cap on new connection attempts per second over all workers (reconnect: the first "
       "connects only), 0 = unpaced (0)",
       [](Options& o, const std::string& v) { o.rate = to_double(v, 0, 1e9); }},
      {"--message-rate", "PER_SECOND",
       "slow: messages per second per connection, 0 = as fast as the socket takes them; "
       "publish: publications per second in all, evenly spaced (no catch-up burst after "
       "falling behind), 0 = as fast as --in-flight allows (0)",
       [](Options& o, const std::string& v) { o.message_rate = to_double(v, 0, 1e9); }},
      {"--byte-interval", "MS", "slowloris: delay between request bytes (100)",
       [](Options& o, const std::string& v) { o.byte_interval_ms = to_double(v, 0, 3600000); }},
      {"--handshake-timeout", "SECONDS",
       "client-side bound on TCP connect + upgrade and on a clean close (10)",
       [](Options& o, const std::string& v) { o.handshake_timeout_s = to_double(v, 0.01, 3600); }},
      {"--probe-interval", "MS",
       "zombie, slow: how often each socket's TCP state is checked for a server close (250)",
       [](Options& o, const std::string& v) { o.probe_interval_ms = to_double(v, 1, 60000); }},
      {"--protocol", "centrifugo|uws",
       "subscribe, publish: Centrifugo's client protocol and /api/publish (wsvisor's hub "
       "mode), or uws: the uWebSockets peer of bench/servers/uws_pubsub.js, where a "
       "subscriber only counts text messages and a publisher sends each publication as a "
       "message and waits for the peer's acknowledgement (centrifugo)",
       [](Options& o, const std::string& v) {
         if (v != "centrifugo" && v != "uws") throw BadValue("expected centrifugo or uws");
         o.protocol = v;
       }},
      {"--channel", "NAME", "subscribe, publish: the channel (bench)",
       [](Options& o, const std::string& v) {
         if (v.empty()) throw BadValue("the channel name is empty");
         o.channel = v;
       }},
      {"--channels", "K",
       "subscribe (centrifugo): channels per connection: 1 = --channel, K > 1 = --channel "
       "with 0..K-1 appended, 0 = connect without subscribing (1)",
       [](Options& o, const std::string& v) {
         o.channels = static_cast<int>(to_uint(v, 0, 100000));
       }},
      {"--token", "JWT", "subscribe (centrifugo): the connect command's token (none)",
       [](Options& o, const std::string& v) { o.token = v; }},
      {"--api-key", "KEY",
       "publish (centrifugo): X-API-Key of /api/publish (default: $WSVISOR_API_KEY)",
       [](Options& o, const std::string& v) { o.api_key = v; }},
      {"--api-path", "PATH", "publish (centrifugo): the publish endpoint (/api/publish)",
       [](Options& o, const std::string& v) {
         if (v.empty() || v[0] != '/') throw BadValue("the path must start with '/'");
         o.api_path = v;
       }},
      {"--users", "K",
       "reconnect: client i sends X-User-Id: u<i % K> (auth.mode = header), 0 = only what "
       "--header sends (0)",
       [](Options& o, const std::string& v) {
         o.users = static_cast<int>(to_uint(v, 0, 1000000));
       }},
      {"--backoff-base-ms", "MS",
       "reconnect: the first retry after a close or a failed attempt waits a random time in "
       "[0, MS]; each further failed attempt doubles the bound (100)",
       [](Options& o, const std::string& v) { o.backoff_base_ms = to_double(v, 0, 3600000); }},
      {"--backoff-max-ms", "MS", "reconnect: the cap of the doubling bound (5000)",
       [](Options& o, const std::string& v) { o.backoff_max_ms = to_double(v, 0, 3600000); }},
      {"--message-interval-ms", "MS",
       "reconnect: each connected client sends one echo message (--size bytes, its "
       "sequence number inside) this often (1000)",
       [](Options& o, const std::string& v) { o.message_interval_ms = to_double(v, 1, 3600000); }},
      {"--lost-after-ms", "MS",
       "reconnect: a message whose echo has not come this long after it was sent is lost; "
       "an echo that still comes makes it late instead (5000)",
       [](Options& o, const std::string& v) { o.lost_after_ms = to_double(v, 1, 3600000); }},
      {"--silence-timeout-ms", "MS",
       "reconnect: a client that receives nothing (no echo, no ping) this long drops the "
       "TCP connection and reconnects, counted as close \"silence\"; 0 = off (10000)",
       [](Options& o, const std::string& v) { o.silence_timeout_ms = to_double(v, 0, 3600000); }},
      {"--scenario", "FILE",
       "reconnect: play the file's faults on POST /admin/faults and report per fault (the "
       "format is under 'scenario files' above)",
       [](Options& o, const std::string& v) {
         if (v.empty()) throw BadValue("no file given");
         o.scenario_path = v;
       }},
      {"--admin-token", "TOKEN",
       "reconnect --scenario: the admin API's bearer token (default: $WSVISOR_ADMIN_TOKEN)",
       [](Options& o, const std::string& v) { o.admin_token = v; }},
      {"--admin-port", "N",
       "reconnect --scenario: the port of the admin API when the server has admin.listen "
       "(default: --port)",
       [](Options& o, const std::string& v) {
         o.admin_port = static_cast<std::uint16_t>(to_uint(v, 1, 65535));
       }},
      {"--quiet", "", "no progress lines on stderr",
       [](Options& o, const std::string&) { o.quiet = true; }},
  };
  return table;
}

// Loads --scenario and applies its settings to the options the command line left alone;
// the error names the file and line.
std::optional<std::string> apply_scenario(Options& options, const std::set<std::string>& given) {
  if (options.mode != "reconnect") return "--scenario is for the reconnect mode";
  std::shared_ptr<Scenario> scenario;
  try {
    scenario = std::make_shared<Scenario>(load_scenario(options.scenario_path));
  } catch (const ScenarioError& bad) {
    return std::string(bad.what());
  }
  auto where = [&](int line) { return scenario->path + ":" + std::to_string(line) + ": "; };
  for (const auto& setting : scenario->settings) {
    if (given.count(setting.flag) != 0) continue;
    auto flag = std::find_if(flags().begin(), flags().end(),
                             [&](const Flag& f) { return f.name == setting.flag; });
    try {
      flag->apply(options, setting.value);
    } catch (const BadValue& bad) {
      return where(setting.line) + setting.key + ": " + bad.what();
    }
  }
  for (const auto& fault : scenario->faults) {
    if (fault.at_s >= options.duration_s) {
      std::ostringstream message;
      message << where(fault.line) << "the fault at " << fault.at_s
              << "s is not before the end of the run (duration " << options.duration_s << "s)";
      return message.str();
    }
  }
  if (!scenario->faults.empty() && admin_token(options).empty()) {
    return scenario->path + ": its faults need --admin-token or $WSVISOR_ADMIN_TOKEN";
  }
  options.scenario = std::move(scenario);
  return std::nullopt;
}

bool is_user_header(const std::string& name) {
  static const std::string user = "x-user-id";
  return name.size() == user.size() &&
         std::equal(name.begin(), name.end(), user.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == b;
         });
}

std::optional<std::string> check_reconnect(const Options& options) {
  if (options.backoff_max_ms < options.backoff_base_ms) {
    return "--backoff-max-ms must not be below --backoff-base-ms";
  }
  if (options.silence_timeout_ms > 0 && options.silence_timeout_ms <= options.message_interval_ms) {
    // The echoes are what a healthy connection hears; with a longer interval a quiet but
    // healthy server would look dead.
    return "--silence-timeout-ms must be above --message-interval-ms (or 0 = off)";
  }
  if (options.users > 0 &&
      std::any_of(options.headers.begin(), options.headers.end(),
                  [](const auto& header) { return is_user_header(header.first); })) {
    return "--users and --header X-User-Id both set the user";
  }
  return std::nullopt;
}

}  // namespace

std::string usage_text() {
  std::ostringstream out;
  out << R"(usage: wsload <mode> [options]   (or: wsload --mode <mode> [options])

Load and misbehaviour client for a WebSocket server on this machine. Prints one JSON
object on stdout when the run ends; progress and errors go to stderr. Exit 0 when the
run completed (also when the server refused or closed connections), 2 on bad usage.
Every mode stops by itself after --duration (echo: --duration of measuring after its
ramp and --warmup); whatever is still open --grace seconds later is abandoned. The soft
RLIMIT_NOFILE is raised to the hard limit at start.

modes:
  echo       --connections C each keep --in-flight K messages of --size S bytes
             outstanding (text, or --binary) and check every echo byte for byte.
             The run has three parts: the ramp, until every connection is up or
             has failed (failed ones are not retried; at most twice
             --handshake-timeout, the bound of a connect plus an upgrade), then
             --warmup seconds, then the measuring window of --duration seconds.
             JSON, window only: messages_per_second (echoes received in the window
             / its length), latency_us {count,min,mean,p50,p90,p99,p999,max},
             window {ramp_s, ramp_bound_hit, all_connected, warmup_s, start_s,
             seconds, messages_received} (all_connected: every connection was up
             when the ramp ended; start_s: seconds from the start to the window's
             opening, null if a signal came first). JSON, whole run:
             messages_sent, messages_received, mismatches, errors, refusals,
             connections_ok, connections_failed, closed_by_server,
             abandoned_in_flight, and elapsed_s.
  connect    --connections workers open upgrades as fast as they can (or at --rate),
             closing each cleanly after the 101, until --duration or --count attempts.
             JSON: attempts, upgrades, upgrades_per_second, handshake_latency_us,
             refusals {"503":n,...}, errors.
  hold       --connections idle connections held for --duration, answering pings
             (optionally paced by --rate and spread over --source-addrs).
             JSON: established, failed, refusals, errors, peak, open_at_end,
             closed_by_server, close_codes {"1001":n,...; "1006" = no close frame}.
  storm      --cycles connect/disconnect cycles, --concurrency at once; a share
             --abort-fraction sends half the upgrade request then closes, a share
             --reset-fraction upgrades then resets with TCP RST (SO_LINGER 0), the
             rest upgrade and close cleanly.
             JSON: cycles_planned, cycles_done {"clean","abort","reset"},
             cycles_per_second, refusals, errors, completed.
  zombie     --connections upgrade and then never read or write again (no pongs).
             The kernel TCP state is probed every --probe-interval ms to see the
             server close without reading; at the end the socket is drained.
             JSON: established, failed, refusals, errors, closed_by_server
             {"fin":n,"reset":n}, time_to_close_s, open_at_end, pings_seen,
             close_codes (close frames found when draining at the end).
  slow       --connections upgrade and send --size messages continuously (or at
             --message-rate) and never read, so the server's send queue grows.
             JSON: established, bytes_sent, messages_sent, closed_by_server
             {"fin":n,"reset":n}, time_to_close_s, write_errors, open_at_end,
             close_codes and bytes_drained (what the receive buffer held at the end).
  slowloris  --connections send the upgrade request one byte every --byte-interval
             ms. JSON: request_bytes, closed_before_upgrade, time_to_close_s,
             answered_before_upgrade {"408":n,...}, upgraded, refusals,
             still_dribbling_at_end, errors.
  subscribe  --connections subscribers (paced by --rate). centrifugo: each sends the
             connect command (--token), then one frame of --channels subscribe
             commands, answers the server's pings ({} -> {}, when the connect reply
             asked for pongs) and counts publication pushes; uws: each counts every
             text message. A delivery's latency is now - its data's "ts"
             (CLOCK_MONOTONIC ns, written by `wsload publish` on this machine).
             Like echo: a ramp until every connection is subscribed or has failed,
             --warmup, then the measuring window of --duration.
             JSON, window only: deliveries_per_second, latency_us, window {ramp_s,
             ramp_bound_hit, all_subscribed, warmup_s, start_s, seconds,
             deliveries, cpu_s (wsload's own CPU time: near seconds, the client
             is the limit)}.
             JSON, whole run: established, failed, connect_ok, connect_errors
             {"code":n}, subscribed, subscribe_errors, deliveries,
             deliveries_without_ts, pings, pongs_sent, disconnect_pushes {"code":n},
             other_pushes, unexpected_replies, malformed, closed_by_server,
             close_codes, open_at_end, refusals, errors.
  publish    --in-flight K publishers, one publication outstanding each, at
             --message-rate in all (evenly spaced) or as fast as the answers
             come, until --duration or --count. centrifugo: POST --api-path with
             X-API-Key over keep-alive HTTP/1.1, body {"channel":C,"data":D};
             uws: a WebSocket to --path (the peer's publisher path, /pub), D as a
             text message, acknowledged by the peer. D is {"ts":<CLOCK_MONOTONIC
             ns>,"pad":"x.."} of --size bytes, stamped just before it is sent.
             JSON: publications_sent, publications_ok, publications_failed,
             publications_per_second (ok, over the run), response_latency_us,
             late (sent over 1 ms after their slot), max_lag_ms, http_statuses,
             api_errors {"code":n}, connections_opened, errors.
  reconnect  --connections well-behaved clients stay connected for --duration and
             reconnect whenever they are closed or lose the connection: after any
             close, a random wait in [0, --backoff-base-ms], doubled per failed
             attempt up to --backoff-max-ms (full jitter); after a 1008 or 1013 (the
             server sheds load) the first wait starts one doubling higher per such
             close in a row; a 429/503 waits at least its Retry-After. Each client
             sends one --size message every --message-interval-ms and expects its
             echo: echoed within --lost-after-ms, late after it, or lost (no echo by
             then, or the connection ended first). A client that hears nothing for
             --silence-timeout-ms drops the connection ("silence"). --users K: client
             i is user u<i % K> (X-User-Id). --rate paces the first connects only.
             JSON: connects, reconnects, reconnects_unfinished, reconnect_attempts,
             time_to_reconnect_ms {count,p50,p99,max} (from the close to the new 101),
             time_to_first_connect_ms, refusals {total,by_status,by_reason},
             messages {sent,echoed,lost,late,unexpected,in_flight_at_end},
             closes_by_code {"1012":n,...,"1006": no close frame, "silence"},
             connected_at_end, errors; with --scenario also before_faults and
             faults [{at_s, line, request, answer {sent,status,applied,error},
             window {from_s,to_s}, closes_by_code, reconnects, ...}], and a table
             on stderr.

scenario files (--scenario; tools/scenarios/ has examples):
  # a comment line                    blank lines are skipped
  connections 5000                    settings, before the first `at` line; the
  users 500                           command line overrides them. Keys:
  duration 60s                        connections, users, duration, message-interval,
  message-interval 1s                 silence-timeout, lost-after, rate
  at 10s fault {"action":"restart","target":"client","spread":"10s"}
  at 40s fault {"action":"clear"}     POST /admin/faults, the JSON sent verbatim
  Times have a unit (250ms, 10s, 1.5m); the `at` times increase and stay below the
  duration. A fault's window runs to the next fault (or the end); closes and their
  reconnects count where the close happened, messages where they were sent.

options:
)";
  for (const auto& flag : flags()) {
    std::string left = "  " + flag.name + (flag.value_name.empty() ? "" : " " + flag.value_name);
    out << left;
    if (left.size() < 30) {
      out << std::string(30 - left.size(), ' ');
    } else {
      out << "\n" << std::string(30, ' ');
    }
    // Word-wrapped to 90 columns, continuation lines under the help column.
    std::istringstream words(flag.help);
    std::string word;
    std::size_t column = 30;
    bool first_word = true;
    while (words >> word) {
      if (!first_word && column + 1 + word.size() > 90) {
        out << "\n" << std::string(30, ' ');
        column = 30;
        first_word = true;
      }
      if (!first_word) {
        out << ' ';
        ++column;
      }
      out << word;
      column += word.size();
      first_word = false;
    }
    out << "\n";
  }
  out << "  --help                      this text\n";
  return out.str();
}

ParseResult parse_options(int argc, char** argv) {
  ParseResult result;
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    result.error = "missing mode";
    return result;
  }
  if (std::find(args.begin(), args.end(), "--help") != args.end() ||
      std::find(args.begin(), args.end(), "-h") != args.end()) {
    result.outcome = ParseOutcome::help;
    return result;
  }
  Options& options = result.options;
  // The mode is the first argument, or --mode anywhere.
  std::size_t first_option = 0;
  if (args[0].rfind("-", 0) != 0) {
    if (std::find(kModes.begin(), kModes.end(), args[0]) == kModes.end()) {
      result.error = "unknown mode '" + args[0] + "'";
      return result;
    }
    options.mode = args[0];
    first_option = 1;
  }
  // The options given here, which a scenario's settings do not override.
  std::set<std::string> given;
  for (std::size_t i = first_option; i < args.size(); ++i) {
    std::string name = args[i];
    std::optional<std::string> inline_value;
    if (auto equals = name.find('='); name.rfind("--", 0) == 0 && equals != std::string::npos) {
      inline_value = name.substr(equals + 1);
      name.resize(equals);
    }
    auto flag =
        std::find_if(flags().begin(), flags().end(), [&](const Flag& f) { return f.name == name; });
    if (flag == flags().end()) {
      result.error = "unknown option '" + name + "'";
      return result;
    }
    std::string value;
    if (!flag->value_name.empty()) {
      if (inline_value) {
        value = *inline_value;
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        result.error = name + " needs a value";
        return result;
      }
    } else if (inline_value) {
      result.error = name + " takes no value";
      return result;
    }
    try {
      flag->apply(options, value);
    } catch (const BadValue& bad) {
      result.error = name + ": " + bad.what();
      return result;
    }
    given.insert(name);
  }
  if (options.mode.empty()) {
    result.error = "missing mode";
    return result;
  }
  if (!options.scenario_path.empty()) {
    if (auto error = apply_scenario(options, given)) {
      result.error = *error;
      return result;
    }
  }
  if (options.tls &&
      (options.mode == "zombie" || options.mode == "slow" || options.mode == "slowloris")) {
    result.error = "--tls: mode " + options.mode +
                   " writes raw bytes over TCP and has no TLS; drop --tls, or test the TLS "
                   "handshake's own deadline with the server's e2e tests";
    return result;
  }
  if ((options.compression || options.json_payload) && options.mode != "echo") {
    result.error = "--compression and --payload are for echo only";
    return result;
  }
  if (options.json_payload && options.binary) {
    result.error = "--payload json sends text: drop --binary";
    return result;
  }
  if (options.mode == "reconnect") {
    if (auto error = check_reconnect(options)) {
      result.error = *error;
      return result;
    }
  }
  if (options.protocol == "uws" && options.channels != 1) {
    result.error =
        "--channels is for --protocol centrifugo (the uWS peer subscribes by "
        "the path: --path '/?channels=K')";
    return result;
  }
  if (options.abort_fraction + options.reset_fraction > 1.0 + 1e-9) {
    result.error = "--abort-fraction + --reset-fraction must not exceed 1";
    return result;
  }
  result.outcome = ParseOutcome::run;
  return result;
}

}  // namespace wsload
