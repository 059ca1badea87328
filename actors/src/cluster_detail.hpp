// The cluster service's parts shared by its files (cluster_service.cpp: links, leases,
// claims, the server API's fan-out; cluster_hub.cpp: hub mode's channels, streams and
// presence). Private to the actors library.
#pragma once

#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "cluster_service.hpp"
#include "hub_cluster_messages.hpp"

namespace wsvisor::cluster_detail {

using self_ptr = caf::stateful_actor<cluster_state>*;

// The scripts of cluster_scripts.hpp, by index (script_text(i) is the text).
enum script_index : size_t {
  lease_script,
  claim_script,
  reap_script,
  rebuild_script,
  release_script,
  leave_script,
  fan_out_script,
  hub_publish_script,
  hub_stream_script,
  hub_presence_script,
  hub_presence_get_script,
  hub_presence_rebuild_script,
  script_count
};

// The Redis keys (CONTRACT 14), under cluster.prefix P; see cluster_scripts.hpp.
struct keys {
  const std::string& prefix;
  std::string nodes() const { return prefix + ":nodes"; }
  std::string node(const std::string& id) const { return prefix + ":node:" + id; }
  std::string conns(const std::string& id) const { return prefix + ":conns:" + id; }
  std::string claims(const std::string& user) const { return prefix + ":claims:" + user; }
  std::string inbox(const std::string& id) const { return prefix + ":inbox:" + id; }
  std::string hub_channel(const std::string& channel) const { return prefix + ":hubch:" + channel; }
  std::string hub_channel_prefix() const { return prefix + ":hubch:"; }
  std::string hub_meta(const std::string& channel) const { return prefix + ":hubmeta:" + channel; }
  std::string hub_history(const std::string& channel) const {
    return prefix + ":hubhist:" + channel;
  }
  std::string hub_idempotency(const std::string& channel, const std::string& key) const {
    return prefix + ":hubidem:" + channel + ":" + key;
  }
  std::string hub_presence(const std::string& channel, const std::string& node) const {
    return prefix + ":hubpres:" + channel + ":" + node;
  }
  std::string hub_presence_nodes(const std::string& channel) const {
    return prefix + ":hubpresn:" + channel;
  }
  std::string hub_presence_index(const std::string& node) const {
    return prefix + ":hubpresidx:" + node;
  }
};

keys keys_of(const service_context& context);

// Redis is there and this node's entries are in it.
bool ready_for_work(const cluster_state& state);

// One command on the command connection; `done` runs in the actor with the reply, or with
// nullptr when the connection failed first (or is down now).
void command(self_ptr self, std::vector<std::string> argv,
             std::function<void(const redis_value*)> done);

// EVALSHA of a script (EVAL with its text after a NOSCRIPT).
void run_script(self_ptr self, size_t index, std::vector<std::string> keys_and_args,
                size_t key_count, std::function<void(const redis_value*)> done);

// ---- hub mode (cluster_hub.cpp) ----

void hub_join(self_ptr self, std::vector<hub_stream_request> requests,
              caf::response_promise answer);
void hub_read(self_ptr self, const hub_stream_request& request, caf::response_promise answer);
void hub_listen(self_ptr self, const std::string& channel);
void hub_unlisten(self_ptr self, const std::string& channel);
void hub_publish(self_ptr self, const hub_cluster_publication& publication,
                 caf::response_promise answer);
void hub_notify(self_ptr self, const std::string& channel, const std::string& message);
void hub_set_presence(self_ptr self, const hub_presence_entry& entry);
void hub_get_presence(self_ptr self, const std::string& channel, caf::response_promise answer);
void hub_remove_history(self_ptr self, const std::string& channel, caf::response_promise answer);
// The hub (re)started empty, or told what it has after this service's restart.
void hub_reset(self_ptr self);
void hub_take_table(self_ptr self, hub_table table);
// The subscriber connection: subscribed anew (SUBSCRIBE every listened channel), lost
// (nothing is confirmed; nobody waits for it); a push of any channel but the inbox.
void hub_resubscribe(self_ptr self);
void hub_subscription_lost(self_ptr self);
void hub_on_push(self_ptr self, const std::string& kind, const std::string& channel,
                 const std::string& payload);
// After a rebuild: this node's presence replaces what Redis holds of it.
void hub_rebuild_presence(self_ptr self);
// Periodic: unsubscribe channels idle for a while.
void hub_tick(self_ptr self);

}  // namespace wsvisor::cluster_detail
