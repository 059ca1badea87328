#!/usr/bin/env bash
# permessage-deflate (issue 17): compressed echo against uncompressed, side by side on one
# wsvisor (server.compression = true; a client that offers nothing gets plain frames),
# and the memory an idle compressed connection holds.
#
#   bench/compression.sh [WSVISOR_BINARY]        (default build/wsvisor)
#
# Echo: `wsload echo --payload json` (JSON-like text, every message different),
# SIZE bytes (4096), CONNECTIONS (100), IN_FLIGHT (1), DURATION s (4), ROUNDS (3), the
# two clients interleaved; per run: messages/s, the server's CPU per message (utime +
# stime from /proc over the client's run) and the payload bytes it wrote per message
# (wsvisor_bytes_sent_total: compressed as written). Memory: IDLE connections (2000) by
# python3-websockets, each sending one compressed message and getting its echo, then
# idle; RSS growth per connection, with compression offered and without, and with
# server.compression_window_bits = 10.
# The server on core 0, the clients on core 1.
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
WSVISOR=${1:-$ROOT/build/wsvisor}
WSLOAD=${WSLOAD_BIN:-$ROOT/build/wsload}
PY=/usr/bin/python3
SIZE=${SIZE:-4096} CONNECTIONS=${CONNECTIONS:-100} IN_FLIGHT=${IN_FLIGHT:-1}
DURATION=${DURATION:-4} ROUNDS=${ROUNDS:-3} IDLE=${IDLE:-2000}
# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"  # WSVISOR_COMMON, wait_listening, SERVER_CORE, CLIENT_CORE, HZ
[[ -x $WSVISOR && -x $WSLOAD ]] || { echo "build first (make build)" >&2; exit 2; }
ulimit -n 20000 2>/dev/null || true
WORK=$(mktemp -d)
SERVER=""
trap '[[ -n $SERVER ]] && kill -TERM $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT

start_server() {  # port [--set ...]
  local port=$1
  shift
  taskset -c $SERVER_CORE "$WSVISOR" --set "server.port=$port" "${WSVISOR_COMMON[@]}" \
    --set server.compression=true --set server.max_message_bytes=1048576 "$@" \
    >"$WORK/server.log" 2>&1 &
  SERVER=$!
  wait_listening "$port" "$SERVER" || { echo "wsvisor did not listen" >&2; exit 1; }
}

stop_server() {
  kill -TERM "$SERVER" 2>/dev/null
  wait "$SERVER" 2>/dev/null
  SERVER=""
}

metric() {  # port name
  curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n {print $2}'
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "# $(date -u '+%F %H:%M UTC'), $(nproc) cores, ${SIZE} B JSON-like x $IN_FLIGHT in flight x $CONNECTIONS connections, ${DURATION} s, $ROUNDS rounds"
port=$((21000 + RANDOM % 20000))
start_server "$port"
for round in $(seq "$ROUNDS"); do
  for compression in off on; do
    sent0=$(metric "$port" wsvisor_bytes_sent_total) msgs0=$(metric "$port" wsvisor_messages_sent_total)
    t0=$(cpu_ticks "$SERVER")
    taskset -c $CLIENT_CORE "$WSLOAD" echo --port "$port" --payload json --size "$SIZE" \
      --compression "$compression" --connections "$CONNECTIONS" --in-flight "$IN_FLIGHT" \
      --duration "$DURATION" --warmup 1 2>/dev/null >"$WORK/out.json"
    t1=$(cpu_ticks "$SERVER")
    sent1=$(metric "$port" wsvisor_bytes_sent_total) msgs1=$(metric "$port" wsvisor_messages_sent_total)
    "$PY" - "$WORK/out.json" "$round" "$compression" "$((t1 - t0))" "$HZ" "$sent0" "$sent1" "$msgs0" "$msgs1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rnd, comp, ticks, hz = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
sent0, sent1, m0, m1 = (float(x) for x in sys.argv[6:10])
msgs = max(1.0, m1 - m0)
print(f"round {rnd}  compression {comp:3}  {d['messages_per_second']:9.0f} msg/s  "
      f"{ticks / hz * 1e6 / max(1, d['messages_received']):6.2f} us CPU/msg  "
      f"{(sent1 - sent0) / msgs:7.0f} B written/msg  mismatches {d['mismatches']}  errors {d['errors']}")
PY
  done
done
stop_server

idle_memory() {  # label extensions(python expr) [--set ...]
  local label=$1 extensions=$2
  shift 2
  port=$((21000 + RANDOM % 20000))
  start_server "$port" --set limits.max_connections=20000 "$@"
  taskset -c $CLIENT_CORE "$PY" - "$port" "$SERVER" "$IDLE" "$label" "$extensions" <<'PY'
import asyncio, sys, websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
port, pid, n, label, extensions = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]

def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

async def main():
    message = '{"user":"alice","event":"tick","values":[1,2,3,4,5,6,7,8]}' * 20
    before = rss()
    conns = []
    for i in range(n):
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws", ping_interval=None,
                                      compression=None, extensions=eval(extensions))
        await ws.send(message)
        assert await ws.recv() == message
        conns.append(ws)
    await asyncio.sleep(1)
    after = rss()
    agreed = conns[0].response_headers.get("Sec-WebSocket-Extensions")
    print(f"idle memory, {label}: {(after - before) / n:5.1f} KiB per connection "
          f"({n} connections, RSS {before} -> {after} KiB; agreed: {agreed})")
    for ws in conns:
        await ws.close()

asyncio.run(main())
PY
  stop_server
}

idle_memory "uncompressed" "[]"
idle_memory "compressed, window 15" "[ClientPerMessageDeflateFactory(client_max_window_bits=True)]"
idle_memory "compressed, window 10" "[ClientPerMessageDeflateFactory(client_max_window_bits=True)]" \
  --set server.compression_window_bits=10
