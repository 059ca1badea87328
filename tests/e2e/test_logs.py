"""Operator-facing logs (CONTRACT section 5: every close logged once with connection id,
user, IP, code, reason and duration; issue 12): in JSON every line is one object whose
lifecycle fields are members; in text, key=value with values from outside quoted and
escaped; floods of refusals are summarised; a 401 says why; debug adds the details."""

import json
import re
import signal
import time

import websockets

from admission_helpers import attempt, check_refusal, make_jwt, now_s
from conftest import HOST, RawWs, run_async, scrape, wait_metric, wait_until

SECRET = "logs-test-secret-0123456789abcdefgh"
JWT_ENV = {"WSVISOR_AUTH_JWT_SECRET": SECRET}


def json_lines(log):
    """Every line of a JSON-format log, parsed; fails on any line that is not an object
    with time, level and msg."""
    out = []
    for line in log.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError(f"a log line is not JSON: {line!r}") from None
        assert isinstance(obj, dict), line
        assert {"time", "level", "msg"} <= obj.keys(), line
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", obj["time"]), line
        out.append(obj)
    return out


def events(log, name):
    return [o for o in json_lines(log) if o.get("event") == name]


def test_json_close_line_has_its_fields_as_members(server_factory):
    srv = server_factory("log.format=json", "auth.mode=header")
    user = 'alice "the" smith=x\nfake'  # quotes, =, a newline: all from outside

    async def main():
        async with websockets.connect(f"ws://{HOST}:{srv.port}/ws",
                                      extra_headers=[("X-User-Id", user.replace("\n", " "))],
                                      ping_interval=None) as ws:
            await ws.send("hi")
            await ws.recv()
            await ws.close(4001, "bye")

    run_async(main(), timeout=20)
    wait_until(lambda: events(srv.log(), "connection_closed"), 10, what="a close line")
    (close,) = events(srv.log(), "connection_closed")
    assert close["level"] == "info", close
    assert close["user"] == user.replace("\n", " "), close
    assert close["ip"] == "127.0.0.1", close
    assert close["code"] == 4001, close
    assert close["reason"] == "client", close
    assert isinstance(close["id"], int) and close["id"] >= 1, close
    assert isinstance(close["duration_s"], (int, float)) and close["duration_s"] >= 0, close
    # The start-up lines are structured too.
    (listening,) = events(srv.log(), "listening")
    assert listening["address"].endswith(f":{srv.port}"), listening


def test_text_values_from_outside_are_quoted_and_cannot_forge_fields(server_factory):
    srv = server_factory("auth.mode=header")
    user = "bob code=1000 reason=client"
    ws = RawWs(srv.port, extra_headers=(("X-User-Id", user),))
    ws.close()
    wait_until(lambda: "connection closed" in srv.log(), 10, what="a close line")
    (line,) = [l for l in srv.log().splitlines() if "connection closed" in l]
    assert f'user="{user}"' in line, line
    # Only the server's own fields: one code= and one reason=, after the quoted user.
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line)
    assert unquoted.count(" code=") == 1 and unquoted.count(" reason=") == 1, line
    assert " reason=client" in unquoted, line


def test_refusals_are_summarised_once_a_second(server_factory):
    srv = server_factory("log.format=json", "limits.accept_rate=1", "limits.accept_burst=1")
    first = attempt(srv.port)
    assert first.status == 101
    first.close()
    refused = 0
    for _ in range(60):
        a = attempt(srv.port, close_wait=0.2)
        if a.status == 429:
            refused += 1
        a.close()
    assert refused >= 50, refused
    # The summary of the last second comes out on the once-a-second flush.
    time.sleep(2.2)
    log = srv.log()
    full = events(log, "refused")
    summaries = events(log, "refusals_summary")
    assert full, "no refusal logged in full"
    assert summaries, f"no summary line; {len(full)} full refusal lines"
    # At most 5 in full per second, and everything accounted for.
    assert len(full) <= 5 * 3, len(full)
    not_shown = sum(s["not_shown"] for s in summaries)
    assert len(full) + not_shown == refused, (len(full), not_shown, refused)
    assert sum(s["by_reason"].get("rate_limited", 0) for s in summaries) == not_shown, summaries
    assert all(f["reason"] == "rate_limited" and f["ip"] == "127.0.0.1" for f in full), full
    m = scrape(srv.port)
    assert m.get("wsvisor_admissions_rejected_total", reason="rate_limited") == refused


def test_a_401_says_why(server_factory):
    srv = server_factory("log.format=json", "auth.mode=jwt", env=JWT_ENV)
    cases = {
        "missing": None,
        "malformed": "not-a-jwt",
        "bad_signature": make_jwt({"sub": "a", "exp": now_s() + 60}, "x" * 40),
        "expired": make_jwt({"sub": "a", "exp": now_s() - 60}, SECRET),
        "not_yet_valid": make_jwt({"sub": "a", "exp": now_s() + 600, "nbf": now_s() + 300},
                                  SECRET),
    }
    for detail, token in cases.items():
        headers = () if token is None else (("Authorization", f"Bearer {token}"),)
        check_refusal(attempt(srv.port, headers=headers), "unauthorized", where=detail)
    wait_until(lambda: len(events(srv.log(), "refused")) >= len(cases), 5, what="5 lines")
    details = [e["detail"] for e in events(srv.log(), "refused")]
    assert details == list(cases), details


def test_an_eviction_is_logged_with_its_counts(server_factory):
    srv = server_factory("log.format=json", "janitor.ping_interval=1s", "janitor.pong_timeout=1s",
                         "janitor.sweep_interval=250ms")
    zombie = RawWs(srv.port)  # never answers the server's ping
    try:
        wait_until(lambda: [e for e in events(srv.log(), "sweep") if e.get("zombie")], 10,
                   what="a sweep line with a zombie")
    finally:
        zombie.close()
    (sweep,) = [e for e in events(srv.log(), "sweep") if e.get("zombie")]
    assert sweep["kind"] == "periodic" and sweep["zombie"] == 1 and sweep["evicted"] == 1, sweep
    (close,) = events(srv.log(), "connection_closed")
    assert close["reason"] == "zombie" and close["code"] == 1006, close


def test_debug_level_adds_opens_admissions_and_pings(server_factory):
    srv = server_factory("log.format=json", "log.level=debug", "janitor.ping_interval=1s",
                         "janitor.sweep_interval=250ms")

    async def main():
        async with websockets.connect(f"ws://{HOST}:{srv.port}/ws", ping_interval=None):
            await wait_until_async(lambda: events(srv.log(), "ping"), 10)

    async def wait_until_async(predicate, timeout):
        import asyncio
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "no ping logged at debug level"
            await asyncio.sleep(0.05)

    run_async(main(), timeout=20)
    log = srv.log()
    for name in ("connection_admitted", "connection_opened", "ping"):
        assert events(log, name), f"no {name} line at debug level"
    assert events(log, "connection_opened")[0]["handshake_ms"] >= 0


def test_info_level_has_no_debug_lines(server_factory):
    srv = server_factory("log.format=json")
    ws = RawWs(srv.port)
    ws.close()
    wait_until(lambda: events(srv.log(), "connection_closed"), 10, what="a close line")
    assert not [o for o in json_lines(srv.log()) if o["level"] == "debug"]


def test_drain_lines_come_in_order_and_once(server_factory):
    srv = server_factory("log.format=json", "shutdown.drain_spread=200ms",
                         "shutdown.drain_timeout=1s")
    ws = [RawWs(srv.port) for _ in range(3)]  # never answer the 1001: the deadline closes them
    try:
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(10) == 0
    finally:
        for w in ws:
            w.close()
    names = [o.get("event") for o in json_lines(srv.log())]
    wanted = [n for n in names if n in ("drain_begun", "drain_closing", "drain_deadline",
                                        "close_all", "exit")]
    assert wanted == ["drain_begun", "drain_closing", "drain_deadline", "close_all", "exit"], names


def test_drain_of_an_idle_server_logs_complete_after_begun(server_factory):
    srv = server_factory("log.format=json")
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(10) == 0
    names = [o.get("event") for o in json_lines(srv.log())]
    wanted = [n for n in names if n and n.startswith(("drain", "close_all"))]
    assert wanted == ["drain_begun", "drain_complete"], names


def test_ipv6_addresses_are_written_in_brackets(server_factory):
    srv = server_factory("log.format=json", "server.host=::1", ready=False)
    wait_until(lambda: events(srv.log(), "listening"), 10, what="the listening line")
    (listening,) = events(srv.log(), "listening")
    assert listening["address"] == f"[::1]:{srv.port}", listening
