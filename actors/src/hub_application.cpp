#include "hub_application.hpp"

#include <prometheus/counter.h>
#include <wsvisor/log.hpp>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <deque>
#include <stdexcept>
#include <unordered_map>

#include "connection_actor.hpp"
#include "hub_service.hpp"
#include "messages.hpp"
#include "wsvisor/build_info.hpp"
#include "wsvisor/hub/channels.hpp"
#include "wsvisor/hub/protocol.hpp"
#include "wsvisor/hub/tokens.hpp"

namespace wsvisor {
namespace {

namespace json = boost::json;
using hub::command;
using hub::command_kind;
using hub::error_code;
using self_ptr = caf::stateful_actor<connection_state>*;

// Centrifugo closes an expired connection after client_expired_close_delay (25 s): the
// SDK refreshes when the ttl runs out, so the server waits a little past `exp` for it.
constexpr auto kExpiryGrace = std::chrono::seconds(5);
// Commands that arrive while the connect is decided wait; more is a bad client.
constexpr std::size_t kMaxHeldCommands = 256;
// Deeper than any proxy answer should be.
constexpr unsigned kMaxProxyJsonDepth = 64;

struct subscription {
  bool pending = true;  // the hub has not answered the subscribe yet
  std::optional<int64_t> expires_at;
  uint64_t expiry_generation = 0;
};

// What a proxy call is waiting to do with the backend's answer.
struct pending_call {
  command cmd;
};

// The connection's hub session: durable across application restarts.
struct hub_session {
  enum class phase : uint8_t { awaiting_connect, connecting, connected };
  phase stage = phase::awaiting_connect;
  std::string conn_info;  // the token's (or proxy's) info, raw JSON
  std::optional<int64_t> expires_at;
  uint64_t expiry_generation = 0;
  std::unordered_map<std::string, subscription> channels;
  std::deque<command> held;                             // arrived while connecting
  std::unordered_map<std::string, pending_call> calls;  // by upstream tag
  uint64_t next_tag = 1;
};

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint32_t ttl_until(int64_t expires_at) {
  return static_cast<uint32_t>(std::max<int64_t>(1, expires_at - unix_now()));
}

class hub_application final : public application {
 public:
  bool identified_at_open() const override { return false; }

  void on_open(connection_handle& handle) override {
    auto& c = state_of(handle);
    session(c);  // made now, so that a restart finds it
    const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
        c.context->config.hub.connect_timeout);
    c.run_later(timeout, [](connection_handle& later) {
      auto& c = state_of(later);
      if (session(c).stage != hub_session::phase::connected)
        close_with(c, hub::disconnect_stale, close_reason::application);
    });
  }

  void on_message(connection_handle& handle, std::string& payload, bool text) override {
    auto& c = state_of(handle);
    if (!text) return bad_request(c, "a binary frame (the JSON protocol sends text)");
    handle_frame(c, payload);
  }

  // The hub API's work on this connection (hub_application.hpp).
  static void server_subscribe(connection_handle& handle, const std::string& channel) {
    auto& c = state_of(handle);
    auto& s = session(c);
    if (s.stage != hub_session::phase::connected || s.channels.count(channel)) return;
    auto hub = c.context->hub_service();
    if (!hub) return;
    s.channels[channel] = subscription{};
    hub_join join = join_of(c, hub_join::answer::subscribe_push);
    hub_channel_request request;
    request.channel = channel;
    join.channels.push_back(std::move(request));
    auto* self = c.self;
    self->request(hub, caf::infinite, hub_join_atom::value, std::move(join))
        .then(
            [self, channel](hub_joined& joined) {
              run_supervised(self, [&] {
                if (joined.error != 0)
                  session(self->state).channels.erase(channel);
                else
                  session(self->state).channels[channel].pending = false;
              });
            },
            [self, channel](caf::error&) {
              run_supervised(self, [&] { session(self->state).channels.erase(channel); });
            });
  }

  static void forget_channel(connection_handle& handle, const std::string& channel) {
    session(state_of(handle)).channels.erase(channel);
  }

  static void api_refresh(connection_handle& handle, bool expired,
                          std::optional<int64_t> expire_at) {
    auto& c = state_of(handle);
    auto& s = session(c);
    if (expired) return close_with(c, hub::disconnect_expired, close_reason::api);
    if (!expire_at) return;
    s.expires_at = expire_at;
    schedule_expiry(c);
  }

  void on_upstream(connection_handle& handle, upstream_result& result) override {
    auto& c = state_of(handle);
    auto& s = session(c);
    auto it = s.calls.find(result.tag);
    if (it == s.calls.end()) return;
    auto call = std::move(it->second);
    s.calls.erase(it);
    proxy_answered(c, call.cmd, result);
  }

 private:
  static connection_state& state_of(connection_handle& handle) {
    auto* state = dynamic_cast<connection_state*>(&handle);
    if (!state) throw std::logic_error("hub mode runs inside wsvisor's connection actor only");
    return *state;
  }

  static hub_session& session(connection_state& c) {
    if (!c.durable) c.durable = std::make_shared<hub_session>();
    return *static_cast<hub_session*>(c.durable.get());
  }

  static void count(connection_state& c, command_kind kind, bool ok) {
    c.context->stats.hub_commands(hub::to_string(kind), ok).Increment();
  }

  static void close_with(connection_state& c, hub::disconnect_code code, close_reason why) {
    c.port->close(code.code, code.reason, why);
  }

  static void bad_request(connection_state& c, const std::string& why) {
    log_event(spdlog::level::info, "hub_bad_request",
              "malformed hub protocol frame: closed 3501 bad request",
              {{"id", c.identity.id}, {"problem", why}});
    close_with(c, hub::disconnect_bad_request, close_reason::protocol_error);
  }

  static void reply(connection_state& c, std::string frame) {
    c.port->send(std::move(frame), true);
  }

  static void reply_error(connection_state& c, const command& cmd, error_code code) {
    count(c, cmd.kind, false);
    if (cmd.id != 0) reply(c, hub::reply_error(cmd.id, code));
  }

  static hub::client_info client_info(connection_state& c) {
    hub::client_info info;
    info.user = c.identity.user;
    info.client = c.connection_id;
    info.conn_info = session(c).conn_info;
    return info;
  }

  // Commands run in the order they came; those that arrive while a connect is decided
  // (the backend's proxy, the limit guard's claim) wait for it.
  static void handle_frame(connection_state& c, const std::string& payload) {
    auto parsed = hub::parse_frame(payload);
    if (!parsed.error.empty()) return bad_request(c, parsed.error);
    for (auto& cmd : parsed.commands) {
      auto& s = session(c);
      if (s.stage == hub_session::phase::connecting) {
        if (s.held.size() >= kMaxHeldCommands)
          return bad_request(c, "too many commands before the connect was answered");
        s.held.push_back(std::move(cmd));
        continue;
      }
      if (c.port->liveness().closing) return;
      handle_command(c, cmd);
    }
  }

  static void handle_command(connection_state& c, command& cmd) {
    auto& s = session(c);
    if (cmd.kind == command_kind::ping) return;  // the client's pong: a frame in is enough
    if (cmd.kind == command_kind::connect) {
      if (s.stage != hub_session::phase::awaiting_connect)
        return bad_request(c, "a second connect command");
      return connect(c, cmd);
    }
    if (s.stage != hub_session::phase::connected)
      return bad_request(c,
                         std::string("a ") + hub::to_string(cmd.kind) + " command before connect");
    switch (cmd.kind) {
      case command_kind::subscribe:
        return subscribe(c, cmd);
      case command_kind::unsubscribe:
        return unsubscribe(c, cmd);
      case command_kind::publish:
        return publish(c, cmd);
      case command_kind::presence:
      case command_kind::presence_stats:
        return presence(c, cmd);
      case command_kind::history:
        return history(c, cmd);
      case command_kind::rpc:
        return rpc(c, cmd);
      case command_kind::send:
        return send(c, cmd);
      case command_kind::refresh:
        return refresh(c, cmd);
      case command_kind::sub_refresh:
        return sub_refresh(c, cmd);
      default:
        return;
    }
  }

  // ---- connect (13.1) ----

  struct identity_found {
    std::string user;
    std::string info;
    std::optional<int64_t> expires_at;
    std::vector<std::string> channels;  // server-side subscriptions
    std::string data;                   // for the connect reply
    std::string meta;  // raw JSON: kept in the server, sent with events and proxy calls
  };

  static void connect(connection_state& c, command& cmd) {
    const auto& config = c.context->config;
    // 1. v1 auth before the upgrade.
    if (!c.identity.user.empty()) {
      identity_found found;
      found.user = c.identity.user;
      return identified(c, cmd, std::move(found));
    }
    // 2. The connect command's token.
    if (!cmd.token.empty()) {
      if (config.auth.jwt_secret.empty()) {
        log_event(spdlog::level::info, "hub_connect_refused",
                  "a connect token but no auth.jwt_secret (WSVISOR_AUTH_JWT_SECRET) to check it: "
                  "closed 3500",
                  {{"id", c.identity.id}});
        return close_with(c, hub::disconnect_invalid_token, close_reason::application);
      }
      auto token = hub::verify_connection_token(cmd.token, config.auth.jwt_secret,
                                                std::chrono::system_clock::now());
      if (token.problem == hub::token_problem::expired)
        return reply_error(c, cmd, error_code::token_expired);
      if (token.problem == hub::token_problem::invalid) {
        log_event(spdlog::level::info, "hub_connect_refused",
                  "invalid connection token: closed 3500",
                  {{"id", c.identity.id}, {"problem", token.why}});
        return close_with(c, hub::disconnect_invalid_token, close_reason::application);
      }
      identity_found found;
      found.user = std::move(token.claims.user);
      found.info = std::move(token.claims.info);
      found.expires_at = token.claims.expires_at;
      found.meta = std::move(token.claims.meta);
      found.channels = std::move(token.claims.channels);
      for (auto& sub : token.claims.subs) found.channels.push_back(std::move(sub.channel));
      return identified(c, cmd, std::move(found));
    }
    // 3. The connect proxy.
    if (!config.hub.connect_proxy_path.empty()) {
      json::object body = proxy_base(c);
      if (!cmd.name.empty()) body["name"] = cmd.name;
      if (!cmd.version.empty()) body["version"] = cmd.version;
      if (!cmd.data.empty()) body["data"] = json::parse(cmd.data);
      session(c).stage = hub_session::phase::connecting;
      return call_proxy(c, cmd, upstream_hook::connect, config.hub.connect_proxy_path, body);
    }
    // 4. Anonymous.
    if (config.hub.allow_anonymous) return identified(c, cmd, identity_found{});
    reply_error(c, cmd, error_code::unauthorized);
  }

  // Who it is is known: the per-user cap is decided now (the limit guard sweeps that
  // user first, as at admission), then the reply.
  static void identified(connection_state& c, command& cmd, identity_found found) {
    auto& s = session(c);
    s.stage = hub_session::phase::connecting;
    if (found.user.empty() || found.user == c.identity.user)
      return connected(c, cmd, std::move(found));
    auto guard = c.context->guard();
    if (!guard) {
      s.stage = hub_session::phase::awaiting_connect;
      return reply_error(c, cmd, error_code::internal);
    }
    auto* self = c.self;
    const auto user = found.user;
    self->request(guard, caf::infinite, claim_atom::value, c.identity.id, user)
        .then(
            [self, cmd, found = std::move(found)](bool admitted) mutable {
              run_supervised(self, [&] {
                auto& c = self->state;
                if (!admitted) {
                  c.context->stats.admissions_rejected(reject_reason::user_limit).Increment();
                  log_event(spdlog::level::info, "hub_connect_refused",
                            "user at limits.max_per_user: closed 3504 connection limit",
                            {{"id", c.identity.id}, {"user", found.user}});
                  return close_with(c, hub::disconnect_connection_limit, close_reason::application);
                }
                connected(c, cmd, std::move(found));
              });
            },
            [self, cmd](caf::error&) {
              run_supervised(self, [&] {
                session(self->state).stage = hub_session::phase::awaiting_connect;
                reply_error(self->state, cmd, error_code::internal);
              });
            });
  }

  static void connected(connection_state& c, const command& cmd, identity_found found) {
    auto& s = session(c);
    const auto& config = c.context->config;
    c.identity.user = found.user;
    if (!found.meta.empty()) c.identity.meta = std::move(found.meta);
    s.conn_info = std::move(found.info);
    s.expires_at = found.expires_at;
    c.self->send(c.shard, identified_atom::value, c.self->address(), c.identity.user,
                 c.identity.meta);

    hub::connect_result result;
    result.client = c.connection_id;
    result.version = build_version();
    result.node = c.context->node_id;
    result.data = std::move(found.data);
    result.ping = static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::seconds>(config.janitor.ping_interval).count());
    result.pong = true;
    if (s.expires_at) {
      result.expires = true;
      result.ttl = ttl_until(*s.expires_at);
      schedule_expiry(c);
    }
    std::vector<std::string> server_side = std::move(found.channels);
    if (config.hub.user_personal_channel && !c.identity.user.empty())
      server_side.push_back(hub::personal_channel(c.identity.user));
    std::sort(server_side.begin(), server_side.end());
    server_side.erase(std::unique(server_side.begin(), server_side.end()), server_side.end());

    s.stage = hub_session::phase::connected;
    count(c, command_kind::connect, true);
    auto recovery = recovery_of(cmd);
    auto hub = c.context->hub_service();
    if (server_side.empty() || !hub) {
      reply(c, hub::reply_connect(cmd.id, result));
    } else {
      hub_join join = join_of(c, hub_join::answer::connect_reply);
      join.reply_id = cmd.id;
      join.connect = result;
      for (const auto& channel : server_side) {
        hub_channel_request request;
        request.channel = channel;
        if (auto it = recovery.find(channel); it != recovery.end()) {
          request.recover = it->second.recover;
          request.since = it->second.since;
        }
        join.channels.push_back(std::move(request));
        s.channels[channel] = subscription{};
      }
      auto* self = c.self;
      self->request(hub, caf::infinite, hub_join_atom::value, std::move(join))
          .then(
              [self, cmd, result](hub_joined& joined) {
                run_supervised(self, [&] {
                  auto& c = self->state;
                  if (joined.error != 0) {
                    // A channel the token names does not exist: connected without them.
                    log_event(spdlog::level::warn, "hub_server_subscribe_failed",
                              "server-side subscriptions at connect failed: connected without "
                              "them (check the token's channels and hub.namespaces)",
                              {{"id", c.identity.id}, {"error", joined.error}});
                    drop_pending(session(c));
                    reply(c, hub::reply_connect(cmd.id, result));
                  }
                  for (const auto& channel : joined.channels)
                    session(c).channels[channel].pending = false;
                });
              },
              [self, cmd, result](caf::error&) {
                run_supervised(self, [&] {
                  drop_pending(session(self->state));
                  reply(self->state, hub::reply_connect(cmd.id, result));
                });
              });
    }
    // What arrived while the connect was decided.
    auto held = std::move(s.held);
    s.held.clear();
    for (auto& waiting : held) {
      if (c.port->liveness().closing) return;
      handle_command(c, waiting);
    }
  }

  static void drop_pending(hub_session& s) {
    for (auto it = s.channels.begin(); it != s.channels.end();)
      it = it->second.pending ? s.channels.erase(it) : std::next(it);
  }

  static std::unordered_map<std::string, hub::subscribe_request_recovery> recovery_of(
      const command& cmd) {
    std::unordered_map<std::string, hub::subscribe_request_recovery> recovery;
    for (const auto& [channel, wanted] : cmd.subs) recovery[channel] = wanted;
    return recovery;
  }

  static hub_join join_of(connection_state& c, hub_join::answer how) {
    hub_join join;
    join.connection = caf::actor_cast<caf::actor>(c.self);
    join.shard = c.identity.shard_index;
    join.port = c.port;
    join.info = client_info(c);
    join.how = how;
    return join;
  }

  static void schedule_expiry(connection_state& c) {
    auto& s = session(c);
    const auto generation = ++s.expiry_generation;
    // With the refresh proxy the server asks the backend at `exp` (Centrifugo's
    // proxy-based refresh); without it the client has until the grace is over.
    const bool proxied = !c.context->config.hub.refresh_proxy_path.empty();
    const auto wait = std::chrono::seconds(std::max<int64_t>(0, *s.expires_at - unix_now())) +
                      (proxied ? std::chrono::seconds(0) : kExpiryGrace);
    c.run_later(wait, [generation](connection_handle& later) {
      auto& c = state_of(later);
      auto& s = session(c);
      if (s.expiry_generation != generation || !s.expires_at || *s.expires_at > unix_now()) return;
      if (!c.context->config.hub.refresh_proxy_path.empty()) return refresh_through_proxy(c);
      log_event(spdlog::level::info, "hub_connection_expired",
                "the connection's token expired and was not refreshed: closed 3005",
                {{"id", c.identity.id}, log_field::optional("user", c.identity.user)});
      close_with(c, hub::disconnect_expired, close_reason::application);
    });
  }

  static void refresh_through_proxy(connection_state& c) {
    command cmd;
    cmd.kind = command_kind::refresh;  // id 0: the server's own, no reply to anyone
    call_proxy(c, cmd, upstream_hook::refresh, c.context->config.hub.refresh_proxy_path,
               proxy_base(c));
  }

  // The refresh proxy did not answer usably: the connection stays (a backend failure
  // never fails it), and the backend is asked again after the grace.
  static void retry_refresh(connection_state& c) {
    auto& s = session(c);
    const auto generation = ++s.expiry_generation;
    c.run_later(kExpiryGrace, [generation](connection_handle& later) {
      auto& c = state_of(later);
      if (session(c).expiry_generation == generation) refresh_through_proxy(c);
    });
  }

  // ---- channels (13.2, 13.3) ----

  static hub::resolved_channel check_channel(connection_state& c, const std::string& channel) {
    return hub::resolve_channel(channel, c.context->config.hub);
  }

  static bool subscribed(connection_state& c, const std::string& channel) {
    auto& channels = session(c).channels;
    auto it = channels.find(channel);
    return it != channels.end() && !it->second.pending;
  }

  static void subscribe(connection_state& c, command& cmd) {
    auto& s = session(c);
    const auto& config = c.context->config;
    auto checked = check_channel(c, cmd.channel);
    if (checked.error) return reply_error(c, cmd, *checked.error);
    if (s.channels.count(cmd.channel)) return reply_error(c, cmd, error_code::already_subscribed);
    if (s.channels.size() >= config.hub.max_channels_per_connection)
      return reply_error(c, cmd, error_code::limit_exceeded);
    hub_channel_request request;
    request.channel = cmd.channel;
    request.recover = cmd.recover;
    request.since = cmd.since;
    request.recoverable = cmd.recoverable;
    bool token_grants = false;
    std::optional<int64_t> expires_at;
    if (!cmd.token.empty()) {
      auto token = hub::verify_subscription_token(cmd.token, config.auth.jwt_secret,
                                                  std::chrono::system_clock::now());
      if (token.problem == hub::token_problem::expired)
        return reply_error(c, cmd, error_code::token_expired);
      if (token.problem != hub::token_problem::none || config.auth.jwt_secret.empty() ||
          token.claims.channel != cmd.channel || token.claims.user != c.identity.user)
        return reply_error(c, cmd, error_code::permission_denied);
      token_grants = true;
      request.chan_info = token.claims.info;
      expires_at = token.claims.expires_at;
    }
    if (!token_grants && checked.ns->subscribe_proxy_enabled) {
      if (!hub::user_may_access(*checked.name, c.identity.user))
        return reply_error(c, cmd, error_code::permission_denied);
      json::object body = proxy_base(c);
      body["channel"] = cmd.channel;
      if (!cmd.data.empty()) body["data"] = json::parse(cmd.data);
      s.channels[cmd.channel] = subscription{};
      return call_proxy(c, cmd, upstream_hook::subscribe, config.hub.subscribe_proxy_path, body);
    }
    if (auto denied =
            hub::subscribe_permission(*checked.ns, *checked.name, c.identity.user, token_grants))
      return reply_error(c, cmd, *denied);
    if (expires_at) {
      request.expires = true;
      request.ttl = ttl_until(*expires_at);
    }
    join_channel(c, cmd, std::move(request), expires_at);
  }

  static void join_channel(connection_state& c, const command& cmd, hub_channel_request request,
                           std::optional<int64_t> expires_at) {
    auto hub = c.context->hub_service();
    if (!hub) {
      session(c).channels.erase(cmd.channel);
      return reply_error(c, cmd, error_code::internal);
    }
    session(c).channels[cmd.channel] = subscription{true, expires_at, 0};
    hub_join join = join_of(c, hub_join::answer::subscribe_reply);
    join.reply_id = cmd.id;
    join.channels.push_back(std::move(request));
    auto* self = c.self;
    self->request(hub, caf::infinite, hub_join_atom::value, std::move(join))
        .then(
            [self, cmd](hub_joined& joined) {
              run_supervised(self, [&] {
                auto& c = self->state;
                if (joined.error != 0) {
                  session(c).channels.erase(cmd.channel);
                  return reply_error(c, cmd, static_cast<error_code>(joined.error));
                }
                count(c, cmd.kind, true);
                auto& sub = session(c).channels[cmd.channel];
                sub.pending = false;
                if (sub.expires_at) schedule_sub_expiry(c, cmd.channel);
              });
            },
            [self, cmd](caf::error&) {
              run_supervised(self, [&] {
                session(self->state).channels.erase(cmd.channel);
                reply_error(self->state, cmd, error_code::internal);
              });
            });
  }

  static void schedule_sub_expiry(connection_state& c, const std::string& channel) {
    auto& sub = session(c).channels[channel];
    const auto generation = ++sub.expiry_generation;
    const auto wait =
        std::chrono::seconds(std::max<int64_t>(0, *sub.expires_at - unix_now())) + kExpiryGrace;
    c.run_later(wait, [channel, generation](connection_handle& later) {
      auto& c = state_of(later);
      auto& channels = session(c).channels;
      auto it = channels.find(channel);
      if (it == channels.end() || it->second.expiry_generation != generation) return;
      if (!it->second.expires_at || *it->second.expires_at > unix_now()) return;
      // Centrifugo's 2501: the SDK resubscribes with a fresh subscription token.
      reply(c, hub::push_unsubscribe(channel, hub::unsubscribe_expired.code,
                                     hub::unsubscribe_expired.reason));
      leave_channel(c, channel);
    });
  }

  static void leave_channel(connection_state& c, const std::string& channel) {
    session(c).channels.erase(channel);
    if (auto hub = c.context->hub_service())
      c.self->send(hub, hub_leave_atom::value, c.self->address(), channel);
  }

  static void unsubscribe(connection_state& c, command& cmd) {
    if (session(c).channels.count(cmd.channel)) leave_channel(c, cmd.channel);
    count(c, cmd.kind, true);
    reply(c, hub::reply_empty(cmd.id, cmd.kind));
  }

  static void publish(connection_state& c, command& cmd) {
    const auto& config = c.context->config;
    auto checked = check_channel(c, cmd.channel);
    if (checked.error) return reply_error(c, cmd, *checked.error);
    if (cmd.data.empty()) return reply_error(c, cmd, error_code::bad_request);
    if (checked.ns->publish_proxy_enabled) {
      if (!hub::user_may_access(*checked.name, c.identity.user))
        return reply_error(c, cmd, error_code::permission_denied);
      json::object body = proxy_base(c);
      body["channel"] = cmd.channel;
      body["data"] = json::parse(cmd.data);
      return call_proxy(c, cmd, upstream_hook::publish, config.hub.publish_proxy_path, body);
    }
    if (auto denied = hub::publish_permission(*checked.ns, *checked.name, c.identity.user,
                                              subscribed(c, cmd.channel)))
      return reply_error(c, cmd, *denied);
    publish_to_hub(c, cmd, cmd.data, false);
  }

  static void publish_to_hub(connection_state& c, const command& cmd, std::string data,
                             bool skip_history) {
    auto hub = c.context->hub_service();
    if (!hub) return reply_error(c, cmd, error_code::internal);
    hub_publish request;
    request.channel = cmd.channel;
    request.data = std::move(data);
    request.info = client_info(c);
    request.skip_history = skip_history;
    auto* self = c.self;
    self->request(hub, caf::infinite, hub_publish_atom::value, std::move(request))
        .then(
            [self, cmd](hub_published& published) {
              run_supervised(self, [&] {
                if (published.error != 0)
                  return reply_error(self->state, cmd, static_cast<error_code>(published.error));
                count(self->state, cmd.kind, true);
                reply(self->state, hub::reply_empty(cmd.id, cmd.kind));
              });
            },
            [self, cmd](caf::error&) {
              run_supervised(self, [&] { reply_error(self->state, cmd, error_code::internal); });
            });
  }

  static void presence(connection_state& c, command& cmd) {
    auto checked = check_channel(c, cmd.channel);
    if (checked.error) return reply_error(c, cmd, *checked.error);
    if (auto denied = hub::presence_permission(*checked.ns, subscribed(c, cmd.channel)))
      return reply_error(c, cmd, *denied);
    auto hub = c.context->hub_service();
    if (!hub) return reply_error(c, cmd, error_code::internal);
    auto* self = c.self;
    self->request(hub, caf::infinite, hub_presence_atom::value, cmd.channel)
        .then(
            [self, cmd](hub_presence_answer& answer) {
              run_supervised(self, [&] {
                auto& c = self->state;
                if (answer.error != 0)
                  return reply_error(c, cmd, static_cast<error_code>(answer.error));
                count(c, cmd.kind, true);
                if (cmd.kind == command_kind::presence)
                  reply(c, hub::reply_presence(cmd.id, answer.clients));
                else
                  reply(c,
                        hub::reply_presence_stats(cmd.id, answer.clients.size(), answer.num_users));
              });
            },
            [self, cmd](caf::error&) {
              run_supervised(self, [&] { reply_error(self->state, cmd, error_code::internal); });
            });
  }

  static void history(connection_state& c, command& cmd) {
    auto checked = check_channel(c, cmd.channel);
    if (checked.error) return reply_error(c, cmd, *checked.error);
    if (auto denied = hub::history_permission(*checked.ns, subscribed(c, cmd.channel)))
      return reply_error(c, cmd, *denied);
    auto hub = c.context->hub_service();
    if (!hub) return reply_error(c, cmd, error_code::internal);
    hub_history_query query;
    query.channel = cmd.channel;
    query.limit = cmd.limit;
    query.reverse = cmd.reverse;
    if (cmd.has_since) query.since = cmd.since;
    auto* self = c.self;
    self->request(hub, caf::infinite, hub_history_atom::value, std::move(query))
        .then(
            [self, cmd](hub_history_answer& answer) {
              run_supervised(self, [&] {
                auto& c = self->state;
                if (answer.error != 0)
                  return reply_error(c, cmd, static_cast<error_code>(answer.error));
                std::vector<const hub::publication*> publications;
                for (const auto& publication : answer.publications)
                  publications.push_back(&publication);
                count(c, cmd.kind, true);
                reply(c, hub::reply_history(cmd.id, publications, answer.top));
              });
            },
            [self, cmd](caf::error&) {
              run_supervised(self, [&] { reply_error(self->state, cmd, error_code::internal); });
            });
  }

  static void rpc(connection_state& c, command& cmd) {
    const auto& config = c.context->config;
    if (config.hub.rpc_proxy_path.empty()) return reply_error(c, cmd, error_code::method_not_found);
    json::object body = proxy_base(c);
    body["method"] = cmd.method;
    if (!cmd.data.empty()) body["data"] = json::parse(cmd.data);
    call_proxy(c, cmd, upstream_hook::rpc, config.hub.rpc_proxy_path, body);
  }

  static void send(connection_state& c, command& cmd) {
    const auto& config = c.context->config;
    count(c, cmd.kind, true);
    if (config.hub.send_proxy_path.empty()) return;  // nowhere to go: dropped, as Centrifugo does
    json::object body = proxy_base(c);
    if (!cmd.data.empty()) body["data"] = json::parse(cmd.data);
    call_proxy(c, cmd, upstream_hook::message, config.hub.send_proxy_path, body);
  }

  static void refresh(connection_state& c, command& cmd) {
    const auto& config = c.context->config;
    auto& s = session(c);
    if (cmd.token.empty() || config.auth.jwt_secret.empty())
      return reply_error(c, cmd, error_code::bad_request);
    auto token = hub::verify_connection_token(cmd.token, config.auth.jwt_secret,
                                              std::chrono::system_clock::now());
    if (token.problem == hub::token_problem::expired)
      return reply_error(c, cmd, error_code::token_expired);
    if (token.problem != hub::token_problem::none || token.claims.user != c.identity.user) {
      log_event(spdlog::level::info, "hub_refresh_refused",
                "refresh with an invalid token or another user's: closed 3500",
                {{"id", c.identity.id}, {"problem", token.why}});
      return close_with(c, hub::disconnect_invalid_token, close_reason::application);
    }
    s.expires_at = token.claims.expires_at;
    if (!token.claims.info.empty()) s.conn_info = token.claims.info;
    count(c, cmd.kind, true);
    if (s.expires_at) {
      schedule_expiry(c);
      reply(c, hub::reply_refresh(cmd.id, c.connection_id, build_version(), true,
                                  ttl_until(*s.expires_at)));
    } else {
      ++s.expiry_generation;  // no expiry any more
      reply(c, hub::reply_refresh(cmd.id, c.connection_id, build_version(), false, 0));
    }
  }

  static void sub_refresh(connection_state& c, command& cmd) {
    const auto& config = c.context->config;
    auto& channels = session(c).channels;
    auto it = channels.find(cmd.channel);
    if (it == channels.end() || it->second.pending)
      return reply_error(c, cmd, error_code::bad_request);
    auto token = hub::verify_subscription_token(cmd.token, config.auth.jwt_secret,
                                                std::chrono::system_clock::now());
    if (token.problem == hub::token_problem::expired)
      return reply_error(c, cmd, error_code::token_expired);
    if (token.problem != hub::token_problem::none || token.claims.channel != cmd.channel ||
        token.claims.user != c.identity.user)
      return reply_error(c, cmd, error_code::permission_denied);
    it->second.expires_at = token.claims.expires_at;
    count(c, cmd.kind, true);
    if (it->second.expires_at) {
      schedule_sub_expiry(c, cmd.channel);
      reply(c, hub::reply_sub_refresh(cmd.id, true, ttl_until(*it->second.expires_at)));
    } else {
      ++it->second.expiry_generation;
      reply(c, hub::reply_sub_refresh(cmd.id, false, 0));
    }
  }

  // ---- proxies (13.4): Centrifugo's request and response shapes ----

  static json::object proxy_base(connection_state& c) {
    json::object body;
    body["client"] = c.connection_id;
    body["transport"] = "websocket";
    body["protocol"] = "json";
    body["encoding"] = "json";
    if (!c.identity.user.empty()) body["user"] = c.identity.user;
    if (!c.identity.meta.empty()) body["meta"] = json::parse(c.identity.meta);
    return body;
  }

  static void call_proxy(connection_state& c, const command& cmd, upstream_hook hook,
                         const std::string& path, const json::object& body) {
    auto& s = session(c);
    upstream_call call;
    call.hook = hook;
    call.path = path;
    call.body = json::serialize(body);
    call.content_type = "application/json";
    call.tag = "hub" + std::to_string(s.next_tag++);
    s.calls.emplace(call.tag, pending_call{cmd});
    c.call_upstream(std::move(call));
  }

  // A backend failure fails that one command (error 100, temporary: the SDK retries),
  // never the connection; the backend may answer an error or a disconnect of its own.
  static void proxy_answered(connection_state& c, const command& cmd,
                             const upstream_result& result) {
    auto fail = [&] {
      if (cmd.kind == command_kind::refresh && cmd.id == 0) return retry_refresh(c);
      if (cmd.kind == command_kind::connect)
        session(c).stage = hub_session::phase::awaiting_connect;
      if (cmd.kind == command_kind::subscribe) session(c).channels.erase(cmd.channel);
      if (cmd.kind != command_kind::send) reply_error(c, cmd, error_code::internal);
    };
    if (result.outcome != upstream_outcome::ok || cmd.kind == command_kind::send) {
      if (result.outcome != upstream_outcome::ok) fail();
      return;
    }
    boost::system::error_code ec;
    json::parse_options options;
    options.max_depth = kMaxProxyJsonDepth;
    auto answer = json::parse(result.body, ec, {}, options);
    if (ec || !answer.is_object()) {
      log_event(spdlog::level::warn, "hub_proxy_bad_answer",
                "the backend's proxy answer is not a JSON object: the command failed with 100",
                {{"id", c.identity.id}, {"command", hub::to_string(cmd.kind)}});
      return fail();
    }
    const auto& object = answer.as_object();
    if (const auto* disconnect = object.if_contains("disconnect");
        disconnect && disconnect->is_object()) {
      const auto& d = disconnect->as_object();
      const auto* code = d.if_contains("code");
      const auto* reason = d.if_contains("reason");
      // Centrifugo's custom disconnect codes are 3000-4999; anything else (a reserved
      // 1005, a 70000 that would wrap) is the default force-disconnect instead.
      const bool custom =
          code && code->is_int64() && code->as_int64() >= 3000 && code->as_int64() <= 4999;
      const uint16_t close_code = custom ? static_cast<uint16_t>(code->as_int64())
                                         : hub::disconnect_force_no_reconnect.code;
      c.port->close(close_code,
                    reason && reason->is_string() ? std::string(reason->as_string()) : "",
                    close_reason::application);
      return;
    }
    if (cmd.kind == command_kind::refresh && cmd.id == 0 && object.contains("error")) return fail();
    if (const auto* error = object.if_contains("error"); error && error->is_object()) {
      const auto& e = error->as_object();
      const auto* code = e.if_contains("code");
      const auto* message = e.if_contains("message");
      const auto* temporary = e.if_contains("temporary");
      if (cmd.kind == command_kind::connect)
        session(c).stage = hub_session::phase::awaiting_connect;
      if (cmd.kind == command_kind::subscribe) session(c).channels.erase(cmd.channel);
      count(c, cmd.kind, false);
      reply(c, hub::reply_error(
                   cmd.id, code && code->is_int64() ? static_cast<uint32_t>(code->as_int64()) : 100,
                   message && message->is_string() ? std::string_view(message->as_string()) : "",
                   temporary && temporary->is_bool() && temporary->as_bool()));
      return;
    }
    const auto* result_value = object.if_contains("result");
    const json::object empty;
    const json::object& r =
        result_value && result_value->is_object() ? result_value->as_object() : empty;
    const auto raw = [&](const char* key) -> std::string {
      const auto* value = r.if_contains(key);
      return value ? json::serialize(*value) : std::string();
    };
    switch (cmd.kind) {
      case command_kind::connect: {
        identity_found found;
        if (const auto* user = r.if_contains("user"); user && user->is_string())
          found.user = std::string(user->as_string());
        if (const auto* expire_at = r.if_contains("expire_at");
            expire_at && expire_at->is_int64() && expire_at->as_int64() > 0)
          found.expires_at = expire_at->as_int64();
        found.info = raw("info");
        found.data = raw("data");
        found.meta = raw("meta");
        if (const auto* channels = r.if_contains("channels"); channels && channels->is_array())
          for (const auto& channel : channels->as_array())
            if (channel.is_string()) found.channels.emplace_back(channel.as_string());
        command copy = cmd;
        return identified(c, copy, std::move(found));
      }
      case command_kind::subscribe: {
        hub_channel_request request;
        request.channel = cmd.channel;
        request.recover = cmd.recover;
        request.since = cmd.since;
        request.recoverable = cmd.recoverable;
        request.chan_info = raw("info");
        request.data = raw("data");
        return join_channel(c, cmd, std::move(request), std::nullopt);
      }
      case command_kind::publish: {
        std::string data = cmd.data;
        if (const auto* replaced = r.if_contains("data")) data = json::serialize(*replaced);
        const auto* skip = r.if_contains("skip_history");
        return publish_to_hub(c, cmd, std::move(data), skip && skip->is_bool() && skip->as_bool());
      }
      case command_kind::refresh: {
        // Centrifugo's refresh proxy result: {"expired":true}, or a new expire_at (and info).
        auto& s = session(c);
        const auto* expired = r.if_contains("expired");
        const auto* expire_at = r.if_contains("expire_at");
        if (expired && expired->is_bool() && expired->as_bool()) {
          log_event(spdlog::level::info, "hub_connection_expired",
                    "the refresh proxy says the connection expired: closed 3005",
                    {{"id", c.identity.id}, log_field::optional("user", c.identity.user)});
          return close_with(c, hub::disconnect_expired, close_reason::application);
        }
        if (!expire_at || !expire_at->is_int64() || expire_at->as_int64() <= unix_now())
          return fail();
        s.expires_at = expire_at->as_int64();
        if (const auto info = raw("info"); !info.empty()) s.conn_info = info;
        count(c, cmd.kind, true);
        schedule_expiry(c);
        return;
      }
      case command_kind::rpc: {
        count(c, cmd.kind, true);
        const auto data = raw("data");
        reply(c,
              hub::reply_rpc(cmd.id, data.empty() ? std::string_view() : std::string_view(data)));
        return;
      }
      default:
        return;
    }
  }
};

}  // namespace

void hub_server_subscribe(connection_handle& connection, const std::string& channel) {
  hub_application::server_subscribe(connection, channel);
}

void hub_forget_channel(connection_handle& connection, const std::string& channel) {
  hub_application::forget_channel(connection, channel);
}

void hub_refresh(connection_handle& connection, bool expired, std::optional<int64_t> expire_at) {
  hub_application::api_refresh(connection, expired, expire_at);
}

std::unique_ptr<application> make_hub_application() {
  return std::make_unique<hub_application>();
}

}  // namespace wsvisor
