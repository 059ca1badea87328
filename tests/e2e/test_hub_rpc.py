"""Hub mode's RPC proxy (CONTRACT 13.4) end to end: Centrifugo's npm SDK (centrifuge 5.7.4
in node, tests/node/sdk_client.mjs) calls `client.rpc(method, data)`; wsvisor in hub mode
with hub.rpc_proxy_path forwards it, as Centrifugo's RPC proxy request, through its
upstream client (11.1) to the example backend (examples/python-backend/backend.py, POST
/centrifugo/rpc: echo, whoami, 404 for an unknown method), and the backend's answer comes
back to the SDK. A backend that cannot be reached fails that one call with error 100
(temporary) and never the connection.

Each test starts its own backend, wsvisor and node process, and stops them. Loopback
only; every wait is bounded.
"""

import time

import pytest

from admin_helpers import ADMIN_ENV, fault
from conftest import scrape, wait_metric
from gateway_helpers import TOKEN, Backend
from hub_helpers import connection_token, sdk_clients, start_hub

RPC_PATH = "/centrifugo/rpc"
ERROR_INTERNAL = 100
ERROR_METHOD_NOT_FOUND = 104


@pytest.fixture
def backend(tmp_path):
    b = Backend(tmp_path)
    yield b
    b.stop()


@pytest.fixture
def node(tmp_path):
    """node(server, clients): an sdk_client.mjs run, stopped (transcript printed) at the
    end, before the servers."""
    runs = []

    def start(server, specs, timeout=45.0):
        run = sdk_clients(tmp_path, server, specs, timeout)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()
        print(f"--- node {run.script.name} ---\n{run.transcript()}")


def hub_with_rpc(server_factory, tmp_path, backend, *sets, env_extra=None):
    """wsvisor in hub mode in front of `backend`, the RPC proxy on. The backend wants
    the upstream token (gateway_helpers.TOKEN) on every hook call, and wsvisor sends it
    (WSVISOR_UPSTREAM_TOKEN)."""
    return start_hub(server_factory, tmp_path, f"upstream.url={backend.url}",
                     f"hub.rpc_proxy_path={RPC_PATH}", *sets,
                     env={"WSVISOR_UPSTREAM_TOKEN": TOKEN, **(env_extra or {})})


def client(name, user=None, **options):
    return {"name": name, "token": connection_token(user or name), **options}


def leaves(run, name, since=0):
    """Disconnects and reconnects of `name` after index `since` (not the SDK's first
    connecting, code 0, which is the connect() call itself)."""
    return [e for e in run.find(client=name, start=since)
            if e["event"] == "disconnected" or (e["event"] == "connecting" and e["code"] != 0)]


def rpc_ok(m, outcome="ok"):
    return m.get("wsvisor_upstream_requests_total", 0.0, hook="rpc", outcome=outcome)


def commands(m, result):
    return m.get("wsvisor_hub_commands_total", 0.0, command="rpc", result=result)


def test_rpc_echo_whoami_and_an_unknown_method(server_factory, tmp_path, backend, node):
    srv = hub_with_rpc(server_factory, tmp_path, backend)
    m0 = scrape(srv.port)
    run = node(srv, [client("alice"), client("bob-1", "bob")])
    ids = {name: run.wait_event("connected", name)["client_id"] for name in ("alice", "bob-1")}

    data = {"text": "héllo", "list": [1, 2.5, None, True, "x"], "nested": {"deep": {"n": 7}}}
    assert run.call("rpc", "alice", method="echo", data=data) == {"data": data}
    # Any JSON value comes back as it went; no data, an empty result.
    for value in ("text", 5, [], {}, {"a": None}):
        assert run.call("rpc", "alice", method="echo", data=value) == {"data": value}
    assert run.call("rpc", "alice", method="echo") == {}
    # Several in a row, in order, on one connection (upstream.per_connection_inflight 1).
    for n in range(5):
        assert run.call("rpc", "bob-1", method="echo", data={"n": n}) == {"data": {"n": n}}

    # The backend sees the connection's user and client id (Centrifugo's request shape):
    # the token's user, never another's.
    assert run.call("rpc", "alice", method="whoami", data={}) == {
        "data": {"user": "alice", "client": ids["alice"]}}
    assert run.call("rpc", "bob-1", method="whoami", data={}) == {
        "data": {"user": "bob", "client": ids["bob-1"]}}

    # The backend's error reaches the SDK as it is, and the connection stays.
    error = run.call("rpc", "alice", method="no-such-method", data={}, expect_error=True)
    assert error["code"] == 404, error
    assert error["message"] == "unknown method", error
    # ...and the next call works.
    assert run.call("rpc", "alice", method="echo", data=[1, 2]) == {"data": [1, 2]}
    assert not leaves(run, "alice") and not leaves(run, "bob-1"), run.transcript()

    m1 = wait_metric(srv.port, lambda m: rpc_ok(m) - rpc_ok(m0) == 16, 5.0,
                     what="16 rpc proxy calls answered")
    assert commands(m1, "ok") - commands(m0, "ok") == 15, m1.text
    assert commands(m1, "error") - commands(m0, "error") == 1, m1.text


def test_rpc_with_the_backend_down_is_error_100_and_the_connection_stays(
        server_factory, tmp_path, backend, node):
    # Quick retries, so that the failed call is answered well within the SDK's timeout.
    srv = hub_with_rpc(server_factory, tmp_path, backend, "upstream.retries=1",
                       "upstream.backoff_min=50ms", "upstream.backoff_max=100ms",
                       "upstream.timeout=1s")
    run = node(srv, [client("alice", timeout_ms=10000)])
    run.wait_event("connected", "alice")
    assert run.call("rpc", "alice", method="echo", data={"before": True}) == {
        "data": {"before": True}}

    port = backend.port
    backend.stop()
    since = run.mark()
    for n in range(3):
        started = time.monotonic()
        error = run.call("rpc", "alice", method="echo", data={"n": n}, expect_error=True,
                         timeout=15.0)
        assert error["code"] == ERROR_INTERNAL, error
        assert error.get("temporary") is True, error  # the SDK's sign that it may retry
        assert time.monotonic() - started < 8.0, "the failure took longer than its retries"
    # Whoami fails the same way: every call fails alone.
    error = run.call("rpc", "alice", method="whoami", data={}, expect_error=True, timeout=15.0)
    assert error["code"] == ERROR_INTERNAL, error

    # The connection never went away, and it still works for what needs no backend.
    assert not leaves(run, "alice", since), run.transcript()
    assert run.call("state", "alice") == {"client": "connected", "subscription": None}
    assert srv.alive()

    # The backend back (same port): the same connection calls it again.
    revived = Backend(tmp_path, args=("--port", str(port)))
    try:
        assert revived.port == port
        deadline = time.monotonic() + 15
        while True:
            command_id = run.command("rpc", "alice", method="whoami", data={})
            result = run.wait(lambda e: e.get("event") == "result" and e.get("id") == command_id,
                              15.0, what="result of whoami")
            if result["ok"]:
                assert result["result"]["data"]["user"] == "alice", result
                break
            assert result["error"]["code"] == ERROR_INTERNAL, result
            assert time.monotonic() < deadline, f"the backend never answered again: {result}"
            time.sleep(0.2)
        assert not leaves(run, "alice", since), run.transcript()
    finally:
        revived.stop()


def test_rpc_without_a_proxy_path_is_method_not_found(server_factory, tmp_path, node):
    srv = start_hub(server_factory, tmp_path)  # no hub.rpc_proxy_path: nowhere to go
    run = node(srv, [client("alice")])
    run.wait_event("connected", "alice")
    error = run.call("rpc", "alice", method="echo", data={}, expect_error=True)
    assert error["code"] == ERROR_METHOD_NOT_FOUND, error
    assert not leaves(run, "alice"), run.transcript()


@pytest.mark.parametrize("target", ["connection", "upstream"])
def test_an_rpc_in_flight_is_answered_across_a_connection_crash(
        server_factory, tmp_path, backend, node, target):
    """A crash of the connection (its application, or its upstream work: CONTRACT 8,
    11.1) while its rpc waits for the backend: a restart within the budget, the socket
    kept, and the call still answered: the backend's result, or error 100 (never the
    SDK's own timeout); the next call works."""
    srv = hub_with_rpc(server_factory, tmp_path, backend, "faults.enabled=true",
                       env_extra=ADMIN_ENV)
    run = node(srv, [client("alice", timeout_ms=10000)])
    run.wait_event("connected", "alice")
    assert run.call("rpc", "alice", method="echo", data={"n": 0}) == {"data": {"n": 0}}
    m0 = scrape(srv.port)

    assert fault(srv.port, {"action": "delay", "target": "upstream", "ms": 1500}) == {
        "applied": 1}
    since = run.mark()
    command_id = run.command("rpc", "alice", method="echo", data={"n": 1})
    time.sleep(0.4)  # the call is at the backend, held
    assert fault(srv.port, {"action": "crash", "target": target, "user": "alice"}) == {
        "applied": 1}
    outcome = run.wait(lambda e: e.get("event") == "result" and e.get("id") == command_id,
                       15.0, what="the answer to the rpc in flight")
    print(f"the rpc in flight across the crash: {outcome}")
    if outcome["ok"]:
        assert outcome["result"] == {"data": {"n": 1}}, outcome
    else:
        assert outcome["error"]["code"] == ERROR_INTERNAL, outcome
    wait_metric(srv.port, lambda m: m.get("wsvisor_actor_restarts_total", 0, actor="connection")
                - m0.get("wsvisor_actor_restarts_total", 0, actor="connection") == 1, 5.0,
                what="one connection restart")
    assert fault(srv.port, {"action": "clear"})["applied"] >= 0
    assert run.call("rpc", "alice", method="whoami", data={})["data"]["user"] == "alice"
    assert not leaves(run, "alice", since), run.transcript()


def test_the_proxy_request_carries_the_connection_tokens_meta(
        server_factory, tmp_path, backend, node):
    """Centrifugo passes the connection token's `meta` claim (private to the server, never
    shown to the client) on to every proxy request as `meta`: CONTRACT 13.1 lists the
    claim, 13.4 wants Centrifugo's request shapes. The example backend's whoami answers
    what it received."""
    srv = hub_with_rpc(server_factory, tmp_path, backend)
    meta = {"plan": "pro", "tenant": 7}
    run = node(srv, [{"name": "alice", "token": connection_token("alice", meta=meta)},
                     client("bob")])
    alice = run.wait_event("connected", "alice")
    run.wait_event("connected", "bob")
    assert "meta" not in (alice.get("data") or {}), alice  # private: not in the reply
    assert run.call("rpc", "alice", method="whoami", data={}) == {
        "data": {"user": "alice", "client": alice["client_id"], "meta": meta}}
    # No meta claim: no meta (or an empty one).
    bob = run.call("rpc", "bob", method="whoami", data={})["data"]
    assert bob.get("meta") in (None, {}), bob


@pytest.mark.parametrize("asked,sent", [(4001, 4001), (1005, 3503), (70000, 3503), (2999, 3503)])
def test_a_proxy_disconnect_with_a_code_no_close_frame_may_carry_closes_3503(
        server_factory, tmp_path, backend, node, asked, sent):
    # A backend's {"disconnect":{"code":1005}} once went on the wire as is (and 70000
    # wrapped to 4464): the SDK saw a protocol error instead of the server's close.
    srv = hub_with_rpc(server_factory, tmp_path, backend)
    backend.configure(rpc_disconnect_code=asked)
    run = node(srv, [client("alice")])
    run.wait_event("connected", "alice")
    since = run.mark()
    run.command("rpc", "alice", method="echo", data={"x": 1})
    left = run.wait(lambda e: e.get("client") == "alice" and
                    e["event"] in ("disconnected", "connecting") and e.get("code"),
                    what="alice to be disconnected", since=since)
    assert left["code"] == sent, run.transcript()
    # Closed by the application, with the code the SDK saw.
    wait_metric(srv.port, lambda m: m.get("wsvisor_connections_closed_total",
                                          reason="application") == 1, 10)
