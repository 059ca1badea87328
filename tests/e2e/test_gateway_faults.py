"""Faults with target "upstream" in gateway mode (CONTRACT 8 and 11.1): the upstream
service in the supervision tree, held responses, a crash of the service with a call in
flight, and a crash of one connection's upstream work (a connection restart, the socket
kept). The real example backend; python3-websockets clients."""

import asyncio
import json
import time

import websockets

from admin_helpers import ADMIN_ENV, call, children, fault, restarts, tree
from conftest import HOST, run_async, scrape, wait_metric
from gateway_helpers import GATEWAY_ENV, api, backend, gateway_sets, session  # noqa: F401

ENV = {**GATEWAY_ENV, **ADMIN_ENV}


async def connect(srv, user):
    return await websockets.connect(f"ws://{HOST}:{srv.port}/ws", extra_headers=session(user),
                                    ping_interval=None, open_timeout=10)


async def round_trip(ws, text, timeout=10):
    start = time.monotonic()
    await ws.send(text)
    reply = await asyncio.wait_for(ws.recv(), timeout)
    return reply, time.monotonic() - start


def faulty_gateway(server_factory, backend, *extra):
    return server_factory(*gateway_sets(backend, events=False), "faults.enabled=true",
                          *extra, env=ENV)


def test_the_upstream_service_is_in_the_tree_with_its_breaker(server_factory, backend):
    srv = faulty_gateway(server_factory, backend)
    upstream = children(tree(srv.port))["upstream"]
    assert upstream["breaker"] == "closed" and upstream["inflight"] == 0, upstream
    assert upstream["restarts"] == 0, upstream


def test_delay_holds_every_response_until_cleared(server_factory, backend):
    srv = faulty_gateway(server_factory, backend)

    async def main():
        ws = await connect(srv, "alice")
        fast = await round_trip(ws, "before")
        await call(fault, srv.port, {"action": "delay", "target": "upstream", "ms": 600})
        held = await round_trip(ws, "held")
        await call(fault, srv.port, {"action": "clear"})
        after = await round_trip(ws, "after")
        await ws.close()
        return fast, held, after

    fast, held, after = run_async(main(), timeout=60)
    assert held[0] == "echo: held" and held[1] >= 0.6, held
    assert fast[0] == "echo: before" and after[0] == "echo: after"
    assert after[1] < 0.6, after


def test_a_crash_of_the_service_answers_the_call_in_flight_and_it_restarts(server_factory,
                                                                          backend):
    srv = faulty_gateway(server_factory, backend, "upstream.retries=0")
    backend.configure(message_delay_ms=800)

    async def main():
        ws = await connect(srv, "alice")
        await ws.send("in flight")
        await asyncio.sleep(0.3)  # the call is at the backend now
        await call(fault, srv.port, {"action": "crash", "target": "upstream"})
        first = await asyncio.wait_for(ws.recv(), 10)
        backend.configure(message_delay_ms=0)
        second, _ = await round_trip(ws, "after the crash")
        still_open = ws.open
        await ws.close()
        return first, second, still_open

    first, second, still_open = run_async(main(), timeout=60)
    # Answered either way CONTRACT 11.1 allows: resent (the reply) or upstream_unavailable.
    assert first == "echo: in flight" or json.loads(first)["error"] == "upstream_unavailable", \
        first
    assert second == "echo: after the crash" and still_open
    m = wait_metric(srv.port, lambda m: m["wsvisor_connections"] == 0, 10, what="gauge 0")
    assert restarts(m, "upstream") == 1, m.text
    assert restarts(m, "connection") == 0, m.text
    assert children(tree(srv.port))["upstream"]["restarts"] == 1


def test_a_crash_of_one_connections_upstream_work_is_a_connection_restart(server_factory,
                                                                          backend):
    srv = faulty_gateway(server_factory, backend)

    async def main():
        victim = await connect(srv, "victim")
        bystander = await connect(srv, "bystander")
        await call(fault, srv.port, {"action": "crash", "target": "upstream", "user": "victim"})
        replies = []
        for ws, text in ((victim, "v1"), (bystander, "b1"), (victim, "v2")):
            replies.append((await round_trip(ws, text))[0])
        opened = (victim.open, bystander.open)
        await victim.close()
        await bystander.close()
        return replies, opened

    replies, opened = run_async(main(), timeout=60)
    # The poisoned connection's first message crashes its upstream work: restarted, the
    # socket kept, the message answered (resent) or an error frame; then normal service.
    assert replies[1] == "echo: b1" and replies[2] == "echo: v2", replies
    assert replies[0] == "echo: v1" or json.loads(replies[0])["error"] == \
        "upstream_unavailable", replies
    assert opened == (True, True)
    m = wait_metric(srv.port, lambda m: m["wsvisor_connections"] == 0, 10, what="gauge 0")
    assert restarts(m, "connection") == 1, m.text
    assert restarts(m, "upstream") == 0, m.text
    assert scrape(srv.port).get("wsvisor_connections_closed_total", reason="restart_budget") == 0


def test_faults_toward_clients_hold_and_drop_api_sends_in_gateway_mode(server_factory, backend):
    """Target "client" in gateway mode (CONTRACT 8): /api/send's deliveries are outbound
    messages like any other: held by latency (the connection chosen by its string id),
    dropped by drop, and a close fault's code reaches the browser verbatim."""
    srv = faulty_gateway(server_factory, backend)

    async def main():
        alice = await connect(srv, "alice")
        try:
            listed = await call(lambda: api(srv.port, "GET", "/api/connections").json())
            connection = next(c["connection"] for c in listed if c["user"] == "alice")
            r = await call(fault, srv.port, {"action": "latency", "target": "client",
                                             "connection": connection, "ms": 400})
            assert r == {"applied": 1}, r
            start = time.monotonic()
            sent = await call(api, srv.port, "POST", "/api/send", {"user": "alice", "data": "late"})
            assert sent.json() == {"delivered": 1}, sent
            assert await asyncio.wait_for(alice.recv(), 5) == "late"
            assert time.monotonic() - start >= 0.38

            await call(fault, srv.port, {"action": "clear"})
            r = await call(fault, srv.port, {"action": "drop", "target": "client",
                                             "user": "alice", "ratio": 1})
            assert r == {"applied": 1}, r
            for n in range(5):
                await call(api, srv.port, "POST", "/api/send", {"user": "alice", "data": f"d{n}"})
            await call(wait_metric, srv.port,
                       lambda m: m["wsvisor_faults_dropped_total"] == 5, 5, what="5 drops")
            await call(fault, srv.port, {"action": "clear"})
            await call(api, srv.port, "POST", "/api/send", {"user": "alice", "data": "kept"})
            assert await asyncio.wait_for(alice.recv(), 5) == "kept"  # nothing before it

            r = await call(fault, srv.port, {"action": "close", "target": "client",
                                             "user": "alice", "code": 4500, "reason": "bye"})
            assert r == {"applied": 1}, r
            try:
                await asyncio.wait_for(alice.recv(), 5)
            except websockets.ConnectionClosed:
                pass
            assert (alice.close_code, alice.close_reason) == (4500, "bye")
        finally:
            await alice.close()
        await call(wait_metric, srv.port, lambda m: m["wsvisor_connections"] == 0, 10,
                   what="every slot released")

    run_async(main(), timeout=60)
