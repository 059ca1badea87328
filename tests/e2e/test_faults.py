"""Fault injection (CONTRACT section 8), supervision under it, and exit 1 when the root
supervisor gives up (sections 1 and 9)."""

import asyncio
import collections
import time

import websockets

from admin_helpers import (ADMIN_ENV, Fleet, admin, admin_json, call, children, close_all,
                           closed, connections, echo_once, fault, open_many, restarts,
                           shard_counts, tree, wait_close, wait_counts, ws_connect)
from conftest import run_async, scrape, wait_metric, wait_until

THREADS = ("server.io_threads=2", "server.actor_threads=2")
BASE = ("auth.mode=header", "faults.enabled=true", *THREADS)


def test_faults_404_when_disabled(server_factory):
    srv = server_factory("auth.mode=header", env=ADMIN_ENV)  # faults.enabled defaults to false
    for body in ({"action": "crash", "target": "janitor"}, {"action": "clear"}, None):
        r = admin(srv.port, "POST", "/admin/faults", body=body)
        assert r.status == 404, r
    assert admin(srv.port, "GET", "/admin/faults").status == 404
    m = scrape(srv.port)
    assert restarts(m, "janitor") == 0, m.text
    assert tree(srv.port)["restarts"] == 0


# ------------------------------------------------------------- connection crash


def test_crash_user_connections_under_load(server_factory):
    srv = server_factory(*BASE, env=ADMIN_ENV)
    port = srv.port
    others = [f"o{i % 20}" for i in range(200)]  # 20 users x 10
    victims = ["A"] * 8

    async def main():
        fleet = Fleet(pace=0.2)
        try:
            await fleet.add(port, others, prefix="o")
            a = await fleet.add(port, victims, prefix="A")
            fleet.mark("start")
            await fleet.progressed("start", 2, timeout=40)
            m0 = await call(scrape, port)
            a_conns = await call(connections, port, "A")
            assert len(a_conns) == len(victims), a_conns

            r = await call(fault, port, {"action": "crash", "target": "connection", "user": "A"})
            assert r == {"applied": len(victims)}, r
            await call(wait_metric, port,
                       lambda m: restarts(m, "connection") - restarts(m0, "connection")
                       >= len(victims), 10, what="connection restarts +8")
            # One more, by id.
            r = await call(fault, port, {"action": "crash", "target": "connection",
                                         "id": a_conns[0]["id"]})
            assert r == {"applied": 1}, r
            m1 = await call(wait_metric, port,
                            lambda m: restarts(m, "connection") - restarts(m0, "connection")
                            >= len(victims) + 1, 10, what="connection restarts +9")
            fleet.mark("after")
            await fleet.progressed("after", 3, timeout=40)
            after = await call(connections, port, "A")
            assert sorted(c["restarts"] for c in after) == [1] * (len(victims) - 1) + [2], after
            assert {c["id"] for c in after} == {c["id"] for c in a_conns}, after
        finally:
            await fleet.finish()
        errors = fleet.errors()
        assert not errors, errors[:10]
        closes = [(e.name, e.close) for e in fleet.echoers if e.close is not None]
        assert not closes, f"{len(closes)} clients were disconnected: {closes[:10]}"
        lost = [(e.name, e.sent, e.received) for e in fleet.echoers if e.sent != e.received]
        assert not lost, f"messages lost: {lost[:10]}"
        total = sum(e.sent for e in fleet.echoers)
        assert all(e.received >= 3 for e in a), [(e.name, e.received) for e in a]
        assert restarts(m1, "connection") - restarts(m0, "connection") == len(victims) + 1, \
            m1.text
        return total

    total = run_async(main(), timeout=110)
    assert total > 1000
    wait_metric(port, lambda m: m["wsvisor_connections"] == 0, 15, what="gauge back to 0")


# ------------------------------------------------------------------------- poison


async def poison_until_closed(ws, n=10):
    """Sends up to n messages (each one crashes the actor) then waits for the close."""
    for i in range(n):
        try:
            await ws.send(f"poison-{i}")
        except websockets.ConnectionClosed:
            break
        await asyncio.sleep(0.01)
    return await wait_close(ws, 15)


def test_poison_user_restart_budget(server_factory):
    srv = server_factory(*BASE, "supervision.connection_restarts=3",
                         "supervision.connection_restart_period=60s", env=ADMIN_ENV)
    port = srv.port

    async def main():
        fleet = Fleet(pace=0.1)
        b_clients = []
        try:
            await fleet.add(port, [f"c{i % 5}" for i in range(20)], prefix="c")
            b_clients = await open_many(port, ["B"] * 5)
            for i, ws in enumerate(b_clients):
                await echo_once(ws, f"b{i}")
            fleet.mark("start")
            await fleet.progressed("start", 1)
            m0 = await call(wait_metric, port, lambda m: m["wsvisor_connections"] == 25, 10,
                            what="25 connections")

            r = await call(fault, port, {"action": "poison", "target": "connection",
                                         "user": "B"})
            assert r == {"applied": 5}, r
            codes = await asyncio.gather(*(poison_until_closed(ws) for ws in b_clients))
            assert codes == [(1011, "internal error")] * 5, codes
            m1 = await call(wait_metric, port, lambda m: m["wsvisor_connections"] == 20, 10,
                            what="the gauge down by exactly B's 5")
            assert closed(m1, "restart_budget") - closed(m0, "restart_budget") == 5, m1.text
            assert restarts(m1, "connection") - restarts(m0, "connection") >= 5 * 4, m1.text
            assert await call(connections, port, "B") == []

            # Standing: a new connection of B is admitted, then poisoned as well.
            async with ws_connect(port, "B") as late:
                assert await poison_until_closed(late) == (1011, "internal error")
            # A connection of B opened under poison but within its budget, then cleared.
            survivor = await ws_connect(port, "B")
            b_clients.append(survivor)
            await survivor.send("one crash")
            await call(wait_until, lambda: [c["restarts"] for c in connections(port, "B")]
                       == [1], 10, what="B's survivor to have crashed once")

            r = await call(fault, port, {"action": "clear"})
            assert set(r) == {"applied"}, r
            await echo_once(survivor, "healed")
            async with ws_connect(port, "B") as fresh:
                for i in range(5):
                    await echo_once(fresh, f"fresh-{i}")
            fleet.mark("end")
            await fleet.progressed("end", 2)
            m2 = await call(scrape, port)
            assert closed(m2, "restart_budget") - closed(m0, "restart_budget") == 6, m2.text
        finally:
            await fleet.finish()
            await close_all(b_clients)
        assert not fleet.errors(), fleet.errors()[:10]
        assert not [e.close for e in fleet.echoers if e.close], "other users were disconnected"
        assert all(e.sent == e.received for e in fleet.echoers)

    run_async(main(), timeout=100)
    wait_metric(port, lambda m: m["wsvisor_connections"] == 0, 15, what="gauge back to 0")


# -------------------------------------------------------------------------- delay


def test_delay_user_messages(server_factory):
    srv = server_factory(*BASE, env=ADMIN_ENV)
    port = srv.port

    async def rtt(ws, msg):
        t0 = time.monotonic()
        await echo_once(ws, msg)
        return time.monotonic() - t0

    async def main():
        c = await open_many(port, ["C", "C"])
        d = await open_many(port, ["D"])
        try:
            for ws in c + d:
                await echo_once(ws, "warm")
            r = await call(fault, port, {"action": "delay", "target": "connection",
                                         "user": "C", "ms": 200})
            assert r == {"applied": 2}, r
            times = [await rtt(ws, f"slow{i}") for ws in c for i in range(3)]
            assert min(times) >= 0.2, times
            async with ws_connect(port, "C") as late:  # standing: new connections too
                t = [await rtt(late, f"late{i}") for i in range(2)]
                assert min(t) >= 0.2, t
            r = await call(fault, port, {"action": "clear"})
            assert set(r) == {"applied"}, r
            # Bounded: at least one quick echo among a few once cleared.
            fast = []
            for i in range(10):
                fast.append(await rtt(c[i % 2], f"fast{i}"))
                if fast[-1] < 0.2:
                    break
            assert min(fast) < 0.2, fast
        finally:
            await close_all(c + d)

    run_async(main(), timeout=60)


# ---------------------------------------------------------------- service crashes


def test_crash_services_under_load(server_factory):
    cap = 12
    srv = server_factory(*BASE, f"limits.max_per_user={cap}", env=ADMIN_ENV)
    port = srv.port
    users = [f"u{i % 30}" for i in range(300)]  # 30 users x 10

    async def user_can_fill_to_cap(user, fleet, open_count):
        """Opens cap - open_count connections for user (all must be admitted); one more
        must be refused 429 user_limit: the guard's count equals reality."""
        new = await fleet.add(port, [user] * (cap - open_count), prefix="fill")
        try:
            await ws_connect(port, user, open_timeout=10)
            raise AssertionError(f"{user} got connection {cap + 1} past max_per_user={cap}")
        except websockets.InvalidStatusCode as e:
            assert e.status_code == 429, e
        return new

    def open_of(fleet, user):
        return sum(1 for e in fleet.echoers if e.user == user and e.open)

    async def counts_agree(fleet):
        n = len(fleet.open_echoers())
        await call(wait_counts, port, n)
        return n

    async def main():
        fleet = Fleet(pace=0.3)
        try:
            await fleet.add(port, users, prefix="u")
            fleet.mark("start")
            await fleet.progressed("start", 1, timeout=40)
            m0 = await call(scrape, port)
            t0 = await call(tree, port)
            assert all(c["restarts"] == 0 for c in t0["children"]), t0

            # 1. limit_guard
            assert await call(fault, port, {"action": "crash", "target": "limit_guard"}) == {
                "applied": 1}
            await call(wait_metric, port, lambda m: restarts(m, "limit_guard") == 1, 10,
                       what="limit_guard restarted")
            await call(wait_until, lambda: children(tree(port))["limit_guard"]["restarts"] == 1,
                       10, what="/admin/tree limit_guard restarts == 1")
            fleet.mark("guard")
            await fleet.progressed("guard", 2, timeout=40)
            await user_can_fill_to_cap("u0", fleet, open_of(fleet, "u0"))
            await counts_agree(fleet)

            # 2. janitor
            assert await call(fault, port, {"action": "crash", "target": "janitor"}) == {
                "applied": 1}
            await call(wait_metric, port, lambda m: restarts(m, "janitor") == 1, 10,
                       what="janitor restarted")
            await call(wait_until, lambda: children(tree(port))["janitor"]["restarts"] == 1,
                       10, what="/admin/tree janitor restarts == 1")
            r = await call(admin_json, port, "POST", "/admin/sweep?level=conservative")
            assert r["evicted"] == {"dead": 0, "zombie": 0, "idle": 0, "healthy": 0}, r
            fleet.mark("janitor")
            await fleet.progressed("janitor", 2, timeout=40)
            await fleet.add(port, ["newcomer"] * 5, prefix="n")
            await counts_agree(fleet)
            assert not [e for e in fleet.echoers if e.close], "a client was lost before shard"

            # 3. shard-0: its connections close 1011, the others are untouched.
            before_open = len(fleet.open_echoers())
            t1 = await call(tree, port)
            n0 = shard_counts(t1)["shard-0"]
            assert sum(shard_counts(t1).values()) == before_open, t1
            assert n0 > 0, t1
            m1 = await call(scrape, port)
            assert await call(fault, port, {"action": "crash", "target": "shard",
                                            "index": 0}) == {"applied": 1}
            await call(wait_metric, port, lambda m: restarts(m, "shard") == 1, 10,
                       what="shard restarted")
            m2 = await call(wait_metric, port,
                            lambda m: m["wsvisor_connections"] == before_open - n0, 10,
                            what=f"gauge down by shard-0's {n0}")
            assert closed(m2, "shard_down") - closed(m1, "shard_down") == n0, m2.text
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if sum(1 for e in fleet.echoers if e.close) >= n0:
                    break
                await asyncio.sleep(0.05)
            lost = [e for e in fleet.echoers if e.close]
            assert len(lost) == n0, f"{len(lost)} clients closed, shard-0 had {n0}"
            codes = collections.Counter(e.close for e in lost)
            assert codes == {(1011, "internal error"): n0}, codes
            t2 = await call(tree, port)
            assert children(t2)["shard-0"]["restarts"] == 1, t2
            fleet.mark("shard")
            await fleet.progressed("shard", 2, timeout=40)
            # New connections are admitted (some on the new shard-0) and echo.
            await fleet.add(port, [f"late{i}" for i in range(10)], prefix="late")
            fleet.mark("late")
            await fleet.progressed("late", 1, timeout=40)
            # The slots of the closed connections are free again: a user that lost some
            # can fill back up to its cap, and no further.
            hit = collections.Counter(e.user for e in lost if e.user.startswith("u"))
            if hit:
                user = hit.most_common(1)[0][0]
                await user_can_fill_to_cap(user, fleet, open_of(fleet, user))
            n = await counts_agree(fleet)
            assert n == len(fleet.open_echoers())
            m3 = await call(scrape, port)
            for actor, want in (("limit_guard", 1), ("janitor", 1), ("shard", 1)):
                assert restarts(m3, actor) - restarts(m0, actor) == want, m3.text
            t3 = await call(tree, port)
            assert t3["restarts"] >= 3, t3
        finally:
            await fleet.finish()
        errors = fleet.errors()
        assert not errors, errors[:10]
        survivors = [e for e in fleet.echoers if e.close is None]
        lost_msgs = [(e.name, e.sent, e.received) for e in survivors if e.sent != e.received]
        assert not lost_msgs, lost_msgs[:10]

    run_async(main(), timeout=110)
    wait_metric(port, lambda m: m["wsvisor_connections"] == 0, 20, what="gauge back to 0")
    wait_counts(port, 0)

    # A gauge back at 0 is not enough: every user that lived through the faults can fill
    # its cap again, and not beyond.
    async def refill():
        fleet = Fleet(pace=0.3)
        try:
            for user in ("u0", "u1", "u2"):
                await user_can_fill_to_cap(user, fleet, 0)
        finally:
            await fleet.finish()

    run_async(refill(), timeout=60)
    wait_counts(port, 0)


# -------------------------------------------------------------- root gives up


def test_root_gives_up_exits_1(server_factory):
    srv = server_factory(*BASE, "supervision.service_restarts=1",
                         "supervision.service_restart_period=60s", env=ADMIN_ENV,
                         expected_exit=1)
    port = srv.port
    assert fault(port, {"action": "crash", "target": "janitor"}) == {"applied": 1}
    wait_metric(port, lambda m: restarts(m, "janitor") == 1, 10, what="janitor restarted once")
    wait_until(lambda: children(tree(port))["janitor"]["restarts"] == 1, 10,
               what="/admin/tree janitor restarts == 1")
    assert srv.alive()
    r = admin(port, "POST", "/admin/faults", body={"action": "crash", "target": "janitor"})
    assert r.status == 200, r
    code = srv.wait_exit(20)
    assert code == 1, f"exit code {code!r} (None: still running) after the second janitor " \
                      f"crash with service_restarts=1\n{srv.log()[-3000:]}"
