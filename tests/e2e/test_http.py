"""HTTP endpoints (CONTRACT section 3) and the metrics at start-up (section 6)."""

import re
import time

import pytest

from conftest import (CLOSE_REASONS, EVICTION_REASONS, HOST, REJECT_REASONS, RESTART_ACTORS,
                      Metrics, Server, free_port, http_get, http_request,
                      module_server, raw_exchange, scrape)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with module_server(tmp_path_factory, "limits.max_connections=1000",
                       "limits.max_per_user=7", "limits.max_per_ip=300") as srv:
        yield srv


def assert_json(r, status, body=None):
    assert r.status == status, r
    assert r.is_json(), f"content type {r.header('content-type')!r} is not application/json"
    if body is not None:
        assert r.json() == body, r


# ------------------------------------------------------------------ health

def test_live(server):
    assert_json(http_get(server.port, "/health/live"), 200, {"status": "alive"})


def test_ready(server):
    assert_json(http_get(server.port, "/health/ready"), 200, {"status": "ready"})


def test_health(server):
    r = http_get(server.port, "/health")
    assert_json(r, 200)
    h = r.json()
    for key in ("status", "uptime_s", "connections", "limits", "restarts"):
        assert key in h, f"/health lacks {key}: {h}"
    assert h["status"] == "ready", h
    assert isinstance(h["uptime_s"], (int, float)) and h["uptime_s"] >= 0, h
    assert h["connections"] == 0, h
    assert h["limits"] == {"max_connections": 1000, "soft_connections": 900,
                           "max_per_user": 7, "max_per_ip": 300}, h
    assert isinstance(h["restarts"], dict), h
    for actor, n in h["restarts"].items():
        assert isinstance(n, int) and n >= 0, h


def test_health_uptime_grows(server):
    a = http_get(server.port, "/health").json()["uptime_s"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        b = http_get(server.port, "/health").json()["uptime_s"]
        if b > a:
            return
        time.sleep(0.1)
    pytest.fail(f"uptime_s stayed at {a}")


def test_ready_is_starting_or_ready_from_launch(tmp_path):
    """From the launch on, /health/ready answers nothing but 503 starting or 200 ready."""
    srv = Server(tmp_path / "launch.log")
    seen = []
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert srv.alive(), srv.log()
            try:
                r = http_get(srv.port, "/health/ready", timeout=2)
            except OSError:
                time.sleep(0.005)
                continue
            seen.append((r.status, r.body))
            assert r.is_json(), r
            if r.status == 200:
                assert r.json() == {"status": "ready"}, r
                break
            assert r.status == 503 and r.json() == {"status": "starting"}, r
        else:
            pytest.fail(f"never ready; seen {seen[-5:]}\n{srv.log()}")
        code = srv.stop()
        assert code == 0, srv.log()
    finally:
        srv.kill()
        srv.close_log()


# ------------------------------------------------------------------ metrics

def test_metrics_at_startup(server_factory):
    srv = server_factory()
    r = http_get(srv.port, "/metrics")
    assert r.status == 200, r
    assert (r.header("content-type") or "").startswith("text/plain"), r.header("content-type")
    m = Metrics(r.body.decode())
    missing = []

    def expect(name, value=0, **labels):
        v = m.get(name, **labels)
        if v is None:
            missing.append(f"{name}{labels or ''}")
        elif value is not None:
            assert v == value, f"{name}{labels} = {v}, expected {value}"

    expect("wsvisor_ready", 1)
    expect("wsvisor_draining", 0)
    expect("wsvisor_connections", 0)
    expect("wsvisor_connections_opened_total", 0)
    for reason in CLOSE_REASONS:
        expect("wsvisor_connections_closed_total", 0, reason=reason)
    for reason in REJECT_REASONS:
        expect("wsvisor_admissions_rejected_total", 0, reason=reason)
    for reason in EVICTION_REASONS:
        expect("wsvisor_evictions_total", 0, reason=reason)
    expect("wsvisor_sweeps_total", None, kind="periodic")  # the janitor may have swept
    expect("wsvisor_sweeps_total", 0, kind="emergency")
    expect("wsvisor_sweeps_total", 0, kind="admin")
    for actor in RESTART_ACTORS:
        expect("wsvisor_actor_restarts_total", 0, actor=actor)
    expect("wsvisor_messages_received_total", 0)
    expect("wsvisor_messages_sent_total", 0)
    expect("wsvisor_send_queue_bytes", 0)
    expect("process_resident_memory_bytes", None)
    expect("process_open_fds", None)
    expect("wsvisor_sweep_duration_seconds_count", None)
    expect("wsvisor_sweep_duration_seconds_sum", None)
    if not m.series("wsvisor_sweep_duration_seconds_bucket"):
        missing.append("wsvisor_sweep_duration_seconds_bucket")
    assert not missing, "missing series: " + ", ".join(missing)
    assert m.get("process_resident_memory_bytes") > 0
    assert m.get("process_open_fds") > 0
    assert m.series("wsvisor_sweep_duration_seconds_bucket").get((("le", "+Inf"),)) is not None
    assert m.types.get("wsvisor_sweep_duration_seconds") == "histogram", m.types
    for counter in ("wsvisor_connections_opened_total", "wsvisor_messages_sent_total"):
        base = counter[:-len("_total")]
        assert m.types.get(counter) == "counter" or m.types.get(base) == "counter", m.types


def test_ready_gauge_matches_readiness(server_factory):
    """wsvisor_ready is 1 whenever /health/ready says ready (several start-ups, since
    the order in which the tree and the listener come up may vary)."""
    for attempt in range(10):
        srv = server_factory()
        m = scrape(srv.port)
        assert http_get(srv.port, "/health/ready").status == 200
        assert m.get("wsvisor_ready") == 1, (
            f"start-up {attempt}: wsvisor_ready = {m.get('wsvisor_ready')} although "
            f"/health/ready answered 200")
        assert m.get("wsvisor_draining") == 0
        assert srv.stop() == 0, srv.log()


# ------------------------------------------------------------------ errors

def test_unknown_path_404(server):
    assert_json(http_get(server.port, "/nope"), 404, {"error": "not_found"})
    assert_json(http_get(server.port, "/health/nope"), 404, {"error": "not_found"})


def test_wrong_method_405(server):
    r = http_request(server.port, "POST", "/health/live", body=b"")
    assert r.status == 405, r
    r = http_request(server.port, "DELETE", "/health/ready")
    assert r.status == 405, r
    r = http_request(server.port, "POST", "/metrics", body=b"x")
    assert r.status == 405, r


def test_ws_path_without_upgrade_426(server):
    r = http_get(server.port, "/ws")
    assert r.status == 426, r
    assert (r.header("upgrade") or "").lower() == "websocket", r.headers


@pytest.mark.parametrize("request_bytes", [
    b"THIS IS NOT HTTP AT ALL\r\n\r\n",
    b"GET /health/live HTTP/1.1\r\nHost: x\r\nheader without colon\r\n\r\n",
    b"GET /health/live HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
], ids=["garbage", "bad-header", "bad-content-length"])
def test_malformed_request_400_and_closed(server, request_bytes):
    data, closed = raw_exchange(server.port, request_bytes, timeout=5)
    assert data.startswith(b"HTTP/1.1 400"), data[:200]
    assert closed, "the socket stayed open after a malformed request"


def test_keepalive_requests_on_one_connection(server):
    """Several requests on one connection (load balancers keep connections open)."""
    import http.client
    conn = http.client.HTTPConnection(HOST, server.port, timeout=5)
    try:
        for path in ("/health/live", "/health/ready", "/metrics", "/nope"):
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            assert r.status in (200, 404)
    finally:
        conn.close()


def test_json_content_type(server):
    for path in ("/health/live", "/health/ready", "/health", "/nope"):
        r = http_get(server.port, path)
        assert r.is_json(), f"{path}: content type {r.header('content-type')!r}"


def test_admin_listen_moves_metrics(server_factory):
    admin_port = free_port()
    srv = server_factory(f"admin.listen=127.0.0.1:{admin_port}")
    r = http_get(srv.port, "/metrics")
    assert r.status == 404, r
    assert r.json() == {"error": "not_found"}, r
    r = http_get(admin_port, "/metrics")
    assert r.status == 200, r
    assert Metrics(r.body.decode()).get("wsvisor_ready") == 1, (
        "wsvisor_ready is not 1 although /health/ready answered 200")
    assert http_get(srv.port, "/health/ready").status == 200


def test_health_uptime_is_plain_decimal(server):
    """`"uptime_s":2.017`, not Boost.JSON's default `2.017257041E0`."""
    body = http_get(server.port, "/health").body.decode()
    assert re.search(r'"uptime_s":\d+\.\d{3}[,}]', body), body
