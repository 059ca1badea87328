#!/usr/bin/python3
"""A small real backend behind wsvisor in gateway mode (CONTRACT.md sections 10 to 12).

The use case is the one wsvisor was built for (shared/BACKGROUND.md): a backend that
keeps a registry of its users' live connections and pushes agent progress to them. The
registry is fed only by wsvisor's lifecycle events, and it cannot leak, because wsvisor
sends exactly one `disconnect` after every `connect`, whatever closed the connection.

Endpoints (README.md has the table):
  POST /connect      wsvisor's connect hook: who is this, may they connect?
  POST /ws/message   wsvisor's message hook: one client message, the reply goes back
  POST /events       wsvisor's lifecycle events: the registry's only input
  POST /centrifugo/rpc  Centrifugo's RPC proxy, for wsvisor in hub mode: echo, whoami
  GET  /registry     the registry as JSON
  GET  /             a browser page (index.html): log in, connect, start a task

Python's standard library only, so that it runs with Debian bookworm's /usr/bin/python3.
"""

import argparse
import hmac
import json
import os
import random
import re
import signal
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

MAX_BODY_BYTES = 8 * 1024 * 1024  # larger than any message wsvisor may forward
DEDUPE_ENTRIES = 100_000  # delivery and event ids remembered for duplicate detection
DUPLICATE_WAIT_S = 30.0  # how long a retry waits for the first attempt still in flight
API_TIMEOUT_S = 5.0  # per call to wsvisor's server API


# --------------------------------------------------------------------------- settings


def parse_settings(argv=None, environ=None):
    """The command line, with the environment as defaults, so that a container platform
    can configure the backend without flags (the flag wins where both are given)."""
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        description="Example backend for wsvisor's gateway mode (see README.md).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=env.get("BACKEND_PORT", "8000"),
                        help="port to listen on, 0 for a free one [$BACKEND_PORT or 8000]")
    parser.add_argument("--wsvisor", default=env.get("WSVISOR_URL", "http://127.0.0.1:8080"),
                        help="base URL of wsvisor's server API [$WSVISOR_URL]")
    parser.add_argument("--api-key", default=env.get("WSVISOR_API_KEY", ""),
                        help="key for wsvisor's /api/* (X-API-Key) [$WSVISOR_API_KEY]")
    parser.add_argument("--token", default=env.get("WSVISOR_UPSTREAM_TOKEN", ""),
                        help="bearer token wsvisor must send [$WSVISOR_UPSTREAM_TOKEN]")
    parser.add_argument("--reject", default="",
                        help="comma-separated users whose connects get 403")
    parser.add_argument("--max-tabs", type=int, default=0,
                        help="the backend's own cap of connections per user (0 = off)")
    parser.add_argument("--ws-path", default="/ws", help="wsvisor's WebSocket path, for the page")
    parser.add_argument("--step-ms", type=int, default=300,
                        help="time between two progress events of a task")
    parser.add_argument("--progress-step", type=int, default=20,
                        help="percent a task advances per progress event")
    parser.add_argument("--test-controls", action="store_true",
                        help="serve /control/* for the tests (never in production)")
    parser.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = parser.parse_args(argv)
    args.reject = {u.strip() for u in args.reject.split(",") if u.strip()}
    if not 1 <= args.progress_step <= 100:
        parser.error("--progress-step must be between 1 and 100")
    if args.step_ms < 0 or args.max_tabs < 0:
        parser.error("--step-ms and --max-tabs must not be negative")
    return args


# --------------------------------------------------------------------------- replies


@dataclass
class Reply:
    """One HTTP answer. Route functions return these instead of writing to the socket,
    so that a reply can be remembered and sent again for a duplicate delivery."""
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple = ()


def compact(obj):
    """Compact JSON bytes: the contract wants meta compact (it is capped at 4 KiB)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_reply(status, obj, headers=()):
    return Reply(status, compact(obj), "application/json", tuple(headers))


def error_reply(status, message, headers=()):
    return json_reply(status, {"error": message}, headers)


@dataclass
class Request:
    """What a route function needs of an HTTP request: headers are looked up without
    regard to case (http.client.HTTPMessage does that)."""
    method: str
    path: str
    headers: object
    body: bytes
    handler: object  # the BaseHTTPRequestHandler, for the few routes that stream

    def json(self):
        """The body as a JSON object, or None when it is not one."""
        try:
            value = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return value if isinstance(value, dict) else None


# --------------------------------------------------------------------------- registry


class BoundedSet:
    """The most recent `limit` keys: duplicates come within seconds of the original, so
    an id older than the last hundred thousand is safe to forget, and memory stays
    bounded however long the backend runs."""

    def __init__(self, limit=DEDUPE_ENTRIES):
        self.limit = limit
        self.items = OrderedDict()

    def __contains__(self, key):
        return key in self.items

    def add(self, key):
        """Adds key; False when it was already there."""
        if key in self.items:
            return False
        self.items[key] = None
        if len(self.items) > self.limit:
            self.items.popitem(last=False)
        return True


class Registry:
    """The backend's view of who is connected, built from lifecycle events only.

    This is the structure that leaked in the production incident. Here it has one key
    (wsvisor's connection id, the same in connect and disconnect), one writer (the events
    endpoint), and one lock, so concurrent event posts cannot interleave a check and an
    update."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.connections = {}
            self.closed = BoundedSet()  # connections whose disconnect was seen
            self.event_ids = BoundedSet()
            self.anomalies = []
            self.counts = {"connect": 0, "disconnect": 0, "duplicates": 0}
            self.close_reasons = {}

    def apply(self, event_id, event):
        """Applies one lifecycle event exactly once per event id (delivery is at least
        once). Returns "duplicate" or "applied"."""
        with self.lock:
            if event_id and not self.event_ids.add(event_id):
                self.counts["duplicates"] += 1
                return "duplicate"
            self.counts[event["type"]] += 1
            if event["type"] == "connect":
                self._connect(event_id, event)
            else:
                self._disconnect(event_id, event)
            return "applied"

    def _connect(self, event_id, event):
        connection = event["connection"]
        if connection in self.closed:
            # Its disconnect came first: adding it now would leave it in forever.
            self._anomaly("connect_after_disconnect", event_id, event)
            return
        self.connections[connection] = {
            "user": event.get("user"), "ip": event.get("ip"),
            "node": event.get("node"), "since": event.get("at")}

    def _disconnect(self, event_id, event):
        connection = event["connection"]
        reason = event.get("close_reason") or "unknown"
        self.close_reasons[reason] = self.close_reasons.get(reason, 0) + 1
        self.closed.add(connection)
        if self.connections.pop(connection, None) is None:
            self._anomaly("disconnect_without_connect", event_id, event)

    def _anomaly(self, kind, event_id, event):
        self.anomalies.append({"kind": kind, "event_id": event_id,
                               "connection": event["connection"],
                               "user": event.get("user"), "at": event.get("at")})

    def count_for(self, user):
        """Open connections of one user, for the backend's own per-user cap."""
        with self.lock:
            return sum(1 for c in self.connections.values() if c["user"] == user)

    def snapshot(self):
        with self.lock:
            by_user = {}
            for entry in self.connections.values():
                by_user[entry["user"]] = by_user.get(entry["user"], 0) + 1
            return {"connections": {k: dict(v) for k, v in self.connections.items()},
                    "by_user": by_user, "anomalies": list(self.anomalies),
                    "events": dict(self.counts), "close_reasons": dict(self.close_reasons)}


class DeliveryLog:
    """Replies by delivery id: wsvisor retries a message with the same
    `X-Wsvisor-Delivery`, so a retry must get the first attempt's reply and must not do
    the work again (a second agent for one "start" would be a visible bug)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.entries = OrderedDict()  # delivery -> [threading.Event, Reply or None]
            self.duplicates = 0

    def claim(self, delivery):
        """(True, entry) for the first attempt, which must call finish() or forget();
        (False, entry) for a duplicate, counted here."""
        with self.lock:
            entry = self.entries.get(delivery)
            if entry is not None:
                self.duplicates += 1
                return False, entry
            entry = [threading.Event(), None]
            self.entries[delivery] = entry
            if len(self.entries) > DEDUPE_ENTRIES:
                self.entries.popitem(last=False)
            return True, entry

    @staticmethod
    def finish(entry, reply):
        entry[1] = reply
        entry[0].set()

    def forget(self, delivery, entry):
        """The first attempt failed: a retry must do the work, not replay a failure."""
        with self.lock:
            if self.entries.get(delivery) is entry:
                del self.entries[delivery]
        entry[0].set()

    @staticmethod
    def wait(entry):
        """The first attempt's reply, waiting for it while it is still in flight (a
        retry after a timeout arrives while the slow first attempt runs); None when it
        failed or did not finish in time."""
        entry[0].wait(DUPLICATE_WAIT_S)
        return entry[1]


# --------------------------------------------------------------------------- wsvisor API


class WsvisorClient:
    """The backend's side of wsvisor's server API (CONTRACT 11.2, 12.3)."""

    def __init__(self, base_url, api_key):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    def send(self, target, data):
        """POST /api/send to a user (or a connection) with a text frame. Returns the HTTP
        status and the decoded answer (None when it is not JSON)."""
        body = dict(target, data=data)
        request = urllib.request.Request(
            self.base_url + "/api/send", data=compact(body), method="POST",
            headers={"Content-Type": "application/json", **self._auth()})
        try:
            with urllib.request.urlopen(request, timeout=API_TIMEOUT_S) as response:
                return response.status, _json_or_none(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _json_or_none(error.read())

    def _auth(self):
        return {"X-API-Key": self.api_key} if self.api_key else {}


def _json_or_none(raw):
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


class Agents:
    """Background tasks that push progress to a user, the way the production backend's
    agents did. Each runs in its own thread and stops when the backend stops."""

    def __init__(self, client, step_ms, progress_step, stopping):
        self.client = client
        self.step_s = step_ms / 1000.0
        self.progress_step = progress_step
        self.stopping = stopping
        self.lock = threading.Lock()
        self.threads = []
        self.stats = {"tasks_started": 0, "api_sends": 0, "api_send_errors": 0}

    def start(self, task, user, connection):
        """Starts one task. Progress goes to the user (all their tabs); a connection
        without a user gets it on that connection only."""
        target = {"user": user} if user else {"connection": connection}
        thread = threading.Thread(target=self._run, args=(task, target), daemon=True,
                                  name=f"agent-{task}")
        with self.lock:
            self.stats["tasks_started"] += 1
            self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()

    def _run(self, task, target):
        for percent in self._percents():
            if not self._push(target, {"type": "progress", "task": task, "percent": percent}):
                return
            if percent < 100 and self.stopping.wait(self.step_s):
                return
        self._push(target, {"type": "done", "task": task})

    def _percents(self):
        return list(range(0, 100, self.progress_step)) + [100]

    def _push(self, target, event):
        """One /api/send. False when the task should stop: the connection is gone (410)
        or the backend is stopping."""
        if self.stopping.is_set():
            return False
        try:
            status, _ = self.client.send(target, compact(event).decode("utf-8"))
        except (OSError, urllib.error.URLError) as error:
            status = None
            log(f"/api/send failed: {error}")
        with self.lock:
            self.stats["api_sends"] += 1
            if status != 200:
                self.stats["api_send_errors"] += 1
        if status not in (200, None):
            log(f"/api/send answered {status} for {target}")
        return status != 410

    def snapshot(self):
        with self.lock:
            return dict(self.stats)

    def reset_stats(self):
        with self.lock:
            self.stats = dict.fromkeys(self.stats, 0)

    def join(self, timeout):
        """Waits for running tasks after `stopping` was set, so that none writes after
        the process said it stopped."""
        deadline = time.monotonic() + timeout
        with self.lock:
            threads = list(self.threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def log(message):
    print(f"backend: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the backend


class Backend:
    """Everything the routes share: settings, the registry, the delivery log, the agents."""

    def __init__(self, settings):
        self.settings = settings
        self.stopping = threading.Event()
        self.registry = Registry()
        self.deliveries = DeliveryLog()
        self.client = WsvisorClient(settings.wsvisor, settings.api_key)
        self.agents = Agents(self.client, settings.step_ms, settings.progress_step,
                             self.stopping)

    def token_ok(self, request, required):
        """wsvisor sends `Authorization: Bearer <upstream.token>` on its upstream
        requests. With --token set, a hook request must carry it (required) and any
        bearer that is carried must match; compared in constant time."""
        if not self.settings.token:
            return True
        value = request.headers.get("Authorization")
        if value is None:
            return not required
        scheme, _, token = value.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.settings.token.encode())


# --------------------------------------------------------------------------- /connect


COOKIE_SESSION = re.compile(r"(?:^|;)\s*session=([^;]*)")


def identify(body):
    """The user of a connect request: the `session` cookie the page set, else the
    `x-demo-user` header (handy from scripts), else the user wsvisor's own auth found.
    Header names arrive in lower case (CONTRACT 12.1)."""
    headers = body.get("headers") if isinstance(body.get("headers"), dict) else {}
    cookie = headers.get("cookie")
    if isinstance(cookie, str):
        match = COOKIE_SESSION.search(cookie)
        if match and match.group(1).strip():
            return match.group(1).strip()
    demo = headers.get("x-demo-user")
    if isinstance(demo, str) and demo.strip():
        return demo.strip()
    user = body.get("user")
    return user if isinstance(user, str) and user else None


def demo_subprotocol(body):
    """The first offered subprotocol of this demo's family, which the backend accepts;
    wsvisor selects it in the 101 (it must be one the client offered)."""
    offered = body.get("subprotocols")
    for name in offered if isinstance(offered, list) else []:
        if isinstance(name, str) and name.startswith("demo."):
            return name
    return None


def connect_decision(backend, user):
    """Refusals of the backend's own policy, or None to admit. --max-tabs is counted
    from the registry; wsvisor's limits.max_per_user stays the hard cap."""
    settings = backend.settings
    if user is None:
        return error_reply(401, "no session")
    if user in settings.reject:
        return error_reply(403, "rejected")
    if settings.max_tabs and backend.registry.count_for(user) >= settings.max_tabs:
        return error_reply(429, "too many tabs", [("Retry-After", "3")])
    return None


def connect_answer(user, body):
    answer = {"user": user, "meta": {"plan": "free", "since": int(time.time())}}
    subprotocol = demo_subprotocol(body)
    if subprotocol:
        answer["subprotocol"] = subprotocol
    return json_reply(200, answer)


def connect_hook(backend, request):
    """POST /connect: decides identity before the 101 (CONTRACT 12.1)."""
    if not backend.token_ok(request, required=True):
        return error_reply(401, "bad token")
    body = request.json()
    if body is None:
        return error_reply(400, "body must be a JSON object")
    user = identify(body)
    return connect_decision(backend, user) or connect_answer(user, body)


# --------------------------------------------------------------------------- /ws/message


def is_text(request):
    content_type = (request.headers.get("Content-Type") or "").lower()
    return content_type.startswith("text/") or content_type.startswith("application/json")


def start_command(text):
    """The task name of a {"type":"start","task":...} message, else None."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, dict) and value.get("type") == "start":
        task = value.get("task")
        return task if isinstance(task, str) and task else None
    return None


def answer_message(backend, request):
    """The reply to one client message; side effects (a started task) happen here, once
    per delivery id."""
    if not is_text(request):
        return Reply(200, request.body, "application/octet-stream")
    text = request.body.decode("utf-8", errors="replace")
    if text == "silent":
        return Reply(204)
    task = start_command(text)
    if task is not None:
        backend.agents.start(task, request.headers.get("X-Wsvisor-User"),
                             request.headers.get("X-Wsvisor-Connection"))
        return json_reply(200, {"type": "started", "task": task})
    return Reply(200, ("echo: " + text).encode("utf-8"), "text/plain; charset=utf-8")


def deduplicated(backend, request, answer):
    """Runs answer(backend, request) once per X-Wsvisor-Delivery; a retry gets the
    same reply again. Requests without a delivery id are answered every time."""
    delivery = request.headers.get("X-Wsvisor-Delivery")
    if not delivery:
        return answer(backend, request)
    first, entry = backend.deliveries.claim(delivery)
    if not first:
        reply = backend.deliveries.wait(entry)
        return reply if reply is not None else error_reply(503, "first attempt failed")
    try:
        reply = answer(backend, request)
    except Exception:
        backend.deliveries.forget(delivery, entry)
        raise
    backend.deliveries.finish(entry, reply)
    return reply


def message_hook(backend, request):
    """POST /ws/message: one client message (CONTRACT 12.2)."""
    if not backend.token_ok(request, required=True):
        return error_reply(401, "bad token")
    return deduplicated(backend, request, answer_message)


# --------------------------------------------------------------------------- /events


def valid_event(event):
    return (event is not None and event.get("type") in ("connect", "disconnect")
            and isinstance(event.get("connection"), str) and event["connection"] != "")


def lifecycle_event(backend, request):
    """POST /events: connect and disconnect events (CONTRACT 11.3), idempotent by event
    id. The bearer is checked when carried: the contract does not say that the events
    poster sends upstream.token."""
    if not backend.token_ok(request, required=False):
        return error_reply(401, "bad token")
    event = request.json()
    if not valid_event(event):
        return error_reply(400, "expected {type: connect|disconnect, connection, ...}")
    event_id = request.headers.get("X-Wsvisor-Event-Id") or event.get("id")
    outcome = backend.registry.apply(event_id if isinstance(event_id, str) else None, event)
    return json_reply(200, {"ok": True, "duplicate": outcome == "duplicate"})


def registry(backend, request):
    """GET /registry: the backend's registry, as the tests and the page read it."""
    return json_reply(200, backend.registry.snapshot())


# --------------------------------------------------------------------------- /centrifugo/rpc


RPC_UNKNOWN_METHOD = {"code": 404, "message": "unknown method"}
RPC_BAD_REQUEST = {"code": 107, "message": "bad request"}


def rpc_answer(body):
    """Centrifugo's RPC proxy answer to one request: {"result":{"data":...}} or
    {"error":{"code","message"}} (always with HTTP 200: a non-200 answer is a proxy
    failure, which Centrifugo and wsvisor turn into error 100 for the client)."""
    method = body.get("method")
    if not isinstance(method, str) or not method:
        return {"error": RPC_BAD_REQUEST}
    if method == "echo":
        # The client's data back unchanged; no data, an empty result.
        return {"result": {"data": body["data"]}} if "data" in body else {"result": {}}
    if method == "whoami":
        # Who the proxy request says is calling: the connection's user ("" when
        # anonymous), its client id, and its meta when it has one (Centrifugo passes
        # the connection token's `meta` claim on to every proxy request).
        user = body.get("user")
        data = {"user": user if isinstance(user, str) else "", "client": body.get("client")}
        if "meta" in body:
            data["meta"] = body["meta"]
        return {"result": {"data": data}}
    return {"error": dict(RPC_UNKNOWN_METHOD)}


def rpc_proxy(backend, request):
    """POST /centrifugo/rpc: Centrifugo's RPC proxy (CONTRACT 13.4; wsvisor in hub mode
    with hub.rpc_proxy_path=/centrifugo/rpc). The request is Centrifugo's:
    {"client","transport","protocol","encoding","user","method","data"}."""
    if not backend.token_ok(request, required=True):
        return error_reply(401, "bad token")
    body = request.json()
    if body is None:
        return error_reply(400, "body must be a JSON object")
    return json_reply(200, rpc_answer(body))


# --------------------------------------------------------------------------- the page


PAGE = Path(__file__).resolve().parent / "index.html"
USER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def page(backend, request):
    """GET /: the browser demo, read on each request so that it can be edited live."""
    try:
        return Reply(200, PAGE.read_bytes(), "text/html; charset=utf-8")
    except OSError:
        return error_reply(404, "index.html is missing")


def login(backend, request):
    """POST /login {"user": name}: sets the session cookie that the connect hook reads.
    A demo: a real backend would check a password and sign the session."""
    body = request.json() or {}
    name = body.get("user")
    if not isinstance(name, str) or not USER_NAME.fullmatch(name):
        return error_reply(400, "user must be 1 to 64 of A-Z a-z 0-9 _ . -")
    cookie = f"session={name}; Path=/; HttpOnly; SameSite=Lax"
    return json_reply(200, {"user": name}, [("Set-Cookie", cookie)])


def client_config(backend, request):
    """GET /client-config: where the page finds wsvisor (same host, wsvisor's port);
    the cookie set by /login goes along because cookies do not depend on the port."""
    url = urlsplit(backend.settings.wsvisor)
    port = url.port or (443 if url.scheme == "https" else 80)
    return json_reply(200, {"ws_port": port, "ws_path": backend.settings.ws_path})


ROUTES = {
    "/": {"GET": page},
    "/login": {"POST": login},
    "/client-config": {"GET": client_config},
    "/connect": {"POST": connect_hook},
    "/ws/message": {"POST": message_hook},
    "/events": {"POST": lifecycle_event},
    "/centrifugo/rpc": {"POST": rpc_proxy},
    "/registry": {"GET": registry},
}


# --------------------------------------------------------------------------- test controls
#
# Everything below this line up to the HTTP server exists for wsvisor's own tests and is
# served only with --test-controls: a real backend has none of it. It wraps the hook
# routes above (they stay as a real backend would write them) to count calls, to answer
# scripted statuses, and to misbehave in the ways wsvisor must survive.

HOOK_PATHS = ("/connect", "/ws/message", "/events")
DEFAULT_CONTROL_CONFIG = {
    "events_fail_ratio": 0.0,  # that share of /events posts answer 503 (before any effect)
    "connect_delay_ms": 0,  # every /connect waits this long first
    "message_delay_ms": 0,  # every /ws/message waits this long first
    "reply_garbage": False,  # /ws/message answers bytes that are not HTTP, then closes
    "huge_reply_mb": 0,  # /ws/message answers 200 with a body of that many MiB
    "endless_chunked": False,  # /ws/message answers a chunked body that never ends
    "connect_user_override": "",  # /connect admits everyone as this user
    "connect_user_bad_utf8": False,  # /connect admits everyone as a user that is not UTF-8
    "connect_meta_bytes": 0,  # /connect's meta is padded to this many bytes of JSON
    "connect_bad_json": False,  # /connect answers 200 with a body that is not JSON
    # /centrifugo/rpc answers {"disconnect":{"code":N,"reason":...}} (0 = its normal answer):
    # a backend that asks for a close code no close frame may carry.
    "rpc_disconnect_code": 0,
}
GARBAGE = b"this is not HTTP\x00\xff\xfe\r\n\r\n"
BAD_UTF8_USER = b'"bad-\xff\xfe-utf8"'
ENDLESS_LIMIT_S = 600.0  # even an endless reply ends, so that no thread is held forever
STREAM_CHUNK = 64 * 1024


def check_config_change(changes):
    """The error message for a bad POST /control/config body, or None."""
    if not isinstance(changes, dict):
        return "body must be a JSON object"
    for key, value in changes.items():
        if key not in DEFAULT_CONTROL_CONFIG:
            return f"unknown key {key!r}; known: {sorted(DEFAULT_CONTROL_CONFIG)}"
        kind = type(DEFAULT_CONTROL_CONFIG[key])
        if kind is bool and not isinstance(value, bool):
            return f"{key} must be true or false"
        if kind is str and not isinstance(value, str):
            return f"{key} must be a string"
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind in (int, float) and (not numeric or value < 0):
            return f"{key} must be a number >= 0"
    if not 0.0 <= changes.get("events_fail_ratio", 0.0) <= 1.0:
        return "events_fail_ratio must be between 0 and 1"
    return None


def check_script(body):
    """The error message for a bad POST /control/script body, or None."""
    if body is None or body.get("path") not in HOOK_PATHS:
        return f"path must be one of {list(HOOK_PATHS)}"
    statuses = body.get("statuses")
    if not isinstance(statuses, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599
            for s in statuses):
        return "statuses must be a list of HTTP statuses"
    delay = body.get("delay_ms", 0)
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
        return "delay_ms must be a number >= 0"
    return None


class TestControls:
    """State of the test controls: scripts, misbehaviour settings and call counts."""

    def __init__(self, backend):
        self.backend = backend
        self.lock = threading.Lock()
        self.connect_inflight = 0
        self.reset()

    def reset(self):
        with self.lock:
            self.scripts = {}  # path -> (list of statuses, delay in s)
            self.config = dict(DEFAULT_CONTROL_CONFIG)
            self.stats = {"attempts_by_delivery": {}, "connect_calls": 0,
                          "connect_inflight_max": self.connect_inflight,
                          "message_calls": 0, "events_calls": 0, "events_failed": 0}

    def setting(self, key):
        with self.lock:
            return self.config[key]

    def pause(self, ms):
        """Sleeps, but ends early when the backend stops."""
        if ms:
            self.backend.stopping.wait(ms / 1000.0)

    # ---- counting

    def count(self, key):
        with self.lock:
            self.stats[key] += 1

    def count_attempt(self, delivery):
        with self.lock:
            attempts = self.stats["attempts_by_delivery"]
            attempts[delivery] = attempts.get(delivery, 0) + 1

    def connect_began(self):
        with self.lock:
            self.stats["connect_calls"] += 1
            self.connect_inflight += 1
            self.stats["connect_inflight_max"] = max(self.stats["connect_inflight_max"],
                                                     self.connect_inflight)

    def connect_ended(self):
        with self.lock:
            self.connect_inflight -= 1

    def snapshot(self):
        with self.lock:
            stats = dict(self.stats, connect_inflight=self.connect_inflight)
            stats["attempts_by_delivery"] = dict(self.stats["attempts_by_delivery"])
        stats["message_duplicates"] = self.backend.deliveries.duplicates
        stats.update(self.backend.agents.snapshot())
        return stats

    # ---- scripts

    def scripted(self, path):
        """The scripted answer for the next request on path, or None for normal
        behaviour (no script left, or a scripted 200). A script's delay applies to each
        request it covers, 200s included, so that a slow success can be scripted."""
        with self.lock:
            statuses, delay_s = self.scripts.get(path, ([], 0.0))
            if not statuses:
                return None
            status = statuses.pop(0)
        self.pause(delay_s * 1000.0)
        if status == 200:
            return None
        headers = [("Retry-After", "1")] if status in (429, 503) else []
        return json_reply(status, {"error": "scripted", "status": status}, headers)

    # ---- hook wrappers

    def connect(self, backend, request):
        self.connect_began()
        try:
            scripted = self.scripted("/connect")
            if scripted is not None:
                return scripted
            self.pause(self.setting("connect_delay_ms"))
            return self.forced_connect_answer(request) or connect_hook(backend, request)
        finally:
            self.connect_ended()

    def forced_connect_answer(self, request):
        """The bad connect answers a test can ask for, or None. They skip the real
        checks: a test that wants a 10 KB user needs no session for it."""
        with self.lock:
            config = dict(self.config)
        if config["connect_bad_json"]:
            return Reply(200, b'{"user": "broken', "application/json")
        if not (config["connect_user_override"] or config["connect_user_bad_utf8"]
                or config["connect_meta_bytes"]):
            return None
        placeholder = "\x00user"
        user = placeholder if config["connect_user_bad_utf8"] else (
            config["connect_user_override"] or identify(request.json() or {}))
        if user is None:
            return None  # the real hook answers 401
        raw = compact({"user": user, "meta": padded_meta(int(config["connect_meta_bytes"]))})
        return Reply(200, raw.replace(compact(placeholder), BAD_UTF8_USER))

    def message(self, backend, request):
        self.count("message_calls")
        delivery = request.headers.get("X-Wsvisor-Delivery")
        if delivery:
            self.count_attempt(delivery)
        scripted = self.scripted("/ws/message")
        if scripted is not None:
            return scripted
        self.pause(self.setting("message_delay_ms"))
        if self.setting("reply_garbage"):
            return write_garbage(request.handler)
        if self.setting("huge_reply_mb"):
            return write_huge(request.handler, int(self.setting("huge_reply_mb") * 1024 * 1024))
        if self.setting("endless_chunked"):
            return write_endless(request.handler, self.backend.stopping)
        return message_hook(backend, request)

    def events(self, backend, request):
        self.count("events_calls")
        scripted = self.scripted("/events")
        failed = random.random() < self.setting("events_fail_ratio")
        if failed and scripted is None:
            scripted = error_reply(503, "injected failure", [("Retry-After", "1")])
        if scripted is not None:
            if scripted.status >= 300:
                self.count("events_failed")
            return scripted
        return lifecycle_event(backend, request)

    def rpc(self, backend, request):
        code = self.setting("rpc_disconnect_code")
        if code and backend.token_ok(request, required=True):
            return json_reply(200, {"disconnect": {"code": code, "reason": "asked by the test"}})
        return rpc_proxy(backend, request)

    # ---- /control/*

    def routes(self):
        return {
            "/centrifugo/rpc": {"POST": self.rpc},
            "/connect": {"POST": self.connect},
            "/ws/message": {"POST": self.message},
            "/events": {"POST": self.events},
            "/control/script": {"POST": self.post_script},
            "/control/config": {"POST": self.post_config, "GET": self.get_config},
            "/control/stats": {"GET": lambda backend, request: json_reply(200, self.snapshot())},
            "/control/reset": {"POST": self.post_reset},
        }

    def post_script(self, backend, request):
        body = request.json()
        problem = check_script(body)
        if problem:
            return error_reply(400, problem)
        with self.lock:
            self.scripts[body["path"]] = (list(body["statuses"]),
                                          body.get("delay_ms", 0) / 1000.0)
        return json_reply(200, {"path": body["path"], "queued": len(body["statuses"])})

    def post_config(self, backend, request):
        changes = request.json()
        problem = check_config_change(changes)
        if problem:
            return error_reply(400, problem)
        with self.lock:
            self.config.update(changes)
        return self.get_config(backend, request)

    def get_config(self, backend, request):
        with self.lock:
            return json_reply(200, dict(self.config))

    def post_reset(self, backend, request):
        """Back to a freshly started backend: controls, registry, delivery log, counts
        (tasks already running finish)."""
        self.reset()
        backend.registry.reset()
        backend.deliveries.reset()
        backend.agents.reset_stats()
        return json_reply(200, {"reset": True})


def padded_meta(size):
    """The connect meta, padded so that its compact JSON is `size` bytes (when size is
    more than the meta without padding): tests probe the 4 KiB cap on both sides."""
    meta = {"plan": "free", "since": int(time.time())}
    if size <= 0:
        return meta
    bare = len(compact(dict(meta, pad="")))
    return dict(meta, pad="x" * (size - bare)) if size > bare else meta


def write_garbage(handler):
    """Bytes that are not an HTTP response, then the connection closes."""
    handler.close_connection = True
    handler.wfile.write(GARBAGE)
    handler.wfile.flush()


def write_huge(handler, size):
    """200 with a body of `size` bytes, streamed, so that the backend never holds it;
    stops when the peer closes (wsvisor gives up at upstream.max_response_bytes)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", str(size))
    handler.end_headers()
    chunk = b"x" * STREAM_CHUNK
    try:
        while size > 0:
            handler.wfile.write(chunk[:size])
            size -= min(size, STREAM_CHUNK)
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True


def write_endless(handler, stopping):
    """200 with a chunked body that does not end: a chunk every 50 ms until the peer
    closes, the backend stops, or ENDLESS_LIMIT_S (so that no thread is held forever)."""
    handler.close_connection = True
    handler.send_response(200)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    deadline = time.monotonic() + ENDLESS_LIMIT_S
    try:
        while time.monotonic() < deadline and not stopping.wait(0.05):
            handler.wfile.write(b"5\r\ntick\n\r\n")
            handler.wfile.flush()
    except (BrokenPipeError, ConnectionResetError):
        pass


# --------------------------------------------------------------------------- HTTP server


class BodyTooLarge(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the functions above. HTTP/1.1 with keep-alive, because
    wsvisor's upstream client reuses its connections (CONTRACT 11.1)."""

    protocol_version = "HTTP/1.1"
    server_version = "wsvisor-example-backend/1.0"

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def dispatch(self):
        backend = self.server.backend
        path = self.path.split("?", 1)[0]
        methods = backend.routes.get(path)
        try:
            body = self.read_body()
        except BodyTooLarge:
            self.close_connection = True
            return self.write_reply(error_reply(413, "body too large"))
        except ValueError:
            self.close_connection = True
            return self.write_reply(error_reply(400, "malformed body"))
        if methods is None:
            return self.write_reply(error_reply(404, "not_found"))
        route = methods.get(self.command)
        if route is None:
            allow = ", ".join(sorted(methods))
            return self.write_reply(error_reply(405, "method_not_allowed", [("Allow", allow)]))
        try:
            reply = route(backend, Request(self.command, path, self.headers, body, self))
        except Exception:  # a bug: answer it, so that the kept-alive connection survives
            log(f"{self.command} {path} failed:\n{traceback.format_exc()}")
            reply = error_reply(500, "internal")
        if reply is not None:  # None: the route wrote its answer itself
            self.write_reply(reply)

    def read_body(self):
        """The whole request body (Content-Length or chunked), so that the next request
        on a kept-alive connection starts where it should."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self.read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY_BYTES:
            raise BodyTooLarge()
        return self.rfile.read(length)

    def read_chunked(self):
        parts, total = [], 0
        while True:
            size = int(self.rfile.readline(1024).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                raise BodyTooLarge()
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def write_reply(self, reply):
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.status != 204:
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if reply.status != 204:
            self.wfile.write(reply.body)

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        if self.server.backend.settings.verbose:
            super().log_message(format, *args)


class Server(ThreadingHTTPServer):
    """A thread per connection; kept-alive idle ones must not block the exit."""

    daemon_threads = True
    # socketserver's default backlog is 5: a reconnect storm through wsvisor opens up
    # to gateway.connect_concurrency (64) hook calls at once, and the kernel resets
    # the connections that overflow the queue.
    request_queue_size = 256


def make_server(backend):
    server = Server((backend.settings.host, backend.settings.port), Handler)
    server.backend = backend
    backend.routes = dict(ROUTES)
    if backend.settings.test_controls:
        backend.routes.update(TestControls(backend).routes())
    return server


# --------------------------------------------------------------------------- main


def serve_until_signalled(server, backend):
    """Serves until SIGTERM or SIGINT, then stops: no new requests, tasks told to stop
    and given a moment, exit 0. serve_forever runs in a thread because shutdown() must
    be called from another thread than the one serving."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              daemon=True, name="http")
    thread.start()
    host, port = server.server_address[:2]
    print(f"listening on {host}:{port}", flush=True)
    while not stop.wait(0.5):
        pass
    backend.stopping.set()
    server.shutdown()
    server.server_close()
    backend.agents.join(timeout=2.0)
    log("stopped")


def main(argv=None):
    settings = parse_settings(argv)
    backend = Backend(settings)
    try:
        server = make_server(backend)
    except OSError as error:
        log(f"cannot listen on {settings.host}:{settings.port}: {error}")
        return 1
    serve_until_signalled(server, backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
