"""Hub mode's server API end to end (CONTRACT 11.2 and 13.6): Centrifugo's HTTP API as
its API clients (cent, gocent, phpcent) call it: POST /api/<method> with a JSON body and
X-API-Key, answered {"result":{...}} or {"error":{"code","message"}} with 200, or, with
X-Centrifugo-Error-Mode: transport, Centrifugo's HTTP status and the error object
itself. The reference is centrifugal/centrifugal.dev docs/server/server_api.md.

Subscribers are plain python websockets clients speaking Centrifugo's JSON protocol
(`{"id":1,"connect":{}}`, `{"id":2,"subscribe":{"channel":...}}`), anonymous, or with a
connect token where a server API call addresses a user.

One server serves the module; each test uses channels of its own."""

import asyncio
import base64
import hashlib
import hmac
import json
import time

import pytest
import websockets

from conftest import HOST, module_server, run_async, scrape
from gateway_helpers import API_KEY, api

WS_PATH = "/connection/websocket"
JWT_SECRET = "e2e-hub-jwt-secret-0123456789abcdef"
HUB_ENV = {"WSVISOR_API_KEY": API_KEY, "WSVISOR_AUTH_JWT_SECRET": JWT_SECRET}
# A body limit of 64 KiB (not 1 MiB): a larger body is refused before the client has
# sent it all, and a smaller one is sure to fit in the socket buffers meanwhile.
HUB_SETS = ("app.mode=hub", "hub.allow_anonymous=true", f"server.ws_path={WS_PATH}",
            "api.max_body_bytes=65536")
# Centrifugo's option names (CONTRACT 13.2). The default namespace keeps neither history
# nor presence: its channels answer 108 for presence and history.
HUB_TOML = """\
[[hub.namespaces]]
name = "chat"
presence = true
history_size = 10
history_ttl = "300s"
allow_subscribe_for_client = true
allow_subscribe_for_anonymous = true
"""
TRANSPORT = {"X-Centrifugo-Error-Mode": "transport"}

# Centrifugo's MapErrorToHTTPCode, for the codes these tests provoke.
TRANSPORT_STATUS = {100: 500, 102: 404, 104: 404, 107: 400, 108: 400, 112: 416}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    config = tmp_path_factory.mktemp("hubcfg") / "hub.toml"
    config.write_text(HUB_TOML)
    with module_server(tmp_path_factory, *HUB_SETS, env=HUB_ENV, config=config) as srv:
        yield srv


# ------------------------------------------------------------------ the API client

def call(srv, method, params, transport=False, headers=None):
    """POST /api/<method> as Centrifugo's API clients send it."""
    h = dict(TRANSPORT) if transport else {}
    h.update(headers or {})
    return api(srv.port, "POST", f"/api/{method}", params, headers=h)


# Methods that change nothing: result() also calls them in the transport mode.
READ_ONLY = {"history", "presence", "presence_stats", "channels", "info"}


def result(srv, method, params):
    """The result of a call that must succeed: 200 {"result":{...}} (in both error modes,
    for a method that changes nothing)."""
    answers = []
    for transport in (False, True) if method in READ_ONLY else (False,):
        r = call(srv, method, params, transport=transport)
        assert r.status == 200 and r.is_json(), r
        body = r.json()
        assert set(body) == {"result"}, body
        answers.append(body["result"])
    return answers[0]


def check_error(srv, method, params, code, transport):
    """The call fails with Centrifugo error `code`, as the error mode says; returns the
    error object."""
    r = call(srv, method, params, transport=transport)
    assert r.is_json(), r
    body = r.json()
    if transport:
        assert r.status == TRANSPORT_STATUS[code], r
        error = body  # the error object itself, as Centrifugo writes it
    else:
        assert r.status == 200, r
        assert set(body) == {"error"}, body
        error = body["error"]
    assert error["code"] == code, body
    assert isinstance(error.get("message", ""), str), body
    return error


def publish(srv, channel, data, **extra):
    return result(srv, "publish", {"channel": channel, "data": data, **extra})


def history(srv, channel, **query):
    return result(srv, "history", {"channel": channel, **query})


def offsets(hist):
    return [p["offset"] for p in hist.get("publications", [])]


# ------------------------------------------------------------- protocol clients

def token(user, ttl=3600):
    """A Centrifugo connection token: HS256 JWT with `sub` and `exp`."""
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": user, "exp": int(time.time()) + ttl}).encode())
    signature = hmac.new(JWT_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256)
    return f"{head}.{body}.{b64(signature.digest())}"


class HubClient:
    """One connection in Centrifugo's JSON protocol (several replies or pushes may share
    a frame, one per line). Pushes are kept in order until a test looks for them."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 1
        self.pending = []  # messages read while waiting for something else
        self.client = None

    @classmethod
    async def open(cls, srv, user=None):
        ws = await websockets.connect(f"ws://{HOST}:{srv.port}{WS_PATH}", ping_interval=None,
                                      open_timeout=10, close_timeout=2)
        client = cls(ws)
        reply = await client.command("connect", {"token": token(user)} if user else {})
        assert "connect" in reply, reply
        client.client = reply["connect"]["client"]
        return client

    async def _read(self, timeout):
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        for line in frame.split("\n"):
            if not line.strip():
                continue
            message = json.loads(line)
            if message == {}:  # Centrifugo's ping: answer with a pong
                await self.ws.send("{}")
                continue
            self.pending.append(message)

    async def wait_for(self, predicate, what, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            for i, message in enumerate(self.pending):
                if predicate(message):
                    return self.pending.pop(i)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {what} within {timeout}s; got {self.pending!r}")
            await self._read(remaining)

    async def command(self, name, body):
        cid = self.next_id
        self.next_id += 1
        await self.ws.send(json.dumps({"id": cid, name: body}))
        return await self.wait_for(lambda m: m.get("id") == cid, f"reply to {name} {cid}")

    async def subscribe(self, channel):
        reply = await self.command("subscribe", {"channel": channel})
        assert "subscribe" in reply, reply
        return reply["subscribe"]

    async def push(self, channel, kind, timeout=5.0):
        return await self.wait_for(
            lambda m: "push" in m and m["push"].get("channel", "") == channel
            and kind in m["push"], f"{kind} push on {channel!r}", timeout)

    async def close(self):
        await self.ws.close()


# ------------------------------------------------------------------------ publish

def test_publish_to_a_channel_with_history_counts_offsets(hub):
    first = publish(hub, "chat:offsets", {"text": "one"})
    assert first["offset"] == 1, first
    assert isinstance(first["epoch"], str) and first["epoch"], first
    second = publish(hub, "chat:offsets", {"text": "two"})
    assert second == {"offset": 2, "epoch": first["epoch"]}, second


def test_publish_without_history_returns_an_empty_result(hub):
    # The default namespace keeps no history: no position to report (Centrifugo: {}).
    assert publish(hub, "plain-channel", {"n": 1}) == {}


def test_publish_with_an_idempotency_key_publishes_once(hub):
    channel = "chat:idempotent"
    first = publish(hub, channel, {"n": 1}, idempotency_key="order-42")
    again = publish(hub, channel, {"n": 1}, idempotency_key="order-42")
    assert again == first, (first, again)
    hist = history(hub, channel, limit=10)
    assert offsets(hist) == [1], hist
    other = publish(hub, channel, {"n": 2}, idempotency_key="order-43")
    assert other["offset"] == 2, other


def test_published_data_comes_back_unchanged(hub):
    data = {"text": "héllo", "nested": {"list": [1, 2.5, None, True, "x"]}, "big": 2 ** 53 + 1,
            "small": 1.5e-07}
    publish(hub, "chat:data", data)
    [publication] = history(hub, "chat:data", limit=10)["publications"]
    assert publication["data"] == data, publication


def test_broadcast_publishes_to_every_channel(hub):
    channels = ["chat:bc-1", "chat:bc-2", "chat:bc-3"]
    publish(hub, "chat:bc-2", {"before": True})
    res = result(hub, "broadcast", {"channels": channels, "data": {"text": "to all"}})
    responses = res["responses"]
    assert len(responses) == 3, res
    assert [r["result"]["offset"] for r in responses] == [1, 2, 1], res
    for channel in channels:
        hist = history(hub, channel, limit=10)
        assert hist["publications"][-1]["data"] == {"text": "to all"}, (channel, hist)


def test_broadcast_reports_each_channels_error_on_its_own(hub):
    res = result(hub, "broadcast", {"channels": ["chat:bc-ok", "nope:bc"], "data": {}})
    ok, failed = res["responses"]
    assert "result" in ok and "error" not in ok, res
    assert failed["error"]["code"] == 102, res


# ------------------------------------------------------------------------ history

def test_history_limit_since_and_reverse(hub):
    channel = "chat:history"
    epoch = None
    for n in range(1, 6):
        epoch = publish(hub, channel, {"n": n})["epoch"]
    # No limit: the stream position only.
    top = history(hub, channel)
    assert top["offset"] == 5 and top["epoch"] == epoch, top
    assert top.get("publications", []) == [], top
    # Oldest first; newest first with reverse.
    assert offsets(history(hub, channel, limit=2)) == [1, 2]
    assert offsets(history(hub, channel, limit=2, reverse=True)) == [5, 4]
    assert offsets(history(hub, channel, limit=10)) == [1, 2, 3, 4, 5]
    # After a position (exclusive), in either direction.
    since = {"offset": 2, "epoch": epoch}
    assert offsets(history(hub, channel, limit=10, since=since)) == [3, 4, 5]
    assert offsets(history(hub, channel, limit=2, since=since)) == [3, 4]
    since = {"offset": 4, "epoch": epoch}
    assert offsets(history(hub, channel, limit=2, since=since, reverse=True)) == [3, 2]
    [third] = history(hub, channel, limit=1, since={"offset": 2, "epoch": epoch})["publications"]
    assert third["data"] == {"n": 3}, third


def test_history_since_another_epoch_is_unrecoverable(hub):
    channel = "chat:history-epoch"
    publish(hub, channel, {"n": 1})
    since = {"offset": 1, "epoch": "not-the-epoch"}
    for transport in (False, True):
        check_error(hub, "history", {"channel": channel, "limit": 10, "since": since}, 112,
                    transport)


def test_history_remove_empties_the_history_and_keeps_the_position(hub):
    channel = "chat:history-remove"
    for n in range(3):
        epoch = publish(hub, channel, {"n": n})["epoch"]
    assert result(hub, "history_remove", {"channel": channel}) == {}
    hist = history(hub, channel, limit=10)
    assert hist.get("publications", []) == [], hist
    assert hist["offset"] == 3 and hist["epoch"] == epoch, hist
    after = publish(hub, channel, {"n": 3})
    assert after == {"offset": 4, "epoch": epoch}, after


@pytest.mark.parametrize("transport", [False, True], ids=["default", "transport"])
def test_history_and_presence_of_a_namespace_without_them_are_not_available(hub, transport):
    check_error(hub, "history", {"channel": "plain-history", "limit": 10}, 108, transport)
    check_error(hub, "presence", {"channel": "plain-presence"}, 108, transport)
    check_error(hub, "presence_stats", {"channel": "plain-presence"}, 108, transport)
    check_error(hub, "history_remove", {"channel": "plain-history"}, 108, transport)


# ---------------------------------------------------- presence, channels and info

def test_presence_and_presence_stats_of_a_channel_with_subscribers(hub):
    channel = "chat:presence"

    async def scenario():
        a = await HubClient.open(hub)
        b = await HubClient.open(hub)
        try:
            await a.subscribe(channel)
            await b.subscribe(channel)
            presence = result(hub, "presence", {"channel": channel})["presence"]
            assert set(presence) == {a.client, b.client}, presence
            for client, info in presence.items():
                assert info["client"] == client, presence
                assert info.get("user", "") == "", presence  # anonymous
            stats = result(hub, "presence_stats", {"channel": channel})
            # Centrifugo counts distinct user ids, the anonymous "" among them.
            assert stats == {"num_clients": 2, "num_users": 1}, stats
            await b.close()
            deadline = time.monotonic() + 5
            while result(hub, "presence_stats", {"channel": channel})["num_clients"] != 1:
                assert time.monotonic() < deadline, "b's presence outlived its connection"
                await asyncio.sleep(0.05)
            presence = result(hub, "presence", {"channel": channel})["presence"]
            assert set(presence) == {a.client}, presence
        finally:
            await a.close()
            await b.close()

    run_async(scenario())
    assert result(hub, "presence_stats", {"channel": "chat:presence-none"}) == {
        "num_clients": 0, "num_users": 0}
    assert result(hub, "presence", {"channel": "chat:presence-none"}).get("presence") == {}


def test_channels_lists_active_channels_with_a_pattern(hub):
    async def scenario():
        a = await HubClient.open(hub)
        b = await HubClient.open(hub)
        try:
            await a.subscribe("chat:room-1")
            await b.subscribe("chat:room-1")
            await a.subscribe("chat:room-2")
            await b.subscribe("chat:lobby")
            listed = result(hub, "channels", {"pattern": "chat:room-*"})["channels"]
            assert listed == {"chat:room-1": {"num_clients": 2},
                              "chat:room-2": {"num_clients": 1}}, listed
            everything = result(hub, "channels", {})["channels"]
            for name in ("chat:room-1", "chat:room-2", "chat:lobby"):
                assert name in everything, everything
            assert result(hub, "channels", {"pattern": "nothing-*"}) == {"channels": {}}
        finally:
            await a.close()
            await b.close()

    run_async(scenario())


def test_info_describes_this_node(hub):
    async def scenario():
        a = await HubClient.open(hub)
        try:
            await a.subscribe("chat:info")
            nodes = result(hub, "info", {})["nodes"]
            assert len(nodes) == 1, nodes
            node = nodes[0]
            for field in ("uid", "name", "version", "num_clients", "num_users", "num_channels",
                          "uptime"):
                assert field in node, node
            assert node["num_clients"] >= 1 and node["num_channels"] >= 1, node
            assert isinstance(node["uptime"], int), node
        finally:
            await a.close()

    run_async(scenario())


# ----------------------------------------- calls that address a user's connections

def test_subscribe_unsubscribe_refresh_and_disconnect_a_user(hub):
    channel = "chat:server-side"

    async def scenario():
        alice = await HubClient.open(hub, user="alice")
        try:
            assert result(hub, "subscribe", {"user": "alice", "channel": channel}) == {}
            await alice.push(channel, "subscribe")
            presence = result(hub, "presence", {"channel": channel})["presence"]
            assert [info["user"] for info in presence.values()] == ["alice"], presence
            publish(hub, channel, {"text": "for alice"})
            pub = await alice.push(channel, "pub")
            assert pub["push"]["pub"]["data"] == {"text": "for alice"}, pub
            assert result(hub, "unsubscribe", {"user": "alice", "channel": channel}) == {}
            await alice.push(channel, "unsubscribe")
            assert result(hub, "presence", {"channel": channel}).get("presence") == {}
            assert result(hub, "refresh", {"user": "alice"}) == {}
            # Nobody of that name: nothing to do, no error (Centrifugo).
            assert result(hub, "disconnect", {"user": "nobody"}) == {}
            r = call(hub, "disconnect", {"user": "alice",
                                         "disconnect": {"code": 4501, "reason": "bye"}})
            assert r.status == 200 and r.json() == {"result": {}}, r
            with pytest.raises(websockets.ConnectionClosed) as closed:
                for _ in range(100):
                    await alice._read(5.0)
            assert closed.value.code == 4501, closed.value
            assert closed.value.reason == "bye", closed.value
        finally:
            await alice.close()

    run_async(scenario())


@pytest.mark.parametrize("transport", [False, True], ids=["default", "transport"])
def test_a_call_without_its_user_is_a_bad_request(hub, transport):
    for method in ("subscribe", "unsubscribe", "disconnect", "refresh"):
        check_error(hub, method, {"channel": "chat:x"}, 107, transport)


# ---------------------------------------------------------------------- errors

@pytest.mark.parametrize("transport", [False, True], ids=["default", "transport"])
def test_unknown_namespace_is_error_102(hub, transport):
    error = check_error(hub, "publish", {"channel": "nope:x", "data": {}}, 102, transport)
    assert error["message"] == "unknown channel", error
    check_error(hub, "history", {"channel": "nope:x", "limit": 1}, 102, transport)
    check_error(hub, "presence", {"channel": "nope:x"}, 102, transport)


@pytest.mark.parametrize("transport", [False, True], ids=["default", "transport"])
@pytest.mark.parametrize("body", [b"{not json", b"", b"[]", b'"text"', b"42", b"null",
                                  b'{"channel":"chat:x"', b'{"channel":"\xff"}'],
                         ids=["garbage", "empty", "array", "string", "number", "null",
                              "truncated", "bad-utf8"])
def test_a_body_that_is_not_a_json_object_is_error_107(hub, transport, body):
    error = check_error(hub, "publish", body, 107, transport)
    assert error["message"] == "bad request", error


@pytest.mark.parametrize("transport", [False, True], ids=["default", "transport"])
def test_missing_or_wrong_fields_are_error_107(hub, transport):
    # Centrifugo's own example: {} to publish.
    check_error(hub, "publish", {}, 107, transport)
    check_error(hub, "publish", {"channel": "chat:x"}, 107, transport)  # no data
    check_error(hub, "broadcast", {"channels": [], "data": {}}, 107, transport)
    check_error(hub, "history", {"channel": "chat:x", "limit": "ten"}, 107, transport)
    check_error(hub, "channels", {"pattern": 5}, 107, transport)


def test_the_error_modes_differ_only_for_errors(hub):
    # The header's value must be exactly "transport" (as Centrifugo compares it).
    for header in ({"X-Centrifugo-Error-Mode": "Transport"},
                   {"X-Centrifugo-Error-Mode": "default"}, {}):
        r = call(hub, "publish", {"channel": "nope:x", "data": {}}, headers=header)
        assert r.status == 200 and r.json()["error"]["code"] == 102, (header, r)
    r = call(hub, "publish", {"channel": "nope:x", "data": {}},
             headers={"x-centrifugo-error-mode": "transport"})  # names are case-insensitive
    assert r.status == 404 and r.json() == {"code": 102, "message": "unknown channel"}, r


@pytest.mark.parametrize("transport", [False, True], ids=["default", "transport"])
def test_a_method_that_does_not_exist_is_404(hub, transport):
    # wsvisor's 404 for any /api path it does not serve (after the key check), whatever
    # the error mode: Centrifugo's router answers 404 for an unknown path too.
    for path in ("/api/nope", "/api/rpc", "/api/publish/extra", "/api"):
        r = api(hub.port, "POST", path, {}, headers=TRANSPORT if transport else None)
        assert r.status == 404 and r.json() == {"error": "not_found"}, (path, r)
    r = api(hub.port, "GET", "/api/publish", headers=TRANSPORT if transport else None)
    assert r.status == 405 and r.header("allow") == "POST", r


def test_the_api_key_as_centrifugos_clients_send_it(hub):
    body = {"channel": "chat:keys", "data": {}}
    for headers in ({"X-API-Key": API_KEY}, {"Authorization": f"apikey {API_KEY}"},
                    {"Authorization": f"Bearer {API_KEY}"}):
        r = api(hub.port, "POST", "/api/publish", body, key=None, headers=headers)
        assert r.status == 200 and "result" in r.json(), (headers, r)
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "apikey wrong"},
                    {"X-API-Key": API_KEY[:-1]}):
        for transport in (False, True):
            h = {**headers, **(TRANSPORT if transport else {})}
            r = api(hub.port, "POST", "/api/publish", body, key=None, headers=h)
            assert r.status == 401 and r.json() == {"error": "unauthorized"}, (h, r)
    # Unknown methods are behind the key too.
    r = api(hub.port, "POST", "/api/nope", {}, key=None)
    assert r.status == 401, r


def test_without_a_configured_key_the_api_does_not_exist(tmp_path_factory):
    config = tmp_path_factory.mktemp("hubcfg-nokey") / "hub.toml"
    config.write_text(HUB_TOML)
    env = {k: v for k, v in HUB_ENV.items() if k != "WSVISOR_API_KEY"}
    with module_server(tmp_path_factory, *HUB_SETS, env=env, config=config) as srv:
        for path in ("/api/publish", "/api/batch", "/api/info", "/api/nope"):
            r = api(srv.port, "POST", path, {"channel": "chat:x", "data": {}})
            assert r.status == 404 and r.json() == {"error": "not_found"}, (path, r)


def test_a_body_over_the_limit_is_413(hub):
    big = json.dumps({"channel": "chat:big", "data": {"blob": "x" * (80 * 1024)}})
    r = call(hub, "publish", big.encode())
    assert r.status == 413, r
    assert history(hub, "chat:big", limit=10).get("publications", []) == []


# ------------------------------------------------------------------------ batch

@pytest.mark.parametrize("transport", [False, True], ids=["default", "transport"])
def test_batch_answers_each_command_in_order(hub, transport):
    channel = f"chat:batch-{'transport' if transport else 'default'}"
    commands = [
        {"publish": {"channel": channel, "data": {"n": 1}}},
        {"publish": {"channel": "nope:batch", "data": {}}},
        {"nope": {}},
        {"publish": {"channel": channel, "data": {"n": 2}}},
        {"broadcast": {"channels": [channel, f"{channel}-other"], "data": {"n": 3}}},
        {"history": {"channel": channel, "limit": 10}},
        {"publish": "not an object"},
        {"presence_stats": {"channel": channel}},
        {"info": {}},
    ]
    r = call(hub, "batch", {"commands": commands}, transport=transport)
    # Every command has its own error: the batch itself is 200 in both modes.
    assert r.status == 200, r
    body = r.json()
    assert set(body) == {"replies"}, body
    replies = body["replies"]
    assert len(replies) == len(commands), replies
    first, unknown, nope, second, broadcast, hist, bad, stats, info = replies
    assert set(first) == {"publish"} and first["publish"]["offset"] == 1, first
    assert unknown == {"error": {"code": 102, "message": "unknown channel"}}, unknown
    assert set(nope) == {"error"} and nope["error"]["code"] == 104, nope
    assert second["publish"] == {"offset": 2, "epoch": first["publish"]["epoch"]}, second
    responses = broadcast["broadcast"]["responses"]
    assert [x["result"]["offset"] for x in responses] == [3, 1], broadcast
    # The commands ran in order: history sees every publication before it.
    assert [p["data"]["n"] for p in hist["history"]["publications"]] == [1, 2, 3], hist
    assert set(bad) == {"error"} and bad["error"]["code"] == 107, bad
    assert stats == {"presence_stats": {"num_clients": 0, "num_users": 0}}, stats
    assert len(info["info"]["nodes"]) == 1, info


def test_batch_with_parallel_and_with_no_commands(hub):
    commands = [{"publish": {"channel": "chat:batch-parallel", "data": {"n": n}}}
                for n in range(20)]
    r = call(hub, "batch", {"commands": commands, "parallel": True})
    assert r.status == 200, r
    replies = r.json()["replies"]
    assert sorted(x["publish"]["offset"] for x in replies) == list(range(1, 21)), replies
    for body in ({"commands": []}, {}):
        r = call(hub, "batch", body)
        assert r.status == 200 and r.json() == {"replies": []}, (body, r)


@pytest.mark.parametrize("transport", [False, True], ids=["default", "transport"])
def test_a_malformed_batch_is_error_107(hub, transport):
    too_many = {"commands": [{"info": {}}] * 1001}
    for body in (b"{not json", {"commands": {"publish": {}}}, {"commands": [], "parallel": 1},
                 too_many):
        check_error(hub, "batch", body, 107, transport)
    r = call(hub, "batch", {"commands": [{"info": {}}] * 1000})
    assert r.status == 200 and len(r.json()["replies"]) == 1000, r
    # Commands that fail before reaching any connection (no user) are answered at once:
    # the batch still answers every one, in order.
    r = call(hub, "batch", {"commands": [{"refresh": {}}] * 1000})
    assert r.status == 200, r
    replies = r.json()["replies"]
    assert len(replies) == 1000 and all(x["error"]["code"] == 107 for x in replies), r


# ----------------------------------------------------------- the gateway's endpoints

def test_the_gateways_send_and_connections_stay_and_its_info_gives_way(hub):
    async def scenario():
        a = await HubClient.open(hub)
        try:
            listed = api(hub.port, "GET", "/api/connections")
            assert listed.status == 200, listed
            # Centrifugo's client id of a connection is its wsvisor connection id.
            assert a.client in [c["connection"] for c in listed.json()], (a.client, listed)
            # A raw frame, outside the protocol (the gateway's send): nothing reads it.
            sent = api(hub.port, "POST", "/api/send", {"connection": a.client, "data": "raw"})
            assert sent.status == 200 and sent.json() == {"delivered": 1}, sent
        finally:
            await a.close()

    run_async(scenario())
    # GET /api/info was the gateway's; in hub mode /api/info is Centrifugo's POST.
    r = api(hub.port, "GET", "/api/info")
    assert r.status == 405 and r.header("allow") == "POST", r


# --------------------------------------------------------------------- metrics

def test_every_answer_is_counted_by_method_and_status(hub):
    before = scrape(hub.port)
    ok_before = before.get("wsvisor_api_requests_total", 0, method="POST", status="200")
    not_found_before = before.get("wsvisor_api_requests_total", 0, method="POST", status="404")
    publish(hub, "chat:metrics", {})
    call(hub, "publish", {"channel": "nope:metrics", "data": {}}, transport=True)  # 404
    call(hub, "publish", {"channel": "nope:metrics", "data": {}})  # 200 with an error
    after = scrape(hub.port)
    assert after.get("wsvisor_api_requests_total", 0, method="POST",
                     status="200") >= ok_before + 2, after.text
    assert after.get("wsvisor_api_requests_total", 0, method="POST",
                     status="404") >= not_found_before + 1, after.text


def test_a_disconnect_reason_past_a_close_frame_is_cut_not_fatal(hub):
    """A close frame holds 123 bytes of reason (RFC 6455 5.5): a longer one from the API
    (or a proxy, or an application) is cut at a character boundary, and the server lives
    on. It used to throw from Beast's reason_string inside the session's handler."""
    async def scenario():
        alice = await HubClient.open(hub, user="alice")
        try:
            reason = "é" * 100  # 200 bytes of UTF-8
            r = call(hub, "disconnect", {"user": "alice",
                                         "disconnect": {"code": 4502, "reason": reason}})
            assert r.status == 200, r
            with pytest.raises(websockets.ConnectionClosed) as closed:
                for _ in range(100):
                    await alice._read(5.0)
            assert closed.value.code == 4502, closed.value
            assert closed.value.reason == "é" * 61, closed.value  # 122 bytes, whole characters
        finally:
            await alice.close()
        bob = await HubClient.open(hub, user="bob")  # still serving
        await bob.close()

    run_async(scenario())
