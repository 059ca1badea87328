"""Self-test of the example backend: backend.py runs as a subprocess on a free port and
every endpoint is checked over HTTP with urllib, wsvisor played by a tiny recording
http.server. Run with `/usr/bin/python3 -m pytest -q examples/python-backend`.

Loopback only; every wait is bounded in time.
"""

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BACKEND = HERE / "backend.py"
HOST = "127.0.0.1"
API_KEY = "test-api-key"
TOKEN = "test-upstream-token"
START_TIMEOUT = 10.0  # seconds for the `listening on` line
STOP_TIMEOUT = 10.0  # seconds for the process to exit after a signal
HTTP_TIMEOUT = 10.0  # seconds for any one request


# --------------------------------------------------------------------------- fake wsvisor


class FakeWsvisor:
    """Records what the backend sends to wsvisor's server API and answers /api/send
    with {"delivered": 1}, or with `status` when a test sets it."""

    def __init__(self):
        self.requests = queue.Queue()
        self.status = 200
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.put((self.path, self.headers, body))  # any case
                answer = json.dumps({"delivered": 1} if fake.status == 200
                                    else {"error": "gone"}).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{HOST}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self, count, timeout=10.0):
        """The next `count` recorded requests, failing the test when they do not come."""
        deadline = time.monotonic() + timeout
        taken = []
        while len(taken) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"fake wsvisor got {len(taken)} of {count} requests: {taken}")
            try:
                taken.append(self.requests.get(timeout=remaining))
            except queue.Empty:
                continue
        return taken

    def drain(self):
        while not self.requests.empty():
            self.requests.get_nowait()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- the backend process


class BackendProcess:
    """backend.py as a subprocess. stdout is read by a thread (the `listening` line);
    stderr goes to a file, so that a chatty backend can never block on a full pipe."""

    def __init__(self, tmp_path, args=(), env=None):
        self.stderr_path = tmp_path / f"backend-{time.monotonic_ns()}.stderr"
        stderr = open(self.stderr_path, "wb")
        environment = {k: v for k, v in os.environ.items()
                       if k not in ("BACKEND_PORT", "WSVISOR_URL", "WSVISOR_API_KEY",
                                    "WSVISOR_UPSTREAM_TOKEN")}
        environment.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, str(BACKEND), *args], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=stderr, env=environment)
        stderr.close()
        self.lines = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self.port = self._wait_listening()
        self.url = f"http://{HOST}:{self.port}"

    def _read_stdout(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode("utf-8", "replace").rstrip("\n"))

    def _wait_listening(self):
        deadline = time.monotonic() + START_TIMEOUT
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
        pytest.fail(f"backend did not print `listening on`: {self.stderr_path.read_text()}")

    def signal(self, signum):
        """Sends signum and returns the exit code, within STOP_TIMEOUT."""
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=STOP_TIMEOUT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def fake_wsvisor():
    fake = FakeWsvisor()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def backend(tmp_path_factory, fake_wsvisor):
    """One backend for the module, with every option a test needs; tests start from a
    clean state through POST /control/reset."""
    proc = BackendProcess(tmp_path_factory.mktemp("backend"), [
        "--port", "0", "--wsvisor", fake_wsvisor.url, "--api-key", API_KEY,
        "--token", TOKEN, "--reject", "mallory,eve", "--max-tabs", "2",
        "--step-ms", "20", "--progress-step", "25", "--test-controls"])
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def clean(request, fake_wsvisor):
    """A clean backend and fake for every test that uses them."""
    if "backend" in request.fixturenames:
        call(request.getfixturevalue("backend"), "POST", "/control/reset")
    fake_wsvisor.status = 200
    fake_wsvisor.drain()


# --------------------------------------------------------------------------- HTTP helpers


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def call(backend, method, path, body=None, headers=None, token=True):
    """One request with urllib; an HTTP error status is an answer, not an exception.
    A dict or list body is sent as JSON. The upstream token goes along unless
    token=False (or an Authorization header is given)."""
    headers = dict(headers or {})
    if token and "Authorization" not in headers:
        headers["Authorization"] = f"Bearer {TOKEN}"
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    request = urllib.request.Request(backend.url + path, data=body, method=method,
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers, error.read())


def connect(backend, headers=None, user=None, subprotocols=(), connection="n1.1", **kw):
    body = {"connection": connection, "ip": "127.0.0.1", "user": user, "path": "/ws",
            "query": "", "subprotocols": list(subprotocols), "headers": headers or {}}
    return call(backend, "POST", "/connect", body, **kw)


def message(backend, data, delivery=None, user="alice", connection="n1.1", **kw):
    binary = isinstance(data, bytes)
    headers = {"Content-Type": "application/octet-stream" if binary
               else "text/plain; charset=utf-8",
               "X-Wsvisor-Connection": connection, "X-Wsvisor-User": user,
               "X-Wsvisor-Meta": '{"plan":"free"}'}
    if delivery:
        headers["X-Wsvisor-Delivery"] = delivery
    return call(backend, "POST", "/ws/message", data, headers=headers, **kw)


def event(backend, kind, connection, user="alice", event_id=None, **extra):
    body = {"id": event_id or f"{kind}-{connection}", "type": kind,
            "connection": connection, "user": user, "ip": "127.0.0.1", "node": "n1",
            "at": "2026-01-01T00:00:00.000Z", "meta": {"plan": "free"}}
    if kind == "disconnect":
        body.update(code=1000, reason="", close_reason="client", duration_ms=5)
    body.update(extra)
    return call(backend, "POST", "/events", body,
                headers={"X-Wsvisor-Event-Id": body["id"]})


def free_port():
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def port_is_closed(port):
    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) != 0


def registry(backend):
    answer = call(backend, "GET", "/registry")
    assert answer.status == 200
    return answer.json()


# --------------------------------------------------------------------------- process


def test_environment_configures_the_backend_and_sigterm_stops_it(tmp_path, fake_wsvisor):
    proc = BackendProcess(tmp_path, env={
        "BACKEND_PORT": "0", "WSVISOR_URL": fake_wsvisor.url, "WSVISOR_API_KEY": "env-key",
        "WSVISOR_UPSTREAM_TOKEN": "env-token"})
    try:
        assert connect(proc, {"x-demo-user": "bob"}, token=False).status == 401
        ok = call(proc, "POST", "/connect", {"headers": {"x-demo-user": "bob"}},
                  headers={"Authorization": "Bearer env-token"})
        assert ok.status == 200 and ok.json()["user"] == "bob"
        started = call(proc, "POST", "/ws/message", '{"type":"start","task":"t"}',
                       headers={"Authorization": "Bearer env-token",
                                "Content-Type": "text/plain; charset=utf-8",
                                "X-Wsvisor-User": "bob"})
        assert started.json() == {"type": "started", "task": "t"}
        path, headers, _ = fake_wsvisor.take(1)[0]
        assert path == "/api/send" and headers["X-API-Key"] == "env-key"
        assert proc.signal(signal.SIGTERM) == 0
    finally:
        proc.stop()
    assert "stopped" in proc.stderr_path.read_text()


def test_sigint_stops_cleanly(tmp_path, fake_wsvisor):
    proc = BackendProcess(tmp_path, ["--port", "0", "--wsvisor", fake_wsvisor.url])
    try:
        assert proc.signal(signal.SIGINT) == 0
    finally:
        proc.stop()


def test_given_port_is_used(tmp_path, fake_wsvisor):
    port = free_port()
    proc = BackendProcess(tmp_path, ["--port", str(port), "--wsvisor", fake_wsvisor.url])
    try:
        assert proc.port == port
    finally:
        proc.stop()


def test_unknown_path_and_wrong_method(backend):
    assert call(backend, "GET", "/nope").status == 404
    assert call(backend, "GET", "/nope").json() == {"error": "not_found"}
    wrong = call(backend, "GET", "/connect")
    assert wrong.status == 405 and wrong.headers["Allow"] == "POST"


# --------------------------------------------------------------------------- the page


def test_page_is_served_at_root(backend):
    answer = call(backend, "GET", "/")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert answer.body == (HERE / "index.html").read_bytes()
    assert b"new WebSocket(" in answer.body and b"<script src" not in answer.body


def test_login_sets_the_session_cookie_the_connect_hook_reads(backend):
    answer = call(backend, "POST", "/login", {"user": "alice"})
    assert answer.status == 200 and answer.json() == {"user": "alice"}
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("session=alice;") and "Path=/" in cookie
    session = cookie.split(";", 1)[0]
    assert connect(backend, {"cookie": session}).json()["user"] == "alice"
    for bad in ({"user": ""}, {"user": "a b"}, {"user": "x" * 65}, {"user": 1}, {}):
        assert call(backend, "POST", "/login", bad).status == 400


def test_client_config_names_the_wsvisor_port(backend, fake_wsvisor):
    assert call(backend, "GET", "/client-config").json() == {
        "ws_port": int(fake_wsvisor.url.rsplit(":", 1)[1]), "ws_path": "/ws"}


def test_one_kept_alive_connection_carries_every_kind_of_request(backend):
    """wsvisor's upstream client reuses its connections: every answer, a 204 and the
    errors included, must leave the connection ready for the next request."""
    connection = http.client.HTTPConnection(HOST, backend.port, timeout=HTTP_TIMEOUT)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    text = dict(auth, **{"Content-Type": "text/plain; charset=utf-8"})
    binary = dict(auth, **{"Content-Type": "application/octet-stream"})
    requests = [
        ("POST", "/connect", json.dumps({"headers": {"x-demo-user": "a"}}), auth, 200),
        ("POST", "/ws/message", "silent", text, 204),
        ("POST", "/ws/message", "hi", text, 200),
        ("POST", "/ws/message", b"\x00\x01", binary, 200),
        ("GET", "/nope", None, {}, 404),
        ("POST", "/connect", "{}", {}, 401),
        ("POST", "/ws/message", iter([b"chun", b"ked"]), text, 200),  # a chunked body
    ]
    try:
        connection.connect()
        sock = connection.sock
        bodies = []
        for method, path, body, headers, status in requests:
            connection.request(method, path, body, headers,
                               encode_chunked=not isinstance(body, (str, bytes, type(None))))
            response = connection.getresponse()
            bodies.append(response.read())
            assert response.status == status, (path, body)
            assert connection.sock is sock  # not reconnected
        assert bodies[2] == b"echo: hi" and bodies[3] == b"\x00\x01"
        assert bodies[6] == b"echo: chunked"
    finally:
        connection.close()


# --------------------------------------------------------------------------- /connect


def test_connect_identity_from_cookie_header_or_v1_user(backend):
    by_cookie = connect(backend, {"cookie": "theme=dark; session=alice; x=1"})
    assert by_cookie.status == 200
    assert by_cookie.json()["user"] == "alice"
    assert connect(backend, {"x-demo-user": "bob"}).json()["user"] == "bob"
    assert connect(backend, user="carol").json()["user"] == "carol"
    # The cookie wins over the header, which wins over the v1 user.
    assert connect(backend, {"cookie": "session=alice", "x-demo-user": "bob"},
                   user="carol").json()["user"] == "alice"
    assert connect(backend, {"x-demo-user": "bob"}, user="carol").json()["user"] == "bob"


def test_connect_answer_is_compact_with_meta(backend):
    before = int(time.time())
    answer = connect(backend, {"cookie": "session=alice"})
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.body == json.dumps(answer.json(), separators=(",", ":")).encode()
    meta = answer.json()["meta"]
    assert meta["plan"] == "free" and before <= meta["since"] <= int(time.time())
    assert "subprotocol" not in answer.json()


def test_connect_without_identity_is_401(backend):
    answer = connect(backend, {"cookie": "theme=dark"})
    assert answer.status == 401 and answer.json() == {"error": "no session"}
    assert connect(backend, {"cookie": "session="}).status == 401


def test_connect_rejected_user_is_403(backend):
    assert connect(backend, {"x-demo-user": "mallory"}).status == 403
    assert connect(backend, {"cookie": "session=eve"}).status == 403


def test_connect_over_max_tabs_is_429_with_retry_after(backend):
    event(backend, "connect", "n1.1", "alice")
    assert connect(backend, {"x-demo-user": "alice"}).status == 200
    event(backend, "connect", "n1.2", "alice")
    refused = connect(backend, {"x-demo-user": "alice"})
    assert refused.status == 429 and refused.headers["Retry-After"] == "3"
    assert connect(backend, {"x-demo-user": "bob"}).status == 200  # per user
    event(backend, "disconnect", "n1.1", "alice")
    assert connect(backend, {"x-demo-user": "alice"}).status == 200


def test_connect_echoes_first_demo_subprotocol(backend):
    answer = connect(backend, {"x-demo-user": "a"},
                     subprotocols=["wsvisor.v1", "demo.v2", "demo.v1"])
    assert answer.json()["subprotocol"] == "demo.v2"
    assert "subprotocol" not in connect(backend, {"x-demo-user": "a"},
                                        subprotocols=["chat"]).json()


def test_connect_checks_the_upstream_token(backend):
    assert connect(backend, {"x-demo-user": "a"}, token=False).status == 401
    bad = call(backend, "POST", "/connect", {"headers": {"x-demo-user": "a"}},
               headers={"Authorization": "Bearer wrong"})
    assert bad.status == 401
    assert connect(backend, {"x-demo-user": "a"}).status == 200


def test_connect_with_bad_json_is_400(backend):
    assert call(backend, "POST", "/connect", "not json").status == 400


# --------------------------------------------------------------------------- /ws/message


def test_text_message_is_echoed(backend):
    answer = message(backend, "héllo", "n1.1:1")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert answer.body.decode() == "echo: héllo"


def test_binary_message_comes_back_unchanged(backend):
    data = bytes(range(256))
    answer = message(backend, data, "n1.1:1")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/octet-stream"
    assert answer.body == data


def test_silent_message_is_204(backend):
    answer = message(backend, "silent", "n1.1:1")
    assert answer.status == 204 and answer.body == b""


def test_message_checks_the_upstream_token(backend):
    assert message(backend, "hi", token=False).status == 401


def test_start_pushes_progress_through_api_send(backend, fake_wsvisor):
    answer = message(backend, '{"type":"start","task":"report"}', "n1.1:1", user="alice")
    assert answer.status == 200 and answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {"type": "started", "task": "report"}
    sent = fake_wsvisor.take(6)
    for path, headers, _ in sent:
        assert path == "/api/send" and headers["X-API-Key"] == API_KEY
    bodies = [json.loads(body) for _, _, body in sent]
    assert all(b["user"] == "alice" for b in bodies)
    pushed = [json.loads(b["data"]) for b in bodies]
    assert pushed == [{"type": "progress", "task": "report", "percent": p}
                      for p in (0, 25, 50, 75, 100)] + [{"type": "done", "task": "report"}]


def test_start_without_user_goes_to_the_connection(backend, fake_wsvisor):
    message(backend, '{"type":"start","task":"t"}', "n1.7:1", user="", connection="n1.7")
    bodies = [json.loads(body) for _, _, body in fake_wsvisor.take(6)]  # the whole task
    assert all(b["connection"] == "n1.7" and "user" not in b for b in bodies)


def test_a_task_stops_when_the_connection_is_gone(backend, fake_wsvisor):
    fake_wsvisor.status = 410
    message(backend, '{"type":"start","task":"t"}', "n1.1:1")
    fake_wsvisor.take(1)
    time.sleep(0.3)  # 15 step times: the task would have sent again by now
    assert fake_wsvisor.requests.empty()


def test_duplicate_delivery_gets_the_same_reply_and_no_second_task(backend, fake_wsvisor):
    first = message(backend, '{"type":"start","task":"once"}', "n1.1:5")
    again = message(backend, '{"type":"start","task":"once"}', "n1.1:5")
    assert again.status == first.status and again.body == first.body
    fake_wsvisor.take(6)
    time.sleep(0.3)
    assert fake_wsvisor.requests.empty()  # one task, not two
    echo = message(backend, "x", "n1.1:6")
    assert message(backend, "x", "n1.1:6").body == echo.body == b"echo: x"
    stats = call(backend, "GET", "/control/stats").json()
    assert stats["message_duplicates"] == 2
    assert stats["attempts_by_delivery"] == {"n1.1:5": 2, "n1.1:6": 2}


def test_messages_without_delivery_id_are_answered_each_time(backend):
    assert message(backend, "a").body == message(backend, "a").body == b"echo: a"


# --------------------------------------------------------------------------- /events


def test_events_build_the_registry(backend):
    assert event(backend, "connect", "n1.1", "alice").json()["duplicate"] is False
    event(backend, "connect", "n1.2", "alice")
    event(backend, "connect", "n1.3", "bob")
    event(backend, "disconnect", "n1.2", "alice", close_reason="zombie")
    state = registry(backend)
    assert state["connections"] == {
        "n1.1": {"user": "alice", "ip": "127.0.0.1", "node": "n1",
                 "since": "2026-01-01T00:00:00.000Z"},
        "n1.3": {"user": "bob", "ip": "127.0.0.1", "node": "n1",
                 "since": "2026-01-01T00:00:00.000Z"}}
    assert state["by_user"] == {"alice": 1, "bob": 1}
    assert state["events"] == {"connect": 3, "disconnect": 1, "duplicates": 0}
    assert state["close_reasons"] == {"zombie": 1}
    assert state["anomalies"] == []


def test_duplicate_event_ids_are_idempotent(backend):
    event(backend, "connect", "n1.1", event_id="e1")
    assert event(backend, "connect", "n1.1", event_id="e1").json()["duplicate"] is True
    event(backend, "disconnect", "n1.1", event_id="e2")
    event(backend, "disconnect", "n1.1", event_id="e2")
    state = registry(backend)
    assert state["connections"] == {} and state["anomalies"] == []
    assert state["events"] == {"connect": 1, "disconnect": 1, "duplicates": 2}
    assert state["close_reasons"] == {"client": 1}


def test_disconnect_without_connect_is_an_anomaly(backend):
    event(backend, "disconnect", "n1.9", "zed", event_id="e9")
    state = registry(backend)
    assert state["anomalies"] == [{"kind": "disconnect_without_connect", "event_id": "e9",
                                   "connection": "n1.9", "user": "zed",
                                   "at": "2026-01-01T00:00:00.000Z"}]
    # A late connect for it must not enter the registry: it would never leave.
    event(backend, "connect", "n1.9", "zed", event_id="e8")
    state = registry(backend)
    assert state["connections"] == {}
    assert [a["kind"] for a in state["anomalies"]] == [
        "disconnect_without_connect", "connect_after_disconnect"]


def test_bad_events_are_400(backend):
    assert call(backend, "POST", "/events", {"type": "hello", "connection": "c"}).status == 400
    assert call(backend, "POST", "/events", {"type": "connect"}).status == 400
    assert call(backend, "POST", "/events", "[1,2]").status == 400


def test_events_check_a_carried_bearer(backend):
    body = {"id": "e1", "type": "connect", "connection": "n1.1", "user": "a"}
    assert call(backend, "POST", "/events", body,
                headers={"Authorization": "Bearer wrong"}).status == 401
    assert call(backend, "POST", "/events", body, token=False).status == 200


def test_registry_under_20_concurrent_event_posts(backend):
    """20 threads at once, each a connect, a duplicate of it and a disconnect of every
    second one: the lock must leave exactly the odd connections, counted right."""
    barrier = threading.Barrier(20, timeout=10)
    errors = []

    def worker(n):
        try:
            barrier.wait()
            connection, user = f"n1.{n}", f"user{n % 4}"
            assert event(backend, "connect", connection, user).status == 200
            assert event(backend, "connect", connection, user).status == 200
            if n % 2 == 0:
                assert event(backend, "disconnect", connection, user).status == 200
        except Exception as error:  # reported below, with the others
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors and not any(t.is_alive() for t in threads)
    state = registry(backend)
    assert sorted(state["connections"]) == sorted(f"n1.{n}" for n in range(1, 20, 2))
    assert state["events"] == {"connect": 20, "disconnect": 10, "duplicates": 20}
    assert state["by_user"] == {"user1": 5, "user3": 5}
    assert state["anomalies"] == []


# --------------------------------------------------------------------------- /centrifugo/rpc


def rpc(backend, method=None, data=None, user="alice", client="n1.7", raw=None, **kw):
    """One Centrifugo RPC proxy request, shaped as Centrifugo (and wsvisor's hub mode)
    send it; `raw` replaces the whole body."""
    body = {"client": client, "transport": "websocket", "protocol": "json",
            "encoding": "json"}
    if user is not None:
        body["user"] = user
    if method is not None:
        body["method"] = method
    if data is not None:
        body["data"] = data
    return call(backend, "POST", "/centrifugo/rpc", body if raw is None else raw, **kw)


def test_rpc_echo_returns_the_data_unchanged(backend):
    data = {"text": "héllo", "list": [1, 2.5, None, True], "nested": {"n": 2 ** 53 + 1}}
    answer = rpc(backend, "echo", data)
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {"result": {"data": data}}
    for scalar in ("text", 0, [], {}):
        assert rpc(backend, "echo", scalar).json() == {"result": {"data": scalar}}
    assert rpc(backend, "echo").json() == {"result": {}}  # no data: an empty result


def test_rpc_whoami_answers_the_connections_user(backend):
    assert rpc(backend, "whoami", {}, user="bob", client="n1.9").json() == {
        "result": {"data": {"user": "bob", "client": "n1.9"}}}
    # Anonymous: Centrifugo sends no user (or an empty one).
    assert rpc(backend, "whoami", {}, user=None).json()["result"]["data"]["user"] == ""
    assert rpc(backend, "whoami", {}, user="").json()["result"]["data"]["user"] == ""
    # The connection's meta (the token's `meta` claim), when the request carries one.
    answer = call(backend, "POST", "/centrifugo/rpc", {
        "client": "n1.2", "user": "carol", "method": "whoami", "meta": {"plan": "pro"}})
    assert answer.json() == {"result": {"data": {"user": "carol", "client": "n1.2",
                                                 "meta": {"plan": "pro"}}}}


def test_rpc_unknown_method_is_error_404_with_http_200(backend):
    answer = rpc(backend, "nope", {"x": 1})
    assert answer.status == 200
    assert answer.json() == {"error": {"code": 404, "message": "unknown method"}}
    for method in ("ECHO", "echo ", "who"):
        assert rpc(backend, method, {}).json()["error"]["code"] == 404


def test_rpc_without_a_method_is_error_107(backend):
    for body in ({"client": "n1.1"}, {"method": ""}, {"method": 5}, {"method": None}):
        answer = rpc(backend, raw=body)
        assert answer.status == 200
        assert answer.json() == {"error": {"code": 107, "message": "bad request"}}, body


def test_rpc_body_that_is_not_a_json_object_is_400(backend):
    for raw in ("[]", "not json", '"echo"', ""):
        assert rpc(backend, raw=raw, headers={"Content-Type": "application/json"}).status == 400


def test_rpc_checks_the_upstream_token(backend):
    assert rpc(backend, "echo", {}, token=False).status == 401
    assert rpc(backend, "echo", {}, headers={"Authorization": "Bearer wrong"}).status == 401
    assert rpc(backend, "echo", {"n": 1}).json() == {"result": {"data": {"n": 1}}}


def test_rpc_on_a_kept_alive_connection(backend):
    """wsvisor's upstream client reuses its connections for the proxy calls too."""
    connection = http.client.HTTPConnection(HOST, backend.port, timeout=HTTP_TIMEOUT)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    try:
        connection.connect()
        sock = connection.sock
        for n, method in enumerate(["echo", "nope", "whoami", "echo"]):
            connection.request("POST", "/centrifugo/rpc",
                               json.dumps({"method": method, "data": {"n": n},
                                           "user": "carol", "client": "n1.3"}), headers)
            response = connection.getresponse()
            assert response.status == 200
            answer = json.loads(response.read())
            assert ("result" in answer) == (method != "nope"), answer
            assert connection.sock is sock  # not reconnected
    finally:
        connection.close()


def test_rpc_is_post_only(backend):
    wrong = call(backend, "GET", "/centrifugo/rpc")
    assert wrong.status == 405 and wrong.headers["Allow"] == "POST"


# --------------------------------------------------------------------------- test controls


def control(backend, path, body=None):
    answer = call(backend, "POST" if body is not None else "GET", path, body)
    assert answer.status == 200, answer.body
    return answer.json()


def stats(backend):
    return control(backend, "/control/stats")


def test_controls_are_absent_without_the_flag(tmp_path, fake_wsvisor):
    proc = BackendProcess(tmp_path, ["--port", "0", "--wsvisor", fake_wsvisor.url])
    try:
        for path in ("/control/stats", "/control/reset", "/control/config"):
            assert call(proc, "POST", path, {}).status == 404
        assert call(proc, "GET", "/control/stats").status == 404
    finally:
        proc.stop()


def test_script_answers_statuses_in_order_then_normally(backend):
    assert control(backend, "/control/script",
                   {"path": "/ws/message", "statuses": [503, 429, 200, 502]}) == {
        "path": "/ws/message", "queued": 4}
    first = message(backend, "a", "n1.1:1")
    assert first.status == 503 and first.json() == {"error": "scripted", "status": 503}
    assert first.headers["Retry-After"] == "1"
    assert message(backend, "a", "n1.1:1").status == 429
    assert message(backend, "a", "n1.1:1").body == b"echo: a"  # scripted 200: normal
    assert message(backend, "a", "n1.1:2").status == 502
    assert message(backend, "a", "n1.1:2").body == b"echo: a"
    assert stats(backend)["attempts_by_delivery"] == {"n1.1:1": 3, "n1.1:2": 2}
    assert stats(backend)["message_calls"] == 5


def test_script_on_connect_and_events(backend):
    control(backend, "/control/script", {"path": "/connect", "statuses": [403]})
    assert connect(backend, {"x-demo-user": "a"}).status == 403
    assert connect(backend, {"x-demo-user": "a"}).status == 200
    control(backend, "/control/script", {"path": "/events", "statuses": [500]})
    assert event(backend, "connect", "n1.1").status == 500
    assert event(backend, "connect", "n1.1").status == 200  # the retry is not a duplicate
    assert registry(backend)["events"] == {"connect": 1, "disconnect": 0, "duplicates": 0}
    assert stats(backend)["events_failed"] == 1


def test_script_delay_applies_to_each_scripted_request(backend):
    control(backend, "/control/script",
            {"path": "/ws/message", "statuses": [200], "delay_ms": 300})
    began = time.monotonic()
    assert message(backend, "a").body == b"echo: a"
    assert time.monotonic() - began >= 0.3
    began = time.monotonic()
    message(backend, "a")
    assert time.monotonic() - began < 0.3


def test_bad_control_requests_are_400(backend):
    assert call(backend, "POST", "/control/script",
                {"path": "/registry", "statuses": [503]}).status == 400
    assert call(backend, "POST", "/control/script",
                {"path": "/events", "statuses": ["503"]}).status == 400
    assert call(backend, "POST", "/control/config", {"no_such_key": 1}).status == 400
    assert call(backend, "POST", "/control/config", {"reply_garbage": 1}).status == 400
    assert call(backend, "POST", "/control/config", {"events_fail_ratio": 2}).status == 400


def test_config_answers_the_whole_config(backend):
    config = control(backend, "/control/config", {"message_delay_ms": 10})
    assert config["message_delay_ms"] == 10 and config["reply_garbage"] is False
    assert set(config) == {"events_fail_ratio", "connect_delay_ms", "message_delay_ms",
                           "reply_garbage", "huge_reply_mb", "endless_chunked",
                           "connect_user_override", "connect_user_bad_utf8",
                           "connect_meta_bytes", "connect_bad_json", "rpc_disconnect_code"}


def test_events_fail_ratio(backend):
    control(backend, "/control/config", {"events_fail_ratio": 1.0})
    for n in range(5):
        assert event(backend, "connect", f"n1.{n}").status == 503
    assert registry(backend)["events"]["connect"] == 0
    control(backend, "/control/config", {"events_fail_ratio": 0.5})
    outcomes = [event(backend, "connect", f"n2.{n}").status for n in range(60)]
    assert 200 in outcomes and 503 in outcomes  # (1/2)^60: never all one way
    assert stats(backend)["events_failed"] == 5 + outcomes.count(503)
    assert registry(backend)["events"]["connect"] == outcomes.count(200)


def concurrent_connects(backend, count):
    """`count` connect calls released together; their statuses."""
    barrier = threading.Barrier(count, timeout=10)
    statuses = []

    def one(n):
        barrier.wait()
        statuses.append(connect(backend, {"x-demo-user": f"u{n}"}).status)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return statuses


def test_connect_inflight_high_water_mark(backend):
    control(backend, "/control/config", {"connect_delay_ms": 300})
    assert concurrent_connects(backend, 8) == [200] * 8
    after = stats(backend)
    assert after["connect_inflight_max"] == 8
    assert after["connect_calls"] == 8 and after["connect_inflight"] == 0
    control(backend, "/control/reset", {})
    control(backend, "/control/config", {"connect_delay_ms": 50})
    for _ in range(3):
        connect(backend, {"x-demo-user": "a"})
    assert stats(backend)["connect_inflight_max"] == 1


def test_reply_garbage_is_not_http(backend):
    control(backend, "/control/config", {"reply_garbage": True})
    connection = http.client.HTTPConnection(HOST, backend.port, timeout=HTTP_TIMEOUT)
    try:
        connection.request("POST", "/ws/message", b"hi",
                           {"Content-Type": "text/plain; charset=utf-8"})
        with pytest.raises(http.client.HTTPException):
            connection.getresponse()
    finally:
        connection.close()


def test_huge_reply(backend):
    control(backend, "/control/config", {"huge_reply_mb": 100})
    connection = http.client.HTTPConnection(HOST, backend.port, timeout=HTTP_TIMEOUT)
    try:
        connection.request("POST", "/ws/message", b"hi",
                           {"Content-Type": "text/plain; charset=utf-8"})
        response = connection.getresponse()
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == 100 * 1024 * 1024
        received = 0
        while chunk := response.read(1 << 20):
            received += len(chunk)
        assert received == 100 * 1024 * 1024
    finally:
        connection.close()


def test_huge_reply_stops_when_the_reader_leaves(backend):
    control(backend, "/control/config", {"huge_reply_mb": 100})
    connection = http.client.HTTPConnection(HOST, backend.port, timeout=HTTP_TIMEOUT)
    connection.request("POST", "/ws/message", b"hi", {"Content-Type": "text/plain"})
    connection.getresponse().read(1000)
    connection.close()
    control(backend, "/control/config", {"huge_reply_mb": 0})
    assert message(backend, "still here").body == b"echo: still here"


def test_endless_chunked_reply_never_ends(backend):
    control(backend, "/control/config", {"endless_chunked": True})
    connection = http.client.HTTPConnection(HOST, backend.port, timeout=HTTP_TIMEOUT)
    try:
        connection.request("POST", "/ws/message", b"hi", {"Content-Type": "text/plain"})
        response = connection.getresponse()
        assert response.status == 200 and response.headers["Transfer-Encoding"] == "chunked"
        received, deadline = b"", time.monotonic() + 0.6
        while time.monotonic() < deadline:
            received += response.read1(100)
        assert received.count(b"tick\n") >= 5  # one every 50 ms, and still going
        assert not response.isclosed()
    finally:
        connection.close()
    control(backend, "/control/config", {"endless_chunked": False})
    assert message(backend, "next").body == b"echo: next"


def test_connect_user_override_of_10_kb(backend):
    control(backend, "/control/config", {"connect_user_override": "u" * 10240})
    answer = connect(backend, token=False)  # no session and no token: still admitted
    assert answer.status == 200 and answer.json()["user"] == "u" * 10240


def test_connect_user_bad_utf8(backend):
    control(backend, "/control/config", {"connect_user_bad_utf8": True})
    answer = connect(backend, {"x-demo-user": "a"})
    assert answer.status == 200 and b'"user":"bad-\xff\xfe-utf8"' in answer.body
    with pytest.raises(UnicodeDecodeError):
        answer.body.decode("utf-8")


@pytest.mark.parametrize("size", [4096, 4097, 10000])
def test_connect_meta_bytes(backend, size):
    control(backend, "/control/config", {"connect_meta_bytes": size})
    answer = connect(backend, {"cookie": "session=alice"})
    assert answer.json()["user"] == "alice"
    assert len(json.dumps(answer.json()["meta"], separators=(",", ":"))) == size
    assert connect(backend).status == 401  # still no session, no admission


def test_connect_bad_json(backend):
    control(backend, "/control/config", {"connect_bad_json": True})
    answer = connect(backend, {"x-demo-user": "a"})
    assert answer.status == 200
    with pytest.raises(ValueError):
        answer.json()


def test_stats_shape_and_reset(backend, fake_wsvisor):
    connect(backend, {"x-demo-user": "a"})
    message(backend, '{"type":"start","task":"t"}', "n1.1:1")
    event(backend, "connect", "n1.1")
    fake_wsvisor.take(6)
    # The task counts a send when wsvisor's answer is back, a moment after the fake
    # recorded the request.
    deadline = time.monotonic() + 5
    while stats(backend)["api_sends"] < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    before = stats(backend)
    assert before["connect_calls"] == 1 and before["message_calls"] == 1
    assert before["events_calls"] == 1 and before["tasks_started"] == 1
    assert before["api_sends"] == 6 and before["api_send_errors"] == 0
    assert set(before) == {"attempts_by_delivery", "connect_calls", "connect_inflight",
                           "connect_inflight_max", "message_calls", "message_duplicates",
                           "events_calls", "events_failed", "tasks_started", "api_sends",
                           "api_send_errors"}
    assert control(backend, "/control/reset", {}) == {"reset": True}
    after = stats(backend)
    assert after["attempts_by_delivery"] == {} and after["connect_calls"] == 0
    assert registry(backend)["connections"] == {}
    # The delivery log is cleared too: the same delivery id is new again.
    message(backend, "x", "n1.1:1")
    assert stats(backend)["message_duplicates"] == 0


# --------------------------------------------------------------------------- run.sh
#
# wsvisor's gateway mode is not built here, so run.sh is checked against a stub: a
# script in WSVISOR_BIN's place that records its command line and environment, serves
# /health/ready on the port it was given, and records the signals it receives.

STUB_WSVISOR = r'''#!/usr/bin/python3
import json, os, signal, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

record = os.environ["STUB_RECORD"]
if os.environ.get("STUB_FAIL"):
    sys.exit(2)
sets = [sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--set"]
port = int(next(s for s in sets if s.startswith("server.port=")).split("=", 1)[1])
env = {k: v for k, v in os.environ.items() if k.startswith("WSVISOR_")}
signals = []

def save():
    with open(record, "w") as f:
        json.dump({"argv": sys.argv[1:], "sets": sets, "env": env, "signals": signals}, f)

class Ready(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health/ready" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", port), Ready)
stop = threading.Event()
def on_signal(signum, frame):
    signals.append(signal.Signals(signum).name)
    save()
    stop.set()
signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
threading.Thread(target=server.serve_forever, daemon=True).start()
save()
while not stop.wait(0.2):
    pass
'''


class RunScript:
    """run.sh in a session of its own (so that a Ctrl-C can be sent to its whole
    process group, as a terminal does), stdout read by a thread."""

    def __init__(self, tmp_path, args=(), env=None):
        stub = tmp_path / "wsvisor-stub"
        stub.write_text(STUB_WSVISOR)
        stub.chmod(0o755)
        self.record = tmp_path / "stub.json"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("WSVISOR_")}
        environment.update({"WSVISOR_BIN": str(stub), "STUB_RECORD": str(self.record),
                            "READY_TIMEOUT": "10"}, **(env or {}))
        self.proc = subprocess.Popen(
            ["bash", str(HERE / "run.sh"), *args], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment,
            start_new_session=True)
        self.output = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.output.put(line.decode("utf-8", "replace"))
        self.output.put(None)

    def wait_for(self, text, timeout=30.0):
        """The output up to the line holding text; fails the test without it."""
        deadline, seen = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            try:
                line = self.output.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            seen += line
            if text in line:
                return seen
        pytest.fail(f"run.sh never printed {text!r}; it printed: {seen}")

    def interrupt(self):
        """Ctrl-C: SIGINT to the whole process group, as the terminal sends it."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=30)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc.stdout.close()


def test_run_sh_starts_both_and_ctrl_c_stops_both(tmp_path):
    backend_port, ws_port = free_port(), free_port()
    run = RunScript(tmp_path, ["--backend-port", str(backend_port), "--ws-port", str(ws_port),
                               "--max-tabs", "3", "--", "--set", "limits.max_per_user=5"],
                    env={"WSVISOR_URL": "http://must-not-reach-wsvisor"})
    try:
        banner = run.wait_for("Ctrl-C stops both")
        assert f"http://127.0.0.1:{backend_port}/" in banner
        assert f"ws://127.0.0.1:{ws_port}/ws" in banner
        recorded = json.loads(run.record.read_text())
        backend_url = f"http://127.0.0.1:{backend_port}"
        for expected in ["server.host=127.0.0.1", f"server.port={ws_port}", "app.mode=gateway",
                         f"upstream.url={backend_url}", "gateway.connect_path=/connect",
                         f"events.url={backend_url}/events", "limits.max_per_user=5"]:
            assert expected in recorded["sets"]
        assert recorded["sets"][-1] == "limits.max_per_user=5"  # the user's --set wins
        env = recorded["env"]
        assert "WSVISOR_URL" not in env  # wsvisor refuses a WSVISOR_ name it does not know
        assert len(env["WSVISOR_API_KEY"]) == 32 and len(env["WSVISOR_UPSTREAM_TOKEN"]) == 32
        assert env["WSVISOR_API_KEY"] in banner  # generated, so the user is told it
        # The backend got the same token, and the options before `--`.
        proc = types.SimpleNamespace(url=backend_url)
        ok = call(proc, "POST", "/connect", {"headers": {"x-demo-user": "a"}},
                  headers={"Authorization": "Bearer " + env["WSVISOR_UPSTREAM_TOKEN"]})
        assert ok.status == 200
        assert call(proc, "GET", "/").status == 200
        assert call(proc, "GET", "/client-config").json()["ws_port"] == ws_port
        assert run.interrupt() == 130
        # One signal each: a second one would make wsvisor skip its drain.
        assert json.loads(run.record.read_text())["signals"] == ["SIGINT"]
        assert port_is_closed(backend_port) and port_is_closed(ws_port)
    finally:
        run.stop()


def test_run_sh_stops_the_backend_when_wsvisor_fails(tmp_path):
    backend_port = free_port()
    run = RunScript(tmp_path, ["--backend-port", str(backend_port)], env={"STUB_FAIL": "1"})
    try:
        assert "wsvisor exited before it was ready" in run.wait_for("exited")
        assert run.proc.wait(timeout=30) == 1
        assert port_is_closed(backend_port)
    finally:
        run.stop()


def test_run_sh_without_a_binary(tmp_path):
    run = RunScript(tmp_path, env={"WSVISOR_BIN": str(tmp_path / "nothing")})
    try:
        assert "no wsvisor binary" in run.wait_for("no wsvisor binary")
        assert run.proc.wait(timeout=10) == 1
    finally:
        run.stop()
