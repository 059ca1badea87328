"""Hub mode across cluster nodes (CONTRACT 13 with 14): three wsvisor nodes in hub mode
(Centrifugo's client protocol) on one real redis-server, clients speaking Centrifugo's
JSON protocol (hub_helpers.ProtocolClient) spread over the nodes, and Centrifugo's
server API (POST /api/<method>) called on any node:

- publish (API and client) reaches every subscriber on every node once, in one order,
  with the offsets and epoch that Redis assigned (the same on every node); broadcast and
  personal channels reach other nodes; an idempotency key publishes once cluster-wide;
- presence and presence_stats answer cluster-wide (API and client command, any node),
  forget a client that leaves within a second and those of a kill -9'd node within
  lease_ttl + lease_refresh;
- recovery on another node than the one a client left gets exactly what it missed;
  history and history_remove are the same on every node;
- join and leave pushes, and the API's unsubscribe, subscribe, refresh and disconnect,
  cross nodes;
- a node listens (Redis SUBSCRIBE) for a channel only while it has a local subscriber;
- with Redis down (on_redis_down = "local") a node delivers locally and says degraded;
  once Redis is back, delivery across nodes resumes.

Most tests share one module-wide cluster (each with channels of its own, and each ends
with no connection and no subscription left on any node); the kill -9 and Redis-down
tests get a cluster of their own. Loopback only; every wait is bounded."""

import asyncio
import json
import time

import pytest

from cluster_helpers import RedisServer, cluster_sets, redis_server  # noqa: F401 (fixture)
from conftest import ServerFactory, http_get, run_async, scrape
from hub_helpers import ProtocolClient, close_clients, connection_token, hub_api, start_hub

# Short leases: a kill -9'd node is reaped within seconds (lease_ttl + lease_refresh).
LEASE_TTL_S, LEASE_REFRESH_S = 2.0, 0.5
LEASE = [f"cluster.lease_ttl={int(LEASE_TTL_S * 1000)}ms",
         f"cluster.lease_refresh={int(LEASE_REFRESH_S * 1000)}ms", "cluster.probe_interval=1s"]
NODE_SETS = [*LEASE, "cluster.on_redis_down=local", "shutdown.drain_spread=200ms"]
PREFIX = "wsvisor"  # cluster.prefix's default: every Redis key and channel starts with it
NODE_IDS = ["node-a", "node-b", "node-c"]

HISTORY_SIZE = 100
NAMESPACES = [
    # History and recovery: every subscription is recoverable; subscribers may publish
    # and read the history.
    {"name": "news", "history_size": HISTORY_SIZE, "history_ttl": "300s",
     "force_recovery": True, "allow_subscribe_for_client": True,
     "allow_publish_for_subscriber": True, "allow_history_for_subscriber": True},
    # Presence with join and leave pushes, no history.
    {"name": "room", "presence": True, "join_leave": True, "allow_subscribe_for_client": True,
     "allow_presence_for_subscriber": True},
    # Nothing kept.
    {"name": "plain", "allow_subscribe_for_client": True},
]
# Every connection with a user is subscribed server-side to "#<user>".
HUB_KEYS = {"user_personal_channel": True}


# ------------------------------------------------------------------ the nodes

def start_hub_nodes(factory, tmp_path, redis, ids=NODE_IDS, extra=()):
    """Hub nodes (start_hub: Centrifugo's endpoint, the API key, the JWT secret) in cluster
    mode on `redis`, started together, then each waited for; then, within 10 s, every
    one's /health says cluster "ok" with all of them counted."""
    nodes = [start_hub(factory, tmp_path, *cluster_sets(redis, node_id, *NODE_SETS, *extra),
                       namespaces=NAMESPACES, hub=HUB_KEYS, ready=False)
             for node_id in ids]
    for node in nodes:
        node.wait_ready()
    wait_for_blocking(lambda: all(health_cluster(n).get("state") == "ok"
                                  and health_cluster(n).get("nodes") == len(ids) for n in nodes),
                      10, lambda: "every node's /health cluster state ok with "
                      f"{len(ids)} nodes: {[health_cluster(n) for n in nodes]}")
    return nodes


def health_cluster(node):
    return json.loads(http_get(node.port, "/health", timeout=2).body).get("cluster", {})


def wait_for_blocking(predicate, timeout, what):
    """conftest.wait_until with a message computed at the failure (what: str or callable)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            if predicate():
                return
        except Exception as e:  # noqa: BLE001 - polled conditions may fail transiently
            last = e
        if time.monotonic() >= deadline:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for {text}"
                                 + (f" (last error: {last!r})" if last else ""))
        time.sleep(0.05)


class Hub3:
    """The module's cluster: its Redis and nodes A, B, C."""

    def __init__(self, redis, nodes):
        self.redis = redis
        self.nodes = nodes
        self.a, self.b, self.c = nodes


@pytest.fixture(scope="module")
def hub3(tmp_path_factory):
    """One Redis and three hub nodes for the module; the nodes are drained while Redis
    still runs, then Redis is stopped."""
    tmp = tmp_path_factory.mktemp("hub3")
    redis = RedisServer(tmp / "redis")
    factory = ServerFactory(tmp)
    problems = []
    try:
        yield Hub3(redis, start_hub_nodes(factory, tmp, redis))
    finally:
        problems = factory.finish()
        redis.finish()
    assert not problems, "\n".join(problems)


@pytest.fixture
def redis(redis_server):
    """Set up before server_factory (so torn down after it): the nodes leave Redis at
    their drain, as in production."""
    return redis_server


# ------------------------------------------------------------------ helpers

async def until(predicate, timeout, what, interval=0.02):
    """Polls predicate() (plain, not a coroutine) while the clients' readers run, until it
    is truthy (returned) or `timeout` passes: then fails with `what` (str or callable,
    computed at the failure)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - polled conditions may fail transiently
            last = e
        if time.monotonic() >= deadline:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for {text}"
                                 + (f" (last error: {last!r})" if last else ""))
        await asyncio.sleep(interval)


def api(node, method, body):
    """The result of a successful call of Centrifugo's server API on `node`."""
    r = hub_api(node.port, method, body)
    assert r.status == 200, f"/api/{method} {body!r} on port {node.port}: {r!r}"
    answer = r.json()
    assert "error" not in answer, f"/api/{method} {body!r} on port {node.port}: {answer!r}"
    return answer.get("result", {})


def node_name(nodes, node):
    return NODE_IDS[nodes.index(node)] if node in nodes else f"port {node.port}"


async def open_client(node, user, name=None):
    return await ProtocolClient.open(node.port, connection_token(user),
                                     name=name or f"{user}@{node.port}")


async def subscribe(client, channel, **fields):
    """The subscribe reply's body; fails when the reply is an error."""
    reply = await client.command("subscribe", {"channel": channel, **fields})
    assert "subscribe" in reply, f"{client.name}: subscribe {channel} {fields}: {reply}"
    return reply["subscribe"]


def pubs(client, channel):
    """The publications (pub push bodies: data, offset, info) the client got on channel."""
    return [p["pub"] for p in client.pushes if "pub" in p and p.get("channel", "") == channel]


def pushes(client, channel, kind):
    return [p[kind] for p in client.pushes if kind in p and p.get("channel", "") == channel]


def show(client, last=20):
    """What a client saw, for a failure message."""
    state = ("open" if not client.closed.is_set()
             else f"closed {client.close_code} {client.close_reason!r}")
    return (f"{client.name} (client {client.client}, {state}); last pushes "
            f"{client.pushes[-last:]!r}; unexpected {client.unexpected[-5:]!r}")


async def wait_pubs(client, channel, count, timeout=5.0, why=""):
    await until(lambda: len(pubs(client, channel)) >= count, timeout,
                lambda: f"{count} publications on {channel} at {show(client)}"
                f"{' (' + why + ')' if why else ''}; got {len(pubs(client, channel))}")
    return pubs(client, channel)


async def quiet(seconds=0.3):
    """Lets late (duplicate) pushes arrive before counting."""
    await asyncio.sleep(seconds)


def subscriptions_and_connections(node):
    m = scrape(node.port)
    return m.get("wsvisor_hub_subscriptions"), m.get("wsvisor_connections")


async def settled(nodes, timeout=10.0):
    """Nothing leaked: no connection and no subscription left on any node."""
    await until(lambda: all(subscriptions_and_connections(n) == (0, 0) for n in nodes), timeout,
                lambda: "no subscription and no connection on any node; (subscriptions, "
                f"connections) per node: {[subscriptions_and_connections(n) for n in nodes]}")


def presence_clients(node, channel):
    return set(api(node, "presence", {"channel": channel}).get("presence", {}))


# ------------------------------------------------------------------ the fixture

def test_three_hub_nodes_form_one_cluster(hub3):
    """The module's fixture: three hub nodes on one Redis, each counting all three."""
    for node, node_id in zip(hub3.nodes, NODE_IDS):
        assert health_cluster(node) == {"state": "ok", "node_id": node_id, "nodes": 3}, (
            node_id, health_cluster(node))
    assert len(set(n.port for n in hub3.nodes)) == 3
    assert hub3.redis.cli("PING") == "PONG"

    async def scenario():
        clients = [await open_client(n, f"fixture-{i}") for i, n in enumerate(hub3.nodes)]
        # Each connection's id names its node ("<node_id>.<n>", CONTRACT 10 and 14).
        for client, node_id in zip(clients, NODE_IDS):
            assert client.client.startswith(node_id + "."), client.connect_reply
        await close_clients(clients)
        await settled(hub3.nodes)
    run_async(scenario(), timeout=30)


# ------------------------------------------------------------------ publish

def test_publications_reach_every_node_once_in_order_with_the_same_offsets(hub3):
    """Subscribers on A (two), B and C; 20 publications: API on A, API on B, client
    publish commands on C, API on A again, each waited for before the next."""
    a, b, c = hub3.nodes
    channel = "news:same-offsets"

    async def scenario():
        subs = [await open_client(a, "pa1"), await open_client(a, "pa2"),
                await open_client(b, "pb"), await open_client(c, "pc")]
        try:
            replies = [await subscribe(s, channel, recoverable=True) for s in subs]
            for s, reply in zip(subs, replies):
                assert reply.get("recoverable") is True, (s.name, reply)
                assert reply.get("offset", 0) == 0, (s.name, reply)
            # Single node first: A's subscribers, A's publications.
            epoch = replies[0].get("epoch")
            assert isinstance(epoch, str) and epoch, replies
            assert replies[1].get("epoch") == epoch, replies
            expected = []  # the data, in publication order
            results = []  # each API publish's result (offset and epoch)
            for n in range(10):
                expected.append({"n": n, "via": "api-a"})
                results.append(api(a, "publish", {"channel": channel, "data": expected[-1]}))
            for s in subs[:2]:
                got = await wait_pubs(s, channel, 10, why="API publish on the same node")
                assert [p["offset"] for p in got[:10]] == list(range(1, 11)), show(s)
            assert results[0] == {"offset": 1, "epoch": epoch}, results
            # Across nodes: one stream, one epoch (from Redis) whichever node is asked.
            assert {r.get("epoch") for r in replies} == {epoch}, (
                "the subscribe replies of one fresh channel name different epochs on "
                f"different nodes (the stream's epoch must come from Redis): {replies}")
            for n in range(10, 15):
                expected.append({"n": n, "via": "api-b"})
                results.append(api(b, "publish", {"channel": channel, "data": expected[-1]}))
            publisher = subs[3]
            for n in range(15, 18):
                expected.append({"n": n, "via": "client-c"})
                reply = await publisher.command("publish", {"channel": channel,
                                                            "data": expected[-1]})
                assert "publish" in reply, f"client publish on C: {reply}"
                results.append(None)
            for n in range(18, 20):
                expected.append({"n": n, "via": "api-a"})
                results.append(api(a, "publish", {"channel": channel, "data": expected[-1]}))

            # The API's answers: the next offset each, one epoch (the subscribers').
            for i, res in enumerate(results):
                if res is not None:
                    assert res == {"offset": i + 1, "epoch": epoch}, (
                        f"publish #{i + 1} answered {res}: expected offset {i + 1} and the "
                        f"epoch {epoch!r} every subscribe reply named; all: {results}")

            for s in subs:
                await wait_pubs(s, channel, 20, why="publications made on other nodes too")
            await quiet()
            for s in subs:
                got = pubs(s, channel)
                assert [p.get("data") for p in got] == expected, (
                    f"{s.name}: not every publication once in publication order:\n"
                    f"got {[p.get('data') for p in got]}\nexpected {expected}")
                assert [p.get("offset") for p in got] == list(range(1, 21)), (
                    f"{s.name}: offsets {[p.get('offset') for p in got]}, expected 1..20")
                assert not s.closed.is_set(), show(s)
            # The client publication carries its publisher's info.
            info = pubs(subs[0], channel)[15].get("info", {})
            assert info.get("client") == publisher.client and info.get("user") == "pc", info
            # And the history says the same on every node.
            for node in hub3.nodes:
                hist = api(node, "history", {"channel": channel, "limit": 100})
                assert [p["data"] for p in hist.get("publications", [])] == expected, (
                    node_name(hub3.nodes, node), hist)
                assert hist.get("offset") == 20 and hist.get("epoch") == epoch, hist
        finally:
            await close_clients(subs)
        await settled(hub3.nodes)
    run_async(scenario(), timeout=60)


def test_broadcast_reaches_subscribers_on_other_nodes(hub3):
    a, b, c = hub3.nodes
    channels = ["news:bc-1", "plain:bc-2", "news:bc-3"]

    async def scenario():
        on_a, on_b, on_c = (await open_client(a, "bca"), await open_client(b, "bcb"),
                            await open_client(c, "bcc"))
        clients = [on_a, on_b, on_c]
        try:
            await subscribe(on_a, channels[1])  # A: the API's own node
            await subscribe(on_b, channels[0])
            await subscribe(on_b, channels[1])
            await subscribe(on_c, channels[1])
            await subscribe(on_c, channels[2])
            res = api(a, "broadcast", {"channels": channels, "data": {"text": "to all"}})
            responses = res.get("responses", [])
            assert len(responses) == 3 and all("error" not in r for r in responses), res
            assert responses[0]["result"].get("offset") == 1, res
            assert responses[2]["result"].get("offset") == 1, res
            await wait_pubs(on_a, channels[1], 1, why="broadcast on the same node")
            for client, names in ((on_b, channels[:2]), (on_c, channels[1:])):
                for channel in names:
                    await wait_pubs(client, channel, 1, why="broadcast from node A's API")
            await quiet()
            expected = {on_a: [channels[1]], on_b: channels[:2], on_c: channels[1:]}
            for client, names in expected.items():
                for channel in channels:
                    want = 1 if channel in names else 0
                    got = pubs(client, channel)
                    assert len(got) == want, (f"{client.name} on {channel}: {len(got)} "
                                              f"publications, expected {want}: {show(client)}")
                    if want:
                        assert got[0].get("data") == {"text": "to all"}, got
        finally:
            await close_clients(clients)
        await settled(hub3.nodes)
    run_async(scenario(), timeout=30)


def test_a_personal_channel_reaches_every_connection_of_the_user_on_every_node(hub3):
    a, b, c = hub3.nodes
    personal = "#pat"

    async def scenario():
        pat_b, pat_c, other = (await open_client(b, "pat"), await open_client(c, "pat"),
                               await open_client(a, "not-pat"))
        clients = [pat_b, pat_c, other]
        try:
            for client in (pat_b, pat_c):
                assert personal in client.connect_reply.get("subs", {}), (
                    "hub.user_personal_channel: the connect reply lists the server-side "
                    f"subscription to {personal}: {client.connect_reply}")
            # Single node first: B's API reaches B's connection.
            api(b, "publish", {"channel": personal, "data": {"n": 0}})
            await wait_pubs(pat_b, personal, 1, why="personal channel, API on the same node")
            for n in range(1, 4):
                api(a, "publish", {"channel": personal, "data": {"n": n}})
            # Both of pat's connections get all four once each, in order (n=0 too: pat
            # on C was connected when B published it).
            for client in (pat_b, pat_c):
                await wait_pubs(client, personal, 4, why="personal channel published on "
                                "another node")
            await quiet()
            for client in (pat_b, pat_c):
                assert [p["data"]["n"] for p in pubs(client, personal)] == [0, 1, 2, 3], (
                    show(client))
            assert other.publications == [], f"another user got pat's: {show(other)}"
        finally:
            await close_clients(clients)
        await settled(hub3.nodes)
    run_async(scenario(), timeout=30)


def test_an_idempotency_key_publishes_once_across_nodes(hub3):
    a, b, c = hub3.nodes
    channel = "news:idempotent"

    async def scenario():
        subs = [await open_client(n, f"idem-{i}") for i, n in enumerate(hub3.nodes)]
        try:
            for s in subs:
                await subscribe(s, channel)
            first = api(a, "publish", {"channel": channel, "data": {"order": 42},
                                       "idempotency_key": "order-42"})
            assert first.get("offset") == 1, first
            # Single node first: the same key again on A.
            assert api(a, "publish", {"channel": channel, "data": {"order": 42},
                                      "idempotency_key": "order-42"}) == first
            again_b = api(b, "publish", {"channel": channel, "data": {"order": 42},
                                         "idempotency_key": "order-42"})
            again_c = api(c, "publish", {"channel": channel, "data": {"order": 42},
                                         "idempotency_key": "order-42"})
            assert again_b == first and again_c == first, (
                "the same idempotency_key within 5 minutes on other nodes must publish "
                f"nothing and answer the first result {first}: B {again_b}, C {again_c}")
            other = api(c, "publish", {"channel": channel, "data": {"order": 43},
                                       "idempotency_key": "order-43"})
            assert other == {"offset": 2, "epoch": first["epoch"]}, other
            for s in subs:
                await wait_pubs(s, channel, 2)
            await quiet()
            for s in subs:
                assert [p["data"] for p in pubs(s, channel)] == [{"order": 42}, {"order": 43}], (
                    f"delivered more than once: {show(s)}")
            hist = api(b, "history", {"channel": channel, "limit": 10})
            assert [p["offset"] for p in hist.get("publications", [])] == [1, 2], hist
        finally:
            await close_clients(subs)
        await settled(hub3.nodes)
    run_async(scenario(), timeout=30)


# ------------------------------------------------------------------ history and recovery

def test_recovery_on_another_node_gets_what_was_missed_and_history_is_the_same_everywhere(
        hub3):
    a, b, c = hub3.nodes
    channel = "news:recover"

    async def scenario():
        clients = []
        try:
            first = await open_client(a, "rec")
            clients.append(first)
            sub = await subscribe(first, channel, recoverable=True)
            epoch = sub.get("epoch")
            assert sub.get("recoverable") is True and epoch, sub
            for n in range(1, 6):
                res = api(a, "publish", {"channel": channel, "data": {"n": n}})
                assert res == {"offset": n, "epoch": epoch}, res
            got = await wait_pubs(first, channel, 5)
            assert [p["offset"] for p in got] == [1, 2, 3, 4, 5], show(first)
            await first.close()
            # Single node first: a client back on A recovers there (from offset 3).
            again_a = await open_client(a, "rec", name="rec-again@A")
            clients.append(again_a)
            rec = await subscribe(again_a, channel, recover=True, offset=3, epoch=epoch)
            assert rec.get("recovered") is True, f"recovery on the node it left: {rec}"
            assert [p["data"]["n"] for p in rec.get("publications", [])] == [4, 5], rec
            await again_a.close()

            for n in range(6, 11):
                res = api(b, "publish", {"channel": channel, "data": {"n": n}})
                assert res == {"offset": n, "epoch": epoch}, (
                    f"publish on B after 5 on A: {res}, expected offset {n} epoch {epoch!r}")

            back = await open_client(c, "rec", name="rec-back@C")
            clients.append(back)
            rec = await subscribe(back, channel, recover=True, offset=5, epoch=epoch)
            assert rec.get("was_recovering") is True, rec
            assert rec.get("recovered") is True, (
                f"recovery on node C of a position left on node A: {rec}")
            assert rec.get("epoch") == epoch and rec.get("offset") == 10, rec
            recovered = rec.get("publications", [])
            assert [p.get("offset") for p in recovered] == list(range(6, 11)), rec
            assert [p["data"]["n"] for p in recovered] == list(range(6, 11)), rec
            # Then live ones, no gap, no duplicate.
            res = api(a, "publish", {"channel": channel, "data": {"n": 11}})
            assert res == {"offset": 11, "epoch": epoch}, res
            await wait_pubs(back, channel, 1, why="live after the recovery")
            await quiet()
            assert [(p["offset"], p["data"]["n"]) for p in pubs(back, channel)] == [(11, 11)], (
                show(back))
            assert not back.closed.is_set(), show(back)

            # A wrong epoch: not recovered, nothing given (never a partial recovery).
            wrong = await open_client(b, "rec", name="rec-wrong@B")
            clients.append(wrong)
            bad = await subscribe(wrong, channel, recover=True, offset=5, epoch="not-the-epoch")
            assert bad.get("recovered", False) is False, bad
            assert bad.get("publications", []) == [], bad
            assert bad.get("epoch") == epoch and bad.get("offset") == 11, bad

            # The history is the same on every node: the API, and the client's command.
            everything = [{"n": n} for n in range(1, 12)]
            for node in hub3.nodes:
                where = node_name(hub3.nodes, node)
                hist = api(node, "history", {"channel": channel, "limit": 100})
                assert [p["data"] for p in hist.get("publications", [])] == everything, (where,
                                                                                         hist)
                assert [p["offset"] for p in hist["publications"]] == list(range(1, 12)), hist
                assert hist.get("epoch") == epoch and hist.get("offset") == 11, (where, hist)
                since = api(node, "history", {"channel": channel, "limit": 3,
                                              "since": {"offset": 5, "epoch": epoch}})
                assert [p["offset"] for p in since.get("publications", [])] == [6, 7, 8], (
                    where, since)
                top = api(node, "history", {"channel": channel})
                assert top.get("publications", []) == [] and top.get("offset") == 11, top
            reply = await back.command("history", {"channel": channel, "limit": 100})
            assert "history" in reply, reply
            assert [p["data"] for p in reply["history"].get("publications", [])] == everything, (
                reply)
        finally:
            await close_clients(clients)
        await settled(hub3.nodes)
    run_async(scenario(), timeout=45)


def test_history_remove_on_one_node_empties_the_history_everywhere(hub3):
    a, b, c = hub3.nodes
    # Single node first: published, removed and read on A.
    local = "news:history-remove-local"
    for n in range(1, 4):
        epoch = api(a, "publish", {"channel": local, "data": {"n": n}})["epoch"]
    assert api(a, "history_remove", {"channel": local}) == {}
    hist = api(a, "history", {"channel": local, "limit": 10})
    assert hist.get("publications", []) == [] and hist.get("offset") == 3, hist
    assert hist.get("epoch") == epoch, hist

    channel = "news:history-remove"
    for n in range(1, 4):
        epoch = api(a, "publish", {"channel": channel, "data": {"n": n}})["epoch"]
    for node in hub3.nodes:  # every node has read it (and may keep some of it)
        hist = api(node, "history", {"channel": channel, "limit": 10})
        assert [p["offset"] for p in hist.get("publications", [])] == [1, 2, 3], (
            f"history on {node_name(hub3.nodes, node)} of 3 publications on node-a: {hist}")
    assert api(b, "history_remove", {"channel": channel}) == {}
    for node in hub3.nodes:
        hist = api(node, "history", {"channel": channel, "limit": 10})
        assert hist.get("publications", []) == [], (
            f"history on {node_name(hub3.nodes, node)} after history_remove on node-b: {hist}")
        assert hist.get("offset") == 3 and hist.get("epoch") == epoch, (
            f"history_remove keeps the stream position: {hist}")
    after = api(c, "publish", {"channel": channel, "data": {"n": 4}})
    assert after == {"offset": 4, "epoch": epoch}, after
    for node in hub3.nodes:
        hist = api(node, "history", {"channel": channel, "limit": 10})
        assert [p["offset"] for p in hist.get("publications", [])] == [4], hist


# ------------------------------------------------------------------ join, leave, unsubscribe

def test_join_and_leave_pushes_cross_nodes(hub3):
    a, b, c = hub3.nodes
    channel = "room:join-leave"

    async def scenario():
        watcher = await open_client(a, "watcher")
        local = await open_client(a, "local-joiner")
        joiner = await open_client(b, "joiner")
        dropper = await open_client(c, "dropper")
        clients = [watcher, local, joiner, dropper]
        try:
            await subscribe(watcher, channel)

            def joins_of(client):
                return [j["info"] for j in pushes(watcher, channel, "join")
                        if j.get("info", {}).get("client") == client.client]

            def leaves_of(client):
                return [j["info"] for j in pushes(watcher, channel, "leave")
                        if j.get("info", {}).get("client") == client.client]

            # Single node first.
            await subscribe(local, channel)
            await until(lambda: joins_of(local), 5,
                        lambda: f"join of a subscriber on the same node: {show(watcher)}")
            await subscribe(joiner, channel)
            await subscribe(dropper, channel)
            for other in (joiner, dropper):
                await until(lambda: joins_of(other), 5,
                            lambda: f"join of {other.name} (another node) at {show(watcher)}")
            assert joins_of(joiner)[0].get("user") == "joiner", joins_of(joiner)
            # The joiner on B hears C's join too.
            await until(lambda: [j for j in pushes(joiner, channel, "join")
                                 if j.get("info", {}).get("client") == dropper.client], 5,
                        lambda: f"C's join at B: {show(joiner)}")

            reply = await joiner.command("unsubscribe", {"channel": channel})
            assert "unsubscribe" in reply, reply
            await until(lambda: leaves_of(joiner), 5,
                        lambda: f"leave of an unsubscribe on B at {show(watcher)}")
            await dropper.close()  # a connection's end is a leave too
            await until(lambda: leaves_of(dropper), 5,
                        lambda: f"leave of a closed connection on C at {show(watcher)}")
            await quiet()
            for other in (local, joiner, dropper):
                assert len(joins_of(other)) == 1, f"joins of {other.name}: {show(watcher)}"
            for other in (joiner, dropper):
                assert len(leaves_of(other)) == 1, f"leaves of {other.name}: {show(watcher)}"
            assert leaves_of(local) == [], show(watcher)
        finally:
            await close_clients(clients)
        await settled(hub3.nodes)
    run_async(scenario(), timeout=30)


def test_the_api_unsubscribe_reaches_the_users_subscriptions_on_other_nodes(hub3):
    a, b, c = hub3.nodes
    channel = "room:api-unsubscribe"

    async def scenario():
        bob_b, bob_c, carol_b = (await open_client(b, "bob"), await open_client(c, "bob"),
                                 await open_client(b, "carol"))
        bob_a = await open_client(a, "bob")
        clients = [bob_b, bob_c, carol_b, bob_a]
        try:
            for client in clients:
                await subscribe(client, channel)
            assert api(a, "unsubscribe", {"user": "bob", "channel": channel}) == {}
            # Single node first: bob's connection on A.
            await until(lambda: pushes(bob_a, channel, "unsubscribe"), 5,
                        lambda: f"unsubscribe push on the API's node: {show(bob_a)}")
            for client in (bob_b, bob_c):
                await until(lambda: pushes(client, channel, "unsubscribe"), 5,
                            lambda: f"unsubscribe push from node A's API at {show(client)}")
            await until(lambda: presence_clients(c, channel) == {carol_b.client}, 2,
                        lambda: f"only carol in presence: {presence_clients(c, channel)}")
            api(a, "publish", {"channel": channel, "data": {"after": "unsubscribe"}})
            await wait_pubs(carol_b, channel, 1)
            await quiet()
            for client in (bob_a, bob_b, bob_c):
                assert pubs(client, channel) == [], f"unsubscribed, still got: {show(client)}"
                assert not client.closed.is_set(), f"the connection stays: {show(client)}"
            assert pushes(carol_b, channel, "unsubscribe") == [], show(carol_b)
        finally:
            await close_clients(clients)
        await settled(hub3.nodes)
        assert presence_clients(a, channel) == set()
    run_async(scenario(), timeout=30)


def test_the_api_subscribe_refresh_and_disconnect_reach_the_user_on_other_nodes(hub3):
    """Called on A: subscribe, refresh and disconnect reach dana's connections on B and C,
    by user or by `client` (one connection of another node), and never erin's."""
    a, b, c = hub3.nodes
    everyone, one = "plain:api-subscribe-all", "plain:api-subscribe-one"

    async def scenario():
        dana_b, dana_c, erin_b = (await open_client(b, "dana"), await open_client(c, "dana"),
                                  await open_client(b, "erin"))
        clients = [dana_b, dana_c, erin_b]
        try:
            # By user: both of dana's connections, on two other nodes.
            assert api(a, "subscribe", {"user": "dana", "channel": everyone}) == {}
            for client in (dana_b, dana_c):
                await until(lambda: pushes(client, everyone, "subscribe"), 5,
                            lambda: f"subscribe push from node A's API at {show(client)}")
            api(a, "publish", {"channel": everyone, "data": {"to": "dana"}})
            for client in (dana_b, dana_c):
                await wait_pubs(client, everyone, 1, why="subscribed by node A's API")
            # By client: only that connection, and only if it is the user's.
            assert api(a, "subscribe", {"user": "erin", "channel": one,
                                        "client": dana_c.client}) == {}
            assert api(a, "subscribe", {"user": "dana", "channel": one,
                                        "client": dana_c.client}) == {}
            await until(lambda: pushes(dana_c, one, "subscribe"), 5,
                        lambda: f"subscribe push to one client at {show(dana_c)}")
            # A client id no node has, or of no shape: nobody, no error (Centrifugo).
            for client in ("node-z.1", "not-an-id"):
                assert api(a, "subscribe", {"user": "dana", "channel": one,
                                            "client": client}) == {}
            # Refresh with expired: true closes the one connection named, 3005.
            assert api(a, "refresh", {"user": "dana", "client": dana_b.client,
                                      "expired": True}) == {}
            code, _ = await dana_b.wait_closed(5)
            assert code == 3005, f"refresh expired across nodes: {show(dana_b)}"
            # Disconnect by user: dana's connection on C, with Centrifugo's default code.
            assert api(a, "disconnect", {"user": "dana"}) == {}
            code, _ = await dana_c.wait_closed(5)
            assert code == 3503, f"disconnect across nodes: {show(dana_c)}"
            await quiet()
            assert pushes(dana_b, one, "subscribe") == [], show(dana_b)
            for channel in (everyone, one):
                assert pushes(erin_b, channel, "subscribe") == [], show(erin_b)
            assert not erin_b.closed.is_set(), f"erin's connection stays: {show(erin_b)}"
        finally:
            await close_clients(clients)
        await settled(hub3.nodes)
    run_async(scenario(), timeout=30)


# ------------------------------------------------------------------ what a node listens to

def test_a_node_listens_for_a_channel_only_while_it_has_local_subscribers(hub3):
    """PUBSUB CHANNELS / NUMSUB in Redis: the channel's Redis channel (whatever its
    name, it contains the hub channel's) has one listener per node with a local
    subscriber, and none once nobody is subscribed (at most 15 s later: a node may
    unsubscribe lazily)."""
    a, b, c = hub3.nodes
    redis = hub3.redis
    channel = "plain:listen-only-here"

    def listening():
        """{Redis channel: listeners} of the channels naming `channel`, plain or sharded
        Pub/Sub (SUBSCRIBE or SSUBSCRIBE) alike."""
        found = {}
        for kind, count in (("CHANNELS", "NUMSUB"), ("SHARDCHANNELS", "SHARDNUMSUB")):
            for name in redis.cli("PUBSUB", kind, f"{PREFIX}:*") or []:
                if channel in name:
                    found[name] = found.get(name, 0) + redis.cli("PUBSUB", count, name)[1]
        return found

    def listeners():
        return sum(listening().values())

    async def scenario():
        assert listening() == {}, f"listened to before anyone subscribed: {listening()}"
        sub_b = await open_client(b, "listen-b")
        sub_b2 = await open_client(b, "listen-b2")
        sub_c = await open_client(c, "listen-c")
        clients = [sub_b, sub_b2, sub_c]
        try:
            await subscribe(sub_b, channel)
            await until(listening, 5, lambda: f"a Redis channel containing {channel!r} among "
                        f"{redis.cli('PUBSUB', 'CHANNELS', PREFIX + ':*')} (and sharded: "
                        f"{redis.cli('PUBSUB', 'SHARDCHANNELS', PREFIX + ':*')})")
            await until(lambda: listeners() == 1, 2, lambda: f"B alone listening: {listening()}")
            # Publishing on A (no subscriber there) does not make A listen.
            api(a, "publish", {"channel": channel, "data": {"n": 1}})
            await wait_pubs(sub_b, channel, 1, why="published on node A")
            await quiet(0.5)
            assert listeners() == 1, f"only node B has a subscriber: {listening()}"
            await subscribe(sub_c, channel)
            await until(lambda: listeners() == 2, 5, lambda: f"B and C listening: {listening()}")
            await subscribe(sub_b2, channel)
            await quiet(0.5)
            assert listeners() == 2, f"one listener per node, not per subscriber: {listening()}"
            await sub_b.close()
            await quiet(0.5)
            assert listeners() == 2, f"B still has a subscriber: {listening()}"
            api(a, "publish", {"channel": channel, "data": {"n": 2}})
            # B2 and C subscribed after n=1 (no history here): n=2 only.
            await wait_pubs(sub_b2, channel, 1, why="B's remaining subscriber")
            await wait_pubs(sub_c, channel, 1)
            await close_clients([sub_b2, sub_c])
            await until(lambda: listening() == {}, 15,
                        lambda: f"no node listening once nobody is subscribed: {listening()}")
        finally:
            await close_clients(clients)
        await settled(hub3.nodes)
    run_async(scenario(), timeout=45)


# ------------------------------------------------------------------ presence (own cluster)

def test_presence_is_cluster_wide_and_forgets_the_clients_of_a_killed_node(redis, server_factory,
                                                                          tmp_path):
    a, b, c = nodes = start_hub_nodes(server_factory, tmp_path, redis)
    channel = "room:presence"

    def stats(node):
        return api(node, "presence_stats", {"channel": channel})

    async def client_presence(client):
        reply = await client.command("presence", {"channel": channel})
        assert "presence" in reply, f"{client.name}: presence command: {reply}"
        return set(reply["presence"].get("presence", {}))

    async def scenario():
        p1_a = await open_client(a, "p1")
        p2_b = await open_client(b, "p2")
        p2_c = await open_client(c, "p2")
        clients = [p1_a, p2_b, p2_c]
        try:
            for client in clients:
                await subscribe(client, channel)
            everyone = {client.client for client in clients}
            # Single node first: A knows its own subscriber.
            assert p1_a.client in presence_clients(a, channel), presence_clients(a, channel)
            for node in nodes:
                await until(lambda: presence_clients(node, channel) == everyone, 2,
                            lambda: f"presence on {node_name(nodes, node)} lists every node's "
                            f"subscriber {everyone}: {presence_clients(node, channel)}")
                assert stats(node) == {"num_clients": 3, "num_users": 2}, (
                    node_name(nodes, node), stats(node))
                entries = api(node, "presence", {"channel": channel})["presence"]
                assert {k: v.get("user") for k, v in entries.items()} == {
                    p1_a.client: "p1", p2_b.client: "p2", p2_c.client: "p2"}, entries
            for client in clients:
                assert await client_presence(client) == everyone, client.name

            # A client that leaves: gone from every node's answer within a second.
            await p1_a.close()
            left = {p2_b.client, p2_c.client}
            for node in nodes:
                await until(lambda: presence_clients(node, channel) == left, 1.5,
                            lambda: f"presence on {node_name(nodes, node)} without the closed "
                            f"client: {presence_clients(node, channel)}")
            assert await client_presence(p2_b) == left

            # kill -9 of node C: its client vanishes within lease_ttl + lease_refresh.
            c.kill()
            c.expected_exit = None
            killed_at = time.monotonic()
            bound = LEASE_TTL_S + LEASE_REFRESH_S + 1.5
            for node in (a, b):
                await until(lambda: presence_clients(node, channel) == {p2_b.client}, bound,
                            lambda: f"presence on {node_name(nodes, node)} without node-c's "
                            f"client {bound}s after its kill -9: "
                            f"{presence_clients(node, channel)}")
            assert time.monotonic() - killed_at <= bound + 0.5
            for node in (a, b):
                assert stats(node) == {"num_clients": 1, "num_users": 1}, stats(node)
            assert await client_presence(p2_b) == {p2_b.client}
        finally:
            await close_clients(clients)
        for node in (a, b):
            await until(lambda: presence_clients(node, channel) == set(), 2,
                        lambda: f"empty presence: {presence_clients(node, channel)}")
        await settled([a, b])
    run_async(scenario(), timeout=45)


# ------------------------------------------------------------------ Redis down (own cluster)

def test_redis_down_delivers_locally_and_cross_node_delivery_resumes(redis, server_factory,
                                                                     tmp_path):
    a, b = nodes = start_hub_nodes(server_factory, tmp_path, redis, ids=NODE_IDS[:2])
    channel = "plain:through-trouble"

    async def scenario():
        on_a, on_b = await open_client(a, "ta"), await open_client(b, "tb")
        clients = [on_a, on_b]
        try:
            for client in clients:
                await subscribe(client, channel)
            api(a, "publish", {"channel": channel, "data": {"phase": "before"}})
            for client in clients:
                await wait_pubs(client, channel, 1, why="before Redis went down")

            redis.kill()
            for node in nodes:
                await until(lambda: health_cluster(node).get("state") == "degraded", 5,
                            lambda: f"{node_name(nodes, node)} degraded: {health_cluster(node)}")
            assert http_get(a.port, "/health/ready").status == 200
            assert scrape(a.port).get("wsvisor_cluster_degraded") == 1
            # Local delivery goes on: A's API to A's subscriber, B's to B's.
            for node, via in ((a, "a"), (b, "b")):
                r = hub_api(node.port, "publish", {"channel": channel,
                                                   "data": {"phase": "down", "via": via}})
                assert r.status == 200 and "error" not in r.json(), (
                    f"publish on {node_name(nodes, node)} with Redis down "
                    f"(on_redis_down = local): {r!r}")
            await until(lambda: {"phase": "down", "via": "a"} in [p["data"] for p in
                                                                 pubs(on_a, channel)], 5,
                        lambda: f"A's local delivery with Redis down: {show(on_a)}")
            await until(lambda: {"phase": "down", "via": "b"} in [p["data"] for p in
                                                                 pubs(on_b, channel)], 5,
                        lambda: f"B's local delivery with Redis down: {show(on_b)}")
            assert not on_a.closed.is_set() and not on_b.closed.is_set(), (show(on_a),
                                                                           show(on_b))

            redis.restart()
            for node in nodes:
                await until(lambda: health_cluster(node).get("state") == "ok", 10,
                            lambda: f"{node_name(nodes, node)} ok again: {health_cluster(node)}")
            # Delivery across nodes resumes once each node listens again: publish on A
            # until B's subscriber gets one (bounded), then B to A.
            for source, target, via in ((a, on_b, "a"), (b, on_a, "b")):
                sent = []

                def arrived():
                    data = {"phase": "again", "via": via, "n": len(sent)}
                    r = hub_api(source.port, "publish", {"channel": channel, "data": data})
                    assert r.status == 200 and "error" not in r.json(), r
                    sent.append(data)
                    return any(p["data"] in sent for p in pubs(target, channel))
                await until(arrived, 15, lambda: f"a publication on {node_name(nodes, source)} "
                            f"reaching {show(target)} after Redis came back", interval=0.25)
            await quiet()
            for client in clients:
                seen = [json.dumps(p["data"], sort_keys=True) for p in pubs(client, channel)]
                assert len(seen) == len(set(seen)), f"a publication twice: {show(client, 60)}"
                assert not client.closed.is_set(), show(client)
        finally:
            await close_clients(clients)
        await settled(nodes)
    run_async(scenario(), timeout=60)
