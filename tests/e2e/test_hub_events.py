"""Lifecycle events in hub mode (CONTRACT 11.3): `connect` is emitted after the connect
command succeeded (not at the 101), exactly one `disconnect` follows every `connect`,
with the token's user, whatever ended the connection, and never before that
connection's `connect`; a socket that never connects (or is refused at its connect
command) produces no event at all.

The backend is a tiny http.server in the test (loopback), recording every POST and
answering 200. Clients are python3-websockets speaking Centrifugo's JSON protocol
(hub_helpers.ProtocolClient), identified by HS256 connect tokens (auth.mode none).

Loopback only; every wait is bounded; the servers stop at the end.
"""

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from admin_helpers import ADMIN_ENV, admin_json, call, fault, parse_rfc3339
from conftest import HOST, run_async, scrape, wait_metric
from hub_helpers import (
    DISCONNECT_CONNECTION_LIMIT,
    DISCONNECT_STALE,
    ProtocolClient,
    api_result,
    close_clients,
    connection_token,
    start_hub,
)

USERS = [f"u{n}" for n in range(5)]
PER_USER = 4  # = limits.max_per_user: a fifth is refused at its connect command
CONNECT_TIMEOUT_S = 2  # hub.connect_timeout
DISCONNECT_INVALID_TOKEN = 3500
EVENT_FIELDS = {"id", "type", "connection", "user", "ip", "node", "at", "meta"}
DISCONNECT_FIELDS = EVENT_FIELDS | {"code", "reason", "close_reason", "duration_ms"}


class EventsReceiver:
    """The backend's events endpoint: records every POST (arrival order, the
    X-Wsvisor-Event-Id header, the JSON body, the status answered) and answers 200; with
    `fail_first`, the first attempt of every event id gets 503 (wsvisor retries it)."""

    def __init__(self, fail_first=False):
        self.lock = threading.Lock()
        self.fail_first = fail_first
        self.posts = []  # (arrival index, header event id, body or the raw bytes, status)
        self.tried = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                header_id = self.headers.get("X-Wsvisor-Event-Id")
                with receiver.lock:
                    status = 200
                    if receiver.fail_first and header_id not in receiver.tried:
                        status = 503
                    receiver.tried.add(header_id)
                    receiver.posts.append((len(receiver.posts), header_id, body, status))
                answer = b'{"ok":true}' if status == 200 else b'{"error":"try again"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{HOST}:{self.server.server_address[1]}/events"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def attempts(self):
        """Every POST: [(arrival index, event, status)]."""
        with self.lock:
            posts = list(self.posts)
        out = []
        for index, header_id, body, status in posts:
            assert isinstance(body, dict), f"an event that is not a JSON object: {body!r}"
            assert header_id == body.get("id"), (header_id, body)
            out.append((index, body, status))
        return out

    def events(self):
        """Distinct accepted events (delivery is at least once: a repeat of an id is
        dropped) in the order they were first accepted: [(arrival index, event)]."""
        seen, out = set(), []
        for index, body, status in self.attempts():
            if status == 200 and body["id"] not in seen:
                seen.add(body["id"])
                out.append((index, body))
        return out

    def of_type(self, kind):
        return [e for _, e in self.events() if e["type"] == kind]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = EventsReceiver()
    yield r
    r.stop()


async def wait_events(receiver, kind, count, timeout=15.0):
    deadline = time.monotonic() + timeout
    while len(receiver.of_type(kind)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(receiver.of_type(kind))} of {count} {kind} events "
                                 f"within {timeout}s: {receiver.events()}")
        await asyncio.sleep(0.05)
    return receiver.of_type(kind)


async def settled(receiver, port, timeout=15.0):
    """Waits until the events queue is drained: the receiver holds every event the
    server counts as sent, as many disconnects as connects, and that for 0.5 s. (A
    connection's slot is released before its events are all delivered.)"""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        m = await call(scrape, port)
        now = (int(m["wsvisor_events_sent_total"]), len(receiver.of_type("connect")),
               len(receiver.of_type("disconnect")))
        if now == last and now[0] == now[1] + now[2] and now[1] == now[2]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"events not settled within {timeout}s: (sent, connects, "
                                 f"disconnects) = {now}")
        last = now
        await asyncio.sleep(0.5)


def test_one_connect_and_one_disconnect_per_hub_connection(server_factory, tmp_path, receiver):
    srv = start_hub(server_factory, tmp_path, f"events.url={receiver.url}",
                    "faults.enabled=true", f"limits.max_per_user={PER_USER}",
                    f"hub.connect_timeout={CONNECT_TIMEOUT_S}s",
                    "janitor.ping_interval=2s", "janitor.pong_timeout=2s",
                    "supervision.connection_restarts=3",
                    "supervision.connection_restart_period=60s", env=ADMIN_ENV)
    port = srv.port

    async def main():
        clients, strays = [], []
        try:
            # 1. Twenty sockets, open and not connected yet: the 101 is no connect event.
            for user in USERS:
                for k in range(PER_USER):
                    c = await ProtocolClient.open(port, name=f"{user}/{k}", connect=False)
                    c.user = user
                    clients.append(c)
            await call(wait_metric, port, lambda m: m["wsvisor_connections"] == 20, 10.0,
                       what="20 sockets open")
            await asyncio.sleep(0.5)
            assert receiver.events() == [], "an event before any connect command"

            # 2. Each connects with its user's token: then, and only then, its connect.
            before = time.time()
            for c in clients:
                reply = await c.connect(connection_token(c.user))
                assert reply["client"], reply
            connects = await wait_events(receiver, "connect", 20)
            assert {e["connection"]: e["user"] for e in connects} == {
                c.client: c.user for c in clients}, connects
            for e in connects:
                assert EVENT_FIELDS <= set(e), e
                assert e["ip"] == "127.0.0.1", e
                assert parse_rfc3339(e["at"]).timestamp() >= before - 1.0, (before, e)
            assert receiver.of_type("disconnect") == []

            # Sockets that never become a connection make no event: one that never sends
            # connect (closed 3502 after hub.connect_timeout), one with a bad token (3500),
            # one over its user's cap at its connect command (3504).
            stale = await ProtocolClient.open(port, name="stale", connect=False)
            bad = await ProtocolClient.open(port, name="bad-token", connect=False)
            over = await ProtocolClient.open(port, name="over-cap", connect=False)
            strays = [stale, bad, over]
            opened_stale = time.monotonic()
            await bad.ws.send(json.dumps({"id": 1, "connect": {
                "token": connection_token("u0", secret="not-the-secret-" * 3)}}))
            await over.ws.send(json.dumps({"id": 1, "connect": {
                "token": connection_token("u0")}}))
            assert (await bad.wait_closed(10.0))[0] == DISCONNECT_INVALID_TOKEN
            assert (await over.wait_closed(10.0))[0] == DISCONNECT_CONNECTION_LIMIT

            # 3. End the twenty in different ways, a user each.
            by_user = {u: [c for c in clients if c.user == u] for u in USERS}
            # u0: the client goes (two with a close frame, two drop TCP).
            for c in by_user["u0"][:2]:
                await c.close()
            for c in by_user["u0"][2:]:
                await c.abort()
            # u1: the backend's /api/disconnect (Centrifugo's default: 3503).
            assert await call(api_result, port, "disconnect", {"user": "u1"}) == {}
            # u2: crashes past the restart budget (3 within the period): the 4th closes.
            for _ in range(4):
                assert await call(fault, port, {"action": "crash", "target": "connection",
                                                "user": "u2"}) == {"applied": PER_USER}
            # u3: the operator's /admin/close.
            assert await call(admin_json, port, "POST", "/admin/close?user=u3") == {
                "closed": PER_USER}
            # u4: zombies, they stop answering the server's pings.
            for c in by_user["u4"]:
                c.answer_pings = False

            codes = {}
            for c in clients:
                codes[c.name] = await c.wait_closed(20.0)
            assert {codes[c.name][0] for c in by_user["u1"]} == {3503}, codes
            assert {codes[c.name][0] for c in by_user["u2"]} == {1011}, codes
            assert {codes[c.name][0] for c in by_user["u3"]} == {4002}, codes
            code, _ = await stale.wait_closed(CONNECT_TIMEOUT_S + 8.0)
            assert code == DISCONNECT_STALE, code
            assert time.monotonic() - opened_stale >= CONNECT_TIMEOUT_S - 0.5

            m = await call(wait_metric, port, lambda m: m["wsvisor_connections"] == 0, 15.0,
                           what="every slot released")
            await wait_events(receiver, "disconnect", 20)
            # Every event the server had to send was sent, and no more come.
            await call(wait_metric, port, lambda m: m["wsvisor_events_sent_total"] >= 40, 10.0,
                       what="40 events sent")
            await asyncio.sleep(0.5)
            m = await call(scrape, port)
            assert m["wsvisor_events_sent_total"] == 40, m.text
            assert m["wsvisor_events_failed_total"] == 0 and m["wsvisor_events_dropped_total"] == 0
        finally:
            await close_clients(clients + strays)

        # 4. Exactly one disconnect per connect, same connection and user, after it.
        events = receiver.events()
        assert len(events) == 40, events
        by_connection = {}
        for index, e in events:
            by_connection.setdefault(e["connection"], []).append((index, e))
        assert set(by_connection) == {c.client for c in clients}, (
            "events for connections that never connected", set(by_connection))
        expected_reason = {"u0": "client", "u1": "api", "u2": "restart_budget", "u3": "admin",
                           "u4": "zombie"}
        expected_code = {"u1": 3503, "u2": 1011, "u3": 4002}
        problems = []
        for c in clients:
            pair = by_connection[c.client]
            kinds = [e["type"] for _, e in pair]
            if kinds != ["connect", "disconnect"]:
                problems.append(f"{c.name}: {kinds} (arrival order)")
                continue
            (_, connect), (_, disconnect) = pair
            if not DISCONNECT_FIELDS <= set(disconnect):
                problems.append(f"{c.name}: disconnect lacks {DISCONNECT_FIELDS - set(disconnect)}")
            if connect["user"] != c.user or disconnect["user"] != c.user:
                problems.append(f"{c.name}: users {connect['user']!r}, {disconnect['user']!r}")
            if parse_rfc3339(disconnect["at"]) < parse_rfc3339(connect["at"]):
                problems.append(f"{c.name}: disconnect at {disconnect['at']} before connect "
                                f"at {connect['at']}")
            if disconnect["close_reason"] != expected_reason[c.user]:
                problems.append(f"{c.name}: close_reason {disconnect['close_reason']!r}, "
                                f"expected {expected_reason[c.user]!r}")
            if c.user in expected_code and disconnect["code"] != expected_code[c.user]:
                problems.append(f"{c.name}: code {disconnect['code']}, "
                                f"expected {expected_code[c.user]}")
            if not isinstance(disconnect["duration_ms"], int) or disconnect["duration_ms"] < 0:
                problems.append(f"{c.name}: duration_ms {disconnect['duration_ms']!r}")
        assert not problems, "\n".join(problems)

    run_async(main(), timeout=80.0)


def test_a_disconnect_never_overtakes_its_connect_even_when_events_are_retried(
        server_factory, tmp_path):
    """The backend fails the first attempt of every event (503): each connect is retried,
    and its connection's disconnect, due meanwhile (the client left at once), waits
    behind it. Then a drain: its disconnects are delivered (retried too) before the
    process exits."""
    receiver = EventsReceiver(fail_first=True)
    try:
        srv = start_hub(server_factory, tmp_path, f"events.url={receiver.url}",
                        "upstream.backoff_min=100ms", "upstream.backoff_max=300ms",
                        "shutdown.drain_spread=200ms")
        port = srv.port

        async def main():
            # Ten that connect and leave at once, and three that stay for the drain.
            leaving = []
            for n in range(10):
                c = await ProtocolClient.open(port, connection_token(f"w{n % 2}"),
                                              name=f"leaving-{n}")
                c.user = f"w{n % 2}"
                await c.close()
                leaving.append(c)
            staying = []
            for n in range(3):
                c = await ProtocolClient.open(port, connection_token("stay"), name=f"stay-{n}")
                c.user = "stay"
                staying.append(c)
            await wait_events(receiver, "disconnect", 10)
            await wait_events(receiver, "connect", 13)
            # The drain, while the three are there (and answer): 1001 for each.
            stopped = asyncio.ensure_future(call(srv.stop))
            for c in staying:
                code, reason = await c.wait_closed(15.0)
                assert (code, reason) == (1001, "shutdown"), (c.name, code, reason)
            assert await stopped == 0
            return leaving, staying

        leaving, staying = run_async(main(), timeout=40.0)
        assert srv.log().count("lifecycle event given up") == 0, srv.log()[-3000:]
    finally:
        receiver.stop()

    attempts = receiver.attempts()
    accepted = receiver.events()
    assert len(accepted) == 26, accepted  # 13 connections, 2 events each
    by_connection = {}
    for index, e in accepted:
        by_connection.setdefault(e["connection"], {})[e["type"]] = (index, e)
    clients = {c.client: c for c in leaving + staying}
    assert set(by_connection) == set(clients), by_connection.keys()
    problems = []
    for connection, pair in by_connection.items():
        c = clients[connection]
        if set(pair) != {"connect", "disconnect"}:
            problems.append(f"{c.name}: {sorted(pair)}")
            continue
        connect_accepted = pair["connect"][0]
        # No attempt of the disconnect, not even a refused one, before the connect got in.
        early = [i for i, e, _ in attempts
                 if e["connection"] == connection and e["type"] == "disconnect"
                 and i < connect_accepted]
        if early:
            problems.append(f"{c.name}: disconnect attempts {early} before its connect was "
                            f"accepted at {connect_accepted}")
        for kind in ("connect", "disconnect"):
            if pair[kind][1]["user"] != c.user:
                problems.append(f"{c.name}: {kind} user {pair[kind][1]['user']!r}")
        why = pair["disconnect"][1]["close_reason"]
        if why != ("drain" if c.user == "stay" else "client"):
            problems.append(f"{c.name}: close_reason {why!r}")
    # Every event was refused once and accepted on its retry.
    refused = [e["id"] for _, e, status in attempts if status != 200]
    assert sorted(refused) == sorted(e["id"] for _, e in accepted), (refused, accepted)
    assert not problems, "\n".join(problems)


def test_clients_that_leave_while_their_connect_is_decided(server_factory, tmp_path, receiver):
    """Clients that send connect and go at once, before, during or after its reply (the
    per-user claim at the limit guard is under way): for each, either no event at all or
    exactly one connect then one disconnect; and no slot of their user is left behind."""
    cap = 5
    srv = start_hub(server_factory, tmp_path, f"events.url={receiver.url}",
                    "hub.user_personal_channel=true", f"limits.max_per_user={cap}")
    port = srv.port
    users = ["r0", "r1", "r2"]

    async def main():
        async def one(n):
            user = users[n % len(users)]
            c = await ProtocolClient.open(port, name=f"race-{n}", connect=False)
            await c.ws.send(json.dumps({"id": 1, "connect": {"token": connection_token(user)}}))
            if n % 4:
                await asyncio.sleep((n % 4) * 0.002)
            await c.abort()
            return c

        for round_ in range(4):
            await asyncio.gather(*(one(round_ * 30 + n) for n in range(30)))
        await call(wait_metric, port, lambda m: m["wsvisor_connections"] == 0
                   and m["wsvisor_hub_subscriptions"] == 0, 15.0,
                   what="every racing client's slot and subscription released")
        await settled(receiver, port)
        # Every slot of every user can be filled again, to the cap.
        clients = []
        try:
            for user in users:
                for k in range(cap):
                    c = await ProtocolClient.open(port, connection_token(user),
                                                  name=f"{user}/{k}")
                    assert set(c.connect_reply.get("subs", {})) == {f"#{user}"}, c.connect_reply
                    clients.append(c)
        finally:
            await close_clients(clients)
        await call(wait_metric, port, lambda m: m["wsvisor_connections"] == 0, 15.0,
                   what="the slots released again")
        await settled(receiver, port)

    run_async(main(), timeout=60.0)
    by_connection = {}
    for index, e in receiver.events():
        by_connection.setdefault(e["connection"], []).append(e)
    wrong = {c: [e["type"] for e in es] for c, es in by_connection.items()
             if [e["type"] for e in es] != ["connect", "disconnect"]
             or len({e["user"] for e in es}) != 1}
    assert not wrong, f"{len(wrong)} connections with wrong events: {sorted(wrong.items())}"
    print(f"{len(by_connection) - len(users) * cap} of 120 racing clients got a connect event")


def test_the_events_carry_the_connection_tokens_meta(server_factory, tmp_path, receiver):
    """The event's `meta` (CONTRACT 11.3) in hub mode is the connection's meta, the
    connect token's `meta` claim (13.1), in the connect and the disconnect alike."""
    srv = start_hub(server_factory, tmp_path, f"events.url={receiver.url}")
    port = srv.port
    meta = {"plan": "pro", "tenant": 7}

    async def main():
        with_meta = await ProtocolClient.open(port, connection_token("alice", meta=meta))
        without = await ProtocolClient.open(port, connection_token("bob"))
        await close_clients([with_meta, without])
        await settled(receiver, port)
        return with_meta.client, without.client

    alice, bob = run_async(main(), timeout=30.0)
    events = [e for _, e in receiver.events()]
    assert len(events) == 4, events
    for e in events:
        if e["connection"] == alice:
            assert e["meta"] == meta, e
        else:
            assert e["connection"] == bob and e["meta"] in (None, {}), e


def test_a_shard_crash_gives_its_connections_their_disconnect(server_factory, tmp_path,
                                                              receiver):
    """A crashed shard's connections close 1011 together (CONTRACT 8) and each gets its
    one disconnect (close_reason shard_down, 11.3); the other shard's stay, and their
    subscriptions with them; the crashed ones' subscriptions go at once."""
    srv = start_hub(server_factory, tmp_path, f"events.url={receiver.url}",
                    "hub.user_personal_channel=true", "faults.enabled=true",
                    "server.io_threads=2", "server.actor_threads=2", env=ADMIN_ENV)
    port = srv.port

    async def main():
        clients = []
        try:
            for n in range(10):
                c = await ProtocolClient.open(port, connection_token(f"s{n}"), name=f"s{n}")
                c.user = f"s{n}"
                clients.append(c)
            await wait_events(receiver, "connect", 10)
            assert await call(fault, port, {"action": "crash", "target": "shard",
                                            "index": 0}) == {"applied": 1}
            await wait_events(receiver, "disconnect", 1)
            await asyncio.sleep(1.0)  # the whole shard's, and nobody else's
            gone = [c for c in clients if c.closed.is_set()]
            assert gone and len(gone) < len(clients), [c.close_code for c in clients]
            assert {c.close_code for c in gone} == {1011}, [(c.name, c.close_code) for c in gone]
            m = await call(wait_metric, port,
                           lambda m: m["wsvisor_connections"] == len(clients) - len(gone)
                           and m["wsvisor_hub_subscriptions"] == len(clients) - len(gone),
                           10.0, what="the crashed shard's slots and subscriptions released")
            assert m["wsvisor_hub_channels"] == len(clients) - len(gone), m.text
            # The others still get their publications.
            for c in clients:
                if c not in gone:
                    await call(api_result, port, "publish",
                               {"channel": f"#{c.user}", "data": {"to": c.user}})
            deadline = time.monotonic() + 10
            while any(not c.publications for c in clients if c not in gone):
                assert time.monotonic() < deadline, "a survivor lost its subscription"
                await asyncio.sleep(0.05)
        finally:
            await close_clients(clients)
        await call(wait_metric, port, lambda m: m["wsvisor_connections"] == 0, 10.0,
                   what="every slot released")
        await settled(receiver, port)
        return {c.client: c for c in clients}, {c.client for c in gone}

    clients, gone = run_async(main(), timeout=40.0)
    by_connection = {}
    for _, e in receiver.events():
        by_connection.setdefault(e["connection"], []).append(e)
    assert set(by_connection) == set(clients), by_connection.keys()
    for connection, events in by_connection.items():
        assert [e["type"] for e in events] == ["connect", "disconnect"], events
        assert {e["user"] for e in events} == {clients[connection].user}, events
        want = "shard_down" if connection in gone else "client"
        assert events[1]["close_reason"] == want, events
