"""Hub mode's refresh proxy (CONTRACT 13.4, Centrifugo's proxy-based refresh): when a
connection's token expires and hub.refresh_proxy_path is set, wsvisor asks the backend
(`{"client","transport","protocol","encoding","user"}`) instead of waiting for the
client: `{"result":{"expire_at":N}}` extends the connection, `{"result":{"expired":true}}`
closes it 3005, and a backend that fails keeps the connection and is asked again.
The backend is a small HTTP server of the test's own on loopback."""
import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import HOST
from hub_helpers import ProtocolClient, connection_token, start_hub


class RefreshBackend:
    """Answers each refresh proxy call with the next of `answers` (a status and a JSON
    body); records every request body."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                backend.requests.append((self.path, json.loads(body)))
                status, answer = backend.answers.pop(0) if backend.answers else (500, {})
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def refresh_backend():
    made = []

    def make(answers):
        made.append(RefreshBackend(answers))
        return made[-1]

    yield make
    for backend in made:
        backend.stop()


def hub_with_refresh_proxy(server_factory, tmp_path, backend):
    return start_hub(server_factory, tmp_path, f"upstream.url={backend.url}",
                     "upstream.retries=0", hub={"refresh_proxy_path": "/centrifugo/refresh"})


def test_the_refresh_proxy_extends_then_expires_the_connection(server_factory, tmp_path,
                                                              refresh_backend):
    backend = refresh_backend([
        (200, {"result": {"expire_at": int(time.time()) + 3}}),
        (200, {"result": {"expired": True}}),
    ])
    srv = hub_with_refresh_proxy(server_factory, tmp_path, backend)

    async def scenario():
        client = await ProtocolClient.open(srv.port, connection_token("alice", ttl=1))
        assert client.connect_reply.get("expires") is True, client.connect_reply
        started = time.monotonic()
        await asyncio.wait_for(client.closed.wait(), timeout=15)
        return client, time.monotonic() - started

    client, lasted = asyncio.run(scenario())
    assert client.close_code == 3005, (client.close_code, client.close_reason)
    assert len(backend.requests) == 2, backend.requests
    for path, body in backend.requests:
        assert path == "/centrifugo/refresh"
        assert body["user"] == "alice" and body["client"] == client.client, body
        assert body["transport"] == "websocket" and body["protocol"] == "json", body
    # Extended once (about 3 s past the first exp), then expired: not closed at the
    # first exp, nor kept past the second.
    assert 2.0 <= lasted <= 8.0, lasted


def test_a_failing_refresh_proxy_keeps_the_connection_and_asks_again(server_factory, tmp_path,
                                                                    refresh_backend):
    backend = refresh_backend([
        (503, {}),
        (200, {"error": {"code": 1000, "message": "try later"}}),
        (200, {"result": {"expire_at": int(time.time()) + 60}}),
    ])
    srv = hub_with_refresh_proxy(server_factory, tmp_path, backend)

    async def scenario():
        client = await ProtocolClient.open(srv.port, connection_token("bob", ttl=1))
        deadline = time.monotonic() + 20
        while len(backend.requests) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        still_open = not client.closed.is_set()
        await client.close()
        return still_open

    assert asyncio.run(scenario()), "a failing refresh proxy closed the connection"
    assert len(backend.requests) == 3, backend.requests
