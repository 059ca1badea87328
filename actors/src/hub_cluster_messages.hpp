// Hub mode across nodes (CONTRACT 14): what the hub asks of the cluster service, and
// what the cluster service hands the hub from Redis. The hub keeps owning every
// subscription (its connection actors' deaths end them); Redis holds what the nodes
// share: each channel's stream (offset, epoch, history), presence, and the Pub/Sub
// channel through which every node that has subscribers of a channel gets its messages
// (hub::wire), the node that published included.
#pragma once

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace wsvisor {

// A channel's stream as Redis keeps it (read at a subscribe, a history or a recovery).
struct hub_stream_request {
  std::string channel;
  bool keeps_history = false;  // false: the channel is only listened to
  bool with_publications = false;
  std::string epoch;  // the epoch of a stream Redis does not have yet
  int64_t meta_ttl_ms = 0;
};

struct hub_stream {
  bool ok = false;  // false: Redis did not answer; the hub uses this node's own stream
  uint64_t offset = 0;
  std::string epoch;
  std::vector<std::string> publications;  // hub::wire messages, newest first
};

// One publication, published through Redis: the script assigns the offset.
struct hub_cluster_publication {
  std::string channel;
  std::string body;  // hub::wire::encode_publication_body
  bool keeps_history = false;
  bool skip_history = false;
  uint64_t history_size = 0;
  int64_t history_ttl_ms = 0;
  int64_t meta_ttl_ms = 0;
  std::string epoch;  // for a stream Redis does not have yet
  std::string idempotency_key;
};

struct hub_cluster_published {
  bool ok = false;  // false: Redis did not answer (the hub delivers on this node only)
  uint64_t offset = 0;
  std::string epoch;
};

struct hub_cluster_presence {
  bool ok = false;
  std::vector<std::string> clients;  // hub::wire::encode_client_info of each
};

// One presence entry of this node.
struct hub_presence_entry {
  std::string channel, client, info;  // info: hub::wire::encode_client_info
};

// What the hub has that the cluster service mirrors in Redis (asked after the cluster
// service's restart): the channels it listens to and its presence entries.
struct hub_table {
  std::vector<std::string> channels;
  std::vector<hub_presence_entry> presence;
};

// hub -> cluster:
//  (cl_hub_join_atom, std::vector<hub_stream_request>) -> std::vector<hub_stream>: listen
//    to each channel (answered once Redis confirmed the SUBSCRIBE, so that nothing
//    published after the answer's position is missed) and read the streams.
//  (cl_hub_read_atom, hub_stream_request) -> hub_stream: read a stream only.
//  (cl_hub_listen_atom, channel): a first local subscriber (joined without Redis).
//  (cl_hub_unlisten_atom, channel): the last local subscriber left.
//  (cl_hub_publish_atom, hub_cluster_publication) -> hub_cluster_published.
//  (cl_hub_notify_atom, channel, hub::wire message): a join, leave or unsubscribe.
//  (cl_hub_presence_atom, hub_presence_entry): add, or remove when info is "".
//  (cl_hub_presence_get_atom, channel) -> hub_cluster_presence.
//  (cl_hub_history_remove_atom, channel) -> bool.
//  (cl_hub_reset_atom): the hub (re)started empty: drop its listens and presence.
using cl_hub_join_atom = caf::atom_constant<caf::atom("clhjoin")>;
using cl_hub_read_atom = caf::atom_constant<caf::atom("clhread")>;
using cl_hub_listen_atom = caf::atom_constant<caf::atom("clhlisten")>;
using cl_hub_unlisten_atom = caf::atom_constant<caf::atom("clhunlis")>;
using cl_hub_publish_atom = caf::atom_constant<caf::atom("clhpub")>;
using cl_hub_notify_atom = caf::atom_constant<caf::atom("clhnotify")>;
using cl_hub_presence_atom = caf::atom_constant<caf::atom("clhpres")>;
using cl_hub_presence_get_atom = caf::atom_constant<caf::atom("clhpresg")>;
using cl_hub_history_remove_atom = caf::atom_constant<caf::atom("clhhrm")>;
using cl_hub_reset_atom = caf::atom_constant<caf::atom("clhreset")>;
// cluster -> hub: (hub_remote_atom, channel, message) a Pub/Sub message of a channel the
// hub listens to; (hub_table_atom) -> hub_table.
using hub_remote_atom = caf::atom_constant<caf::atom("hubremote")>;
using hub_table_atom = caf::atom_constant<caf::atom("hubtable")>;

}  // namespace wsvisor

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::hub_stream_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<wsvisor::hub_stream_request>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::hub_stream)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<wsvisor::hub_stream>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::hub_cluster_publication)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::hub_cluster_published)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::hub_cluster_presence)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::hub_presence_entry)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsvisor::hub_table)
