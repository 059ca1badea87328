"""Admission control (CONTRACT section 4): every refusal's format and metric, the order of
the checks, the accept token bucket, per-IP caps behind trusted proxies, per-user caps and
the emergency sweep of a user's zombie connections."""

import asyncio
import signal
import time

import pytest
import websockets

from admission_helpers import (RejectCounter, attempt, attempt_async, check_admitted,
                               check_refusal, rejected)
from conftest import http_get, run_async, scrape, wait_metric, wait_until

ADMIN_TOKEN = "admission-admin-token"


def close_all(attempts):
    for a in attempts:
        a.close()


async def in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def healthy(srv, n, headers=()):
    """n websockets clients that answer pings (as long as the event loop runs)."""
    return list(await asyncio.gather(*[
        websockets.connect(srv.url(), extra_headers=list(headers), ping_interval=None,
                           open_timeout=10, close_timeout=2)
        for _ in range(n)]))


async def close_ws(clients):
    await asyncio.gather(*[ws.close() for ws in clients], return_exceptions=True)


# ----------------------------------------------------------------- each refusal

def test_rate_limited_and_every_attempt_takes_a_token(server_factory):
    """accept_burst=4, accept_rate=1: the held connection and three refused attempts
    (forbidden_origin, unauthorized, ip_limit) empty the bucket; the next attempts get 429
    rate_limited whatever else is wrong with them (rate_limited beats forbidden_origin
    and unauthorized); a second later one token is back."""
    srv = server_factory("limits.accept_rate=1", "limits.accept_burst=4",
                         "limits.retry_after=2s", "limits.max_per_ip=1",
                         "auth.mode=header", 'server.allowed_origins=["https://a.b"]')
    counter = RejectCounter(srv.port)
    held = []
    try:
        t0 = time.monotonic()
        held.append(check_admitted(attempt(srv.port, [("X-User-Id", "u1")]), "token 1"))
        a = attempt(srv.port, [("X-User-Id", "u2"), ("Origin", "https://evil.example")])
        check_refusal(a, "forbidden_origin", where="token 2")
        counter.add("forbidden_origin")
        a = attempt(srv.port, [])
        check_refusal(a, "unauthorized", where="token 3")
        counter.add("unauthorized")
        a = attempt(srv.port, [("X-User-Id", "u2")])
        check_refusal(a, "ip_limit", 2, where="token 4")
        counter.add("ip_limit")
        # The bucket is empty now (4 tokens taken, less than 1 s for a refill).
        a = attempt(srv.port, [("X-User-Id", "u3")])
        check_refusal(a, "rate_limited", 2, where="after 4 tokens")
        counter.add("rate_limited")
        a = attempt(srv.port, [("X-User-Id", "u3"), ("Origin", "https://evil.example")])
        check_refusal(a, "rate_limited", 2, where="rate_limited beats forbidden_origin")
        counter.add("rate_limited")
        a = attempt(srv.port, [])
        check_refusal(a, "rate_limited", 2, where="rate_limited beats unauthorized")
        counter.add("rate_limited")
        elapsed = time.monotonic() - t0
        assert elapsed < 0.9, (
            f"the 7 attempts took {elapsed:.2f}s, so the bucket (accept_rate=1) may have "
            f"refilled: this run cannot tell")

        # One token per second comes back: within a few polls a forbidden origin is
        # answered 403 again (rate_limited polls take no token: the bucket is empty).
        seen = []

        def refilled():
            r = attempt(srv.port, [("X-User-Id", "u3"), ("Origin", "https://evil.example")])
            seen.append((round(time.monotonic() - t0, 2), r.status))
            if r.status == 429:
                check_refusal(r, "rate_limited", 2, where="polling for a refill")
                counter.add("rate_limited")
                return None
            return r

        r = wait_until(refilled, timeout=5, interval=0.2, what="a token after 1 s")
        check_refusal(r, "forbidden_origin", where=f"after a refill {seen}")
        counter.add("forbidden_origin")
        waited = seen[-1][0]
        assert waited >= 0.5, f"a token was back after {waited}s with accept_rate=1: {seen}"
        counter.verify()
    finally:
        close_all(held)


@pytest.mark.parametrize("origin,ok", [
    (None, True),
    ("https://a.b", True),
    ("http://localhost:3000", True),
    ("http://a.b", False),
    ("https://a.bc", False),
    ("https://x.a.b", False),
    ("https://a.b:8443", False),
    ("http://localhost", False),
    ("http://localhost:3001", False),
    ("null", False),
])
def test_forbidden_origin(server_factory, origin, ok):
    srv = server_factory('server.allowed_origins=["https://a.b", "http://localhost:3000"]')
    counter = RejectCounter(srv.port)
    headers = [] if origin is None else [("Origin", origin)]
    a = attempt(srv.port, headers)
    try:
        if ok:
            check_admitted(a, f"Origin {origin!r}")
        else:
            check_refusal(a, "forbidden_origin", where=f"Origin {origin!r}")
            counter.add("forbidden_origin")
        counter.verify()
    finally:
        a.close()


def test_unauthorized_in_header_mode(server_factory):
    srv = server_factory("auth.mode=header")
    counter = RejectCounter(srv.port)
    held = []
    try:
        for headers, what in [([], "no X-User-Id"), ([("X-User-Id", "")], "empty X-User-Id"),
                              ([("X-Other", "u1")], "another header")]:
            check_refusal(attempt(srv.port, headers), "unauthorized", where=what)
            counter.add("unauthorized")
        held.append(check_admitted(attempt(srv.port, [("X-User-Id", "u1")]), "X-User-Id: u1"))
        # Header names are case-insensitive.
        held.append(check_admitted(attempt(srv.port, [("x-user-id", "u1")]), "x-user-id: u1"))
        counter.verify()
    finally:
        close_all(held)


def test_unauthorized_with_custom_user_header(server_factory):
    srv = server_factory("auth.mode=header", "auth.user_header=X-Auth-User")
    counter = RejectCounter(srv.port)
    a = attempt(srv.port, [("X-User-Id", "u1")])
    check_refusal(a, "unauthorized", where="X-User-Id while user_header=X-Auth-User")
    counter.add("unauthorized")
    b = check_admitted(attempt(srv.port, [("X-Auth-User", "u1")]), "X-Auth-User: u1")
    b.close()
    counter.verify()


def test_ip_limit(server_factory):
    srv = server_factory("limits.max_per_ip=2", "limits.retry_after=3s")
    counter = RejectCounter(srv.port)
    held = []
    try:
        held = [check_admitted(attempt(srv.port), f"connection {i + 1} of 2") for i in range(2)]
        for i in range(3):
            check_refusal(attempt(srv.port), "ip_limit", 3, where=f"refusal {i + 1} at the cap")
            counter.add("ip_limit")
        counter.verify()
        # A slot comes back when a client leaves.
        held.pop(0).close()
        wait_metric(srv.port, lambda m: m.get("wsvisor_connections") == 1, timeout=5,
                    what="wsvisor_connections 1 after a client left")
        held.append(check_admitted(attempt(srv.port), "after a client left"))
        check_refusal(attempt(srv.port), "ip_limit", 3, where="at the cap again")
        counter.add("ip_limit")
        counter.verify()
    finally:
        close_all(held)


def test_user_limit_with_healthy_clients(server_factory):
    """Two healthy clients of U (they answer pings): the sweep of U frees nothing and the
    third upgrade is refused 429 user_limit within admission_timeout."""
    srv = server_factory("auth.mode=header", "limits.max_per_user=2", "limits.retry_after=4s",
                         "limits.admission_timeout=1s", "janitor.probe_timeout=500ms")
    counter = RejectCounter(srv.port)

    async def main():
        clients = await healthy(srv, 2, [("X-User-Id", "U")])
        try:
            for i in range(2):
                a = await attempt_async(srv.port, [("X-User-Id", "U")])
                a.close()
                check_refusal(a, "user_limit", 4, where=f"third connection of U (try {i + 1})")
                counter.add("user_limit")
                assert a.elapsed < 1.5, f"user_limit answered after {a.elapsed:.2f}s"
            # The healthy clients are still there and working.
            for ws in clients:
                await ws.send("still here")
                assert await asyncio.wait_for(ws.recv(), 5) == "still here"
            await in_thread(counter.verify)
        finally:
            await close_ws(clients)

    run_async(main(), timeout=60)


def test_per_user_isolation(server_factory):
    """User A at its cap never blocks user B (nor the other way round)."""
    srv = server_factory("auth.mode=header", "limits.max_per_user=2")
    counter = RejectCounter(srv.port)

    async def main():
        a_clients = await healthy(srv, 2, [("X-User-Id", "A")])
        b_clients = []
        try:
            r = await attempt_async(srv.port, [("X-User-Id", "A")])
            r.close()
            check_refusal(r, "user_limit", where="A at its cap")
            counter.add("user_limit")
            # B gets both of its own slots while A is at its cap.
            b_clients = await healthy(srv, 2, [("X-User-Id", "B")])
            r = await attempt_async(srv.port, [("X-User-Id", "B")])
            r.close()
            check_refusal(r, "user_limit", where="B at its cap")
            counter.add("user_limit")
            # A user whose name merely shares a prefix is someone else.
            c = await attempt_async(srv.port, [("X-User-Id", "AB")])
            check_admitted(c, "user AB while A and B are at their caps")
            c.close()
            # When A leaves once, A (and only A) gets a slot back.
            await a_clients.pop().close()
            await in_thread(lambda: wait_metric(
                srv.port, lambda m: m.get("wsvisor_connections") == 3, timeout=5,
                what="wsvisor_connections 3"))
            a_clients += await healthy(srv, 1, [("X-User-Id", "A")])
            r = await attempt_async(srv.port, [("X-User-Id", "B")])
            r.close()
            check_refusal(r, "user_limit", where="B still at its cap")
            counter.add("user_limit")
            await in_thread(counter.verify)
        finally:
            await close_ws(a_clients + b_clients)

    run_async(main(), timeout=60)


def test_server_full(server_factory):
    srv = server_factory("limits.max_connections=3", "limits.retry_after=2s")
    counter = RejectCounter(srv.port)

    async def main():
        clients = await healthy(srv, 3)
        try:
            for i in range(2):
                a = await attempt_async(srv.port)
                a.close()
                check_refusal(a, "server_full", 2, where=f"4th connection (try {i + 1})")
                counter.add("server_full")
                assert a.elapsed < 1.5, f"server_full answered after {a.elapsed:.2f}s"
            await in_thread(counter.verify)
            m = await in_thread(scrape, srv.port)
            assert m.get("wsvisor_connections") == 3, m.get("wsvisor_connections")
            # A slot comes back when a client leaves.
            await clients.pop().close()
            await in_thread(lambda: wait_metric(
                srv.port, lambda m: m.get("wsvisor_connections") == 2, timeout=5,
                what="wsvisor_connections 2"))
            clients.extend(await healthy(srv, 1))
            a = await attempt_async(srv.port)
            a.close()
            check_refusal(a, "server_full", 2, where="full again")
            counter.add("server_full")
            await in_thread(counter.verify)
        finally:
            await close_ws(clients)

    run_async(main(), timeout=60)


def test_draining(server_factory):
    """After SIGTERM every upgrade gets 503 draining with Retry-After, before the token
    bucket, the origin and the auth checks (accept_burst=2 would otherwise refuse)."""
    drain_timeout = 5
    srv = server_factory("shutdown.drain_spread=4s", f"shutdown.drain_timeout={drain_timeout}s",
                         "janitor.close_timeout=30s", "limits.retry_after=2s",
                         "limits.accept_rate=1", "limits.accept_burst=2", "auth.mode=header",
                         'server.allowed_origins=["https://a.b"]')
    counter = RejectCounter(srv.port)
    # A client that never answers the close frame keeps the drain going to drain_timeout.
    held = check_admitted(attempt(srv.port, [("X-User-Id", "u1")]), "held client")
    try:
        srv.signal(signal.SIGTERM)

        def is_draining():
            r = http_get(srv.port, "/health/ready", timeout=2)
            return r.status == 503

        wait_until(is_draining, timeout=3, interval=0.005, what="readiness 503 after SIGTERM")
        cases = [([("X-User-Id", "u2")], "valid"),
                 ([("X-User-Id", "u3")], "valid, bucket would be empty"),
                 ([("X-User-Id", "u4"), ("Origin", "https://evil.example")], "forbidden origin"),
                 ([], "no user"),
                 ([("X-User-Id", "u5")], "valid again")]
        for headers, what in cases:
            check_refusal(attempt(srv.port, headers), "draining", 2, where=f"draining: {what}")
            counter.add("draining")
        counter.verify()
        code = srv.wait_exit(drain_timeout + 5)
        assert code == 0, f"exit code {code} after the drain"
    finally:
        held.close()


def test_starting_if_observable(server_factory):
    """`starting` is only observable if the listener answers before the tree is up; try
    from the first moment the port accepts, and skip if the window cannot be hit."""
    srv = server_factory(ready=False)
    answers = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert srv.alive(), f"server exited: {srv.log()[-3000:]}"
        try:
            a = attempt(srv.port, timeout=2, close_wait=1)
        except (ConnectionRefusedError, ConnectionResetError):
            time.sleep(0.001)
            continue
        a.close()
        answers.append(a)
        if a.status == 101:
            break
        check_refusal(a, "starting", where="before the tree is up")
        break
    assert answers, "the listener never accepted within 10s"
    if answers[-1].status == 101:
        pytest.skip("the first upgrade the listener answered was already admitted: "
                    "the starting window is not observable from outside")


# ----------------------------------------------------------- order of the checks

ORDER_CASES = [
    # id, --set, held connections (headers), attempt headers, expected reason
    ("origin+unauthorized->forbidden_origin",
     ["auth.mode=header", 'server.allowed_origins=["https://a.b"]'],
     [], [("Origin", "https://evil.example")], "forbidden_origin"),
    ("unauthorized+ip_limit->unauthorized",
     ["auth.mode=header", "limits.max_per_ip=1"],
     [[("X-User-Id", "u1")]], [], "unauthorized"),
    ("origin+ip_limit->forbidden_origin",
     ["limits.max_per_ip=1", 'server.allowed_origins=["https://a.b"]'],
     [[]], [("Origin", "https://evil.example")], "forbidden_origin"),
    ("ip_limit+user_limit->ip_limit",
     ["auth.mode=header", "limits.max_per_ip=2", "limits.max_per_user=2"],
     [[("X-User-Id", "u1")], [("X-User-Id", "u1")]], [("X-User-Id", "u1")], "ip_limit"),
    ("ip_limit+server_full->ip_limit",
     ["limits.max_per_ip=2", "limits.max_connections=2"],
     [[], []], [], "ip_limit"),
    ("user_limit+server_full->user_limit",
     ["auth.mode=header", "limits.max_per_user=2", "limits.max_connections=2",
      "limits.max_per_ip=0"],
     [[("X-User-Id", "u1")], [("X-User-Id", "u1")]], [("X-User-Id", "u1")], "user_limit"),
    ("server_full for another user",
     ["auth.mode=header", "limits.max_per_user=2", "limits.max_connections=2",
      "limits.max_per_ip=0"],
     [[("X-User-Id", "u1")], [("X-User-Id", "u1")]], [("X-User-Id", "u2")], "server_full"),
    ("unauthorized+server_full->unauthorized",
     ["auth.mode=header", "limits.max_connections=1"],
     [[("X-User-Id", "u1")]], [], "unauthorized"),
    ("origin+server_full->forbidden_origin",
     ["limits.max_connections=1", 'server.allowed_origins=["https://a.b"]'],
     [[]], [("Origin", "https://evil.example")], "forbidden_origin"),
]


@pytest.mark.parametrize("sets,held,headers,reason", [c[1:] for c in ORDER_CASES],
                         ids=[c[0] for c in ORDER_CASES])
def test_order_of_checks(server_factory, sets, held, headers, reason):
    srv = server_factory(*sets)
    counter = RejectCounter(srv.port)

    async def main():
        clients = []
        try:
            for h in held:
                clients += await healthy(srv, 1, h)
            for i in range(2):
                a = await attempt_async(srv.port, headers)
                a.close()
                check_refusal(a, reason, where=f"try {i + 1} with {headers}")
                counter.add(reason)
            await in_thread(counter.verify)
        finally:
            await close_ws(clients)

    run_async(main(), timeout=60)


# ------------------------------------------------------------------ Retry-After

@pytest.mark.parametrize("retry_after", [4, 10])
def test_retry_after_is_jittered_and_in_range(server_factory, retry_after):
    srv = server_factory("limits.max_per_ip=1", f"limits.retry_after={retry_after}s")
    counter = RejectCounter(srv.port)
    held = check_admitted(attempt(srv.port), "the one slot of this IP")
    try:
        values = []
        for i in range(40):
            values.append(check_refusal(attempt(srv.port), "ip_limit", retry_after,
                                        where=f"refusal {i + 1}"))
            counter.add("ip_limit")
        assert len(set(values)) > 1, (
            f"40 refusals all got Retry-After {values[0]}: not jittered "
            f"(expected values spread over [{retry_after}, {1.5 * retry_after:g}])")
        counter.verify()
    finally:
        held.close()


def test_retry_after_on_rate_limited_is_jittered(server_factory):
    srv = server_factory("limits.accept_rate=1", "limits.accept_burst=1",
                         "limits.retry_after=10s")
    counter = RejectCounter(srv.port)
    first = check_admitted(attempt(srv.port), "the one token")
    first.close()
    values = []
    for i in range(30):
        a = attempt(srv.port)
        if a.status == 101:  # a refilled token (1 per second): fine, not a refusal
            a.close()
            continue
        values.append(check_refusal(a, "rate_limited", 10, where=f"refusal {i + 1}"))
        counter.add("rate_limited")
    assert len(values) >= 20, f"only {len(values)} of 30 attempts were rate limited"
    assert len(set(values)) > 1, f"{len(values)} refusals all got Retry-After {values[0]}"
    counter.verify()


# --------------------------------------------------------------- trusted proxies

def admin_connections(port):
    r = http_get(port, "/admin/connections",
                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status == 200, r
    return r.json()


def test_trusted_proxy_per_ip_cap_uses_forwarded_address(server_factory):
    srv = server_factory('server.trusted_proxies=["127.0.0.1/32"]', "limits.max_per_ip=2",
                         env={"WSVISOR_ADMIN_TOKEN": ADMIN_TOKEN})
    counter = RejectCounter(srv.port)
    held = []
    try:
        for ip in ("10.1.1.1", "10.1.1.2"):
            for i in range(2):
                held.append(check_admitted(attempt(srv.port, [("X-Forwarded-For", ip)]),
                                           f"{ip} connection {i + 1} of 2"))
        # Four connections from 127.0.0.1, two per forwarded address: both are at the cap.
        for ip in ("10.1.1.1", "10.1.1.2"):
            check_refusal(attempt(srv.port, [("X-Forwarded-For", ip)]), "ip_limit",
                          where=f"third from {ip}")
            counter.add("ip_limit")
        # The client is the last address that is not a trusted proxy: a spoofed first
        # entry does not help, and a trusted proxy at the end is skipped.
        check_refusal(attempt(srv.port, [("X-Forwarded-For", "6.6.6.6, 10.1.1.1")]),
                      "ip_limit", where="XFF '6.6.6.6, 10.1.1.1'")
        counter.add("ip_limit")
        check_refusal(attempt(srv.port, [("X-Forwarded-For", "10.1.1.2, 127.0.0.1")]),
                      "ip_limit", where="XFF '10.1.1.2, 127.0.0.1'")
        counter.add("ip_limit")
        held.append(check_admitted(attempt(srv.port, [("X-Forwarded-For", "10.1.1.1, 10.1.1.3")]),
                                   "XFF '10.1.1.1, 10.1.1.3' (client 10.1.1.3)"))
        # No X-Forwarded-For: the peer itself (127.0.0.1) is the client, with its own count.
        held.append(check_admitted(attempt(srv.port), "no X-Forwarded-For"))
        counter.verify()

        conns = admin_connections(srv.port)
        ips = sorted(c["ip"] for c in conns)
        assert ips == sorted(["10.1.1.1", "10.1.1.1", "10.1.1.2", "10.1.1.2", "10.1.1.3",
                              "127.0.0.1"]), conns
    finally:
        close_all(held)


@pytest.mark.parametrize("sets", [[], ['server.trusted_proxies=["10.0.0.0/8"]']],
                         ids=["no-trusted-proxies", "peer-not-trusted"])
def test_forwarded_for_ignored_from_untrusted_peer(server_factory, sets):
    srv = server_factory("limits.max_per_ip=2", *sets, env={"WSVISOR_ADMIN_TOKEN": ADMIN_TOKEN})
    counter = RejectCounter(srv.port)
    held = []
    try:
        held.append(check_admitted(attempt(srv.port, [("X-Forwarded-For", "10.2.2.1")]), "1"))
        held.append(check_admitted(attempt(srv.port, [("X-Forwarded-For", "10.2.2.2")]), "2"))
        check_refusal(attempt(srv.port, [("X-Forwarded-For", "10.2.2.3")]), "ip_limit",
                      where="third from 127.0.0.1 with yet another XFF")
        counter.add("ip_limit")
        counter.verify()
        conns = admin_connections(srv.port)
        assert sorted(c["ip"] for c in conns) == ["127.0.0.1", "127.0.0.1"], conns
    finally:
        close_all(held)


# ------------------------------------------------------------- zombies at a cap

def read_close_or_eof(a, timeout):
    """For a raw 101 socket that never read: the close code of the first close frame in
    what arrived (pings skipped), 'eof' if the stream ended without one, None if still
    open without a close frame after timeout."""
    sock = a.sock
    buf = a.body
    deadline = time.monotonic() + timeout
    while True:
        # Parse complete frames in buf.
        pos = 0
        while len(buf) - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            hdr = 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2:pos + 4], "big")
                hdr = 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2:pos + 10], "big")
                hdr = 10
            if len(buf) - pos < hdr + n:
                break
            payload = buf[pos + hdr:pos + hdr + n]
            if b0 & 0x0F == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                return code, payload[2:].decode("utf-8", "replace")
            pos += hdr + n
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except OSError:
            return "eof"
        if not chunk:
            return "eof"
        buf += chunk


@pytest.mark.parametrize("kind", ["zombies", "healthy"])
def test_user_at_cap_sweep_evicts_zombies_only(server_factory, kind):
    """max_per_user=2: with two zombie connections (upgraded, then never reading or
    answering pings) of U, a third upgrade of U is admitted after the emergency sweep
    evicts a zombie within probe_timeout (< admission_timeout); with two healthy clients
    it is refused 429 user_limit."""
    srv = server_factory("auth.mode=header", "limits.max_per_user=2",
                         "janitor.probe_timeout=500ms", "limits.admission_timeout=1s")
    counter = RejectCounter(srv.port)
    before = scrape(srv.port)

    async def main():
        clients, zombies, third = [], [], None
        try:
            if kind == "zombies":
                zombies = [await in_thread(attempt, srv.port, [("X-User-Id", "U")])
                           for _ in range(2)]
                for z in zombies:
                    check_admitted(z, "zombie")
            else:
                clients = await healthy(srv, 2, [("X-User-Id", "U")])
            third = await attempt_async(srv.port, [("X-User-Id", "U")])
            if kind == "healthy":
                third.close()
                check_refusal(third, "user_limit", where="third of U, two healthy")
                counter.add("user_limit")
                await in_thread(counter.verify)
                for ws in clients:
                    await ws.send("alive")
                    assert await asyncio.wait_for(ws.recv(), 5) == "alive"
                return None
            check_admitted(third, "third of U with two zombies")
            assert third.elapsed < 1.5, (
                f"admitted after {third.elapsed:.2f}s (admission_timeout 1s)")
            # The third connection works.
            third.sock.write(b"\x81\x84\x00\x00\x00\x00ping")
            await third.sock.drain()
            frame = await asyncio.wait_for(third.reader.readexactly(6), 5)
            assert frame == b"\x81\x04ping", frame
            results = [await in_thread(read_close_or_eof, z, 3.0) for z in zombies]
            return results
        finally:
            await close_ws(clients)
            for z in zombies:
                z.close()
            if third is not None:
                third.close()

    results = run_async(main(), timeout=60)
    if kind == "healthy":
        return
    evicted = [r for r in results if r is not None]
    assert evicted, f"no zombie was closed after the third upgrade was admitted: {results}"
    m = wait_metric(srv.port, lambda m: m.get("wsvisor_connections") is not None
                    and m.total("wsvisor_evictions_total")
                    > before.total("wsvisor_evictions_total"),
                    timeout=5, what="an eviction counted")
    ev = {dict(k).get("reason"): v - before.get("wsvisor_evictions_total", 0, **dict(k))
          for k, v in m.series("wsvisor_evictions_total").items()}
    assert ev.get("emergency", 0) >= 1, f"eviction deltas {ev}: expected reason emergency"
    sweeps = (m.get("wsvisor_sweeps_total", 0, kind="emergency")
              - before.get("wsvisor_sweeps_total", 0, kind="emergency"))
    assert sweeps >= 1, "no emergency sweep counted"
    closed_evicted = (m.get("wsvisor_connections_closed_total", 0, reason="evicted")
                      - before.get("wsvisor_connections_closed_total", 0, reason="evicted"))
    assert closed_evicted >= 1, "no close with reason evicted counted"
    assert rejected(m) == counter.before, "the admitted third upgrade counted a refusal"
    # All gone: every count back to 0.
    wait_metric(srv.port, lambda m: m.get("wsvisor_connections") == 0, timeout=10,
                what="wsvisor_connections 0 after every client left")


def test_sweep_evicted_zombie_gets_close_1013(server_factory):
    """CONTRACT section 4: "Sweep evictions close with 1013." A zombie evicted by the
    emergency sweep of its user finds a close frame 1013 'evicted' in its receive buffer
    when it finally reads (the server may close TCP right after sending it)."""
    srv = server_factory("auth.mode=header", "limits.max_per_user=2",
                         "janitor.probe_timeout=500ms", "limits.admission_timeout=1s")
    zombies = [check_admitted(attempt(srv.port, [("X-User-Id", "U")]), "zombie")
               for _ in range(2)]
    third = None
    try:
        third = check_admitted(attempt(srv.port, [("X-User-Id", "U")]), "third of U")
        results = [read_close_or_eof(z, 3.0) for z in zombies]
        # The sweep stops as soon as a slot is free: one zombie is evicted (with a close
        # frame), the other may stay until the heartbeat finds it.
        evicted = [r for r in results if isinstance(r, tuple)]
        assert evicted, f"no zombie got a close frame after the third upgrade was admitted: {results}"
        assert all(r == (1013, "evicted") for r in evicted), (
            f"sweep-evicted zombies got {results} ('eof' = TCP closed with no close frame "
            f"before it); CONTRACT section 4 says sweep evictions close with 1013\n"
            f"{srv.log()[-2000:]}")
    finally:
        for z in zombies:
            z.close()
        if third is not None:
            third.close()


def test_user_overflow_evict_idle_evicts_longest_idle_with_1013(server_factory):
    """user_overflow = "evict_idle": a user at its cap gets an aggressive sweep of its own
    connections; the longest-idle (healthy) one is closed with 1013 'evicted' and the new
    upgrade is admitted. Other users' connections are untouched."""
    srv = server_factory("auth.mode=header", "limits.max_per_user=2",
                         "limits.user_overflow=evict_idle", "janitor.probe_timeout=500ms",
                         "limits.admission_timeout=1s")
    before = scrape(srv.port)

    async def main():
        idle = await healthy(srv, 1, [("X-User-Id", "U")])
        other = await healthy(srv, 1, [("X-User-Id", "V")])
        await asyncio.sleep(0.3)  # ordering of activity, not an assertion wait
        busy = await healthy(srv, 1, [("X-User-Id", "U")])
        await busy[0].send("recent")
        assert await asyncio.wait_for(busy[0].recv(), 5) == "recent"
        third = None
        try:
            third = await attempt_async(srv.port, [("X-User-Id", "U")])
            check_admitted(third, "third of U with user_overflow=evict_idle")
            assert third.elapsed < 1.5, f"admitted after {third.elapsed:.2f}s"
            try:
                await asyncio.wait_for(idle[0].recv(), 5)
                raise AssertionError("the idle connection got a message instead of a close")
            except websockets.ConnectionClosed as e:
                code = (e.rcvd.code, e.rcvd.reason) if e.rcvd else None
            assert code == (1013, "evicted"), f"the idle connection closed with {code}"
            for ws in busy + other:
                await ws.send("still here")
                assert await asyncio.wait_for(ws.recv(), 5) == "still here"
        finally:
            if third is not None:
                third.close()
            await close_ws(idle + other + busy)

    run_async(main(), timeout=60)
    m = wait_metric(srv.port, lambda m: m.get("wsvisor_connections") == 0, timeout=10,
                    what="wsvisor_connections 0")
    assert (m.get("wsvisor_evictions_total", 0, reason="emergency")
            - before.get("wsvisor_evictions_total", 0, reason="emergency")) == 1
    assert rejected(m) == rejected(before), "an admitted upgrade counted a refusal"
