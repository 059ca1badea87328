#include "hub_service.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <wsvisor/log.hpp>

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <stdexcept>
#include <unordered_set>

#include "connection_actor.hpp"
#include "hub_application.hpp"
#include "messages.hpp"
#include "wsvisor/build_info.hpp"
#include "wsvisor/hub/channels.hpp"

namespace wsvisor {
namespace {

namespace json = boost::json;
using self_ptr = caf::stateful_actor<hub_state>*;

constexpr auto kIdempotencyWindow = std::chrono::minutes(5);
constexpr auto kTickInterval = std::chrono::seconds(1);
constexpr uint32_t kOk = 0;

uint32_t code_of(hub::error_code code) {
  return static_cast<uint32_t>(code);
}

hub::resolved_channel resolve(const service_context& context, const std::string& channel) {
  return hub::resolve_channel(channel, context.config.hub);
}

hub_channel& channel_for(self_ptr self, const std::string& name, const hub_namespace& ns) {
  auto& state = self->state;
  auto it = state.channels.find(name);
  if (it != state.channels.end()) return it->second;
  auto& channel = state.channels[name];
  channel.ns = &ns;
  channel.groups.resize(state.context->shard_count);
  if (hub::keeps_history(ns))
    channel.history = std::make_unique<hub::channel_history>(
        ns.history_size,
        std::chrono::duration_cast<hub::channel_history::clock::duration>(ns.history_ttl),
        hub::new_epoch());
  state.context->stats.hub_channels().Set(static_cast<double>(state.channels.size()));
  return channel;
}

// A channel with no subscriber and nothing kept is forgotten (its epoch with it: a
// later subscriber starts a new stream).
void forget_if_unused(self_ptr self, const std::string& name) {
  auto& state = self->state;
  auto it = state.channels.find(name);
  if (it == state.channels.end() || !it->second.subscribers.empty()) return;
  if (const auto& channel = it->second; channel.history) {
    const auto now = state.context->now();
    if (!channel.history->expired(now) || now - channel.last_publication < channel.ns->history_ttl)
      return;
  }
  state.channels.erase(it);
  state.context->stats.hub_channels().Set(static_cast<double>(state.channels.size()));
}

// The same bytes to every subscriber: one message per shard that has subscribers.
void fan_out(self_ptr self, hub_channel& channel, const shared_payload& frame) {
  auto& context = *self->state.context;
  uint64_t delivered = 0;
  for (unsigned index = 0; index < channel.groups.size(); ++index) {
    auto& group = channel.groups[index];
    if (group.ports.empty()) continue;
    if (group.dirty || !group.snapshot) {
      group.snapshot = std::make_shared<const port_list>(group.ports);
      group.dirty = false;
    }
    delivered += group.ports.size();
    if (auto shard = context.shard(index)) {
      self->send(shard, hub_deliver_atom::value, frame, group.snapshot);
    } else {
      // The shard is restarting: its connections are dead or dying; whatever session
      // is still open gets the frame from here.
      for (const auto& port : *group.snapshot) port->send_shared(frame, true);
    }
  }
  context.stats.deliveries().Increment(static_cast<double>(delivered));
}

void fan_out(self_ptr self, hub_channel& channel, std::string frame) {
  fan_out(self, channel, std::make_shared<const std::string>(std::move(frame)));
}

void add_subscriber(self_ptr self, const std::string& name, hub_channel& channel,
                    const hub_join& join, const hub_channel_request& request) {
  auto& state = self->state;
  hub_subscriber subscriber;
  subscriber.connection = join.connection;
  subscriber.shard =
      std::min<unsigned>(join.shard, static_cast<unsigned>(channel.groups.size()) - 1);
  subscriber.port = join.port;
  subscriber.info = join.info;
  subscriber.info.chan_info = request.chan_info;
  auto& group = channel.groups[subscriber.shard];
  subscriber.slot = group.ports.size();
  group.ports.push_back(join.port);
  group.owners.push_back(join.connection.address());
  group.dirty = true;
  ++channel.users[subscriber.info.user];
  channel.subscribers.emplace(join.connection.address(), std::move(subscriber));
  auto& member = (*state.members)[join.connection.address()];
  if (!member.connection) {
    member.connection = join.connection;
    self->monitor(join.connection);
  }
  member.channels.push_back(name);
  ++state.subscriptions;
  state.context->stats.hub_subscriptions().Increment();
}

// Removes one subscription; `leave`: tell the others (join_leave).
void remove_subscriber(self_ptr self, const std::string& name, const caf::actor_addr& who) {
  auto& state = self->state;
  auto it = state.channels.find(name);
  if (it == state.channels.end()) return;
  auto& channel = it->second;
  auto found = channel.subscribers.find(who);
  if (found == channel.subscribers.end()) return;
  const hub_subscriber gone = std::move(found->second);
  channel.subscribers.erase(found);
  auto& group = channel.groups[gone.shard];
  // Swap-remove: the last entry takes the place of the one that leaves.
  const std::size_t last = group.ports.size() - 1;
  if (gone.slot != last) {
    group.ports[gone.slot] = std::move(group.ports[last]);
    group.owners[gone.slot] = group.owners[last];
    channel.subscribers.at(group.owners[gone.slot]).slot = gone.slot;
  }
  group.ports.pop_back();
  group.owners.pop_back();
  group.dirty = true;
  if (auto user = channel.users.find(gone.info.user); user != channel.users.end())
    if (--user->second == 0) channel.users.erase(user);
  --state.subscriptions;
  state.context->stats.hub_subscriptions().Decrement();
  if (channel.ns->join_leave && !channel.subscribers.empty())
    fan_out(self, channel, hub::push_leave(name, gone.info));
  forget_if_unused(self, name);
}

hub::subscribe_result subscribe_result_of(self_ptr self, hub_channel& channel,
                                          const hub_channel_request& request) {
  auto& context = *self->state.context;
  hub::subscribe_result result;
  result.expires = request.expires;
  result.ttl = request.ttl;
  result.data = request.data;
  if (channel.history && (channel.ns->force_recovery || request.recoverable || request.recover)) {
    const auto top = channel.history->top();
    result.recoverable = true;
    result.positioned = true;
    result.epoch = top.epoch;
    result.offset = top.offset;
  }
  if (request.recover) {
    result.was_recovering = true;
    if (channel.history) {
      auto recovery = channel.history->recover(
          request.since, context.config.hub.recovery_max_publications, context.now());
      result.recovered = recovery.recovered;
      result.publications = std::move(recovery.publications);
    }
    context.stats.recoveries(result.recovered).Increment();
  }
  return result;
}

hub_joined join(self_ptr self, hub_join& request) {
  auto& state = self->state;
  auto& context = *state.context;
  hub_joined outcome;
  // Everything is checked before anything changes: a join is all or nothing.
  std::vector<const hub_namespace*> namespaces;  // of each channel, in order
  for (const auto& wanted : request.channels) {
    auto resolved = resolve(context, wanted.channel);
    if (resolved.error) {
      outcome.error = code_of(*resolved.error);
      return outcome;
    }
    namespaces.push_back(resolved.ns);
    auto existing = state.channels.find(wanted.channel);
    if (existing != state.channels.end() &&
        existing->second.subscribers.count(request.connection.address())) {
      outcome.error = code_of(hub::error_code::already_subscribed);
      return outcome;
    }
  }
  std::vector<std::string> frames;
  std::vector<std::pair<std::string, hub::subscribe_result>> results;
  for (std::size_t i = 0; i < request.channels.size(); ++i) {
    const auto& wanted = request.channels[i];
    auto& channel = channel_for(self, wanted.channel, *namespaces[i]);
    add_subscriber(self, wanted.channel, channel, request, wanted);
    auto result = subscribe_result_of(self, channel, wanted);
    switch (request.how) {
      case hub_join::answer::subscribe_reply:
        frames.push_back(hub::reply_subscribe(request.reply_id, result));
        break;
      case hub_join::answer::subscribe_push:
        frames.push_back(hub::push_subscribe(wanted.channel, result));
        break;
      case hub_join::answer::connect_reply:
        // Publications referenced by a result stay valid until the reply is framed
        // (nothing is appended meanwhile: this actor is busy here).
        results.emplace_back(wanted.channel, std::move(result));
        break;
    }
    outcome.channels.push_back(wanted.channel);
  }
  if (request.how == hub_join::answer::connect_reply) {
    request.connect.subs = std::move(results);
    frames.push_back(hub::reply_connect(request.reply_id, request.connect));
  }
  for (auto& frame : frames) request.port->send(std::move(frame), true);
  // Join pushes after the answers, to everyone in the channel (the joiner included).
  for (const auto& name : outcome.channels) {
    auto& channel = state.channels.at(name);
    if (channel.ns->join_leave) fan_out(self, channel, hub::push_join(name, request.info));
  }
  return outcome;
}

void expire_idempotency(hub_state& state, steady_time now) {
  while (!state.idempotency_order.empty() && state.idempotency_order.front().first <= now) {
    state.idempotency.erase(state.idempotency_order.front().second);
    state.idempotency_order.pop_front();
  }
}

hub_published publish(self_ptr self, hub_publish& request) {
  auto& state = self->state;
  auto& context = *state.context;
  hub_published outcome;
  auto resolved = resolve(context, request.channel);
  if (resolved.error) {
    outcome.error = code_of(*resolved.error);
    return outcome;
  }
  const auto now = context.now();
  std::string key;
  if (!request.idempotency_key.empty()) {
    expire_idempotency(state, now);
    key = request.channel + "\n" + request.idempotency_key;
    if (auto seen = state.idempotency.find(key); seen != state.idempotency.end())
      return seen->second.result;
  }
  auto& channel = channel_for(self, request.channel, *resolved.ns);
  hub::publication publication;
  publication.data = std::move(request.data);
  publication.info = std::move(request.info);
  publication.tags = std::move(request.tags);
  std::string frame;
  if (channel.history && !request.skip_history) {
    channel.last_publication = now;
    const auto& stored = channel.history->append(std::move(publication), now);
    outcome.offset = stored.offset;
    outcome.epoch = channel.history->epoch();
    frame = hub::push_publication(request.channel, stored);
  } else {
    if (channel.history) outcome.epoch = channel.history->epoch();
    frame = hub::push_publication(request.channel, publication);
  }
  context.stats.publications().Increment();
  fan_out(self, channel, std::move(frame));
  if (!key.empty()) {
    state.idempotency.emplace(key, idempotent_result{outcome, now + kIdempotencyWindow});
    state.idempotency_order.emplace_back(now + kIdempotencyWindow, std::move(key));
  }
  forget_if_unused(self, request.channel);
  return outcome;
}

hub_history_answer history(self_ptr self, const hub_history_query& query) {
  auto& state = self->state;
  auto& context = *state.context;
  hub_history_answer answer;
  auto resolved = resolve(context, query.channel);
  if (resolved.error) {
    answer.error = code_of(*resolved.error);
    return answer;
  }
  if (!hub::keeps_history(*resolved.ns)) {
    answer.error = code_of(hub::error_code::not_available);
    return answer;
  }
  auto& channel = channel_for(self, query.channel, *resolved.ns);
  auto range = channel.history->range(query.since, query.limit, query.reverse, context.now());
  if (auto* error = std::get_if<hub::error_code>(&range)) {
    answer.error = code_of(*error);
  } else {
    for (const auto* publication : std::get<std::vector<const hub::publication*>>(range))
      answer.publications.push_back(*publication);
  }
  answer.top = channel.history->top();
  forget_if_unused(self, query.channel);
  return answer;
}

hub_presence_answer presence(self_ptr self, const std::string& name) {
  auto& state = self->state;
  hub_presence_answer answer;
  auto resolved = resolve(*state.context, name);
  if (resolved.error) {
    answer.error = code_of(*resolved.error);
    return answer;
  }
  if (!resolved.ns->presence) {
    answer.error = code_of(hub::error_code::not_available);
    return answer;
  }
  auto it = state.channels.find(name);
  if (it == state.channels.end()) return answer;
  for (const auto& [addr, subscriber] : it->second.subscribers)
    answer.clients.push_back(subscriber.info);
  answer.num_users = it->second.users.size();
  return answer;
}

// The connection is gone: out of every channel and presence at once.
void member_down(self_ptr self, const caf::actor_addr& who) {
  auto& members = *self->state.members;
  auto it = members.find(who);
  if (it == members.end()) return;
  const auto channels = std::move(it->second.channels);
  members.erase(it);
  for (const auto& name : channels) remove_subscriber(self, name, who);
}

void leave(self_ptr self, const caf::actor_addr& who, const std::string& name) {
  auto& members = *self->state.members;
  auto it = members.find(who);
  if (it == members.end()) return;
  auto& channels = it->second.channels;
  auto found = std::find(channels.begin(), channels.end(), name);
  if (found == channels.end()) return;
  channels.erase(found);
  remove_subscriber(self, name, who);
}

// ---- the hub API (CONTRACT 13.6) ----

hub_api_reply api_error(uint32_t code, std::string message = {}) {
  hub_api_reply reply;
  reply.error = code;
  reply.message = message.empty()
                      ? std::string(hub::error_message(static_cast<hub::error_code>(code)))
                      : std::move(message);
  return reply;
}

std::optional<std::string> string_param(const json::object& params, const char* name) {
  const auto* value = params.if_contains(name);
  if (!value || !value->is_string()) return std::nullopt;
  return std::string(value->as_string());
}

json::object client_info_json(const hub::client_info& info) {
  json::object object;
  object["client"] = info.client;
  object["user"] = info.user;
  if (!info.conn_info.empty()) object["conn_info"] = json::parse(info.conn_info);
  if (!info.chan_info.empty()) object["chan_info"] = json::parse(info.chan_info);
  return object;
}

json::object publication_json(const hub::publication& publication) {
  json::object object;
  object["data"] = json::parse(publication.data);
  if (publication.offset != 0) object["offset"] = publication.offset;
  if (publication.info) object["info"] = client_info_json(*publication.info);
  if (!publication.tags.empty()) {
    json::object tags;
    for (const auto& [key, value] : publication.tags) tags[key] = value;
    object["tags"] = std::move(tags);
  }
  return object;
}

json::object published_json(const hub_published& published) {
  json::object object;
  if (published.offset != 0) object["offset"] = published.offset;
  if (!published.epoch.empty()) object["epoch"] = published.epoch;
  return object;
}

// The publish fields shared by publish and broadcast: data (any JSON), optional
// idempotency_key, skip_history and tags. Returns the 107's message when bad.
std::optional<std::string> read_publication(const json::object& params, hub_publish& into) {
  const auto* data = params.if_contains("data");
  if (!data) return std::string("\"data\" is required");
  into.data = json::serialize(*data);
  if (const auto* key = params.if_contains("idempotency_key")) {
    if (!key->is_string()) return std::string("\"idempotency_key\" must be a string");
    into.idempotency_key = std::string(key->as_string());
  }
  if (const auto* skip = params.if_contains("skip_history")) {
    if (!skip->is_bool()) return std::string("\"skip_history\" must be a boolean");
    into.skip_history = skip->as_bool();
  }
  if (const auto* tags = params.if_contains("tags")) {
    if (!tags->is_object()) return std::string("\"tags\" must be an object of strings");
    for (const auto& [key, value] : tags->as_object()) {
      if (!value.is_string()) return std::string("\"tags\" must be an object of strings");
      into.tags.emplace_back(std::string(key), std::string(value.as_string()));
    }
  }
  return std::nullopt;
}

hub_api_reply api_publish(self_ptr self, const json::object& params) {
  hub_publish request;
  auto channel = string_param(params, "channel");
  if (!channel || channel->empty())
    return api_error(code_of(hub::error_code::bad_request), "\"channel\" is required");
  request.channel = *channel;
  if (auto problem = read_publication(params, request))
    return api_error(code_of(hub::error_code::bad_request), *problem);
  auto published = publish(self, request);
  if (published.error != kOk) return api_error(published.error);
  hub_api_reply reply;
  reply.result = published_json(published);
  return reply;
}

hub_api_reply api_broadcast(self_ptr self, const json::object& params) {
  const auto* channels = params.if_contains("channels");
  if (!channels || !channels->is_array() || channels->as_array().empty())
    return api_error(code_of(hub::error_code::bad_request),
                     "\"channels\" must be a non-empty array of channel names");
  hub_publish shared;
  if (auto problem = read_publication(params, shared))
    return api_error(code_of(hub::error_code::bad_request), *problem);
  json::array responses;
  for (const auto& channel : channels->as_array()) {
    json::object response;
    if (!channel.is_string() || channel.as_string().empty()) {
      response["error"] = json::object{{"code", code_of(hub::error_code::bad_request)},
                                       {"message", "a channel name must be a string"}};
      responses.push_back(std::move(response));
      continue;
    }
    hub_publish request = shared;
    request.channel = std::string(channel.as_string());
    auto published = publish(self, request);
    if (published.error != kOk) {
      response["error"] = json::object{
          {"code", published.error},
          {"message", hub::error_message(static_cast<hub::error_code>(published.error))}};
    } else {
      response["result"] = published_json(published);
    }
    responses.push_back(std::move(response));
  }
  hub_api_reply reply;
  reply.result["responses"] = std::move(responses);
  return reply;
}

hub_api_reply api_presence(self_ptr self, const json::object& params, bool stats) {
  auto channel = string_param(params, "channel");
  if (!channel || channel->empty())
    return api_error(code_of(hub::error_code::bad_request), "\"channel\" is required");
  auto answer = presence(self, *channel);
  if (answer.error != kOk) return api_error(answer.error);
  hub_api_reply reply;
  if (stats) {
    reply.result["num_clients"] = answer.clients.size();
    reply.result["num_users"] = answer.num_users;
  } else {
    json::object clients;
    for (const auto& info : answer.clients) clients[info.client] = client_info_json(info);
    reply.result["presence"] = std::move(clients);
  }
  return reply;
}

hub_api_reply api_history(self_ptr self, const json::object& params) {
  hub_history_query query;
  auto channel = string_param(params, "channel");
  if (!channel || channel->empty())
    return api_error(code_of(hub::error_code::bad_request), "\"channel\" is required");
  query.channel = *channel;
  if (const auto* limit = params.if_contains("limit")) {
    if (!limit->is_int64() && !limit->is_uint64())
      return api_error(code_of(hub::error_code::bad_request), "\"limit\" must be an integer");
    query.limit = limit->to_number<int64_t>();
  }
  if (const auto* reverse = params.if_contains("reverse")) {
    if (!reverse->is_bool())
      return api_error(code_of(hub::error_code::bad_request), "\"reverse\" must be a boolean");
    query.reverse = reverse->as_bool();
  }
  if (const auto* since = params.if_contains("since")) {
    if (!since->is_object())
      return api_error(code_of(hub::error_code::bad_request),
                       "\"since\" must be {\"offset\":N,\"epoch\":\"...\"}");
    hub::stream_position position;
    const auto& object = since->as_object();
    if (const auto* offset = object.if_contains("offset")) {
      if (!offset->is_uint64() && !(offset->is_int64() && offset->as_int64() >= 0))
        return api_error(code_of(hub::error_code::bad_request),
                         "\"since.offset\" must be a non-negative integer");
      position.offset = offset->to_number<uint64_t>();
    }
    if (const auto* epoch = object.if_contains("epoch")) {
      if (!epoch->is_string())
        return api_error(code_of(hub::error_code::bad_request), "\"since.epoch\" must be a string");
      position.epoch = std::string(epoch->as_string());
    }
    query.since = std::move(position);
  }
  auto answer = history(self, query);
  if (answer.error != kOk) return api_error(answer.error);
  hub_api_reply reply;
  json::array publications;
  for (const auto& publication : answer.publications)
    publications.push_back(publication_json(publication));
  reply.result["publications"] = std::move(publications);
  reply.result["epoch"] = answer.top.epoch;
  reply.result["offset"] = answer.top.offset;
  return reply;
}

hub_api_reply api_history_remove(self_ptr self, const json::object& params) {
  auto channel = string_param(params, "channel");
  if (!channel || channel->empty())
    return api_error(code_of(hub::error_code::bad_request), "\"channel\" is required");
  auto resolved = resolve(*self->state.context, *channel);
  if (resolved.error) return api_error(code_of(*resolved.error));
  if (!hub::keeps_history(*resolved.ns)) return api_error(code_of(hub::error_code::not_available));
  if (auto it = self->state.channels.find(*channel);
      it != self->state.channels.end() && it->second.history)
    it->second.history->clear();
  return {};
}

// Centrifugo's channel patterns: '*' any run of characters, '?' one character.
bool glob_match(std::string_view pattern, std::string_view text) {
  std::size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

hub_api_reply api_channels(self_ptr self, const json::object& params) {
  std::string pattern;
  if (const auto* value = params.if_contains("pattern")) {
    if (!value->is_string())
      return api_error(code_of(hub::error_code::bad_request), "\"pattern\" must be a string");
    pattern = std::string(value->as_string());
  }
  json::object channels;
  for (const auto& [name, channel] : self->state.channels) {
    if (channel.subscribers.empty()) continue;  // Centrifugo lists active channels
    if (!pattern.empty() && !glob_match(pattern, name)) continue;
    channels[name] = json::object{{"num_clients", channel.subscribers.size()}};
  }
  hub_api_reply reply;
  reply.result["channels"] = std::move(channels);
  return reply;
}

hub_api_reply api_unsubscribe(self_ptr self, const json::object& params) {
  auto user = string_param(params, "user");
  auto channel = string_param(params, "channel");
  if (!user || !channel || channel->empty())
    return api_error(code_of(hub::error_code::bad_request),
                     "\"user\" and \"channel\" are required");
  auto client = string_param(params, "client").value_or("");
  auto it = self->state.channels.find(*channel);
  if (it == self->state.channels.end()) return {};
  std::vector<std::pair<caf::actor_addr, hub_subscriber>> leaving;
  for (const auto& [addr, subscriber] : it->second.subscribers)
    if (subscriber.info.user == *user && (client.empty() || subscriber.info.client == client))
      leaving.emplace_back(addr, subscriber);
  for (auto& [addr, subscriber] : leaving) {
    subscriber.port->send(hub::push_unsubscribe(*channel, hub::unsubscribe_server.code,
                                                hub::unsubscribe_server.reason),
                          true);
    run_in_connection(subscriber.connection, [name = *channel](connection_handle& connection) {
      hub_forget_channel(connection, name);
    });
    leave(self, addr, *channel);
  }
  return {};
}

hub_api_reply api_info(self_ptr self) {
  auto& state = self->state;
  std::unordered_set<std::string> users;
  for (const auto& [name, channel] : state.channels)
    for (const auto& [user, count] : channel.users) users.insert(user);
  json::object node;
  node["uid"] = state.context->node_id;
  node["name"] = state.context->node_id;
  node["version"] = build_version();
  node["num_clients"] = state.context->connections.load();
  node["num_users"] = users.size();
  node["num_channels"] = state.channels.size();
  node["num_subs"] = state.subscriptions;
  node["uptime"] =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::steady_clock::now() - state.context->started_at)
                                .count());
  hub_api_reply reply;
  reply.result["nodes"] = json::array{std::move(node)};
  return reply;
}

hub_api_reply api_call(self_ptr self, const std::string& method, const json::object& params) {
  if (method == "publish") return api_publish(self, params);
  if (method == "broadcast") return api_broadcast(self, params);
  if (method == "presence") return api_presence(self, params, false);
  if (method == "presence_stats") return api_presence(self, params, true);
  if (method == "history") return api_history(self, params);
  if (method == "history_remove") return api_history_remove(self, params);
  if (method == "channels") return api_channels(self, params);
  if (method == "unsubscribe") return api_unsubscribe(self, params);
  if (method == "info") return api_info(self);
  return api_error(code_of(hub::error_code::method_not_found));
}

void tick(self_ptr self) {
  auto& state = self->state;
  const auto now = state.context->now();
  expire_idempotency(state, now);
  std::vector<std::string> idle;
  for (const auto& [name, channel] : state.channels)
    if (channel.subscribers.empty()) idle.push_back(name);
  for (const auto& name : idle) forget_if_unused(self, name);
  self->delayed_send(self, kTickInterval, hub_tick_atom::value);
}

}  // namespace

caf::behavior hub_actor(self_ptr self, std::shared_ptr<service_context> context) {
  self->state.context = std::move(context);
  // If the hub dies, the streams die with it: every connection that had a subscription
  // is told to reconnect (3004), and finds a new epoch when it recovers.
  self->attach_functor([members = self->state.members,
                        context = self->state.context](const caf::error&) {
    for (auto& [addr, member] : *members)
      caf::anon_send(member.connection, close_atom::value, hub::disconnect_server_error.code,
                     std::string(hub::disconnect_server_error.reason), close_reason::application);
    context->stats.hub_subscriptions().Set(0);
    context->stats.hub_channels().Set(0);
  });
  self->set_down_handler([self](caf::down_msg& down) { member_down(self, down.source); });
  self->delayed_send(self, kTickInterval, hub_tick_atom::value);
  return {
      [self](hub_join_atom, hub_join& request) { return join(self, request); },
      [self](hub_leave_atom, const caf::actor_addr& who, const std::string& channel) {
        leave(self, who, channel);
      },
      [self](hub_publish_atom, hub_publish& request) { return publish(self, request); },
      [self](hub_presence_atom, const std::string& channel) { return presence(self, channel); },
      [self](hub_history_atom, const hub_history_query& query) { return history(self, query); },
      [self](hub_api_atom, const hub_api_request& request) {
        return api_call(self, request.method, request.params);
      },
      [self](hub_tick_atom) { tick(self); },
      [](fault_atom, crash_atom) -> caf::result<void> {
        throw std::runtime_error("hub crash (fault injection)");
      },
  };
}

}  // namespace wsvisor
