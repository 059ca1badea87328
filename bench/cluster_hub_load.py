#!/usr/bin/python3
"""Hub mode publications across cluster nodes (CONTRACT 13 with 14): what delivering a
publication from node A's server API to subscribers on nodes B and C costs against one
node with cluster mode off. Starts its own redis-server and wsvisor nodes, drives them
with a standard-library client (this process), prints a markdown table.

  bench/cluster_hub_load.py                               full run (~1.5 min)
  bench/cluster_hub_load.py --runs 3                      3 runs, medians (~4.5 min)
  bench/cluster_hub_load.py --duration 2 --lat-duration 2 --idle 1 --history-sizes 0
                                                          smoke pass (~30 s)
The binary is --wsvisor (default $WSVISOR_BIN, else build/wsvisor); redis-server and
taskset come from PATH (Debian: redis-server, util-linux).

Setups (each started afresh per measurement, runs rotated so that none always goes
first; one Redis for all, a key prefix per setup):
  single_off  one node, cluster.mode = off: every subscriber on it, the API on it
  single_on   one node, cluster.mode = redis: the same
  multi       --nodes nodes (A, B, C, ...) on one Redis: --per-node subscribers on each,
              the API on A ("same" = a subscriber on A, "other" = on B, C, ...)
The single setups hold all nodes x per-node subscribers, so every setup delivers each
publication to the same number of connections. --history-sizes: each setup once per
size (0 = no history; N: hub.history_size = N, hub.history_ttl = 300s for the default
namespace, so offsets are assigned in Redis in cluster mode).

Per measurement, on one channel ("bench"), subscribers connected anonymously with
Centrifugo's connect and subscribe commands (one frame, two lines):
  idle        --idle s with nobody publishing: Redis's background commands per second
              (leases, probes), subtracted from the windows below.
  saturation  --publishers keep-alive HTTP/1.1 connections POST /api/publish to A (X-API-Key),
              one request outstanding each, as fast as the answers come, but never more
              than --max-lag publications ahead of the slowest subscriber (so that queues
              stay bounded and no subscriber is closed as a slow consumer: the rate is
              what the whole path, client included, sustains). --duration s after
              --warmup s: publications/s, deliveries/s (pub pushes counted in the window).
  paced       --rate publications/s in all for --lat-duration s: latency from just before
              the request is written to the push's arrival, p50 / p99 per group (same /
              other node), and the API's answer time.
For both windows: Redis commands per publication (INFO commandstats delta, minus this
script's INFO calls and the idle background; commands run by scripts are counted by
Redis too), redis-server's and the wsvisor nodes' CPU time per publication
(/proc/PID/stat), this client's share of its core.

Pinning: the nodes and redis-server run on --server-cores (taskset -c, default 0), this
process on --client-cores (default 1), as bench/cluster.sh does. The client is Python:
see its core share; near 1.0 it is the limit, and the saturation rates are lower bounds.

Output: one JSON line per measurement in --out (default bench/out/cluster-hub/
results.jsonl, with the servers' logs) and the table on stdout. Loopback only; every
wait is bounded; only the processes it started are ever signalled.
"""
import argparse
import asyncio
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.dont_write_bytecode = True  # importing cluster_load leaves nothing in bench/
sys.path.insert(0, str(BENCH_DIR))
from cluster_load import GRACE_S, cpu_s, http_post, percentiles, say  # noqa: E402

HOST = "127.0.0.1"
WS_PATH = "/connection/websocket"
API_KEY = "bench-cluster-hub-api-key-0123456789"
CHANNEL = "bench"
HZ = os.sysconf("SC_CLK_TCK")
# One io thread and the limits out of the way (bench/common.sh's WSVISOR_COMMON), no
# heartbeats during a run, a short drain at the end.
COMMON_SETS = [
    "server.host=127.0.0.1", "server.io_threads=1", "log.level=warn", "limits.max_per_ip=0",
    "limits.accept_rate=1000000", "limits.accept_burst=1000000", "limits.max_connections=20000",
    "limits.max_pending_handshakes=20000", "limits.soft_connections=20000",
    "janitor.ping_interval=1h", "shutdown.drain_timeout=3s", "shutdown.drain_spread=100ms",
    "app.mode=hub", f"server.ws_path={WS_PATH}", "hub.allow_anonymous=true",
    "hub.allow_subscribe_for_client=true", "hub.allow_subscribe_for_anonymous=true",
]
PROCS = []  # every process this script started (only these are ever signalled)


def log(line):
    print(f"[cluster-hub {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


# --- processes ---------------------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def spawn(cmd, log_path, cores, env=None):
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(["taskset", "-c", cores, *map(str, cmd)], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    PROCS.append(proc)
    return proc


def stop(proc, timeout=10.0):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"NOTE: pid {proc.pid} did not exit within {timeout} s of SIGTERM (killed)")
            proc.kill()
            proc.wait(5)
    with contextlib.suppress(ValueError):
        PROCS.remove(proc)


def stop_all():
    for proc in list(reversed(PROCS)):
        stop(proc, 5.0)


def wait(predicate, timeout, what, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        with contextlib.suppress(OSError, ValueError, KeyError, http.client.HTTPException):
            if predicate():
                return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def cpu_ticks(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


class Redis:
    def __init__(self, out, cores, port=None):
        self.port = port or free_port()
        self.proc = spawn([shutil.which("redis-server") or "/usr/bin/redis-server", "--bind", HOST,
                           "--port", self.port, "--save", "", "--appendonly", "no", "--dir", out],
                          out / "redis.log", cores)
        wait(lambda: self.command("PING") == "PONG", 10, "redis-server answering", self.proc)

    def command(self, *args):
        """One command on a fresh connection; the reply's text (simple or bulk string)."""
        with socket.create_connection((HOST, self.port), timeout=5) as s:
            s.sendall(b"".join([b"*%d\r\n" % len(args)] +
                               [b"$%d\r\n%s\r\n" % (len(a), a) for a in (str(x).encode() for x in args)]))
            buf = b""
            while True:
                chunk = s.recv(1 << 16)
                if not chunk:
                    raise OSError("closed by Redis")
                buf += chunk
                if buf[:1] == b"+" and buf.endswith(b"\r\n"):
                    return buf[1:-2].decode()
                if buf[:1] == b"$":
                    head, _, rest = buf.partition(b"\r\n")
                    n = int(head[1:])
                    if len(rest) >= n + 2:
                        return rest[:n].decode()
                if buf[:1] == b"-":
                    raise OSError(buf.decode(errors="replace"))

    def commandstats(self):
        """{command: calls} from INFO commandstats."""
        stats = {}
        for line in self.command("INFO", "commandstats").splitlines():
            m = re.match(r"cmdstat_([^:]+):calls=(\d+)", line)
            if m:
                stats[m.group(1)] = int(m.group(2))
        return stats


def http_json(port, method, path, body=None, timeout=2.0):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                     headers=headers)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


class Node:
    def __init__(self, binary, name, out, cores, sets):
        self.name = name
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSVISOR_") and k != "PORT"}
        env["WSVISOR_API_KEY"] = API_KEY
        self.proc = spawn([binary, "--set", f"server.port={self.port}",
                           *[x for s in COMMON_SETS + sets for x in ("--set", s)]],
                          out / f"wsvisor-{name}.log", cores, env)
        wait(lambda: http_json(self.port, "GET", "/health/ready", timeout=1)[0] == 200, 15,
             f"wsvisor {name} ready (see {out}/wsvisor-{name}.log)", self.proc)

    def health(self):
        return http_json(self.port, "GET", "/health")[1]


def start_setup(a, redis, setup, history, run):
    sets = []
    if history:
        sets += [f"hub.history_size={history}", "hub.history_ttl=300s"]
    count = a.nodes if setup == "multi" else 1
    nodes = []
    for i in range(count):
        node_sets = list(sets)
        if setup != "single_off":
            node_sets += ["cluster.mode=redis", f"cluster.redis_url=redis://{HOST}:{redis.port}/0",
                          f"cluster.prefix=bench-{setup.replace('_', '-')}-h{history}-r{run}",
                          f"cluster.node_id={setup.replace('_', '-')}-{i + 1}"]
        nodes.append(Node(a.wsvisor, f"{setup}-h{history}-r{run}-{chr(ord('a') + i)}", a.out,
                          a.server_cores, node_sets))
    if setup != "single_off":
        wait(lambda: all(n.health()["cluster"]["state"] == "ok"
                         and n.health()["cluster"]["nodes"] == count for n in nodes), 10,
             f"{setup}: every node's cluster state ok with {count} nodes")
    return nodes


# --- subscribers -------------------------------------------------------------------------
def masked_text(payload):
    """A masked text frame, mask key 0 (the payload goes as is)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 65536:
        head = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


SUBSCRIBE_FRAME = masked_text(
    (json.dumps({"id": 1, "connect": {}}) + "\n" +
     json.dumps({"id": 2, "subscribe": {"channel": CHANNEL}})).encode())
PUB = b'"pub":'
TS = re.compile(rb'"t":(\d+)\}')
TAIL = 48  # longer than any match of TS or PUB


class Subscriber(asyncio.Protocol):
    """One hub connection. Pushes are not parsed frame by frame: the byte stream is
    scanned for `"pub":` (a count) and, while `bench.timing`, for the data's `"t":<ns>}`
    (a latency), carrying the last bytes over chunk boundaries so that each match counts
    once (a match is counted in the chunk where its last byte arrives)."""

    def __init__(self, bench, group, port):
        self.bench, self.group, self.port = bench, group, port
        self.subscribed = asyncio.get_running_loop().create_future()
        self.head = b""
        self.upgraded = False
        self.tail = b""
        self.count = 0
        self.closed = False
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write((f"GET {WS_PATH} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n").encode())

    def connection_lost(self, exc):
        self.closed = True
        if not self.subscribed.done():
            self.subscribed.set_result(False)

    def data_received(self, data):
        now = time.monotonic_ns()
        if not self.upgraded:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if self.head[9:12] != b"101":
                self.subscribed.set_result(False)
                self.transport.close()
                return
            self.upgraded = True
            data, self.head = self.head[end + 4:], b""
            self.transport.write(SUBSCRIBE_FRAME)
        buf = self.tail + data
        if not self.subscribed.done():
            if b'"id":2,"subscribe"' in buf:
                self.subscribed.set_result(True)
            elif b'"id":2,"error"' in buf or b'"id":1,"error"' in buf:
                self.subscribed.set_result(False)
        got = buf.count(PUB) - self.tail.count(PUB)
        if got:
            self.count += got
            self.bench.delivered(got, now)
        if self.bench.timing:
            skip = len(self.tail)
            for m in TS.finditer(buf):
                if m.end() > skip:
                    self.bench.latency(self.group, now - int(m.group(1)), now)
        self.tail = buf[-TAIL:]


class Bench:
    def __init__(self):
        self.subscribers = []
        self.deliveries = 0
        self.window = None  # (start ns, end ns) when deliveries are counted
        self.window_deliveries = 0
        self.timing = False
        self.lat = {"same": [], "other": []}

    def delivered(self, n, now):
        self.deliveries += n
        if self.window and self.window[0] <= now < self.window[1]:
            self.window_deliveries += n

    def latency(self, group, ns, now):
        if self.window and self.window[0] <= now < self.window[1]:
            self.lat[group].append(ns / 1000)

    def slowest(self):
        return min(s.count for s in self.subscribers)


async def connect_subscribers(bench, nodes, per_node, total_nodes):
    """per_node subscribers on each node, or all total_nodes x per_node on a lone node."""
    loop = asyncio.get_running_loop()
    for i, node in enumerate(nodes):
        group = "same" if i == 0 else "other"
        count = per_node if len(nodes) > 1 else per_node * total_nodes
        for _ in range(count):
            _, sub = await loop.create_connection(lambda: Subscriber(bench, group, node.port),
                                                  HOST, node.port)
            bench.subscribers.append(sub)
    ok = await asyncio.wait_for(asyncio.gather(*[s.subscribed for s in bench.subscribers]), 30)
    return sum(1 for x in ok if x)


# --- publishers --------------------------------------------------------------------------
async def publish_phase(a, bench, api_port, *, rate, duration, warmup, pad):
    """Publishers on keep-alive connections for warmup + duration s: as fast as answers
    come (rate 0, bounded by --max-lag) or `rate` per second in all, evenly spaced."""
    res = {"published": 0, "failed": 0, "statuses": {}, "errors": 0, "late": 0}
    api_lat = []
    t_start = time.monotonic_ns()
    w0 = t_start + int(warmup * 1e9)
    w1 = w0 + int(duration * 1e9)
    bench.window = (w0, w1)
    bench.window_deliveries = 0
    window_pubs = [0]
    seq = [0]
    base = bench.slowest()  # what every subscriber had before this phase
    interval = int(1e9 * a.publishers / rate) if rate else 0

    async def publisher(k):
        reader, writer = await asyncio.open_connection(HOST, api_port)
        next_slot = t_start + (interval * k) // max(1, a.publishers)
        try:
            while True:
                now = time.monotonic_ns()
                if now >= w1:
                    return
                if interval:
                    if now < next_slot:
                        await asyncio.sleep((next_slot - now) / 1e9)
                    elif now - next_slot > 1_000_000:
                        res["late"] += 1
                    next_slot += interval
                else:
                    while seq[0] - (bench.slowest() - base) >= a.max_lag and time.monotonic_ns() < w1:
                        await asyncio.sleep(0.0005)
                n = seq[0]
                seq[0] += 1
                t = time.monotonic_ns()
                body = json.dumps({"channel": CHANNEL, "data": {"p": pad, "s": n, "t": t}},
                                  separators=(",", ":")).encode()
                head = (f"POST /api/publish HTTP/1.1\r\nHost: {HOST}\r\nX-API-Key: {API_KEY}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                status, data = await http_post(reader, writer, head, body)
                done = time.monotonic_ns()
                res["statuses"][str(status)] = res["statuses"].get(str(status), 0) + 1
                if status == 200 and b'"error"' not in data:
                    res["published"] += 1
                    if w0 <= t < w1:
                        window_pubs[0] += 1
                        api_lat.append((done - t) / 1000)
                else:
                    res["failed"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            res["errors"] += 1
        finally:
            writer.close()

    samples = {}

    async def marks():
        await asyncio.sleep(max(0, w0 - time.monotonic_ns()) / 1e9)
        samples["open"] = sample(a, bench)
        await asyncio.sleep(max(0, w1 - time.monotonic_ns()) / 1e9)
        samples["close"] = sample(a, bench)

    marker = asyncio.ensure_future(marks())
    await asyncio.wait_for(asyncio.gather(*[publisher(k) for k in range(a.publishers)]),
                           warmup + duration + GRACE_S + 10)
    await asyncio.wait_for(marker, 5)
    # The stragglers of what was published: at most 2 s.
    for _ in range(40):
        if bench.slowest() - base >= res["published"]:
            break
        await asyncio.sleep(0.05)
    res.update(window_s=duration, window_publications=window_pubs[0],
               publications_per_second=window_pubs[0] / duration,
               deliveries_per_second=bench.window_deliveries / duration,
               api_latency_us=percentiles(api_lat), **samples)
    bench.window = None
    return res


def sample(a, bench):
    """CPU ticks of the nodes, redis-server and this process, and Redis's commandstats."""
    return {"t": time.monotonic(), "nodes": sum(cpu_ticks(p) for p in a.node_pids),
            "redis": cpu_ticks(a.redis.proc.pid), "client": cpu_s(),
            "cmds": a.redis.commandstats(), "deliveries": bench.deliveries}


def window_costs(a, before, after, publications, background):
    """Per publication: Redis commands (by command, this script's INFO and the idle
    background taken out), redis-server and node CPU; the client's core share."""
    span = after["t"] - before["t"]
    shares = {"wsvisor_cpu_share": (after["nodes"] - before["nodes"]) / HZ / span,
              "redis_cpu_share": (after["redis"] - before["redis"]) / HZ / span,
              "client_cpu_share": (after["client"] - before["client"]) / span}
    if publications <= 0:  # nothing to divide by (no delivery across nodes, say)
        return {"redis_commands_per_publication": None, "redis_commands_by_kind": {},
                "redis_cpu_us_per_publication": None, "wsvisor_cpu_us_per_publication": None,
                **shares}
    per = publications
    cmds = {}
    for name in set(before["cmds"]) | set(after["cmds"]):
        if name in ("info", "ping"):
            continue
        delta = after["cmds"].get(name, 0) - before["cmds"].get(name, 0)
        delta -= background.get(name, 0.0) * span
        if delta > 0.5:
            cmds[name] = round(delta / per, 3)
    return {"redis_commands_per_publication": round(sum(cmds.values()), 3),
            "redis_commands_by_kind": dict(sorted(cmds.items(), key=lambda kv: -kv[1])),
            "redis_cpu_us_per_publication": (after["redis"] - before["redis"]) / HZ * 1e6 / per,
            "wsvisor_cpu_us_per_publication": (after["nodes"] - before["nodes"]) / HZ * 1e6 / per,
            **shares}


async def measure(a, setup, history, run):
    nodes = start_setup(a, a.redis, setup, history, run)
    a.node_pids = [n.proc.pid for n in nodes]
    bench = Bench()
    record = {"setup": setup, "history_size": history, "run": run, "nodes": len(nodes),
              "per_node": a.per_node, "publishers": a.publishers, "rate": a.rate, "size": a.size}
    try:
        subscribed = await connect_subscribers(bench, nodes, a.per_node, a.nodes)
        record["subscribers"] = len(bench.subscribers)
        record["subscribed"] = subscribed
        if subscribed != len(bench.subscribers):
            record["error"] = f"{len(bench.subscribers) - subscribed} subscribers not subscribed"
            return record
        pad = "x" * max(0, a.size - 40)
        # Idle: Redis's background per second (leases, probes), no publication.
        idle0 = sample(a, bench)
        await asyncio.sleep(a.idle)
        idle1 = sample(a, bench)
        span = idle1["t"] - idle0["t"]
        background = {k: (idle1["cmds"].get(k, 0) - idle0["cmds"].get(k, 0)) / span
                      for k in idle1["cmds"] if k not in ("info", "ping")}
        record["redis_background_per_second"] = {k: round(v, 2) for k, v in background.items() if v}

        sat = await publish_phase(a, bench, nodes[0].port, rate=0, duration=a.duration,
                                  warmup=a.warmup, pad=pad)
        record["saturation"] = {k: v for k, v in sat.items() if k not in ("open", "close")}
        record["saturation"].update(window_costs(a, sat["open"], sat["close"],
                                                 sat["window_publications"], background))
        bench.timing = True
        paced = await publish_phase(a, bench, nodes[0].port, rate=a.rate,
                                    duration=a.lat_duration, warmup=0.3, pad=pad)
        bench.timing = False
        record["paced"] = {k: v for k, v in paced.items() if k not in ("open", "close")}
        record["paced"].update(window_costs(a, paced["open"], paced["close"],
                                            paced["window_publications"], background))
        record["paced"]["latency_us"] = {g: percentiles(v) for g, v in bench.lat.items()}
        record["closed_by_server"] = sum(1 for s in bench.subscribers if s.closed)
        record["missing_deliveries"] = (sat["published"] + paced["published"]) * len(
            bench.subscribers) - bench.deliveries
        return record
    finally:
        for s in bench.subscribers:
            if s.transport:
                s.transport.close()
        await asyncio.sleep(0.1)
        for node in nodes:
            stop(node.proc)


# --- summary -----------------------------------------------------------------------------
def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec="{:,.0f}"):
    return "-" if v is None else spec.format(v)


def ms(v):
    return "-" if v is None else f"{v / 1000:.2f}"


def summarize(records, a):
    print(f"\nHub publish delivery, API on node A; {a.per_node} subscribers per node x {a.nodes} "
          f"nodes ({a.per_node * a.nodes} in every setup), {a.size} B data, saturation: "
          f"{a.publishers} publishers (max lag {a.max_lag}), paced: {a.rate:g} publications/s. "
          f"Servers on core(s) {a.server_cores}, client on {a.client_cores}.\n")
    print("| setup | history | publications/s (sat) | deliveries/s (sat) | vs single_off | "
          "p50 / p99 same node (ms) | p50 / p99 other nodes (ms) | added p50 / p99 vs single_off (ms) | "
          "API answer p50 (ms) | Redis commands / publication (sat, paced) | Redis CPU us / pub | "
          "wsvisor CPU us / pub | server core (wsvisor + Redis) | client core | closed | runs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ok = [r for r in records if "error" not in r]
    for history in a.history_sizes:
        base = [r for r in ok if r["setup"] == "single_off" and r["history_size"] == history]
        base_dps = med([r["saturation"]["deliveries_per_second"] for r in base])
        base_p50 = med([r["paced"]["latency_us"]["same"]["p50"] for r in base])
        base_p99 = med([r["paced"]["latency_us"]["same"]["p99"] for r in base])
        for setup in a.setups:
            rs = [r for r in ok if r["setup"] == setup and r["history_size"] == history]
            if not rs:
                continue
            pps = med([r["saturation"]["publications_per_second"] for r in rs])
            dps = med([r["saturation"]["deliveries_per_second"] for r in rs])
            lat = {g: (med([r["paced"]["latency_us"][g]["p50"] for r in rs]),
                       med([r["paced"]["latency_us"][g]["p99"] for r in rs])) for g in ("same", "other")}
            # The group a publication from A's API reaches on other nodes; the single
            # setups have only "same".
            far = lat["other"] if setup == "multi" else lat["same"]
            added = ("-" if base_p50 is None or far[0] is None
                     else f"{(far[0] - base_p50) / 1000:+.2f} / {(far[1] - base_p99) / 1000:+.2f}")
            cmd_sat = med([r["saturation"]["redis_commands_per_publication"] for r in rs])
            cmd_paced = med([r["paced"]["redis_commands_per_publication"] for r in rs])
            print(f"| {setup} | {history or 'off'} | {fmt(pps)} | {fmt(dps)} | "
                  f"{fmt(dps / base_dps if dps and base_dps else None, '{:.2f}')} | "
                  f"{ms(lat['same'][0])} / {ms(lat['same'][1])} | "
                  f"{ms(lat['other'][0])} / {ms(lat['other'][1])} | {added} | "
                  f"{ms(med([r['paced']['api_latency_us']['p50'] for r in rs]))} | "
                  f"{fmt(cmd_sat, '{:.2f}')}, {fmt(cmd_paced, '{:.2f}')} | "
                  f"{fmt(med([r['saturation']['redis_cpu_us_per_publication'] for r in rs]))} | "
                  f"{fmt(med([r['saturation']['wsvisor_cpu_us_per_publication'] for r in rs]))} | "
                  f"{fmt(med([r['saturation']['wsvisor_cpu_share'] for r in rs]), '{:.2f}')} + "
                  f"{fmt(med([r['saturation']['redis_cpu_share'] for r in rs]), '{:.2f}')} | "
                  f"{fmt(med([r['saturation']['client_cpu_share'] for r in rs]), '{:.2f}')} | "
                  f"{sum(r['closed_by_server'] for r in rs)} | {len(rs)} |")
    kinds = {}
    for r in ok:
        if r["setup"] == "multi":
            for k, v in r["paced"]["redis_commands_by_kind"].items():
                kinds.setdefault((r["history_size"], k), []).append(v)
    if kinds:
        print("\nRedis commands per publication by command, multi, paced window (median): " +
              "; ".join(f"history {h or 'off'} {k} {med(v):.2f}" for (h, k), v in sorted(kinds.items())))
    bad = [r for r in records if "error" in r or r.get("missing_deliveries") or r.get("closed_by_server")]
    for r in bad:
        print(f"\nNOTE: {r['setup']} history {r['history_size']} run {r['run']}: "
              f"{r.get('error') or ''} missing deliveries {r.get('missing_deliveries')}, "
              f"closed by the server {r.get('closed_by_server')}")
    print("\nadded = the other-node (multi) or only (single_on) group's paced latency minus "
          "single_off's, p50 and p99. Redis commands: INFO commandstats over the window, "
          "the idle background per second and this script's INFO calls taken out; commands "
          "run inside scripts are counted by Redis too.")


def rotate(items, k):
    k %= len(items)
    return items[k:] + items[:k]


def main():
    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass
    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    arg = p.add_argument
    arg("--wsvisor", default=os.environ.get("WSVISOR_BIN") or str(ROOT / "build" / "wsvisor"),
        help="the wsvisor binary")
    arg("--setups", default="single_off,single_on,multi", help="comma separated")
    arg("--history-sizes", default="0,100", help="hub.history_size per pass, 0 = no history")
    arg("--nodes", type=int, default=3, help="nodes of the multi setup")
    arg("--per-node", type=int, default=20, help="subscribers per node (x nodes on a single node)")
    arg("--publishers", type=int, default=8, help="keep-alive API connections")
    arg("--max-lag", type=int, default=64, help="saturation: most publications ahead of the slowest subscriber")
    arg("--rate", type=float, default=200.0, help="paced: publications per second")
    arg("--size", type=int, default=64, help="publication data bytes (about)")
    arg("--runs", type=int, default=1, help="each setup this often, rotated; medians")
    arg("--duration", type=float, default=5.0, help="saturation window, s")
    arg("--warmup", type=float, default=1.0, help="before the saturation window, s")
    arg("--lat-duration", type=float, default=3.0, help="paced window, s")
    arg("--idle", type=float, default=2.0, help="idle window for Redis's background, s")
    arg("--server-cores", default="0", help="taskset -c list for wsvisor and redis-server")
    arg("--client-cores", default="1", help="CPU list for this process")
    arg("--redis-port", type=int, help="default: a free port")
    arg("--out", default=str(BENCH_DIR / "out" / "cluster-hub"), help="results.jsonl and logs")
    a = p.parse_args()
    a.setups = [s for s in a.setups.split(",") if s]
    unknown = set(a.setups) - {"single_off", "single_on", "multi"}
    if unknown:
        p.error(f"unknown setups {sorted(unknown)}")
    a.history_sizes = [int(h) for h in a.history_sizes.split(",") if h != ""]
    if not os.access(a.wsvisor, os.X_OK):
        p.error(f"no wsvisor binary at {a.wsvisor} (--wsvisor or WSVISOR_BIN)")
    for tool in ("taskset", "redis-server"):
        if not shutil.which(tool) and not Path(f"/usr/bin/{tool}").exists():
            p.error(f"{tool} is missing")
    a.out = Path(a.out)
    a.out.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {int(c) for c in a.client_cores.split(",")})

    def interrupted(*_):
        log("interrupted")
        stop_all()
        sys.exit(130)
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    records = []
    results = a.out / "results.jsonl"
    try:
        a.redis = Redis(a.out, a.server_cores, a.redis_port)
        with open(results, "a") as out:
            for run in range(1, a.runs + 1):
                for history in a.history_sizes:
                    for setup in rotate(a.setups, run - 1):
                        log(f"run {run}: {setup}, history {history or 'off'}")
                        try:
                            record = asyncio.run(measure(a, setup, history, run))
                        except (RuntimeError, OSError, asyncio.TimeoutError) as e:
                            record = {"setup": setup, "history_size": history, "run": run,
                                      "error": repr(e)}
                        records.append(record)
                        out.write(json.dumps(record) + "\n")
                        out.flush()
                        if "error" in record:
                            log(f"NOTE: {record['error']}")
                        else:
                            s, pc = record["saturation"], record["paced"]
                            log(f"  {s['publications_per_second']:,.0f} publications/s, "
                                f"{s['deliveries_per_second']:,.0f} deliveries/s, paced p50 same "
                                f"{ms(pc['latency_us']['same']['p50'])} other "
                                f"{ms(pc['latency_us']['other']['p50'])} ms, "
                                f"{fmt(pc['redis_commands_per_publication'], '{:.2f}')} Redis "
                                f"commands per publication, client core {s['client_cpu_share']:.2f}")
    finally:
        stop_all()
    say(f"results in {results}")
    summarize(records, a)
    return 0 if records and all("error" not in r for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
