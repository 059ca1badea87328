// The message vocabulary of the service tree (CAF 0.17 atoms, at most 10 characters).
#pragma once

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

#include <caf/actor.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "wsvisor/admin.hpp"
#include "wsvisor/admission.hpp"
#include "wsvisor/application.hpp"
#include "wsvisor/connection_messages.hpp"
#include "wsvisor/metrics.hpp"
#include "wsvisor/session_port.hpp"
#include "wsvisor/sweep.hpp"
#include "wsvisor/upstream_port.hpp"

namespace wsvisor {

// What a shard tells about one of its connections (sweeps, admin listing).
struct connection_snapshot {
  caf::actor actor;
  uint64_t id = 0;
  std::string user;
  std::string ip;
  std::chrono::system_clock::time_point admitted_wall;
  liveness_times live;
  uint64_t unread_bytes = 0;  // arrived and not yet read by the server (a sweep's evidence)
  std::string meta;
  uint64_t restarts = 0;
};

// What /admin/tree shows of the upstream service.
struct upstream_status {
  std::string breaker;  // closed | open | half_open
  uint64_t inflight = 0;
};

// connection or guard -> upstream service: one call to the backend (CONTRACT 11.1).
struct upstream_request {
  upstream_hook hook = upstream_hook::message;
  std::string url;       // upstream.url + the call's path
  http_headers headers;  // X-Wsvisor-*, the call's own, Authorization with upstream.token
  std::string body;
  std::string delivery;  // "<connection>:<seq>": the same on every attempt
  std::string tag;       // the application's, back with the result
  bool retried = true;   // connect hooks are not (the client retries, jittered)
};

// A slot as the limit guard counts it: the guard counts each connection id once.
struct slot_key {
  uint64_t id = 0;
  unsigned shard = 0;
  std::string user;
  std::string ip;
};

// limit_guard/admin -> janitor: a sweep of one scope. An emergency sweep serves upgrades
// that wait at a cap: it decides by `deadline`, so that a slot it frees still reaches
// them before they give up.
struct sweep_order {
  sweep_level level = sweep_level::moderate;
  sweep_scope scope;
  uint64_t needed = 0;  // slots to free before stopping (0: dead and zombies only)
  sweep_kind kind = sweep_kind::emergency;
  steady_time deadline = steady_time::max();
};

// What the limit guard counts, for the invariant checks of the tests: every slot it
// counts is in a shard's table or a reservation whose spawn is in flight.
struct guard_audit {
  uint64_t counted = 0;       // slots in the admission counts
  uint64_t reservations = 0;  // of those, spawns not yet confirmed by their shard
};

// Cluster mode: one connection of this node as Redis holds it (P:conns:<node>).
struct cluster_entry {
  uint64_t id = 0;
  std::string user;  // "" = none (no per-user claim)
  std::string ip;
  std::string meta;          // compact JSON, "" = none
  int64_t opened_at_ms = 0;  // wall clock, ms since the epoch
  bool opened = false;       // the connect event went out: a node_lost disconnect is due
  bool claimed = false;      // holds a per-user claim (made at admission)
  steady_time claimed_at;    // when the claim was made (an unopened one expires)
};

// The server API's send or disconnect, or the hub API's subscribe or refresh, across the
// cluster (CONTRACT 14): `selector` as on one node, `connection` the full id when it
// addresses one connection of any node.
struct cluster_fanout {
  enum class hub_call : uint8_t { none, subscribe, refresh };
  bool close = false;
  hub_call hub = hub_call::none;  // set: a hub API call, not a send or close
  connection_selector selector;
  std::string connection;
  std::string payload;               // send
  bool text = true;                  // send
  uint16_t code = 0;                 // close
  std::string reason;                // close
  std::string user;                  // hub: only this user's connections, also when addressed by id
  std::string channel;               // hub subscribe
  bool expired = false;              // hub refresh
  std::optional<int64_t> expire_at;  // hub refresh (unix seconds)
};

// What a claim at admission came to (cluster mode).
enum class claim_outcome : uint8_t {
  claimed,      // counted cluster-wide
  at_cap,       // the user is at max_per_user on the cluster, and sweeps freed nothing
  unavailable,  // Redis is not reachable (cluster.on_redis_down decides)
};

// What one shard's periodic checks closed.
struct periodic_counts {
  uint64_t zombie = 0;
  uint64_t idle = 0;
  uint64_t lifetime = 0;
};

// anyone -> connection: close gracefully with (code, reason text, close_reason).
using close_atom = caf::atom_constant<caf::atom("close")>;
// anyone -> connection: close TCP at once (close_reason).
using abort_atom = caf::atom_constant<caf::atom("abort")>;
// service -> limit_guard: decide this admission_ticket.
using admit_atom = caf::atom_constant<caf::atom("admit")>;
// limit_guard -> shard: spawn the connection actor for this admitted ticket, with this
// id; the shard answers spawned once the actor and its table entry exist.
using spawn_atom = caf::atom_constant<caf::atom("spawn")>;
using spawned_atom = caf::atom_constant<caf::atom("spawned")>;
// -> limit_guard: its counts, for tests (guard_audit).
using audit_atom = caf::atom_constant<caf::atom("audit")>;
// -> limit_guard: the caps in use and the n users and IPs holding the most (caps_in_use).
using caps_atom = caf::atom_constant<caf::atom("caps")>;
// shard -> limit_guard: a slot is free again (slot_key).
using release_atom = caf::atom_constant<caf::atom("release")>;
// -> shard: close every connection with 1001 (drain).
using drain_atom = caf::atom_constant<caf::atom("drain")>;
// -> shard: close every connection at once (second signal, drain deadline).
using abort_all_atom = caf::atom_constant<caf::atom("abortall")>;
// -> root: liveness round trip.
using ping_atom = caf::atom_constant<caf::atom("ping")>;
using pong_atom = caf::atom_constant<caf::atom("pong")>;
// janitor -> connection: ping the peer now (moderate sweep probe).
using probe_atom = caf::atom_constant<caf::atom("probe")>;
// janitor/shard -> connection: close (code, text, close_reason) and release the slot now,
// without waiting for the peer (sweeps, restart budget).
using evict_atom = caf::atom_constant<caf::atom("evict")>;
// admin -> any actor: a fault of CONTRACT section 8.
using fault_atom = caf::atom_constant<caf::atom("fault")>;
using crash_atom = caf::atom_constant<caf::atom("crash")>;
using clear_atom = caf::atom_constant<caf::atom("clear")>;
// connection -> shard: a handler threw and the connection restarted.
using crashed_atom = caf::atom_constant<caf::atom("crashed")>;
// shard (dying) -> limit_guard: forget these slots, all at once.
using shard_down_atom = caf::atom_constant<caf::atom("sharddown")>;
// limit_guard -> shard: every slot you hold (for a rebuild after a restart).
using table_atom = caf::atom_constant<caf::atom("table")>;
// janitor -> itself: periodic sweep; -> shard: the periodic checks of its table.
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using sweep_atom = caf::atom_constant<caf::atom("sweep")>;
// -> shard: a snapshot of the connections in a scope.
using snapshot_atom = caf::atom_constant<caf::atom("snapshot")>;
// janitor -> itself: the probe_timeout of an emergency sweep has passed.
using probed_atom = caf::atom_constant<caf::atom("probed")>;
// janitor -> itself: the next batch of the paced drain.
using drain_tick_atom = caf::atom_constant<caf::atom("draintick")>;
// -> shard: graceful admin close (4002) by id or user: number closed.
using admin_close_atom = caf::atom_constant<caf::atom("aclose")>;
// -> shard: the connection count of this shard.
using count_atom = caf::atom_constant<caf::atom("count")>;
// -> shard: the server API's send and disconnect (connection_selector): how many.
using api_send_atom = caf::atom_constant<caf::atom("apisend")>;
using api_close_atom = caf::atom_constant<caf::atom("apiclose")>;
// connection -> shard: the 101 went out (the connect event is due).
using connected_atom = caf::atom_constant<caf::atom("connected")>;
// -> upstream service: a call (upstream_request) -> upstream_result; from a connection
// that ended: drop its calls (cancel_atom).
using upstream_atom = caf::atom_constant<caf::atom("upstream")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
// -> upstream service: (status) -> upstream_status for /admin/tree.
using status_atom = caf::atom_constant<caf::atom("status")>;
// admin -> upstream service: hold every response M ms (fault injection).
using delay_atom = caf::atom_constant<caf::atom("delay")>;
// connection -> limit_guard: (id, user) the connection's identity arrived after the
// upgrade (hub mode's connect command): count its slot for that user, within
// limits.max_per_user (a sweep of the user first, as at admission) -> bool.
using claim_atom = caf::atom_constant<caf::atom("claim")>;
// connection -> shard: (actor_addr, user, meta) the identity the connection has now,
// and the connect event is due (hub mode: after the connect command).
using identified_atom = caf::atom_constant<caf::atom("identified")>;
// -> shard: run this work in every connection a selector addresses (the hub API's
// subscribe and refresh): how many.
using api_each_atom = caf::atom_constant<caf::atom("apieach")>;
using later_work_type = std::function<void(connection_handle&)>;
// shard -> events service: something was queued (lifecycle_events.hpp).
using events_atom = caf::atom_constant<caf::atom("events")>;
// limit_guard -> cluster: (id, user, ip, meta) claim the user's slot cluster-wide ->
// claim_outcome; (id) a claim the guard gave up on (its answer came too late).
using cl_claim_atom = caf::atom_constant<caf::atom("clclaim")>;
using cl_unclaim_atom = caf::atom_constant<caf::atom("clunclaim")>;
// shard -> cluster: (cluster_entry) the connect event went out; (id) the slot is free.
using cl_open_atom = caf::atom_constant<caf::atom("clopen")>;
using cl_release_atom = caf::atom_constant<caf::atom("clrelease")>;
// cluster -> shard: every connection you hold, as cluster entries (after a restart).
using cl_table_atom = caf::atom_constant<caf::atom("cltable")>;
// -> cluster: leave the cluster (end of a drain) -> bool; the nodes for /admin/cluster.
using cl_leave_atom = caf::atom_constant<caf::atom("clleave")>;
using cl_nodes_atom = caf::atom_constant<caf::atom("clnodes")>;
// -> cluster: (cluster_fanout) -> cluster_delivery; (user, "" = all) -> the open
// connections of every node (std::vector<cluster_connection>).
using cl_fanout_atom = caf::atom_constant<caf::atom("clfanout")>;
using cl_list_atom = caf::atom_constant<caf::atom("cllist")>;

}  // namespace wsvisor

// Local-only message types (wsvisor never sends messages across a network).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::admission_ticket)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::function<void(wsvisor::connection_handle&)>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::eviction_reason)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::sweep_kind)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::sweep_scope)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::sweep_level)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::sweep_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::sweep_order)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::slot_key)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::guard_audit)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::caps_in_use)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::upstream_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::upstream_status)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::connection_selector)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::upstream_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::upstream_reply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::standing_fault)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::client_fault)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::periodic_counts)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<wsvisor::connection_snapshot>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<wsvisor::slot_key>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::cluster_entry)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<wsvisor::cluster_entry>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::claim_outcome)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<wsvisor::cluster_node_info>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::cluster_fanout)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::cluster_delivery)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<wsvisor::cluster_connection>)
