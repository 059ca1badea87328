"""The v1 reliability debts of issue 11, each shown against the real binary with real
clients (python3-websockets, raw sockets for what real clients will not do).

H1  slots reserved for a shard that dies are released (CONTRACT section 4: "the slot is
    taken at admission"; section 8: a crashed shard's connections free their slots).
H2  a user at its cap held by zombies is admitted within admission_timeout.
M1  refused handshakes get their HTTP answer (400, or 426 with Sec-WebSocket-Version).
M2  each listener has its own handshake budget; /health/* answers under a slowloris flood.
M3  every X-Forwarded-For line counts.
L1  a first frame sent with the upgrade request is read.
L2  a janitor crash during a drain does not forget the drain.
L3  values from outside are escaped in the log.
L4  numbers from outside are range-checked.
L5  an idle keep-alive connection still counts against max_pending_handshakes.
L6  the user header is believed only from trusted peers.
... and close codes the RFC forbids, JWT nbf, the Bearer scheme's case, a message larger
than send_queue_bytes, and replies to messages read before a protocol error or a close.

Every test that stresses the server ends by filling every slot again.
"""

import asyncio
import base64
import json
import os
import socket
import struct
import time

import pytest
import websockets

from admin_helpers import ADMIN_ENV, admin, admin_json, call, connections, fault, restarts
from admission_helpers import attempt, attempt_async, check_admitted, check_refusal, make_jwt, \
    now_s
from conftest import (HOST, OP_CLOSE, OP_TEXT, RawWs, encode_frame, free_port, http_get,
                      raw_exchange,
                      run_async, scrape, upgrade_request, wait_closed_by_peer, wait_metric,
                      wait_until)

SECRET = "reliability-secret-0123456789abcdef"  # 32+ bytes
JWT_ENV = {"WSVISOR_AUTH_JWT_SECRET": SECRET}
TWO_SHARDS = ("server.io_threads=2", "server.actor_threads=2")


def user_header(user):
    return (("X-User-Id", user),)


def fill_user(port, user, cap):
    """Opens `cap` healthy connections for `user` (python websockets clients, which answer
    the server's pings, so no sweep may evict them), each must be admitted; then one
    more must be refused 429 user_limit: the guard's count of that user is the truth.
    Everything is closed again before it returns."""
    run_async(_fill(port, [user] * cap, user, "user_limit"), timeout=60)


def fill_server(port, users, refused_reason="server_full"):
    """The same for the whole server: one healthy client per entry of `users`, then one
    more (a new user) refused with `refused_reason`."""
    run_async(_fill(port, users, "one-too-many", refused_reason), timeout=60)


async def _fill(port, users, extra_user, extra_reason):
    clients = []
    try:
        for i, u in enumerate(users):
            try:
                clients.append(await websockets.connect(
                    f"ws://{HOST}:{port}/ws", extra_headers=user_header(u), ping_interval=None,
                    open_timeout=10))
            except websockets.InvalidStatusCode as e:
                raise AssertionError(f"{u}: connection {i + 1} of {len(users)} refused "
                                     f"{e.status_code}") from None
        a = await attempt_async(port, headers=user_header(extra_user), timeout=5)
        a.close()
        check_refusal(a, extra_reason, where=f"one past the {len(users)} held")
    finally:
        for c in clients:
            await c.close()
    wait_metric(port, lambda m: m["wsvisor_connections"] == 0, 20, what="gauge back to 0")


def close_attempts(held):
    for a in held:
        a.close()


# ------------------------------------------------------------------------------ H1

def test_h1_shard_crashes_during_a_spike_leak_no_slot(server_factory):
    cap_total, per_user = 40, 5
    srv = server_factory("auth.mode=header", "faults.enabled=true", *TWO_SHARDS,
                         f"limits.max_connections={cap_total}", f"limits.max_per_user={per_user}",
                         "limits.accept_rate=100000", "limits.accept_burst=100000",
                         env=ADMIN_ENV)
    port = srv.port

    async def spike_with_crashes():
        async def one(i):
            try:
                a = await attempt_async(port, headers=user_header(f"s{i % 10}"), timeout=10)
            except AssertionError:
                return None  # its shard died under it mid-handshake: fine, it holds nothing
            await asyncio.sleep(0.05)
            a.close()
            return a.status

        async def crasher():
            for k in range(4):  # within supervision.service_restarts (5 in 10 s)
                await call(fault, port, {"action": "crash", "target": "shard", "index": k % 2})
                await asyncio.sleep(0.04)

        results = await asyncio.gather(crasher(), *(one(i) for i in range(300)))
        return [r for r in results[1:] if r is not None]

    statuses = run_async(spike_with_crashes(), timeout=90)
    assert statuses, "no upgrade got an answer"
    assert set(statuses) <= {101, 429, 503}, sorted(set(statuses))
    wait_metric(port, lambda m: m["wsvisor_connections"] == 0, 20, what="gauge back to 0")
    assert restarts(scrape(port), "shard") >= 2

    # Every slot can be filled again: a fresh user up to its cap and not beyond, then the
    # whole server up to max_connections and not beyond.
    fill_user(port, "fresh", per_user)
    fill_server(port, [f"fill{i // per_user}" for i in range(cap_total)])


# ------------------------------------------------------------------------------ H2

@pytest.mark.parametrize("zombies", [16, 17, 20])
def test_h2_user_at_cap_held_by_zombies_is_admitted(server_factory, zombies):
    # Default cap (20) and timings: probe_timeout 500ms, admission_timeout 1s.
    srv = server_factory("auth.mode=header")
    port = srv.port
    healthy = 20 - zombies
    held = []
    try:
        # Zombies: raw sockets that never read and never answer a ping.
        for _ in range(zombies):
            held.append(RawWs(port, extra_headers=user_header("seed")))
        clients = []

        async def main():
            for _ in range(healthy):
                clients.append(await websockets.connect(
                    f"ws://{HOST}:{port}/ws", extra_headers=user_header("seed"),
                    ping_interval=None))
            t0 = time.monotonic()
            a = await attempt_async(port, headers=user_header("seed"), timeout=5)
            elapsed = time.monotonic() - t0
            a.close()
            for c in clients:
                await c.close()
            return a, elapsed

        a, elapsed = run_async(main(), timeout=30)
        check_admitted(a, where=f"21st upgrade with {zombies} zombies")
        assert elapsed < 1.0, f"admitted after {elapsed:.2f}s, past admission_timeout"
        m = scrape(port)
        assert m.get("wsvisor_evictions_total", reason="emergency") >= 1, m.text
    finally:
        for ws in held:
            ws.close()
    wait_metric(port, lambda m: m["wsvisor_connections"] == 0, 20, what="gauge back to 0")
    fill_user(port, "seed", 20)


# ------------------------------------------------------------------------------ M1

def raw_answer(port, request, timeout=5.0):
    """Sends `request` and reads until the server closes: (status, headers, body)."""
    data, closed = raw_exchange(port, request, timeout)
    assert closed, f"the server did not close; got {data!r}"
    assert data, "0 bytes: the refused handshake got no HTTP answer"
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def handshake(port, key="dGhlIHNhbXBsZSBub25jZQ==", version="13", drop=()):
    lines = [f"GET /ws HTTP/1.1", f"Host: {HOST}:{port}", "Upgrade: websocket",
             "Connection: Upgrade"]
    if key is not None and "key" not in drop:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None and "version" not in drop:
        lines.append(f"Sec-WebSocket-Version: {version}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("case,request_kw,status", [
    ("missing key", {"drop": ("key",)}, 400),
    ("short key", {"key": "abc"}, 400),
    ("key of 17 bytes", {"key": base64.b64encode(b"x" * 17).decode()}, 400),
    ("version 8", {"version": "8"}, 426),
    ("version 14", {"version": "14"}, 426),
    ("missing version", {"drop": ("version",)}, 400),
])
def test_m1_refused_handshake_gets_its_http_answer(server_factory, case, request_kw, status):
    srv = server_factory()
    got, headers, body = raw_answer(srv.port, handshake(srv.port, **request_kw))
    assert got == status, (case, got, headers, body)
    assert json.loads(body)["error"], body
    assert headers.get("connection") == "close", headers
    if "version" in case:
        assert headers.get("sec-websocket-version") == "13", headers
    # No slot was taken, and a good handshake still works.
    assert scrape(srv.port)["wsvisor_connections"] == 0
    ws = RawWs(srv.port)
    ws.send_frame(OP_TEXT, b"ok")
    assert ws.read_frame()[2] == b"ok"
    ws.close()


# ------------------------------------------------------------------------------ M2

def test_m2_slowloris_on_the_main_port_locks_out_neither_admin_nor_health(server_factory):
    admin_port = free_port()
    limit = 20
    srv = server_factory(f"limits.max_pending_handshakes={limit}",
                         "server.handshake_timeout=30s", f"admin.listen=127.0.0.1:{admin_port}",
                         env=ADMIN_ENV)
    flood = []
    try:
        for _ in range(limit + 10):
            s = socket.create_connection((HOST, srv.port), timeout=5)
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
            flood.append(s)
        time.sleep(0.2)
        # The admin listener has a budget of its own.
        assert http_get(admin_port, "/metrics").status == 200
        assert http_get(admin_port, "/health/live").status == 200
        # Health probes on the main port still answer, past the full budget.
        for path in ("/health/live", "/health/ready", "/health"):
            r = http_get(srv.port, path)
            assert r.status == 200, (path, r)
        # Anything else past the budget is closed without an answer, counted once.
        with socket.create_connection((HOST, srv.port), timeout=5) as s:
            s.sendall(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
            assert wait_closed_by_peer(s, timeout=3) is not None
            s.settimeout(0.1)
        m = scrape(admin_port)
        assert m.get("wsvisor_admissions_rejected_total", reason="handshake_limit") >= 1, m.text
    finally:
        for s in flood:
            s.close()
    # The budget comes back when the flood goes.
    wait_until(lambda: attempt(srv.port).status == 101, 10, what="upgrades admitted again")


# ------------------------------------------------------------------------------ M3

def test_m3_every_x_forwarded_for_line_counts(server_factory):
    srv = server_factory("server.trusted_proxies=[\"127.0.0.1/32\"]", "limits.max_per_ip=2",
                         env=ADMIN_ENV)
    held = []
    try:
        # The client forges the first line; the trusted proxy appends the real address.
        for forged in ("1.1.1.1", "2.2.2.2"):
            a = attempt(srv.port, headers=(("X-Forwarded-For", forged),
                                           ("X-Forwarded-For", "198.51.100.7")))
            check_admitted(a, where=f"forged {forged}")
            held.append(a)
        assert {c["ip"] for c in connections(srv.port)} == {"198.51.100.7"}
        third = attempt(srv.port, headers=(("X-Forwarded-For", "3.3.3.3"),
                                           ("X-Forwarded-For", "198.51.100.7")))
        check_refusal(third, "ip_limit")
    finally:
        close_attempts(held)


# ------------------------------------------------------------------------------ L1

@pytest.mark.parametrize("frames", [1, 5])
def test_l1_frames_sent_with_the_upgrade_request_are_read(server_factory, frames):
    srv = server_factory()
    req, _ = upgrade_request(srv.port)
    payloads = [f"first-{i}".encode() for i in range(frames)]
    with socket.create_connection((HOST, srv.port), timeout=5) as s:
        s.sendall(req + b"".join(encode_frame(OP_TEXT, p) for p in payloads))
        data = b""
        deadline = time.monotonic() + 5
        while data.count(b"first-") < frames and time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 101"), data[:200]
    for p in payloads:
        assert p in data, (p, data)


# ------------------------------------------------------------------------------ L2

def test_l2_janitor_crash_during_a_drain_keeps_every_1001(server_factory):
    srv = server_factory("faults.enabled=true", "shutdown.drain_spread=2s",
                         "shutdown.drain_timeout=8s", env=ADMIN_ENV, expected_exit=0)
    port = srv.port
    count = 150

    async def main():
        clients = [await websockets.connect(f"ws://{HOST}:{port}/ws", ping_interval=None)
                   for _ in range(count)]
        r = await call(admin, port, "POST", "/admin/drain")
        assert r.status == 200, r
        await asyncio.sleep(0.3)  # part of the paced closes have gone out
        await call(fault, port, {"action": "crash", "target": "janitor"})

        async def close_of(ws):
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed:
                pass
            return ws.close_code

        return await asyncio.gather(*(close_of(ws) for ws in clients))

    codes = run_async(main(), timeout=40)
    assert codes.count(1001) == count, sorted(set(codes))
    assert srv.wait_exit(15) == 0


# ------------------------------------------------------------------------------ L3

def test_l3_a_newline_in_a_user_id_cannot_forge_a_log_line(server_factory):
    srv = server_factory("auth.mode=jwt", env=JWT_ENV)
    forged = "mallory\n2026-01-01T00:00:00.000Z info connection closed id=1 user=admin"
    token = make_jwt({"sub": forged, "exp": now_s() + 600}, SECRET)
    a = attempt(srv.port, headers=(("Authorization", f"Bearer {token}"),))
    check_admitted(a)
    a.close()
    wait_metric(srv.port, lambda m: m["wsvisor_connections"] == 0, 10, what="closed")
    wait_until(lambda: "mallory" in srv.log(), 5, what="the close line")
    lines = srv.log().splitlines()
    assert not [l for l in lines if l.startswith("2026-01-01T00:00:00.000Z")], lines[-10:]
    assert any("mallory\\n2026" in l for l in lines), lines[-10:]


# ------------------------------------------------------------------------------ L4

@pytest.mark.parametrize("body", [
    {"action": "crash", "target": "shard", "index": 4294967296},
    {"action": "crash", "target": "shard", "index": 2},
    {"action": "crash", "target": "shard", "index": -1},
    {"action": "crash", "target": "shard", "index": 18446744073709551615},
    {"action": "crash", "target": "shard", "index": 0.5},
    {"action": "delay", "target": "connection", "user": "u", "ms": 4294967296},
    {"action": "crash", "target": "connection", "id": -3},
])
def test_l4_numbers_from_outside_are_range_checked(server_factory, body):
    srv = server_factory("faults.enabled=true", *TWO_SHARDS, env=ADMIN_ENV)
    r = admin(srv.port, "POST", "/admin/faults", body=body)
    assert r.status == 400, r
    assert r.json()["error"], r
    time.sleep(0.2)
    m = scrape(srv.port)
    assert restarts(m, "shard") == 0, m.text


# ------------------------------------------------------------------------------ L5

def test_l5_idle_keep_alive_connections_count_against_the_budget(server_factory):
    limit = 5
    srv = server_factory(f"limits.max_pending_handshakes={limit}", "server.handshake_timeout=30s")
    idle = []
    try:
        for _ in range(limit):
            s = socket.create_connection((HOST, srv.port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(65536)
            assert data.startswith(b"HTTP/1.1 200"), data[:100]
            idle.append(s)  # kept open, idle, keep-alive
        # One more connection is over the budget: only a health probe is answered.
        with socket.create_connection((HOST, srv.port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert wait_closed_by_peer(s, timeout=3) is not None
    finally:
        for s in idle:
            s.close()
    wait_until(lambda: http_get(srv.port, "/metrics").status == 200, 5, what="room again")


# ------------------------------------------------------------------------------ L6

def test_l6_user_header_believed_only_from_trusted_peers(server_factory):
    # The tests' peer is 127.0.0.1; with 10.0.0.0/8 as the only trusted proxies it is not
    # one, so its X-User-Id proves nothing.
    srv = server_factory("auth.mode=header", "server.trusted_proxies=[\"10.0.0.0/8\"]")
    check_refusal(attempt(srv.port, headers=user_header("alice")), "unauthorized")
    assert "only from peers in server.trusted_proxies" in srv.log(), srv.log()[-2000:]
    # With no trusted proxies, loopback (a proxy on the same host) is believed.
    local = server_factory("auth.mode=header")
    a = attempt(local.port, headers=user_header("alice"))
    check_admitted(a)
    a.close()
    assert "only from loopback peers" in local.log(), local.log()[-2000:]


# ---------------------------------------------------------- JWT nbf and Bearer scheme

def test_jwt_nbf_in_the_future_is_refused_and_bearer_is_case_insensitive(server_factory):
    srv = server_factory("auth.mode=jwt", env=JWT_ENV)
    later = make_jwt({"sub": "alice", "exp": now_s() + 600, "nbf": now_s() + 300}, SECRET)
    check_refusal(attempt(srv.port, headers=(("Authorization", f"Bearer {later}"),)),
                  "unauthorized")
    good = make_jwt({"sub": "alice", "exp": now_s() + 600, "nbf": now_s() - 5}, SECRET)
    for scheme in ("Bearer", "bearer", "BEARER"):
        a = attempt(srv.port, headers=(("Authorization", f"{scheme} {good}"),))
        check_admitted(a, where=scheme)
        a.close()


# ------------------------------------------------------- close codes the RFC forbids

@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_a_close_with_a_forbidden_code_fails_with_1002(server_factory, code):
    srv = server_factory()
    ws = RawWs(srv.port)
    ws.send_frame(OP_CLOSE, struct.pack("!H", code) + b"bye")
    got, _ = ws.read_close()
    assert got == 1002, f"close {code} answered with {got}"
    ws.close()
    # Waited for as one condition: a scrape reads its series one after the other, so a
    # gauge of 0 can come with a counter read just before the close was counted.
    wait_metric(srv.port, lambda m: m["wsvisor_connections"] == 0 and m.get(
        "wsvisor_connections_closed_total", reason="protocol_error") == 1, 10,
        what="the close counted as protocol_error")


@pytest.mark.parametrize("code", [1000, 1001, 3000, 4999])
def test_a_close_with_an_allowed_code_is_echoed(server_factory, code):
    srv = server_factory()
    ws = RawWs(srv.port)
    ws.send_frame(OP_CLOSE, struct.pack("!H", code))
    got, _ = ws.read_close()
    assert got == code
    ws.close()


# ------------------------------------------- one message larger than send_queue_bytes

def test_a_message_larger_than_send_queue_bytes_is_echoed(server_factory):
    srv = server_factory("server.max_message_bytes=4194304", "limits.send_queue_bytes=1048576")

    async def main():
        async with websockets.connect(f"ws://{HOST}:{srv.port}/ws", max_size=1 << 23,
                                      ping_interval=None) as ws:
            for size in (1 << 20, 3 << 20, (4 << 20) - 1):
                payload = os.urandom(size)
                await ws.send(payload)
                assert await asyncio.wait_for(ws.recv(), 20) == payload, size

    run_async(main(), timeout=60)
    m = scrape(srv.port)
    assert m.get("wsvisor_evictions_total", reason="slow_consumer") == 0, m.text


# --------------------------------- replies to what was read before the peer's input ended

def test_the_echo_of_a_message_before_a_protocol_error_is_sent_before_the_close(server_factory):
    srv = server_factory()
    for attempt_no in range(30):
        ws = RawWs(srv.port)
        # A whole message, then a continuation frame with nothing to continue: all in one
        # write, as Autobahn 5.15 sends it.
        ws.sock.sendall(encode_frame(OP_TEXT, b"before the error") +
                        encode_frame(0x0, b"nothing to continue", fin=False))
        fin, opcode, payload = ws.read_frame()
        assert (opcode, payload) == (OP_TEXT, b"before the error"), (attempt_no, opcode, payload)
        code, _ = ws.read_close()
        assert code == 1002, (attempt_no, code)
        ws.close()


def test_the_echo_of_a_message_before_the_peers_close_is_sent_before_the_close(server_factory):
    srv = server_factory()
    for attempt_no in range(30):
        ws = RawWs(srv.port)
        ws.sock.sendall(encode_frame(OP_TEXT, b"last words") +
                        encode_frame(OP_CLOSE, struct.pack("!H", 1000)))
        fin, opcode, payload = ws.read_frame()
        assert (opcode, payload) == (OP_TEXT, b"last words"), (attempt_no, opcode, payload)
        code, _ = ws.read_close()
        assert code == 1000, (attempt_no, code)
        ws.close()
    wait_metric(srv.port, lambda m: m["wsvisor_connections"] == 0, 10, what="all closed")
