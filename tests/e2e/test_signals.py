"""SIGTERM / SIGINT drain (CONTRACT section 9, exit codes of section 1)."""

import asyncio
import signal
import time

import pytest
import websockets

from conftest import RawWs, http_get, run_async, upgrade_attempt


def ready_answer(port):
    """('ok', status, json) or ('refused', None, None)."""
    try:
        r = http_get(port, "/health/ready", timeout=2)
    except OSError:
        return ("refused", None, None)
    try:
        body = r.json()
    except ValueError:
        body = r.body
    return ("ok", r.status, body)


def wait_draining(srv, timeout=3.0):
    """Polls /health/ready right after a signal until it says draining. Before that only
    200 ready is acceptable (the signal may not have been handled yet); the listener must
    keep answering. Returns seconds until draining was seen."""
    start = time.monotonic()
    seen = []
    for _ in range(100000):
        elapsed = time.monotonic() - start
        assert elapsed < timeout, f"/health/ready not draining {timeout}s after the signal: {seen[-5:]}"
        kind, status, body = ready_answer(srv.port)
        seen.append((round(elapsed, 3), kind, status, body))
        if kind == "refused":
            pytest.fail(f"listener gone before readiness said draining (alive={srv.alive()}): "
                        f"{seen[-5:]}\n{srv.log()[-3000:]}")
        if status == 503:
            assert body == {"status": "draining"}, seen[-5:]
            return elapsed
        assert status == 200 and body == {"status": "ready"}, seen[-5:]
        time.sleep(0.005)
    raise AssertionError("unreachable")


async def wait_close(ws, times=None):
    try:
        for _ in range(1000):
            await ws.recv()
    except websockets.ConnectionClosed as e:
        if times is not None:
            times.append(time.monotonic())
        return e.code, e.reason
    return None, "still open"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_with_1001_and_exits_0(server_factory, sig):
    n = 50
    drain_timeout = 8
    drain_spread = 2
    srv = server_factory(f"shutdown.drain_spread={drain_spread}s",
                         f"shutdown.drain_timeout={drain_timeout}s")
    close_times = []

    async def main():
        clients = await asyncio.gather(*[
            websockets.connect(srv.url(), ping_interval=None, open_timeout=10, close_timeout=5)
            for _ in range(n)])
        # Each client has a message echoed, so every connection is fully up.
        for ws in clients:
            await ws.send("before")
        for ws in clients:
            assert await asyncio.wait_for(ws.recv(), 10) == "before"
        waits = [asyncio.create_task(wait_close(ws, close_times)) for ws in clients]
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        srv.signal(sig)
        draining_after = await loop.run_in_executor(None, wait_draining, srv)
        results = await asyncio.gather(*waits)
        code = await loop.run_in_executor(None, srv.wait_exit, drain_timeout + 5)
        return draining_after, results, code, time.monotonic() - t0

    draining_after, results, code, elapsed = run_async(main(), timeout=60)
    bad = [r for r in results if r != (1001, "shutdown")]
    assert not bad, f"{len(bad)} of {n} clients got {bad[:5]} instead of (1001, 'shutdown')"
    # Closes are paced, not all at once (a loose lower bound; how much of drain_spread
    # a small number of closes uses is the server's choice).
    spread = max(close_times) - min(close_times)
    assert spread >= 0.2, (
        f"all {n} closes arrived within {spread:.2f}s (drain_spread {drain_spread}s)")
    assert code is not None, f"not exited {drain_timeout + 5}s after {sig.name}"
    assert code == 0, f"exit code {code}"
    assert elapsed < drain_timeout + 5


def test_upgrade_during_drain_gets_503_draining(server_factory):
    drain_timeout = 4
    srv = server_factory("shutdown.drain_spread=1s", f"shutdown.drain_timeout={drain_timeout}s",
                         "janitor.close_timeout=30s", "limits.retry_after=5s")
    # Clients that never answer the close frame: the drain lasts until drain_timeout.
    silent = [RawWs(srv.port) for _ in range(3)]
    try:
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        wait_draining(srv)

        r = upgrade_attempt(srv.port)
        assert r.status == 503, r
        assert r.is_json(), r
        assert r.json() == {"error": "draining"}, r
        assert (r.header("connection") or "").lower() == "close", r.headers
        retry = r.header("retry-after")
        assert retry is not None and retry.isdigit(), r.headers
        assert 5 <= int(retry) <= 7, f"Retry-After {retry} outside [5, 7.5]"

        # /health/* keeps answering during the drain.
        live = http_get(srv.port, "/health/live")
        assert live.status == 200 and live.json() == {"status": "alive"}, live
        health = http_get(srv.port, "/health")
        assert health.status == 503, health
        assert health.json()["status"] == "draining", health

        # Every connection gets 1001 "shutdown" (paced over drain_spread).
        for ws in silent:
            code, reason = ws.read_close(timeout=drain_timeout + 2)
            assert (code, reason) == (1001, "shutdown")

        # The peers never answered: the deadline forces the last closes, and that is
        # still exit 0.
        code = srv.wait_exit(drain_timeout + 5)
        elapsed = time.monotonic() - t0
        assert code is not None, f"not exited {drain_timeout + 5}s after SIGTERM"
        assert code == 0, f"exit code {code}"
        assert elapsed > drain_timeout - 1.5, (
            f"exited after {elapsed:.1f}s although connections were still closing "
            f"(drain_timeout {drain_timeout}s, close_timeout 30s)")
        for ws in silent:  # closed hard by now
            ws.sock.settimeout(2)
            try:
                leftover = ws.sock.recv(65536)
                assert leftover == b"", leftover
            except ConnectionResetError:
                pass
    finally:
        for ws in silent:
            ws.close()


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["TERM-TERM", "TERM-INT"])
def test_second_signal_exits_0_at_once(server_factory, second):
    srv = server_factory("shutdown.drain_spread=2s", "shutdown.drain_timeout=30s",
                         "janitor.close_timeout=30s")
    silent = [RawWs(srv.port) for _ in range(5)]
    try:
        srv.signal(signal.SIGTERM)
        wait_draining(srv)
        assert srv.alive()
        t1 = time.monotonic()
        srv.signal(second)
        code = srv.wait_exit(3)
        assert code is not None, "still running 3s after the second signal"
        assert code == 0, f"exit code {code}"
        assert time.monotonic() - t1 < 3
        # Everything was closed.
        for ws in silent:
            ws.sock.settimeout(2)
            try:
                for _ in range(100):
                    if not ws.sock.recv(65536):
                        break
            except ConnectionResetError:
                pass
    finally:
        for ws in silent:
            ws.close()


def test_idle_server_sigterm_exits_0_quickly(server_factory):
    srv = server_factory()
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    code = srv.wait_exit(5)
    assert code == 0, f"exit code {code} ({time.monotonic() - t0:.1f}s)\n{srv.log()[-3000:]}"


def test_signals_repeated_while_the_server_winds_down_still_exit_0(server_factory):
    """A platform may send SIGTERM again and again while a process stops: once the exit
    code is decided, none of them may turn it into death by SIGTERM (143 / -15)."""
    import os
    for attempt in range(20):
        srv = server_factory()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(srv.pid, signal.SIGTERM)  # not reaped yet: the pid is still its own
            except ProcessLookupError:
                break
            if srv.proc.poll() is not None:
                break
        code = srv.wait_exit(5)
        assert code == 0, f"attempt {attempt}: exit code {code}\n{srv.log()[-3000:]}"
