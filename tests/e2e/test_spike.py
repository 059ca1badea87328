"""A spike of 5,000 simultaneous upgrades against max_connections=1000 (CONTRACT section 4
`server_full`, section 6 gauge): exactly 1,000 admitted and held, the rest refused 503
server_full, the gauge never above the cap, and every count back to 0 afterwards.

The load is driven by the project's `wsload` tool (WSLOAD_BIN, set by ctest)."""

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from admission_helpers import rejected
from conftest import (CLOSE_REASONS, REJECT_REASONS, clean_env, http_get, nofile_limit, scrape,
                      wait_metric)

CAP = 1000
SPIKE = 5000
HOLD_S = 5


def wsload_bin():
    path = os.environ.get("WSLOAD_BIN")
    if not path:
        pytest.fail("WSLOAD_BIN is not set: the spike test needs the wsload tool "
                    "(ctest sets it; by hand: WSLOAD_BIN=<build>/wsload)")
    if not Path(path).is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"WSLOAD_BIN={path} is not an executable file")
    return path


def run_hold(load, port, connections, duration):
    """wsload hold: `connections` idle connections (answering pings) opened at once and
    held for `duration` seconds; returns its JSON summary."""
    cmd = [load, "hold", "--host", "127.0.0.1", "--port", str(port), "--path", "/ws",
           "--connections", str(connections), "--duration", str(duration), "--grace", "5",
           "--threads", "2", "--handshake-timeout", "10", "--quiet"]
    proc = subprocess.run(cmd, env=clean_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=duration + 30)
    assert proc.returncode == 0, f"wsload exited {proc.returncode}: {proc.stderr[-3000:]}"
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(
            f"wsload printed no JSON: {proc.stdout!r} {proc.stderr[-2000:]}") from None


class GaugePoller(threading.Thread):
    """Scrapes /metrics as fast as it answers; records wsvisor_connections."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.values = []
        self.errors = 0
        self.stop_event = threading.Event()

    def run(self):
        deadline = time.monotonic() + 60
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                m = scrape(self.port, timeout=3)
                v = m.get("wsvisor_connections")
                if v is not None:
                    self.values.append((time.monotonic(), v))
            except Exception:  # noqa: BLE001 - the listener is busy with the spike
                self.errors += 1
            self.stop_event.wait(0.01)

    def stop(self):
        self.stop_event.set()
        self.join(10)


def closed_total(m):
    return sum(m.get("wsvisor_connections_closed_total", 0, reason=r) for r in CLOSE_REASONS)


def test_spike_of_5000_upgrades_admits_exactly_1000(server_factory):
    load = wsload_bin()
    need = SPIKE + 500
    assert nofile_limit() >= need, f"RLIMIT_NOFILE {nofile_limit()} < {need}"
    srv = server_factory(f"limits.max_connections={CAP}", "limits.accept_rate=1000000",
                         "limits.accept_burst=1000000", "limits.max_per_ip=0",
                         "limits.max_pending_handshakes=10000")
    before = scrape(srv.port)
    assert before.get("wsvisor_connections") == 0

    poller = GaugePoller(srv.port)
    poller.start()
    try:
        result = run_hold(load, srv.port, SPIKE, HOLD_S)
    finally:
        poller.stop()

    # Every count back to 0 once the clients have gone.
    end = wait_metric(srv.port, lambda m: m.get("wsvisor_connections") == 0, timeout=20,
                      what="wsvisor_connections 0 after every client left")

    summary = {k: result.get(k) for k in (
        "established", "failed", "peak", "refusals", "errors", "closed_by_server",
        "close_codes", "open_at_end", "hard_deadline_hit")}
    rej = {r: rejected(end).get(r, 0) - rejected(before).get(r, 0) for r in REJECT_REASONS}
    rej = {r: n for r, n in rej.items() if n}
    evictions = {dict(k).get("reason"): v - before.get("wsvisor_evictions_total", 0, **dict(k))
                 for k, v in end.series("wsvisor_evictions_total").items()}
    evictions = {r: n for r, n in evictions.items() if n}
    peak_gauge = max((v for _, v in poller.values), default=None)
    report = (f"wsload: {summary}\nserver refusals: {rej}\nserver evictions: {evictions}\n"
              f"gauge: {len(poller.values)} scrapes (errors {poller.errors}), max {peak_gauge}")

    # The gauge never exceeded the cap (and it was seen during the spike).
    assert poller.values, f"/metrics never answered during the spike\n{report}"
    over = [(round(t, 3), v) for t, v in poller.values if v > CAP]
    assert not over, f"wsvisor_connections above {CAP}: {over[:10]}\n{report}"

    # Exactly the cap admitted, and held: healthy clients that answer pings are not
    # evicted to make room for others (the refused ones get server_full instead).
    refusals = result.get("refusals") or {}
    other_failures = result["failed"] - sum(refusals.values())
    assert result["established"] == CAP, f"established {result['established']} != {CAP}\n{report}"
    assert result.get("closed_by_server", 0) == 0, (
        f"{result.get('closed_by_server')} held connections were closed by the server "
        f"during the spike\n{report}")
    assert set(refusals) <= {"503"}, f"refusals other than 503: {refusals}\n{report}"
    # The rest refused 503; a few may instead fail to connect at all (SYN retries over
    # the 4096 listen backlog), which is not the server refusing them.
    assert result["established"] + result["failed"] == SPIKE, report
    assert other_failures <= SPIKE // 50, f"{other_failures} attempts failed otherwise\n{report}"
    # Each refusal counted once, all as server_full.
    assert rej == {"server_full": refusals.get("503", 0)}, (
        f"server counted refusals {rej}, wsload saw {refusals} (expected exactly "
        f"server_full = the 503s)\n{report}")

    # opened - closed == 0 at the end.
    opened = end.get("wsvisor_connections_opened_total") - before.get(
        "wsvisor_connections_opened_total")
    closed = closed_total(end) - closed_total(before)
    assert opened == closed, f"opened {opened} != closed {closed}\n{report}"
    assert end.get("wsvisor_connections_opened_total") - closed_total(end) == 0, report
    assert opened >= CAP, f"opened_total moved by {opened}\n{report}"
    health = http_get(srv.port, "/health")
    assert health.status == 200 and health.json().get("connections") == 0, health

    # The guard's own counts are back to 0 too: the full cap can be taken again.
    again = run_hold(load, srv.port, CAP, 2)
    assert again.get("established") == CAP and not again.get("refusals"), (
        f"after the spike, {CAP} new connections got: "
        f"{ {k: again.get(k) for k in ('established', 'failed', 'refusals', 'errors')} }")
    wait_metric(srv.port, lambda m: m.get("wsvisor_connections") == 0, timeout=20,
                what="wsvisor_connections 0 after the second run")
    assert srv.alive()
