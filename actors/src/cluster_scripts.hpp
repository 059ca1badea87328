// The Lua scripts of cluster mode (CONTRACT 14): every read-modify-write on Redis that
// must be atomic across nodes is one of these, loaded once per connection (SCRIPT LOAD)
// and run with EVALSHA (EVAL with the text again after a NOSCRIPT: a Redis restarted or
// flushed in between). Times are Redis's own (TIME), so that the nodes' clocks never
// have to agree. Keys, with P = cluster.prefix:
//   P:nodes           zset   node id -> lease expiry (ms, Redis clock)
//   P:node:<id>       hash   connections, draining, started_at (for /admin/cluster)
//   P:conns:<id>      hash   connection -> {"id","user","ip","opened_at","meta","opened"}
//   P:claims:<user>   hash   connection -> node id (the per-user cap, cluster-wide)
//   P:inbox:<id>      Pub/Sub channel of one node (probes, sweeps, sends, their answers)
// and for hub mode (hub::wire messages; <ch> is the hub channel's name):
//   P:hubch:<ch>             Pub/Sub channel: publications, joins, leaves, unsubscribes
//   P:hubmeta:<ch>           hash   offset (last assigned), epoch
//   P:hubhist:<ch>           list   the kept publications (hub::wire), newest first
//   P:hubidem:<ch>:<key>     string "<offset>:<epoch>" of an idempotent publish, 5 min
//   P:hubpres:<ch>:<node>    hash   client -> client info (hub::wire), one node's presence
//   P:hubpresn:<ch>          set    the nodes with presence in the channel
//   P:hubpresidx:<node>      set    the channels where the node has presence
#pragma once

namespace wsvisor::cluster_scripts {

// Shared prelude: the time in ms on Redis's clock.
#define WSVISOR_REDIS_NOW_MS       \
  "local t = redis.call('TIME')\n" \
  "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

// Shared: drop_claims(entries, prefix, node) removes the claims that `entries`
// (connection, JSON, ... as HGETALL of P:conns:<node> gives them) hold for `node`,
// leaving any other node's claim of the same connection name alone.
#define WSVISOR_DROP_CLAIMS                                                     \
  "local function drop_claims(entries, prefix, node)\n"                         \
  "  for i = 1, #entries, 2 do\n"                                               \
  "    local ok, entry = pcall(cjson.decode, entries[i + 1])\n"                 \
  "    if ok and type(entry) == 'table' and type(entry.user) == 'string' and\n" \
  "        entry.user ~= '' then\n"                                             \
  "      local key = prefix .. ':claims:' .. entry.user\n"                      \
  "      if redis.call('HGET', key, entries[i]) == node then\n"                 \
  "        redis.call('HDEL', key, entries[i])\n"                               \
  "      end\n"                                                                 \
  "    end\n"                                                                   \
  "  end\n"                                                                     \
  "end\n"

// Shared: drop_presence(prefix, node) removes every presence entry of `node` (a node
// reaped, leaving, or rebuilding its presence).
#define WSVISOR_DROP_PRESENCE                                                \
  "local function drop_presence(prefix, node)\n"                             \
  "  local index = prefix .. ':hubpresidx:' .. node\n"                       \
  "  for _, channel in ipairs(redis.call('SMEMBERS', index)) do\n"           \
  "    redis.call('DEL', prefix .. ':hubpres:' .. channel .. ':' .. node)\n" \
  "    redis.call('SREM', prefix .. ':hubpresn:' .. channel, node)\n"        \
  "  end\n"                                                                  \
  "  redis.call('DEL', index)\n"                                             \
  "end\n"

// KEYS: nodes, node:<me>. ARGV: me, lease_ttl ms, connections, draining (0|1), started_at.
// Refreshes this node's lease and answers {now, live nodes, {expired node ids}}.
inline constexpr const char* lease = WSVISOR_REDIS_NOW_MS R"lua(
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], 'connections', ARGV[3], 'draining', ARGV[4], 'started_at', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ttl * 3)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
local live = redis.call('ZCOUNT', KEYS[1], now, '+inf')
return {now, live, expired}
)lua";

// KEYS: claims:<user>, nodes, conns:<me>. ARGV: connection, me, max_per_user (0 = none),
// the entry's JSON. Drops the user's entries whose node has no live lease, then adds this
// one when under the cap: {1}; at the cap: {0, node ids holding the user's slots...}.
inline constexpr const char* claim = WSVISOR_REDIS_NOW_MS R"lua(
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {1} end
local entries = redis.call('HGETALL', KEYS[1])
local count = 0
local holders = {}
local alive = {}  -- node -> whether its lease is live: one ZSCORE per node, not per slot
for i = 1, #entries, 2 do
  local node = entries[i + 1]
  if alive[node] == nil then
    local lease = redis.call('ZSCORE', KEYS[2], node)
    alive[node] = lease ~= false and tonumber(lease) >= now
    if alive[node] then holders[#holders + 1] = node end
  end
  if alive[node] then
    count = count + 1
  else
    redis.call('HDEL', KEYS[1], entries[i])
  end
end
local cap = tonumber(ARGV[3])
if cap > 0 and count >= cap then
  local answer = {0}
  for _, node in ipairs(holders) do answer[#answer + 1] = node end
  return answer
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
return {1}
)lua";

// KEYS: nodes, conns:<dead>, node:<dead>. ARGV: dead node id, prefix. Once per dead node
// (the lease still expired and the node still listed): removes it, its entries, its
// claims and its hub presence, and answers its entries (connection, JSON, ...); nil when another
// node reaped it first or it came back.
inline constexpr const char* reap =
    WSVISOR_REDIS_NOW_MS WSVISOR_DROP_CLAIMS WSVISOR_DROP_PRESENCE R"lua(
local lease = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not lease or tonumber(lease) >= now then return false end
redis.call('ZREM', KEYS[1], ARGV[1])
local entries = redis.call('HGETALL', KEYS[2])
drop_claims(entries, ARGV[2], ARGV[1])
drop_presence(ARGV[2], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
return entries
)lua";

// KEYS: conns:<me>. ARGV: prefix, me, then (connection, JSON) pairs: the node's entries as
// they really are. Replaces what Redis holds of this node (its entries and its claims)
// with them, and answers what it held before (connection, JSON, ...), so that the caller
// can tell which were stale.
inline constexpr const char* rebuild = WSVISOR_DROP_CLAIMS R"lua(
local old = redis.call('HGETALL', KEYS[1])
drop_claims(old, ARGV[1], ARGV[2])
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  local ok, entry = pcall(cjson.decode, ARGV[i + 1])
  if ok and type(entry) == 'table' and type(entry.user) == 'string' and entry.user ~= '' then
    redis.call('HSET', ARGV[1] .. ':claims:' .. entry.user, ARGV[i], ARGV[2])
  end
end
return old
)lua";

// KEYS: conns:<me>, claims:<user> (or the same conns key again when the user is "").
// ARGV: connection, me. A slot released: its entry and claim leave Redis.
inline constexpr const char* release = R"lua(
redis.call('HDEL', KEYS[1], ARGV[1])
if KEYS[2] ~= KEYS[1] and redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return 1
)lua";

// KEYS: nodes, node:<me>, conns:<me>. ARGV: me, prefix. A node leaving at the end of its
// drain: its lease, its entries, whatever claims they still hold, and its hub presence.
inline constexpr const char* leave = WSVISOR_DROP_CLAIMS WSVISOR_DROP_PRESENCE R"lua(
drop_claims(redis.call('HGETALL', KEYS[3]), ARGV[2], ARGV[1])
drop_presence(ARGV[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
return 1
)lua";

// KEYS: claims:<user> of each user addressed. ARGV: prefix, me, the message (JSON, no
// "users"), then the users, in the order of KEYS. The server API's send or disconnect
// by user in one round trip: every other node that holds a slot of one of the users gets
// the message on its inbox with the users it holds; answers those nodes.
inline constexpr const char* fan_out = R"lua(
local message = cjson.decode(ARGV[3])
local users_of = {}
local nodes = {}
for i = 1, #KEYS do
  local user = ARGV[3 + i]
  for _, node in ipairs(redis.call('HVALS', KEYS[i])) do
    if node ~= ARGV[2] then
      local users = users_of[node]
      if not users then
        users = {}
        users_of[node] = users
        nodes[#nodes + 1] = node
      end
      if users[#users] ~= user then users[#users + 1] = user end
    end
  end
end
for _, node in ipairs(nodes) do
  message.users = users_of[node]
  redis.call('PUBLISH', ARGV[1] .. ':inbox:' .. node, cjson.encode(message))
end
return nodes
)lua";

// ---------------------------------------------------------------------- hub mode

// KEYS: hubmeta:<ch>, hubhist:<ch>, hubidem:<ch>:<key> (or hubmeta again: no key).
// ARGV: P:hubch:<ch>, the publication's body (hub::wire), keeps history (0|1),
// skip_history (0|1), history_size, history_ttl ms, the epoch for a new stream, meta ttl
// ms. A publication: the next offset, the history, and the Pub/Sub message to every node
// listening, in one step, so that every node sees the same offsets in the same order.
// Answers "<offset>:<epoch>" (offset 0: not in the history), the first answer again for
// an idempotency key seen within 5 minutes (and publishes nothing).
inline constexpr const char* hub_publish = R"lua(
local idempotent = KEYS[3] ~= KEYS[1]
if idempotent then
  local seen = redis.call('GET', KEYS[3])
  if seen then return seen end
end
local offset = 0
local epoch = ''
if ARGV[3] == '1' then
  epoch = redis.call('HGET', KEYS[1], 'epoch')
  if not epoch then
    epoch = ARGV[7]
    redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
  end
  if ARGV[4] ~= '1' then offset = redis.call('HINCRBY', KEYS[1], 'offset', 1) end
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[8]))
end
local message = 'p' .. offset .. ':' .. epoch .. ':' .. ARGV[2]
if offset > 0 then
  redis.call('LPUSH', KEYS[2], message)
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[6]))
end
redis.call('PUBLISH', ARGV[1], message)
local result = offset .. ':' .. epoch
if idempotent then redis.call('SET', KEYS[3], result, 'PX', 300000) end
return result
)lua";

// KEYS: hubmeta:<ch>, hubhist:<ch>. ARGV: the epoch for a new stream, meta ttl ms, with
// publications (0|1). A channel's stream position (made if Redis has none, as a
// subscriber's position must be in the stream later publications go to), and its kept
// publications: {offset, epoch, {publication, ...} newest first}.
inline constexpr const char* hub_stream = R"lua(
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'offset', 0)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
local meta = redis.call('HMGET', KEYS[1], 'offset', 'epoch')
local kept = {}
if ARGV[3] == '1' then kept = redis.call('LRANGE', KEYS[2], 0, -1) end
return {tonumber(meta[1]) or 0, meta[2], kept}
)lua";

// KEYS: hubpres:<ch>:<me>, hubpresn:<ch>, hubpresidx:<me>. ARGV: me, channel, client,
// client info ("": the client left). One presence entry of this node.
inline constexpr const char* hub_presence = R"lua(
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('SADD', KEYS[3], ARGV[2])
else
  redis.call('HDEL', KEYS[1], ARGV[3])
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SREM', KEYS[2], ARGV[1])
    redis.call('SREM', KEYS[3], ARGV[2])
  end
end
return 1
)lua";

// KEYS: nodes, hubpresn:<ch>. ARGV: prefix, channel. The channel's presence on every node
// with a live lease (a dead node's entries are left to its reaping): {info, ...}.
inline constexpr const char* hub_presence_get = WSVISOR_REDIS_NOW_MS R"lua(
local clients = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local lease = redis.call('ZSCORE', KEYS[1], node)
  if lease and tonumber(lease) >= now then
    local entries = redis.call('HVALS', ARGV[1] .. ':hubpres:' .. ARGV[2] .. ':' .. node)
    for _, info in ipairs(entries) do clients[#clients + 1] = info end
  end
end
return clients
)lua";

// ARGV: prefix, me, then (channel, client, info) triples: this node's presence as it
// really is, replacing what Redis holds of it (after a reconnect, a restart).
inline constexpr const char* hub_presence_rebuild = WSVISOR_DROP_PRESENCE R"lua(
drop_presence(ARGV[1], ARGV[2])
for i = 3, #ARGV, 3 do
  redis.call('HSET', ARGV[1] .. ':hubpres:' .. ARGV[i] .. ':' .. ARGV[2], ARGV[i + 1], ARGV[i + 2])
  redis.call('SADD', ARGV[1] .. ':hubpresn:' .. ARGV[i], ARGV[2])
  redis.call('SADD', ARGV[1] .. ':hubpresidx:' .. ARGV[2], ARGV[i])
end
return 1
)lua";

#undef WSVISOR_DROP_PRESENCE
#undef WSVISOR_REDIS_NOW_MS
#undef WSVISOR_DROP_CLAIMS

}  // namespace wsvisor::cluster_scripts
