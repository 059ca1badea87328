"""Faults toward clients (CONTRACT 8, target "client"), seen from the client's side with
python3-websockets against the real binary: stall, latency, drop, close codes, reset,
zombie and a paced rolling restart; selection by user, id, connection id and share;
standing faults for future connections and `clear`; bad bodies answered 400 with nothing
changed. Each test ends by filling every slot again.

Loopback only; every wait and loop is bounded.
"""

import asyncio
import contextlib
import json
import socket
import time

import pytest
import websockets

from admin_helpers import (ADMIN_ENV, admin, admin_json, call, close_all, connections, fault,
                           open_many, wait_close, wait_counts, ws_connect)
from conftest import HOST, http_get, run_async, scrape, wait_metric

NODE = "faults-node"
BASE = ("auth.mode=header", "faults.enabled=true", f"cluster.node_id={NODE}")


def faults_total(m, action):
    return m.get("wsvisor_faults_total", 0.0, action=action)


def start(server_factory, *sets):
    return server_factory(*BASE, *sets, env=ADMIN_ENV)


async def refill(port, slots):
    """Every slot can be filled again: `slots` connections open at once, each echoes."""
    await call(wait_counts, port, 0, 20.0)
    clients = await open_many(port, [f"refill{i}" for i in range(slots)])
    try:
        await asyncio.gather(*(ws.send(f"r{i}") for i, ws in enumerate(clients)))
        got = await asyncio.gather(*(asyncio.wait_for(ws.recv(), 20) for ws in clients))
        assert got == [f"r{i}" for i in range(len(clients))]
    finally:
        await close_all(clients)
    await call(wait_counts, port, 0, 20.0)


def node_of(port):
    return json.loads(http_get(port, "/health").body)["cluster"]["node_id"]


# ------------------------------------------------------------------------ bad bodies

BAD_BODIES = [
    ({"action": "drop", "target": "client", "user": "u", "ratio": 2}, "ratio"),
    ({"action": "drop", "target": "client", "user": "u", "ratio": -0.1}, "ratio"),
    ({"action": "drop", "target": "client", "user": "u"}, "ratio"),
    ({"action": "stall", "target": "client", "user": "u", "ms": -5}, "ms"),
    ({"action": "stall", "target": "client", "user": "u", "ms": 0}, "ms"),
    ({"action": "stall", "target": "client", "user": "u"}, "ms"),
    ({"action": "latency", "target": "client", "user": "u", "ms": 10, "jitter_ms": 20}, "jitter_ms"),
    ({"action": "latency", "target": "client", "user": "u", "ms": "10"}, "ms"),
    ({"action": "explode", "target": "client", "user": "u"}, "action"),
    ({"action": "close", "target": "client", "user": "u", "code": 1005}, "code"),
    ({"action": "close", "target": "client", "user": "u", "code": 1006}, "code"),
    ({"action": "close", "target": "client", "user": "u", "code": 1010}, "code"),
    ({"action": "close", "target": "client", "user": "u", "code": 1015}, "code"),
    ({"action": "close", "target": "client", "user": "u", "code": 2999}, "code"),
    ({"action": "close", "target": "client", "user": "u", "code": 5000}, "code"),
    ({"action": "close", "target": "client", "user": "u"}, "code"),
    ({"action": "close", "target": "client", "user": "u", "code": 4000, "reason": "x" * 124},
     "reason"),
    ({"action": "stall", "target": "client", "ms": 100}, "share"),  # no selector
    ({"action": "stall", "target": "client", "share": 0, "ms": 100}, "share"),
    ({"action": "stall", "target": "client", "share": 1.5, "ms": 100}, "share"),
    ({"action": "stall", "target": "client", "user": "u", "id": 3, "ms": 100}, "only one"),
    ({"action": "restart", "target": "client", "spread": "soon"}, "spread"),
    ({"action": "restart", "target": "client", "spread": 2}, "spread"),
    ({"action": "zombie", "target": "janitor"}, "target"),
    ({"action": "crash", "target": "client", "user": "u"}, "target client"),
    ({"action": "zombie", "target": "nowhere", "user": "u"}, "target"),
    ({"action": "reset", "target": "client", "connection": "not an id"}, "connection"),
]


def test_bad_fault_bodies_answer_400_and_change_nothing(server_factory):
    srv = start(server_factory)

    async def main():
        ws = await ws_connect(srv.port, "u")
        try:
            for body, word in BAD_BODIES:
                r = await call(admin, srv.port, "POST", "/admin/faults", body=body)
                assert r.status == 400, (body, r)
                error = r.json()["error"]
                assert word in error, (body, error)
            r = await call(admin, srv.port, "POST", "/admin/faults", body=b"{not json")
            assert r.status == 400 and "JSON" in r.json()["error"], r
            # Nothing was applied: the connection echoes at once, nothing counted.
            t0 = time.monotonic()
            await ws.send("still here")
            assert await asyncio.wait_for(ws.recv(), 5) == "still here"
            assert time.monotonic() - t0 < 1.0
            m = await call(scrape, srv.port)
            for action in ("stall", "latency", "drop", "close", "reset", "zombie", "restart"):
                assert faults_total(m, action) == 0, (action, m.text)
            # A new connection of the user has no standing fault either.
            ws2 = await ws_connect(srv.port, "u")
            await ws2.send("new")
            assert await asyncio.wait_for(ws2.recv(), 5) == "new"
            await ws2.close()
        finally:
            await ws.close()
        await refill(srv.port, 20)

    run_async(main(), timeout=90)


# ---------------------------------------------------------------------------- stall

def test_stall_holds_every_message_then_delivers_them_in_order(server_factory):
    srv = start(server_factory)

    async def main():
        victim = await ws_connect(srv.port, "victim")
        bystander = await ws_connect(srv.port, "other")
        try:
            await victim.send("before")
            assert await asyncio.wait_for(victim.recv(), 5) == "before"
            r = await call(fault, srv.port, {"action": "stall", "target": "client",
                                             "user": "victim", "ms": 1500})
            assert r == {"applied": 1}, r
            t0 = time.monotonic()
            for i in range(20):
                await victim.send(f"m{i}")
            # The others are not touched.
            await bystander.send("hi")
            assert await asyncio.wait_for(bystander.recv(), 2) == "hi"
            assert time.monotonic() - t0 < 1.0
            got = [await asyncio.wait_for(victim.recv(), 10) for _ in range(20)]
            waited = time.monotonic() - t0
            assert got == [f"m{i}" for i in range(20)], got
            assert 1.2 <= waited <= 4.0, waited  # about M ms (1,500), measured from the client
            # Writing resumed: the next echo is prompt.
            t1 = time.monotonic()
            await victim.send("after")
            assert await asyncio.wait_for(victim.recv(), 5) == "after"
            assert time.monotonic() - t1 < 1.0
            m = await call(scrape, srv.port)
            assert faults_total(m, "stall") == 1, m.text
        finally:
            await close_all([victim, bystander])
        await refill(srv.port, 20)

    run_async(main(), timeout=90)


def test_a_stall_is_still_bounded_by_send_queue_bytes(server_factory):
    srv = start(server_factory, "limits.send_queue_bytes=65536")

    async def main():
        ws = await ws_connect(srv.port, "s")
        try:
            r = await call(fault, srv.port, {"action": "stall", "target": "client", "user": "s",
                                             "ms": 20000})
            assert r == {"applied": 1}, r
            # 200 KiB of echoes wait: past 64 KiB the connection is a slow consumer.
            chunk = "x" * 1024
            with contextlib.suppress(websockets.ConnectionClosed):
                for _ in range(200):
                    await ws.send(chunk)
            code, reason = await wait_close(ws, 30)
            assert (code, reason) == (1008, "slow consumer"), (code, reason)
            m = await call(wait_metric, srv.port,
                           lambda m: m.get("wsvisor_connections_closed_total", 0.0,
                                           reason="slow_consumer") == 1, 10,
                           what="one slow consumer")
            assert m["wsvisor_send_queue_bytes"] == 0, m.text
        finally:
            await ws.close()
        await refill(srv.port, 20)

    run_async(main(), timeout=90)


# -------------------------------------------------------------------------- latency

def test_latency_holds_each_message_and_keeps_order_and_stands_for_new_connections(
        server_factory):
    srv = start(server_factory)

    async def main():
        ws = await ws_connect(srv.port, "lag")
        try:
            r = await call(fault, srv.port, {"action": "latency", "target": "client",
                                             "user": "lag", "ms": 300, "jitter_ms": 100})
            assert r == {"applied": 1}, r
            sent_at = {}
            for i in range(30):
                sent_at[i] = time.monotonic()
                await ws.send(str(i))
                await asyncio.sleep(0.01)
            delays, order = [], []
            for _ in range(30):
                n = int(await asyncio.wait_for(ws.recv(), 10))
                order.append(n)
                delays.append(time.monotonic() - sent_at[n])
            assert order == list(range(30)), order
            assert min(delays) >= 0.19, delays  # 300 - 100 ms, less timer slack
            assert max(delays) <= 1.5, delays
            mean = sum(delays) / len(delays)
            assert 0.25 <= mean <= 0.7, delays

            # Standing: the user's next connection lags too, another user's does not.
            fresh = await ws_connect(srv.port, "lag")
            other = await ws_connect(srv.port, "fast")
            t0 = time.monotonic()
            await fresh.send("new")
            await other.send("other")
            assert await asyncio.wait_for(other.recv(), 5) == "other"
            assert time.monotonic() - t0 < 0.15
            assert await asyncio.wait_for(fresh.recv(), 5) == "new"
            assert time.monotonic() - t0 >= 0.19
            m = await call(scrape, srv.port)
            assert faults_total(m, "latency") == 1, m.text  # the fault reached one then

            # clear: at once for both, and for the connections to come.
            assert (await call(fault, srv.port, {"action": "clear"}))["applied"] >= 3
            for client in (ws, fresh):
                t1 = time.monotonic()
                await client.send("quick")
                assert await asyncio.wait_for(client.recv(), 5) == "quick"
                assert time.monotonic() - t1 < 0.15
            later = await ws_connect(srv.port, "lag")
            t2 = time.monotonic()
            await later.send("q")
            assert await asyncio.wait_for(later.recv(), 5) == "q"
            assert time.monotonic() - t2 < 0.15
            await close_all([fresh, other, later])
        finally:
            await ws.close()
        await refill(srv.port, 20)

    run_async(main(), timeout=90)


# ----------------------------------------------------------------------------- drop

def test_drop_discards_that_ratio_of_10000_messages_and_counts_them(server_factory):
    srv = start(server_factory)
    total, ratio = 10000, 0.3

    async def main():
        ws = await ws_connect(srv.port, "lossy", max_queue=None)
        try:
            r = await call(fault, srv.port, {"action": "drop", "target": "client",
                                             "user": "lossy", "ratio": ratio})
            assert r == {"applied": 1}, r
            received = []

            async def reader():
                for _ in range(total + 1):
                    msg = await ws.recv()
                    if msg == "end":
                        return
                    received.append(int(msg))

            task = asyncio.ensure_future(reader())
            m0 = await call(scrape, srv.port)
            for i in range(total):
                await ws.send(str(i))
                if i % 500 == 499:
                    await asyncio.sleep(0)  # let the reader keep up
            # Every echo was written or dropped before the fault is cleared; then a marker:
            # echoes keep order, so all before it came or were dropped.
            await call(wait_metric, srv.port,
                       lambda m: m["wsvisor_messages_sent_total"] - m0["wsvisor_messages_sent_total"]
                       + m["wsvisor_faults_dropped_total"] >= total, 60,
                       what="every echo written or dropped")
            await call(fault, srv.port, {"action": "clear"})
            await ws.send("end")
            await asyncio.wait_for(task, 60)
            lost = total - len(received)
            # Binomial: sd = sqrt(n p (1-p)) = 46; 6 sd either way.
            assert abs(lost - total * ratio) <= 6 * (total * ratio * (1 - ratio)) ** 0.5, lost
            assert received == sorted(received), "order of the survivors"
            m = await call(scrape, srv.port)
            assert m["wsvisor_faults_dropped_total"] == lost, m.text
            assert faults_total(m, "drop") == 1, m.text
        finally:
            await ws.close()
        await refill(srv.port, 20)

    run_async(main(), timeout=120)


# ---------------------------------------------------------------------------- close

CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 1014, 3000, 4000, 4999]


def test_close_sends_any_code_a_server_may_send_verbatim(server_factory):
    srv = start(server_factory)

    async def main():
        clients = await open_many(srv.port, [f"c{i}" for i in range(len(CODES))])
        try:
            ids = {c["user"]: c["id"] for c in await call(connections, srv.port)}
            for i, code in enumerate(CODES):
                reason = f"why {code} é"
                r = await call(fault, srv.port, {"action": "close", "target": "client",
                                                 "id": ids[f"c{i}"], "code": code,
                                                 "reason": reason})
                assert r == {"applied": 1}, r
                got = await wait_close(clients[i], 10)
                assert got == (code, reason), (code, got)
            m = await call(scrape, srv.port)
            assert faults_total(m, "close") == len(CODES), m.text
        finally:
            await close_all(clients)
        await refill(srv.port, 20)

    run_async(main(), timeout=90)


def test_select_by_connection_id_and_by_share(server_factory):
    srv = start(server_factory)

    async def main():
        clients = await open_many(srv.port, [f"s{i % 5}" for i in range(40)])
        try:
            node = await call(node_of, srv.port)
            assert node == NODE
            first = min(c["id"] for c in await call(connections, srv.port))
            # Another node's connection id reaches nobody here.
            r = await call(fault, srv.port, {"action": "close", "target": "client",
                                             "connection": f"elsewhere.{first}", "code": 4100})
            assert r == {"applied": 0}, r
            r = await call(fault, srv.port, {"action": "close", "target": "client",
                                             "connection": f"{NODE}.{first}", "code": 4100})
            assert r == {"applied": 1}, r
            # A quarter of the 39 still open: round(9.75) = 10, chosen at random.
            r = await call(fault, srv.port, {"action": "close", "target": "client",
                                             "share": 0.25, "code": 4200, "reason": "share"})
            assert r == {"applied": 10}, r
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                closed = [c.close_code for c in clients if c.close_code is not None]
                if len(closed) >= 11:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # and no more than those
            closed = [c.close_code for c in clients if c.close_code is not None]
            assert sorted(closed) == [4100] + [4200] * 10, closed
        finally:
            await close_all(clients)
        await refill(srv.port, 40)

    run_async(main(), timeout=90)


# ---------------------------------------------------------------------------- reset

def test_reset_sends_a_tcp_rst_without_a_close_frame(server_factory):
    srv = start(server_factory)

    async def main():
        ws = await ws_connect(srv.port, "r1")
        raw = socket.create_connection((HOST, srv.port), timeout=5)
        try:
            # A raw socket too: its recv() must fail with a reset, not read a FIN.
            from conftest import upgrade_request
            req, _ = upgrade_request(srv.port, extra_headers=[("X-User-Id", "r2")])
            raw.sendall(req)
            head = raw.recv(4096)
            assert head.startswith(b"HTTP/1.1 101"), head
            r = await call(fault, srv.port, {"action": "reset", "target": "client", "user": "r2"})
            assert r == {"applied": 1}, r
            raw.settimeout(5)
            with pytest.raises(ConnectionResetError):
                for _ in range(100):
                    if not raw.recv(4096):
                        raise AssertionError("a FIN, not a reset")
            r = await call(fault, srv.port, {"action": "reset", "target": "client", "user": "r1"})
            assert r == {"applied": 1}, r
            with pytest.raises(websockets.ConnectionClosedError):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1006, ws.close_code  # no close frame came
            m = await call(wait_metric, srv.port,
                           lambda m: m.get("wsvisor_connections_closed_total", 0.0,
                                           reason="admin") == 2, 10, what="2 closes (admin)")
            assert faults_total(m, "reset") == 2, m.text
        finally:
            raw.close()
            await ws.close()
        await refill(srv.port, 20)

    run_async(main(), timeout=90)


# --------------------------------------------------------------------------- zombie

def test_zombie_goes_silent_and_the_heartbeat_frees_its_slot(server_factory):
    srv = start(server_factory, "janitor.ping_interval=1s", "janitor.pong_timeout=2s",
                "janitor.sweep_interval=250ms", "limits.max_per_user=1")

    async def main():
        ws = await ws_connect(srv.port, "z")
        healthy = await ws_connect(srv.port, "h")
        try:
            await ws.send("alive")
            assert await asyncio.wait_for(ws.recv(), 5) == "alive"
            r = await call(fault, srv.port, {"action": "zombie", "target": "client", "user": "z"})
            assert r == {"applied": 1}, r
            t0 = time.monotonic()
            await ws.send("anyone?")
            # Silence: no echo and no ping (the client answers pings itself). The heartbeat
            # cannot close it before ping_interval + pong_timeout (3 s) from the last echo.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 1.0)
            # Freed by the heartbeat: within ping_interval + pong_timeout + sweeps.
            m = await call(wait_metric, srv.port,
                           lambda m: m.get("wsvisor_connections_closed_total", 0.0,
                                           reason="zombie") == 1, 8, what="the zombie closed")
            freed = time.monotonic() - t0
            assert freed <= 6.0, freed
            assert faults_total(m, "zombie") == 1, m.text
            # Its user (max_per_user 1) may connect again; the healthy one never noticed.
            again = await ws_connect(srv.port, "z")
            await again.send("back")
            assert await asyncio.wait_for(again.recv(), 5) == "back"
            await healthy.send("ok")
            assert await asyncio.wait_for(healthy.recv(), 5) == "ok"
            await again.close()
        finally:
            await close_all([ws, healthy])
        await refill(srv.port, 20)

    run_async(main(), timeout=90)


# -------------------------------------------------------------------------- restart

def test_restart_closes_every_client_1012_paced_and_all_get_back_in(server_factory):
    n, users, spread = 60, 6, 3.0
    srv = start(server_factory, f"limits.max_per_user={n // users}",
                f"limits.max_connections={n}")

    async def main():
        clients = await open_many(srv.port, [f"u{i % users}" for i in range(n)])
        closes, back, refused = [], [], []

        async def follow(i, ws):
            code, reason = await wait_close(ws, 30)
            closes.append((time.monotonic(), code, reason))
            # A well-behaved client: a short jittered pause, then back.
            await asyncio.sleep(0.05 + (i % 10) * 0.01)
            for _ in range(20):
                try:
                    again = await ws_connect(srv.port, f"u{i % users}")
                except websockets.InvalidStatusCode as e:
                    refused.append(e.status_code)
                    await asyncio.sleep(0.2)
                    continue
                await again.send("back")
                assert await asyncio.wait_for(again.recv(), 10) == "back"
                back.append(again)
                return

        try:
            followers = [asyncio.ensure_future(follow(i, ws)) for i, ws in enumerate(clients)]
            t0 = time.monotonic()
            r = await call(fault, srv.port, {"action": "restart", "target": "client",
                                             "spread": f"{int(spread * 1000)}ms"})
            assert r == {"applied": n}, r
            await asyncio.sleep(spread / 2)
            ready = await call(http_get, srv.port, "/health/ready")
            assert ready.status == 200, ready  # readiness is untouched
            await asyncio.wait_for(asyncio.gather(*followers), 60)
            assert {(code, reason) for _, code, reason in closes} == {(1012, "service restart")}
            times = sorted(t - t0 for t, _, _ in closes)
            assert len(times) == n
            # Paced over the spread: not all at once, and none long after it.
            assert times[-1] - times[0] >= spread * 0.7, times
            assert times[n // 2] - times[0] >= spread * 0.3, times
            assert times[-1] <= spread + 2.0, times
            assert refused == [], refused  # none refused for a cap
            assert len(back) == n
            m = await call(scrape, srv.port)
            assert faults_total(m, "restart") == n, m.text
            assert m.get("wsvisor_admissions_rejected_total", 0.0, reason="user_limit") == 0
        finally:
            await close_all(clients + back)
        await refill(srv.port, n)

    run_async(main(), timeout=120)
