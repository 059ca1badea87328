#!/usr/bin/python3
"""The client side of bench/cluster.sh: upgrades as distinct users, and /api/send by user
to connections spread over cluster nodes. Standard library only (no websockets package:
raw sockets are cheaper per upgrade and per frame, and the client core is the limit).

  cluster_load.py connect --port P [--user-mode none|each|group --users-per N]
                  [--user-prefix S] [--workers W] [--duration S | --count N] [--warmup S]
      W concurrent loops (one epoll, non-blocking sockets): TCP connect, upgrade request
      (with X-User-Id when a user mode says so), the 101, a masked close frame, then the
      server's close and EOF (the server closes TCP first, so no TIME_WAIT here), next.
      User names: each = <prefix><n> (a new user per upgrade), group = <prefix><n / N>,
      none = no header. One JSON object: attempts, upgrades, upgrades_per_second (in the
      window after --warmup), handshake_latency_us (connect start to the 101, window
      only), refusals {"429": n, ...}, errors, client_cpu_share.

  cluster_load.py send --api-port P --ports P1,P2,... --per-node N --user U --api-key K
                  [--senders S] [--rate R] [--duration S | --count N] [--warmup S]
      N connections of user U on each port (X-User-Id), then S keep-alive HTTP/1.1
      connections POST /api/send {"user":U,"data":"<seq> <CLOCK_MONOTONIC ns> pad"} to
      --api-port with X-API-Key, one request outstanding each, as fast as the answers
      come or --rate sends/s in all (evenly spaced). A frame's latency is its arrival
      minus the ns in its data; "same" = a connection on the --api-port node, "other" =
      on another node. One JSON object: sends_per_second, deliveries_per_second (frames
      arrived in the window / its length), latency_us {same, other} and api_latency_us
      (each {count,p50,p90,p99,max}, sends made in the window), delivered_sum (what the
      answers said, every send), frames (received, every send), unconfirmed_nodes_sum,
      failed sends, http statuses, client_cpu_share.

  cluster_load.py redis-count --monitor FILE --clients PORT=NODE,...
      Counts a `redis-cli MONITOR` capture by what each command is for (claim, open,
      release, lease, send_lookup, publish_<type>, ...), for the commands the nodes sent
      (by node: the client ports their Redis connections use) and for those that the
      scripts ran inside Redis. JSON: {sent, inside_scripts, by_node}.

Loopback only; every loop is bounded by --duration (or --count) plus a grace.
"""
import argparse
import asyncio
import errno
import json
import os
import resource
import select
import socket
import sys
import time

REQUEST_TAIL = ("Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
# A masked close frame, code 1000 (mask 0: the payload is sent as is).
CLOSE_FRAME = bytes([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8])
GRACE_S = 5.0


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def say(line):  # progress for the script that runs us: it samples CPU at these lines
    print(f"cluster_load: {line}", file=sys.stderr, flush=True)


def percentiles(values):
    if not values:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}
    v = sorted(values)
    at = lambda p: v[min(len(v) - 1, int(p / 100.0 * len(v)))]
    return {"count": len(v), "p50": at(50), "p90": at(90), "p99": at(99), "max": v[-1]}


def upgrade_request(port, user, path="/ws"):
    header = f"X-User-Id: {user}\r\n" if user is not None else ""
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{REQUEST_TAIL}{header}\r\n").encode()


# --- connect ----------------------------------------------------------------------------
class Slot:
    __slots__ = ("sock", "state", "buf", "t0", "deadline", "req")


def run_connect(a):
    ep = select.epoll()
    source_addrs = a.source_addrs.split(",")
    slots = {}  # fd -> Slot
    n_started = 0
    res = {"attempts": 0, "upgrades": 0, "refusals": {}, "errors": 0, "timeouts": 0}
    lat = []
    window_upgrades = 0
    t_start = time.monotonic()
    w0 = t_start + a.warmup
    w1 = w0 + a.duration if a.count == 0 else float("inf")
    c0 = None
    closed_said = False
    hard = t_start + a.warmup + (a.duration if a.count == 0 else 600) + GRACE_S

    def user_of(n):
        if a.user_mode == "none":
            return None
        return f"{a.user_prefix}{n if a.user_mode == 'each' else n // a.users_per}"

    def start():
        nonlocal n_started
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((source_addrs[n_started % len(source_addrs)], 0))
        st = Slot()
        st.sock, st.state, st.buf = s, 0, b""
        st.t0 = time.monotonic()
        st.deadline = st.t0 + a.timeout
        err = s.connect_ex((a.host, a.port))
        if err not in (0, errno.EINPROGRESS):
            res["errors"] += 1
            s.close()
            return False
        st.req = upgrade_request(a.port, user_of(n_started))
        n_started += 1
        res["attempts"] += 1
        slots[s.fileno()] = st
        ep.register(s.fileno(), select.EPOLLOUT)
        return True

    def finish(fd, st, ok):
        ep.unregister(fd)
        st.sock.close()
        del slots[fd]

    def want_more(now):
        if a.count:
            return n_started < a.count
        return now < w1

    for _ in range(a.workers):
        if want_more(time.monotonic()):
            start()
    last_sweep = time.monotonic()
    while slots:
        events = ep.poll(0.05)
        now = time.monotonic()
        if c0 is None and now >= w0:
            c0 = cpu_s()
            say("window open")
        if not closed_said and now >= w1:
            closed_said = True
            say("window closed")
        for fd, ev in events:
            st = slots.get(fd)
            if st is None:
                continue
            try:
                if st.state == 0:  # connected (or failed)
                    err = st.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        res["errors"] += 1
                        finish(fd, st, False)
                    else:
                        st.sock.send(st.req)
                        st.state = 1
                        ep.modify(fd, select.EPOLLIN)
                elif st.state == 1:  # the answer to the upgrade
                    data = st.sock.recv(4096)
                    if not data:
                        res["errors"] += 1
                        finish(fd, st, False)
                        continue
                    st.buf += data
                    if b"\r\n\r\n" not in st.buf:
                        continue
                    status = st.buf[9:12].decode(errors="replace")
                    if status == "101":
                        res["upgrades"] += 1
                        if w0 <= now < w1:
                            window_upgrades += 1
                            lat.append((now - st.t0) * 1e6)
                        st.sock.send(CLOSE_FRAME)
                        st.state = 2
                    else:
                        res["refusals"][status] = res["refusals"].get(status, 0) + 1
                        finish(fd, st, False)
                else:  # closing: read the server's close frame up to its EOF
                    if not st.sock.recv(4096):
                        finish(fd, st, True)
            except OSError:
                res["errors"] += 1
                if fd in slots:
                    finish(fd, st, False)
        if now - last_sweep > 0.2:
            last_sweep = now
            for fd, st in list(slots.items()):
                if now > st.deadline:
                    res["timeouts"] += 1
                    finish(fd, st, False)
        if now > hard:
            for fd, st in list(slots.items()):
                finish(fd, st, False)
            break
        while len(slots) < a.workers and want_more(time.monotonic()):
            if not start():
                break
    t_end = time.monotonic()
    window = (min(w1, t_end) - w0) if a.count == 0 else (t_end - t_start)
    if a.count:
        window_upgrades = res["upgrades"]
        c0 = 0.0
    res.update({
        "user_mode": a.user_mode, "workers": a.workers,
        "window_s": round(window, 3), "window_upgrades": window_upgrades,
        "upgrades_per_second": window_upgrades / window if window > 0 else 0,
        "handshake_latency_us": percentiles(lat),
        "client_cpu_share": (cpu_s() - (c0 or 0.0)) / max(1e-9, t_end - (w0 if a.count == 0 else t_start)),
        "elapsed_s": round(t_end - t_start, 3)})
    return res


# --- send -------------------------------------------------------------------------------
class Receiver(asyncio.Protocol):
    def __init__(self, run, node, request):
        self.run, self.node, self.request = run, node, request
        self.upgraded = asyncio.get_running_loop().create_future()
        self.buf = b""
        self.http_done = False
        self.transport = None
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc):
        self.closed = True
        if not self.upgraded.done():
            self.upgraded.set_result(False)

    def data_received(self, data):
        now = time.monotonic_ns()
        buf = self.buf + data
        if not self.http_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            ok = buf[9:12] == b"101"
            self.http_done = True
            self.upgraded.set_result(ok)
            if not ok:
                self.buf = b""
                self.transport.close()
                return
            buf = buf[end + 4:]
        pos, n = 0, len(buf)
        while n - pos >= 2:
            op, ln = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            h = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln, h = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln, h = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if n - pos < h + ln:
                break
            payload = buf[pos + h:pos + h + ln]
            pos += h + ln
            if op == 1:
                self.run.frame(self.node, payload, now)
            elif op == 9:  # ping: a masked pong with the same payload (mask 0)
                self.transport.write(bytes([0x8A, 0x80 | len(payload), 0, 0, 0, 0]) + payload)
            elif op == 8:
                self.closed = True
        self.buf = buf[pos:]


class SendRun:
    def __init__(self, a):
        self.a = a
        self.frames = 0
        self.window_frames = 0
        self.lat = {"same": [], "other": []}
        self.w0 = self.w1 = None
        self.sent_at = {}  # seq -> in window

    def frame(self, node, payload, now):
        self.frames += 1
        if self.w0 is not None and self.w0 <= now < self.w1:
            self.window_frames += 1
        sp = payload.find(b" ", 0, 32)
        seq = int(payload[:sp])
        if self.sent_at.get(seq):
            t = int(payload[sp + 1:payload.find(b" ", sp + 1)])
            self.lat["same" if node == 0 else "other"].append((now - t) / 1000)


async def http_post(reader, writer, head, body):
    writer.write(head + body)
    head_end = await reader.readuntil(b"\r\n\r\n")
    status = int(head_end[9:12])
    length = 0
    for line in head_end.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    data = await reader.readexactly(length) if length else b""
    return status, data


async def run_send(a):
    loop = asyncio.get_running_loop()
    run = SendRun(a)
    ports = [int(p) for p in a.ports.split(",")]
    receivers = []
    for node, port in enumerate(ports):
        for _ in range(a.per_node):
            req = upgrade_request(port, a.user)
            _, proto = await loop.create_connection(lambda: Receiver(run, node, req), a.host, port)
            receivers.append(proto)
    oks = await asyncio.wait_for(asyncio.gather(*[r.upgraded for r in receivers]), 10)
    res = {"connections": len(receivers), "connections_ok": sum(1 for o in oks if o), "nodes": len(ports),
           "per_node": a.per_node, "senders": a.senders, "rate": a.rate, "sends_ok": 0, "sends_failed": 0,
           "http_statuses": {}, "delivered_sum": 0, "unconfirmed_nodes_sum": 0, "errors": 0}
    if res["connections_ok"] != len(receivers):
        res["error"] = "not every connection was upgraded"
        return res
    api_lat = []
    pad = "x" * max(0, a.size - 32)
    t_start = time.monotonic_ns()
    run.w0 = t_start + int(a.warmup * 1e9)
    run.w1 = run.w0 + int(a.duration * 1e9) if a.count == 0 else 1 << 62
    stop_at = run.w1 if a.count == 0 else t_start + int(600e9)
    seq_box = [0]
    interval_ns = int(1e9 * a.senders / a.rate) if a.rate > 0 else 0
    late = [0]
    c0 = [None]

    async def sender(k):
        reader, writer = await asyncio.open_connection(a.host, a.api_port)
        next_slot = t_start + (interval_ns * k) // max(1, a.senders)
        try:
            while True:
                now = time.monotonic_ns()
                if now >= stop_at or (a.count and seq_box[0] >= a.count):
                    return
                if interval_ns:
                    if now < next_slot:
                        await asyncio.sleep((next_slot - now) / 1e9)
                    elif now - next_slot > 1_000_000:
                        late[0] += 1
                    next_slot += interval_ns
                seq = seq_box[0]
                seq_box[0] += 1
                t = time.monotonic_ns()
                in_window = run.w0 <= t < run.w1
                if c0[0] is None and in_window:
                    c0[0] = cpu_s()
                run.sent_at[seq] = in_window
                body = json.dumps({"user": a.user, "data": f"{seq} {t} {pad}"}).encode()
                head = (f"POST /api/send HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {a.api_key}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                status, data = await http_post(reader, writer, head, body)
                done = time.monotonic_ns()
                res["http_statuses"][str(status)] = res["http_statuses"].get(str(status), 0) + 1
                if status == 200:
                    answer = json.loads(data)
                    res["sends_ok"] += 1
                    res["delivered_sum"] += answer.get("delivered", 0)
                    res["unconfirmed_nodes_sum"] += answer.get("unconfirmed_nodes", 0)
                    if in_window:
                        api_lat.append((done - t) / 1000)
                else:
                    res["sends_failed"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            res["errors"] += 1
        finally:
            writer.close()

    async def announce():
        for at, line in ((run.w0, "window open"), (run.w1, "window closed")):
            if at >= 1 << 61:
                return
            await asyncio.sleep(max(0, at - time.monotonic_ns()) / 1e9)
            say(line)

    announcer = asyncio.ensure_future(announce())
    await asyncio.wait_for(asyncio.gather(*[sender(k) for k in range(a.senders)]),
                           (stop_at - t_start) / 1e9 + GRACE_S if a.count == 0 else 600)
    t_end = time.monotonic_ns()
    c1 = cpu_s()
    announcer.cancel()
    # What is still on its way: at most 2 s for the frames the answers counted.
    for _ in range(40):
        if run.frames >= res["delivered_sum"]:
            break
        await asyncio.sleep(0.05)
    window_s = (min(run.w1, t_end) - run.w0) / 1e9 if a.count == 0 else (t_end - t_start) / 1e9
    window_sends = sum(1 for v in run.sent_at.values() if v) if a.count == 0 else seq_box[0]
    if a.count:
        run.window_frames = run.frames
    res.update({
        "window_s": round(window_s, 3), "window_sends": window_sends,
        "sends_per_second": window_sends / window_s if window_s > 0 else 0,
        "deliveries_per_second": run.window_frames / window_s if window_s > 0 else 0,
        "frames": run.frames, "late": late[0],
        "latency_us": {k: percentiles(v) for k, v in run.lat.items()},
        "api_latency_us": percentiles(api_lat),
        "client_cpu_share": (c1 - (c0[0] if c0[0] is not None else 0.0)) /
                            max(1e-9, (min(run.w1, t_end) - run.w0) / 1e9 if a.count == 0 else (t_end - t_start) / 1e9),
        "closed_by_server": sum(1 for r in receivers if r.closed)})
    for r in receivers:
        if r.transport:
            r.transport.close()
    await asyncio.sleep(0.05)
    return res


# --- redis-count ------------------------------------------------------------------------
def kind_of(args):
    """What a command the nodes sent is for (the scripts told apart by their keys)."""
    cmd = args[0].upper()
    if cmd in ("EVALSHA", "EVAL") and len(args) >= 3:
        nkeys, keys = int(args[2]), args[3:3 + int(args[2])]
        first = keys[0] if keys else ""
        second = keys[1] if len(keys) > 1 else ""
        if ":claims:" in first:
            return "claim"
        if ":conns:" in first:
            return "release" if nkeys == 2 else "rebuild"
        if first.endswith(":nodes"):
            if nkeys == 2:
                return "lease"
            return "leave" if ":node:" in second else "reap"
        return "script?"
    if cmd == "HSET" and len(args) > 1 and ":conns:" in args[1]:
        return "open"
    if cmd == "HVALS":
        return "send_lookup"
    if cmd == "PUBLISH" and len(args) > 2:
        try:
            return "publish_" + str(json.loads(args[2]).get("t"))
        except ValueError:
            return "publish?"
    return cmd.lower()


def run_redis_count(a):
    """Counts a MONITOR capture: per kind, the commands the nodes sent and those the
    scripts ran inside Redis (the "[0 lua]" lines that follow their EVALSHA)."""
    import shlex
    clients = dict(kv.split("=", 1) for kv in a.clients.split(",") if "=" in kv)
    sent, inner, by_client = {}, {}, {}
    parent = None
    for line in open(a.monitor, errors="replace"):
        sp = line.find(" [")
        end = line.find("] ", sp)
        if sp < 0 or end < 0:
            continue
        where = line[sp + 2:end].split(" ", 1)[-1]
        try:
            args = shlex.split(line[end + 2:].strip())
        except ValueError:
            continue
        if not args:
            continue
        if where == "lua":
            if parent:
                inner[parent] = inner.get(parent, 0) + 1
            continue
        client = clients.get(where.rsplit(":", 1)[-1])
        if client is None:  # redis-cli (this script), not a node
            parent = None
            continue
        k = kind_of(args)
        parent = k
        sent[k] = sent.get(k, 0) + 1
        c = by_client.setdefault(client, {})
        c[k] = c.get(k, 0) + 1
    return {"sent": sent, "inside_scripts": inner, "by_node": by_client}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["connect", "send", "redis-count"])
    p.add_argument("--monitor", help="redis-count: a redis-cli MONITOR capture")
    p.add_argument("--clients", default="", help="redis-count: PORT=NODE,... (the nodes' source ports)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int)
    p.add_argument("--user-mode", choices=["none", "each", "group"], default="none")
    p.add_argument("--users-per", type=int, default=10)
    p.add_argument("--user-prefix", default="u")
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--source-addrs", default="127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--api-port", type=int)
    p.add_argument("--ports")
    p.add_argument("--per-node", type=int, default=10)
    p.add_argument("--user", default="bench-user")
    p.add_argument("--api-key", default=os.environ.get("WSVISOR_API_KEY", ""))
    p.add_argument("--senders", type=int, default=8)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=0.0)
    p.add_argument("--count", type=int, default=0)
    a = p.parse_args()
    if a.mode == "redis-count":
        res = run_redis_count(a)
    elif a.mode == "connect":
        if a.port is None:
            p.error("connect needs --port")
        res = run_connect(a)
    else:
        if a.api_port is None or not a.ports:
            p.error("send needs --api-port and --ports")
        res = asyncio.run(run_send(a))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
