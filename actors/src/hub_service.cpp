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
#include "wsvisor/hub/wire.hpp"

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
  if (it == state.channels.end() || !it->second.subscribers.empty() ||
      !it->second.pending_joins.empty())
    return;
  if (const auto& channel = it->second; channel.history) {
    const auto now = state.context->now();
    if (!channel.history->expired(now) || now - channel.last_publication < channel.ns->history_ttl)
      return;
  }
  state.channels.erase(it);
  state.context->stats.hub_channels().Set(static_cast<double>(state.channels.size()));
}

// ---- across nodes (cluster mode) ----

// A stream's position in Redis outlives its publications this long (history_ttl when
// longer) after the last publication, as Centrifugo's history_meta_ttl does: a
// subscriber positioned in a quiet channel keeps its epoch.
constexpr auto kStreamMetaTtl = std::chrono::hours(24);

int64_t ms_of(std::chrono::nanoseconds duration) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(duration).count();
}

// Cluster mode: the hub shares its channels through the cluster service.
bool in_cluster(const hub_state& state) {
  return state.context->redis != nullptr;
}

// Redis is reachable now: publications, streams and presence go through it. Otherwise the
// hub works as on one node (cluster.on_redis_down = "local": delivered here only).
caf::actor across_nodes(const hub_state& state) {
  if (!in_cluster(state) || state.context->cluster.load() != service_context::cluster_health::ok)
    return {};
  return state.context->cluster_service();
}

void tell_cluster(self_ptr self, caf::message message) {
  if (!in_cluster(self->state)) return;
  if (auto cluster = self->state.context->cluster_service())
    self->send(cluster, std::move(message));
}

int64_t meta_ttl_ms(const hub_namespace& ns) {
  return ms_of(std::max<std::chrono::nanoseconds>(ns.history_ttl, kStreamMetaTtl));
}

void set_presence(self_ptr self, const std::string& name, const hub_channel& channel,
                  const hub::client_info& info, bool present) {
  if (!channel.ns->presence || !in_cluster(self->state)) return;
  tell_cluster(self, caf::make_message(
                         cl_hub_presence_atom::value,
                         hub_presence_entry{name, info.client,
                                            present ? hub::wire::encode_client_info(info) : ""}));
}

// ---- fan-out ----

void add_to_group(hub_channel& channel, hub_subscriber& subscriber) {
  auto& group = channel.groups[subscriber.shard];
  subscriber.slot = group.ports.size();
  group.ports.push_back(subscriber.port);
  group.owners.push_back(subscriber.connection.address());
  group.dirty = true;
}

// A joining subscriber got a publication past its position: from now on it is in its
// group like every other (the hub's own sends to it all went out before).
void graduate(hub_channel& channel, const caf::actor_addr& who) {
  auto& subscriber = channel.subscribers.at(who);
  subscriber.joining = false;
  channel.joiners.erase(std::find(channel.joiners.begin(), channel.joiners.end(), who));
  add_to_group(channel, subscriber);
}

// Whether a joining subscriber is still owed this message: not a publication its
// position covers (one still on its way when Redis read the position).
bool owed(const hub_subscriber& subscriber, uint64_t offset, const std::string& epoch) {
  return offset == 0 || epoch != subscriber.from_epoch || offset > subscriber.from_offset;
}

// The same bytes to every subscriber: one message per shard that has subscribers, and
// the hub's own send to each joining one. `offset` and `epoch`: of a publication (0, "":
// anything else).
void fan_out(self_ptr self, hub_channel& channel, const shared_payload& frame, uint64_t offset = 0,
             const std::string& epoch = {}) {
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
  if (!channel.joiners.empty()) {
    std::vector<caf::actor_addr> graduating;
    for (const auto& who : channel.joiners) {
      const auto& subscriber = channel.subscribers.at(who);
      if (!owed(subscriber, offset, epoch)) continue;
      subscriber.port->send_shared(frame, true);
      ++delivered;
      if (offset != 0) graduating.push_back(who);
    }
    for (const auto& who : graduating) graduate(channel, who);
  }
  context.stats.deliveries().Increment(static_cast<double>(delivered));
}

void fan_out(self_ptr self, hub_channel& channel, std::string frame) {
  fan_out(self, channel, std::make_shared<const std::string>(std::move(frame)));
}

// A join or leave push: through Redis to every node's subscribers, or here only.
void announce(self_ptr self, const std::string& name, hub_channel& channel, bool joined,
              const hub::client_info& info) {
  if (across_nodes(self->state)) {
    tell_cluster(self, caf::make_message(
                           cl_hub_notify_atom::value, name,
                           joined ? hub::wire::encode_join(info) : hub::wire::encode_leave(info)));
    return;
  }
  if (channel.subscribers.empty()) return;
  fan_out(self, channel, joined ? hub::push_join(name, info) : hub::push_leave(name, info));
}

void watch_member(self_ptr self, const caf::actor& connection) {
  auto& member = (*self->state.members)[connection.address()];
  if (!member.connection) {
    member.connection = connection;
    self->monitor(connection);
  }
}

// `position`: a stream position read from Redis, which the subscriber is given as
// joining (see hub_subscriber); nullptr: straight into its group.
void add_subscriber(self_ptr self, const std::string& name, hub_channel& channel,
                    const hub_join& join, const hub_channel_request& request,
                    const hub::stream_position* position) {
  auto& state = self->state;
  hub_subscriber subscriber;
  subscriber.connection = join.connection;
  subscriber.shard =
      std::min<unsigned>(join.shard, static_cast<unsigned>(channel.groups.size()) - 1);
  subscriber.port = join.port;
  subscriber.info = join.info;
  subscriber.info.chan_info = request.chan_info;
  if (position) {
    subscriber.joining = true;
    subscriber.from_offset = position->offset;
    subscriber.from_epoch = position->epoch;
    channel.joiners.push_back(join.connection.address());
  } else {
    add_to_group(channel, subscriber);
  }
  ++channel.users[subscriber.info.user];
  set_presence(self, name, channel, subscriber.info, true);
  channel.subscribers.emplace(join.connection.address(), std::move(subscriber));
  if (channel.subscribers.size() == 1 && in_cluster(state))
    tell_cluster(self, caf::make_message(cl_hub_listen_atom::value, name));
  watch_member(self, join.connection);
  (*state.members)[join.connection.address()].channels.push_back(name);
  ++state.subscriptions;
  state.context->stats.hub_subscriptions().Increment();
}

// The last local subscriber left (and no join waits): the node stops listening.
void unlisten_if_unused(self_ptr self, const std::string& name, const hub_channel& channel) {
  if (channel.subscribers.empty() && channel.pending_joins.empty() && in_cluster(self->state))
    tell_cluster(self, caf::make_message(cl_hub_unlisten_atom::value, name));
}

// Removes one subscription, and tells the others (join_leave).
void remove_subscriber(self_ptr self, const std::string& name, const caf::actor_addr& who) {
  auto& state = self->state;
  auto it = state.channels.find(name);
  if (it == state.channels.end()) return;
  auto& channel = it->second;
  auto found = channel.subscribers.find(who);
  if (found == channel.subscribers.end()) return;
  const hub_subscriber gone = std::move(found->second);
  channel.subscribers.erase(found);
  if (gone.joining) {
    channel.joiners.erase(std::find(channel.joiners.begin(), channel.joiners.end(), who));
  } else {
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
  }
  if (auto user = channel.users.find(gone.info.user); user != channel.users.end())
    if (--user->second == 0) channel.users.erase(user);
  --state.subscriptions;
  state.context->stats.hub_subscriptions().Decrement();
  set_presence(self, name, channel, gone.info, false);
  if (channel.ns->join_leave) announce(self, name, channel, false, gone.info);
  unlisten_if_unused(self, name, channel);
  forget_if_unused(self, name);
}

// A stream read from Redis, as a channel_history to recover and page from (the
// publications are held in it: it must outlive whatever borrows them).
std::unique_ptr<hub::channel_history> restored_history(const service_context& context,
                                                       const hub_namespace& ns,
                                                       const hub_stream& stream) {
  std::vector<hub::publication> kept;
  kept.reserve(stream.publications.size());
  // Redis keeps them newest first.
  for (auto it = stream.publications.rbegin(); it != stream.publications.rend(); ++it) {
    auto message = hub::wire::decode(*it);
    if (!message) continue;
    if (auto* published = std::get_if<hub::wire::published>(&*message))
      kept.push_back(std::move(published->pub));
  }
  return std::make_unique<hub::channel_history>(hub::channel_history::restored(
      ns.history_size,
      std::chrono::duration_cast<hub::channel_history::clock::duration>(ns.history_ttl),
      hub::stream_position{stream.offset, stream.epoch}, std::move(kept), context.now()));
}

bool positioned(const hub_channel& channel, const hub_channel_request& request) {
  return channel.history && (channel.ns->force_recovery || request.recoverable || request.recover);
}

// `stream`: the channel's stream from Redis (across nodes), else this node's own.
hub::subscribe_result subscribe_result_of(self_ptr self, hub_channel& channel,
                                          const hub_channel_request& request,
                                          hub::channel_history* stream) {
  auto& context = *self->state.context;
  hub::subscribe_result result;
  result.expires = request.expires;
  result.ttl = request.ttl;
  result.data = request.data;
  if (!stream) stream = channel.history.get();
  if (positioned(channel, request)) {
    const auto top = stream->top();
    result.recoverable = true;
    result.positioned = true;
    result.epoch = top.epoch;
    result.offset = top.offset;
  }
  if (request.recover) {
    result.was_recovering = true;
    if (stream) {
      auto recovery = stream->recover(request.since, context.config.hub.recovery_max_publications,
                                      context.now());
      result.recovered = recovery.recovered;
      result.publications = std::move(recovery.publications);
    }
    context.stats.recoveries(result.recovered).Increment();
  }
  return result;
}

// Everything is checked before anything changes: a join is all or nothing.
uint32_t check_join(self_ptr self, const hub_join& request,
                    std::vector<const hub_namespace*>& namespaces) {
  auto& state = self->state;
  const auto member = state.members->find(request.connection.address());
  for (const auto& wanted : request.channels) {
    auto resolved = resolve(*state.context, wanted.channel);
    if (resolved.error) return code_of(*resolved.error);
    namespaces.push_back(resolved.ns);
    auto existing = state.channels.find(wanted.channel);
    if (existing != state.channels.end() &&
        existing->second.subscribers.count(request.connection.address()))
      return code_of(hub::error_code::already_subscribed);
    if (member != state.members->end() &&
        std::count(member->second.pending.begin(), member->second.pending.end(), wanted.channel))
      return code_of(hub::error_code::already_subscribed);
  }
  return kOk;
}

// Subscribes the connection to every channel of the join and answers its client.
// `streams` (across nodes): each channel's stream from Redis, in order, and `held` what
// arrived for each while they were read; nullptr: this node's own streams.
hub_joined join_channels(self_ptr self, hub_join& request,
                         const std::vector<const hub_namespace*>& namespaces,
                         const std::vector<hub_stream>* streams,
                         const std::vector<std::vector<hub_held_frame>>* held) {
  auto& state = self->state;
  auto& context = *state.context;
  hub_joined outcome;
  std::vector<std::string> frames;
  std::vector<std::pair<std::string, hub::subscribe_result>> results;
  // Streams from Redis, alive until the frames that borrow their publications are made.
  std::vector<std::unique_ptr<hub::channel_history>> restored;
  std::vector<bool> joining(request.channels.size(), false);
  for (std::size_t i = 0; i < request.channels.size(); ++i) {
    const auto& wanted = request.channels[i];
    auto& channel = channel_for(self, wanted.channel, *namespaces[i]);
    hub::channel_history* stream = nullptr;
    const hub_stream* from_redis = streams ? &(*streams)[i] : nullptr;
    if (from_redis && from_redis->ok && channel.history && positioned(channel, wanted)) {
      restored.push_back(restored_history(context, *namespaces[i], *from_redis));
      stream = restored.back().get();
    }
    hub::stream_position position;
    if (stream) position = stream->top();
    joining[i] = stream != nullptr;
    add_subscriber(self, wanted.channel, channel, request, wanted, stream ? &position : nullptr);
    auto result = subscribe_result_of(self, channel, wanted, stream);
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
  // What arrived while Redis was read: after the answers, without what a position covers.
  if (held) {
    const auto who = request.connection.address();
    for (std::size_t i = 0; i < request.channels.size(); ++i) {
      auto& channel = state.channels.at(request.channels[i].channel);
      for (const auto& frame : (*held)[i]) {
        auto& subscriber = channel.subscribers.at(who);
        if (subscriber.joining && !owed(subscriber, frame.offset, frame.epoch)) continue;
        request.port->send_shared(frame.frame, true);
        if (subscriber.joining && frame.offset != 0) graduate(channel, who);
      }
    }
  }
  // Join pushes after the answers, to everyone in the channel (the joiner included).
  for (const auto& name : outcome.channels) {
    auto& channel = state.channels.at(name);
    if (channel.ns->join_leave) announce(self, name, channel, true, request.info);
  }
  return outcome;
}

// A join across nodes: Redis's streams came (or did not: `streams` nullptr, and the
// node's own are used).
void finish_join(self_ptr self, uint64_t id, const std::vector<hub_stream>* streams) {
  auto& state = self->state;
  auto it = state.pending_joins.find(id);
  if (it == state.pending_joins.end()) return;
  auto pending = std::move(it->second);
  state.pending_joins.erase(it);
  for (const auto& wanted : pending.request.channels) {
    auto& joins = state.channels.at(wanted.channel).pending_joins;
    joins.erase(std::find(joins.begin(), joins.end(), id));
  }
  auto member = state.members->find(pending.request.connection.address());
  if (member == state.members->end()) {
    // The connection died meanwhile: nothing to subscribe, nobody to answer.
    for (const auto& wanted : pending.request.channels) {
      unlisten_if_unused(self, wanted.channel, state.channels.at(wanted.channel));
      forget_if_unused(self, wanted.channel);
    }
    return;
  }
  auto& waiting = member->second.pending;
  for (const auto& wanted : pending.request.channels)
    waiting.erase(std::find(waiting.begin(), waiting.end(), wanted.channel));
  if (streams && streams->size() != pending.request.channels.size()) streams = nullptr;
  pending.answer.deliver(
      join_channels(self, pending.request, pending.namespaces, streams, &pending.held));
}

void join(self_ptr self, hub_join& request, caf::response_promise answer) {
  auto& state = self->state;
  std::vector<const hub_namespace*> namespaces;
  hub_joined refused;
  refused.error = check_join(self, request, namespaces);
  if (refused.error != kOk) return answer.deliver(std::move(refused));
  auto cluster = across_nodes(state);
  if (!cluster) return answer.deliver(join_channels(self, request, namespaces, nullptr, nullptr));
  // Across nodes: listen, then read the streams; the connection's death meanwhile is
  // watched like a subscriber's.
  const uint64_t id = state.next_join++;
  std::vector<hub_stream_request> streams;
  watch_member(self, request.connection);
  auto& member = (*state.members)[request.connection.address()];
  for (std::size_t i = 0; i < request.channels.size(); ++i) {
    const auto& wanted = request.channels[i];
    auto& channel = channel_for(self, wanted.channel, *namespaces[i]);
    channel.pending_joins.push_back(id);
    member.pending.push_back(wanted.channel);
    hub_stream_request stream;
    stream.channel = wanted.channel;
    stream.keeps_history = positioned(channel, wanted);
    stream.with_publications = wanted.recover;
    stream.epoch = hub::new_epoch();
    stream.meta_ttl_ms = meta_ttl_ms(*namespaces[i]);
    streams.push_back(std::move(stream));
  }
  auto& pending = state.pending_joins[id];
  pending.request = std::move(request);
  pending.namespaces = std::move(namespaces);
  pending.answer = std::move(answer);
  pending.held.resize(pending.request.channels.size());
  self->request(cluster, state.context->config.cluster.api_timeout, cl_hub_join_atom::value,
                std::move(streams))
      .then([self, id](std::vector<hub_stream>& got) { finish_join(self, id, &got); },
            [self, id](caf::error&) { finish_join(self, id, nullptr); });
}

void unsubscribe_here(self_ptr self, const std::string& name, const std::string& user,
                      const std::string& client);

// A message of a channel from Redis (hub::wire): fanned out here, and held for the joins
// that wait for the channel's stream.
void on_remote(self_ptr self, const std::string& name, const std::string& payload) {
  auto& state = self->state;
  auto it = state.channels.find(name);
  if (it == state.channels.end()) return;
  auto& channel = it->second;
  auto message = hub::wire::decode(payload);
  if (!message) {
    log_event(spdlog::level::warn, "hub_bad_cluster_message",
              "a Pub/Sub message of a hub channel could not be read (a node of another "
              "version on the same cluster.prefix?): dropped",
              {{"channel", name}, {"bytes", static_cast<uint64_t>(payload.size())}});
    return;
  }
  hub_held_frame frame;
  if (auto* published = std::get_if<hub::wire::published>(&*message)) {
    frame.offset = published->pub.offset;
    frame.epoch = published->epoch;
    frame.frame = std::make_shared<const std::string>(hub::push_publication(name, published->pub));
  } else if (auto* joined = std::get_if<hub::wire::joined>(&*message)) {
    frame.frame = std::make_shared<const std::string>(hub::push_join(name, joined->info));
  } else if (auto* left = std::get_if<hub::wire::left>(&*message)) {
    frame.frame = std::make_shared<const std::string>(hub::push_leave(name, left->info));
  } else {
    const auto& order = std::get<hub::wire::unsubscribed>(*message);
    return unsubscribe_here(self, name, order.user, order.client);
  }
  for (auto id : channel.pending_joins) {
    auto& pending = state.pending_joins.at(id);
    for (std::size_t i = 0; i < pending.request.channels.size(); ++i)
      if (pending.request.channels[i].channel == name) pending.held[i].push_back(frame);
  }
  fan_out(self, channel, frame.frame, frame.offset, frame.epoch);
}

void expire_idempotency(hub_state& state, steady_time now) {
  while (!state.idempotency_order.empty() && state.idempotency_order.front().first <= now) {
    state.idempotency.erase(state.idempotency_order.front().second);
    state.idempotency_order.pop_front();
  }
}

// A publication on this node only (one node, or Redis unreachable).
hub_published publish_here(self_ptr self, hub_publish& request, const hub_namespace& ns) {
  auto& state = self->state;
  auto& context = *state.context;
  hub_published outcome;
  const auto now = context.now();
  std::string key;
  if (!request.idempotency_key.empty()) {
    expire_idempotency(state, now);
    key = request.channel + "\n" + request.idempotency_key;
    if (auto seen = state.idempotency.find(key); seen != state.idempotency.end())
      return seen->second.result;
  }
  auto& channel = channel_for(self, request.channel, ns);
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
  fan_out(self, channel, std::make_shared<const std::string>(std::move(frame)), outcome.offset,
          outcome.epoch);
  if (!key.empty()) {
    state.idempotency.emplace(key, idempotent_result{outcome, now + kIdempotencyWindow});
    state.idempotency_order.emplace_back(now + kIdempotencyWindow, std::move(key));
  }
  forget_if_unused(self, request.channel);
  return outcome;
}

using published_callback = std::function<void(hub_published)>;

void publish(self_ptr self, hub_publish request, published_callback done) {
  auto& state = self->state;
  auto& context = *state.context;
  auto resolved = resolve(context, request.channel);
  if (resolved.error) {
    hub_published refused;
    refused.error = code_of(*resolved.error);
    return done(std::move(refused));
  }
  const hub_namespace& ns = *resolved.ns;
  auto cluster = across_nodes(state);
  if (!cluster) return done(publish_here(self, request, ns));
  hub_cluster_publication publication;
  publication.channel = request.channel;
  {
    hub::publication body;
    body.data = request.data;
    body.info = request.info;
    body.tags = request.tags;
    publication.body = hub::wire::encode_publication_body(body);
  }
  publication.keeps_history = hub::keeps_history(ns);
  publication.skip_history = request.skip_history;
  publication.history_size = ns.history_size;
  publication.history_ttl_ms = ms_of(ns.history_ttl);
  publication.meta_ttl_ms = meta_ttl_ms(ns);
  publication.epoch = hub::new_epoch();
  publication.idempotency_key = request.idempotency_key;
  auto kept = std::make_shared<hub_publish>(std::move(request));
  self->request(cluster, context.config.cluster.api_timeout, cl_hub_publish_atom::value,
                std::move(publication))
      .then(
          [self, kept, done, &ns](const hub_cluster_published& published) {
            if (!published.ok) return done(publish_here(self, *kept, ns));
            self->state.context->stats.publications().Increment();
            hub_published outcome;
            outcome.offset = published.offset;
            outcome.epoch = published.epoch;
            done(std::move(outcome));
          },
          // Redis did not answer in time: the publication may still go out from there;
          // Centrifugo answers an error here too, and the publisher may retry (with an
          // idempotency key, safely).
          [done](caf::error&) {
            hub_published failed;
            failed.error = code_of(hub::error_code::internal);
            done(std::move(failed));
          });
}

using history_callback = std::function<void(hub_history_answer)>;

hub_history_answer history_of(const hub_history_query& query, hub::channel_history& stream,
                              steady_time now) {
  hub_history_answer answer;
  auto range = stream.range(query.since, query.limit, query.reverse, now);
  if (auto* error = std::get_if<hub::error_code>(&range)) {
    answer.error = code_of(*error);
  } else {
    for (const auto* publication : std::get<std::vector<const hub::publication*>>(range))
      answer.publications.push_back(*publication);
  }
  answer.top = stream.top();
  return answer;
}

void history(self_ptr self, const hub_history_query& query, history_callback done) {
  auto& state = self->state;
  auto& context = *state.context;
  hub_history_answer refused;
  auto resolved = resolve(context, query.channel);
  if (resolved.error) {
    refused.error = code_of(*resolved.error);
    return done(std::move(refused));
  }
  if (!hub::keeps_history(*resolved.ns)) {
    refused.error = code_of(hub::error_code::not_available);
    return done(std::move(refused));
  }
  const hub_namespace& ns = *resolved.ns;
  const auto here = [self, query, &ns] {
    auto& channel = channel_for(self, query.channel, ns);
    auto answer = history_of(query, *channel.history, self->state.context->now());
    forget_if_unused(self, query.channel);
    return answer;
  };
  auto cluster = across_nodes(state);
  if (!cluster) return done(here());
  hub_stream_request stream;
  stream.channel = query.channel;
  stream.keeps_history = true;
  stream.with_publications = true;
  stream.epoch = hub::new_epoch();
  stream.meta_ttl_ms = meta_ttl_ms(ns);
  self->request(cluster, context.config.cluster.api_timeout, cl_hub_read_atom::value,
                std::move(stream))
      .then(
          [self, query, done, here, &ns](const hub_stream& got) {
            if (!got.ok) return done(here());
            auto& context = *self->state.context;
            auto restored = restored_history(context, ns, got);
            done(history_of(query, *restored, context.now()));
          },
          [done, here](caf::error&) { done(here()); });
}

using presence_callback = std::function<void(hub_presence_answer)>;

void presence(self_ptr self, const std::string& name, presence_callback done) {
  auto& state = self->state;
  hub_presence_answer answer;
  auto resolved = resolve(*state.context, name);
  if (resolved.error) {
    answer.error = code_of(*resolved.error);
    return done(std::move(answer));
  }
  if (!resolved.ns->presence) {
    answer.error = code_of(hub::error_code::not_available);
    return done(std::move(answer));
  }
  const auto here = [self, name] {
    hub_presence_answer local;
    auto& channels = self->state.channels;
    auto it = channels.find(name);
    if (it == channels.end()) return local;
    for (const auto& [addr, subscriber] : it->second.subscribers)
      local.clients.push_back(subscriber.info);
    local.num_users = it->second.users.size();
    return local;
  };
  auto cluster = across_nodes(state);
  if (!cluster) return done(here());
  self->request(cluster, state.context->config.cluster.api_timeout, cl_hub_presence_get_atom::value,
                name)
      .then(
          [done, here](const hub_cluster_presence& got) {
            if (!got.ok) return done(here());
            hub_presence_answer across;
            std::unordered_set<std::string> users;
            for (const auto& client : got.clients)
              if (auto info = hub::wire::decode_client_info(client)) {
                users.insert(info->user);
                across.clients.push_back(std::move(*info));
              }
            across.num_users = users.size();
            done(std::move(across));
          },
          [done, here](caf::error&) { done(here()); });
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

using api_callback = std::function<void(hub_api_reply)>;

void api_publish(self_ptr self, const json::object& params, api_callback done) {
  hub_publish request;
  auto channel = string_param(params, "channel");
  if (!channel || channel->empty())
    return done(api_error(code_of(hub::error_code::bad_request), "\"channel\" is required"));
  request.channel = *channel;
  if (auto problem = read_publication(params, request))
    return done(api_error(code_of(hub::error_code::bad_request), *problem));
  publish(self, std::move(request), [done](hub_published published) {
    if (published.error != kOk) return done(api_error(published.error));
    hub_api_reply reply;
    reply.result = published_json(published);
    done(std::move(reply));
  });
}

void api_broadcast(self_ptr self, const json::object& params, api_callback done) {
  const auto* channels = params.if_contains("channels");
  if (!channels || !channels->is_array() || channels->as_array().empty())
    return done(api_error(code_of(hub::error_code::bad_request),
                          "\"channels\" must be a non-empty array of channel names"));
  hub_publish shared;
  if (auto problem = read_publication(params, shared))
    return done(api_error(code_of(hub::error_code::bad_request), *problem));
  // One response per channel, in the order asked, whenever each publish answers.
  struct gathering {
    json::array responses;
    std::size_t waiting = 0;
    api_callback done;
  };
  const auto& names = channels->as_array();
  auto gather = std::make_shared<gathering>();
  gather->responses.resize(names.size());
  gather->waiting = names.size();
  gather->done = std::move(done);
  const auto answered = [gather](std::size_t i, json::object response) {
    gather->responses[i] = std::move(response);
    if (--gather->waiting > 0) return;
    hub_api_reply reply;
    reply.result["responses"] = std::move(gather->responses);
    gather->done(std::move(reply));
  };
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto& channel = names[i];
    if (!channel.is_string() || channel.as_string().empty()) {
      answered(
          i, json::object{{"error", json::object{{"code", code_of(hub::error_code::bad_request)},
                                                 {"message", "a channel name must be a string"}}}});
      continue;
    }
    hub_publish request = shared;
    request.channel = std::string(channel.as_string());
    publish(self, std::move(request), [answered, i](hub_published published) {
      json::object response;
      if (published.error != kOk)
        response["error"] = json::object{
            {"code", published.error},
            {"message", hub::error_message(static_cast<hub::error_code>(published.error))}};
      else
        response["result"] = published_json(published);
      answered(i, std::move(response));
    });
  }
}

void api_presence(self_ptr self, const json::object& params, bool stats, api_callback done) {
  auto channel = string_param(params, "channel");
  if (!channel || channel->empty())
    return done(api_error(code_of(hub::error_code::bad_request), "\"channel\" is required"));
  presence(self, *channel, [stats, done](hub_presence_answer answer) {
    if (answer.error != kOk) return done(api_error(answer.error));
    hub_api_reply reply;
    if (stats) {
      reply.result["num_clients"] = answer.clients.size();
      reply.result["num_users"] = answer.num_users;
    } else {
      json::object clients;
      for (const auto& info : answer.clients) clients[info.client] = client_info_json(info);
      reply.result["presence"] = std::move(clients);
    }
    done(std::move(reply));
  });
}

void api_history(self_ptr self, const json::object& params, api_callback done) {
  hub_history_query query;
  const auto bad = [&done](const char* message) {
    done(api_error(code_of(hub::error_code::bad_request), message));
  };
  auto channel = string_param(params, "channel");
  if (!channel || channel->empty()) return bad("\"channel\" is required");
  query.channel = *channel;
  if (const auto* limit = params.if_contains("limit")) {
    if (!limit->is_int64() && !limit->is_uint64()) return bad("\"limit\" must be an integer");
    query.limit = limit->to_number<int64_t>();
  }
  if (const auto* reverse = params.if_contains("reverse")) {
    if (!reverse->is_bool()) return bad("\"reverse\" must be a boolean");
    query.reverse = reverse->as_bool();
  }
  if (const auto* since = params.if_contains("since")) {
    if (!since->is_object()) return bad("\"since\" must be {\"offset\":N,\"epoch\":\"...\"}");
    hub::stream_position position;
    const auto& object = since->as_object();
    if (const auto* offset = object.if_contains("offset")) {
      if (!offset->is_uint64() && !(offset->is_int64() && offset->as_int64() >= 0))
        return bad("\"since.offset\" must be a non-negative integer");
      position.offset = offset->to_number<uint64_t>();
    }
    if (const auto* epoch = object.if_contains("epoch")) {
      if (!epoch->is_string()) return bad("\"since.epoch\" must be a string");
      position.epoch = std::string(epoch->as_string());
    }
    query.since = std::move(position);
  }
  history(self, query, [done](hub_history_answer answer) {
    if (answer.error != kOk) return done(api_error(answer.error));
    hub_api_reply reply;
    json::array publications;
    for (const auto& publication : answer.publications)
      publications.push_back(publication_json(publication));
    reply.result["publications"] = std::move(publications);
    reply.result["epoch"] = answer.top.epoch;
    reply.result["offset"] = answer.top.offset;
    done(std::move(reply));
  });
}

void api_history_remove(self_ptr self, const json::object& params, api_callback done) {
  auto channel = string_param(params, "channel");
  if (!channel || channel->empty())
    return done(api_error(code_of(hub::error_code::bad_request), "\"channel\" is required"));
  auto resolved = resolve(*self->state.context, *channel);
  if (resolved.error) return done(api_error(code_of(*resolved.error)));
  if (!hub::keeps_history(*resolved.ns))
    return done(api_error(code_of(hub::error_code::not_available)));
  if (auto it = self->state.channels.find(*channel);
      it != self->state.channels.end() && it->second.history)
    it->second.history->clear();
  auto cluster = across_nodes(self->state);
  if (!cluster) return done({});
  self->request(cluster, self->state.context->config.cluster.api_timeout,
                cl_hub_history_remove_atom::value, *channel)
      .then(
          [done](bool removed) {
            done(removed ? hub_api_reply{} : api_error(code_of(hub::error_code::internal)));
          },
          [done](caf::error&) { done(api_error(code_of(hub::error_code::internal))); });
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

// The API's unsubscribe on this node: the user's subscriptions to the channel (one
// client's when `client` is not "").
void unsubscribe_here(self_ptr self, const std::string& name, const std::string& user,
                      const std::string& client) {
  auto it = self->state.channels.find(name);
  if (it == self->state.channels.end()) return;
  std::vector<std::pair<caf::actor_addr, hub_subscriber>> leaving;
  for (const auto& [addr, subscriber] : it->second.subscribers)
    if (subscriber.info.user == user && (client.empty() || subscriber.info.client == client))
      leaving.emplace_back(addr, subscriber);
  for (auto& [addr, subscriber] : leaving) {
    subscriber.port->send(
        hub::push_unsubscribe(name, hub::unsubscribe_server.code, hub::unsubscribe_server.reason),
        true);
    run_in_connection(subscriber.connection, [name](connection_handle& connection) {
      hub_forget_channel(connection, name);
    });
    leave(self, addr, name);
  }
}

// Across nodes: every node with subscribers of the channel gets the order from Redis.
hub_api_reply api_unsubscribe(self_ptr self, const json::object& params) {
  auto user = string_param(params, "user");
  auto channel = string_param(params, "channel");
  if (!user || !channel || channel->empty())
    return api_error(code_of(hub::error_code::bad_request),
                     "\"user\" and \"channel\" are required");
  auto client = string_param(params, "client").value_or("");
  if (across_nodes(self->state))
    tell_cluster(self, caf::make_message(cl_hub_notify_atom::value, *channel,
                                         hub::wire::encode_unsubscribe(*user, client)));
  else
    unsubscribe_here(self, *channel, *user, client);
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

void api_call(self_ptr self, const std::string& method, const json::object& params,
              api_callback done) {
  if (method == "publish") return api_publish(self, params, std::move(done));
  if (method == "broadcast") return api_broadcast(self, params, std::move(done));
  if (method == "presence") return api_presence(self, params, false, std::move(done));
  if (method == "presence_stats") return api_presence(self, params, true, std::move(done));
  if (method == "history") return api_history(self, params, std::move(done));
  if (method == "history_remove") return api_history_remove(self, params, std::move(done));
  if (method == "channels") return done(api_channels(self, params));
  if (method == "unsubscribe") return done(api_unsubscribe(self, params));
  if (method == "info") return done(api_info(self));
  done(api_error(code_of(hub::error_code::method_not_found)));
}

// What the cluster service mirrors in Redis, after its restart.
hub_table table_of(const hub_state& state) {
  hub_table table;
  for (const auto& [name, channel] : state.channels) {
    if (channel.subscribers.empty() && channel.pending_joins.empty()) continue;
    table.channels.push_back(name);
    if (!channel.ns->presence) continue;
    for (const auto& [addr, subscriber] : channel.subscribers)
      table.presence.push_back(
          {name, subscriber.info.client, hub::wire::encode_client_info(subscriber.info)});
  }
  return table;
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
  // A restarted hub starts empty: what the cluster service holds of the dead one's
  // channels and presence goes.
  tell_cluster(self, caf::make_message(cl_hub_reset_atom::value));
  // The answers of a request that may wait for Redis (cluster mode): a promise, delivered
  // at once on one node.
  return {
      [self](hub_join_atom, hub_join& request) {
        auto answer = self->make_response_promise();
        join(self, request, answer);
        return answer;
      },
      [self](hub_leave_atom, const caf::actor_addr& who, const std::string& channel) {
        leave(self, who, channel);
      },
      [self](hub_publish_atom, hub_publish& request) {
        auto answer = self->make_response_promise();
        publish(self, std::move(request), [answer](hub_published published) mutable {
          answer.deliver(std::move(published));
        });
        return answer;
      },
      [self](hub_presence_atom, const std::string& channel) {
        auto answer = self->make_response_promise();
        presence(self, channel,
                 [answer](hub_presence_answer got) mutable { answer.deliver(std::move(got)); });
        return answer;
      },
      [self](hub_history_atom, const hub_history_query& query) {
        auto answer = self->make_response_promise();
        history(self, query,
                [answer](hub_history_answer got) mutable { answer.deliver(std::move(got)); });
        return answer;
      },
      [self](hub_api_atom, const hub_api_request& request) {
        auto answer = self->make_response_promise();
        api_call(self, request.method, request.params,
                 [answer](hub_api_reply reply) mutable { answer.deliver(std::move(reply)); });
        return answer;
      },
      [self](hub_remote_atom, const std::string& channel, const std::string& payload) {
        on_remote(self, channel, payload);
      },
      [self](hub_table_atom) { return table_of(self->state); },
      [self](hub_tick_atom) { tick(self); },
      [](fault_atom, crash_atom) -> caf::result<void> {
        throw std::runtime_error("hub crash (fault injection)");
      },
  };
}

}  // namespace wsvisor
