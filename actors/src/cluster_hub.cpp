// Hub mode across nodes (CONTRACT 14), the cluster service's side: the Pub/Sub channels
// of the hub channels this node has subscribers of, the streams and presence in Redis.
// The hub decides; this file only carries its requests to Redis and Redis's messages
// back to it (hub_cluster_messages.hpp).
#include <prometheus/counter.h>
#include <wsvisor/log.hpp>

#include <chrono>
#include <memory>

#include "cluster_detail.hpp"
#include "service_context.hpp"

namespace wsvisor::cluster_detail {
namespace {

// A channel without local subscribers stays subscribed this long: a subscriber that
// comes back soon (a reconnect, a page reload) finds it confirmed, with no wait.
constexpr auto kIdleUnsubscribe = std::chrono::seconds(5);
constexpr auto kIdleCheck = std::chrono::seconds(1);

void subscribe_channels(self_ptr self, const std::vector<std::string>& channels, const char* verb) {
  auto& state = self->state;
  if (channels.empty() || !state.subscriber.up || !state.subscriber.connection) return;
  const auto k = keys_of(*state.context);
  std::vector<std::string> argv{verb};
  argv.reserve(channels.size() + 1);
  for (const auto& channel : channels) argv.push_back(k.hub_channel(channel));
  state.subscriber.connection->send(std::move(argv), nullptr);
}

void run_waiting(hub_listening& listen) {
  auto waiting = std::move(listen.waiting);
  listen.waiting.clear();
  for (auto& done : waiting) done();
}

// `done` once the channel's Pub/Sub subscription is confirmed, or at once when there is
// no subscription to wait for (the subscriber connection is down: delivery resumes when
// it is back, and the join must not wait for that).
void listen(self_ptr self, const std::string& channel, std::function<void()> done) {
  auto& state = self->state;
  auto [it, fresh] = state.hub_listens.try_emplace(channel);
  auto& entry = it->second;
  entry.idle = false;
  if (fresh) subscribe_channels(self, {channel}, "SUBSCRIBE");
  if (entry.confirmed || !state.subscriber.up) return done();
  entry.waiting.push_back(std::move(done));
}

void read_stream(self_ptr self, const hub_stream_request& request,
                 std::function<void(hub_stream)> done) {
  if (!ready_for_work(self->state)) return done(hub_stream{});
  const auto k = keys_of(*self->state.context);
  run_script(
      self, hub_stream_script,
      {k.hub_meta(request.channel), k.hub_history(request.channel), request.epoch,
       std::to_string(request.meta_ttl_ms), request.with_publications ? "1" : "0"},
      2, [done = std::move(done)](const redis_value* reply) {
        hub_stream stream;
        if (reply && reply->kind == redis_value::type::array && reply->elements.size() == 3) {
          stream.ok = true;
          stream.offset = static_cast<uint64_t>(std::max<int64_t>(0, reply->elements[0].integer));
          stream.epoch = reply->elements[1].text;
          for (const auto& publication : reply->elements[2].elements)
            stream.publications.push_back(publication.text);
        }
        done(std::move(stream));
      });
}

}  // namespace

void hub_join(self_ptr self, std::vector<hub_stream_request> requests,
              caf::response_promise answer) {
  struct gathering {
    std::vector<hub_stream> streams;
    size_t waiting = 0;
    caf::response_promise answer;
  };
  auto gather = std::make_shared<gathering>();
  gather->streams.resize(requests.size());
  gather->waiting = requests.size();
  gather->answer = std::move(answer);
  if (requests.empty()) return gather->answer.deliver(std::move(gather->streams));
  for (size_t i = 0; i < requests.size(); ++i) {
    auto request = std::make_shared<hub_stream_request>(std::move(requests[i]));
    const auto channel = request->channel;
    listen(self, channel, [self, gather, i, request] {
      const auto finish = [gather, i](hub_stream stream) {
        gather->streams[i] = std::move(stream);
        if (--gather->waiting == 0) gather->answer.deliver(std::move(gather->streams));
      };
      if (!request->keeps_history) {
        hub_stream listened;
        listened.ok = ready_for_work(self->state);
        return finish(std::move(listened));
      }
      read_stream(self, *request, finish);
    });
  }
}

void hub_read(self_ptr self, const hub_stream_request& request, caf::response_promise answer) {
  read_stream(self, request,
              [answer](hub_stream stream) mutable { answer.deliver(std::move(stream)); });
}

void hub_listen(self_ptr self, const std::string& channel) {
  listen(self, channel, [] {});
}

void hub_unlisten(self_ptr self, const std::string& channel) {
  auto& state = self->state;
  auto it = state.hub_listens.find(channel);
  if (it == state.hub_listens.end()) return;
  it->second.idle = true;
  it->second.idle_since = state.context->now();
}

void hub_publish(self_ptr self, const hub_cluster_publication& publication,
                 caf::response_promise answer) {
  auto& state = self->state;
  if (!ready_for_work(state)) return answer.deliver(hub_cluster_published{});
  auto& context = *state.context;
  const auto k = keys_of(context);
  const auto meta = k.hub_meta(publication.channel);
  context.stats.cluster_messages(false).Increment();
  run_script(self, hub_publish_script,
             {meta, k.hub_history(publication.channel),
              publication.idempotency_key.empty()
                  ? meta
                  : k.hub_idempotency(publication.channel, publication.idempotency_key),
              k.hub_channel(publication.channel), publication.body,
              publication.keeps_history ? "1" : "0", publication.skip_history ? "1" : "0",
              std::to_string(publication.history_size), std::to_string(publication.history_ttl_ms),
              publication.epoch, std::to_string(publication.meta_ttl_ms)},
             3, [answer](const redis_value* reply) mutable {
               hub_cluster_published published;
               if (reply && reply->kind == redis_value::type::string) {
                 const auto colon = reply->text.find(':');
                 if (colon != std::string::npos) {
                   published.ok = true;
                   published.offset = std::strtoull(reply->text.c_str(), nullptr, 10);
                   published.epoch = reply->text.substr(colon + 1);
                 }
               }
               answer.deliver(std::move(published));
             });
}

void hub_notify(self_ptr self, const std::string& channel, const std::string& message) {
  auto& state = self->state;
  if (!ready_for_work(state)) return;
  state.context->stats.cluster_messages(false).Increment();
  command(self, {"PUBLISH", keys_of(*state.context).hub_channel(channel), message}, nullptr);
}

void hub_set_presence(self_ptr self, const hub_presence_entry& entry) {
  auto& state = self->state;
  const auto key = std::make_pair(entry.channel, entry.client);
  if (entry.info.empty())
    state.hub_presence.erase(key);
  else
    state.hub_presence[key] = entry.info;
  if (!ready_for_work(state)) return;  // the next rebuild puts the mirror in
  auto& context = *state.context;
  const auto k = keys_of(context);
  run_script(self, hub_presence_script,
             {k.hub_presence(entry.channel, context.node_id), k.hub_presence_nodes(entry.channel),
              k.hub_presence_index(context.node_id), context.node_id, entry.channel, entry.client,
              entry.info},
             3, nullptr);
}

void hub_get_presence(self_ptr self, const std::string& channel, caf::response_promise answer) {
  auto& state = self->state;
  if (!ready_for_work(state)) return answer.deliver(hub_cluster_presence{});
  auto& context = *state.context;
  const auto k = keys_of(context);
  run_script(self, hub_presence_get_script,
             {k.nodes(), k.hub_presence_nodes(channel), context.config.cluster.prefix, channel}, 2,
             [answer](const redis_value* reply) mutable {
               hub_cluster_presence presence;
               if (reply && reply->kind == redis_value::type::array) {
                 presence.ok = true;
                 for (const auto& client : reply->elements) presence.clients.push_back(client.text);
               }
               answer.deliver(std::move(presence));
             });
}

void hub_remove_history(self_ptr self, const std::string& channel, caf::response_promise answer) {
  auto& state = self->state;
  if (!ready_for_work(state)) return answer.deliver(false);
  command(self, {"DEL", keys_of(*state.context).hub_history(channel)},
          [answer](const redis_value* reply) mutable {
            answer.deliver(reply != nullptr && !reply->is_error());
          });
}

void hub_reset(self_ptr self) {
  auto& state = self->state;
  std::vector<std::string> channels;
  for (auto& [channel, entry] : state.hub_listens) {
    channels.push_back(channel);
    run_waiting(entry);
  }
  subscribe_channels(self, channels, "UNSUBSCRIBE");
  state.hub_listens.clear();
  state.hub_presence.clear();
  if (ready_for_work(state)) hub_rebuild_presence(self);
}

void hub_take_table(self_ptr self, hub_table table) {
  auto& state = self->state;
  std::vector<std::string> fresh;
  for (auto& channel : table.channels)
    if (state.hub_listens.try_emplace(channel).second) fresh.push_back(std::move(channel));
  subscribe_channels(self, fresh, "SUBSCRIBE");
  for (auto& entry : table.presence)
    state.hub_presence[{std::move(entry.channel), std::move(entry.client)}] = std::move(entry.info);
}

void hub_resubscribe(self_ptr self) {
  auto& state = self->state;
  std::vector<std::string> channels;
  for (auto it = state.hub_listens.begin(); it != state.hub_listens.end();) {
    if (it->second.idle) {
      run_waiting(it->second);
      it = state.hub_listens.erase(it);
      continue;
    }
    it->second.confirmed = false;
    channels.push_back(it->first);
    ++it;
  }
  subscribe_channels(self, channels, "SUBSCRIBE");
}

void hub_subscription_lost(self_ptr self) {
  for (auto& [channel, entry] : self->state.hub_listens) {
    entry.confirmed = false;
    run_waiting(entry);
  }
}

void hub_on_push(self_ptr self, const std::string& kind, const std::string& channel,
                 const std::string& payload) {
  auto& state = self->state;
  auto& context = *state.context;
  const auto prefix = keys_of(context).hub_channel_prefix();
  if (channel.compare(0, prefix.size(), prefix) != 0) return;
  auto it = state.hub_listens.find(channel.substr(prefix.size()));
  if (it == state.hub_listens.end()) return;  // unsubscribed since
  if (kind == "subscribe") {
    it->second.confirmed = true;
    run_waiting(it->second);
  } else if (kind == "message") {
    context.stats.cluster_messages(true).Increment();
    if (auto hub = context.hub_service())
      self->send(hub, hub_remote_atom::value, it->first, payload);
  }
}

void hub_rebuild_presence(self_ptr self) {
  auto& state = self->state;
  auto& context = *state.context;
  std::vector<std::string> args{context.config.cluster.prefix, context.node_id};
  args.reserve(2 + state.hub_presence.size() * 3);
  for (const auto& [key, info] : state.hub_presence) {
    args.push_back(key.first);
    args.push_back(key.second);
    args.push_back(info);
  }
  run_script(self, hub_presence_rebuild_script, std::move(args), 0, [](const redis_value* reply) {
    if (!reply || reply->is_error())
      log_event(spdlog::level::warn, "cluster_presence_rebuild_failed",
                "could not rebuild this node's hub presence in Redis: the next "
                "reconnection to Redis retries",
                {{"error", reply ? reply->text : std::string("connection lost")}});
  });
}

void hub_tick(self_ptr self) {
  auto& state = self->state;
  const auto now = state.context->now();
  if (now - state.hub_last_idle_check < kIdleCheck) return;
  state.hub_last_idle_check = now;
  std::vector<std::string> idle;
  for (auto it = state.hub_listens.begin(); it != state.hub_listens.end();) {
    if (it->second.idle && now - it->second.idle_since >= kIdleUnsubscribe) {
      idle.push_back(it->first);
      run_waiting(it->second);
      it = state.hub_listens.erase(it);
    } else {
      ++it;
    }
  }
  subscribe_channels(self, idle, "UNSUBSCRIBE");
}

}  // namespace wsvisor::cluster_detail
