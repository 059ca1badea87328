"""Helpers shared by the janitor, slow-consumer, drain and storm tests (CONTRACT sections
4, 5, 6 and 9). Loopback only; every wait is bounded in time and count."""

import base64
import contextlib
import hashlib
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import HOST, OP_CLOSE, WS_GUID, upgrade_request, http_get, scrape

# ------------------------------------------------------------------------ wsload

def wsload_bin():
    """The wsload binary from WSLOAD_BIN (ctest sets it); fails the test without it."""
    path = os.environ.get("WSLOAD_BIN")
    if not path:
        pytest.fail("WSLOAD_BIN is not set: these tests need the wsload load tool "
                    "(cmake --build <build> --target wsload; ctest sets WSLOAD_BIN)")
    p = Path(path)
    if not p.is_file() or not os.access(p, os.X_OK):
        pytest.fail(f"WSLOAD_BIN={path} is not an executable file")
    return str(p)


def _wsload_cmd(mode, port, *args):
    return [wsload_bin(), mode, "--host", HOST, "--port", str(port), "--quiet",
            *[str(a) for a in args]]


def _wsload_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("WSVISOR_")}


class WsloadRun:
    """A wsload process in the background; .result() returns its JSON summary."""

    def __init__(self, mode, port, *args):
        self.cmd = _wsload_cmd(mode, port, *args)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=_wsload_env())

    def stop(self):
        """Asks wsload to stop early (SIGINT: soft stop, the JSON is still printed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def result(self, timeout):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"wsload did not finish within {timeout}s: {self.cmd}\n"
                                 f"stderr: {err.decode(errors='replace')[-2000:]}")
        text = out.decode(errors="replace")
        if self.proc.returncode != 0:
            raise AssertionError(f"wsload exited {self.proc.returncode}: {self.cmd}\n"
                                 f"stdout: {text[-2000:]}\n"
                                 f"stderr: {err.decode(errors='replace')[-2000:]}")
        try:
            return json.loads(text)
        except ValueError:
            raise AssertionError(f"wsload printed no JSON: {self.cmd}\nstdout: {text[-2000:]}\n"
                                 f"stderr: {err.decode(errors='replace')[-2000:]}") from None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(Exception):
                self.proc.communicate(timeout=10)


def run_wsload(mode, port, *args, timeout=120):
    """Runs wsload to completion; returns its JSON summary."""
    run = WsloadRun(mode, port, *args)
    try:
        return run.result(timeout)
    finally:
        run.kill()


# ----------------------------------------------------------------------- metrics

def metric(m, name, **labels):
    v = m.get(name, **labels)
    assert v is not None, f"metric {name}{labels} missing from /metrics"
    return v


def closed(m, reason):
    return metric(m, "wsvisor_connections_closed_total", reason=reason)


def evictions(m, reason):
    return metric(m, "wsvisor_evictions_total", reason=reason)


def rss_bytes(port):
    return metric(scrape(port), "process_resident_memory_bytes")


def metrics_summary(m):
    return "\n".join(l for l in m.text.splitlines()
                     if (l.startswith("wsvisor_") or l.startswith("process_"))
                     and "_bucket" not in l and not l.endswith(" 0"))


# --------------------------------------------------------------------------- log

_TS_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:(\d\d):(\d\d(?:\.\d+)?)Z?)")
_SWEEP_RE = re.compile(r"sweep kind=periodic evicted=(\d+) zombie=(\d+) idle=(\d+) lifetime=(\d+)")
_CLOSE_RE = re.compile(r"connection closed id=(\S+) user=(\S*) ip=(\S+) code=(\d+) "
                       r"reason=(.*?) duration_s=([\d.]+)")


def sweep_lines(log):
    """[(evicted, zombie, idle, lifetime)] of the periodic sweep log lines."""
    return [tuple(int(x) for x in m.groups())
            for m in (_SWEEP_RE.search(l) for l in log.splitlines()) if m]


def close_lines(log):
    """[(timestamp_seconds_or_None, code, reason, duration_s)] of the per-close log lines."""
    out = []
    for line in log.splitlines():
        m = _CLOSE_RE.search(line)
        if not m:
            continue
        ts = None
        t = _TS_RE.match(line)
        if t:
            hh = int(t.group(1)[11:13])
            ts = hh * 3600 + int(t.group(2)) * 60 + float(t.group(3))
        out.append((ts, int(m.group(4)), m.group(5), float(m.group(6))))
    return out


# -------------------------------------------------------------------- raw sockets

TCP_INFO = getattr(socket, "TCP_INFO", 11)
TCP_ESTABLISHED, TCP_CLOSE_WAIT, TCP_CLOSE = 1, 8, 7


def tcp_state(sock):
    """The kernel's TCP state of sock (1 established, 8 close-wait = FIN received, 7 closed =
    reset), read without consuming any data."""
    info = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 8)
    return info[0]


def server_closed_tcp(sock):
    """True once the server sent FIN or RST (seen by the kernel, nothing read)."""
    try:
        return tcp_state(sock) != TCP_ESTABLISHED
    except OSError:
        return True


def raw_upgrade(port, rcvbuf=None, timeout=5.0):
    """A socket that completed the WebSocket handshake, and the bytes read past the 101.
    With rcvbuf, SO_RCVBUF is set before connecting (a small receive window)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect((HOST, port))
        req, key = upgrade_request(port)
        s.sendall(req)
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf:
            if time.monotonic() >= deadline:
                raise AssertionError(f"no handshake answer; got {buf!r}")
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError(f"closed during the handshake; got {buf!r}")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        assert status == 101, f"handshake refused: {head!r}"
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        assert f"sec-websocket-accept: {accept}".lower() in head.decode("latin-1").lower()
        return s, rest
    except BaseException:
        s.close()
        raise


def watch_for_close(socks, timeout):
    """Reads every socket (discarding data) until the server closes it (EOF or reset).
    Returns {index: seconds until close} for those closed within timeout, plus
    {index: bytes read}."""
    start = time.monotonic()
    deadline = start + timeout
    closed_at = {}
    data = {i: b"" for i in range(len(socks))}
    open_ = {s.fileno(): i for i, s in enumerate(socks)}
    for s in socks:
        s.setblocking(False)
    for _ in range(1_000_000):
        if not open_:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        readable, _, _ = select.select(list(open_), [], [], min(remaining, 0.05))
        for fd in readable:
            i = open_[fd]
            try:
                chunk = socks[i].recv(65536)
            except BlockingIOError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if chunk:
                data[i] += chunk
            else:
                closed_at[i] = time.monotonic() - start
                del open_[fd]
    return closed_at, data


def parse_server_frames(data):
    """[(opcode, payload)] of the complete unmasked frames in data (the rest ignored)."""
    frames = []
    pos = 0
    for _ in range(10_000_000):
        if len(data) - pos < 2:
            break
        b0, b1 = data[pos], data[pos + 1]
        n = b1 & 0x7F
        hdr = 2
        if n == 126:
            if len(data) - pos < 4:
                break
            n = struct.unpack("!H", data[pos + 2:pos + 4])[0]
            hdr = 4
        elif n == 127:
            if len(data) - pos < 10:
                break
            n = struct.unpack("!Q", data[pos + 2:pos + 10])[0]
            hdr = 10
        if b1 & 0x80:
            raise AssertionError("server frame is masked")
        if len(data) - pos < hdr + n:
            break
        frames.append((b0 & 0x0F, data[pos + hdr:pos + hdr + n]))
        pos += hdr + n
    return frames


def close_frame_of(frames):
    """(code, reason) of the first close frame among frames, or None."""
    for op, payload in frames:
        if op == OP_CLOSE:
            if len(payload) >= 2:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")
            return (None, "")
    return None


# ---------------------------------------------------------------------- readiness

def wait_draining(port, timeout=1.0):
    """Polls /health/ready until 503 {"status":"draining"}; returns seconds waited."""
    start = time.monotonic()
    seen = []
    for _ in range(100_000):
        elapsed = time.monotonic() - start
        if elapsed > timeout:
            raise AssertionError(f"/health/ready not draining {timeout}s after the signal: "
                                 f"{seen[-5:]}")
        try:
            r = http_get(port, "/health/ready", timeout=2)
        except OSError as e:
            raise AssertionError(f"listener gone before readiness said draining: {e!r}; "
                                 f"{seen[-5:]}") from None
        body = r.body
        with contextlib.suppress(ValueError):
            body = r.json()
        seen.append((round(elapsed, 3), r.status, body))
        if r.status == 503:
            assert body == {"status": "draining"}, seen[-5:]
            return elapsed
        assert r.status == 200 and body == {"status": "ready"}, seen[-5:]
        time.sleep(0.005)
    raise AssertionError("unreachable")
