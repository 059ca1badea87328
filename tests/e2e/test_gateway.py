"""Gateway mode end to end (CONTRACT 11 and 12): wsvisor in front of the real example
backend, python3-websockets clients. The connect hook inside admission, the message
hook, error frames, retries with one delivery id, the breaker, the server API, and the
lifecycle events that keep the backend's registry exact."""

import asyncio
import base64
import json
import socket
import time

import pytest
import websockets

from admin_helpers import ADMIN_ENV, admin, call, fault, tree
from admission_helpers import (attempt, attempt_async, build_request, check_admitted,
                               check_refusal)
from conftest import HOST, RawWs, run_async, scrape, wait_metric
from gateway_helpers import (API_KEY, GATEWAY_ENV, api, backend, gateway_sets,  # noqa: F401
                             session, wait_registry)

ENV = {**GATEWAY_ENV, **ADMIN_ENV}


def ws_url(srv):
    return f"ws://{HOST}:{srv.port}/ws"


async def connect(srv, user, **kw):
    kw.setdefault("ping_interval", None)
    kw.setdefault("open_timeout", 10)
    return await websockets.connect(ws_url(srv), extra_headers=session(user), **kw)


# ------------------------------------------------------------------- connect hook

def test_connect_hook_admits_with_the_backends_identity_and_meta(server_factory, backend):
    srv = server_factory(*gateway_sets(backend), env=ENV)
    a = attempt(srv.port, headers=session("alice"))
    check_admitted(a)
    try:
        listed = api(srv.port, "GET", "/api/connections?user=alice").json()
        assert len(listed) == 1, listed
        entry = listed[0]
        assert entry["user"] == "alice"
        assert entry["meta"]["plan"] == "free", entry
        assert entry["connection"].endswith(".1") or "." in entry["connection"], entry
        info = api(srv.port, "GET", "/api/info").json()
        assert info["mode"] == "gateway" and info["connections"] == 1, info
        assert entry["connection"].startswith(info["node"] + "."), (entry, info)
    finally:
        a.close()


def test_connect_hook_refusals(server_factory, tmp_path):
    from gateway_helpers import Backend
    b = Backend(tmp_path, args=("--reject", "mallory"))
    try:
        srv = server_factory(*gateway_sets(b), env=ENV)
        no_session = attempt(srv.port)
        assert no_session.status == 401 and json.loads(no_session.body) == {"error": "rejected"}
        forbidden = attempt(srv.port, headers=session("mallory"))
        assert forbidden.status == 403 and json.loads(forbidden.body) == {"error": "rejected"}
        assert forbidden.header("retry-after") is None
        b.script("/connect", [429])
        busy = attempt(srv.port, headers=session("alice"))
        assert busy.status == 429 and json.loads(busy.body) == {"error": "rejected"}
        assert int(busy.header("retry-after")) >= 1
        m = scrape(srv.port)
        assert m.get("wsvisor_admissions_rejected_total", reason="rejected") == 3, m.text
        assert m["wsvisor_connections"] == 0
    finally:
        b.stop()


def test_connect_hook_backend_down_and_slow(server_factory, backend):
    srv = server_factory(*gateway_sets(backend), "upstream.timeout=500ms", env=ENV)
    backend.configure(connect_delay_ms=1500)
    slow = attempt(srv.port, headers=session("alice"), timeout=5)
    check_refusal(slow, "upstream_unavailable", where="slow backend")
    assert slow.elapsed < 1.5 + 1.0, slow.elapsed
    backend.configure(connect_delay_ms=0)
    backend.stop()
    down = attempt(srv.port, headers=session("alice"), timeout=5)
    check_refusal(down, "upstream_unavailable", where="backend down")
    assert scrape(srv.port)["wsvisor_connections"] == 0


def test_a_storm_reaches_the_backend_at_most_connect_concurrency_wide(server_factory, backend):
    concurrency = 8
    srv = server_factory(*gateway_sets(backend, events=False),
                         f"gateway.connect_concurrency={concurrency}",
                         "limits.accept_rate=100000", "limits.accept_burst=100000",
                         "limits.max_per_ip=0", env=ENV)
    backend.configure(connect_delay_ms=30)

    async def storm():
        async def one(i):
            try:
                a = await attempt_async(srv.port, headers=session(f"u{i % 50}"), timeout=10)
            except AssertionError:
                return "error"
            a.close()
            return a.status
        return await asyncio.gather(*(one(i) for i in range(500)))

    statuses = run_async(storm(), timeout=120)
    stats = backend.stats()
    assert stats["connect_inflight_max"] <= concurrency, stats
    assert statuses.count(101) >= concurrency, sorted(set(statuses))
    assert set(statuses) <= {101, 503}, sorted(set(statuses))
    m = scrape(srv.port)
    busy = m.get("wsvisor_admissions_rejected_total", reason="upstream_busy")
    assert busy == statuses.count(503), (busy, statuses.count(503))
    wait_metric(srv.port, lambda m: m["wsvisor_connections"] == 0, 20, what="gauge 0")


# ------------------------------------------------------------------- message hook

def test_replies_come_back_in_order_with_one_in_flight(server_factory, backend):
    srv = server_factory(*gateway_sets(backend), env=ENV)
    backend.configure(message_delay_ms=5)

    async def main():
        ws = await connect(srv, "alice")
        for i in range(30):
            await ws.send(f"m{i}")
        got = [await asyncio.wait_for(ws.recv(), 10) for _ in range(30)]
        await ws.close()
        return got

    assert run_async(main(), timeout=60) == [f"echo: m{i}" for i in range(30)]


def test_binary_messages_round_trip_and_silent_is_nothing(server_factory, backend):
    srv = server_factory(*gateway_sets(backend), env=ENV)

    async def main():
        ws = await connect(srv, "alice")
        await ws.send(b"\x00\x01\xff")
        binary = await asyncio.wait_for(ws.recv(), 10)
        await ws.send("silent")
        await ws.send("after")
        after = await asyncio.wait_for(ws.recv(), 10)
        await ws.close()
        return binary, after

    binary, after = run_async(main(), timeout=30)
    assert binary == b"\x00\x01\xff"
    assert after == "echo: after"


def test_503_503_200_gives_one_reply_and_three_attempts_with_one_delivery(server_factory,
                                                                          backend):
    srv = server_factory(*gateway_sets(backend), "upstream.backoff_min=20ms",
                         "upstream.backoff_max=50ms", env=ENV)

    async def main():
        ws = await connect(srv, "alice")
        backend.script("/ws/message", [503, 503, 200])
        await ws.send("hello")
        reply = await asyncio.wait_for(ws.recv(), 10)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)
        await ws.close()
        return reply

    assert run_async(main(), timeout=30) == "echo: hello"
    attempts = backend.stats()["attempts_by_delivery"]
    assert list(attempts.values()) == [3], attempts
    assert scrape(srv.port).get("wsvisor_upstream_retries_total") == 2


def test_backend_down_gives_error_frames_and_the_socket_stays(server_factory, backend):
    srv = server_factory(*gateway_sets(backend, connect=False, events=False),
                         "upstream.retries=1", "upstream.backoff_min=10ms",
                         "upstream.backoff_max=20ms", env=ENV)

    async def main():
        ws = await connect(srv, "alice")
        backend.stop()
        await ws.send("anyone?")
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.send("still here")
        second = json.loads(await asyncio.wait_for(ws.recv(), 10))
        open_after = ws.open
        await ws.close()
        return frame, second, open_after

    frame, second, open_after = run_async(main(), timeout=30)
    assert frame["error"] == "upstream_unavailable" and ":" in frame["delivery"], frame
    assert second["error"] == "upstream_unavailable", second
    assert open_after


def test_the_breaker_opens_fails_fast_half_opens_and_closes(server_factory, backend):
    srv = server_factory(*gateway_sets(backend, connect=False, events=False),
                         "upstream.retries=0", "upstream.breaker_failures=3",
                         "upstream.breaker_window=10s", "upstream.breaker_open=1s", env=ENV)

    async def main():
        ws = await connect(srv, "alice")
        backend.script("/ws/message", [503, 503, 503])
        for _ in range(3):
            await ws.send("x")
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["error"] == \
                "upstream_unavailable"
        calls_before = backend.stats()["message_calls"]
        await ws.send("fast")
        fast = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert backend.stats()["message_calls"] == calls_before, "the breaker let one through"
        m = await call(scrape, srv.port)
        assert m.get("wsvisor_upstream_breaker_open") == 1
        shown = (await call(tree, srv.port))["children"]
        assert next(c for c in shown if c["name"] == "upstream")["breaker"] == "open", shown
        await asyncio.sleep(1.2)
        await ws.send("probe")
        probe = await asyncio.wait_for(ws.recv(), 10)
        await ws.send("normal")
        normal = await asyncio.wait_for(ws.recv(), 10)
        await ws.close()
        return fast, probe, normal

    fast, probe, normal = run_async(main(), timeout=30)
    assert fast["error"] == "upstream_unavailable", fast
    assert (probe, normal) == ("echo: probe", "echo: normal")
    m = scrape(srv.port)
    assert m.get("wsvisor_upstream_breaker_open") == 0
    assert m.get("wsvisor_upstream_requests_total", hook="message", outcome="breaker") == 1


# ------------------------------------------------------------------- server API

def test_api_key_forms_and_refusals(server_factory, backend):
    srv = server_factory(*gateway_sets(backend), env=ENV)
    for headers in ({"X-API-Key": API_KEY}, {"Authorization": f"apikey {API_KEY}"},
                    {"Authorization": f"Bearer {API_KEY}"}, {"Authorization": f"APIKEY {API_KEY}"}):
        r = api(srv.port, "GET", "/api/info", key=None, headers=headers)
        assert r.status == 200, (headers, r)
    assert api(srv.port, "GET", "/api/info", key=None).status == 401
    assert api(srv.port, "GET", "/api/info", key="wrong").status == 401
    assert api(srv.port, "GET", "/api/nothing").status == 404
    assert api(srv.port, "GET", "/api/nothing", key="wrong").status == 401
    no_key = server_factory(*gateway_sets(backend), env=ADMIN_ENV)
    assert api(no_key.port, "GET", "/api/info").status == 404


def test_api_bad_bodies_are_400_or_413_and_change_nothing(server_factory, backend):
    srv = server_factory(*gateway_sets(backend), "api.max_body_bytes=4096", env=ENV)
    a = attempt(srv.port, headers=session("alice"))
    check_admitted(a)
    try:
        for body in (b"not json", b"[1,2]", b'{"user":"alice"}', b'{"user":"alice","data":7}',
                     b'{"user":"alice","data":"x","b64data":"eA=="}',
                     b'{"user":"alice","b64data":"not base64!"}',
                     b'{"connection":"x","user":"alice","data":"x"}',
                     b'{"connection":"not-an-id","data":"x"}', b'{"connection":7,"data":"x"}',
                     b"[" * 100000 + b"]" * 100000,
                     b'{"users":"alice","data":"x"}'):
            r = api(srv.port, "POST", "/api/send", body=body[:4096])
            assert r.status == 400, (body[:60], r)
            assert r.json()["error"] == "bad_request" and r.json()["detail"], r
        huge = api(srv.port, "POST", "/api/send", body=b'{"user":"alice","data":"' +
                   b"x" * 10000 + b'"}')
        assert huge.status == 413, huge
        for body in (b'{"user":"alice","code":3000}', b'{"user":"alice","code":"x"}',
                     b'{"user":"alice","reason":"' + b"r" * 200 + b'"}'):
            assert api(srv.port, "POST", "/api/disconnect", body=body).status == 400, body
        assert len(api(srv.port, "GET", "/api/connections").json()) == 1
    finally:
        a.close()
    assert srv.alive()


def test_send_by_connection_user_and_users_and_410(server_factory, backend):
    srv = server_factory(*gateway_sets(backend), env=ENV)

    async def main():
        a1 = await connect(srv, "alice")
        a2 = await connect(srv, "alice")
        b1 = await connect(srv, "bob")
        listed = await call(lambda: api(srv.port, "GET", "/api/connections").json())
        bob = next(c["connection"] for c in listed if c["user"] == "bob")
        r = await call(api, srv.port, "POST", "/api/send", {"user": "alice", "data": "to alice"})
        assert r.json() == {"delivered": 2}, r
        assert await asyncio.wait_for(a1.recv(), 5) == "to alice"
        assert await asyncio.wait_for(a2.recv(), 5) == "to alice"
        r = await call(api, srv.port, "POST", "/api/send",
                       {"connection": bob, "b64data": base64.b64encode(b"\x01\x02").decode()})
        assert r.json() == {"delivered": 1}, r
        assert await asyncio.wait_for(b1.recv(), 5) == b"\x01\x02"
        r = await call(api, srv.port, "POST", "/api/send",
                       {"users": ["alice", "bob", "nobody"], "data": "all"})
        assert r.json() == {"delivered": 3}, r
        r = await call(api, srv.port, "POST", "/api/send", {"user": "nobody", "data": "x"})
        assert r.json() == {"delivered": 0}, r
        await b1.close()
        await call(wait_metric, srv.port, lambda m: m["wsvisor_connections"] == 2, 10)
        gone = await call(api, srv.port, "POST", "/api/send", {"connection": bob, "data": "x"})
        assert gone.status == 410 and gone.json() == {"error": "gone"}, gone
        other = await call(api, srv.port, "POST", "/api/send",
                           {"connection": "another-node.5", "data": "x"})
        assert other.status == 410, other
        r = await call(api, srv.port, "POST", "/api/disconnect",
                       {"user": "alice", "code": 4321, "reason": "bye"})
        assert r.json() == {"closed": 2}, r
        for ws in (a1, a2):
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert (ws.close_code, ws.close_reason) == (4321, "bye")

    run_async(main(), timeout=60)
    m = wait_metric(srv.port, lambda m: m["wsvisor_connections"] == 0, 10, what="gauge 0")
    assert m.get("wsvisor_connections_closed_total", reason="api") == 2
    assert m.get("wsvisor_api_requests_total", method="POST", status="200") >= 5


def test_sends_never_reach_another_user(server_factory, backend):
    """50 users x 3 connections, 10,000 sends, connection crashes injected meanwhile."""
    srv = server_factory(*gateway_sets(backend, events=False), "faults.enabled=true",
                         "limits.max_per_user=5", env=ENV)
    users = [f"user{i}" for i in range(50)]

    async def main():
        clients = {u: [await connect(srv, u) for _ in range(3)] for u in users}
        received = {u: [[] for _ in range(3)] for u in users}

        async def reader(u, k, ws):
            try:
                while True:
                    received[u][k].append(await ws.recv())
            except websockets.ConnectionClosed:
                pass

        readers = [asyncio.ensure_future(reader(u, k, ws))
                   for u in users for k, ws in enumerate(clients[u])]

        def send_all():
            import http.client
            conn = http.client.HTTPConnection(HOST, srv.port, timeout=10)
            delivered = 0
            for i in range(10000):
                u = users[i % len(users)]
                body = json.dumps({"user": u, "data": f"{u}:{i}"})
                conn.request("POST", "/api/send", body=body,
                             headers={"X-API-Key": API_KEY, "Content-Type": "application/json"})
                r = conn.getresponse()
                delivered += json.loads(r.read())["delivered"]
                if i % 2000 == 1000:
                    fault_conn = http.client.HTTPConnection(HOST, srv.port, timeout=10)
                    fault_conn.request("POST", "/admin/faults", body=json.dumps(
                        {"action": "crash", "target": "connection", "user": users[i % 7]}),
                        headers={"Authorization": f"Bearer {ADMIN_ENV['WSVISOR_ADMIN_TOKEN']}"})
                    fault_conn.getresponse().read()
                    fault_conn.close()
            conn.close()
            return delivered

        delivered = await call(send_all)
        expected = 3 * 10000
        deadline = time.monotonic() + 30
        while sum(len(r) for rs in received.values() for r in rs) < expected:
            assert time.monotonic() < deadline, "not every send arrived"
            await asyncio.sleep(0.1)
        for cs in clients.values():
            for ws in cs:
                await ws.close()
        await asyncio.gather(*readers, return_exceptions=True)
        return delivered, received

    delivered, received = run_async(main(), timeout=240)
    assert delivered == 3 * 10000
    for u, per_connection in received.items():
        for messages in per_connection:
            assert all(m.startswith(u + ":") for m in messages), (u, messages[:5])
            # In the order the API accepted them, once each.
            numbers = [int(m.split(":")[1]) for m in messages]
            assert numbers == sorted(numbers) and len(numbers) == len(set(numbers)) == 200


# ------------------------------------------------------------------- lifecycle events

def never_reading(port, user):
    """An upgraded socket that never reads, with a small receive buffer so that the
    server's own queue fills soon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((HOST, port))
    request, _ = build_request(port, headers=session(user))
    sock.sendall(request)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, f"no upgrade answer for {user}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:200]
    return sock


PING_FRAME = b"\x89\x80\x00\x00\x00\x00"  # masked, empty: proof of life without reading


def flood_until_closed(port, socks, users, chunk=64 * 1024, max_sends=2000):
    """/api/send of `chunk` bytes to `users` until none of them has a connection left.
    The sockets send a ping now and then, so that the heartbeat never takes them for
    zombies first."""
    data = "x" * chunk
    for _ in range(max_sends):
        if not any(c["user"] in users for c in api(port, "GET", "/api/connections").json()):
            return
        for sock in socks:
            try:
                sock.send(PING_FRAME)
            except OSError:
                pass  # closed by the server already
        api(port, "POST", "/api/send", {"users": users, "data": data})
    raise AssertionError(f"{users} were never closed as slow consumers")


def end_every_way(srv, port):
    """Opens about 1,000 connections (980, plus as many as a shard crash closed) and
    ends each group a different v1 way (shard crash, client close, RST, vanish, admin
    close, API disconnect, force sweep, slow consumer, poison past the restart budget,
    zombie), the last 60 by a drain (SIGTERM); returns the expected close_reason counts.
    One event loop throughout, so that the healthy clients keep answering the server's
    pings."""

    async def main():
        expected = {}

        async def group(name, n):
            return [await connect(srv, f"{name}{i % 10}") for i in range(n)]

        async def settle():
            await asyncio.sleep(0.5)

        # First, alone on the server: a shard crash closes its connections 1011
        # (shard_down); the others of the group stay.
        crashed = await group("crash", 40)
        shard0 = await call(lambda: api(port, "GET", "/api/connections").json())
        await call(fault, port, {"action": "crash", "target": "shard", "index": 0})
        await settle()
        left = await call(lambda: len(api(port, "GET", "/api/connections").json()))
        expected["shard_down"] = len(shard0) - left
        # A client close.
        closers = await group("close", 290)
        for ws in closers:
            await ws.close()
        expected["client"] = 290
        # Vanished: RST and plain TCP close without a close frame (client too). Each
        # one vanishes as soon as it is open: a raw socket answers no ping, so one kept
        # past ping_interval + pong_timeout (2 s here) would be a zombie instead.
        # (Raw sockets block: made in a thread, so that the loop keeps answering pings.)
        def vanish(i):
            RawWs(port, extra_headers=session(f"vanish{i % 10}")).abort(rst=i % 2 == 0)

        await call(lambda: [vanish(i) for i in range(200)])
        expected["client"] += 200
        # Admin close and API disconnect.
        admins = await group("admin", 100)
        apis = await group("apiuser", 100)
        for i in range(10):
            await call(admin, port, "POST", f"/admin/close?user=admin{i}")
            await call(api, port, "POST", "/api/disconnect", {"user": f"apiuser{i}"})
        expected["admin"] = 100
        expected["api"] = 100
        await settle()
        # Swept: one user at its cap (100); a force sweep of that user evicts its oldest
        # (healthy) connections down to 70 % of the cap, 1013; the client closes the rest.
        swept = [await connect(srv, "swept") for _ in range(100)]
        r = await call(admin, port, "POST", "/admin/sweep?level=force&user=swept")
        expected["evicted"] = sum(r.json()["evicted"].values())
        assert expected["evicted"] == 30, r.json()
        await settle()
        for ws in swept:
            await ws.close()
        expected["client"] += 70
        # Slow consumers: sockets that never read (a small receive buffer), sent to
        # through the API until the server's queue passes send_queue_bytes (1008).
        slow = await call(lambda: [never_reading(port, f"slow{i}") for i in range(10)])
        await call(flood_until_closed, port, slow, [f"slow{i}" for i in range(10)])
        expected["slow_consumer"] = 10
        await settle()
        # Poison past the restart budget: 1011 restart_budget.
        poisoned = await group("poison", 20)
        for i in range(10):
            await call(fault, port, {"action": "poison", "target": "connection",
                                     "user": f"poison{i}"})
        for ws in poisoned:
            for _ in range(5):
                try:
                    await ws.send("x")
                except websockets.ConnectionClosed:
                    break
        await settle()
        await call(fault, port, {"action": "clear"})
        expected["restart_budget"] = 20
        # Zombies: raw sockets that never answer a ping (ping_interval 1s, pong 1s).
        zombies = await call(lambda: [RawWs(port, extra_headers=session(f"zombie{i % 10}"))
                                      for i in range(100)])
        expected["zombie"] = 100
        await asyncio.sleep(4)  # found and closed by the heartbeat
        for ws in zombies:
            ws.close()
        for sock in slow:
            sock.close()
        # The rest: closed by the drain (1001), the crash group's survivors with them.
        survivors = await group("drain", 60 - (40 - expected["shard_down"]))
        expected["drain"] = 60
        await call(wait_metric, port, lambda m: m["wsvisor_connections"] == 60, 15,
                   what="only the drain group left")
        srv.signal(15)
        open_ones = [ws for ws in crashed + survivors if ws.open]
        codes = []
        for ws in open_ones:
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 15)
            except websockets.ConnectionClosed:
                codes.append(ws.close_code)
        assert codes == [1001] * 60, sorted(set(codes))
        for ws in closers + admins + apis + poisoned:
            await ws.close()
        return expected

    return run_async(main(), timeout=150)


@pytest.mark.parametrize("events_fail_ratio", [0.0, 0.5])
def test_every_connect_gets_exactly_one_disconnect(server_factory, backend, events_fail_ratio):
    srv = server_factory(*gateway_sets(backend), "faults.enabled=true",
                         "janitor.ping_interval=1s", "janitor.pong_timeout=1s",
                         "janitor.sweep_interval=250ms", "limits.max_per_user=100",
                         "events.retries=20", "upstream.backoff_min=10ms",
                         "upstream.backoff_max=50ms", "shutdown.drain_timeout=10s",
                         "janitor.close_timeout=1s", "server.io_threads=2",
                         "server.actor_threads=2", env=ENV)
    backend.configure(events_fail_ratio=events_fail_ratio)
    expected = end_every_way(srv, srv.port)
    assert srv.wait_exit(20) == 0
    registry = wait_registry(backend, lambda r: not r["connections"] and not r["anomalies"],
                             20, what="an empty registry")
    counts = registry["events"]
    reasons = registry["close_reasons"]
    got = {reason: reasons.get(reason, 0) for reason in expected}
    assert got == expected, f"close reasons {json.dumps(reasons, sort_keys=True)}"
    assert counts["connect"] == counts["disconnect"] == sum(expected.values()), counts
    assert sum(reasons.values()) == counts["disconnect"]
    if events_fail_ratio:
        assert backend.stats()["events_failed"] > 0  # the failures really happened
