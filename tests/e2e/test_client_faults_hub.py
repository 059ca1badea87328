"""Faults toward clients (CONTRACT 8) in hub mode, seen by Centrifugo's own SDK (npm
`centrifuge` in node, tests/node/sdk_client.mjs): a dropped message is a dropped
publication (replies are never dropped), which the SDK's recovery makes good after a
reconnect; close codes reach the SDK verbatim; a rolling restart brings every client
back; a zombie is freed by the heartbeat while the SDK sees silence and reconnects.

Each test starts its own server and node process and stops both; loopback only, every
wait bounded.
"""

import time

import pytest

from admin_helpers import ADMIN_ENV, fault
from conftest import scrape, wait_metric, wait_until
from hub_helpers import api_result, connection_token, sdk_clients, start_hub

NAMESPACES = [
    {"name": "stream", "allow_subscribe_for_client": True, "history_size": 1000,
     "history_ttl": "300s", "force_recovery": True, "presence": True,
     "allow_presence_for_subscriber": True},
]
FAULTS = ("faults.enabled=true",)


@pytest.fixture
def hub(server_factory, tmp_path):
    def start(*sets):
        return start_hub(server_factory, tmp_path, *FAULTS, *sets, namespaces=NAMESPACES,
                         env=ADMIN_ENV)
    return start


@pytest.fixture
def node(tmp_path):
    runs = []

    def clients(server, specs=(), timeout=60.0):
        run = sdk_clients(tmp_path, server, specs, timeout)
        runs.append(run)
        return run

    yield clients
    for run in runs:
        run.stop()
        print(f"--- node {run.script.name} ---\n{run.transcript()}")


def client(name, user=None, **options):
    return {"name": name, "token": connection_token(user or name), **options}


def subscribe(run, name, channel, since=None, timeout=10.0):
    mark = run.mark() if since is None else since
    run.call("subscribe", name, channel=channel, options={})
    return run.wait_event("sub_subscribed", name, channel=channel, since=mark, timeout=timeout)


def publish(server, channel, data):
    return api_result(server.port, "publish", {"channel": channel, "data": data})


def publications(run, name, channel, since=0):
    return [e for e in run.find("sub_publication", name, start=since) if e["channel"] == channel]


def test_drop_loses_publications_not_replies_and_recovery_gets_them_back(hub, node):
    srv = hub()
    channel = "stream:d1"
    run = node(srv, [client("alice", min_reconnect_delay_ms=100, max_reconnect_delay_ms=200)])
    run.wait_event("connected", "alice")
    subscribe(run, "alice", channel)
    first = publish(srv, channel, {"n": 0})
    run.wait_count("sub_publication", 1, "alice", channel=channel)

    r = fault(srv.port, {"action": "drop", "target": "client", "user": "alice", "ratio": 1})
    assert r == {"applied": 1}, r
    since = run.mark()
    missed = [publish(srv, channel, {"n": n}) for n in range(1, 6)]
    # Replies still come: the SDK's own calls work while every publication is lost.
    presence = run.call("presence", "alice", channel=channel)
    assert len(presence["clients"]) == 1, presence
    wait_metric(srv.port, lambda m: m["wsvisor_faults_dropped_total"] == 5, 10, what="5 drops")
    assert publications(run, "alice", channel, since) == [], run.transcript()

    # clear, then a reconnecting close: the SDK recovers what the drop took.
    fault(srv.port, {"action": "clear"})
    since = run.mark()
    r = fault(srv.port, {"action": "close", "target": "client", "user": "alice", "code": 3011,
                         "reason": "force reconnect"})
    assert r == {"applied": 1}, r
    away = run.wait_event("connecting", "alice", since=since)
    assert (away["code"], away["reason"]) == (3011, "force reconnect"), away
    back = run.wait_event("sub_subscribed", "alice", channel=channel, since=since, timeout=15)
    assert back["recovered"] is True, back
    got = run.wait_count("sub_publication", 5, "alice", channel=channel, since=since)
    assert [e["data"] for e in got] == [{"n": n} for n in range(1, 6)], got
    assert [e["offset"] for e in got] == [p["offset"] for p in missed], got
    assert missed[0]["offset"] == first["offset"] + 1


def test_drop_ratio_over_2000_publications_within_tolerance(hub, node):
    srv = hub()
    channel = "stream:d2"
    total, ratio = 2000, 0.3
    run = node(srv, [client("bob")])
    run.wait_event("connected", "bob")
    subscribe(run, "bob", channel)
    r = fault(srv.port, {"action": "drop", "target": "client", "user": "bob", "ratio": ratio})
    assert r == {"applied": 1}, r
    since = run.mark()
    m0 = scrape(srv.port)
    for n in range(total):
        publish(srv, channel, {"n": n})
    # Every publication written or dropped before the clear (they reach the session by
    # another path than the fault).
    wait_metric(srv.port, lambda m: m["wsvisor_messages_sent_total"] - m0["wsvisor_messages_sent_total"]
                + m["wsvisor_faults_dropped_total"] >= total, 30,
                what="every publication written or dropped")
    fault(srv.port, {"action": "clear"})
    publish(srv, channel, {"n": "end"})
    run.wait(lambda e: e["event"] == "sub_publication" and e["data"] == {"n": "end"},
             timeout=30, what="the end marker", since=since)
    got = [e["data"]["n"] for e in publications(run, "bob", channel, since)][:-1]
    lost = total - len(got)
    assert abs(lost - total * ratio) <= 6 * (total * ratio * (1 - ratio)) ** 0.5, lost
    assert got == sorted(got), "survivors in order"
    assert scrape(srv.port)["wsvisor_faults_dropped_total"] == lost


def test_restart_brings_every_sdk_client_back(hub, node):
    n = 12
    srv = hub("limits.max_per_user=2")
    names = [f"c{i}" for i in range(n)]
    run = node(srv, [client(name, f"user{i // 2}", min_reconnect_delay_ms=50,
                            max_reconnect_delay_ms=300) for i, name in enumerate(names)])
    for name in names:
        run.wait_event("connected", name, timeout=20)
    since = run.mark()
    t0 = time.monotonic()
    r = fault(srv.port, {"action": "restart", "target": "client", "spread": "2s"})
    assert r == {"applied": n}, r
    for name in names:
        run.wait_event("connected", name, since=since, timeout=20)
    took = time.monotonic() - t0
    assert took >= 1.3, took  # paced over the spread, not at once
    leaves = [e for e in run.find("connecting", start=since)]
    assert sorted(e["client"] for e in leaves) == sorted(names), leaves
    assert not run.find("disconnected", start=since), run.transcript()  # none gave up
    m = scrape(srv.port)
    assert m.get("wsvisor_admissions_rejected_total", 0.0, reason="user_limit") == 0, m.text
    assert m.get("wsvisor_faults_total", 0.0, action="restart") == n
    wait_until(lambda: scrape(srv.port)["wsvisor_connections"] == n, 10, what="all back")


def test_zombie_is_freed_by_the_heartbeat_and_the_sdk_reconnects(hub, node):
    srv = hub("janitor.ping_interval=2s", "janitor.pong_timeout=1s",
              "janitor.sweep_interval=250ms")
    run = node(srv, [client("zed", max_server_ping_delay_ms=1500, min_reconnect_delay_ms=100,
                            max_reconnect_delay_ms=200)])
    run.wait_event("connected", "zed")
    since = run.mark()
    t0 = time.monotonic()
    r = fault(srv.port, {"action": "zombie", "target": "client", "user": "zed"})
    assert r == {"applied": 1}, r
    wait_metric(srv.port, lambda m: m.get("wsvisor_connections_closed_total", 0.0,
                                          reason="zombie") == 1, 10, what="the zombie freed")
    assert time.monotonic() - t0 <= 5.0  # ping_interval + pong_timeout + sweeps
    # The SDK saw silence (no ping within ping + maxServerPingDelay) or the dead TCP,
    # and came back on a fresh connection.
    run.wait_event("connecting", "zed", since=since, timeout=10)
    run.wait_event("connected", "zed", since=since, timeout=10)
    assert scrape(srv.port).get("wsvisor_faults_total", 0.0, action="zombie") == 1
