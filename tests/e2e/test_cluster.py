"""Cluster mode (CONTRACT 14): several wsvisor nodes over one real redis-server, behind a
real haproxy, all started here on free loopback ports and stopped at the end.

- the per-user cap holds across nodes: a spike of one user's upgrades through haproxy
  admits exactly max_per_user cluster-wide; zombies holding the cap on other nodes are
  swept by those nodes for the next upgrade, within admission_timeout;
- kill -9 of a node: its users can connect again within lease_ttl + lease_refresh, and
  the events endpoint gets one node_lost disconnect per connection it held;
- /api/send, /api/disconnect and /api/connections count every node;
- Redis trouble: restart and kill with on_redis_down "local" and "reject"; a Pub/Sub
  subscription killed on the Redis side is restarted; the fault target `cluster`;
- a drained node's clients reconnect to the others, none refused for a cap.
Every test ends with the slots filled again to the cap, so nothing leaked."""

import asyncio
import json
import signal
import time

import pytest
import websockets
import websockets.exceptions

from admin_helpers import ws_connect
from cluster_helpers import (RedisServer, cluster_sets, haproxy_factory,  # noqa: F401 (fixtures)
                             redis_server)
from conftest import RawWs, free_port, http_get, http_request, run_async, scrape, wait_until
from gateway_helpers import API_KEY, Backend, api
from hub_helpers import DISCONNECT_CONNECTION_LIMIT, ProtocolClient, connection_token, start_hub

ADMIN = "cluster-admin-token-0123456789"
ENV = {"WSVISOR_ADMIN_TOKEN": ADMIN, "WSVISOR_API_KEY": API_KEY}
# Short leases so that a dead node is reaped within seconds.
LEASE = ["cluster.lease_ttl=3s", "cluster.lease_refresh=500ms", "cluster.probe_interval=1s"]
HEADER_AUTH = ["auth.mode=header"]


@pytest.fixture
def redis(redis_server):
    """Set up before server_factory (so torn down after it): the nodes leave Redis at
    their drain as in production."""
    return redis_server


def start_nodes(server_factory, redis, count, *extra, prefix="node"):
    """`count` nodes over `redis`, each with its own node id; extra --set for all."""
    return [server_factory(*cluster_sets(redis, f"{prefix}-{i + 1}", *LEASE, *HEADER_AUTH, *extra),
                           env=ENV)
            for i in range(count)]


def claims(redis, user):
    """The user's claims in Redis: connection -> node id."""
    flat = redis.cli("HGETALL", f"wsvisor:claims:{user}") or []
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def health_cluster(node):
    return json.loads(http_get(node.port, "/health").body)["cluster"]


async def open_until_refused(port, user, limit):
    """Opens clients of `user` until one is refused (or `limit` are open); returns the open
    clients and the refusal's status (None when none was refused)."""
    clients = []
    for _ in range(limit):
        try:
            clients.append(await ws_connect(port, user))
        except websockets.exceptions.InvalidStatusCode as refused:
            return clients, refused.status_code
    return clients, None


async def close_all(clients):
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


# ------------------------------------------------------------------ per-user cap

def test_a_spike_of_one_user_through_haproxy_admits_exactly_the_cap(redis, server_factory,
                                                                    haproxy_factory):
    nodes = start_nodes(server_factory, redis, 3, "limits.max_per_user=20",
                        "limits.admission_timeout=2s")
    proxy = haproxy_factory([n.port for n in nodes])
    async def spike():
        async def one(_):
            try:
                return await ws_connect(proxy.port, "spiky", open_timeout=30)
            except websockets.exceptions.InvalidStatusCode as refused:
                return refused.status_code
        results = await asyncio.gather(*(one(i) for i in range(1000)))
        admitted = [r for r in results if not isinstance(r, int)]
        refused = [r for r in results if isinstance(r, int)]
        assert len(admitted) == 20, f"admitted {len(admitted)}, refused {len(refused)}"
        assert set(refused) == {429}, set(refused)
        assert len(claims(redis, "spiky")) == 20
        # Spread over the nodes by haproxy, counted once cluster-wide.
        per_node = [scrape(n.port).get("wsvisor_connections") for n in nodes]
        assert sum(per_node) == 20, per_node
        await close_all(admitted)
        wait_until(lambda: not claims(redis, "spiky"), 5, what="claims released")
        # Every slot can be filled again, and not one more.
        again, status = await open_until_refused(proxy.port, "spiky", 21)
        assert len(again) == 20 and status == 429, (len(again), status)
        await close_all(again)
    run_async(spike(), timeout=120)


def test_zombies_on_other_nodes_are_swept_for_the_next_upgrade(redis, server_factory):
    a, b, c = start_nodes(server_factory, redis, 3, "limits.max_per_user=20",
                          "limits.admission_timeout=2s", "janitor.probe_timeout=500ms")
    # Clients that never answer a ping: zombies.
    zombies = [RawWs(node.port, extra_headers=[("X-User-Id", "z")])
               for node in (b, c) for _ in range(10)]
    try:
        assert len(claims(redis, "z")) == 20

        async def next_upgrade():
            started = time.monotonic()
            client = await ws_connect(a.port, "z")
            elapsed = time.monotonic() - started
            assert elapsed < 2.0, f"admitted after {elapsed:.2f}s (admission_timeout 2s)"
            # B and C swept "z": their zombies' slots left Redis; A's new one is there.
            wait_until(lambda: len(claims(redis, "z")) < 20, 5, what="zombies released")
            assert any(node == "node-1" for node in claims(redis, "z").values())
            evicted = sum(scrape(n.port).get("wsvisor_evictions_total", reason="emergency")
                          for n in (b, c))
            assert evicted >= 1
            await client.close()
        run_async(next_upgrade(), timeout=30)
    finally:
        for z in zombies:
            z.sock.close()
    wait_until(lambda: not claims(redis, "z"), 10, what="every claim of z released")

    async def refill():
        clients, status = await open_until_refused(a.port, "z", 21)
        assert len(clients) == 20 and status == 429
        await close_all(clients)
    run_async(refill(), timeout=60)


def test_hub_connect_commands_claim_the_user_across_nodes(redis, server_factory, tmp_path):
    """Hub mode: the user comes with the connect command's token, after the upgrade; its
    cap is decided then, cluster-wide (CONTRACT 13.1 with 14)."""
    a, b = (start_hub(server_factory, tmp_path,
                      *cluster_sets(redis, f"node-{i + 1}", *LEASE, "limits.max_per_user=3"))
            for i in range(2))

    async def scenario():
        token = connection_token("harry")
        held = [await ProtocolClient.open(n.port, token) for n in (a, b, a)]
        assert len(claims(redis, "harry")) == 3
        fourth = await ProtocolClient.open(b.port, token, connect=False)
        with pytest.raises(websockets.ConnectionClosed):
            await fourth.connect(token, timeout=5)
        await asyncio.wait_for(fourth.closed.wait(), 5)
        assert fourth.close_code == DISCONNECT_CONNECTION_LIMIT
        assert len(claims(redis, "harry")) == 3
        await held[0].ws.close()
        wait_until(lambda: len(claims(redis, "harry")) == 2, 5, what="one released")
        again = await ProtocolClient.open(b.port, token)
        assert len(claims(redis, "harry")) == 3
        for client in held[1:] + [again]:
            await client.ws.close()
        wait_until(lambda: not claims(redis, "harry"), 5, what="released")
    run_async(scenario(), timeout=60)


# ------------------------------------------------------------------ node death

def test_kill_9_of_a_node_frees_its_users_and_reports_node_lost_once(redis, server_factory,
                                                                     tmp_path):
    backend = Backend(tmp_path)
    try:
        events = [f"events.url={backend.url}/events"]
        a, b, c = start_nodes(server_factory, redis, 3, "limits.max_per_user=10", *events)
        users = [f"u{i}" for i in range(30)]

        async def scenario():
            held = []
            for user in users:
                for _ in range(10):
                    held.append(await ws_connect(b.port, user))
            wait_until(lambda: backend.registry()["events"]["connect"] == 300, 10,
                       what="300 connect events")
            # At their cap: no node admits one more for them.
            refused = await open_until_refused(a.port, users[0], 1)
            assert refused[1] == 429
            b.kill()
            b.expected_exit = None
            killed_at = time.monotonic()
            # Within lease_ttl + lease_refresh (3.5 s) every user can connect again, to
            # its cap, on the nodes that are left.
            fresh = []
            for user in users:
                while True:
                    try:
                        fresh.append(await ws_connect((a.port, c.port)[len(fresh) % 2], user))
                        break
                    except websockets.exceptions.InvalidStatusCode as refused:
                        assert refused.status_code == 429
                        assert time.monotonic() - killed_at < 3.5 + 1.0, "still counted"
                        await asyncio.sleep(0.05)
            for user in users[:3]:
                more, status = await open_until_refused(a.port, user, 10)
                assert len(more) == 9 and status == 429
                fresh += more
            wait_until(lambda: backend.registry()["close_reasons"].get("node_lost") == 300, 10,
                       what="300 node_lost disconnects")
            registry = backend.registry()
            assert registry["anomalies"] == []
            assert registry["events"]["duplicates"] == 0
            lost_nodes = {node for node in
                          (e.get("node") for e in registry["connections"].values())}
            assert "node-2" not in lost_nodes
            reaped = sum(scrape(n.port).get("wsvisor_cluster_reaped_total") for n in (a, c))
            assert reaped == 300
            await close_all(fresh)
            for client in held:
                client.transport.abort()
        run_async(scenario(), timeout=120)
        wait_until(lambda: backend.registry()["by_user"] == {}, 10, what="registry empty")
    finally:
        backend.stop()


def test_a_node_restarted_under_its_id_reports_what_its_last_life_held(redis, server_factory,
                                                                       tmp_path):
    """kill -9 and an immediate restart with the same node id (a container restarted in
    its pod), before any other node could reap it: the new process's first sync finds the
    old process's entries, and their connections get their node_lost disconnects."""
    backend = Backend(tmp_path)
    try:
        sets = ["limits.max_per_user=5", f"events.url={backend.url}/events"]
        (old,) = start_nodes(server_factory, redis, 1, *sets)

        async def lives():
            held = [await ws_connect(old.port, "ivy") for _ in range(5)]
            wait_until(lambda: backend.registry()["events"]["connect"] == 5, 10,
                       what="connects")
            old.kill()
            old.expected_exit = None
            for client in held:
                client.transport.abort()
            return start_nodes(server_factory, redis, 1, *sets)[0]  # node-1 again
        new = run_async(lives(), timeout=30)
        wait_until(lambda: backend.registry()["close_reasons"].get("node_lost") == 5, 10,
                   what="5 node_lost disconnects")
        registry = backend.registry()
        assert registry["anomalies"] == [] and registry["by_user"] == {}
        assert not claims(redis, "ivy")

        async def second_life():
            clients, status = await open_until_refused(new.port, "ivy", 6)
            assert len(clients) == 5 and status == 429
            await close_all(clients)
        run_async(second_life(), timeout=30)
    finally:
        backend.stop()


def test_a_wrong_redis_password_is_named_and_the_node_serves_degraded(server_factory, tmp_path):
    locked = RedisServer(tmp_path / "locked", password="right-password")
    try:
        node = server_factory(*cluster_sets(locked, "node-1", *LEASE, *HEADER_AUTH),
                              env={**ENV, "WSVISOR_CLUSTER_REDIS_PASSWORD": "wrong-password"})
        wait_until(lambda: "AUTH" in node.log(), 5, what="the AUTH failure logged")
        line = next(l for l in node.log().splitlines() if "AUTH" in l)
        assert "WSVISOR_CLUSTER_REDIS_PASSWORD" in line, line
        assert "wrong-password" not in node.log()  # the secret is never logged
        assert health_cluster(node)["state"] == "degraded"
        assert http_get(node.port, "/health/ready").status == 200

        async def local_caps():
            client = await ws_connect(node.port, "jack")  # local mode admits
            await client.close()
        run_async(local_caps(), timeout=10)
        right = server_factory(*cluster_sets(locked, "node-2", *LEASE, *HEADER_AUTH),
                               env={**ENV, "WSVISOR_CLUSTER_REDIS_PASSWORD": "right-password"})
        wait_until(lambda: health_cluster(right)["state"] == "ok", 5, what="ok with the password")
        node.stop()
        right.stop()
    finally:
        locked.finish()


# ------------------------------------------------------------------ the server API

def test_api_send_disconnect_and_connections_count_every_node(redis, server_factory):
    nodes = start_nodes(server_factory, redis, 3, "limits.max_per_user=10",
                        "limits.send_queue_bytes=4096", "server.max_message_bytes=4096")

    async def scenario():
        clients = [await ws_connect(n.port, "alice") for n in nodes for _ in range(2)]
        bob = await ws_connect(nodes[2].port, "bob")
        listed = api(nodes[0].port, "GET", "/api/connections?user=alice")
        assert listed.status == 200
        entries = json.loads(listed.body)
        assert len(entries) == 6
        assert {e["connection"].rsplit(".", 1)[0] for e in entries} == {"node-1", "node-2",
                                                                         "node-3"}
        everyone = json.loads(api(nodes[1].port, "GET", "/api/connections").body)
        assert len(everyone) == 7
        # /admin/cluster: every node with its lease, as the leases last reported them.
        wait_until(lambda: sorted(n["connections"] for n in admin_get(nodes[0], "/admin/cluster"))
                   == [2, 2, 3], 5, what="/admin/cluster counts")
        listed_nodes = admin_get(nodes[0], "/admin/cluster")
        assert sorted(n["node_id"] for n in listed_nodes) == ["node-1", "node-2", "node-3"]
        assert all(n["draining"] is False and n["lease_expires_at"].endswith("Z")
                   for n in listed_nodes)
        assert scrape(nodes[0].port).get("wsvisor_cluster_nodes") == 3
        tree = admin_get(nodes[0], "/admin/tree")
        assert "cluster" in [child["name"] for child in tree["children"]]

        sent = api(nodes[0].port, "POST", "/api/send", {"user": "alice", "data": "hi all"})
        assert sent.status == 200, sent.body
        assert json.loads(sent.body) == {"delivered": 6, "unconfirmed_nodes": 0}
        for client in clients:
            assert await asyncio.wait_for(client.recv(), 5) == "hi all"
        # Once each: nothing more arrives.
        for client in clients:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.recv(), 0.3)

        # One connection of another node, in the order the API accepted them.
        target = next(e["connection"] for e in entries if e["connection"].startswith("node-3."))
        for i in range(20):
            one = api(nodes[0].port, "POST", "/api/send", {"connection": target, "data": str(i)})
            assert json.loads(one.body) == {"delivered": 1, "unconfirmed_nodes": 0}
        receiver = None
        for client in clients[4:]:
            try:
                first = await asyncio.wait_for(client.recv(), 2)
                receiver = client
                break
            except asyncio.TimeoutError:
                continue
        assert receiver is not None and first == "0"
        got = [await asyncio.wait_for(receiver.recv(), 5) for _ in range(19)]
        assert got == [str(i) for i in range(1, 20)]
        # No send reaches another user's connection.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(bob.recv(), 0.3)
        # Binary, across nodes.
        binary = api(nodes[1].port, "POST", "/api/send", {"user": "bob", "b64data": "AAEC/w=="})
        assert json.loads(binary.body)["delivered"] == 1
        assert await asyncio.wait_for(bob.recv(), 5) == b"\x00\x01\x02\xff"

        # Bad input is refused in cluster mode too, before any node hears of it.
        too_big = api(nodes[0].port, "POST", "/api/send",
                      {"user": "alice", "data": "x" * 5000})
        assert too_big.status == 400, too_big.body
        assert b"larger than limits.send_queue_bytes" in too_big.body
        # 410: a connection its (live) node does not hold, and one of a node that is gone.
        assert api(nodes[0].port, "POST", "/api/send",
                   {"connection": "node-3.999999", "data": "x"}).status == 410
        assert api(nodes[0].port, "POST", "/api/send",
                   {"connection": "node-9.1", "data": "x"}).status == 410

        closed = api(nodes[2].port, "POST", "/api/disconnect", {"user": "alice", "code": 4005})
        assert json.loads(closed.body) == {"closed": 6, "unconfirmed_nodes": 0}
        for client in clients:
            await asyncio.wait_for(client.wait_closed(), 5)
            assert client.close_code == 4005
        wait_until(lambda: not claims(redis, "alice"), 5, what="alice's claims released")
        await bob.close()
    run_async(scenario(), timeout=60)


# ------------------------------------------------------------------ Redis trouble

def test_redis_restart_and_kill_with_local_keep_serving_and_rebuild(redis, server_factory):
    a, b = start_nodes(server_factory, redis, 2, "limits.max_per_user=4",
                       "cluster.on_redis_down=local")

    async def scenario():
        held = [await ws_connect(n.port, "carol") for n in (a, b) for _ in range(2)]
        assert len(claims(redis, "carol")) == 4
        wait_until(lambda: health_cluster(a) == {"state": "ok", "node_id": "node-1", "nodes": 2},
                   5, what="both nodes counted")
        redis.kill()
        wait_until(lambda: health_cluster(a)["state"] == "degraded", 5, what="degraded")
        assert scrape(a.port).get("wsvisor_cluster_degraded") == 1
        assert http_get(a.port, "/health/ready").status == 200
        # Open connections are kept and served.
        await held[0].send("still here")
        assert await asyncio.wait_for(held[0].recv(), 5) == "still here"
        # Local caps only: a fifth of carol is admitted on a (it holds 2 of its 4).
        extra = await ws_connect(a.port, "carol")
        redis.restart()
        wait_until(lambda: all(health_cluster(n)["state"] == "ok" for n in (a, b)), 10,
                   what="ok again")
        # Each node rebuilt its entries: every open connection of carol is counted again.
        wait_until(lambda: len(claims(redis, "carol")) == 5, 5, what="entries rebuilt")
        _, status = await open_until_refused(b.port, "carol", 1)
        assert status == 429
        await close_all(held + [extra])
        wait_until(lambda: not claims(redis, "carol"), 5, what="claims released")
        again, status = await open_until_refused(a.port, "carol", 5)
        assert len(again) == 4 and status == 429
        await close_all(again)
    run_async(scenario(), timeout=60)


def test_redis_down_with_reject_refuses_new_upgrades_and_serves_open_ones(redis, server_factory):
    (a,) = start_nodes(server_factory, redis, 1, "cluster.on_redis_down=reject",
                       "limits.retry_after=2s")

    async def scenario():
        held = await ws_connect(a.port, "dave")
        redis.kill()
        wait_until(lambda: health_cluster(a)["state"] == "degraded", 5, what="degraded")
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as refused:
            await ws_connect(a.port, "erin")
        assert refused.value.status_code == 503
        assert scrape(a.port).get("wsvisor_admissions_rejected_total",
                                    reason="cluster_unavailable") >= 1
        await held.send("ping")
        assert await asyncio.wait_for(held.recv(), 5) == "ping"
        redis.restart()
        wait_until(lambda: health_cluster(a)["state"] == "ok", 10, what="ok again")
        again = await ws_connect(a.port, "erin")
        await close_all([held, again])
    run_async(scenario(), timeout=60)


def test_a_node_whose_redis_is_unreachable_at_start_becomes_ready_and_applies_reject(
        server_factory):
    """Readiness waits for the first connection to Redis to come to something; refused
    at once here, so the node is ready, degraded, and refuses upgrades (reject)."""
    nowhere = f"cluster.redis_url=redis://127.0.0.1:{free_port()}/0"
    node = server_factory("cluster.mode=redis", "cluster.node_id=node-1", nowhere, *LEASE,
                          *HEADER_AUTH, "cluster.on_redis_down=reject", "limits.retry_after=2s",
                          env=ENV)
    assert health_cluster(node)["state"] == "degraded"
    assert "cannot connect to Redis" in node.log()

    async def refused():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as answer:
            await ws_connect(node.port, "kim")
        assert answer.value.status_code == 503
        retry_after = int(answer.value.headers["Retry-After"])
        assert 2 <= retry_after <= 3
    run_async(refused(), timeout=10)
    assert scrape(node.port).get("wsvisor_admissions_rejected_total",
                                 reason="cluster_unavailable") == 1


def test_a_killed_pubsub_subscription_is_restarted_and_delivery_resumes(redis, server_factory):
    a, b = start_nodes(server_factory, redis, 2)

    async def scenario():
        far = await ws_connect(b.port, "frank")
        before = scrape(b.port).get("wsvisor_cluster_pubsub_restarts_total")
        redis.cli("CLIENT", "KILL", "TYPE", "pubsub")
        # Detected within 2 x probe_interval (1 s here) and restarted.
        wait_until(lambda: scrape(b.port).get("wsvisor_cluster_pubsub_restarts_total") > before,
                   2.5, what="subscription restarted")

        def delivered():
            answer = json.loads(api(a.port, "POST", "/api/send",
                                    {"user": "frank", "data": "again"}).body)
            return answer["delivered"] == 1
        wait_until(delivered, 5, what="delivery across nodes again")
        assert await asyncio.wait_for(far.recv(), 5) == "again"
        await far.close()
    run_async(scenario(), timeout=30)


def test_a_crash_of_the_cluster_service_leaves_no_count_behind(redis, server_factory):
    (a,) = start_nodes(server_factory, redis, 1, "faults.enabled=true", "limits.max_per_user=3")

    async def scenario():
        held = [await ws_connect(a.port, "gina") for _ in range(2)]
        crash = http_request_json(a.port, "/admin/faults", {"action": "crash", "target": "cluster"})
        assert crash == {"applied": 1}
        wait_until(lambda: scrape(a.port).get("wsvisor_actor_restarts_total",
                                                actor="cluster") == 1, 5, what="restart")
        wait_until(lambda: health_cluster(a)["state"] == "ok", 5, what="ok again")
        await held[0].close()
        wait_until(lambda: len(claims(redis, "gina")) == 1, 5, what="release after restart")
        more, status = await open_until_refused(a.port, "gina", 3)
        assert len(more) == 2 and status == 429
        await close_all(held[1:] + more)
        wait_until(lambda: not claims(redis, "gina"), 5, what="claims released")
    run_async(scenario(), timeout=30)


def admin_get(node, path):
    r = http_request(node.port, "GET", path, headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status == 200, r.body
    return json.loads(r.body)


def http_request_json(port, path, body):
    r = http_request(port, "POST", path, headers={"Authorization": f"Bearer {ADMIN}",
                                                  "Content-Type": "application/json"},
                     body=json.dumps(body).encode())
    assert r.status == 200, r.body
    return json.loads(r.body)


# ------------------------------------------------------------------ drain

def test_a_drained_node_s_clients_reconnect_to_the_others_none_refused(redis, server_factory,
                                                                      haproxy_factory):
    nodes = start_nodes(server_factory, redis, 3, "limits.max_per_user=6",
                        "limits.admission_timeout=2s", "shutdown.drain_spread=1s")
    proxy = haproxy_factory([n.port for n in nodes])
    users = [f"d{i}" for i in range(10)]
    async def scenario():
        clients = {}
        for user in users:
            for i in range(6):
                clients[(user, i)] = await ws_connect(proxy.port, user)
        drained = nodes[0]
        on_drained = scrape(drained.port).get("wsvisor_connections")
        assert on_drained > 0
        refusals = {}

        async def come_back(key):
            # As a client does: on 1001, reconnect through the balancer at once,
            # retrying a refusal shortly.
            await clients[key].wait_closed()
            assert clients[key].close_code == 1001
            for _ in range(200):
                try:
                    clients[key] = await ws_connect(proxy.port, key[0])
                    return True
                except websockets.exceptions.InvalidStatusCode as refused:
                    refusals[refused.status_code] = refusals.get(refused.status_code, 0) + 1
                    await asyncio.sleep(0.1)
            return False

        watchers = {key: asyncio.ensure_future(come_back(key)) for key in clients}
        drained.signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while drained.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert drained.wait_exit(1) == 0
        closed = [key for key, task in watchers.items() if task.done() or
                  not clients[key].open]
        results = await asyncio.wait_for(
            asyncio.gather(*(watchers[key] for key in closed)), 30)
        for key, task in watchers.items():
            if key not in closed:
                task.cancel()
        assert len(closed) == on_drained and all(results), (len(closed), on_drained)
        assert 429 not in refusals, f"refused for a cap not exceeded: {refusals}"
        for user in users:
            assert len(claims(redis, user)) == 6
        # The drained node left: its lease went at its exit, not at lease_ttl.
        assert redis.cli("ZSCORE", "wsvisor:nodes", "node-1") is None
        await close_all(list(clients.values()))
        wait_until(lambda: all(not claims(redis, u) for u in users), 5, what="released")
    run_async(scenario(), timeout=120)
