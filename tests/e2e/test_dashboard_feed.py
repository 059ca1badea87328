"""The dashboard's feed and page as HTTP sees them (CONTRACT section 15): the page and
its assets without a bearer, /admin/events with one, the feed's events, its bound on
dashboards, and a dashboard that never reads, which the server cuts without holding
more memory. The page itself in a browser: test_dashboard.py."""

import json
import os
import socket
import threading
import time

import pytest

from admin_helpers import ADMIN_ENV, TOKEN, bearer
from conftest import HOST, http_get, rss_kib, scrape, wait_metric, wait_until


# Under AddressSanitizer the server's RSS follows the connection churn, not the stream:
# what ASan's allocator holds (its quarantine, redzones and per-thread caches) grows with
# the churn (CI of 2026-12-03: +88 MiB over 22,330 closes, where the Release build
# grows 1 MiB over 82,000). There the test checks the cut alone; the Release pass checks
# the memory.
UNDER_ASAN = "ASAN_OPTIONS" in os.environ


def read_events(port, seconds, token=TOKEN, limit=200):
    """The events of /admin/events for `seconds`: [(name, parsed data)]."""
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.sendall(f"GET /admin/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
                 "\r\n\r\n".encode())
    data = b""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    events = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return head.decode(), events[:limit]


def test_page_and_assets_need_no_bearer_but_the_feed_does(server_factory):
    srv = server_factory(env=ADMIN_ENV)
    for path, kind in [("/admin/dashboard", "text/html"),
                       ("/admin/dashboard/app.js", "text/javascript"),
                       ("/admin/dashboard/app.css", "text/css")]:
        r = http_get(srv.port, path)
        assert r.status == 200, r
        assert r.header("content-type").startswith(kind), r
        assert "script-src 'self'" in r.header("content-security-policy"), r
        assert b"http://" not in r.body and b"https://" not in r.body, f"{path} loads from elsewhere"
    r = http_get(srv.port, "/admin/events")
    assert r.status == 401 and r.json() == {"error": "unauthorized"}, r
    r = http_get(srv.port, "/admin/events", headers=bearer("wrong"))
    assert r.status == 401, r


def test_without_a_token_the_dashboard_does_not_exist(server_factory):
    srv = server_factory()
    for path in ["/admin/dashboard", "/admin/dashboard/app.js", "/admin/events"]:
        assert http_get(srv.port, path).status == 404


def test_the_feed_says_hello_then_events_then_snapshots(server_factory):
    srv = server_factory("server.io_threads=2", "server.actor_threads=2", env=ADMIN_ENV)
    head, events = read_events(srv.port, 1.8)
    assert head.startswith("HTTP/1.1 200"), head
    assert "text/event-stream" in head
    names = [name for name, _ in events]
    assert names[0] == "hello", names
    hello = events[0][1]
    assert hello["mode"] == "echo" and hello["interval_ms"] == 500 and hello["events_kept"] == 100
    lifecycle = [data for name, data in events if name == "lifecycle"]
    assert any(e["event"] == "tree_up" for e in lifecycle), lifecycle
    seqs = [e["seq"] for e in lifecycle]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    snapshots = [data for name, data in events if name == "snapshot"]
    assert 3 <= len(snapshots) <= 5, names  # one at once, then every 500 ms
    s = snapshots[-1]
    assert s["tree"]["name"] == "root" and s["tree"]["max_restarts"] >= 1
    assert {c["name"] for c in s["tree"]["children"]} >= {"limit_guard", "janitor", "shard-0",
                                                         "shard-1"}
    assert s["caps"]["max_connections"] == 10000 and s["caps"]["connections"] == 0
    assert set(s["totals"]["refused"]) >= {"server_full", "user_limit", "rate_limited"}
    assert s["totals"]["rss_bytes"] > 0
    assert s["upstream"] is None and s["cluster"] is None


def test_at_most_eight_dashboards_at_once(server_factory):
    srv = server_factory(env=ADMIN_ENV)
    socks = []
    try:
        for _ in range(8):
            s = socket.create_connection((HOST, srv.port), timeout=5)
            s.sendall(f"GET /admin/events HTTP/1.1\r\nHost: x\r\n{_auth()}\r\n".encode())
            assert s.recv(12) == b"HTTP/1.1 200"
            socks.append(s)
        wait_metric(srv.port, lambda m: m.get("wsvisor_dashboard_streams") == 8, 5)
        r = http_get(srv.port, "/admin/events", headers=bearer())
        assert r.status == 503 and r.json()["error"] == "too_many_streams", r
        assert "close another one" in r.json()["detail"]
    finally:
        for s in socks:
            s.close()
    wait_metric(srv.port, lambda m: m.get("wsvisor_dashboard_streams") == 0, 5)
    head, _ = read_events(srv.port, 0.3)
    assert head.startswith("HTTP/1.1 200"), "a place did not come back"


def _auth():
    return f"Authorization: Bearer {TOKEN}\r\n"


def test_a_dashboard_that_never_reads_is_cut_and_costs_no_memory(server_factory):
    srv = server_factory("limits.max_per_ip=0", "limits.accept_rate=100000", "limits.accept_burst=100000", env=ADMIN_ENV)
    # The reader: a tiny receive buffer, and never a recv().
    reader = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect((HOST, srv.port))
    reader.sendall(f"GET /admin/events HTTP/1.1\r\nHost: x\r\n{_auth()}\r\n".encode())
    wait_metric(srv.port, lambda m: m.get("wsvisor_dashboard_streams") == 1, 5)
    rss_before = rss_kib(srv.pid)

    # Lifecycle events in a flood: connections that open and close (each close is one).
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            with socket.create_connection((HOST, srv.port), timeout=5) as s:
                s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          b"Sec-WebSocket-Version: 13\r\n\r\n")
                s.recv(1024)

    workers = [threading.Thread(target=churn, daemon=True) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        m = wait_metric(srv.port, lambda m: m.get("wsvisor_dashboard_stalls_total") == 1, 60,
                        what="the stalled dashboard to be cut")
        assert m.get("wsvisor_dashboard_streams") == 0
        closed = m.total("wsvisor_connections_closed_total")
    finally:
        stop.set()
        for w in workers:
            w.join(10)
        reader.close()
    assert closed > 500, "not enough events to fill the stream"
    rss_after = rss_kib(srv.pid)
    print(f"RSS before {rss_before} KiB, after {rss_after} KiB, {closed:.0f} connections closed")
    if not UNDER_ASAN:
        assert rss_after - rss_before < 16 * 1024, (rss_before, rss_after)
    # The server is unharmed: a new dashboard reads at once.
    head, events = read_events(srv.port, 0.8)
    assert head.startswith("HTTP/1.1 200") and events[0][0] == "hello"
