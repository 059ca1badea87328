"""handshake_timeout and max_pending_handshakes (CONTRACT section 3)."""

import socket
import time

from conftest import (HOST, RawWs, http_get, scrape, wait_closed_by_peer, wait_metric,
                      wait_until)


def test_silent_connection_closed_after_handshake_timeout(server_factory):
    srv = server_factory("server.handshake_timeout=1s")
    with socket.create_connection((HOST, srv.port), timeout=5) as s:
        waited = wait_closed_by_peer(s, timeout=6)
    assert waited is not None, "a silent connection was still open 6s after accept"
    assert 0.5 <= waited <= 4, f"closed after {waited:.2f}s with handshake_timeout=1s"


def test_partial_request_closed_after_handshake_timeout(server_factory):
    srv = server_factory("server.handshake_timeout=1s")
    with socket.create_connection((HOST, srv.port), timeout=5) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webs")
        waited = wait_closed_by_peer(s, timeout=6)
    assert waited is not None, "a half-sent request was still open 6s after accept"
    assert waited <= 4, f"closed after {waited:.2f}s with handshake_timeout=1s"


def test_slow_trickle_does_not_extend_handshake_timeout(server_factory):
    """The timeout runs from accept, not from the last byte received."""
    srv = server_factory("server.handshake_timeout=1s")
    req = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 200
    with socket.create_connection((HOST, srv.port), timeout=5) as s:
        start = time.monotonic()
        closed = False
        for i in range(len(req)):
            if time.monotonic() - start > 6:
                break
            try:
                s.sendall(req[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            s.settimeout(0.1)
            try:
                if s.recv(65536) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed = True
                break
        elapsed = time.monotonic() - start
    assert closed, f"a trickling request was still open after {elapsed:.1f}s"
    assert elapsed <= 4, f"closed after {elapsed:.2f}s with handshake_timeout=1s"


def test_completed_websocket_outlives_handshake_timeout(server_factory):
    srv = server_factory("server.handshake_timeout=1s")
    ws = RawWs(srv.port)
    try:
        ws.sock.settimeout(2.0)
        # Nothing arrives and the connection stays open past the handshake timeout.
        try:
            data = ws.sock.recv(65536)
            assert data != b"", "an upgraded connection was closed by the handshake timeout"
        except socket.timeout:
            pass
        ws.send_frame(0x1, b"still here")
        assert ws.read_frame()[2] == b"still here"
    finally:
        ws.close()


def test_max_pending_handshakes(server_factory):
    limit = 5
    srv = server_factory(f"limits.max_pending_handshakes={limit}",
                         "server.handshake_timeout=30s")
    before = scrape(srv.port)
    silent = []
    try:
        for _ in range(limit):
            silent.append(socket.create_connection((HOST, srv.port), timeout=5))
        # Accepts are FIFO: the next one is accepted after the five and is one too many.
        with socket.create_connection((HOST, srv.port), timeout=5) as extra:
            waited = wait_closed_by_peer(extra, timeout=3)
            assert waited is not None, "connection over max_pending_handshakes not closed"
        # The five are still open.
        for s in silent:
            s.setblocking(False)
            try:
                data = s.recv(1)
                assert False, f"a pending handshake was answered or closed: {data!r}"
            except BlockingIOError:
                pass
            finally:
                s.setblocking(True)
        # One of them completes its handshake normally.
        silent[0].settimeout(5)
        silent[0].sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf = b""
        for _ in range(100):
            chunk = silent[0].recv(65536)
            if not chunk:
                break
            buf += chunk
        assert buf.startswith(b"HTTP/1.1 200"), buf[:200]
    finally:
        for s in silent:
            s.close()

    # Room again: the slots of the closed sockets are released.
    def metrics_after():
        return scrape(srv.port, timeout=2)

    after = wait_until(metrics_after, 5, interval=0.05, what="/metrics answering again")
    rejected = (after.get("wsvisor_admissions_rejected_total", reason="handshake_limit")
                - before.get("wsvisor_admissions_rejected_total", reason="handshake_limit"))
    assert rejected >= 1, "handshake_limit refusal not counted"
    # No WebSocket slot was ever taken by these plain TCP connections.
    wait_metric(srv.port, lambda m: m.get("wsvisor_connections") == 0, 5,
                what="wsvisor_connections == 0")
    ws = RawWs(srv.port)
    ws.send_frame(0x2, b"x")
    assert ws.read_frame()[2] == b"x"
    ws.close()


def test_pending_limit_counts_only_unanswered(server_factory):
    """Upgraded connections are not pending: many WebSockets above the handshake limit."""
    limit = 5
    srv = server_factory(f"limits.max_pending_handshakes={limit}")
    conns = []
    try:
        for _ in range(4 * limit):
            conns.append(RawWs(srv.port))
        for ws in conns:
            ws.send_frame(0x1, b"ping")
            assert ws.read_frame()[2] == b"ping"
        assert http_get(srv.port, "/health/ready").status == 200
    finally:
        for ws in conns:
            ws.close()
