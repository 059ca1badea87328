#!/usr/bin/python3
"""Crash-to-service latency and echo throughput under connection crashes (wsvisor).

Usage:
  crash_latency.py latency    PORT TOKEN [ITERATIONS]      -> one JSON object
  crash_latency.py throughput PORT TOKEN [SECONDS] [CONNS] [EVERY] -> one JSON object

Uses Debian's python3-websockets (10.4) and http.client (keep-alive).
Every loop is bounded (iteration count or wall-clock deadline, plus per-recv timeouts).
"""
import asyncio
import http.client
import json
import statistics
import sys
import threading
import time
import concurrent.futures

import websockets

MSG = "0123456789abcdef"  # 16 bytes
RECV_TIMEOUT = 5.0


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


class Admin:
    def __init__(self, port, token):
        self.port = port
        self.hdr = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def req(self, method, path, body=None):
        for attempt in range(2):  # one reconnect if the keep-alive socket was dropped
            try:
                self.c.request(method, path, body=body, headers=self.hdr)
                r = self.c.getresponse()
                data = r.read()
                return r.status, data
            except (http.client.HTTPException, OSError):
                self.c.close()
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if attempt == 1:
                    raise

    def ids(self):
        st, data = self.req("GET", "/admin/connections")
        assert st == 200, (st, data)
        return {c["id"]: c for c in json.loads(data)}

    def crash(self, cid):
        st, data = self.req("POST", "/admin/faults",
                            json.dumps({"action": "crash", "target": "connection", "id": cid}))
        return st, (json.loads(data).get("applied") if st == 200 else data)

    def restarts(self):
        st, data = self.req("GET", "/metrics")
        for line in data.decode().splitlines():
            if line.startswith('wsvisor_actor_restarts_total{actor="connection"}'):
                return float(line.split()[-1])
        return None


def url(port):
    return "ws://127.0.0.1:%d/ws" % port


async def open_with_id(port, admin):
    before = set(admin.ids())
    ws = await websockets.connect(url(port), ping_interval=None, max_queue=None,
                                  compression=None, open_timeout=10)
    new = []
    for _ in range(50):  # bounded: up to ~1 s for the connection to appear
        new = [i for i in admin.ids() if i not in before]
        if new:
            break
        await asyncio.sleep(0.02)
    assert len(new) == 1, new
    return ws, new[0]


async def latency(port, token, n):
    admin = Admin(port, token)
    ws, cid = await open_with_id(port, admin)
    r0 = admin.restarts()
    res = {}
    errors = {"bad_echo": 0, "not_applied": 0}
    for mode in ("baseline", "crash"):
        lat = []
        for _ in range(n):
            if mode == "crash":
                st, applied = admin.crash(cid)
                if st != 200 or applied != 1:
                    errors["not_applied"] += 1
            else:
                st, _ = admin.req("GET", "/health/ready")
            t0 = time.perf_counter_ns()
            await ws.send(MSG)
            got = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
            t1 = time.perf_counter_ns()
            if got != MSG:
                errors["bad_echo"] += 1
            lat.append((t1 - t0) / 1000.0)
        lat.sort()
        res[mode] = {"n": len(lat), "p50_us": pct(lat, 50), "p99_us": pct(lat, 99),
                     "mean_us": statistics.fmean(lat), "max_us": lat[-1]}
    res["connection_restarts_delta"] = admin.restarts() - r0
    res["errors"] = errors
    res["still_open"] = ws.open
    await ws.close()
    return res


async def throughput(port, token, seconds, conns, every):
    admin = Admin(port, token)
    socks = []
    for _ in range(conns):
        socks.append(await open_with_id(port, admin))
    local = threading.local()

    def post_crash(cid):
        if not hasattr(local, "a"):
            local.a = Admin(port, token)
        return local.a.crash(cid)

    ex = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    loop = asyncio.get_running_loop()
    out = {}
    for mode in ("none", "crash"):
        r0 = admin.restarts()
        counts = [0] * conns
        futs = []
        bad = [0]

        async def run(i, ws, cid, deadline):
            while time.perf_counter() < deadline:
                await ws.send(MSG)
                got = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
                if got != MSG:
                    bad[0] += 1
                counts[i] += 1
                if mode == "crash" and counts[i] % every == 0:
                    futs.append(loop.run_in_executor(ex, post_crash, cid))

        t0 = time.perf_counter()
        deadline = t0 + seconds
        await asyncio.gather(*(run(i, ws, cid, deadline) for i, (ws, cid) in enumerate(socks)))
        el = time.perf_counter() - t0
        applied = 0
        if futs:
            done = await asyncio.wait_for(asyncio.gather(*futs), 30)
            applied = sum(1 for st, a in done if st == 200 and a == 1)
        await asyncio.sleep(0.2)
        out[mode] = {"messages": sum(counts), "seconds": el,
                     "messages_per_second": sum(counts) / el,
                     "crash_posts": len(futs), "crashes_applied": applied,
                     "connection_restarts_delta": admin.restarts() - r0,
                     "bad_echo": bad[0]}
    out["ratio_crash_over_none"] = out["crash"]["messages_per_second"] / out["none"]["messages_per_second"]
    out["all_open_at_end"] = all(ws.open for ws, _ in socks)
    for ws, _ in socks:
        await ws.close()
    ex.shutdown(wait=True)
    return out


def main():
    mode, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "latency":
        n = int(sys.argv[4]) if len(sys.argv) > 4 else 10000
        r = asyncio.run(latency(port, token, n))
    elif mode == "throughput":
        secs = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
        conns = int(sys.argv[5]) if len(sys.argv) > 5 else 10
        every = int(sys.argv[6]) if len(sys.argv) > 6 else 100
        r = asyncio.run(throughput(port, token, secs, conns, every))
    else:
        sys.exit("unknown mode " + mode)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
