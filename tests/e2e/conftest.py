"""Shared helpers for wsvisor's end-to-end tests (CONTRACT.md is the specification).

Run by ctest as `/usr/bin/python3 -m pytest -q -p no:cacheprovider <file>` from this
directory, with WSVISOR_BIN (the server binary) and WSVISOR_SOURCE_DIR (the repository
root) in the environment. By hand, both default to this checkout: <repo>/build/wsvisor.
WSVISOR_E2E_SETS (`key=value` pairs separated by `;`) are given to every server before
the test's own --set options, which win: ctest runs some files again with
server.io_threads=1, the threading under which sessions are reached inline.

Everything here talks to 127.0.0.1 only, and every wait is bounded in time and count.
"""

import asyncio
import base64
import contextlib
import ctypes
import hashlib
import http.client
import json
import os
import re
import resource
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

# --------------------------------------------------------------------------- paths

HERE = Path(__file__).resolve().parent
REPO = Path(os.environ.get("WSVISOR_SOURCE_DIR") or HERE.parents[1]).resolve()
BIN = Path(os.environ.get("WSVISOR_BIN") or (REPO / "build" / "wsvisor"))
EXTRA_SETS = tuple(s for s in os.environ.get("WSVISOR_E2E_SETS", "").split(";") if s)
CONFIG = REPO / "config" / "wsvisor.toml"
HOST = "127.0.0.1"

READY_TIMEOUT = 10.0  # seconds for a started server to answer /health/ready with 200
STOP_TIMEOUT = 15.0  # seconds for a SIGTERM'd idle server to exit (drain_timeout 8s + margin)

# The contract's metric series (section 6) and their label values.
CLOSE_REASONS = [
    "client", "zombie", "idle", "lifetime", "slow_consumer", "rate_limit", "evicted",
    "drain", "admin", "protocol_error", "restart_budget", "shard_down", "handshake_failed",
    "api", "application", "node_lost",
]
REJECT_REASONS = [
    "starting", "draining", "rate_limited", "forbidden_origin", "unauthorized", "ip_limit",
    "user_limit", "server_full", "guard_unavailable", "handshake_limit",
    "rejected", "upstream_unavailable", "upstream_busy", "cluster_unavailable",
]
EVICTION_REASONS = ["zombie", "idle", "lifetime", "slow_consumer", "emergency", "drain", "admin"]
SWEEP_KINDS = ["periodic", "emergency", "admin"]
RESTART_ACTORS = ["connection", "limit_guard", "janitor", "shard", "upstream", "events", "hub",
                  "cluster"]
CONTRACT_HISTOGRAMS = ["wsvisor_sweep_duration_seconds"]
# wsvisor_faults_total{action}: faults toward clients (section 8).
CLIENT_FAULT_ACTIONS = ["stall", "latency", "drop", "close", "reset", "zombie", "restart"]

# Series beyond the contract's list (README, Metrics), also present from start-up.
ADDITIONAL_HISTOGRAMS = {  # name: (lowest, highest) finite bucket bound in seconds
    "wsvisor_handshake_duration_seconds": (0.0005, 10.0),
    "wsvisor_connection_duration_seconds": (0.1, 86400.0),
    "wsvisor_upstream_duration_seconds": (0.0005, 30.0),
}
ADDITIONAL_COUNTERS = ["wsvisor_bytes_received_total", "wsvisor_bytes_sent_total",
                       "wsvisor_upstream_retries_total", "wsvisor_events_sent_total",
                       "wsvisor_events_failed_total", "wsvisor_events_dropped_total"]
ADDITIONAL_PROCESS_SERIES = {  # name: type
    "process_cpu_seconds_total": "counter",
    "process_start_time_seconds": "gauge",
    "process_max_fds": "gauge",
}


def contract_startup_series():
    """Every series of CONTRACT section 6 as (name, labels, value at start-up), the value
    None where it may have moved before the first scrape (the janitor's first sweep, the
    process_* readings). A histogram stands as its _count and _sum."""
    series = [("wsvisor_ready", {}, 1), ("wsvisor_draining", {}, 0),
              ("wsvisor_connections", {}, 0), ("wsvisor_connections_opened_total", {}, 0),
              ("wsvisor_messages_received_total", {}, 0),
              ("wsvisor_messages_sent_total", {}, 0), ("wsvisor_send_queue_bytes", {}, 0),
              ("process_resident_memory_bytes", {}, None), ("process_open_fds", {}, None)]
    series += [("wsvisor_connections_closed_total", {"reason": r}, 0) for r in CLOSE_REASONS]
    series += [("wsvisor_admissions_rejected_total", {"reason": r}, 0) for r in REJECT_REASONS]
    series += [("wsvisor_evictions_total", {"reason": r}, 0) for r in EVICTION_REASONS]
    series += [("wsvisor_sweeps_total", {"kind": k}, None if k == "periodic" else 0)
               for k in SWEEP_KINDS]
    series += [("wsvisor_actor_restarts_total", {"actor": a}, 0) for a in RESTART_ACTORS]
    series += [("wsvisor_faults_total", {"action": a}, 0) for a in CLIENT_FAULT_ACTIONS]
    series += [("wsvisor_faults_dropped_total", {}, 0)]
    series += [(h + suffix, {}, None) for h in CONTRACT_HISTOGRAMS for suffix in ("_count", "_sum")]
    return series


# ----------------------------------------------------------------- process limits

def _raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        target = 1 << 20
    else:
        target = hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


_raise_nofile()  # children (the server) inherit the raised limit


def nofile_limit():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid):
    """A process's resident set size, in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


# ------------------------------------------------------------------------- ports

def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def is_listening(port, timeout=0.5):
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout, interval=0.02, what="condition"):
    """Polls predicate() until it returns a truthy value (returned) or timeout passes."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - polled conditions may fail transiently
            last_exc = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


# -------------------------------------------------------------------------- HTTP

class HeaderLookup:
    """header() over self.headers, a list of (name, value): names are case-insensitive."""

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default


class Response(HeaderLookup):
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def is_json(self):
        ct = (self.header("content-type") or "").lower()
        return ct.split(";")[0].strip() == "application/json"

    def __repr__(self):
        return f"<Response {self.status} {self.headers!r} {self.body[:300]!r}>"


def http_request(port, method="GET", path="/", headers=None, body=None, timeout=5.0):
    """One HTTP/1.1 request on a fresh connection; returns a Response."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.reason, r.getheaders(), data)
    finally:
        conn.close()


def http_get(port, path, **kw):
    return http_request(port, "GET", path, **kw)


def raw_exchange(port, data, timeout=5.0):
    """Sends raw bytes, reads until the server closes (bounded); returns (bytes, closed)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        closed = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            chunks.append(chunk)
        return b"".join(chunks), closed


def wait_closed_by_peer(sock, timeout):
    """Reads from sock until EOF or reset; returns seconds waited, or None on timeout."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return None
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
        if not chunk:
            return time.monotonic() - start


# ----------------------------------------------------------------------- metrics

_SAMPLE_RE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?$")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')


class Metrics:
    """Parsed Prometheus text exposition: samples keyed by (name, sorted labels)."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.types = {}
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 4 and parts[1] == "TYPE":
                    self.types[parts[2]] = parts[3].strip()
                continue
            m = _SAMPLE_RE.match(line)
            if not m:
                raise AssertionError(f"unparsable metrics line: {line!r}")
            labels = {}
            if m.group("labels"):
                labels = {k: bytes(v, "utf-8").decode("unicode_escape")
                          for k, v in _LABEL_RE.findall(m.group("labels"))}
            self.samples[(m.group("name"), tuple(sorted(labels.items())))] = float(
                m.group("value"))

    def __repr__(self):
        return f"<Metrics: {len(self.samples)} samples>"

    def get(self, name, default=None, **labels):
        return self.samples.get((name, tuple(sorted(labels.items()))), default)

    def has(self, name, **labels):
        return (name, tuple(sorted(labels.items()))) in self.samples

    def series(self, name):
        """{labels-dict-as-tuple: value} for every sample of that name."""
        return {k[1]: v for k, v in self.samples.items() if k[0] == name}

    def total(self, name):
        return sum(self.series(name).values())

    def __getitem__(self, name):
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v


def scrape(port, timeout=5.0):
    r = http_get(port, "/metrics", timeout=timeout)
    assert r.status == 200, r
    return Metrics(r.body.decode("utf-8"))


def wait_metric(port, predicate, timeout=10.0, what="metrics condition"):
    """Scrapes /metrics until predicate(Metrics) is true; returns that Metrics."""
    holder = {}

    def check():
        m = scrape(port)
        holder["last"] = m
        return m if predicate(m) else None

    try:
        return wait_until(check, timeout, interval=0.05, what=what)
    except AssertionError as e:
        last = holder.get("last")
        if last is not None:
            interesting = "\n".join(l for l in last.text.splitlines()
                                    if l.startswith("wsvisor_") and "_bucket" not in l)
            raise AssertionError(f"{e}\nlast scrape:\n{interesting}") from None
        raise


# ------------------------------------------------------------------------ server

def _child_preexec():
    # Default dispositions (a background shell job inherits SIGINT ignored).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    # Die with the test process, never leave a stray server behind.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def clean_env(extra=None):
    """The test's environment without PORT and WSVISOR_* (ctest sets WSVISOR_BIN etc.,
    which the server would rightly reject as unknown configuration variables)."""
    env = {k: v for k, v in os.environ.items() if k != "PORT" and not k.startswith("WSVISOR_")}
    env.update(extra or {})
    return env


def run_cli(*args, env=None, timeout=15.0, config=True):
    """Runs the binary to completion (for flags that exit); returns CompletedProcess."""
    cmd = [str(BIN)]
    if config:
        cmd += ["--config", str(CONFIG)]
    cmd += list(args)
    return subprocess.run(cmd, env=clean_env(env), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout, text=True,
                          preexec_fn=_child_preexec)


class Server:
    """A wsvisor process on 127.0.0.1 with its output in a log file."""

    def __init__(self, log_path, port=None, sets=(), env=None, set_port=True, args=(),
                 config=None):
        self.port = port if port is not None else free_port()
        self.log_path = Path(log_path)
        self.expected_exit = 0
        # `config`: a TOML file of the test's own instead of config/wsvisor.toml (for
        # what --set cannot say, such as an array of tables); --config is given once.
        cmd = [str(BIN), "--config", str(config or CONFIG), "--set", f"server.host={HOST}"]
        if set_port:
            cmd += ["--set", f"server.port={self.port}"]
        for s in EXTRA_SETS + tuple(sets):
            cmd += ["--set", s]
        cmd += list(args)
        self.cmd = cmd
        self._log = open(self.log_path, "wb")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=clean_env(env), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=_child_preexec)

    @property
    def pid(self):
        return self.proc.pid

    def url(self, path="/ws"):
        return f"ws://{HOST}:{self.port}{path}"

    def log(self):
        with contextlib.suppress(Exception):
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(
                    f"server exited with {self.proc.returncode} before it was ready\n"
                    f"command: {self.cmd}\n--- log ---\n{self.log()}")
            try:
                r = http_get(self.port, "/health/ready", timeout=1.0)
                last = r
                if r.status == 200:
                    return self
            except OSError as e:
                last = e
            time.sleep(0.02)
        raise AssertionError(f"server not ready within {timeout}s (last: {last!r})\n"
                             f"command: {self.cmd}\n--- log ---\n{self.log()}")

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Returns the exit code, or None if the process is still running after timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.alive():
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, bounded wait, then SIGKILL. Returns the exit code (None if killed)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            code = self.wait_exit(timeout)
            if code is None:
                self.kill()
                return None
        return self.proc.returncode

    def close_log(self):
        with contextlib.suppress(Exception):
            self._log.close()


class ServerFactory:
    def __init__(self, tmp_dir):
        self.tmp_dir = Path(tmp_dir)
        self.servers = []

    def __call__(self, *sets, env=None, port=None, set_port=True, args=(), ready=True,
                 expected_exit=0, config=None):
        """Starts a server with extra `--set` assignments; waits for readiness. `config`:
        a TOML file instead of config/wsvisor.toml (for what --set cannot say, such as
        [[hub.namespaces]])."""
        log_path = self.tmp_dir / f"wsvisor-{len(self.servers)}.log"
        srv = Server(log_path, port=port, sets=sets, env=env, set_port=set_port, args=args,
                     config=config)
        srv.expected_exit = expected_exit
        self.servers.append(srv)
        if ready:
            srv.wait_ready()
        return srv

    def finish(self):
        """Stops every server; returns a list of problems (wrong exit codes)."""
        problems = []
        for srv in self.servers:
            was_alive = srv.alive()
            code = srv.stop()
            srv.close_log()
            print(f"--- wsvisor log ({srv.log_path}) cmd={srv.cmd} exit={code} ---")
            print(srv.log()[-20000:])
            if code is None:
                problems.append(f"server {srv.cmd} did not exit within {STOP_TIMEOUT}s "
                                f"of SIGTERM and was killed")
            elif srv.expected_exit is not None and code != srv.expected_exit:
                how = ("after the teardown's SIGTERM" if was_alive
                       else "before the teardown (signalled or stopped by the test, or crashed)")
                problems.append(f"server {srv.cmd} exited {code} {how}, "
                                f"expected {srv.expected_exit}")
        return problems


@pytest.fixture
def server_factory(tmp_path):
    factory = ServerFactory(tmp_path)
    yield factory
    problems = factory.finish()
    assert not problems, "\n".join(problems)


@contextlib.contextmanager
def module_server(tmp_path_factory, *sets, env=None, config=None):
    """For module-scoped fixtures: one server shared by several tests."""
    factory = ServerFactory(tmp_path_factory.mktemp("srv"))
    try:
        yield factory(*sets, env=env, config=config)
    finally:
        problems = factory.finish()
        assert not problems, "\n".join(problems)


@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    if not BIN.exists():
        pytest.fail(f"server binary {BIN} not found (set WSVISOR_BIN)")
    if not CONFIG.exists():
        pytest.fail(f"default configuration {CONFIG} not found")


# ------------------------------------------------------------------------- async

def run_async(coro, timeout=60.0):
    """Runs a coroutine to completion with an overall deadline."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


# ---------------------------------------------------------------- raw WebSocket

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def upgrade_request(port, path="/ws", key=None, extra_headers=()):
    key = key or base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    lines += [f"{k}: {v}" for k, v in extra_headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


def upgrade_attempt(port):
    """A complete upgrade request sent through http_request: the HTTP answer (a refusal
    while draining, for instance)."""
    req, _ = upgrade_request(port)
    headers = {}
    for line in req.decode().split("\r\n")[1:]:
        if line:
            k, _, v = line.partition(": ")
            headers[k] = v
    return http_request(port, "GET", "/ws", headers=headers, timeout=5)


def encode_frame(opcode, payload=b"", fin=True, mask=True):
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        head += key
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes(head) + payload


class RawWs:
    """A WebSocket client on a plain socket, for what real clients will not do."""

    def __init__(self, port, path="/ws", extra_headers=(), timeout=5.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""
        req, key = upgrade_request(port, path, extra_headers=extra_headers)
        self.sock.sendall(req)
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if time.monotonic() >= deadline:
                raise AssertionError(f"no handshake answer; got {self.buf!r}")
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"closed during the handshake; got {self.buf!r}")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        if self.status != 101:
            raise AssertionError(f"handshake refused: {lines[0]} {self.headers} {self.buf!r}")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        assert self.headers.get("sec-websocket-accept") == accept, self.headers

    def send_frame(self, opcode, payload=b"", fin=True):
        self.sock.sendall(encode_frame(opcode, payload, fin=fin))

    def _need(self, n, deadline):
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("frame not complete in time")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by peer")
            self.buf += chunk

    def read_frame(self, timeout=5.0):
        """Returns (fin, opcode, payload); raises ConnectionError on EOF."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._need(4, deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            pos = 4
        elif n == 127:
            self._need(10, deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            pos = 10
        masked = bool(b1 & 0x80)
        assert not masked, "server frames must not be masked"
        self._need(pos + n, deadline)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        self.last_rsv = b0 & 0x70  # RSV1 (0x40): a permessage-deflate message
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def read_close(self, timeout=5.0):
        """Reads frames until a close frame; returns (code, reason) (code None if empty)."""
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            _, opcode, payload = self.read_frame(max(0.01, deadline - time.monotonic()))
            if opcode == OP_CLOSE:
                if len(payload) >= 2:
                    return struct.unpack("!H", payload[:2])[0], payload[2:].decode(
                        "utf-8", "replace")
                return None, ""
        raise AssertionError("no close frame")

    def abort(self, rst=False):
        if rst:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()
