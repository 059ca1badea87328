"""Gateway mode's end-to-end tests (CONTRACT 11 and 12) run wsvisor in front of the real
example backend (examples/python-backend/backend.py, started here on a free port with
its test controls, stopped at the end). Loopback only; every wait is bounded."""

import contextlib
import json
import os
import queue
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import HOST, REPO, http_request

BACKEND = REPO / "examples" / "python-backend" / "backend.py"
API_KEY = "e2e-api-key-0123456789"
TOKEN = "e2e-upstream-token-0123456789"
GATEWAY_ENV = {"WSVISOR_API_KEY": API_KEY, "WSVISOR_UPSTREAM_TOKEN": TOKEN}


class Backend:
    """backend.py as a subprocess with --test-controls; wsvisor's URL is given later
    (the backend's port must be known first to start wsvisor)."""

    def __init__(self, tmp_path, wsvisor_port=None, args=()):
        self.stderr_path = tmp_path / f"backend-{time.monotonic_ns()}.stderr"
        stderr = open(self.stderr_path, "wb")
        env = {k: v for k, v in os.environ.items()
               if k not in ("BACKEND_PORT", "WSVISOR_URL", "WSVISOR_API_KEY",
                            "WSVISOR_UPSTREAM_TOKEN") and not k.startswith("WSVISOR_")}
        wsvisor = f"http://{HOST}:{wsvisor_port or 1}"
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", str(BACKEND), "--port", "0", "--wsvisor", wsvisor,
             "--api-key", API_KEY, "--token", TOKEN, "--test-controls", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=env)
        stderr.close()
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = self._wait_listening()
        self.url = f"http://{HOST}:{self.port}"

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode("utf-8", "replace").rstrip("\n"))

    def _wait_listening(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if line.startswith(f"listening on {HOST}:"):
                return int(line.rsplit(":", 1)[1])
        self.stop()
        raise AssertionError(f"the backend did not start: {self.stderr_path.read_text()}")

    def call(self, method, path, body=None, timeout=10.0):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.loads(answer.read() or b"null")

    def script(self, path, statuses, delay_ms=0):
        return self.call("POST", "/control/script",
                         {"path": path, "statuses": statuses, "delay_ms": delay_ms})

    def configure(self, **settings):
        return self.call("POST", "/control/config", settings)

    def stats(self):
        return self.call("GET", "/control/stats")

    def registry(self):
        return self.call("GET", "/registry")

    def reset(self):
        return self.call("POST", "/control/reset")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        with contextlib.suppress(Exception):
            self.proc.stdout.close()


@pytest.fixture
def backend(tmp_path):
    b = Backend(tmp_path)
    yield b
    b.stop()


def gateway_sets(backend, *extra, connect=True, events=True):
    """--set assignments for wsvisor in gateway mode in front of `backend`."""
    sets = ["app.mode=gateway", f"upstream.url={backend.url}",
            'upstream.forward_headers=["Cookie","Authorization","User-Agent","Origin","X-Demo-User"]']
    if connect:
        sets.append("gateway.connect_path=/connect")
    if events:
        sets.append(f"events.url={backend.url}/events")
    return [*sets, *extra]


def api(port, method, path, body=None, key=API_KEY, headers=None, timeout=10.0):
    """One server API request (X-API-Key unless `headers` say otherwise)."""
    h = {} if key is None else {"X-API-Key": key}
    h.update(headers or {})
    raw = None
    if body is not None:
        raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
        raw = raw.encode() if isinstance(raw, str) else raw
        h.setdefault("Content-Type", "application/json")
    elif method == "POST":
        raw = b""
    return http_request(port, method, path, headers=h, body=raw, timeout=timeout)


def session(user):
    """The headers of a browser logged in to the example backend as `user`."""
    return [("Cookie", f"session={user}")]


def wait_registry(backend, predicate, timeout=20.0, what="registry condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = backend.registry()
        if predicate(last):
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last registry: "
                         f"{json.dumps(last)[:2000]}")
