"""WebSocket echo behaviour (CONTRACT section 5) and its metrics (section 6)."""

import asyncio
import os
import random
import re

import pytest
import websockets

from conftest import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWs,
                      encode_frame, module_server, nofile_limit, run_async, scrape,
                      wait_metric)

MAX = 65536  # the default server.max_message_bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with module_server(tmp_path_factory) as srv:
        yield srv


def connect(srv, **kw):
    kw.setdefault("max_size", 4 * MAX)
    kw.setdefault("ping_interval", None)
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 5)
    return websockets.connect(srv.url(), **kw)


def quiescent(srv, timeout=10.0):
    """Waits until the server holds no connection; returns that scrape."""
    return wait_metric(srv.port, lambda m: m.get("wsvisor_connections") == 0, timeout,
                       what="wsvisor_connections == 0")


def text_of_bytes(n, rng):
    """A str whose UTF-8 encoding is exactly n bytes, with multi-byte characters."""
    parts, size = [], 0
    pieces = ["a", "Z", "0", " ", "é", "€", "😀"]
    while size < n:
        c = rng.choice(pieces)
        if size + len(c.encode()) > n:
            c = "x"
        parts.append(c)
        size += len(c.encode())
    s = "".join(parts)
    assert len(s.encode()) == n
    return s


# 14-16: around the 15 bytes a session reads a message's start into (message_buffer.hpp);
# 1535-1537: around Beast's own read buffer (1,536 bytes).
SIZES = [0, 1, 14, 15, 16, 125, 126, 127, 1000, 1535, 1536, 1537, 4096, 65535, MAX]


def test_text_and_binary_echo(server):
    rng = random.Random(1)
    before = quiescent(server)

    async def main():
        async with connect(server) as ws:
            count = 0
            for n in SIZES:
                payload = os.urandom(n)
                await ws.send(payload)
                got = await asyncio.wait_for(ws.recv(), 10)
                assert isinstance(got, bytes), f"binary came back as {type(got)}"
                assert got == payload, f"binary echo of {n} bytes differs"
                text = text_of_bytes(n, rng)
                await ws.send(text)
                got = await asyncio.wait_for(ws.recv(), 10)
                assert isinstance(got, str), f"text came back as {type(got)}"
                assert got == text, f"text echo of {n} bytes differs"
                count += 2
            return count

    sent = run_async(main(), timeout=60)
    wait_metric(
        server.port,
        lambda m: (m.get("wsvisor_messages_received_total")
                   - before.get("wsvisor_messages_received_total") >= sent
                   and m.get("wsvisor_messages_sent_total")
                   - before.get("wsvisor_messages_sent_total") >= sent),
        timeout=10, what=f"{sent} messages counted in both received and sent totals")
    after = quiescent(server)
    assert after.get("wsvisor_messages_received_total") - before.get(
        "wsvisor_messages_received_total") == sent
    assert after.get("wsvisor_messages_sent_total") - before.get(
        "wsvisor_messages_sent_total") == sent


def test_fragmented_message_echoed_whole(server):
    async def main():
        async with connect(server) as ws:
            await ws.send([b"abc", b"def", b"ghi"])
            assert await asyncio.wait_for(ws.recv(), 10) == b"abcdefghi"
            await ws.send(["hé", "llo", " wörld"])
            assert await asyncio.wait_for(ws.recv(), 10) == "héllo wörld"
    run_async(main(), timeout=30)


def test_order_preserved_with_many_in_flight(server):
    async def main():
        async with connect(server) as ws:
            msgs = [f"m{i}" for i in range(200)]
            for m in msgs:
                await ws.send(m)
            got = [await asyncio.wait_for(ws.recv(), 10) for _ in msgs]
            assert got == msgs
    run_async(main(), timeout=30)


def test_pipelined_frames_in_one_write(server):
    """Whole messages, fragments and pings in one TCP write come back whole and in order:
    a message's start is read separately from the rest (message_buffer.hpp), so every
    split point matters."""
    rng = random.Random(7)
    ws = RawWs(server.port)
    try:
        expected, wire = [], b""
        for i in range(60):
            payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 3, 15, 16, 40, 700, 2000])))
            if i % 3 == 0:  # the same bytes as three fragments, a ping between two of them
                a, b = payload[: len(payload) // 3], payload[len(payload) // 3:]
                wire += encode_frame(OP_BINARY, a, fin=False)
                wire += encode_frame(OP_PING, b"p%d" % i)
                wire += encode_frame(OP_CONT, b[:5], fin=False)
                wire += encode_frame(OP_CONT, b[5:])
                expected.append((OP_PONG, b"p%d" % i))
            else:
                wire += encode_frame(OP_BINARY, payload)
            expected.append((OP_BINARY, payload))
        ws.sock.sendall(wire)
        got = []
        while len(got) < len(expected):
            fin, op, payload = ws.read_frame(timeout=10)
            assert fin
            got.append((op, payload))
        # Pongs may overtake echoes (Beast answers them while reading): compare each kind
        # in its own order.
        for kind in (OP_BINARY, OP_PONG):
            assert [p for o, p in got if o == kind] == [p for o, p in expected if o == kind]
    finally:
        ws.close()


@pytest.mark.parametrize("offered,selected", [
    (["wsvisor.v1"], "wsvisor.v1"),
    (["chat", "wsvisor.v1"], "wsvisor.v1"),
    (["chat"], None),
    (None, None),
])
def test_subprotocol(server, offered, selected):
    async def main():
        async with connect(server, subprotocols=offered) as ws:
            assert ws.subprotocol == selected
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 10) == "hi"
    run_async(main(), timeout=30)


def test_500_concurrent_clients(server):
    n_clients, n_msgs = 500, 4
    assert nofile_limit() > 2 * n_clients + 100, "RLIMIT_NOFILE too low for this test"
    before = quiescent(server)

    async def client(i, opened, release):
        async with connect(server) as ws:
            opened.append(i)
            await release.wait()
            for j in range(n_msgs):
                msg = f"client {i} message {j}" if j % 2 == 0 else os.urandom(32 + i % 64)
                await ws.send(msg)
                got = await asyncio.wait_for(ws.recv(), 20)
                assert got == msg
        return i

    async def main():
        opened, release = [], asyncio.Event()
        tasks = [asyncio.create_task(client(i, opened, release)) for i in range(n_clients)]
        # Every client connected at the same time, then they all talk.
        for _ in range(3000):
            if len(opened) == n_clients or any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        held = len(opened)
        m = await asyncio.get_running_loop().run_in_executor(None, scrape, server.port)
        release.set()
        results = await asyncio.gather(*tasks)
        return held, m, results

    held, during, results = run_async(main(), timeout=90)
    assert held == n_clients, f"only {held} of {n_clients} connected at once"
    assert sorted(results) == list(range(n_clients))
    assert during.get("wsvisor_connections") == n_clients, during.get("wsvisor_connections")
    total = n_clients * n_msgs
    after = wait_metric(
        server.port,
        lambda m: (m.get("wsvisor_connections") == 0
                   and m.total("wsvisor_connections_closed_total")
                   - before.total("wsvisor_connections_closed_total") >= n_clients),
        timeout=15, what="all 500 connections closed and counted")
    assert after.get("wsvisor_connections_opened_total") - before.get(
        "wsvisor_connections_opened_total") == n_clients
    assert after.total("wsvisor_connections_closed_total") - before.total(
        "wsvisor_connections_closed_total") == n_clients
    assert after.get("wsvisor_connections_closed_total", reason="client") - before.get(
        "wsvisor_connections_closed_total", reason="client") == n_clients
    assert after.get("wsvisor_messages_received_total") - before.get(
        "wsvisor_messages_received_total") == total
    assert after.get("wsvisor_messages_sent_total") - before.get(
        "wsvisor_messages_sent_total") == total


@pytest.mark.parametrize("scheduler", ["io", "pool"])
def test_echo_in_both_scheduler_modes(server_factory, scheduler):
    srv = server_factory(f"server.scheduler={scheduler}")
    n_clients, n_msgs = 100, 5

    async def client(i):
        async with connect(srv) as ws:
            for j in range(n_msgs):
                msg = f"{scheduler} {i} {j}" if j % 2 else os.urandom(100 + j)
                await ws.send(msg)
                assert await asyncio.wait_for(ws.recv(), 20) == msg
        return i

    async def main():
        return await asyncio.gather(*[client(i) for i in range(n_clients)])

    assert sorted(run_async(main(), timeout=60)) == list(range(n_clients))
    after = quiescent(srv)
    assert after.get("wsvisor_connections_opened_total") == n_clients
    assert after.total("wsvisor_connections_closed_total") == n_clients
    assert after.get("wsvisor_messages_received_total") == n_clients * n_msgs
    assert after.get("wsvisor_messages_sent_total") == n_clients * n_msgs


def test_ping_answered_and_client_close_completes(server):
    async def main():
        ws = await connect(server)
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
        await ws.send("after ping")
        assert await asyncio.wait_for(ws.recv(), 5) == "after ping"
        await asyncio.wait_for(ws.close(4321, "bye-e2e"), 10)
        # The server answered the close handshake (no abnormal 1006).
        assert ws.close_code is not None and ws.close_code != 1006, ws.close_code
    run_async(main(), timeout=30)
    quiescent(server)


def test_every_close_logged_once(server):
    async def main():
        async with connect(server) as ws:
            await ws.send("x")
            await ws.recv()
            await ws.close(4987, "log-me")
    run_async(main(), timeout=30)
    quiescent(server)

    def logged():
        lines = [l for l in server.log().splitlines()
                 if re.search(r"(?<![\d.:])4987(?![\d.])", l)]
        return lines or None

    try:
        from conftest import wait_until
        lines = wait_until(logged, 5, what="a log line with the close code 4987")
    except AssertionError:
        raise AssertionError("no close logged with code 4987:\n" + server.log()[-3000:])
    assert len(lines) == 1, f"the close is logged {len(lines)} times: {lines}"
    assert "127.0.0.1" in lines[0], f"the close log line lacks the IP: {lines[0]}"


# ------------------------------------------------------------------ protocol errors

@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    with module_server(tmp_path_factory, "server.max_message_bytes=1024") as srv:
        yield srv


@pytest.mark.parametrize("kind", ["binary", "text", "fragmented"])
def test_message_over_max_closes_1009(small_server, kind):
    srv = small_server
    before = quiescent(srv)

    async def main():
        async with connect(srv) as ws:
            # Exactly at the limit is fine.
            await ws.send(b"b" * 1024)
            assert await asyncio.wait_for(ws.recv(), 10) == b"b" * 1024
            await ws.send("t" * 1024)
            assert await asyncio.wait_for(ws.recv(), 10) == "t" * 1024
            if kind == "binary":
                await ws.send(b"x" * 1025)
            elif kind == "text":
                await ws.send("y" * 4000)
            else:
                await ws.send([b"z" * 600, b"z" * 600])
            try:
                got = await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed as e:
                return e.code
            raise AssertionError(f"an oversized message was answered: {got[:50]!r}")

    code = run_async(main(), timeout=30)
    assert code == 1009, f"close code {code}, expected 1009"
    after = quiescent(srv)
    assert after.total("wsvisor_connections_closed_total") - before.total(
        "wsvisor_connections_closed_total") == 1


def test_invalid_utf8_closes_1007(server):
    before = quiescent(server)
    ws = RawWs(server.port)
    try:
        ws.send_frame(OP_TEXT, "ok".encode())
        fin, op, payload = ws.read_frame()
        assert (op, payload) == (OP_TEXT, b"ok")
        ws.send_frame(OP_TEXT, b"\xff\xfe")
        code, reason = ws.read_close(timeout=5)
        assert code == 1007, f"close code {code} {reason!r}, expected 1007"
        ws.send_frame(OP_CLOSE, (1007).to_bytes(2, "big"))
    finally:
        ws.close()
    after = quiescent(server)
    assert after.total("wsvisor_connections_closed_total") - before.total(
        "wsvisor_connections_closed_total") == 1


def test_invalid_utf8_across_fragments_closes_1007(server):
    ws = RawWs(server.port)
    try:
        # "€" is e2 82 ac; the second fragment breaks the sequence.
        ws.send_frame(OP_TEXT, b"abc\xe2\x82", fin=False)
        ws.send_frame(0x0, b"\x41", fin=True)
        code, reason = ws.read_close(timeout=5)
        assert code == 1007, f"close code {code} {reason!r}, expected 1007"
    finally:
        ws.close()
    quiescent(server)


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
def test_client_vanishing_frees_the_slot(server, rst):
    before = quiescent(server)
    ws = RawWs(server.port)
    ws.send_frame(OP_BINARY, b"hello")
    assert ws.read_frame()[1:] == (OP_BINARY, b"hello")
    wait_metric(server.port, lambda m: m.get("wsvisor_connections") == 1, 5,
                what="wsvisor_connections == 1 while the client is connected")
    ws.abort(rst=rst)  # no close frame
    after = wait_metric(
        server.port,
        lambda m: (m.get("wsvisor_connections") == 0
                   and m.total("wsvisor_connections_closed_total")
                   > before.total("wsvisor_connections_closed_total")),
        timeout=10, what="the vanished connection closed and counted")
    assert after.total("wsvisor_connections_closed_total") - before.total(
        "wsvisor_connections_closed_total") == 1
    assert after.get("wsvisor_connections_opened_total") - before.get(
        "wsvisor_connections_opened_total") == 1


def test_many_vanishing_clients(server):
    before = quiescent(server)
    socks = [RawWs(server.port) for _ in range(50)]
    wait_metric(server.port, lambda m: m.get("wsvisor_connections") == 50, 5,
                what="50 connections held")
    for i, ws in enumerate(socks):
        ws.abort(rst=bool(i % 2))
    # One condition: a scrape reads its series one after the other (the close counters
    # before the gauge), so a gauge of 0 can come with counters read a moment earlier.
    closed = before.total("wsvisor_connections_closed_total")
    after = wait_metric(server.port, lambda m: m.get("wsvisor_connections") == 0 and m.total(
        "wsvisor_connections_closed_total") - closed >= 50, 10,
        what="all vanished connections released and counted")
    assert after.total("wsvisor_connections_closed_total") - closed == 50
