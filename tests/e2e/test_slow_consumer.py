"""Per-connection flow limits (CONTRACT section 5): slow consumers (send queue over
limits.send_queue_bytes: close 1008 "slow consumer", TCP closed after close_timeout at the
latest, memory bounded) and the inbound message rate (over messages_per_second with
burst messages_burst: close 1008 "rate limit")."""

import os
import asyncio
import socket
import threading
import time

import pytest
import websockets

from conftest import OP_BINARY, OP_CLOSE, encode_frame, http_get, module_server, run_async, scrape, wait_metric
from janitor_helpers import (WsloadRun, close_frame_of, closed, metric, metrics_summary,
                             parse_server_frames, raw_upgrade)

QUEUE = 65536
CLOSE_TIMEOUT = 2.0
MARGIN = 1.0
TOKEN = "janitor-test-token"
SLOW_SETS = (f"limits.send_queue_bytes={QUEUE}", f"janitor.close_timeout={CLOSE_TIMEOUT:g}s")

# How much the server may grow while 20 slow consumers push (Release: a few MB). Under
# AddressSanitizer (ASAN_OPTIONS set by the sanitizer test run) freed blocks are kept
# by its allocator and redzones double small ones.
RSS_GROWTH_LIMIT = 300e6 if "ASAN_OPTIONS" in os.environ else 100e6


class Writer(threading.Thread):
    """Sends the same masked frame again and again until stopped, an error, or the
    bounds (count, time)."""

    def __init__(self, sock, frame, max_frames=20000, max_seconds=25.0):
        super().__init__(daemon=True)
        self.sock, self.frame = sock, frame
        self.max_frames, self.max_seconds = max_frames, max_seconds
        self.stop = threading.Event()
        self.sent = 0
        self.error = None

    def run(self):
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.max_frames):
            if self.stop.is_set() or time.monotonic() >= deadline:
                return
            try:
                self.sock.sendall(self.frame)
            except OSError as e:  # EPIPE / ECONNRESET once the server closed; or timeout
                self.error = e
                return
            self.sent += 1


def _admin_connections(port):
    r = http_get(port, "/admin/connections", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status == 200, r
    return r.json()


def test_slow_consumer_closed_1008(server_factory):
    """A client that sends 32 KiB messages and never reads: the server's queue of echoes
    passes send_queue_bytes and the connection turns "closing" (seen through
    /admin/connections). The client then stops sending and reads what is in its socket:
    the last frame is close 1008 "slow consumer" (when it can be read at all), and TCP is
    closed within close_timeout (+ margin) of the decision; the counters say
    slow_consumer; the send queue gauge returns to 0."""
    srv = server_factory(*SLOW_SETS, env={"WSVISOR_ADMIN_TOKEN": TOKEN})
    before = scrape(srv.port)
    sock, _ = raw_upgrade(srv.port)
    states = []
    try:
        sock.settimeout(2.0)
        frame = encode_frame(OP_BINARY, bytes(range(256)) * 128)  # 32 KiB
        writer = Writer(sock, frame)
        t_start = time.monotonic()
        writer.start()
        t_decided = None
        for _ in range(100000):
            if time.monotonic() - t_start > 20 or not writer.is_alive():
                break
            conns = _admin_connections(srv.port)
            states.append([(c["state"], c["queued_bytes"]) for c in conns])
            if not conns or conns[0]["state"] != "open":
                t_decided = time.monotonic()
                break
            time.sleep(0.01)
        assert t_decided is not None, (
            f"the connection was never seen closing within 20s (writer alive "
            f"{writer.is_alive()}, error {writer.error!r}, sent {writer.sent} frames); "
            f"last states {states[-3:]}")
        # Stop sending, then read: our receive buffer and the server's socket drain, so
        # the server's close frame (sent after the message it was writing) can arrive.
        writer.stop.set()
        writer.join(5)
        assert not writer.is_alive(), "the writer thread is stuck in sendall"
        sent_mib = writer.sent * len(frame) / 2**20
        data = b""
        eof_after = None
        gone_after = None  # the server released the connection (admin list empty)
        reset = False
        sock.settimeout(0.05)
        deadline = t_decided + CLOSE_TIMEOUT + MARGIN + 5.0
        last_poll = 0.0
        for _ in range(1_000_000):
            now = time.monotonic()
            if now >= deadline or (eof_after is not None and gone_after is not None):
                break
            if gone_after is None and now - last_poll >= 0.05:
                last_poll = now
                if not _admin_connections(srv.port):
                    gone_after = time.monotonic() - t_decided
            if eof_after is not None:
                time.sleep(0.02)
                continue
            try:
                chunk = sock.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:  # reset
                chunk = b""
                reset = True
            if not chunk:
                eof_after = time.monotonic() - t_decided
                continue
            data += chunk
        frames = parse_server_frames(data)
        close = close_frame_of(frames)
    finally:
        sock.close()

    print(f"slow consumer: {sent_mib:.1f} MiB sent in {t_decided - t_start:.2f}s before the "
          f"connection was seen closing (states {states[-2:]}); released by the server "
          f"{gone_after}s later; TCP {'reset' if reset else 'EOF'} seen {eof_after}s later "
          f"(after reading {len(data)} bytes, {len(frames)} frames); close frame {close}")
    assert gone_after is not None and gone_after <= CLOSE_TIMEOUT + MARGIN, (
        f"the server still listed the connection {gone_after or '>5'}s after it turned "
        f"closing (close_timeout {CLOSE_TIMEOUT}s + {MARGIN}s margin)")
    # The kernel delivers what the server had written before its FIN, so the client sees
    # the end only after reading all of it; it must see it.
    assert eof_after is not None, (
        f"no FIN/RST on the client socket {CLOSE_TIMEOUT + MARGIN + 5.0:.1f}s after the "
        f"connection turned closing; read {len(data)} bytes, close frame {close}")
    if close is not None:
        assert close == (1008, "slow consumer"), close
        # After the close frame nothing more (the queue was dropped).
        after = frames[[op for op, _ in frames].index(OP_CLOSE) + 1:]
        assert not after, f"frames after the close frame: {[(op, len(p)) for op, p in after]}"
    m = wait_metric(srv.port, lambda m: m["wsvisor_connections"] == 0, timeout=5,
                    what="wsvisor_connections back to 0")
    assert closed(m, "slow_consumer") - closed(before, "slow_consumer") == 1, (
        metrics_summary(m))
    wait_metric(srv.port, lambda m: m["wsvisor_send_queue_bytes"] == 0, timeout=5,
                what="wsvisor_send_queue_bytes back to 0 once the connection is gone")


def test_twenty_slow_consumers_memory_bounded(server_factory):
    """20 wsload slow clients push 32 KiB messages without reading for a few seconds: each
    is closed by the server, RSS grows by less than 100 MB throughout, the send queue gauge
    returns to 0 and so do the connections."""
    srv = server_factory(*SLOW_SETS)
    n = 20
    duration = 8.0
    before = scrape(srv.port)
    rss_start = metric(before, "process_resident_memory_bytes")
    run = WsloadRun("slow", srv.port, "--connections", n, "--size", 32768, "--binary",
                    "--duration", duration, "--grace", 5, "--probe-interval", 50)
    peak_rss = rss_start
    peak_queue = 0.0
    try:
        deadline = time.monotonic() + duration + 10
        for _ in range(10000):
            if run.proc.poll() is not None or time.monotonic() >= deadline:
                break
            m = scrape(srv.port)
            peak_rss = max(peak_rss, metric(m, "process_resident_memory_bytes"))
            peak_queue = max(peak_queue, metric(m, "wsvisor_send_queue_bytes"))
            # Growth, not the absolute figure: a sanitizer build starts far higher, and
            # its allocator keeps freed blocks (hence the larger bound there).
            assert peak_rss - rss_start < RSS_GROWTH_LIMIT, (
                f"server RSS {peak_rss / 1e6:.0f} MB with {n} slow consumers "
                f"(send_queue_bytes {QUEUE})\n{metrics_summary(m)}")
            time.sleep(0.1)
        result = run.result(timeout=duration + 20)
    finally:
        run.kill()
    print(f"20 slow consumers: RSS {rss_start / 1e6:.1f} -> peak {peak_rss / 1e6:.1f} MB; "
          f"peak send queue {peak_queue / 1e3:.0f} kB; wsload: {result}")
    assert result["established"] == n, result
    closed_by = result["closed_by_server"]
    assert sum(closed_by.values()) == n, f"not every slow client was closed: {result}"
    codes = result.get("close_codes", {})
    assert set(codes) <= {"1008"}, f"close frames other than 1008 seen: {codes}"
    # Every queue is capped: at most n x (send_queue_bytes + one message) at any time.
    assert peak_queue <= n * (QUEUE + 32768 + 64), peak_queue
    m = wait_metric(srv.port, lambda m: m["wsvisor_connections"] == 0, timeout=10,
                    what="wsvisor_connections back to 0")
    assert closed(m, "slow_consumer") - closed(before, "slow_consumer") == n, (
        metrics_summary(m))
    assert metric(m, "process_resident_memory_bytes") - rss_start < RSS_GROWTH_LIMIT
    wait_metric(srv.port, lambda m: m["wsvisor_send_queue_bytes"] == 0, timeout=5,
                what="wsvisor_send_queue_bytes back to 0 once every connection is gone")


# ------------------------------------------------------------------- inbound rate

RATE, BURST = 10, 5


@pytest.fixture(scope="module")
def rate_server(tmp_path_factory):
    with module_server(tmp_path_factory, f"limits.messages_per_second={RATE}",
                       f"limits.messages_burst={BURST}") as srv:
        yield srv


async def _read_until_closed(ws, timeout):
    got = []
    try:
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            got.append(await asyncio.wait_for(ws.recv(), remaining))
    except websockets.ConnectionClosed as e:
        if e.rcvd is None:
            return got, (None, "no close frame")
        return got, (e.rcvd.code, e.rcvd.reason)
    except asyncio.TimeoutError:
        pass
    return got, (None, "still open")


def test_inbound_burst_closed_1008_rate_limit(rate_server):
    """50 messages at once against 10/s with a burst of 5: close 1008 "rate limit"."""
    srv = rate_server
    before = scrape(srv.port)

    async def main():
        ws = await websockets.connect(srv.url(), ping_interval=None, close_timeout=3)
        for i in range(50):
            try:
                await ws.send(f"b{i}")
            except websockets.ConnectionClosed:
                break
        return await _read_until_closed(ws, 5)

    got, close = run_async(main(), timeout=30)
    assert close == (1008, "rate limit"), f"got {close} after {len(got)} echoes"
    assert len(got) <= BURST + 2, (
        f"{len(got)} of 50 messages echoed with a burst of {BURST}")
    m = wait_metric(srv.port, lambda m: closed(m, "rate_limit") > closed(before, "rate_limit"),
                    timeout=3, what="closed_total{rate_limit} incremented")
    assert closed(m, "rate_limit") - closed(before, "rate_limit") == 1


def test_inbound_steady_rate_is_fine(rate_server):
    """5 messages per second (half the limit) for 3 s: every one echoed, never closed."""
    srv = rate_server
    before = scrape(srv.port)

    async def main():
        ws = await websockets.connect(srv.url(), ping_interval=None, close_timeout=3)
        echoed = 0
        start = time.monotonic()
        for i in range(15):
            # Paced against the start, so that scheduling delays do not bunch messages.
            delay = start + i * 0.2 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send(f"s{i}")
            assert await asyncio.wait_for(ws.recv(), 5) == f"s{i}"
            echoed += 1
        still_open = ws.open
        await ws.close()
        return echoed, still_open, ws.close_code

    echoed, still_open, code = run_async(main(), timeout=30)
    assert echoed == 15 and still_open, (echoed, still_open, code)
    m = scrape(srv.port)
    assert closed(m, "rate_limit") == closed(before, "rate_limit")
