// Hub mode's channels (CONTRACT 13): the root service `hub`, one actor that owns every
// channel of the node: its subscribers, its presence, its history and its epoch.
//
// A subscription belongs to its connection actor: the hub monitors each connection
// that subscribes, and the connection's death (whatever killed it: a close, a crash
// past its budget, its shard's death) removes it from every channel and presence at
// once, with no sweep and no TTL. A restart of the connection's application keeps its
// subscriptions (the actor lives on). If the hub itself dies, every subscribed
// connection is closed with 3004 (the streams are gone; the SDK reconnects and finds
// a new epoch), and the restarted hub starts empty.
//
// Across nodes (cluster mode, CONTRACT 14): the hub still owns its subscriptions, and
// Redis the rest. A publication goes to Redis, where one script gives it its offset and
// publishes it on the channel's Pub/Sub channel; every node with subscribers of the
// channel (this one too) fans it out from there, so all see the same offsets in the same
// order. A subscribe listens first, then reads the stream's position (and, to recover,
// its publications) from Redis; what arrives meanwhile is held and given to the new
// subscriber after its reply, without what its position already covers. Presence is in
// Redis per node (a dead node's is reaped with it). While Redis is unreachable the hub
// works as on one node (cluster.on_redis_down = "local": delivered here only).
//
// Fan-out: a publication is framed once; the same bytes (a shared_payload) go to every
// subscriber, in one message per shard that has subscribers of the channel, and that
// shard queues them on its connections' sessions.
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <boost/json/object.hpp>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "hub_cluster_messages.hpp"
#include "service_context.hpp"
#include "wsvisor/hub/history.hpp"
#include "wsvisor/hub/protocol.hpp"
#include "wsvisor/service.hpp"
#include "wsvisor/session_port.hpp"

namespace wsvisor {

// The sessions of one shard that receive a channel's publications.
using port_list = std::vector<std::shared_ptr<session_port>>;

// One channel of a subscribe, with what its reply needs.
struct hub_channel_request {
  std::string channel;
  std::string chan_info;  // raw JSON (a subscription token's or proxy's info) or ""
  bool recover = false;
  hub::stream_position since;
  bool recoverable = false;  // the client asked for a recoverable subscription
  std::string data;          // raw JSON for the reply (the subscribe proxy's) or ""
  bool expires = false;
  uint32_t ttl = 0;
};

// connection -> hub: subscribe this connection to these channels. The hub sends the
// client its answer itself (the reply, the connect reply or the subscribe pushes), so
// that nothing published after the subscription can reach the client before it.
struct hub_join {
  enum class answer : uint8_t {
    subscribe_reply,  // one channel, the client's subscribe command (`reply_id`)
    connect_reply,    // server-side subscriptions inside the connect reply
    subscribe_push,   // server-side subscriptions made later (the API's subscribe)
  };
  caf::actor connection;
  unsigned shard = 0;
  std::shared_ptr<session_port> port;
  hub::client_info info;  // user, client, conn_info
  std::vector<hub_channel_request> channels;
  answer how = answer::subscribe_reply;
  uint32_t reply_id = 0;
  hub::connect_result connect;  // with connect_reply: the reply; the hub adds subs
};

// hub -> connection: the join's outcome (error 0: every channel is subscribed).
struct hub_joined {
  uint32_t error = 0;
  std::vector<std::string> channels;  // subscribed now
};

// -> hub: one publication (the API's publish and broadcast, a client's publish).
struct hub_publish {
  std::string channel;
  std::string data;  // raw JSON
  std::optional<hub::client_info> info;
  std::string idempotency_key;
  bool skip_history = false;
  std::vector<std::pair<std::string, std::string>> tags;
};

struct hub_published {
  uint32_t error = 0;
  uint64_t offset = 0;  // 0 when the channel keeps no history
  std::string epoch;
};

// -> hub: history of a channel (the client's history command, the API's).
struct hub_history_query {
  std::string channel;
  std::optional<hub::stream_position> since;
  int64_t limit = 0;
  bool reverse = false;
};

struct hub_history_answer {
  uint32_t error = 0;
  std::vector<hub::publication> publications;
  hub::stream_position top;
};

struct hub_presence_answer {
  uint32_t error = 0;
  std::vector<hub::client_info> clients;
  uint64_t num_users = 0;
};

// connection -> hub: (hub_leave_atom, address, channel) unsubscribe; the connection
// answers its client itself.
using hub_join_atom = caf::atom_constant<caf::atom("hubjoin")>;
using hub_leave_atom = caf::atom_constant<caf::atom("hubleave")>;
using hub_publish_atom = caf::atom_constant<caf::atom("hubpub")>;
using hub_presence_atom = caf::atom_constant<caf::atom("hubpres")>;
using hub_history_atom = caf::atom_constant<caf::atom("hubhist")>;
// -> hub: one method of the hub API (hub_api_request) -> hub_api_reply.
struct hub_api_request {
  std::string method;
  boost::json::object params;  // wrapped: CAF would try to print a bare object
};
using hub_api_atom = caf::atom_constant<caf::atom("hubapi")>;
// hub -> shard: (shared frame, the shard's sessions) queue this on each.
using hub_deliver_atom = caf::atom_constant<caf::atom("hubdeliv")>;
// hub -> itself: drop channels whose history expired and idempotency keys past 5 min.
using hub_tick_atom = caf::atom_constant<caf::atom("hubtick")>;

struct hub_subscriber {
  caf::actor connection;
  unsigned shard = 0;
  std::shared_ptr<session_port> port;
  hub::client_info info;
  std::size_t slot = 0;  // its index in the channel's group of its shard
  // Across nodes: positioned at (from_offset, from_epoch) of the Redis stream, and not yet
  // in its group: it gets each publication from the hub itself, without those its
  // position covers that were still on their way, until one past its position arrives.
  bool joining = false;
  uint64_t from_offset = 0;
  std::string from_epoch;
};

// A channel's subscribers on one shard, as that shard receives them.
struct hub_shard_group {
  port_list ports;
  std::vector<caf::actor_addr> owners;        // parallel to ports
  std::shared_ptr<const port_list> snapshot;  // what the last publication carried
  bool dirty = true;
};

struct hub_channel {
  const hub_namespace* ns = nullptr;
  std::unique_ptr<hub::channel_history> history;  // with history_size and history_ttl
  std::unordered_map<caf::actor_addr, hub_subscriber> subscribers;
  std::unordered_map<std::string, uint64_t> users;  // presence: subscribers per user
  std::vector<hub_shard_group> groups;              // by shard index
  std::vector<caf::actor_addr> joiners;             // subscribers still `joining`
  std::vector<uint64_t> pending_joins;              // joins waiting for Redis
  // The stream's position outlives its publications (history_remove, their ttl) until
  // history_ttl after the last publication, so that an offset is never handed out twice
  // within it; then a channel nobody subscribes to is forgotten, which bounds memory.
  steady_time last_publication{};
};

// What the hub knows of a connection that subscribed: enough to undo it at its death.
struct hub_member {
  caf::actor connection;
  std::vector<std::string> channels;
  std::vector<std::string> pending;  // joins waiting for Redis
};

// A message of a channel that arrived while a join of it waited for Redis.
struct hub_held_frame {
  uint64_t offset = 0;  // of a publication; 0 for anything else
  std::string epoch;
  shared_payload frame;
};

// A join across nodes, waiting for its channels' streams from Redis.
struct hub_pending_join {
  hub_join request;
  std::vector<const hub_namespace*> namespaces;  // of each channel, in order
  caf::response_promise answer;
  std::vector<std::vector<hub_held_frame>> held;  // by channel, in order
};

struct idempotent_result {
  hub_published result;
  steady_time expires_at;
};

struct hub_state {
  std::shared_ptr<service_context> context;
  std::unordered_map<std::string, hub_channel> channels;
  // Shared with the functor that runs when the hub dies (its state is gone by then).
  std::shared_ptr<std::unordered_map<caf::actor_addr, hub_member>> members =
      std::make_shared<std::unordered_map<caf::actor_addr, hub_member>>();
  // "<channel>\n<key>" -> the first publish's result, for 5 minutes (CONTRACT 13.6).
  std::unordered_map<std::string, idempotent_result> idempotency;
  std::deque<std::pair<steady_time, std::string>> idempotency_order;
  uint64_t subscriptions = 0;
  std::map<uint64_t, hub_pending_join> pending_joins;
  uint64_t next_join = 1;
  static inline const char* name = "hub";
};

caf::behavior hub_actor(caf::stateful_actor<hub_state>* self,
                        std::shared_ptr<service_context> context);

}  // namespace wsvisor

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::hub_join)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::hub_joined)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::hub_publish)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::hub_published)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::hub_history_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::hub_history_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::hub_presence_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::hub_api_reply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::shared_payload)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<const wsvisor::port_list>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::hub_api_request)
