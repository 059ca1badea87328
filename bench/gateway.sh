#!/usr/bin/env bash
# Gateway mode benchmarks (issue 13): wsvisor with app.mode = gateway against itself in
# echo mode, in one run, interleaved.
#
#   bench/gateway.sh                     full run (~5 min, plus ~1 min compiling the peers once)
#   GW_RUNS=1 GW_DURATION=2 bench/gateway.sh   smoke pass (~2 min)
#
# What it measures (loopback only; wsvisor on core 0, everything else on core 1):
#   echo    round trips through a fast backend. bench/servers/fast_backend.cpp (one
#           thread, epoll, keep-alive; its message hook answers 200 with the request body)
#           on core 1, `wsload echo` on core 1, against three wsvisor processes started
#           side by side: echo mode, gateway mode with defaults, and gateway mode with
#           upstream.max_inflight = 32 (see RESULTS.md: the upstream client keeps at most
#           32 idle keep-alive connections, so more concurrent requests than that open and
#           close a TCP connection each). Workloads GW_ECHO_WORKLOADS, each server GW_RUNS
#           times, rotated run by run. Per measurement: msg/s in wsload's window and the
#           wsvisor process's CPU time (utime + stime from /proc/PID/stat, sampled when
#           wsload opens and after it closes its window) divided by the window's echoes.
#   send    /api/send deliveries: bench/servers/gw_push.cpp (one process, one thread, on
#           core 1) holds WebSocket connections as users (auth.mode = header, X-User-Id)
#           and counts the frames they receive, while GW_SENDERS keep-alive connections
#           POST /api/send with X-API-Key, one request outstanding each, as fast as the
#           answers come. Cases: one user with 3 connections ({"user"}); 1,000 users of one
#           connection each, one user per send, round robin ({"user"}); the same 1,000
#           addressed by one {"users":[1,000 names]} per send. Reported: sends/s,
#           deliveries/s (frames received per second), the push client's own CPU share of
#           core 1 (near 1.0: the load side is the bottleneck) and wsvisor's of core 0.
#   memory  idle memory per connection at GW_MEM_N connections, heartbeats on (ping every
#           5 s, pong_timeout 5 s, held GW_MEM_HOLD s so that pings run): (RSS with N held
#           - RSS with 0) / N, echo mode and gateway mode (upstream.url set, no connect
#           hook), GW_MEM_RUNS times each, alternating.
#
# Environment: GW_PHASES ("echo send memory"), GW_RUNS (3), GW_DURATION (5 s per window),
# GW_WARMUP (1 s), GW_ECHO_WORKLOADS ("64:1:100 64:16:100" = SIZE:IN_FLIGHT:CONNECTIONS),
# GW_SENDERS (16), GW_MEM_N (10000), GW_MEM_RUNS (2), GW_MEM_HOLD (12 s),
# GW_PERF=1 (a `perf record` of one gateway 64:1:100 run; top symbols to the out dir),
# GW_PORT_BASE (23300), GW_OUT (bench/out/gateway), WSVISOR_BIN / WSLOAD_BIN
# (build/wsvisor, build/wsload). Raw JSON lines and a Markdown summary go to GW_OUT.
# Every process it starts is stopped on exit (by pid); every wait is bounded.
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
WSVISOR=${WSVISOR_BIN:-$ROOT/build/wsvisor}
WSLOAD=${WSLOAD_BIN:-$ROOT/build/wsload}
OUT=${GW_OUT:-$BENCH_DIR/out/gateway}
BIN=$BENCH_DIR/out/bin
PY=/usr/bin/python3
PHASES=${GW_PHASES:-"echo send memory"}
RUNS=${GW_RUNS:-3}
DURATION=${GW_DURATION:-5}
WARMUP=${GW_WARMUP:-1}
ECHO_WORKLOADS=${GW_ECHO_WORKLOADS:-"64:1:100 64:16:100"}
SENDERS=${GW_SENDERS:-16}
MEM_N=${GW_MEM_N:-10000}
MEM_RUNS=${GW_MEM_RUNS:-2}
MEM_HOLD=${GW_MEM_HOLD:-12}
PORT_BASE=${GW_PORT_BASE:-23300}
API_KEY=bench-gateway-api-key-0123456789
STARTED=$(date +%s)

# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"  # WSVISOR_COMMON, *_CORE, HZ, PIDS, stop_pid, free_port, ...

log() { printf '[gateway %s] %s\n' "$(date +%T)" "$*" >&2; }
has_phase() { [[ " $PHASES " == *" $1 "* ]]; }

stop_pids_on_exit  # only what goes into PIDS is ever signalled

# Nanoseconds the process's threads waited on a run queue (runnable, not running): how
# much another process on the server's core took from it during a window.
run_wait_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $2} END {printf "%d", s}'; }

# --- builds ---------------------------------------------------------------------------
build_peer() {  # name source
  local name=$1 src=$2
  [[ -x $BIN/$name && $BIN/$name -nt $src ]] && return 0
  log "compiling $name"
  g++ -std=c++17 -O2 -DNDEBUG -o "$BIN/$name.tmp" "$src" -pthread >"$OUT/build-$name.log" 2>&1 &&
    mv "$BIN/$name.tmp" "$BIN/$name"
}

mkdir -p "$OUT" "$BIN"
raise_open_files
[[ -x $WSVISOR && -x $WSLOAD ]] || { log "no $WSVISOR or $WSLOAD (make build first)"; exit 2; }
command -v taskset >/dev/null || { log "taskset is missing (util-linux)"; exit 2; }
build_peer fast_backend "$BENCH_DIR/servers/fast_backend.cpp" & b1=$!
build_peer gw_push "$BENCH_DIR/servers/gw_push.cpp" & b2=$!
wait $b1; wait $b2
[[ -x $BIN/fast_backend && -x $BIN/gw_push ]] || { log "a peer failed to build: see $OUT/build-*.log"; exit 1; }

# --- servers --------------------------------------------------------------------------
BACKEND_PORT=""
start_backend() {
  BACKEND_PORT=$(free_port 0)
  taskset -c $CLIENT_CORE "$BIN/fast_backend" "$BACKEND_PORT" >>"$OUT/fast_backend.log" 2>&1 &
  BACKEND_PID=$!
  PIDS+=("$BACKEND_PID")
  wait_listening "$BACKEND_PORT" "$BACKEND_PID" || { log "fast_backend did not listen"; exit 1; }
}

declare -A SRV_PID=() SRV_PORT=()
start_wsvisor() {  # name port-index extra --set...
  local name=$1 port
  port=$(free_port "$2")
  shift 2
  WSVISOR_API_KEY=$API_KEY WSVISOR_ADMIN_TOKEN=bench-admin-token \
    taskset -c $SERVER_CORE "$WSVISOR" --set "server.port=$port" "${WSVISOR_COMMON[@]}" \
    --set limits.soft_connections=20000 "$@" >>"$OUT/wsvisor-$name.log" 2>&1 &
  SRV_PID[$name]=$!
  SRV_PORT[$name]=$port
  PIDS+=("$!")
  wait_listening "$port" "$!" || { log "wsvisor $name did not listen (see $OUT/wsvisor-$name.log)"; return 1; }
}
stop_wsvisor() { [[ -n ${SRV_PID[$1]:-} ]] && stop_pid "${SRV_PID[$1]}"; SRV_PID[$1]=""; }

gateway_sets() { echo "--set app.mode=gateway --set upstream.url=http://127.0.0.1:$BACKEND_PORT"; }

# --- phase echo -----------------------------------------------------------------------
phase_echo() {
  local lines=$OUT/echo.jsonl run w size k conns name port pid err json t0 t1 wl
  : >"$lines"
  start_wsvisor echo 1 --set janitor.ping_interval=1h || return
  # shellcheck disable=SC2046
  start_wsvisor gateway 2 --set janitor.ping_interval=1h $(gateway_sets) || return
  # shellcheck disable=SC2046
  start_wsvisor gateway_inflight32 3 --set janitor.ping_interval=1h $(gateway_sets) \
    --set upstream.max_inflight=32 || return
  for ((run = 1; run <= RUNS; run++)); do
    for wl in $ECHO_WORKLOADS; do
      IFS=: read -r size k conns <<<"$wl"
      for name in $(rotate "echo gateway gateway_inflight32" $((run - 1))); do
        pid=${SRV_PID[$name]} port=${SRV_PORT[$name]}
        kill -0 "$pid" 2>/dev/null || { log "NOTE: wsvisor $name is not running"; continue; }
        err=$OUT/echo_${name}_${size}_${k}_${conns}_r$run.err
        json=$OUT/echo_${name}_${size}_${k}_${conns}_r$run.json
        taskset -c $CLIENT_CORE "$WSLOAD" echo --port "$port" --size "$size" --in-flight "$k" \
          --connections "$conns" --duration "$DURATION" --warmup "$WARMUP" >"$json" 2>"$err" &
        local cpid=$!
        PIDS+=("$cpid")
        t0="" t1=""
        if wait_line "$err" "measuring from" "$cpid"; then
          t0=$(cpu_ticks "$pid") q0=$(run_wait_ns "$pid")
          sleep "$DURATION"
          t1=$(cpu_ticks "$pid") q1=$(run_wait_ns "$pid")
        fi
        wait "$cpid"
        [[ -n $t0 ]] || { log "NOTE: echo $name $wl run $run: no measuring window"; continue; }
        "$PY" - "$json" "$name" "$size" "$k" "$conns" "$run" "$((t1 - t0))" "$HZ" "$DURATION" "$((q1 - q0))" >>"$lines" <<'EOF'
import json, sys
f, name, size, k, conns, run, ticks, hz, dur, qns = sys.argv[1:]
d = json.load(open(f))
w = d.get("window", {})
m = w.get("messages_received", 0)
cpu = int(ticks) / int(hz)
print(json.dumps({"server": name, "size": int(size), "in_flight": int(k), "connections": int(conns),
                  "run": int(run), "msg_per_s": d.get("messages_per_second", 0), "window_messages": m,
                  "server_cpu_s": cpu, "cpu_us_per_msg": cpu * 1e6 / max(1, m),
                  "server_cpu_share": cpu / float(dur), "server_run_wait_share": int(qns) / 1e9 / float(dur),
                  "p50_us": d.get("latency_us", {}).get("p50"),
                  "p99_us": d.get("latency_us", {}).get("p99"), "connections_ok": d.get("connections_ok"),
                  "errors": d.get("error_count", 0), "refusals": d.get("refusals"),
                  "mismatches": d.get("mismatches"), "hard_deadline_hit": d.get("hard_deadline_hit")}))
EOF
        log "echo $name $wl run $run: $(show "$lines" '%(msg_per_s).0f msg/s, %(cpu_us_per_msg).1f us CPU/msg, server %(server_cpu_share).2f of a core (waited %(server_run_wait_share).2f)')"
      done
    done
  done
  if [[ ${GW_PERF:-0} == 1 ]] && command -v perf >/dev/null; then
    local gpid=${SRV_PID[gateway_inflight32]}
    taskset -c $CLIENT_CORE "$WSLOAD" echo --port "${SRV_PORT[gateway_inflight32]}" --size 64 --in-flight 1 \
      --connections 100 --duration 5 --warmup 1 >/dev/null 2>"$OUT/perf-client.err" &
    local cpid=$!
    PIDS+=("$cpid")
    if wait_line "$OUT/perf-client.err" "measuring from" "$cpid"; then
      perf record -g -p "$gpid" -o "$OUT/perf.data" -- sleep 3 >/dev/null 2>&1
      perf report -i "$OUT/perf.data" --no-children --sort dso -g none 2>/dev/null | grep -v '^#' | grep . | head -12 >"$OUT/perf-dso.txt"
      perf report -i "$OUT/perf.data" --children --sort sym -g none 2>/dev/null | grep -v '^#' | grep . | head -80 | cut -c1-240 >"$OUT/perf-children.txt"
      log "perf profile of gateway_inflight32: $OUT/perf-dso.txt, $OUT/perf-children.txt"
    fi
    wait "$cpid"
  fi
  stop_wsvisor echo; stop_wsvisor gateway; stop_wsvisor gateway_inflight32
}

# --- phase send -----------------------------------------------------------------------
phase_send() {
  local lines=$OUT/send.jsonl run c name pid port err json t0 t1 conns users target
  : >"$lines"
  # shellcheck disable=SC2046
  start_wsvisor send 4 --set janitor.ping_interval=1h $(gateway_sets) --set auth.mode=header || return
  pid=${SRV_PID[send]} port=${SRV_PORT[send]}
  for ((run = 1; run <= RUNS; run++)); do
    for c in "1user_3conns:3:1:user" "1000users_each:1000:1000:user" "1000users_list:1000:1000:users"; do
      IFS=: read -r name conns users target <<<"$c"
      err=$OUT/send_${name}_r$run.err json=$OUT/send_${name}_r$run.json
      taskset -c $CLIENT_CORE "$BIN/gw_push" --port "$port" --api-key "$API_KEY" --connections "$conns" \
        --users "$users" --target "$target" --senders "$SENDERS" --size 64 --warmup "$WARMUP" \
        --duration "$DURATION" >"$json" 2>"$err" &
      local cpid=$!
      PIDS+=("$cpid")
      t0="" t1=""
      if wait_line "$err" "window open" "$cpid"; then
        t0=$(cpu_ticks "$pid") q0=$(run_wait_ns "$pid") cq0=$(run_wait_ns "$cpid")
        wait_line "$err" "window closed" "$cpid" $(((DURATION + 5) * 50))
        t1=$(cpu_ticks "$pid") q1=$(run_wait_ns "$pid") cq1=$(run_wait_ns "$cpid")
      fi
      wait "$cpid"
      [[ -n $t0 && -s $json ]] || { log "NOTE: send $name run $run failed (see $err)"; continue; }
      "$PY" - "$json" "$name" "$run" "$((t1 - t0))" "$HZ" "$((q1 - q0))" "$((cq1 - cq0))" >>"$lines" <<'EOF'
import json, sys
f, name, run, ticks, hz, qns, cqns = sys.argv[1:]
d = json.load(open(f))
w = max(1e-9, d["window_s"])
d.update({"case": name, "run": int(run), "server_cpu_share": int(ticks) / int(hz) / w,
          "server_run_wait_share": int(qns) / 1e9 / w, "client_run_wait_share": int(cqns) / 1e9 / w})
print(json.dumps(d))
EOF
      log "send $name run $run: $(show "$lines" '%(sends_per_second).0f sends/s, %(deliveries_per_second).0f deliveries/s, client %(client_cpu_share).2f (waited %(client_run_wait_share).2f) / server %(server_cpu_share).2f of a core (waited %(server_run_wait_share).2f), %(sends_failed)d failed sends, %(frames_received)d frames of %(delivered_sum)d delivered')"
    done
  done
  stop_wsvisor send
}

# --- phase memory ---------------------------------------------------------------------
phase_memory() {
  local lines=$OUT/memory.jsonl run name pid port base rss err json open hpid i
  : >"$lines"
  for ((run = 1; run <= MEM_RUNS; run++)); do
    for name in $(rotate "echo gateway" $((run - 1))); do
      local extra=(--set janitor.ping_interval=5s --set janitor.pong_timeout=5s)
      # shellcheck disable=SC2046
      [[ $name == gateway ]] && extra+=($(gateway_sets))
      start_wsvisor "mem_$name" 5 "${extra[@]}" || continue
      pid=${SRV_PID[mem_$name]} port=${SRV_PORT[mem_$name]}
      sleep 1
      base=$(rss_kb "$pid")
      err=$OUT/mem_${name}_r$run.err json=$OUT/mem_${name}_r$run.json
      taskset -c $CLIENT_CORE "$WSLOAD" hold --port "$port" --connections "$MEM_N" --duration 300 --grace 5 \
        --rate 5000 --handshake-timeout 60 >"$json" 2>"$err" &
      hpid=$!
      PIDS+=("$hpid")
      open=0
      for ((i = 0; i < 120; i++)); do  # 60 s at most
        sleep 0.5
        open=$(sed -n 's/^wsload hold: \([0-9]*\) open.*/\1/p' "$err" | tail -1)
        open=${open:-0}
        ((open >= MEM_N)) && break
        kill -0 "$hpid" 2>/dev/null || break
      done
      sleep 1
      local rss_full
      rss_full=$(rss_kb "$pid")
      sleep "$MEM_HOLD"  # heartbeats run: at least two pings and a pong timeout
      rss=$(rss_kb "$pid")
      open=$(sed -n 's/^wsload hold: \([0-9]*\) open.*/\1/p' "$err" | tail -1)
      kill -INT "$hpid" 2>/dev/null
      wait "$hpid" 2>/dev/null
      printf '{"server":"%s","run":%d,"level":%d,"open":%d,"base_kb":%d,"rss_kb_at_level":%d,"rss_kb_after_hold":%d,"hold_s":%d,"kib_per_conn":%.2f}\n' \
        "$name" "$run" "$MEM_N" "${open:-0}" "$base" "$rss_full" "$rss" "$MEM_HOLD" \
        "$("$PY" -c "print(($rss - $base) / max(1, ${open:-0}))")" >>"$lines"
      log "memory $name run $run: ${open:-0}/$MEM_N open after ${MEM_HOLD}s of heartbeats, RSS $rss KiB (base $base KiB): $(tail -1 "$lines" | sed 's/.*"kib_per_conn":\([0-9.]*\).*/\1/') KiB per connection"
      stop_wsvisor "mem_$name"
    done
  done
}

# --- summary --------------------------------------------------------------------------
summarize() {
  summarize_jsonl "$OUT" <<'EOF'
med = lambda xs: statistics.median(xs) if xs else float("nan")
echo = load("echo.jsonl")
if echo:
    print("| workload | server | msg/s (median) | server CPU / msg (median) | server core share (run-queue wait) | p50 / p99 latency (ms) | runs |")
    print("|---|---|---:|---:|---:|---:|---:|")
    wls = sorted({(r["size"], r["in_flight"], r["connections"]) for r in echo}, key=lambda t: (t[1], t[2]))
    for wl in wls:
        base = None
        for name in ["echo", "gateway", "gateway_inflight32"]:
            rs = [r for r in echo if (r["size"], r["in_flight"], r["connections"]) == wl and r["server"] == name]
            if not rs: continue
            cpu = med([r["cpu_us_per_msg"] for r in rs])
            if name == "echo": base = cpu
            ratio = f" ({cpu / base:.1f}x echo)" if base and name != "echo" else ""
            print(f"| {wl[0]} B x {wl[1]} x {wl[2]} | {name} | {med([r['msg_per_s'] for r in rs]):,.0f} | "
                  f"{cpu:.1f} us{ratio} | {med([r['server_cpu_share'] for r in rs]):.2f} ({med([r.get('server_run_wait_share', 0) for r in rs]):.2f}) | "
                  f"{med([r['p50_us'] or 0 for r in rs]) / 1000:.1f} / {med([r['p99_us'] or 0 for r in rs]) / 1000:.1f} | {len(rs)} |")
    print()
send = load("send.jsonl")
if send:
    print("| case | sends/s (median) | deliveries/s (median) | push client core share (run-queue wait) | wsvisor core share (run-queue wait) | failed sends | runs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case in ["1user_3conns", "1000users_each", "1000users_list"]:
        rs = [r for r in send if r["case"] == case]
        if not rs: continue
        print(f"| {case} | {med([r['sends_per_second'] for r in rs]):,.0f} | {med([r['deliveries_per_second'] for r in rs]):,.0f} | "
              f"{med([r['client_cpu_share'] for r in rs]):.2f} ({med([r.get('client_run_wait_share', 0) for r in rs]):.2f}) | {med([r['server_cpu_share'] for r in rs]):.2f} ({med([r.get('server_run_wait_share', 0) for r in rs]):.2f}) | "
              f"{sum(r['sends_failed'] for r in rs)} | {len(rs)} |")
    print()
mem = load("memory.jsonl")
if mem:
    print("| server | connections held | base RSS (MiB) | RSS held (MiB) | KiB per connection (median) | runs |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in ["echo", "gateway"]:
        rs = [r for r in mem if r["server"] == name]
        if not rs: continue
        print(f"| {name} | {min(r['open'] for r in rs):,} | {med([r['base_kb'] for r in rs]) / 1024:.1f} | "
              f"{med([r['rss_kb_after_hold'] for r in rs]) / 1024:.1f} | {med([r['kib_per_conn'] for r in rs]):.2f} | {len(rs)} |")
EOF
}

log "phases: $PHASES; runs $RUNS, window ${DURATION}s after ${WARMUP}s warm-up; out: $OUT"
printf '{"started":"%s","command":"%s","nproc":%s,"cpu":"%s","loadavg_start":"%s","wsvisor":"%s","git":"%s"}\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "GW_RUNS=$RUNS GW_DURATION=$DURATION GW_PHASES='$PHASES' bench/gateway.sh" "$(nproc)" \
  "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$(cut -d' ' -f1-3 /proc/loadavg)" \
  "$("$WSVISOR" --version 2>/dev/null)" "$(git -C "$ROOT" describe --always --dirty 2>/dev/null)" >"$OUT/meta.json"
start_backend
has_phase echo && { log "phase: echo"; phase_echo; }
has_phase send && { log "phase: send"; phase_send; }
has_phase memory && { log "phase: memory ($MEM_N idle connections)"; phase_memory; }
stop_pid "$BACKEND_PID"
log "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); elapsed $(($(date +%s) - STARTED)) s"
summarize
