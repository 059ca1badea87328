"""The janitor: heartbeats and zombies, idle and lifetime closes (CONTRACT section 5;
metrics of section 6; periodic sweeps of section 4).

Short settings throughout: sweep_interval 200ms, ping_interval 1s, pong_timeout 1s, so a
zombie must be gone within ping_interval + pong_timeout + 2 x sweep_interval = 2.4 s.
"""

import asyncio
import time
from collections import Counter

import pytest
import websockets

from conftest import OP_PING, module_server, run_async, scrape, wait_metric
from janitor_helpers import (WsloadRun, close_frame_of, close_lines, closed, evictions,
                             metric, parse_server_frames, raw_upgrade, sweep_lines,
                             watch_for_close)

SWEEP = 0.2
PING = 1.0
PONG = 1.0
ZOMBIE_BOUND = PING + PONG + 2 * SWEEP  # the contract's detection bound
MARGIN = 0.4  # the test's own polling and scheduling on a busy 2-core machine

HEARTBEAT_SETS = (f"janitor.sweep_interval={int(SWEEP * 1000)}ms",
                  f"janitor.ping_interval={PING:g}s", f"janitor.pong_timeout={PONG:g}s")


async def connect(url):
    # The client never pings by itself, but it answers the server's pings (websockets
    # does that in the background as long as the event loop runs).
    return await websockets.connect(url, ping_interval=None, open_timeout=10, close_timeout=3)


async def wait_close(ws, timeout):
    """Reads until the server closes; returns (code, reason, monotonic time, messages)."""
    got = 0
    deadline = time.monotonic() + timeout
    try:
        for _ in range(100000):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.wait_for(ws.recv(), remaining)
            got += 1
    except websockets.ConnectionClosed as e:
        t = time.monotonic()
        frame = e.rcvd
        if frame is None:
            return None, "no close frame", t, got
        return frame.code, frame.reason, t, got
    except asyncio.TimeoutError:
        pass
    return None, "still open", time.monotonic(), got


# ------------------------------------------------------------------------ zombies

def test_zombies_closed_live_clients_untouched(server_factory):
    """Raw sockets that complete the handshake and then never read or write are closed
    (FIN or RST, no close frame needed) within ping_interval + pong_timeout +
    2 x sweep_interval, counted as zombie closes and evictions, logged in one sweep line;
    websockets clients, which answer pings, stay open."""
    srv = server_factory(*HEARTBEAT_SETS)
    n_live, n_zombies = 3, 5
    before = scrape(srv.port)

    async def main():
        live = [await connect(srv.url()) for _ in range(n_live)]
        for ws in live:
            await ws.send("hello")
            assert await asyncio.wait_for(ws.recv(), 5) == "hello"
        loop = asyncio.get_running_loop()
        zombies, sent_at, opened_at = [], [], []
        for _ in range(n_zombies):
            sent_at.append(time.monotonic())  # the upgrade request: the last frame in
            s, _ = raw_upgrade(srv.port)
            opened_at.append(time.monotonic())
            zombies.append(s)
        # The zombies' sockets are read only to see the FIN/RST (and the pings); the
        # server cannot tell reading from not reading, and the test never writes.
        closed_after, data = await loop.run_in_executor(
            None, watch_for_close, zombies, ZOMBIE_BOUND + MARGIN + 3.0)
        # The live clients went through the same silence (longer) and answered pings.
        still_open = [ws.open for ws in live]
        for ws in live:
            await ws.send("still here")
            assert await asyncio.wait_for(ws.recv(), 5) == "still here"
        for ws in live:
            await ws.close()
        for s in zombies:
            s.close()
        return closed_after, data, sent_at, opened_at, still_open

    closed_after, data, sent_at, opened_at, still_open = run_async(main(), timeout=60)

    not_closed = [i for i in range(n_zombies) if i not in closed_after]
    assert not not_closed, (
        f"zombies {not_closed} not closed by the server within "
        f"{ZOMBIE_BOUND + MARGIN + 3.0:.1f}s (closed: {closed_after})")
    for i, after in closed_after.items():
        since_request = after + (opened_at[i] - sent_at[i])
        assert after <= ZOMBIE_BOUND + MARGIN, (
            f"zombie {i} closed {after:.2f}s after its handshake; the contract's bound is "
            f"ping_interval + pong_timeout + 2 x sweep_interval = {ZOMBIE_BOUND:.1f}s "
            f"(+{MARGIN}s margin)")
        assert since_request >= PING + PONG - 0.05, (
            f"zombie {i} closed {since_request:.2f}s after its last frame, before "
            f"ping_interval + pong_timeout = {PING + PONG:.1f}s")
        frames = parse_server_frames(data[i])
        assert any(op == OP_PING for op, _ in frames), (
            f"zombie {i} was closed without having been pinged: frames {frames[:5]}")
        assert close_frame_of(frames) is None, (
            f"zombie {i} got a close frame {close_frame_of(frames)}; the contract closes "
            f"zombies without one")
    assert all(still_open), f"live clients closed during the zombie hunt: {still_open}"

    m = wait_metric(srv.port, lambda m: m["wsvisor_connections"] == 0, timeout=5,
                    what="wsvisor_connections back to 0")
    assert evictions(m, "zombie") - evictions(before, "zombie") == n_zombies, (
        f"evictions_total{{zombie}} {evictions(before, 'zombie')} -> {evictions(m, 'zombie')}")

    log = srv.log()
    sweeps = [s for s in sweep_lines(log) if s[1] > 0]
    assert sweeps, f"no 'sweep kind=periodic ... zombie=N' log line:\n{log[-3000:]}"
    assert sum(s[1] for s in sweeps) == n_zombies, sweeps
    # The zombies were opened within milliseconds of each other: one sweep found them
    # (two if they straddled a tick), not one line per connection.
    assert len(sweeps) <= 2, f"{len(sweeps)} sweep lines for {n_zombies} zombies: {sweeps}"
    codes = [c for _, c, _, _ in close_lines(log)]
    assert codes.count(1006) == n_zombies, (
        f"expected {n_zombies} closes logged with code 1006, log has codes {codes}")
    # Checked last, so that everything above is known to hold when only this fails.
    logged = Counter(r for _, _, r, _ in close_lines(srv.log()))
    assert closed(m, "zombie") - closed(before, "zombie") == n_zombies, (
        f"closed_total{{zombie}} {closed(before, 'zombie')} -> {closed(m, 'zombie')} for "
        f"{n_zombies} zombies (closed_total{{client}} {closed(before, 'client')} -> "
        f"{closed(m, 'client')} with {n_live} live clients); close reasons logged: "
        f"{dict(logged)}")
    assert closed(m, "client") - closed(before, "client") == n_live


def test_many_zombies_with_wsload(server_factory):
    """300 wsload zombies next to 50 held connections that answer pings: every zombie is
    closed by the server within the bound (seen in the kernel's TCP state, nothing read),
    none of the held connections is."""
    srv = server_factory(*HEARTBEAT_SETS)
    n_zombies, n_live = 300, 50
    before = scrape(srv.port)
    duration = ZOMBIE_BOUND + MARGIN + 3.0
    live = WsloadRun("hold", srv.port, "--connections", n_live, "--duration", duration + 1.0,
                     "--grace", 5)
    try:
        wait_metric(srv.port, lambda m: m["wsvisor_connections"] >= n_live, timeout=10,
                    what=f"{n_live} held connections")
        zombies = WsloadRun("zombie", srv.port, "--connections", n_zombies, "--duration",
                            duration, "--grace", 5, "--probe-interval", 50)
        z = zombies.result(timeout=duration + 30)
        h = live.result(timeout=duration + 30)
    finally:
        live.kill()
    assert z["established"] == n_zombies, z
    closed_by = z["closed_by_server"]
    assert sum(closed_by.values()) == n_zombies, f"zombies not all closed: {z}"
    ttc = z["time_to_close_s"]
    assert ttc["max"] <= ZOMBIE_BOUND + MARGIN, (
        f"slowest zombie closed {ttc['max']:.2f}s after its upgrade (bound "
        f"{ZOMBIE_BOUND:.1f}s + {MARGIN}s): {ttc}")
    assert ttc["min"] >= PING + PONG - 0.05, f"zombies closed too early: {ttc}"
    assert h["established"] == n_live and h["closed_by_server"] == 0, (
        f"held connections (answering pings) were closed: {h}")
    assert h["open_at_end"] == n_live, h

    m = wait_metric(srv.port, lambda m: m["wsvisor_connections"] == 0, timeout=10,
                    what="wsvisor_connections back to 0")
    assert evictions(m, "zombie") - evictions(before, "zombie") == n_zombies
    sweeps = [s for s in sweep_lines(srv.log()) if s[1] > 0]
    assert sum(s[1] for s in sweeps) == n_zombies, sweeps
    logged = Counter(r for _, _, r, _ in close_lines(srv.log()))
    assert closed(m, "zombie") - closed(before, "zombie") == n_zombies, (
        f"closed_total{{zombie}} {closed(before, 'zombie')} -> {closed(m, 'zombie')} for "
        f"{n_zombies} zombies; close reasons logged: {dict(logged)}")


# --------------------------------------------------------------------------- idle

IDLE = 1.0


@pytest.fixture(scope="module")
def idle_server(tmp_path_factory):
    with module_server(tmp_path_factory, f"janitor.idle_timeout={IDLE:g}s",
                       f"janitor.sweep_interval={int(SWEEP * 1000)}ms") as srv:
        yield srv


IDLE_UPPER = IDLE + 2 * SWEEP + MARGIN


def test_idle_client_gets_4000(idle_server):
    srv = idle_server
    before = scrape(srv.port)

    async def main():
        t0 = time.monotonic()
        ws = await connect(srv.url())
        t1 = time.monotonic()
        code, reason, t, _ = await wait_close(ws, IDLE_UPPER + 3)
        return code, reason, t - t0, t - t1

    code, reason, from_start, from_open = run_async(main(), timeout=30)
    assert (code, reason) == (4000, "idle timeout"), (code, reason)
    assert from_open >= IDLE - 0.05, f"closed for idleness after only {from_open:.2f}s"
    assert from_start <= IDLE_UPPER, (
        f"idle close came {from_start:.2f}s after connecting (idle_timeout {IDLE}s + "
        f"2 x sweep_interval + {MARGIN}s margin = {IDLE_UPPER:.1f}s)")
    m = wait_metric(srv.port, lambda m: closed(m, "idle") > closed(before, "idle"), timeout=3,
                    what="closed_total{idle} incremented")
    assert closed(m, "idle") - closed(before, "idle") == 1
    assert evictions(m, "idle") - evictions(before, "idle") == 1


def test_idle_pings_do_not_reset_idle(idle_server):
    """Control frames never reset the idle clock: a client that only pings is closed on
    the same schedule."""
    srv = idle_server

    async def main():
        t0 = time.monotonic()
        ws = await connect(srv.url())
        pongs = 0

        async def pinger():
            nonlocal pongs
            for _ in range(200):
                waiter = await ws.ping()
                await asyncio.wait_for(waiter, 2)
                pongs += 1
                await asyncio.sleep(0.1)

        task = asyncio.create_task(pinger())
        code, reason, t, _ = await wait_close(ws, IDLE_UPPER + 3)
        task.cancel()
        with pytest.raises((asyncio.CancelledError, websockets.ConnectionClosed)):
            await task
        return code, reason, t - t0, pongs

    code, reason, elapsed, pongs = run_async(main(), timeout=30)
    assert pongs >= 3, f"the server answered only {pongs} pings"
    assert (code, reason) == (4000, "idle timeout"), (
        f"a client that only sent pings for {elapsed:.1f}s got {(code, reason)}")
    assert elapsed <= IDLE_UPPER, f"idle close after {elapsed:.2f}s although pings only"


def test_idle_active_client_not_closed(idle_server):
    """A client that keeps exchanging messages (every 250 ms, for 3 x idle_timeout) is never
    closed for idleness; once it stops, it is."""
    srv = idle_server

    async def main():
        ws = await connect(srv.url())
        start = time.monotonic()
        sent = 0
        for i in range(100):
            if time.monotonic() - start >= 3 * IDLE:
                break
            await ws.send(f"m{i}")
            assert await asyncio.wait_for(ws.recv(), 5) == f"m{i}"
            sent += 1
            await asyncio.sleep(0.25)
        assert ws.open, f"closed while active: {ws.close_code} {ws.close_reason}"
        t = time.monotonic()
        code, reason, t_closed, _ = await wait_close(ws, IDLE_UPPER + 3)
        return sent, code, reason, t_closed - t

    sent, code, reason, after = run_async(main(), timeout=40)
    assert sent >= 8, sent
    assert (code, reason) == (4000, "idle timeout"), (code, reason)
    assert IDLE - 0.35 <= after <= IDLE_UPPER, after


# ----------------------------------------------------------------------- lifetime

LIFETIME = 2.0


def test_max_lifetime_4001(server_factory):
    """max_lifetime=2s: close 4001 "max lifetime" between 1.8 s (10 % jitter) and
    2 s + 2 x sweep_interval (+ margin), also for busy connections."""
    srv = server_factory(f"janitor.max_lifetime={LIFETIME:g}s",
                         f"janitor.sweep_interval={int(SWEEP * 1000)}ms")
    n = 5
    before = scrape(srv.port)
    upper = LIFETIME + 2 * SWEEP + MARGIN

    async def one():
        t0 = time.monotonic()
        ws = await connect(srv.url())

        async def chatter():
            for i in range(1000):
                await ws.send(f"x{i}")
                await asyncio.sleep(0.1)

        task = asyncio.create_task(chatter())
        code, reason, t, got = await wait_close(ws, upper + 3)
        task.cancel()
        with pytest.raises((asyncio.CancelledError, websockets.ConnectionClosed)):
            await task
        return code, reason, t - t0, got

    async def main():
        return await asyncio.gather(*[one() for _ in range(n)])

    results = run_async(main(), timeout=30)
    for code, reason, elapsed, got in results:
        assert (code, reason) == (4001, "max lifetime"), results
        assert got > 0, "the connection was not exchanging messages"
        assert LIFETIME * 0.9 - 0.02 <= elapsed <= upper, (
            f"lifetime close after {elapsed:.2f}s, outside [{LIFETIME * 0.9:.2f}, "
            f"{upper:.2f}]: {results}")
    m = wait_metric(srv.port, lambda m: closed(m, "lifetime") - closed(before, "lifetime") == n,
                    timeout=5, what=f"closed_total{{lifetime}} +{n}")
    assert evictions(m, "lifetime") - evictions(before, "lifetime") == n
    assert metric(m, "wsvisor_connections") == 0
