#!/usr/bin/env bash
# Hub mode fan-out benchmarks: wsvisor with app.mode = hub (Centrifugo's client protocol
# v2, JSON) against uWebSockets' own pub/sub (app.publish), side by side in one run.
#
#   bench/hub_fanout.sh                                   full run (~12 min)
#   HUB_PEERS=uws HUB_SUBSCRIBERS=100 HUB_RUNS=1 HUB_DURATION=3 HUB_MEM_N=100 \
#     HUB_MEM_HOLD=2 bench/hub_fanout.sh                  smoke pass (~1 min)
#
# Peers (each on core 0; every wsload on core 1; loopback only):
#   wsvisor  build/wsvisor --set app.mode=hub --set server.ws_path=/connection/websocket
#            --set hub.allow_anonymous=true --set hub.allow_subscribe_for_client=true
#            --set hub.allow_subscribe_for_anonymous=true (and
#            bench/common.sh's one I/O thread and limits), WSVISOR_API_KEY set. Subscribers
#            send Centrifugo's connect and subscribe commands; publications are POSTed to
#            /api/publish with X-API-Key over keep-alive HTTP/1.1.
#   uws      bench/servers/uws_pubsub.js on node, with the npm package HUB_UWS_PKG
#            installed into HUB_NODE_DIR (outside the repository) at run time. Every
#            connection is subscribed to topic "bench" when it opens; a publisher sends
#            each publication as a message on /pub, which the peer app.publish()es and
#            acknowledges. Its backpressure limit is 1 MiB with close on the limit, like
#            wsvisor's limits.send_queue_bytes and slow-consumer close.
#   What is and is not uWebSockets in npm: `uwebsockets` (3.0.6) is not published by
#   uWebSockets' authors; it is a third party's repackaging of uWebSockets.js' prebuilt
#   binaries (its API and loader are uWebSockets.js v20's; its version number is its
#   own). uWebSockets.js itself is only on GitHub. `@btc-vision/uwebsockets.js@20.57.0`
#   (a fork that states its uWS.js version) needs glibc 2.38, newer than this machine's;
#   `@trufflesuite/uws-js-unofficial@20.30.0-unofficial.0` loads here too (set
#   HUB_UWS_PKG to it to compare). The package and version used go into meta.json.
#
# What it measures:
#   fanout  HUB_SUBSCRIBERS subscribers of one channel ("bench") x publication data of
#           HUB_SIZES bytes x HUB_LOADS: `rate` publishes at HUB_STEADY_DELIVERIES /
#           subscribers publications per second (so every subscriber count gets the same
#           deliveries per second) with 4 publishers; `saturation` has HUB_SAT_IN_FLIGHT
#           publishers, one publication outstanding each, as fast as the answers come.
#           `wsload subscribe` ramps up (paced at 5,000 connections/s), the publisher
#           starts with the warm-up, and the subscriber measures for HUB_DURATION s after
#           HUB_WARMUP s. Per measurement: deliveries per second in the window, publish-to-
#           receive latency p50 / p99 (CLOCK_MONOTONIC "ts" in the data, written by
#           `wsload publish` just before sending), the delivered share (window deliveries
#           / (publications per second x subscribers x window), publications counted by
#           the server while the window runs), the server's CPU share of
#           core 0 and the two wsload processes' share of core 1 (near 1.0: the client
#           side is the limit, and the server's numbers are a lower bound), and what the
#           server closed. Latency includes the client's own queueing on core 1.
#   memory  RSS per idle connection at HUB_MEM_N connections subscribed to 0, 1 and 10
#           channels (HUB_MEM_CHANNELS; wsvisor: --channels K; uws: ?channels=K), each in
#           a fresh server process: (RSS after HUB_MEM_HOLD s - RSS before) / connections,
#           and per subscription above the 0-channel level. wsvisor pings every 5 s there
#           (janitor.ping_interval=5s), and wsload answers Centrifugo's {} pings.
#
# Environment: HUB_PHASES ("fanout memory"), HUB_PEERS ("wsvisor uws"), HUB_SUBSCRIBERS
# ("1000 10000"), HUB_SIZES ("64 1024"), HUB_LOADS ("rate saturation"),
# HUB_STEADY_DELIVERIES (100000), HUB_SAT_IN_FLIGHT (16), HUB_RUNS (3), HUB_DURATION (5),
# HUB_WARMUP (1), HUB_MEM_N (10000), HUB_MEM_CHANNELS ("0 1 10"), HUB_MEM_HOLD (12),
# HUB_MEM_RUNS (1), HUB_UWS_PKG (uwebsockets@3.0.6; NAME@VERSION), HUB_UWS_MODULE (the
# name to require, default HUB_UWS_PKG without its version), HUB_NODE_DIR
# (/tmp/wsvisor-bench-node), HUB_PORT_BASE (23500), HUB_OUT (bench/out/hub), WSVISOR_BIN /
# WSLOAD_BIN (build/wsvisor, build/wsload). Raw JSON lines and summary.md go to HUB_OUT.
# Every process it starts is stopped on exit (by pid); every wait is bounded.
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
WSVISOR=${WSVISOR_BIN:-$ROOT/build/wsvisor}
WSLOAD=${WSLOAD_BIN:-$ROOT/build/wsload}
OUT=${HUB_OUT:-$BENCH_DIR/out/hub}
PY=/usr/bin/python3
PHASES=${HUB_PHASES:-"fanout memory"}
PEERS=${HUB_PEERS:-"wsvisor uws"}
SUBSCRIBERS=${HUB_SUBSCRIBERS:-"1000 10000"}
SIZES=${HUB_SIZES:-"64 1024"}
LOADS=${HUB_LOADS:-"rate saturation"}
STEADY_DELIVERIES=${HUB_STEADY_DELIVERIES:-100000}
SAT_IN_FLIGHT=${HUB_SAT_IN_FLIGHT:-16}
RUNS=${HUB_RUNS:-3}
DURATION=${HUB_DURATION:-5}
WARMUP=${HUB_WARMUP:-1}
MEM_N=${HUB_MEM_N:-10000}
MEM_CHANNELS=${HUB_MEM_CHANNELS:-"0 1 10"}
MEM_HOLD=${HUB_MEM_HOLD:-12}
MEM_RUNS=${HUB_MEM_RUNS:-1}
UWS_PKG=${HUB_UWS_PKG:-uwebsockets@3.0.6}
UWS_MODULE=${HUB_UWS_MODULE:-${UWS_PKG%@*}}
NODE_DIR=${HUB_NODE_DIR:-/tmp/wsvisor-bench-node}
PORT_BASE=${HUB_PORT_BASE:-23500}
API_KEY=bench-hub-api-key-0123456789
CHANNEL=bench
CONNECT_RATE=5000
# 10,000 connections a run, several runs a minute: more source addresses than one so
# that TIME_WAIT never exhausts the ephemeral ports towards one server port.
SOURCE_ADDRS=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8
STARTED=$(date +%s)

# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"  # WSVISOR_COMMON, *_CORE, HZ, PIDS, stop_pid, free_port, ...

log() { printf '[hub %s] %s\n' "$(date +%T)" "$*" >&2; }
has_phase() { [[ " $PHASES " == *" $1 "* ]]; }

stop_pids_on_exit  # only what goes into PIDS is ever signalled

# --- the uWS peer's package, outside the repository ----------------------------------
install_uws() {
  if NODE_PATH=$NODE_DIR/node_modules node -e "require('$UWS_MODULE')" 2>/dev/null &&
    [[ $(node -p "require('$NODE_DIR/node_modules/$UWS_MODULE/package.json').version" 2>/dev/null) == "${UWS_PKG##*@}" ]]; then
    return 0
  fi
  log "installing $UWS_PKG into $NODE_DIR"
  mkdir -p "$NODE_DIR"
  # No install scripts: the package ships its binaries, nothing needs to run.
  timeout 600 npm install --prefix "$NODE_DIR" --no-audit --no-fund --ignore-scripts \
    --save-exact --loglevel=error "$UWS_PKG" >"$OUT/npm-install.log" 2>&1 ||
    { log "npm install $UWS_PKG failed (see $OUT/npm-install.log)"; return 1; }
  NODE_PATH=$NODE_DIR/node_modules node -e "require('$UWS_MODULE')" >>"$OUT/npm-install.log" 2>&1 ||
    { log "$UWS_MODULE does not load on this machine (see $OUT/npm-install.log)"; return 1; }
}

# --- servers --------------------------------------------------------------------------
declare -A SRV_PID=() SRV_PORT=()
start_server() {  # peer name port-index [extra --set for wsvisor...]
  local peer=$1 name=$2 port
  port=$(free_port "$3")
  shift 3
  if [[ $peer == wsvisor ]]; then
    WSVISOR_API_KEY=$API_KEY taskset -c $SERVER_CORE "$WSVISOR" --set "server.port=$port" \
      "${WSVISOR_COMMON[@]}" --set limits.soft_connections=20000 --set app.mode=hub \
      --set server.ws_path=/connection/websocket --set hub.allow_anonymous=true \
      --set hub.allow_subscribe_for_client=true --set hub.allow_subscribe_for_anonymous=true \
      "$@" >>"$OUT/server-$name.log" 2>&1 &
  else
    UWS_MODULE=$UWS_MODULE NODE_PATH=$NODE_DIR/node_modules taskset -c $SERVER_CORE \
      node "$BENCH_DIR/servers/uws_pubsub.js" "$port" >>"$OUT/server-$name.log" 2>&1 &
  fi
  SRV_PID[$name]=$!
  SRV_PORT[$name]=$port
  PIDS+=("$!")
  wait_listening "$port" "$!" || { log "$peer ($name) did not listen (see $OUT/server-$name.log)"; SRV_PID[$name]=""; return 1; }
}
stop_server() { [[ -n ${SRV_PID[$1]:-} ]] && stop_pid "${SRV_PID[$1]}"; SRV_PID[$1]=""; }

# Connections the server still holds (wsvisor: /health; uws: /stats), "" if it does not say.
server_connections() {  # peer port
  if [[ $1 == wsvisor ]]; then
    curl -s -m 2 "http://127.0.0.1:$2/health" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["connections"])' 2>/dev/null
  else
    curl -s -m 2 "http://127.0.0.1:$2/stats" | "$PY" -c 'import json, sys; d = json.load(sys.stdin); print(d["subscribers"] + d["publishers"])' 2>/dev/null
  fi
}
# Publications the server has made so far (wsvisor: wsvisor_publications_total in
# /metrics; uws: /stats), "" if it does not say.
server_publications() {  # peer port
  if [[ $1 == wsvisor ]]; then
    curl -s -m 2 "http://127.0.0.1:$2/metrics" | awk '/^wsvisor_publications_total/ {s += $NF; n++} END {if (n) printf "%d", s}'
  else
    curl -s -m 2 "http://127.0.0.1:$2/stats" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["publications"])' 2>/dev/null
  fi
}
wait_released() {  # peer port: at most 10 s for the server to let go of the last run
  local i n
  for ((i = 0; i < 50; i++)); do
    n=$(server_connections "$1" "$2")
    [[ -z $n || $n == 0 ]] && return 0
    sleep 0.2
  done
  log "NOTE: $1 still holds $n connections 10 s after the run"
}

# wsload's protocol flags for a peer: subscriber, then publisher.
sub_args() {  # peer port
  if [[ $1 == wsvisor ]]; then
    echo "--protocol centrifugo --port $2 --path /connection/websocket --channel $CHANNEL"
  else
    echo "--protocol uws --port $2 --path /"
  fi
}
pub_args() {  # peer port
  if [[ $1 == wsvisor ]]; then
    echo "--protocol centrifugo --port $2 --channel $CHANNEL"
  else
    echo "--protocol uws --port $2 --path /pub"
  fi
}

# --- phase fanout ---------------------------------------------------------------------
measure() {  # peer port subscribers size load run
  local peer=$1 port=$2 n=$3 size=$4 load=$5 run=$6 tag spid ppid t0 t1 p0 p1 w0 w1 n0 n1 pubdur
  local -a pub_load
  tag=${peer}_${n}_${size}_${load}_r$run
  if [[ $load == rate ]]; then
    pub_load=(--in-flight 4 --message-rate "$("$PY" -c "print(max(1.0, $STEADY_DELIVERIES / $n))")")
  else
    pub_load=(--in-flight "$SAT_IN_FLIGHT")
  fi
  # shellcheck disable=SC2046
  taskset -c $CLIENT_CORE "$WSLOAD" subscribe $(sub_args "$peer" "$port") --connections "$n" \
    --rate $CONNECT_RATE --source-addrs $SOURCE_ADDRS --warmup "$WARMUP" --duration "$DURATION" \
    >"$OUT/sub_$tag.json" 2>"$OUT/sub_$tag.err" &
  spid=$!
  PIDS+=("$spid")
  if ! wait_line "$OUT/sub_$tag.err" "warm-up" "$spid" $(((n / CONNECT_RATE + 40) * 50)); then
    log "NOTE: fanout $tag: the subscribers never finished their ramp (see $OUT/sub_$tag.err)"
    stop_pid "$spid"
    return
  fi
  pubdur=$("$PY" -c "print($WARMUP + $DURATION + 1)")
  # shellcheck disable=SC2046
  WSVISOR_API_KEY=$API_KEY taskset -c $CLIENT_CORE "$WSLOAD" publish $(pub_args "$peer" "$port") \
    --size "$size" "${pub_load[@]}" --duration "$pubdur" >"$OUT/pub_$tag.json" 2>"$OUT/pub_$tag.err" &
  ppid=$!
  PIDS+=("$ppid")
  # The server's and the publisher's CPU, and the server's count of publications, over
  # most of the window (the subscriber may be gone by its very end); the subscriber
  # reports its own CPU time in the window.
  t0="" t1="" n0="" n1=""
  if wait_line "$OUT/sub_$tag.err" "measuring from" "$spid" $(((${WARMUP%.*} + 5) * 50)); then
    w0=$(date +%s.%N) t0=$(cpu_ticks "${SRV_PID[$peer]}") p0=$(cpu_ticks "$ppid")
    n0=$(server_publications "$peer" "$port")
    sleep "$("$PY" -c "print(max(0.1, $DURATION - 0.2))")"
    n1=$(server_publications "$peer" "$port")
    w1=$(date +%s.%N) t1=$(cpu_ticks "${SRV_PID[$peer]}") p1=$(cpu_ticks "$ppid")
  fi
  wait "$spid"
  wait "$ppid"
  [[ -n $t0 && -s $OUT/sub_$tag.json && -s $OUT/pub_$tag.json ]] ||
    { log "NOTE: fanout $tag: no measurement (see $OUT/sub_$tag.err, $OUT/pub_$tag.err)"; return; }
  "$PY" - "$OUT/sub_$tag.json" "$OUT/pub_$tag.json" "$peer" "$n" "$size" "$load" "$run" \
    "$((t1 - t0))" "$((p1 - p0))" "$HZ" "$w0" "$w1" "$n0" "$n1" >>"$OUT/fanout.jsonl" <<'EOF'
import json, sys
sf, pf, peer, n, size, load, run, sticks, pticks, hz, w0, w1, n0, n1 = sys.argv[1:]
s, p = json.load(open(sf)), json.load(open(pf))
w = s.get("window", {})
secs = max(1e-9, w.get("seconds", 0))
wall = max(1e-9, float(w1) - float(w0))
lat = s.get("latency_us", {})
# Publications per second while the subscribers measured: the server's own count over
# the sampled span when it gives one, else the publisher's rate over its whole run.
server_rate = (int(n1) - int(n0)) / wall if n0.isdigit() and n1.isdigit() else None
pub_rate = server_rate if server_rate is not None else p.get("publications_per_second", 0)
expected = pub_rate * s.get("subscribed", 0) * secs
print(json.dumps({
    "peer": peer, "subscribers": int(n), "size": int(size), "load": load, "run": int(run),
    "subscribed": s.get("subscribed"), "deliveries_per_second": s.get("deliveries_per_second", 0),
    "window_deliveries": w.get("deliveries", 0), "window_s": w.get("seconds", 0),
    "p50_us": lat.get("p50"), "p99_us": lat.get("p99"), "max_us": lat.get("max"),
    "publications_per_second": pub_rate, "publications_counted_by": "server" if server_rate is not None else "publisher",
    "publisher_rate_whole_run": p.get("publications_per_second", 0),
    "delivered_share": round(w.get("deliveries", 0) / expected, 4) if expected > 0 else None,
    "server_cpu_share": int(sticks) / int(hz) / wall,
    "client_cpu_share": w.get("cpu_s", 0) / secs + int(pticks) / int(hz) / wall,
    "closed_by_server": s.get("closed_by_server"), "close_codes": s.get("close_codes"),
    "disconnect_pushes": s.get("disconnect_pushes"), "without_ts": s.get("deliveries_without_ts"),
    "sub_errors": s.get("error_count", 0), "pub_failed": p.get("publications_failed", 0),
    "pub_errors": p.get("error_count", 0), "api_errors": p.get("api_errors"),
    "publish_response_p99_us": p.get("response_latency_us", {}).get("p99"),
    "late": p.get("late"), "hard_deadline_hit": s.get("hard_deadline_hit") or p.get("hard_deadline_hit")}))
EOF
  log "fanout $tag: $(show "$OUT/fanout.jsonl" '%(deliveries_per_second).0f deliveries/s, p50 %(p50_us)s us, p99 %(p99_us)s us, %(publications_per_second).0f publications/s, delivered share %(delivered_share)s, server %(server_cpu_share).2f / client %(client_cpu_share).2f of a core, %(closed_by_server)s closed by the server')"
}

phase_fanout() {
  local peer run n size load live=()
  : >"$OUT/fanout.jsonl"
  for peer in $PEERS; do
    start_server "$peer" "$peer" 1 && live+=("$peer")
  done
  ((${#live[@]})) || { log "no peer is running: nothing to measure"; return; }
  for ((run = 1; run <= RUNS; run++)); do
    for n in $SUBSCRIBERS; do
      for size in $SIZES; do
        for load in $LOADS; do
          for peer in $(rotate "${live[*]}" $((run - 1))); do
            kill -0 "${SRV_PID[$peer]}" 2>/dev/null || { log "NOTE: $peer is not running"; continue; }
            measure "$peer" "${SRV_PORT[$peer]}" "$n" "$size" "$load" "$run"
            wait_released "$peer" "${SRV_PORT[$peer]}"
          done
        done
      done
    done
  done
  for peer in "${live[@]}"; do stop_server "$peer"; done
}

# --- phase memory ---------------------------------------------------------------------
phase_memory() {
  local run peer k pid port base rss rss_full tag hpid open
  local -a extra chan path
  : >"$OUT/memory.jsonl"
  for ((run = 1; run <= MEM_RUNS; run++)); do
    for peer in $(rotate "$PEERS" $((run - 1))); do
      for k in $MEM_CHANNELS; do
        tag=mem_${peer}_${k}_r$run
        extra=() chan=()
        if [[ $peer == wsvisor ]]; then
          extra=(--set janitor.ping_interval=5s --set janitor.pong_timeout=5s)
          chan=(--channels "$k")
        fi
        start_server "$peer" "$tag" 5 "${extra[@]}" || continue
        pid=${SRV_PID[$tag]} port=${SRV_PORT[$tag]}
        sleep 1
        base=$(rss_kb "$pid")
        path=()
        [[ $peer == uws ]] && path=(--path "/?channels=$k")
        # shellcheck disable=SC2046
        taskset -c $CLIENT_CORE "$WSLOAD" subscribe $(sub_args "$peer" "$port") "${path[@]}" \
          "${chan[@]}" --connections "$MEM_N" --rate $CONNECT_RATE --source-addrs $SOURCE_ADDRS \
          --handshake-timeout 30 --duration "$((MEM_HOLD + 30))" --grace 5 >"$OUT/$tag.json" 2>"$OUT/$tag.err" &
        hpid=$!
        PIDS+=("$hpid")
        wait_line "$OUT/$tag.err" "warm-up" "$hpid" $(((MEM_N / CONNECT_RATE + 100) * 50)) ||
          log "NOTE: memory $tag: the ramp did not end (see $OUT/$tag.err)"
        sleep 1
        rss_full=$(rss_kb "$pid")
        sleep "$MEM_HOLD"  # wsvisor's heartbeats run: at least two pings
        rss=$(rss_kb "$pid")
        open=$(sed -n 's/^wsload subscribe: [0-9]* open, \([0-9]*\) subscribed.*/\1/p' "$OUT/$tag.err" | tail -1)
        kill -INT "$hpid" 2>/dev/null
        wait "$hpid" 2>/dev/null
        printf '{"peer":"%s","run":%d,"channels":%d,"level":%d,"subscribed":%d,"base_kb":%d,"rss_kb_at_level":%d,"rss_kb_after_hold":%d,"hold_s":%s,"kib_per_conn":%.3f}\n' \
          "$peer" "$run" "$k" "$MEM_N" "${open:-0}" "$base" "$rss_full" "$rss" "$MEM_HOLD" \
          "$("$PY" -c "print(($rss - $base) / max(1, ${open:-0}))")" >>"$OUT/memory.jsonl"
        log "memory $peer $k channels run $run: $(show "$OUT/memory.jsonl" '%(subscribed)d/%(level)d subscribed, RSS %(rss_kb_after_hold)d KiB (base %(base_kb)d KiB): %(kib_per_conn).2f KiB per connection')"
        stop_server "$tag"
      done
    done
  done
}

# --- summary --------------------------------------------------------------------------
summarize() {
  summarize_jsonl "$OUT" <<'EOF'
def ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.2f}"
meta = load("meta.json")
if meta:
    print(f"uWS peer: npm {meta[0].get('uws_pkg')} (node {meta[0].get('node')}); wsvisor {meta[0].get('wsvisor') or '-'}; "
          f"git {meta[0].get('git')}; {meta[0].get('nproc')} cores, {meta[0].get('cpu')}\n")
fan = load("fanout.jsonl")
if fan:
    print("| subscribers | data | load | publications/s w / u | wsvisor deliveries/s | uWS deliveries/s | ratio | wsvisor p50 / p99 (ms) | uWS p50 / p99 (ms) | p99 ratio | delivered share w / u | server core w / u | client core w / u | closed by server w / u | runs |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    keys = sorted({(r["subscribers"], r["size"], r["load"]) for r in fan}, key=lambda k: (k[0], k[1], k[2] != "rate"))
    for key in keys:
        g = {p: [r for r in fan if (r["subscribers"], r["size"], r["load"]) == key and r["peer"] == p] for p in ("wsvisor", "uws")}
        m = {p: {f: med([r.get(f) for r in rs]) for f in ("publications_per_second", "deliveries_per_second", "p50_us", "p99_us", "delivered_share", "server_cpu_share", "client_cpu_share", "closed_by_server")} for p, rs in g.items()}
        w, u = m["wsvisor"], m["uws"]
        lat = lambda d: "-" if d["p50_us"] is None else f"{d['p50_us'] / 1000:.2f} / {d['p99_us'] / 1000:.2f}"
        print(f"| {key[0]:,} | {key[1]} B | {key[2]} | {num(w['publications_per_second'])} / {num(u['publications_per_second'])} | "
              f"{num(w['deliveries_per_second'])} | {num(u['deliveries_per_second'])} | "
              f"{ratio(w['deliveries_per_second'], u['deliveries_per_second'])} | {lat(w)} | {lat(u)} | {ratio(w['p99_us'], u['p99_us'])} | "
              f"{num(w['delivered_share'], '{:.3f}')} / {num(u['delivered_share'], '{:.3f}')} | "
              f"{num(w['server_cpu_share'], '{:.2f}')} / {num(u['server_cpu_share'], '{:.2f}')} | "
              f"{num(w['client_cpu_share'], '{:.2f}')} / {num(u['client_cpu_share'], '{:.2f}')} | "
              f"{num(w['closed_by_server'])} / {num(u['closed_by_server'])} | {len(g['wsvisor'])} / {len(g['uws'])} |")
    print("\nratio = wsvisor / uWS (deliveries: higher is better for wsvisor; p99: lower is). Saturation rows: "
          "publishers as fast as the answers come, so latency there is mostly queueing.\n")
mem = load("memory.jsonl")
if mem:
    print("| peer | channels | subscribed | base RSS (MiB) | RSS held (MiB) | KiB per connection | KiB per subscription above 0 channels | runs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for peer in ("wsvisor", "uws"):
        rs = [r for r in mem if r["peer"] == peer]
        zero = med([r["kib_per_conn"] for r in rs if r["channels"] == 0])
        for k in sorted({r["channels"] for r in rs}):
            ks = [r for r in rs if r["channels"] == k]
            kib = med([r["kib_per_conn"] for r in ks])
            extra = "-" if k == 0 or zero is None else f"{(kib - zero) / k:.3f}"
            print(f"| {peer} | {k} | {min(r['subscribed'] for r in ks):,} | {med([r['base_kb'] for r in ks]) / 1024:.1f} | "
                  f"{med([r['rss_kb_after_hold'] for r in ks]) / 1024:.1f} | {kib:.2f} | {extra} | {len(ks)} |")
EOF
}

mkdir -p "$OUT"
raise_open_files
[[ -x $WSLOAD ]] || { log "no $WSLOAD (cmake --build build --target wsload)"; exit 2; }
command -v taskset >/dev/null || { log "taskset is missing (util-linux)"; exit 2; }
command -v curl >/dev/null || { log "curl is missing"; exit 2; }
if [[ " $PEERS " == *" wsvisor "* && ! -x $WSVISOR ]]; then
  log "NOTE: no $WSVISOR: measuring without wsvisor"
  PEERS=${PEERS//wsvisor/}
fi
if [[ " $PEERS " == *" uws "* ]]; then
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    log "node and npm are needed for the uWS peer"
    exit 2
  fi
  install_uws || { log "NOTE: measuring without the uWS peer"; PEERS=${PEERS//uws/}; }
fi
PEERS=$(xargs <<<"$PEERS")
[[ -n $PEERS ]] || { log "no peer to measure"; exit 1; }

log "peers: $PEERS; phases: $PHASES; runs $RUNS, window ${DURATION}s after ${WARMUP}s warm-up; out: $OUT"
printf '{"started":"%s","command":"%s","nproc":%s,"cpu":"%s","loadavg_start":"%s","wsvisor":"%s","git":"%s","uws_pkg":"%s","uws_module":"%s","node":"%s"}\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "HUB_PEERS='$PEERS' HUB_SUBSCRIBERS='$SUBSCRIBERS' HUB_SIZES='$SIZES' HUB_LOADS='$LOADS' HUB_RUNS=$RUNS HUB_DURATION=$DURATION HUB_PHASES='$PHASES' bench/hub_fanout.sh" \
  "$(nproc)" "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$(cut -d' ' -f1-3 /proc/loadavg)" \
  "$("$WSVISOR" --version 2>/dev/null)" "$(git -C "$ROOT" describe --always --dirty 2>/dev/null)" \
  "$UWS_PKG" "$UWS_MODULE" "$(node --version 2>/dev/null)" >"$OUT/meta.json"
has_phase fanout && { log "phase: fanout"; phase_fanout; }
has_phase memory && { log "phase: memory ($MEM_N idle connections at ${MEM_CHANNELS// /, } channels)"; phase_memory; }
log "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); elapsed $(($(date +%s) - STARTED)) s"
summarize
