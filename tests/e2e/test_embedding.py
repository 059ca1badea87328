"""Embedding (CONTRACT section 10): examples/embedding links the project's libraries,
registers its own application ("shout") and runs the whole server with it; a handler
that throws is restarted with a fresh instance, the socket kept; every v1 guarantee
holds (here: the admission caps and /health)."""

import asyncio
import os
from pathlib import Path

import pytest
import websockets

from conftest import HOST, Server, http_get, run_async, run_cli, scrape

EMBEDDED = os.environ.get("WSVISOR_EMBEDDING_BIN")


@pytest.fixture
def embedded(tmp_path, monkeypatch):
    if not EMBEDDED or not Path(EMBEDDED).is_file():
        pytest.fail("WSVISOR_EMBEDDING_BIN is not set (ctest sets it to the example's binary)")
    import conftest
    monkeypatch.setattr(conftest, "BIN", Path(EMBEDDED))
    servers = []

    def start(*sets):
        srv = Server(tmp_path / f"embedded-{len(servers)}.log", sets=sets)
        servers.append(srv)
        srv.wait_ready()
        return srv

    yield start
    for srv in servers:
        srv.stop()


def test_an_embedded_application_runs_with_every_guarantee(embedded):
    srv = embedded("app.mode=shout", "limits.max_connections=2")

    async def main():
        async with websockets.connect(f"ws://{HOST}:{srv.port}/ws") as ws:
            await ws.send("hello")
            first = await ws.recv()
            await ws.send("crash")  # the handler throws: a fresh instance, same socket
            await ws.send("again")
            after_crash = await ws.recv()
            async with websockets.connect(f"ws://{HOST}:{srv.port}/ws"):
                with pytest.raises(websockets.InvalidStatusCode) as refused:
                    await websockets.connect(f"ws://{HOST}:{srv.port}/ws", open_timeout=5)
            return first, after_crash, refused.value.status_code

    first, after_crash, status = run_async(main(), timeout=30)
    assert first == "1 HELLO"
    assert after_crash == "1 AGAIN"  # the count started over
    assert status == 503  # server_full at limits.max_connections = 2
    m = scrape(srv.port)
    assert m.get("wsvisor_actor_restarts_total", actor="connection") == 1
    assert http_get(srv.port, "/health").json()["status"] == "ready"


def test_the_builtins_are_still_there_and_an_unknown_mode_exits_2(embedded):
    srv = embedded("app.mode=echo")

    async def main():
        async with websockets.connect(f"ws://{HOST}:{srv.port}/ws") as ws:
            await ws.send("same")
            return await ws.recv()

    assert run_async(main(), timeout=10) == "same"
    import subprocess
    from conftest import clean_env
    cp = subprocess.run([EMBEDDED, "--set", "app.mode=nosuchapp", "--check-config"],
                        env=clean_env(), capture_output=True, text=True, timeout=15)
    assert cp.returncode == 2, cp
    assert "nosuchapp" in cp.stderr and "shout" in cp.stderr, cp.stderr
