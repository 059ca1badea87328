"""Hub mode with Centrifugo's own client SDK (CONTRACT 13): npm `centrifuge` 5.7.4 with `ws`
in node, against the real binary in hub mode on Centrifugo's endpoint, with Centrifugo's
server API as the backend would call it.

Each test starts its own server (auth.mode "none": identity comes from the connect
command's HS256 token, checked with WSVISOR_AUTH_JWT_SECRET) and its own node process
(tests/node/sdk_client.mjs, driven through stdin; events come back as JSON lines), and
stops both. Loopback only; every wait is bounded.
"""

import time

import pytest

from conftest import scrape, wait_metric, wait_until
from hub_helpers import (
    DISCONNECT_BAD_REQUEST,
    DISCONNECT_CONNECTION_LIMIT,
    DISCONNECT_STALE,
    DISCONNECT_TOKEN_EXPIRED,
    ERROR_PERMISSION_DENIED,
    api_result,
    connection_token,
    raw_ws,
    sdk_clients,
    start_hub,
)

NAMESPACES = [
    # Presence and history for subscribers.
    {"name": "chat", "allow_subscribe_for_client": True, "presence": True,
     "allow_presence_for_subscriber": True, "allow_history_for_subscriber": True,
     "history_size": 100, "history_ttl": "300s"},
    # User-limited channels ("dialog#alice,bob"): the "#" part decides, in every namespace.
    {"name": "dialog", "allow_subscribe_for_client": True},
    # Recoverable streams: a long history, and one of 3 publications only.
    {"name": "stream", "allow_subscribe_for_client": True, "history_size": 100,
     "history_ttl": "300s", "force_recovery": True},
    {"name": "short", "allow_subscribe_for_client": True, "history_size": 3,
     "history_ttl": "300s", "force_recovery": True},
]

# The SDK waits this long before it reconnects after a reconnecting close, so that a
# test can publish while the client is away (the publications take milliseconds).
AWAY = {"min_reconnect_delay_ms": 2000, "max_reconnect_delay_ms": 2500}


@pytest.fixture
def hub(server_factory, tmp_path):
    """start(*sets, **kw): a wsvisor in hub mode with NAMESPACES."""
    def start(*sets, **kw):
        return start_hub(server_factory, tmp_path, *sets, namespaces=NAMESPACES, **kw)
    return start


@pytest.fixture
def node(server_factory, tmp_path):
    """node(server, clients): an sdk_client.mjs run; node.raw(server, send): raw_ws.mjs.
    Stopped (and their transcripts printed) before the servers stop."""
    runs = []

    def clients(server, specs=(), timeout=45.0):
        run = sdk_clients(tmp_path, server, specs, timeout)
        runs.append(run)
        return run

    def raw(server, send=(), timeout=10.0):
        run = raw_ws(tmp_path, server, send, timeout=timeout)
        runs.append(run)
        return run

    clients.raw = raw
    yield clients
    for run in runs:
        run.stop()
        print(f"--- node {run.script.name} ---\n{run.transcript()}")


def client(name, user=None, **options):
    """One client of sdk_client.mjs with a valid connection token for `user` (= name)."""
    return {"name": name, "token": connection_token(user or name), **options}


def subscribe(run, name, channel, timeout=10.0, **options):
    """Subscribes `name` to `channel` and waits for the SDK's subscribed event."""
    since = run.mark()
    run.call("subscribe", name, channel=channel, options=options)
    return run.wait_event("sub_subscribed", name, channel=channel, since=since, timeout=timeout)


def publish(server, channel, data):
    """POST /api/publish as Centrifugo's backends do; its result."""
    return api_result(server.port, "publish", {"channel": channel, "data": data})


def publications(run, name, channel, since=0):
    return [e for e in run.find("sub_publication", name, start=since) if e["channel"] == channel]


def is_leave(event):
    """A connecting or disconnected event that is not the SDK's first connecting (code 0,
    "connect called": the connect() call itself)."""
    return event["event"] == "disconnected" or (event["event"] == "connecting"
                                                and event["code"] != 0)


def leaves_connected(run, name, since):
    """The client's leaves (is_leave) after index `since`."""
    return [e for e in run.find(client=name, start=since) if is_leave(e)]


# --------------------------------------------------------------------------- connect

def test_connect_with_a_token_gives_a_client_id(hub, node):
    srv = hub()
    run = node(srv, [client("alice")])
    connected = run.wait_event("connected", "alice")
    assert isinstance(connected["client_id"], str) and connected["client_id"], connected
    assert connected["transport"] == "websocket", connected
    assert not run.find("error", "alice"), run.transcript()
    assert not leaves_connected(run, "alice", 0), run.transcript()


# ------------------------------------------------------------- subscribe and publish

def test_subscribe_and_receive_api_publications_in_order(hub, node):
    srv = hub()
    run = node(srv, [client("alice")])
    run.wait_event("connected", "alice")
    subscribed = subscribe(run, "alice", "chat:room1")
    assert subscribed["recovered"] is False, subscribed

    results = [publish(srv, "chat:room1", {"n": n}) for n in range(3)]
    # A channel with history: every publication gets the next offset, one epoch.
    offsets = [r["offset"] for r in results]
    assert all(isinstance(o, int) for o in offsets), results
    assert offsets == list(range(offsets[0], offsets[0] + 3)), results
    epochs = {r["epoch"] for r in results}
    assert len(epochs) == 1 and next(iter(epochs)), results

    got = run.wait_count("sub_publication", 3, "alice", channel="chat:room1")
    assert [e["data"] for e in got] == [{"n": 0}, {"n": 1}, {"n": 2}], got
    assert [e.get("offset") for e in got] == offsets, got


# ------------------------------------------------------------------------- presence

def test_presence_and_presence_stats_through_the_sdk_and_the_api(hub, node):
    srv = hub()
    run = node(srv, [client("alice-1", "alice"), client("alice-2", "alice"), client("bob")])
    ids = {name: run.wait_event("connected", name)["client_id"]
           for name in ("alice-1", "alice-2", "bob")}
    for name in ids:
        subscribe(run, name, "chat:lobby")

    presence = run.call("presence", "alice-1", channel="chat:lobby")
    clients = presence["clients"]
    assert set(clients) == set(ids.values()), presence
    assert {clients[ids[n]]["user"] for n in ids} == {"alice", "bob"}, presence
    assert all(clients[ids[n]]["client"] == ids[n] for n in ids), presence
    assert clients[ids["bob"]]["user"] == "bob", presence

    stats = run.call("presence_stats", "bob", channel="chat:lobby")
    assert stats == {"numClients": 3, "numUsers": 2}, stats

    api_presence = api_result(srv.port, "presence", {"channel": "chat:lobby"})["presence"]
    assert set(api_presence) == set(ids.values()), api_presence
    assert {api_presence[ids[n]]["user"] for n in ids} == {"alice", "bob"}, api_presence
    api_stats = api_result(srv.port, "presence_stats", {"channel": "chat:lobby"})
    assert (api_stats["num_clients"], api_stats["num_users"]) == (3, 2), api_stats

    # An unsubscribe leaves the presence at once (the subscription is the connection's).
    since = run.mark()
    run.call("unsubscribe", "bob", channel="chat:lobby")
    run.wait_event("sub_unsubscribed", "bob", channel="chat:lobby", since=since)
    wait_until(lambda: api_result(srv.port, "presence_stats",
                                  {"channel": "chat:lobby"})["num_users"] == 1,
               5.0, what="bob out of the presence of chat:lobby")
    assert run.call("presence_stats", "alice-2", channel="chat:lobby") == {
        "numClients": 2, "numUsers": 1}


# -------------------------------------------------------------------------- history

def test_history_through_the_sdk_and_the_api(hub, node):
    srv = hub()
    results = [publish(srv, "chat:archive", {"n": n}) for n in range(5)]
    run = node(srv, [client("alice")])
    run.wait_event("connected", "alice")
    subscribe(run, "alice", "chat:archive")

    history = run.call("history", "alice", channel="chat:archive", limit=10)
    assert [p["data"] for p in history["publications"]] == [{"n": n} for n in range(5)], history
    assert [p["offset"] for p in history["publications"]] == [r["offset"] for r in results], history
    assert history["offset"] == results[-1]["offset"], history
    assert history["epoch"] == results[-1]["epoch"], history

    api_history = api_result(srv.port, "history", {"channel": "chat:archive", "limit": 10})
    assert [p["data"] for p in api_history["publications"]] == [{"n": n} for n in range(5)]
    assert api_history["epoch"] == results[-1]["epoch"], api_history
    # Nothing was delivered live: the publications were made before the subscribe.
    assert not publications(run, "alice", "chat:archive"), run.transcript()


# ------------------------------------------------------------- user-limited channels

def test_a_user_limited_channel_refuses_other_users_with_103(hub, node):
    srv = hub()
    channel = "dialog#alice,bob"
    run = node(srv, [client("alice"), client("bob"), client("carol")])
    for name in ("alice", "bob", "carol"):
        run.wait_event("connected", name)
    subscribe(run, "alice", channel)
    subscribe(run, "bob", channel)

    run.call("subscribe", "carol", channel=channel, options={})
    # A permanent error: the SDK gives the subscription up with the error's code and
    # message as the unsubscribed event's (it emits 'error' only for temporary ones).
    unsubscribed = run.wait_event("sub_unsubscribed", "carol", channel=channel)
    assert unsubscribed["code"] == ERROR_PERMISSION_DENIED, unsubscribed
    assert not run.find("sub_subscribed", "carol"), run.transcript()
    # Not retried as a temporary error would be.
    assert not run.find("sub_error", "carol"), run.transcript()

    publish(srv, channel, {"text": "hi"})
    for name in ("alice", "bob"):
        run.wait_count("sub_publication", 1, name, channel=channel)
    time.sleep(0.3)
    assert not run.find("sub_publication", "carol"), run.transcript()
    assert not leaves_connected(run, "carol", 0), run.transcript()  # refused, not closed


# ----------------------------------------------------------------- personal channel

def test_the_personal_channel_reaches_every_connection_of_one_user(hub, node):
    srv = hub("hub.user_personal_channel=true")
    alices = ["alice-1", "alice-2", "alice-3"]
    bobs = ["bob-1", "bob-2"]
    run = node(srv, [client(n, "alice") for n in alices] + [client(n, "bob") for n in bobs])
    # Server-side subscriptions: the SDK emits them on the client ('subscribed',
    # 'publication' on the Centrifuge object).
    for name in alices:
        run.wait_event("server_subscribed", name, channel="#alice")
    for name in bobs:
        run.wait_event("server_subscribed", name, channel="#bob")

    publish(srv, "#alice", {"to": "alice"})
    for name in alices:
        got = run.wait_count("server_publication", 1, name, channel="#alice")
        assert [e["data"] for e in got] == [{"to": "alice"}], got
    # bob's connections: their own channel's publication comes, alice's never.
    publish(srv, "#bob", {"to": "bob"})
    for name in bobs:
        run.wait_count("server_publication", 1, name, channel="#bob")
    time.sleep(0.3)
    for name in bobs:
        got = run.find("server_publication", name)
        assert [e["data"] for e in got] == [{"to": "bob"}], got
    for name in alices:
        got = run.find("server_publication", name)
        assert [e["data"] for e in got] == [{"to": "alice"}], got


# ------------------------------------------------------------------------- recovery

def test_reconnect_recovers_exactly_what_was_missed_in_order(hub, node):
    srv = hub()
    channel = "stream:r1"
    run = node(srv, [client("alice", **AWAY)])
    run.wait_event("connected", "alice")
    subscribed = subscribe(run, "alice", channel)
    assert subscribed["recoverable"] is True, subscribed  # force_recovery
    live = [publish(srv, channel, {"n": n}) for n in range(2)]
    run.wait_count("sub_publication", 2, "alice", channel=channel)

    # Closed server-side with a reconnecting code (Centrifugo's API shape).
    since = run.mark()
    api_result(srv.port, "disconnect",
               {"user": "alice", "disconnect": {"code": 3011, "reason": "force reconnect"}})
    away = run.wait_event("connecting", "alice", since=since)
    assert (away["code"], away["reason"]) == (3011, "force reconnect"), away

    missed = [publish(srv, channel, {"n": n}) for n in range(2, 7)]
    assert not run.find("connected", "alice", start=since), (
        "the SDK was back before the publications were made; the test cannot tell "
        "recovery from live delivery\n" + run.transcript())

    resubscribed = run.wait_event("sub_subscribed", "alice", channel=channel, since=since,
                                  timeout=15.0)
    assert resubscribed["wasRecovering"] is True, resubscribed
    assert resubscribed["recovered"] is True, resubscribed
    got = run.wait_count("sub_publication", 5, "alice", channel=channel, since=since)
    assert [e["data"] for e in got] == [{"n": n} for n in range(2, 7)], got
    assert [e.get("offset") for e in got] == [r["offset"] for r in missed], got
    assert missed[0]["offset"] == live[-1]["offset"] + 1, (live, missed)

    # Then live ones, with no gap and no duplicate.
    after = publish(srv, channel, {"n": 7})
    got = run.wait_count("sub_publication", 6, "alice", channel=channel, since=since)
    time.sleep(0.3)
    got = publications(run, "alice", channel, since)
    assert [e["data"] for e in got] == [{"n": n} for n in range(2, 8)], got
    assert got[-1].get("offset") == after["offset"] == missed[-1]["offset"] + 1, got


def test_a_gap_past_the_history_is_not_recovered_and_nothing_partial_is_sent(hub, node):
    srv = hub()
    channel = "short:r2"  # history_size 3
    run = node(srv, [client("alice", **AWAY)])
    run.wait_event("connected", "alice")
    subscribe(run, "alice", channel)
    publish(srv, channel, {"n": 0})
    run.wait_count("sub_publication", 1, "alice", channel=channel)

    since = run.mark()
    api_result(srv.port, "disconnect",
               {"user": "alice", "disconnect": {"code": 3011, "reason": "force reconnect"}})
    run.wait_event("connecting", "alice", since=since)
    for n in range(1, 11):
        publish(srv, channel, {"n": n})
    assert not run.find("connected", "alice", start=since), run.transcript()

    resubscribed = run.wait_event("sub_subscribed", "alice", channel=channel, since=since,
                                  timeout=15.0)
    assert resubscribed["recovered"] is False, resubscribed
    time.sleep(0.5)
    assert not publications(run, "alice", channel, since), run.transcript()  # none, not 3

    # The subscription goes on live from there.
    publish(srv, channel, {"n": 11})
    got = run.wait_count("sub_publication", 1, "alice", channel=channel, since=since)
    assert [e["data"] for e in got] == [{"n": 11}], got


# --------------------------------------------------------------------- token expiry

def test_an_expiring_token_is_refreshed_through_get_token_and_stays_connected(hub, node):
    srv = hub()
    fresh = connection_token("alice", ttl=3600)
    run = node(srv, [{"name": "alice", "token": connection_token("alice", ttl=2),
                      "get_token": "list", "refresh_tokens": [fresh]}])
    connected_at = time.monotonic()
    run.wait_event("connected", "alice")
    subscribe(run, "alice", "chat:refresh")
    run.wait_event("get_token", "alice", timeout=10.0)  # the SDK was told to refresh
    # Well past the first token's exp: still the same connection.
    time.sleep(max(0.0, connected_at + 5.0 - time.monotonic()))
    assert not leaves_connected(run, "alice", 0), run.transcript()
    assert not [e for e in run.find("error", "alice") if e["type"] == "refresh"], run.transcript()
    publish(srv, "chat:refresh", {"still": "here"})
    run.wait_count("sub_publication", 1, "alice", channel="chat:refresh")
    assert len(run.find("connected", "alice")) == 1, run.transcript()


def test_an_expired_token_without_a_refresh_is_disconnected_by_the_server(hub, node):
    srv = hub()
    # getToken never answers: the SDK sends no refresh, so the server's expiry ends it.
    run = node(srv, [{"name": "alice", "token": connection_token("alice", ttl=2),
                      "get_token": "hang"}])
    run.wait_event("connected", "alice")
    gone = run.wait(lambda e: e.get("client") == "alice" and is_leave(e), timeout=10.0,
                    what="alice's expiry")
    print(f"the SDK reported {gone}")
    assert gone["code"] == DISCONNECT_TOKEN_EXPIRED, gone


def test_an_expired_token_without_get_token_ends_the_connection(hub, node):
    srv = hub()
    # No getToken at all: the SDK may give up by itself before the server closes it;
    # either way the connection ends. What the SDK reports is printed.
    run = node(srv, [{"name": "alice", "token": connection_token("alice", ttl=2)}])
    run.wait_event("connected", "alice")
    gone = run.wait(lambda e: e.get("client") == "alice" and is_leave(e), timeout=10.0,
                    what="alice's expiry")
    print(f"the SDK reported {gone['event']} with code {gone['code']} ({gone['reason']!r})")
    assert gone["code"] in (DISCONNECT_TOKEN_EXPIRED, 1), gone  # 1: the SDK's unauthorized
    time.sleep(0.5)
    assert len(run.find("connected", "alice")) == 1, run.transcript()  # not let back in


# -------------------------------------------------------------------- per-user cap

def test_the_per_user_cap_applies_to_the_token_identity(hub, node):
    srv = hub("limits.max_per_user=3")  # auth.mode "none": the user comes from the token
    run = node(srv, [client(f"dave-{i}", "dave") for i in range(1, 4)])
    for i in range(1, 4):
        run.wait_event("connected", f"dave-{i}")

    run.call("add_client", spec=client("dave-4", "dave"))
    refused = run.wait_event("disconnected", "dave-4")
    assert (refused["code"], refused["reason"]) == (DISCONNECT_CONNECTION_LIMIT,
                                                   "connection limit"), refused
    assert not run.find("connected", "dave-4"), run.transcript()
    for i in range(1, 4):
        assert not leaves_connected(run, f"dave-{i}", 0), run.transcript()
    # Another user is not affected.
    run.call("add_client", spec=client("erin"))
    run.wait_event("connected", "erin")

    # One of dave's closes: once its slot is released, a new one gets in.
    run.call("disconnect", "dave-1")
    run.wait_event("disconnected", "dave-1")
    wait_metric(srv.port, lambda m: m.get("wsvisor_connections") == 3, timeout=10.0,
                what="dave-1's and dave-4's slots released")
    run.call("add_client", spec=client("dave-5", "dave"))
    run.wait_event("connected", "dave-5")
    assert scrape(srv.port).get("wsvisor_connections") == 4


# ----------------------------------------------------------------- protocol errors

def test_a_malformed_frame_closes_with_bad_request(hub, node):
    srv = hub()
    run = node.raw(srv, send=["not json"])
    closed = run.wait_event("close", timeout=10.0)
    print(f"closed with {closed['code']} {closed['reason']!r}")
    assert closed["code"] == DISCONNECT_BAD_REQUEST, closed


def test_no_connect_command_within_connect_timeout_is_closed(hub, node):
    srv = hub("hub.connect_timeout=1s")
    sdk = node(srv, [client("alice")])
    run = node.raw(srv, send=[])
    sdk.wait_event("connected", "alice")
    connected_at = time.monotonic()
    closed = run.wait_event("close", timeout=10.0)
    assert closed["code"] == DISCONNECT_STALE, closed
    assert 700 <= closed["open_ms"] <= 5000, closed
    # A client that did connect is not subject to it.
    time.sleep(max(0.0, connected_at + 2.0 - time.monotonic()))
    assert not leaves_connected(sdk, "alice", 0), sdk.transcript()
