"""Helpers for the admin API and fault-injection tests (CONTRACT sections 7, 8 and 9).

Everything talks to 127.0.0.1 only; every wait and loop is bounded in time and count.
Blocking HTTP calls made while WebSocket clients are alive go through `call()` (the
default thread pool) so that the event loop keeps running and the clients keep
answering the server's pings.
"""

import asyncio
import contextlib
import json
import re
import time
from datetime import datetime, timezone

import websockets

from conftest import HOST, http_request, scrape, wait_until

TOKEN = "e2e-admin-token-7f3a9c"
ADMIN_ENV = {"WSVISOR_ADMIN_TOKEN": TOKEN}
RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
CONNECTION_FIELDS = {"id", "user", "ip", "opened_at", "last_activity", "state", "restarts",
                     "queued_bytes"}


# --------------------------------------------------------------------- admin HTTP

def bearer(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def admin(port, method, path, body=None, token=TOKEN, headers=None, timeout=10.0):
    """One admin request; token=None sends no Authorization header."""
    h = dict(bearer(token)) if token is not None else {}
    h.update(headers or {})
    if body is not None:
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        h.setdefault("Content-Type", "application/json")
    elif method == "POST":
        body = b""
    return http_request(port, method, path, headers=h, body=body, timeout=timeout)


def admin_json(port, method, path, body=None, status=200, **kw):
    r = admin(port, method, path, body=body, **kw)
    assert r.status == status, f"{method} {path} body={body!r}: expected {status}, got {r!r}"
    assert r.is_json(), f"{method} {path}: not JSON: {r!r}"
    return r.json()


def connections(port, user=None):
    path = "/admin/connections"
    if user is not None:
        from urllib.parse import quote
        path += "?user=" + quote(user, safe="")
    return admin_json(port, "GET", path)


def tree(port):
    return admin_json(port, "GET", "/admin/tree")


def children(t):
    return {c["name"]: c for c in t["children"]}


def shard_counts(t):
    return {c["name"]: c["connections"] for c in t["children"] if c["name"].startswith("shard-")}


def fault(port, body, status=200):
    return admin_json(port, "POST", "/admin/faults", body=body, status=status)


def restarts(m, actor):
    return m.get("wsvisor_actor_restarts_total", 0.0, actor=actor)


def closed(m, reason):
    return m.get("wsvisor_connections_closed_total", 0.0, reason=reason)


def parse_rfc3339(text):
    assert RFC3339_MS.match(text), f"not RFC 3339 UTC with milliseconds: {text!r}"
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


async def call(fn, *args, **kw):
    """Runs a blocking function in the default thread pool, keeping the loop alive."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, lambda: fn(*args, **kw))


# ------------------------------------------------------------------ WebSocket clients

def ws_connect(port, user=None, **kw):
    kw.setdefault("ping_interval", None)  # the server pings; the client answers
    kw.setdefault("open_timeout", 20)
    kw.setdefault("close_timeout", 5)
    kw.setdefault("max_size", 1 << 20)
    headers = [("X-User-Id", user)] if user is not None else []
    return websockets.connect(f"ws://{HOST}:{port}/ws", extra_headers=headers, **kw)


async def open_many(port, users, concurrency=40):
    """Opens one client per entry of users (in order); returns the list of clients."""
    sem = asyncio.Semaphore(concurrency)

    async def one(u):
        async with sem:
            return await ws_connect(port, u)

    results = await asyncio.gather(*(one(u) for u in users), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for r in results:
            if not isinstance(r, BaseException):
                await r.close()
        raise AssertionError(f"{len(errors)} of {len(users)} connects failed: {errors[:3]!r}")
    return results


async def close_all(clients, timeout=15.0):
    async def one(ws):
        with contextlib.suppress(Exception):
            await ws.close()
    if clients:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(one(w) for w in clients)), timeout)


async def echo_once(ws, msg, timeout=20.0):
    await ws.send(msg)
    got = await asyncio.wait_for(ws.recv(), timeout)
    assert got == msg, f"echo mismatch: sent {msg!r}, got {got!r}"
    return got


async def wait_close(ws, timeout=15.0):
    """Waits for the connection to close (reading and discarding messages); returns
    (code, reason) of the close frame received from the server."""
    deadline = time.monotonic() + timeout
    for _ in range(100000):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("the server did not close the connection in time")
        try:
            await asyncio.wait_for(ws.recv(), remaining)
        except websockets.ConnectionClosed:
            break
        except asyncio.TimeoutError:
            raise AssertionError("the server did not close the connection in time") from None
    with contextlib.suppress(asyncio.TimeoutError, Exception):
        await asyncio.wait_for(ws.wait_closed(), max(0.1, deadline - time.monotonic()))
    return ws.close_code, ws.close_reason


class Echoer:
    """Sends numbered messages on one client and checks every echo, until stopped."""

    def __init__(self, ws, name, pace=0.25, recv_timeout=20.0):
        self.ws = ws
        self.name = name
        self.pace = pace
        self.recv_timeout = recv_timeout
        self.sent = 0
        self.received = 0
        self.errors = []
        self.close = None  # (code, reason) if the connection closed
        self.marks = {}

    @property
    def open(self):
        return self.close is None

    async def run(self, stop, max_messages=100000):
        import random
        rng = random.Random(hash(self.name))
        await asyncio.sleep(rng.uniform(0, self.pace))
        try:
            for i in range(max_messages):
                if stop.is_set():
                    break
                msg = f"{self.name}:{i}"
                await self.ws.send(msg)
                self.sent += 1
                try:
                    got = await asyncio.wait_for(self.ws.recv(), self.recv_timeout)
                except asyncio.TimeoutError:
                    self.errors.append(f"{self.name}: no echo of message {i} within "
                                       f"{self.recv_timeout}s")
                    return
                if got != msg:
                    self.errors.append(f"{self.name}: sent {msg!r}, got {got!r}")
                    return
                self.received += 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.pace * rng.uniform(0.5, 1.5))
        except websockets.ConnectionClosed as e:
            self.close = (e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else "")
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"{self.name}: {e!r}")

    def mark(self, label):
        self.marks[label] = self.received


class Fleet:
    """Many echoing clients in one event loop."""

    def __init__(self, pace=0.25):
        self.pace = pace
        self.echoers = []
        self.tasks = []
        self.stop = asyncio.Event()

    async def add(self, port, users, prefix="c"):
        clients = await open_many(port, users)
        new = []
        for u, ws in zip(users, clients):
            e = Echoer(ws, f"{prefix}{len(self.echoers)}-{u}", pace=self.pace)
            e.user = u
            self.echoers.append(e)
            new.append(e)
            self.tasks.append(asyncio.ensure_future(e.run(self.stop)))
        return new

    def open_echoers(self):
        return [e for e in self.echoers if e.open and not e.ws.closed]

    def mark(self, label):
        for e in self.echoers:
            e.mark(label)

    async def progressed(self, label, n=1, timeout=30.0, which=None):
        """Waits until every open echoer (or those in which) received n more echoes since
        mark(label)."""
        deadline = time.monotonic() + timeout
        while True:
            group = which if which is not None else self.echoers
            lagging = [e for e in group if e.open and not e.errors
                       and e.received - e.marks.get(label, 0) < n]
            if not lagging:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(lagging)} clients made fewer than {n} echoes in {timeout}s since "
                    f"{label!r}, e.g. {lagging[0].name} received={lagging[0].received} "
                    f"mark={lagging[0].marks.get(label)}")
            await asyncio.sleep(0.05)

    async def finish(self, timeout=40.0):
        self.stop.set()
        if self.tasks:
            done, pending = await asyncio.wait(self.tasks, timeout=timeout)
            for t in pending:
                t.cancel()
        await close_all([e.ws for e in self.echoers])

    def errors(self):
        return [err for e in self.echoers for err in e.errors]


def quiescent_counts(port):
    """(gauge, sum of shard counts in /admin/tree, len(/admin/connections))."""
    m = scrape(port)
    t = tree(port)
    return int(m["wsvisor_connections"]), sum(shard_counts(t).values()), len(connections(port))


def wait_counts(port, expected, timeout=15.0):
    holder = {}

    def check():
        holder["last"] = quiescent_counts(port)
        return holder["last"] == (expected, expected, expected)

    try:
        wait_until(check, timeout, interval=0.1, what=f"counts == {expected}")
    except AssertionError as e:
        raise AssertionError(f"{e}; last (gauge, tree sum, len(connections)) = "
                             f"{holder.get('last')}, open client sockets = {expected}") from None
