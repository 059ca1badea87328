"""Helpers shared by test_admission.py, test_auth.py and test_spike.py (CONTRACT section 4).

Upgrade attempts are made on raw sockets (blocking, or asyncio streams when healthy
websockets clients must keep answering the server's pings meanwhile), so that the exact
status line, headers and body of a refusal can be checked.
"""

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import socket
import time

from conftest import HOST, REJECT_REASONS, WS_GUID, HeaderLookup, Response, scrape, wait_metric

# status of each refusal and whether it carries Retry-After (CONTRACT section 4)
REFUSALS = {
    "starting": (503, True),
    "draining": (503, True),
    "rate_limited": (429, True),
    "forbidden_origin": (403, False),
    "unauthorized": (401, False),
    "ip_limit": (429, True),
    "user_limit": (429, True),
    "server_full": (503, True),
    "guard_unavailable": (503, True),
    "upstream_unavailable": (503, True),
    "upstream_busy": (503, True),
}


def _recv_until(sock, data, end, length):
    """Appends what the socket sends until `length` bytes are there (None: no bound), the
    deadline `end` passes, or the server closes; returns (data, closed)."""
    while length is None or len(data) < length:
        remaining = end - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


class Attempt(HeaderLookup):
    """The answer to one upgrade request. For a 101 the socket stays open (close it);
    for anything else the body has been read and `closed` tells whether the server
    closed the connection afterwards (within a short bound)."""

    def __init__(self, status, status_line, headers, body, sock=None, closed=None,
                 elapsed=0.0, key=None, request=b""):
        self.status = status
        self.status_line = status_line
        self.headers = headers  # list of (name, value)
        self.body = body
        self.sock = sock
        self.closed = closed
        self.elapsed = elapsed
        self.key = key
        self.request = request

    def header_count(self, name):
        return sum(1 for k, _ in self.headers if k.lower() == name.lower())

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def response(self):
        return Response(self.status, self.status_line, self.headers, self.body)

    def close(self):
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def __repr__(self):
        req = self.request.decode("latin-1").split("\r\n")
        return (f"<Attempt {self.status_line!r} headers={self.headers!r} body={self.body[:300]!r}"
                f" closed={self.closed} elapsed={self.elapsed:.3f}s request={req!r}>")


def build_request(port, path="/ws", headers=(), key=None):
    key = key or base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), key


def _parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0]
    parts = status_line.split()
    assert len(parts) >= 2 and parts[0].startswith("HTTP/1."), f"bad status line {status_line!r}"
    status = int(parts[1])
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return status, status_line, headers


def _content_length(headers):
    for k, v in headers:
        if k.lower() == "content-length":
            return int(v)
    return None


def attempt(port, headers=(), path="/ws", timeout=5.0, close_wait=2.0):
    """One upgrade attempt on a blocking socket (see Attempt)."""
    req, key = build_request(port, path, headers)
    start = time.monotonic()
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        sock.sendall(req)
        buf = b""
        deadline = start + timeout
        while b"\r\n\r\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no answer to the upgrade within {timeout}s; got {buf!r}")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"connection closed without an HTTP answer; got {buf!r}")
            buf += chunk
        elapsed = time.monotonic() - start
        head, rest = buf.split(b"\r\n\r\n", 1)
        status, status_line, hdrs = _parse_head(head)
        if status == 101:
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            got = dict((k.lower(), v) for k, v in hdrs).get("sec-websocket-accept")
            assert got == accept, f"bad Sec-WebSocket-Accept {got!r} in {hdrs!r}"
            a = Attempt(status, status_line, hdrs, rest, sock=sock, elapsed=elapsed, key=key,
                        request=req)
            sock = None  # handed over
            return a
        length = _content_length(hdrs)
        body = rest
        # The body (bounded by Content-Length when there is one), then EOF; junk after the
        # body is kept so that the check shows it.
        end = time.monotonic() + close_wait
        body, closed = _recv_until(sock, body, end, length)
        if not closed:
            body, closed = _recv_until(sock, body, end, None)
        return Attempt(status, status_line, hdrs, body, closed=closed, elapsed=elapsed, key=key,
                       request=req)
    finally:
        if sock is not None:
            sock.close()


class AsyncAttempt(Attempt):
    def close(self):
        if self.sock is not None:
            with contextlib.suppress(Exception):
                self.sock.close()  # an asyncio StreamWriter
            self.sock = None


async def attempt_async(port, headers=(), path="/ws", timeout=5.0, close_wait=2.0):
    """The same as attempt() on asyncio streams, so that other clients in the same event
    loop (websockets connections) keep answering pings meanwhile. For a 101, .sock is the
    StreamWriter and .reader the StreamReader."""
    req, key = build_request(port, path, headers)
    start = time.monotonic()
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
    handed_over = False
    try:
        writer.write(req)
        await writer.drain()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        except asyncio.IncompleteReadError as e:
            raise AssertionError(
                f"connection closed without an HTTP answer; got {e.partial!r}") from None
        except asyncio.TimeoutError:
            raise AssertionError(f"no answer to the upgrade within {timeout}s") from None
        elapsed = time.monotonic() - start
        status, status_line, hdrs = _parse_head(head[:-4])
        if status == 101:
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            got = dict((k.lower(), v) for k, v in hdrs).get("sec-websocket-accept")
            assert got == accept, f"bad Sec-WebSocket-Accept {got!r} in {hdrs!r}"
            a = AsyncAttempt(status, status_line, hdrs, b"", sock=writer, elapsed=elapsed,
                             key=key, request=req)
            a.reader = reader
            handed_over = True
            return a
        length = _content_length(hdrs)
        body = b""
        closed = False
        end = time.monotonic() + close_wait
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            try:
                chunk = await asyncio.wait_for(reader.read(65536), remaining)
            except asyncio.TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            body += chunk
            if length is not None and len(body) > length:
                pass  # junk after the body: keep reading to EOF, the check shows it
        return AsyncAttempt(status, status_line, hdrs, body, closed=closed, elapsed=elapsed,
                            key=key, request=req)
    finally:
        if not handed_over:
            writer.close()


def check_refusal(a, reason, retry_after=None, where=""):
    """Asserts the whole refusal format of CONTRACT section 4. retry_after: the configured
    `limits.retry_after` in seconds (the default 5 when None) for the reasons that carry
    the header. Returns the Retry-After value (int) or None."""
    status, has_retry = REFUSALS[reason]
    ctx = f"{where}: {a!r}" if where else repr(a)
    assert a.status == status, f"expected {status} {reason}, got {a.status}: {ctx}"
    ct = (a.header("content-type") or "").split(";")[0].strip().lower()
    assert ct == "application/json", f"refusal body is not JSON (Content-Type {ct!r}): {ctx}"
    try:
        body = a.json()
    except ValueError:
        raise AssertionError(f"refusal body is not JSON: {ctx}") from None
    assert body == {"error": reason}, f"expected body {{'error': {reason!r}}}: {ctx}"
    conn = [v.lower() for k, v in a.headers if k.lower() == "connection"]
    assert any("close" in v.split(",") or v.strip() == "close" for v in conn), (
        f"no 'Connection: close' on a refusal: {ctx}")
    assert a.closed, f"the server did not close the connection after the refusal: {ctx}"
    retry = a.header("retry-after")
    if not has_retry:
        assert retry is None, f"{reason} must not carry Retry-After (got {retry!r}): {ctx}"
        return None
    assert retry is not None, f"{reason} must carry Retry-After: {ctx}"
    assert a.header_count("retry-after") == 1, f"several Retry-After headers: {ctx}"
    assert retry.isdigit(), f"Retry-After {retry!r} is not whole seconds: {ctx}"
    base = 5.0 if retry_after is None else float(retry_after)
    value = int(retry)
    assert base <= value <= 1.5 * base, (
        f"Retry-After {value} outside [{base:g}, {1.5 * base:g}]: {ctx}")
    return value


def check_admitted(a, where=""):
    assert a.status == 101, f"expected 101 (admitted), got: {where} {a!r}"
    return a


def rejected(metrics):
    """{reason: count} of wsvisor_admissions_rejected_total."""
    out = {}
    for labels, value in metrics.series("wsvisor_admissions_rejected_total").items():
        out[dict(labels).get("reason", "")] = value
    return out


class RejectCounter:
    """Checks that wsvisor_admissions_rejected_total moved by exactly the refusals seen."""

    def __init__(self, port):
        self.port = port
        self.before = rejected(scrape(port))
        for r in REJECT_REASONS:
            assert r in self.before, (
                f"wsvisor_admissions_rejected_total{{reason={r!r}}} missing at start "
                f"(CONTRACT section 6): {self.before}")
        self.expected = {}

    def add(self, reason, n=1):
        self.expected[reason] = self.expected.get(reason, 0) + n

    def deltas(self, metrics):
        now = rejected(metrics)
        return {r: now.get(r, 0) - self.before.get(r, 0) for r in set(now) | set(self.before)
                if now.get(r, 0) != self.before.get(r, 0)}

    def verify(self, timeout=5.0):
        want = {r: n for r, n in self.expected.items() if n}
        m = wait_metric(self.port, lambda m: self.deltas(m) == want, timeout=timeout,
                        what=f"rejections counted once each: {want}")
        # Not counted twice later (a second sample after the first match).
        m2 = scrape(self.port)
        assert self.deltas(m2) == want, (
            f"rejection counts moved on after matching: {self.deltas(m2)} != {want}")
        return m


# ------------------------------------------------------------------------- JWT

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(claims, secret, header=None, alg="HS256"):
    header = header if header is not None else {"alg": alg, "typ": "JWT"}
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    p = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{h}.{p}".encode()
    if isinstance(secret, str):
        secret = secret.encode()
    sig = b64url(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return f"{h}.{p}.{sig}"


def now_s():
    return int(time.time())
