"""Hub mode: a user never receives another user's personal publication (CONTRACT 13.2 and
12.3's "no send ever reaches a connection of another user than the one addressed"), and
connection crashes within the restart budget lose none (CONTRACT 8, 13.2: the
subscriptions belong to the connection, not to the application state a restart resets).

50 users x 3 connections, each a python3-websockets client speaking Centrifugo's JSON
protocol (hub_helpers.ProtocolClient), identified by the connect command's HS256 token
(auth.mode none) and subscribed server-side to its personal channel `#<user>`
(hub.user_personal_channel). 10,000 publications go to those channels through
/api/batch, each naming its target user and that user's sequence number; every
connection must then hold exactly its own user's publications, all of them, in order.

Also here: the hub metrics of CONTRACT 13.7 (wsvisor_hub_subscriptions,
wsvisor_hub_channels, wsvisor_publications_total, wsvisor_deliveries_total,
wsvisor_recoveries_total, wsvisor_hub_commands_total) move as they should.

Loopback only; every wait is bounded; the servers stop at the end of each test.
"""

import asyncio
import random
import time

from admin_helpers import ADMIN_ENV, call, closed, fault, restarts
from conftest import run_async, scrape, wait_metric
from hub_helpers import (
    DISCONNECT_CONNECTION_LIMIT,
    ProtocolClient,
    api_result,
    close_clients,
    connection_token,
    hub_api,
    start_hub,
)

USERS = [f"user-{n:02d}" for n in range(50)]
PER_USER = 3
PUBLICATIONS = 10_000
MAX_PER_USER = 5  # limits.max_per_user: the slots filled again at the end
SEED = 20261202

# Clients may subscribe themselves (the default namespace's allow_subscribe_for_client):
# another user's personal channel must still be refused, it is user-limited ("#").
ISOLATION_SETS = ("hub.user_personal_channel=true", "hub.allow_subscribe_for_client=true",
                  "faults.enabled=true",
                  f"limits.max_per_user={MAX_PER_USER}",
                  "supervision.connection_restarts=3",
                  "supervision.connection_restart_period=60s")


def personal(user):
    return f"#{user}"


def plan(count, seed):
    """`count` publications to personal channels chosen at random (seeded, so that a
    failure can be replayed): [(user, seq)] with seq counting from 0 per user."""
    rng = random.Random(seed)
    next_seq = dict.fromkeys(USERS, 0)
    out = []
    for _ in range(count):
        user = rng.choice(USERS)
        out.append((user, next_seq[user]))
        next_seq[user] += 1
    assert all(next_seq.values()), "every user gets at least one publication"
    return out, next_seq


def publish_batch(port, items, first):
    """One /api/batch of publishes (sequential, in order) to the personal channels; every
    reply must be a success."""
    commands = [{"publish": {"channel": personal(user),
                             "data": {"to": user, "seq": seq, "g": first + i}}}
                for i, (user, seq) in enumerate(items)]
    r = hub_api(port, "batch", {"commands": commands}, timeout=60.0)
    assert r.status == 200, r
    replies = r.json()["replies"]
    assert len(replies) == len(commands), r
    bad = [x for x in replies if set(x) != {"publish"}]
    assert not bad, f"{len(bad)} publishes failed, e.g. {bad[:3]}"


async def open_fleet(port):
    """PER_USER connections for every user, each connected with its user's token and
    subscribed server-side to exactly its personal channel."""
    sem = asyncio.Semaphore(30)

    async def one(user, k):
        async with sem:
            return await ProtocolClient.open(port, connection_token(user), name=f"{user}/{k}")

    specs = [(u, k) for u in USERS for k in range(PER_USER)]
    results = await asyncio.gather(*(one(u, k) for u, k in specs), return_exceptions=True)
    clients = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        await close_clients(clients)
        raise AssertionError(f"{len(errors)} of {len(specs)} connects failed: {errors[:3]!r}")
    for (user, _), client in zip(specs, clients):
        client.user = user
        subs = client.connect_reply.get("subs", {})
        assert set(subs) == {personal(user)}, (client.name, client.connect_reply)
    assert len({c.client for c in clients}) == len(clients), "client ids must be unique"
    return clients


async def wait_delivered(clients, expected, timeout=45.0):
    """Waits until every client holds its user's expected number of publications (or
    more: the check that follows says what is wrong), then a moment for strays."""
    deadline = time.monotonic() + timeout
    total = sum(expected[c.user] for c in clients)
    while True:
        lagging = [c for c in clients if len(c.publications) < expected[c.user]
                   and not c.closed.is_set()]
        # Done, or every delivery has come and some went to the wrong place.
        if not lagging or sum(len(c.publications) for c in clients) >= total:
            break
        if time.monotonic() > deadline:
            c = lagging[0]
            raise AssertionError(f"{len(lagging)} connections short of their publications "
                                 f"after {timeout}s, e.g. {c.name}: "
                                 f"{len(c.publications)} of {expected[c.user]}")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # anything extra (another user's, a duplicate) shows now


def check_own_publications_only(clients, expected):
    """Every connection got exactly its own user's publications, each once, in order,
    and nothing else: no other user's, no reply or push it did not ask for."""
    problems = []
    for c in clients:
        want = personal(c.user)
        foreign = [(ch, d) for ch, d in c.publications
                   if ch != want or not isinstance(d, dict) or d.get("to") != c.user]
        if foreign:
            problems.append(f"{c.name} got {len(foreign)} publications of others, "
                            f"e.g. {foreign[:3]}")
            continue
        seqs = [d["seq"] for _, d in c.publications]
        if seqs != list(range(expected[c.user])):
            missing = sorted(set(range(expected[c.user])) - set(seqs))
            problems.append(f"{c.name}: {len(seqs)} publications of {expected[c.user]}, "
                            f"missing {missing[:10]}, first out of order at "
                            f"{next((i for i, s in enumerate(seqs) if s != i), None)}")
        others = [p for p in c.pushes if "pub" not in p]
        if others or c.unexpected:
            problems.append(f"{c.name}: unexpected pushes {others[:3]} or messages "
                            f"{c.unexpected[:3]}")
        if c.closed.is_set():
            problems.append(f"{c.name} was closed: {c.close_code} {c.close_reason!r}")
    assert not problems, f"{len(problems)} connections wrong:\n" + "\n".join(problems[:20])


async def try_other_users_channels(clients):
    """Every connection asks for the next user's personal channel itself: 103 permission
    denied for each, and its own is 105 already subscribed (the server did it)."""
    async def one(c):
        other = USERS[(USERS.index(c.user) + 1) % len(USERS)]
        denied = await c.command("subscribe", {"channel": personal(other)})
        own = await c.command("subscribe", {"channel": personal(c.user)})
        return c.name, denied.get("error", {}).get("code"), own.get("error", {}).get("code")

    answers = await asyncio.gather(*(one(c) for c in clients))
    wrong = [a for a in answers if a[1:] != (103, 105)]
    assert not wrong, f"{len(wrong)} wrong answers (name, other's, own), e.g. {wrong[:5]}"


async def fill_the_slots_again(port, user):
    """Every slot is free again: max_per_user connections of `user` connect, each with
    its personal channel, and one more is refused with 3504 (the cap is really that)."""
    clients = []
    try:
        for k in range(MAX_PER_USER):
            c = await ProtocolClient.open(port, connection_token(user), name=f"{user}/again{k}")
            clients.append(c)
            assert set(c.connect_reply.get("subs", {})) == {personal(user)}, c.connect_reply
        extra = await ProtocolClient.open(port, name=f"{user}/extra", connect=False)
        clients.append(extra)
        await extra.ws.send('{"id":1,"connect":{"token":"%s"}}' % connection_token(user))
        code, reason = await extra.wait_closed(10.0)
        assert code == DISCONNECT_CONNECTION_LIMIT, (code, reason)
        # The ones that are in get their user's publications, every one of them.
        await call(api_result, port, "publish",
                   {"channel": personal(user), "data": {"to": user, "seq": 0, "g": -1}})
        for c in clients[:MAX_PER_USER]:
            c.user = user
        await wait_delivered(clients[:MAX_PER_USER], {user: 1}, timeout=10.0)
        check_own_publications_only(clients[:MAX_PER_USER], {user: 1})
    finally:
        await close_clients(clients)


def scenario(srv, crash_users=(), crash_rounds=0, batch=1000):
    """The whole run: the fleet, the publications (with crash faults for `crash_users`
    `crash_rounds` times, spread between the batches), the check, the end."""
    port = srv.port
    publications, expected = plan(PUBLICATIONS, SEED + crash_rounds)
    batches = [publications[i:i + batch] for i in range(0, len(publications), batch)]
    # The batches after which each crash round goes (they are asynchronous: each lands
    # while the next batch fans out).
    crash_after = {round(len(batches) * (r + 1) / (crash_rounds + 1)) - 1
                   for r in range(crash_rounds)}
    assert len(crash_after) == crash_rounds

    async def main():
        clients = await open_fleet(port)
        try:
            m0 = await call(wait_metric, port,
                            lambda m: m["wsvisor_connections"] == len(clients)
                            and m["wsvisor_hub_subscriptions"] == len(clients)
                            and m["wsvisor_hub_channels"] == len(USERS),
                            15.0, what="every connection subscribed to its personal channel")
            await try_other_users_channels(clients)
            crashes = 0
            for index, items in enumerate(batches):
                await call(publish_batch, port, items, index * batch)
                if index in crash_after:
                    for user in crash_users:
                        r = await call(fault, port, {"action": "crash", "target": "connection",
                                                     "user": user})
                        assert r == {"applied": PER_USER}, (user, r)
                        crashes += PER_USER
            await wait_delivered(clients, expected)
            check_own_publications_only(clients, expected)

            m1 = await call(scrape, port)
            assert m1["wsvisor_publications_total"] - m0["wsvisor_publications_total"] == \
                PUBLICATIONS, m1.text
            assert m1["wsvisor_deliveries_total"] - m0["wsvisor_deliveries_total"] == \
                PUBLICATIONS * PER_USER, m1.text
            if crash_users:
                # Every crash was a restart within the budget: nobody closed.
                await call(wait_metric, port,
                           lambda m: restarts(m, "connection") - restarts(m0, "connection")
                           == crashes, 10.0, what=f"{crashes} connection restarts")
                m1 = await call(scrape, port)
                assert closed(m1, "restart_budget") == closed(m0, "restart_budget"), m1.text
                assert m1["wsvisor_connections"] == len(clients), m1.text
                assert m1["wsvisor_hub_subscriptions"] == len(clients), m1.text
                # The restarted applications still know their subscription (it belongs
                # to the connection): subscribing again is 105 already subscribed.
                for c in clients:
                    if c.user in crash_users:
                        reply = await c.command("subscribe", {"channel": personal(c.user)})
                        assert reply.get("error", {}).get("code") == 105, (c.name, reply)
                # And they still get what is published now.
                for user in crash_users:
                    expected[user] += 1
                await call(publish_batch, port, [(u, expected[u] - 1) for u in crash_users],
                           PUBLICATIONS)
                await wait_delivered(clients, expected)
                check_own_publications_only(clients, expected)
            channels = (await call(api_result, port, "channels", {"pattern": "#*"}))["channels"]
            assert channels == {personal(u): {"num_clients": PER_USER} for u in USERS}, channels
        finally:
            await close_clients(clients)
        await call(wait_metric, port,
                   lambda m: m["wsvisor_connections"] == 0 and m["wsvisor_hub_subscriptions"] == 0
                   and m["wsvisor_hub_channels"] == 0,
                   15.0, what="every slot, subscription and channel released")
        await fill_the_slots_again(port, crash_users[0] if crash_users else USERS[0])
        await call(wait_metric, port, lambda m: m["wsvisor_connections"] == 0, 15.0,
                   what="the slots released again")

    run_async(main(), timeout=80.0)


def test_no_user_receives_another_users_personal_publications(server_factory, tmp_path):
    srv = start_hub(server_factory, tmp_path, *ISOLATION_SETS, env=ADMIN_ENV)
    scenario(srv)


def test_isolation_and_no_loss_under_connection_crashes(server_factory, tmp_path):
    srv = start_hub(server_factory, tmp_path, *ISOLATION_SETS, env=ADMIN_ENV)
    # 10 users crashed 3 times each (the whole budget), in between 20 batches.
    scenario(srv, crash_users=USERS[::5], crash_rounds=3, batch=500)


# ------------------------------------------------------------------ hub metrics (13.7)

METRICS_NAMESPACES = [{"name": "stream", "allow_subscribe_for_client": True,
                       "history_size": 100, "history_ttl": "300s", "force_recovery": True}]


def test_hub_metrics_move_as_expected(server_factory, tmp_path):
    srv = start_hub(server_factory, tmp_path, namespaces=METRICS_NAMESPACES)
    port = srv.port

    def commands(m, command, result):
        return m.get("wsvisor_hub_commands_total", 0.0, command=command, result=result)

    async def main():
        m0 = await call(scrape, port)
        for name in ("wsvisor_hub_subscriptions", "wsvisor_hub_channels",
                     "wsvisor_publications_total", "wsvisor_deliveries_total"):
            assert m0.get(name) == 0, (name, m0.text)
        for result in ("recovered", "unrecovered"):
            assert m0.get("wsvisor_recoveries_total", result=result) == 0, m0.text
        assert m0.types.get("wsvisor_hub_subscriptions") == "gauge", m0.types
        assert m0.types.get("wsvisor_hub_channels") == "gauge", m0.types
        for name in ("wsvisor_publications_total", "wsvisor_deliveries_total",
                     "wsvisor_recoveries_total"):
            assert m0.types.get(name) == "counter", (name, m0.types)

        a, b, c = [await ProtocolClient.open(port, connection_token(u), name=u)
                   for u in ("alice", "bob", "carol")]
        clients = [a, b, c]
        try:
            for x in clients:
                assert "subscribe" in await x.command("subscribe", {"channel": "stream:a"})
            for x in (a, b):
                assert "subscribe" in await x.command("subscribe", {"channel": "stream:b"})
            # Two failed subscribes: an unknown namespace, a second subscribe.
            assert (await a.command("subscribe", {"channel": "nope:x"}))["error"]["code"] == 102
            assert (await a.command("subscribe", {"channel": "stream:a"}))["error"]["code"] == 105
            m1 = await call(wait_metric, port,
                            lambda m: m["wsvisor_hub_subscriptions"] == 5
                            and m["wsvisor_hub_channels"] == 2, 10.0,
                            what="5 subscriptions in 2 channels")
            # (wsvisor_hub_commands_total has a series per command and result seen.)
            assert m1.types.get("wsvisor_hub_commands_total") == "counter", m1.types
            assert commands(m1, "connect", "ok") - commands(m0, "connect", "ok") == 3, m1.text
            assert commands(m1, "subscribe", "ok") - commands(m0, "subscribe", "ok") == 5, m1.text
            assert commands(m1, "subscribe", "error") - commands(m0, "subscribe", "error") == 2

            # 4 publications to a (3 subscribers), 1 to b (2), 1 to c (none, but history).
            tops = [await call(api_result, port, "publish", {"channel": "stream:a",
                                                              "data": {"n": n}})
                    for n in range(4)]
            await call(api_result, port, "publish", {"channel": "stream:b", "data": {}})
            await call(api_result, port, "publish", {"channel": "stream:c", "data": {}})
            m2 = await call(wait_metric, port,
                            lambda m: m["wsvisor_deliveries_total"]
                            - m1["wsvisor_deliveries_total"] >= 14, 10.0, what="14 deliveries")
            assert m2["wsvisor_publications_total"] - m1["wsvisor_publications_total"] == 6
            assert m2["wsvisor_deliveries_total"] - m1["wsvisor_deliveries_total"] == 14
            assert m2["wsvisor_hub_channels"] == 3, m2.text  # stream:c's history keeps it

            # A client publication counts as a publish command and a publication, too;
            # stream allows no client publish: an error, nothing published.
            r = await c.command("publish", {"channel": "stream:a", "data": {"x": 1}})
            assert r["error"]["code"] == 103, r

            # Recovery: c leaves stream:a and comes back from the 2nd publication (2 to
            # recover), then with a wrong epoch (not recoverable).
            assert "unsubscribe" in await c.command("unsubscribe", {"channel": "stream:a"})
            await call(wait_metric, port, lambda m: m["wsvisor_hub_subscriptions"] == 4, 10.0,
                       what="4 subscriptions after an unsubscribe")
            r = await c.command("subscribe", {"channel": "stream:a", "recover": True,
                                              "offset": tops[1]["offset"],
                                              "epoch": tops[1]["epoch"]})
            assert r["subscribe"].get("recovered") is True, r
            assert [p["data"]["n"] for p in r["subscribe"]["publications"]] == [2, 3], r
            await c.command("unsubscribe", {"channel": "stream:a"})
            r = await c.command("subscribe", {"channel": "stream:a", "recover": True,
                                              "offset": 1, "epoch": "not-the-epoch"})
            assert r["subscribe"].get("recovered", False) is False, r
            m3 = await call(wait_metric, port, lambda m: m["wsvisor_hub_subscriptions"] == 5,
                            10.0, what="5 subscriptions again")
            assert m3.get("wsvisor_recoveries_total", result="recovered") == 1, m3.text
            assert m3.get("wsvisor_recoveries_total", result="unrecovered") == 1, m3.text
            assert commands(m3, "unsubscribe", "ok") - commands(m0, "unsubscribe", "ok") == 2
            assert commands(m3, "publish", "error") - commands(m0, "publish", "error") == 1
            assert m3["wsvisor_publications_total"] == m2["wsvisor_publications_total"]

            # A connection's end takes its subscriptions with it at once.
            await a.close()
            await call(wait_metric, port, lambda m: m["wsvisor_hub_subscriptions"] == 3, 10.0,
                       what="a's 2 subscriptions gone with it")
        finally:
            await close_clients(clients)
        m4 = await call(wait_metric, port,
                        lambda m: m["wsvisor_hub_subscriptions"] == 0
                        and m["wsvisor_connections"] == 0, 10.0, what="no subscription left")
        # Channels with history stay (history_ttl); nothing else moved.
        assert m4["wsvisor_hub_channels"] == 3, m4.text
        assert m4["wsvisor_deliveries_total"] == m2["wsvisor_deliveries_total"], m4.text

    run_async(main(), timeout=60.0)
