"""The paced drain at scale (CONTRACT section 9; readiness and admission of sections 3 and
4): 2,000 held connections, SIGTERM, 1001 for every one of them paced across drain_spread,
exit 0; a second SIGTERM during a long drain exits 0 at once; upgrades during the drain
get 503 draining while /health/live answers 200."""

import signal
import time

from conftest import http_get, scrape, upgrade_attempt, wait_metric, wait_until
from janitor_helpers import WsloadRun, close_lines, metric, wait_draining, wsload_bin

N = 2000
# 2,000 connections from 127.0.0.1: the per-IP cap (1000 by default) must not refuse them.
SCALE_SETS = ("limits.max_per_ip=0", "limits.max_pending_handshakes=4096")


def hold(srv, n, duration):
    return WsloadRun("hold", srv.port, "--connections", n, "--duration", duration,
                     "--grace", 5, "--threads", 2, "--handshake-timeout", 20)


TOKEN = "drain-test-token"


def wait_all_open(srv, n, timeout):
    """Waits until the server lists n connections, every one upgraded ("open")."""
    def check():
        r = http_get(srv.port, "/admin/connections",
                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert r.status == 200, r
        conns = r.json()
        return len(conns) == n and all(c["state"] == "open" for c in conns)
    wait_until(check, timeout, interval=0.1, what=f"{n} open connections in /admin/connections")


def _spread_summary(times):
    times = sorted(times)
    t0 = times[0]
    rel = [t - t0 for t in times]
    q = lambda p: rel[min(len(rel) - 1, int(p * len(rel)))]  # noqa: E731
    return {"range": round(rel[-1], 3), "p10": round(q(0.1), 3), "p50": round(q(0.5), 3),
            "p90": round(q(0.9), 3)}


def test_drain_2000_clients_paced_1001_exit_0(server_factory):
    """2,000 held connections (wsload hold), SIGTERM with drain_spread=2s: readiness says
    draining at once, every client gets 1001, the closes are spread over about
    drain_spread (server log timestamps; wsload's time_to_server_close_s, tolerant), and
    the process exits 0 well within drain_timeout."""
    wsload_bin()
    spread, drain_timeout = 2.0, 8.0
    srv = server_factory(*SCALE_SETS, f"shutdown.drain_spread={spread:g}s",
                         f"shutdown.drain_timeout={drain_timeout:g}s",
                         env={"WSVISOR_ADMIN_TOKEN": TOKEN})
    run = hold(srv, N, 60)
    try:
        t_start = time.monotonic()
        wait_all_open(srv, N, 40)
        establish = time.monotonic() - t_start  # an upper bound of the opening spread
        m = scrape(srv.port)
        assert metric(m, "wsvisor_connections_opened_total") == N

        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        draining_after = wait_draining(srv.port, timeout=1.0)
        code = srv.wait_exit(drain_timeout + 5)
        exited_after = time.monotonic() - t0
        run.stop()
        result = run.result(timeout=30)
    finally:
        run.kill()

    log = srv.log()
    drains = [c for c in close_lines(log) if c[1] == 1001]
    print(f"drain of {N}: opened within {establish:.2f}s, draining after "
          f"{draining_after * 1000:.0f} ms, exit {code} after {exited_after:.2f}s; "
          f"server close spread {_spread_summary([c[0] for c in drains]) if drains else None}; "
          f"wsload close_codes {result['close_codes']} time_to_server_close_s "
          f"{result['time_to_server_close_s']}")
    assert code is not None, f"not exited {drain_timeout + 5}s after SIGTERM"
    assert code == 0, f"exit code {code}"
    assert exited_after <= drain_timeout + 2.0, exited_after
    assert result["established"] == N, result
    assert result["close_codes"] == {"1001": N}, (
        f"close codes seen by the clients: {result['close_codes']} (errors "
        f"{result['errors']})")
    assert result["closed_by_server"] == N, result

    # Paced across drain_spread: the server's own close lines (millisecond timestamps).
    assert len(drains) == N, f"{len(drains)} closes logged with code 1001 for {N} clients"
    assert all(c[2] == "drain" for c in drains), {c[2] for c in drains}
    summary = _spread_summary([c[0] for c in drains])
    assert summary["range"] >= 0.5 * spread, (
        f"all {N} closes within {summary['range']}s; drain_spread is {spread}s: {summary}")
    assert summary["p50"] >= 0.2 * spread, f"most closes bunched at the start: {summary}"
    assert summary["range"] <= spread + 1.5, f"closes took longer than drain_spread: {summary}"

    # The same from the clients' side, tolerant: time_to_server_close_s runs from each
    # client's upgrade, and the upgrades themselves spread over `establish` seconds.
    ttc = result["time_to_server_close_s"]
    assert ttc["count"] == N, ttc
    assert (ttc["max"] - ttc["min"]) + establish >= 0.5 * spread, (
        f"clients saw every close within {ttc['max'] - ttc['min']:.2f}s (opened within "
        f"{establish:.2f}s, drain_spread {spread}s): {ttc}")


def test_second_sigterm_during_long_drain_exits_at_once(server_factory):
    """drain_spread=5s, drain_timeout=8s, 1,000 held connections: during the drain an
    upgrade gets 503 {"error":"draining"} and /health/live 200; a second SIGTERM after some
    closes ends the process with 0 at once, and every client is closed."""
    wsload_bin()
    n = 1000
    srv = server_factory(*SCALE_SETS, "shutdown.drain_spread=5s", "shutdown.drain_timeout=8s",
                         "limits.retry_after=2s")
    run = hold(srv, n, 60)
    try:
        wait_metric(srv.port, lambda m: m["wsvisor_connections"] == n, timeout=30,
                    what=f"{n} held connections")
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        wait_draining(srv.port, timeout=1.0)

        r = upgrade_attempt(srv.port)
        assert r.status == 503, r
        assert r.is_json() and r.json() == {"error": "draining"}, r
        assert (r.header("connection") or "").lower() == "close", r.headers
        live = http_get(srv.port, "/health/live")
        assert live.status == 200 and live.json() == {"status": "alive"}, live

        # Some closes done, most still to come.
        m = wait_metric(srv.port, lambda m: metric(m, "wsvisor_connections_closed_total",
                                                   reason="drain") >= 20,
                        timeout=4, what="the first drain closes")
        done_before = metric(m, "wsvisor_connections_closed_total", reason="drain")
        assert done_before < n * 0.8, (
            f"{done_before} of {n} closed {time.monotonic() - t0:.2f}s into a 5s spread")
        t1 = time.monotonic()
        srv.signal(signal.SIGTERM)
        code = srv.wait_exit(5)
        second_after = time.monotonic() - t1
        run.stop()
        result = run.result(timeout=30)
    finally:
        run.kill()
    print(f"second SIGTERM after {t1 - t0:.2f}s ({done_before:.0f} of {n} closed): exit "
          f"{code} {second_after:.2f}s later; wsload {result['close_codes']} "
          f"closed_by_server {result['closed_by_server']} open_at_end {result['open_at_end']}")
    assert code is not None, "not exited 5s after the second SIGTERM"
    assert code == 0, f"exit code {code} after the second SIGTERM"
    assert second_after <= 1.5, f"exited {second_after:.2f}s after the second SIGTERM"
    assert result["established"] == n, result
    assert result["closed_by_server"] == n, result
    assert set(result["close_codes"]) <= {"1001", "1006"}, result["close_codes"]
    assert result["close_codes"].get("1001", 0) >= done_before, result["close_codes"]
