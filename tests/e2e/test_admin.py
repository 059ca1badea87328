"""The admin API (CONTRACT section 7), its listener (section 2, `admin.listen`) and the
drain it starts (section 9)."""

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
import websockets

from admin_helpers import (ADMIN_ENV, CONNECTION_FIELDS, TOKEN, admin, admin_json, call,
                           close_all, closed, connections, echo_once, open_many,
                           parse_rfc3339, shard_counts, tree, wait_close, ws_connect)
from conftest import (RawWs, free_port, http_get, module_server, run_async, scrape,
                      wait_closed_by_peer, wait_metric, wait_until)

THREADS = ("server.io_threads=2", "server.actor_threads=2")
HEADER_AUTH = "auth.mode=header"

# Every admin path, with its method, for the "exists or not" checks.
ADMIN_CALLS = [
    ("GET", "/admin/connections"),
    ("GET", "/admin/connections?user=a"),
    ("GET", "/admin/tree"),
    ("POST", "/admin/sweep?level=moderate"),
    ("POST", "/admin/close?id=1"),
    ("POST", "/admin/faults"),
    ("POST", "/admin/drain"),  # must never be acted on here: it would drain the server
    ("GET", "/admin/nonexistent"),
    ("GET", "/admin/"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Token set, header auth, faults on (for the 400 checks), K = 2 shards."""
    with module_server(tmp_path_factory, HEADER_AUTH, *THREADS, "faults.enabled=true",
                       "limits.max_per_user=10", env=ADMIN_ENV) as srv:
        yield srv


def assert_error(r, status):
    assert r.status == status, r
    assert r.is_json(), f"not JSON: {r!r}"
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], r
    return body


# ------------------------------------------------------------------------ auth


def test_admin_paths_404_without_token(server_factory):
    srv = server_factory(HEADER_AUTH, "faults.enabled=true")  # no WSVISOR_ADMIN_TOKEN
    for method, path in ADMIN_CALLS:
        for token in (None, TOKEN, ""):
            r = admin(srv.port, method, path, token=token,
                      body={"action": "clear"} if path == "/admin/faults" else None)
            assert r.status == 404, f"{method} {path} token={token!r}: {r!r}"
            assert r.is_json() and r.json() == {"error": "not_found"}, r
    # Nothing happened: in particular no drain began.
    assert http_get(srv.port, "/health/ready").status == 200
    assert srv.alive()


def test_missing_or_wrong_bearer_401(server):
    bad = [
        None,                                        # no Authorization at all
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer {TOKEN.upper()}"},
    ]
    for method, path in ADMIN_CALLS:
        for headers in bad:
            r = admin(server.port, method, path, token=None, headers=headers,
                      body={"action": "clear"} if path == "/admin/faults" else None)
            assert r.status == 401, f"{method} {path} headers={headers!r}: {r!r}"
            assert_error(r, 401)
    assert http_get(server.port, "/health/ready").status == 200, "a 401 drain began a drain"


def test_right_bearer_works(server):
    assert isinstance(admin_json(server.port, "GET", "/admin/connections"), list)
    assert admin_json(server.port, "GET", "/admin/tree")["name"] == "root"
    r = admin_json(server.port, "POST", "/admin/sweep?level=conservative")
    assert r["level"] == "conservative"
    assert admin_json(server.port, "POST", "/admin/close?id=999999999") == {"closed": 0}
    assert admin_json(server.port, "POST", "/admin/faults", body={"action": "clear"}).keys() == {
        "applied"}


BAD_REQUESTS = [
    ("POST", "/admin/sweep", None),
    ("POST", "/admin/sweep?level=", None),
    ("POST", "/admin/sweep?level=extreme", None),
    ("POST", "/admin/sweep?level=MODERATE", None),
    ("POST", "/admin/sweep?user=a", None),
    ("POST", "/admin/sweep?level=moderate&user=a&ip=127.0.0.1", None),
    ("POST", "/admin/close", None),
    ("POST", "/admin/close?id=", None),
    ("POST", "/admin/close?user=", None),
    ("POST", "/admin/close?id=1&user=a", None),
    ("POST", "/admin/close?id=abc", None),
    ("POST", "/admin/close?id=-1", None),
    ("POST", "/admin/close?id=1.5", None),
    ("POST", "/admin/close?id=99999999999999999999999", None),
    ("POST", "/admin/faults", b""),
    ("POST", "/admin/faults", b"{not json"),
    ("POST", "/admin/faults", b"[1,2]"),
    ("POST", "/admin/faults", b'"crash"'),
    ("POST", "/admin/faults", {}),
    ("POST", "/admin/faults", {"action": "explode", "target": "connection", "user": "a"}),
    ("POST", "/admin/faults", {"action": 1, "target": "connection", "user": "a"}),
    ("POST", "/admin/faults", {"action": "crash", "target": "moon"}),
    ("POST", "/admin/faults", {"action": "crash"}),
    ("POST", "/admin/faults", {"action": "crash", "target": "connection"}),
    ("POST", "/admin/faults", {"action": "poison", "target": "connection"}),
    ("POST", "/admin/faults", {"action": "crash", "target": "connection", "id": "x"}),
    ("POST", "/admin/faults", {"action": "delay", "target": "connection", "user": "a"}),
    ("POST", "/admin/faults", {"action": "delay", "target": "connection", "user": "a",
                               "ms": "200"}),
    ("POST", "/admin/faults", {"action": "delay", "target": "connection", "user": "a",
                               "ms": -5}),
    ("POST", "/admin/faults", {"action": "crash", "target": "shard", "index": 99}),
    ("POST", "/admin/faults", {"action": "crash", "target": "shard", "index": -1}),
]


@pytest.mark.parametrize("method,path,body", BAD_REQUESTS,
                         ids=[f"{m} {p} {b!r}"[:80] for m, p, b in BAD_REQUESTS])
def test_bad_parameters_400(server, method, path, body):
    r = admin(server.port, method, path, body=body)
    assert_error(r, 400)


def test_bad_requests_changed_nothing(server):
    # None of the 400s above may have left a standing fault or crashed anything.
    m = scrape(server.port)
    for actor in ("connection", "limit_guard", "janitor", "shard"):
        assert m.get("wsvisor_actor_restarts_total", actor=actor) == 0, m.text

    async def main():
        async with ws_connect(server.port, "a") as ws:
            t0 = time.monotonic()
            await echo_once(ws, "still fine")
            return time.monotonic() - t0
    assert run_async(main(), timeout=30) < 5.0


WRONG_METHODS = [
    ("POST", "/admin/connections"),
    ("DELETE", "/admin/connections"),
    ("POST", "/admin/tree"),
    ("PUT", "/admin/tree"),
    ("GET", "/admin/sweep?level=moderate"),
    ("GET", "/admin/close?id=1"),
    ("DELETE", "/admin/close?id=1"),
    ("GET", "/admin/faults"),
    ("GET", "/admin/drain"),
    ("PUT", "/admin/drain"),
]


def test_wrong_method_405(server):
    for method, path in WRONG_METHODS:
        r = admin(server.port, method, path)
        assert r.status == 405, f"{method} {path}: {r!r}"
    assert http_get(server.port, "/health/ready").status == 200, "a wrong method drained"


# -------------------------------------------------------------- admin.listen


def test_admin_listen_separate_port(server_factory):
    admin_port = free_port()
    srv = server_factory(f"admin.listen=127.0.0.1:{admin_port}", env=ADMIN_ENV)
    wait_until(lambda: http_get(admin_port, "/metrics", timeout=1.0).status == 200, 10,
               what="the admin listener")
    # The main port: no /metrics, no /admin/* (even with the right token), health stays.
    for method, path in ADMIN_CALLS + [("GET", "/metrics")]:
        r = admin(srv.port, method, path,
                  body={"action": "clear"} if path == "/admin/faults" else None)
        assert r.status == 404, f"main port {method} {path}: {r!r}"
    for path in ("/health/live", "/health/ready", "/health"):
        r = http_get(srv.port, path)
        assert r.status == 200, f"main port {path}: {r!r}"
    # The admin port: both, with the usual authentication.
    m = scrape(admin_port)
    assert m.has("wsvisor_connections"), m.text
    assert admin_json(admin_port, "GET", "/admin/tree")["name"] == "root"
    assert admin_json(admin_port, "GET", "/admin/connections") == []
    assert admin(admin_port, "GET", "/admin/tree", token="nope").status == 401
    assert admin(admin_port, "GET", "/admin/tree", token=None).status == 401

    # WebSocket on the main port still works and shows up on the admin port.
    async def main():
        async with ws_connect(srv.port) as ws:
            await echo_once(ws, "hi")
            conns = await call(connections, admin_port)
            assert len(conns) == 1 and conns[0]["state"] == "open", conns
    run_async(main(), timeout=30)
    assert http_get(srv.port, "/health/ready").status == 200


def test_ready_metric_follows_readiness(server_factory):
    """Section 6 (found while testing admin.listen): wsvisor_ready is 1 while
    /health/ready answers 200, on the admin listener and on the main one."""
    admin_port = free_port()
    srv = server_factory(f"admin.listen=127.0.0.1:{admin_port}", env=ADMIN_ENV)
    assert http_get(srv.port, "/health/ready").status == 200
    wait_until(lambda: http_get(admin_port, "/metrics", timeout=1.0).status == 200, 10,
               what="the admin listener")
    wait_metric(admin_port, lambda m: m.get("wsvisor_ready") == 1, 5,
                what="wsvisor_ready == 1 while /health/ready is 200")


# ------------------------------------------------------------------ connections


def test_connections_fields_and_filter(server):
    users = ["alice"] * 3 + ["bob"] * 2 + ["carol@example.com"]

    async def main():
        t_before = datetime.now(timezone.utc)
        clients = await open_many(server.port, users)
        try:
            for i, ws in enumerate(clients):
                await echo_once(ws, f"m{i}")
            all_conns = await call(connections, server.port)
            mine = [c for c in all_conns if c.get("user") in set(users)]
            assert len(mine) == len(users), all_conns
            ids = [c["id"] for c in mine]
            assert len(set(ids)) == len(ids), ids
            for c in mine:
                assert set(c) >= CONNECTION_FIELDS, c
                assert isinstance(c["id"], int) and c["id"] > 0, c
                assert c["ip"] == "127.0.0.1", c
                assert c["state"] == "open", c
                assert isinstance(c["restarts"], int) and c["restarts"] == 0, c
                assert isinstance(c["queued_bytes"], int) and c["queued_bytes"] >= 0, c
                opened = parse_rfc3339(c["opened_at"])
                last = parse_rfc3339(c["last_activity"])
                now = datetime.now(timezone.utc)
                slack = timedelta(seconds=2)
                assert t_before - slack <= opened <= now + slack, (c, t_before, now)
                assert opened - timedelta(milliseconds=1) <= last <= now + slack, c
            assert sorted(c["user"] for c in mine) == sorted(users)

            alice = await call(connections, server.port, "alice")
            assert sorted(c["id"] for c in alice) == sorted(
                c["id"] for c in mine if c["user"] == "alice"), alice
            bob = await call(connections, server.port, "bob")
            assert len(bob) == 2 and all(c["user"] == "bob" for c in bob), bob
            carol = await call(connections, server.port, "carol@example.com")  # %40 encoded
            assert len(carol) == 1 and carol[0]["user"] == "carol@example.com", carol
            assert await call(connections, server.port, "nobody") == []

            # last_activity moves with traffic.
            before = max(parse_rfc3339(c["last_activity"]) for c in bob)
            await asyncio.sleep(0.05)
            for w, u in zip(clients, users):
                if u == "bob":
                    await echo_once(w, "tick")
            after = await call(connections, server.port, "bob")
            moved = [c for c in after if parse_rfc3339(c["last_activity"]) > before]
            assert len(moved) == len(after) == 2, (bob, after)
        finally:
            await close_all(clients)

    run_async(main(), timeout=60)
    wait_until(lambda: not [c for c in connections(server.port) if c["user"] in set(users)],
               10, what="the closed clients to leave /admin/connections")


# ------------------------------------------------------------------------ tree


def check_tree_shape(t, k):
    assert t["name"] == "root", t
    assert isinstance(t.get("strategy"), str) and t["strategy"], t
    assert isinstance(t.get("restarts"), int) and t["restarts"] >= 0, t
    names = [c["name"] for c in t["children"]]
    assert names == ["limit_guard", "janitor"] + [f"shard-{i}" for i in range(k)], names
    for c in t["children"]:
        assert isinstance(c.get("restarts"), int) and c["restarts"] >= 0, c
        if c["name"].startswith("shard-"):
            assert isinstance(c.get("connections"), int) and c["connections"] >= 0, c
            assert "children" not in c, c


def test_tree_shape_and_shard_counts(server):
    t = tree(server.port)
    check_tree_shape(t, 2)
    base = sum(shard_counts(t).values())

    async def main():
        clients = await open_many(server.port, [f"t{i}" for i in range(6)])
        try:
            await call(wait_until, lambda: sum(shard_counts(tree(server.port)).values())
                       == base + 6, 10, what="shard counts to sum to the open clients")
            t2 = await call(tree, server.port)
            check_tree_shape(t2, 2)
            assert sum(shard_counts(t2).values()) == base + 6, t2
        finally:
            await close_all(clients)

    run_async(main(), timeout=60)
    wait_until(lambda: sum(shard_counts(tree(server.port)).values()) == base, 10,
               what="shard counts back to the baseline")


@pytest.mark.parametrize("sets,k", [
    (("server.scheduler=io", "server.io_threads=3", "server.actor_threads=1"), 3),
    (("server.scheduler=pool", "server.io_threads=1", "server.actor_threads=3"), 3),
    (("server.scheduler=pool", "server.io_threads=3", "server.actor_threads=1"), 1),
])
def test_tree_shards_follow_actor_threads(server_factory, sets, k):
    srv = server_factory(*sets, env=ADMIN_ENV)
    check_tree_shape(tree(srv.port), k)


# ----------------------------------------------------------------------- close


def test_close_by_id_and_by_user(server):
    port = server.port

    async def main():
        users = ["k1", "k1", "k1", "k2", "k2"]
        clients = await open_many(port, users)
        try:
            for i, ws in enumerate(clients):
                await echo_once(ws, f"x{i}")
            m0 = await call(scrape, port)
            k1 = await call(connections, port, "k1")
            assert len(k1) == 3, k1
            # By id: find which client it is by closing and watching.
            target = k1[0]["id"]
            r = await call(admin_json, port, "POST", f"/admin/close?id={target}")
            assert r == {"closed": 1}, r
            k1_clients = [w for w, u in zip(clients, users) if u == "k1"]
            waits = {asyncio.ensure_future(w.wait_closed()): w for w in k1_clients}
            done, pending = await asyncio.wait(list(waits), timeout=10,
                                               return_when=asyncio.FIRST_COMPLETED)
            for t in pending:
                t.cancel()
            assert len(done) == 1, f"{len(done)} k1 clients closed by /admin/close?id"
            closed_ws = waits[done.pop()]
            code, reason = await wait_close(closed_ws)
            assert (code, reason) == (4002, "admin close"), (code, reason)
            others = [w for w in clients if w is not closed_ws]
            for i, w in enumerate(others):
                await echo_once(w, f"after-id-{i}")
            left = await call(connections, port, "k1")
            assert target not in [c["id"] for c in left], left

            # By user: the other two k1 clients, and only those.
            r = await call(admin_json, port, "POST", "/admin/close?user=k1")
            assert r == {"closed": 2}, r
            for w in [w for w in k1_clients if w is not closed_ws]:
                assert await wait_close(w) == (4002, "admin close")
            for i, w in enumerate(clients[3:]):
                await echo_once(w, f"k2-still-{i}")
            assert await call(admin_json, port, "POST", "/admin/close?user=k1") == {"closed": 0}
            assert await call(admin_json, port, "POST", "/admin/close?id=987654321") == {
                "closed": 0}
            m1 = await call(wait_metric, port,
                            lambda m: closed(m, "admin") - closed(m0, "admin") == 3
                            and m["wsvisor_connections"] == m0["wsvisor_connections"] - 3,
                            10, what="closed_total{reason=admin} +3 and the gauge -3")
            assert m1.get("wsvisor_evictions_total", reason="admin") - m0.get(
                "wsvisor_evictions_total", reason="admin") == 3, m1.text
            assert len(await call(connections, port, "k2")) == 2
        finally:
            await close_all(clients)

    run_async(main(), timeout=60)


# ----------------------------------------------------------------------- sweep


def raw_zombie(port, user):
    """Completes the handshake, then never reads again (and never answers a ping)."""
    return RawWs(port, extra_headers=[("X-User-Id", user)])


def check_sweep_body(r, level, scope_word):
    assert set(r) >= {"level", "scope", "evicted", "duration_ms"}, r
    assert r["level"] == level, r
    assert isinstance(r["scope"], str) and scope_word in r["scope"], r
    assert set(r["evicted"]) == {"dead", "zombie", "idle", "healthy"}, r
    assert all(isinstance(v, int) and v >= 0 for v in r["evicted"].values()), r
    assert isinstance(r["duration_ms"], (int, float)) and r["duration_ms"] >= 0, r
    return r["evicted"]


def test_sweep_levels_and_scopes(server_factory):
    probe_ms = 300
    srv = server_factory(HEADER_AUTH, *THREADS, "limits.max_per_user=10",
                         f"janitor.probe_timeout={probe_ms}ms", "janitor.close_timeout=2s",
                         env=ADMIN_ENV)
    port = srv.port

    async def sweep(level, query=""):
        return await call(admin_json, port, "POST", f"/admin/sweep?level={level}{query}")

    async def zombie_gone(z, what):
        waited = await call(wait_closed_by_peer, z.sock, 10)
        assert waited is not None, f"{what}: the zombie's socket is still open"

    async def main():
        sw = await open_many(port, ["sw"] * 9)
        other = await open_many(port, ["other"] * 3)
        everyone = sw + other
        zombies = []
        try:
            for i, ws in enumerate(everyone):
                await echo_once(ws, f"hello{i}")
            z = await call(raw_zombie, port, "sw")
            zombies.append(z)
            m0 = await call(scrape, port)
            await call(wait_until, lambda: len(connections(port)) == 13, 10,
                       what="13 connections")

            # conservative: nothing is dead, nothing is evicted.
            ev = check_sweep_body(await sweep("conservative"), "conservative", "all")
            assert ev == {"dead": 0, "zombie": 0, "idle": 0, "healthy": 0}, ev
            assert len(await call(connections, port)) == 13

            # moderate, all: the zombie goes, within probe_timeout; the rest stay.
            r = await sweep("moderate")
            ev = check_sweep_body(r, "moderate", "all")
            assert ev == {"dead": 0, "zombie": 1, "idle": 0, "healthy": 0}, r
            assert r["duration_ms"] < probe_ms + 2000, r
            await zombie_gone(z, "moderate all")
            for i, ws in enumerate(everyone):
                await echo_once(ws, f"after-moderate{i}")
            await call(wait_until, lambda: len(connections(port)) == 12, 10, what="12 left")

            # moderate, scoped by IP and by user.
            z2 = await call(raw_zombie, port, "other")
            zombies.append(z2)
            r = await sweep("moderate", "&user=sw")
            assert check_sweep_body(r, "moderate", "sw")["zombie"] == 0, r
            r = await sweep("moderate", "&ip=127.0.0.1")
            ev = check_sweep_body(r, "moderate", "127.0.0.1")
            assert ev == {"dead": 0, "zombie": 1, "idle": 0, "healthy": 0}, r
            await zombie_gone(z2, "moderate ip")
            z3 = await call(raw_zombie, port, "sw")
            zombies.append(z3)
            r = await sweep("moderate", "&user=other")
            assert check_sweep_body(r, "moderate", "other")["zombie"] == 0, r
            r = await sweep("moderate", "&user=sw")
            ev = check_sweep_body(r, "moderate", "sw")
            assert ev == {"dead": 0, "zombie": 1, "idle": 0, "healthy": 0}, r
            await zombie_gone(z3, "moderate user")
            for i, ws in enumerate(everyone):
                await echo_once(ws, f"after-scoped{i}")

            # aggressive, user sw (9 open, watermark 70 % of max_per_user = 7): the two
            # longest idle go with 1013; make sw[0] and sw[1] the idle ones.
            await asyncio.sleep(0.05)
            for i, ws in enumerate(sw[2:]):
                await echo_once(ws, f"fresh{i}")
            r = await sweep("aggressive", "&user=sw")
            ev = check_sweep_body(r, "aggressive", "sw")
            assert ev["dead"] == 0 and ev["zombie"] == 0 and ev["healthy"] == 0, r
            assert ev["idle"] == 2, r
            for ws in sw[:2]:
                assert await wait_close(ws) == (1013, "evicted")
            for i, ws in enumerate(sw[2:] + other):
                await echo_once(ws, f"after-aggressive{i}")

            # force, user sw: back to 9, force brings it down to 7 again.
            extra = await open_many(port, ["sw"] * 2)
            everyone += extra
            r = await sweep("force", "&user=sw")
            ev = check_sweep_body(r, "force", "sw")
            assert ev["dead"] == 0 and ev["zombie"] == 0, r
            assert ev["idle"] + ev["healthy"] == 2, r
            live_sw = sw[2:] + extra
            closes = []
            for ws in live_sw:
                try:
                    await echo_once(ws, "probe", timeout=5)
                except websockets.ConnectionClosed:
                    closes.append((ws.close_code, ws.close_reason))
            assert closes == [(1013, "evicted")] * 2, closes
            for i, ws in enumerate(other):
                await echo_once(ws, f"other-after-force{i}")

            # aggressive for the whole server is a no-op below soft_connections.
            r = await sweep("aggressive")
            assert check_sweep_body(r, "aggressive", "all") == {
                "dead": 0, "zombie": 0, "idle": 0, "healthy": 0}, r
            m1 = await call(scrape, port)
            assert m1.get("wsvisor_sweeps_total", kind="admin") - m0.get(
                "wsvisor_sweeps_total", kind="admin") == 9, m1.text
            open_now = [w for w in everyone if not w.closed]
            assert len(open_now) == 10
            await call(wait_until, lambda: (len(connections(port)) == 10 and
                                            scrape(port)["wsvisor_connections"] == 10),
                       10, what="10 connections in /admin/connections and the gauge")
        finally:
            for z in zombies:
                z.close()
            await close_all(everyone)

    run_async(main(), timeout=90)
    wait_metric(port, lambda m: m["wsvisor_connections"] == 0, 15, what="gauge back to 0")


def test_sweep_every_level_and_scope_spares_healthy(server):
    """Every level with every scope shape answers 200 with the documented body; with only
    responsive clients far below every watermark nothing is evicted."""
    port = server.port

    async def main():
        clients = await open_many(port, ["mx"] * 3)
        try:
            for i, ws in enumerate(clients):
                await echo_once(ws, f"mx{i}")
            for level in ("conservative", "moderate", "aggressive", "force"):
                for query, word in (("", "all"), ("&user=mx", "mx"), ("&user=nobody", "nobody"),
                                    ("&ip=127.0.0.1", "127.0.0.1")):
                    r = await call(admin_json, port, "POST", f"/admin/sweep?level={level}{query}")
                    ev = check_sweep_body(r, level, word)
                    assert ev == {"dead": 0, "zombie": 0, "idle": 0, "healthy": 0}, (query, r)
            for i, ws in enumerate(clients):
                await echo_once(ws, f"mx-after{i}")
            assert len(await call(connections, port, "mx")) == 3
        finally:
            await close_all(clients)

    run_async(main(), timeout=60)


# ----------------------------------------------------------------------- drain


def test_admin_drain(server_factory):
    srv = server_factory(*THREADS, "shutdown.drain_spread=300ms", env=ADMIN_ENV)
    port = srv.port

    async def main():
        clients = await open_many(port, [None] * 5)
        for i, ws in enumerate(clients):
            await echo_once(ws, f"d{i}")
        r = await call(admin, port, "POST", "/admin/drain")
        assert r.status == 200 and r.is_json() and r.json() == {"draining": True}, r
        ready = await call(http_get, port, "/health/ready")
        if ready.status == 200:  # "at once": allow the answer to cross the threads
            ready = await call(wait_until, lambda: (lambda x: x if x.status == 503 else None)(
                http_get(port, "/health/ready")), 1.0, what="readiness 503")
        assert ready.status == 503 and ready.json() == {"status": "draining"}, ready
        closes = await asyncio.gather(*(wait_close(ws, 15) for ws in clients))
        assert closes == [(1001, "shutdown")] * 5, closes

    run_async(main(), timeout=60)
    code = srv.wait_exit(15)
    assert code == 0, f"exit code {code} after POST /admin/drain\n{srv.log()[-3000:]}"


def test_connections_carry_string_ids_and_close_takes_one(server):
    """CONTRACT 10: every entry has "connection" = "<node_id>.<id>"; /admin/close takes
    ?connection=; another node's id closes nothing; a malformed one is 400."""

    async def main():
        a = await ws_connect(server.port, "strid-a")
        b = await ws_connect(server.port, "strid-b")
        listed = await call(connections, server.port)
        mine = {c["user"]: c for c in listed if c["user"].startswith("strid-")}
        for c in mine.values():
            node, _, number = c["connection"].rpartition(".")
            assert node and number == str(c["id"]), c
        victim = mine["strid-a"]["connection"]
        node = victim.rpartition(".")[0]
        other = await call(admin_json, server.port, "POST",
                           f"/admin/close?connection=other-{node}.{mine['strid-a']['id']}")
        bad = await call(admin, server.port, "POST", "/admin/close?connection=not-an-id")
        r = await call(admin_json, server.port, "POST", f"/admin/close?connection={victim}")
        code = (await wait_close(a))[0]
        b_open = b.open
        await b.close()
        return other, bad, r, code, b_open

    other, bad, r, code, b_open = run_async(main(), timeout=60)
    assert other == {"closed": 0}, other
    assert bad.status == 400, bad
    assert r == {"closed": 1} and code == 4002 and b_open, (r, code)
