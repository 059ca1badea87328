// Cluster mode (CONTRACT 14): the root service `cluster`, this node's one client of Redis
// (a command connection and a Pub/Sub subscriber, both through the redis_port on the io
// threads). It holds the node's lease and reaps dead nodes' entries, makes the atomic
// per-user claim at admission (sweeping the nodes that hold the user at its cap), and
// removes each slot's entry when the slot is released. What it has put in Redis is a
// mirror of the shards' tables: a restarted service takes it from them again, and every
// (re)connection to Redis replaces this node's entries with it, so that nothing a dead
// connection held survives a Redis restart or a crash of this service.
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "messages.hpp"
#include "service_context.hpp"
#include "wsvisor/redis_port.hpp"

namespace wsvisor {

// The Redis connections of the service, each with the generation that tells its
// reports from those of a connection it replaced.
struct redis_link {
  std::shared_ptr<redis_connection> connection;
  uint64_t generation = 0;
  bool up = false;
  std::size_t failures = 0;  // in a row: the reconnect backoff's exponent
};

// A claim at the user's cap, waiting for the nodes that hold the user to sweep.
struct waiting_claim {
  caf::response_promise answer;
  uint64_t id = 0;
  std::string user;
  steady_time deadline;
  uint32_t sweeps_pending = 0;  // nodes that have not said what their sweep freed
  uint64_t freed = 0;           // what the sweeps that answered freed
  bool holders_asked = false;   // the holders were asked to sweep (once per claim)
  bool retry_scheduled = false;
};

// A send or disconnect of the server API waiting for the other nodes' answers.
struct cluster_request {
  caf::response_promise answer;
  cluster_delivery result;
  std::unordered_set<std::string> waiting;  // nodes that have not answered
  bool local_done = false;
  // Whom the request was published to is known (a send by user learns it from the
  // fan_out script's reply); answers that came first wait in `early`.
  bool nodes_known = true;
  std::unordered_map<std::string, uint64_t> early;
  uint64_t unreached = 0;  // nodes that may not have got it (Redis did not answer)
};

// Hub mode: a hub channel this node listens to on Redis Pub/Sub (P:hubch:<channel>).
struct hub_listening {
  bool confirmed = false;  // Redis answered the SUBSCRIBE on the current subscription
  bool idle = false;       // no local subscriber since idle_since: unsubscribed later
  steady_time idle_since;
  std::vector<std::function<void()>> waiting;  // joins waiting for the confirmation
};

struct cluster_state {
  std::shared_ptr<service_context> context;
  redis_link commands;
  redis_link subscriber;
  uint64_t next_generation = 1;
  // SCRIPT LOAD's answers, by script; "" until loaded on the current connection.
  std::vector<std::string> script_sha;
  // What this node holds, as Redis should have it (by connection id).
  std::unordered_map<uint64_t, cluster_entry> entries;
  bool tables_in = false;  // the shards' tables have been read (after a (re)start)
  bool synced = false;     // Redis holds `entries` (rebuilt since the last connect)
  bool subscribed = false;
  // Replies on their way, by token (a connection's replies come back in order).
  uint64_t next_token = 1;
  std::unordered_map<uint64_t, std::function<void(const redis_value*)>> waiting_replies;
  // The Pub/Sub probe: the last one sent, the last one seen come back, and when.
  uint64_t probe_sent = 0;
  uint64_t probe_seen = 0;
  steady_time probe_sent_at;
  steady_time last_lease;
  steady_time last_probe;
  std::unordered_set<std::string> reaping;  // dead nodes whose reap is in flight
  uint64_t next_wait = 1;
  std::map<uint64_t, waiting_claim> waiting_claims;
  // Sweeps of a user at its cap: running here (whoever asked waits for the same one),
  // and when one, here or as the holders answered a claim, last freed nothing: within
  // probe_timeout of that the answer is the same, so a spike at the cap of one user costs
  // one round of sweeps, not one per upgrade.
  std::unordered_map<std::string, std::vector<std::function<void(uint64_t)>>> user_sweeps;
  std::unordered_map<std::string, steady_time> fruitless_sweeps;
  std::unordered_map<std::string, steady_time> fruitless_claims;
  uint64_t next_request = 1;
  std::map<uint64_t, cluster_request> requests;
  // Hub mode: the channels listened to, and this node's presence entries as Redis should
  // have them ((channel, client) -> client info), rebuilt with the entries.
  std::unordered_map<std::string, hub_listening> hub_listens;
  std::map<std::pair<std::string, std::string>, std::string> hub_presence;
  steady_time hub_last_idle_check;
  // Redis's clock minus this node's wall clock (ms), from the last lease refresh: leases
  // are on Redis's clock.
  int64_t redis_clock_offset_ms = 0;
  static inline const char* name = "cluster";
  // The connections go with the actor (CAF destroys the state when the actor exits): a
  // restarted service opens its own.
  ~cluster_state() {
    if (commands.connection) commands.connection->close();
    if (subscriber.connection) subscriber.connection->close();
  }
};

caf::behavior cluster_actor(caf::stateful_actor<cluster_state>* self,
                            std::shared_ptr<service_context> context);

// An entry as Redis keeps it (P:conns:<node>), and back.
std::string cluster_entry_json(const cluster_entry& entry);
std::optional<cluster_entry> parse_cluster_entry(const std::string& json);

}  // namespace wsvisor
