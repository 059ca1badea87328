"""Hub mode's end-to-end plumbing (CONTRACT 13): wsvisor started in hub mode with
namespaces from a temporary TOML file, the real npm SDK `centrifuge` driven in node
(tests/node/*.mjs, one JSON event per line), HS256 tokens minted with the standard
library, and Centrifugo's server API (`POST /api/<method>` with X-API-Key).

node is WSVISOR_NODE (ctest sets it; else `node` on PATH) and the packages are in
WSVISOR_NODE_MODULES (ctest: <build>/node/node_modules, which the build installs from
tests/node/package-lock.json; else <repo>/build/node/node_modules). Loopback only; every
wait is bounded, and every node process is stopped (killed past its bound) at the end.
"""

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import math
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import websockets

from conftest import HOST, REPO, clean_env, http_request

NODE_DIR = REPO / "tests" / "node"
NODE = os.environ.get("WSVISOR_NODE") or shutil.which("node") or shutil.which("nodejs")
NODE_MODULES = Path(os.environ.get("WSVISOR_NODE_MODULES")
                    or (REPO / "build" / "node" / "node_modules"))

WS_PATH = "/connection/websocket"  # Centrifugo's endpoint
JWT_SECRET = "e2e-hub-jwt-secret-0123456789-abcdef"  # at least 32 bytes (auth.jwt_secret)
API_KEY = "e2e-hub-api-key-0123456789"
HUB_ENV = {"WSVISOR_AUTH_JWT_SECRET": JWT_SECRET, "WSVISOR_API_KEY": API_KEY}

# Centrifugo's codes (CONTRACT 13.3, client protocol docs).
ERROR_PERMISSION_DENIED = 103
DISCONNECT_BAD_REQUEST = 3501
DISCONNECT_STALE = 3502  # no connect command in time
DISCONNECT_CONNECTION_LIMIT = 3504
DISCONNECT_TOKEN_EXPIRED = 3005


def require_node():
    """Fails (does not skip) the test when the SDK is not installed: `make test` installs
    node and npm (tools/install-deps.sh) and the build installs the packages."""
    if not NODE:
        pytest.fail("node not found (tools/install-deps.sh installs nodejs and npm; or set "
                    "WSVISOR_NODE)")
    if not (NODE_MODULES / "centrifuge" / "package.json").exists():
        pytest.fail(f"the npm package centrifuge is not in {NODE_MODULES}: build the project "
                    f"(CMake runs npm ci for tests/node) or set WSVISOR_NODE_MODULES")


# ------------------------------------------------------------------------------ JWT

def _b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def hs256_jwt(claims, secret=JWT_SECRET):
    """A compact HS256 JWT of `claims` (a dict), as Centrifugo's backends mint them."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def _expiry(ttl, exp):
    """exp as given, else now + ttl rounded up to a whole second (None: no exp claim)."""
    if exp is not None:
        return int(exp)
    if ttl is None:
        return None
    return math.ceil(time.time() + ttl)


def connection_token(sub, ttl=3600, exp=None, info=None, channels=None, secret=JWT_SECRET,
                     **claims):
    """A connection token with Centrifugo's claims: sub, exp (now + ttl seconds, or `exp`;
    ttl=None for none), info, channels (server-side subscriptions), and any others."""
    body = {"sub": sub}
    expiry = _expiry(ttl, exp)
    if expiry is not None:
        body["exp"] = expiry
    if info is not None:
        body["info"] = info
    if channels is not None:
        body["channels"] = list(channels)
    body.update(claims)
    return hs256_jwt(body, secret)


def subscription_token(sub, channel, ttl=3600, exp=None, info=None, secret=JWT_SECRET,
                       **claims):
    """A subscription token: sub (the user it is for), channel, exp, info."""
    body = {"sub": sub, "channel": channel}
    expiry = _expiry(ttl, exp)
    if expiry is not None:
        body["exp"] = expiry
    if info is not None:
        body["info"] = info
    body.update(claims)
    return hs256_jwt(body, secret)


# ------------------------------------------------------------------------ server API

def hub_api(port, method, body=None, key=API_KEY, headers=None, timeout=10.0):
    """POST /api/<method> with a JSON body (Centrifugo's server API); the Response."""
    h = {"Content-Type": "application/json"}
    if key is not None:
        h["X-API-Key"] = key
    h.update(headers or {})
    raw = json.dumps(body if body is not None else {}).encode()
    return http_request(port, "POST", f"/api/{method}", headers=h, body=raw, timeout=timeout)


def api_result(port, method, body=None, **kw):
    """The `result` of a successful API call (HTTP 200, no `error` member)."""
    r = hub_api(port, method, body, **kw)
    assert r.status == 200, f"/api/{method} {body!r}: {r!r}"
    answer = r.json()
    assert "error" not in answer, f"/api/{method} {body!r}: {answer!r}"
    return answer.get("result", {})


# --------------------------------------------------------------------------- servers

def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for the plain text used here
    raise TypeError(f"no TOML for {value!r}")


def hub_config(path, namespaces=(), hub=None):
    """Writes a configuration file with [hub] keys and [[hub.namespaces]] tables (every
    other key keeps its default; the test's --set options come on top); returns path."""
    lines = ["# written by tests/e2e/hub_helpers.py"]
    if hub:
        lines.append("[hub]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in hub.items()]
    for ns in namespaces:
        lines.append("")
        lines.append("[[hub.namespaces]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in ns.items()]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def start_hub(server_factory, tmp_path, *sets, namespaces=(), hub=None, env=None, **kw):
    """A wsvisor in hub mode on Centrifugo's endpoint, with the test's JWT secret and API
    key in its environment and `namespaces` in its configuration file."""
    config = hub_config(tmp_path / f"hub-{time.monotonic_ns()}.toml", namespaces, hub)
    all_sets = ["app.mode=hub", f"server.ws_path={WS_PATH}", *sets]
    return server_factory(*all_sets, env={**HUB_ENV, **(env or {})}, config=config, **kw)


def ws_url(server):
    return f"ws://{HOST}:{server.port}{WS_PATH}"


# ------------------------------------------------------------------------ node runs

class NodeScenario:
    """`node tests/node/<script> '<json args>'` with its JSON lines collected by a reader
    thread. Events are dicts ({"t", "event", ...}); stderr goes to a file. Always bounded:
    the script exits by itself at args["timeout_ms"], and stop() kills it past that."""

    def __init__(self, script, args, tmp_path, env=None):
        require_node()
        self.args = dict(args)
        self.args.setdefault("timeout_ms", 30000)
        self.script = NODE_DIR / script
        self.stderr_path = Path(tmp_path) / f"node-{script}-{time.monotonic_ns()}.stderr"
        self.events = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        env = clean_env({"WSVISOR_NODE_MODULES": str(NODE_MODULES), **(env or {})})
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [NODE, str(self.script), json.dumps(self.args)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=str(NODE_DIR))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "raw", "line": line}
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self.events.append({"event": "_eof"})
            self._changed.notify_all()

    # ---------------------------------------------------------------- reading events

    def find(self, event=None, client=None, start=0, **fields):
        """Events (from index `start`) named `event` of `client` whose fields equal `fields`."""
        with self._lock:
            snapshot = list(self.events[start:])
        return [e for e in snapshot
                if (event is None or e.get("event") == event)
                and (client is None or e.get("client") == client)
                and all(e.get(k) == v for k, v in fields.items())]

    def mark(self):
        """The number of events so far: give it as `since` to wait for later ones only."""
        with self._lock:
            return len(self.events)

    def wait(self, predicate, timeout=10.0, what="event", since=0):
        """The first event (from index `since`) for which predicate(event) holds, waiting
        up to `timeout`."""
        deadline = time.monotonic() + timeout
        seen = since
        with self._changed:
            while True:
                for e in self.events[seen:]:
                    if predicate(e):
                        return e
                seen = len(self.events)
                if self.events and self.events[-1].get("event") == "_eof":
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
        raise AssertionError(f"no {what} within {timeout}s; events:\n{self.transcript()}")

    def wait_event(self, event, client=None, timeout=10.0, since=0, **fields):
        def matches(e):
            return (e.get("event") == event and (client is None or e.get("client") == client)
                    and all(e.get(k) == v for k, v in fields.items()))
        return self.wait(matches, timeout, what=f"{event} {client or ''} {fields or ''}",
                         since=since)

    def wait_count(self, event, count, client=None, timeout=10.0, since=0, **fields):
        """Waits until `count` matching events (from index `since`) arrived; returns all
        of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(event, client, start=since, **fields)
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline or self.find("_eof"):
                raise AssertionError(f"{len(found)} of {count} {event} {client or ''} "
                                     f"{fields or ''} within {timeout}s; events:\n"
                                     f"{self.transcript()}")
            time.sleep(0.02)

    def transcript(self, last=200):
        with self._lock:
            lines = [json.dumps(e) for e in self.events[-last:]]
        with contextlib.suppress(OSError):
            err = self.stderr_path.read_text(errors="replace")
            if err.strip():
                lines.append(f"--- node stderr ---\n{err[-4000:]}")
        return "\n".join(lines)

    # -------------------------------------------------------------------- commands

    def command(self, op, client=None, **fields):
        """Sends one command (sdk_client.mjs); returns its id."""
        command_id = next(self._ids)
        message = {"id": command_id, "op": op, **fields}
        if client is not None:
            message["client"] = client
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()
        return command_id

    def call(self, op, client=None, timeout=10.0, expect_error=False, **fields):
        """Sends a command and waits for its result: the result (or, with expect_error,
        the error {code, message}); a failure otherwise fails the test."""
        command_id = self.command(op, client, **fields)
        outcome = self.wait(lambda e: e.get("event") == "result" and e.get("id") == command_id,
                            timeout, what=f"result of {op} {fields}")
        if expect_error:
            assert not outcome["ok"], f"{op} {fields} succeeded: {outcome}"
            return outcome["error"]
        assert outcome["ok"], f"{op} {fields} failed: {outcome}\n{self.transcript()}"
        return outcome["result"]

    # ------------------------------------------------------------------------ end

    def stop(self, timeout=5.0):
        """Asks the script to exit (closing its clients), then kills it if it does not."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.command("exit")
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def sdk_clients(tmp_path, server, clients=(), timeout=30.0, url=None, env=None):
    """sdk_client.mjs against `server` (or `url`: wss://): Centrifuge clients as described
    in `clients` (dicts: name, token, get_token, refresh_tokens, connect, ...; see
    hub_client.mjs). `env`: more for node (NODE_EXTRA_CA_CERTS for a test's own CA)."""
    return NodeScenario("sdk_client.mjs", {"url": url or ws_url(server), "clients": list(clients),
                                           "timeout_ms": int(timeout * 1000)}, tmp_path, env)


def raw_ws(tmp_path, server, send=(), send_delay=0.0, timeout=10.0):
    """raw_ws.mjs: a plain `ws` client on the hub endpoint that sends `send` text frames."""
    return NodeScenario("raw_ws.mjs", {"url": ws_url(server), "send": list(send),
                                       "send_delay_ms": int(send_delay * 1000),
                                       "timeout_ms": int(timeout * 1000)}, tmp_path)


# ------------------------------------------------------------ protocol clients (python)

class ProtocolClient:
    """One connection speaking Centrifugo's JSON protocol directly with python3-websockets
    (CONTRACT 13.1): much lighter than an SDK client in node, for tests that need many
    connections. A reader task takes every frame (several replies or pushes may share
    one, a line each), answers the server's `{}` pings with `{}` (unless
    `answer_pings` is off: a zombie), keeps replies by id and pushes in order, and
    notes the close code and reason."""

    def __init__(self, ws, name=""):
        self.ws = ws
        self.name = name
        self.next_id = 1
        self.answer_pings = True
        self.pings = 0
        self.pushes = []  # every push, in arrival order
        self.publications = []  # (channel, data) of each pub push, in arrival order
        self.unexpected = []  # replies nobody waited for, lines that are not JSON
        self.connect_reply = None
        self.client = None  # the connect reply's client id (wsvisor's connection id)
        self._waiting = {}  # id -> future
        self.closed = asyncio.Event()
        self.close_code = None
        self.close_reason = None
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, port, token=None, name="", connect=True, timeout=10.0):
        """Opens the WebSocket on Centrifugo's endpoint and, with `connect`, sends the
        connect command (with `token` when given) and waits for its reply, which must
        be a success."""
        ws = await websockets.connect(f"ws://{HOST}:{port}{WS_PATH}", ping_interval=None,
                                      open_timeout=timeout, close_timeout=2, max_queue=None,
                                      max_size=1 << 22)
        client = cls(ws, name)
        if connect:
            try:
                await client.connect(token, timeout=timeout)
            except BaseException:
                await client.abort()
                raise
        return client

    async def connect(self, token=None, timeout=10.0):
        reply = await self.command("connect", {"token": token} if token else {}, timeout)
        assert "connect" in reply, f"{self.name}: connect failed: {reply}"
        self.connect_reply = reply["connect"]
        self.client = self.connect_reply["client"]
        return self.connect_reply

    async def _read(self):
        try:
            async for frame in self.ws:
                if isinstance(frame, bytes):
                    self.unexpected.append(frame)
                    continue
                for line in frame.split("\n"):
                    if line.strip():
                        await self._take(line)
        except websockets.ConnectionClosed:
            pass
        except Exception as e:  # noqa: BLE001 - recorded, the test looks at it
            self.unexpected.append(f"reader failed: {e!r}")
        finally:
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(websockets.ConnectionClosed(None, None))
            self.closed.set()

    async def _take(self, line):
        try:
            message = json.loads(line)
        except ValueError:
            self.unexpected.append(line)
            return
        if message == {}:  # Centrifugo's ping
            self.pings += 1
            if self.answer_pings:
                with contextlib.suppress(websockets.ConnectionClosed):
                    await self.ws.send("{}")
            return
        if message.get("id"):
            future = self._waiting.pop(message["id"], None)
            if future is not None and not future.done():
                future.set_result(message)
            else:
                self.unexpected.append(message)
            return
        push = message.get("push", {})
        self.pushes.append(push)
        if "pub" in push:
            self.publications.append((push.get("channel", ""), push["pub"].get("data")))

    async def command(self, name, body, timeout=10.0):
        """Sends one command and returns its reply (the whole message)."""
        command_id = self.next_id
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = future
        await self.ws.send(json.dumps({"id": command_id, name: body}))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(command_id, None)

    async def wait_closed(self, timeout=10.0):
        """Waits for the connection to end; returns (code, reason)."""
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code, self.close_reason

    async def close(self):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.closed.wait(), 5)

    async def abort(self):
        """Drops the TCP connection without a close frame."""
        self.ws.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.closed.wait(), 5)


async def close_clients(clients, timeout=20.0):
    """Closes every client (a close frame each), all at once, within `timeout`."""
    if clients:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(c.close() for c in clients),
                                                  return_exceptions=True), timeout)
