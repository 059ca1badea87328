#!/usr/bin/env bash
# wsvisor benchmark suite: wsvisor against a raw Boost.Beast echo server (the ceiling of
# the stack it is built on), websocketpp, node ws and python websockets.
#
#   ./bench/run.sh                 full run (~20 min), writes bench/RESULTS.md and bench/plots/
#   QUICK=1 ./bench/run.sh         smoke pass (~3 min), writes bench/out/quick/ only
#
# Environment:
#   BENCH_DURATION   seconds per echo / connect measurement (5; QUICK: 1)
#   BENCH_WARMUP     seconds of echo load after every connection is up and before the
#                    measurement (wsload echo --warmup) (1)
#   BENCH_RUNS       measurements per figure, the median is reported (3; QUICK: 1)
#   BENCH_SERVERS    subset of "beast websocketpp node python wsvisor"
#   BENCH_PHASES     subset of "memory echo connect drain sweep"
#   BENCH_MEM_LEVELS idle connection levels for the memory phase ("1000 10000 19000")
#   BENCH_DRAIN_CONNECTIONS  connections held for the drain and sweep phases (10000)
#   BENCH_CONNECT_WORKERS    concurrent upgrade loops in the connect phase (16)
#   BENCH_PUBLISH=1  with QUICK=1: still write bench/RESULTS.md and bench/plots/
#   BENCH_PORT_BASE  first TCP port used (21300)
#   BENCH_MEM_SOFT90=0  skip the (one) memory run of wsvisor at its default soft watermark
#   BENCH_RAW=DIR    raw output directory (bench/out/raw); BENCH_REPORT=0: no report
#
# Everything runs on loopback. Each server runs on core 0 (taskset -c 0), the load client
# (build/wsload) on core 1. Raw JSON goes to bench/out/raw/ (git-ignored).
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT=$BENCH_DIR/out
RAW=${BENCH_RAW:-$OUT/raw}
LOGS=$OUT/logs
BIN=$OUT/bin
WSVISOR=${WSVISOR_BIN:-$ROOT/build/wsvisor}
WSLOAD=${WSLOAD_BIN:-$ROOT/build/wsload}
PY=/usr/bin/python3

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
  DURATION=${BENCH_DURATION:-1}
  RUNS=${BENCH_RUNS:-1}
  MEM_LEVELS=${BENCH_MEM_LEVELS:-"300 1000 2000"}
  DRAIN_N=${BENCH_DRAIN_CONNECTIONS:-1000}
  REPORT_DIR=$OUT/quick
  [[ ${BENCH_PUBLISH:-0} == 1 ]] && REPORT_DIR=$BENCH_DIR
else
  DURATION=${BENCH_DURATION:-5}
  RUNS=${BENCH_RUNS:-3}
  MEM_LEVELS=${BENCH_MEM_LEVELS:-"1000 10000 19000"}
  DRAIN_N=${BENCH_DRAIN_CONNECTIONS:-10000}
  REPORT_DIR=$BENCH_DIR
fi
SERVERS=${BENCH_SERVERS:-"beast websocketpp node python wsvisor"}
PHASES=${BENCH_PHASES:-"memory echo connect drain sweep"}
CONNECT_WORKERS=${BENCH_CONNECT_WORKERS:-16}
PORT_BASE=${BENCH_PORT_BASE:-21300}
ECHO_SIZES="64 4096"
ECHO_CONNECTIONS="100 1000"
ECHO_IN_FLIGHT="1 16"
ECHO_WARMUP=${BENCH_WARMUP:-1}
HB_PING=5s   # wsvisor heartbeat in the memory phase (pong_timeout the same)
HB_EXTRA=14  # seconds the top memory level is held on wsvisor so that heartbeats run

SERVER_CORE=0
CLIENT_CORE=1
STARTED=$(date +%s)

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
has_phase() { [[ " $PHASES " == *" $1 "* ]]; }

# --- processes we start; only these are ever signalled --------------------------------
declare -A SERVER_PID=() SERVER_PORT=()
HOLD_PIDS=()
cleanup() {
  local pid
  for pid in "${HOLD_PIDS[@]}" "${SERVER_PID[@]}"; do
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
  done
  sleep 0.3
  for pid in "${HOLD_PIDS[@]}" "${SERVER_PID[@]}"; do
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
  return 0
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# --- 1. packages ----------------------------------------------------------------------
ensure_packages() {
  local missing=() p
  for p in nodejs node-ws python3-websockets libwebsocketpp-dev gnuplot-nox libboost1.81-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  # A nodejs from another repository (e.g. NodeSource) satisfies node-ws as well.
  if [[ " ${missing[*]} " == *" nodejs "* ]] && command -v node >/dev/null; then
    missing=("${missing[@]/nodejs/}")
  fi
  missing=(${missing[@]+"${missing[@]}"})
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) == 0 ]]; then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
      >"$LOGS/apt.log" 2>&1 || {
      log "apt-get install failed, trying after apt-get update"
      apt-get update >>"$LOGS/apt.log" 2>&1
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
        >>"$LOGS/apt.log" 2>&1 || log "apt-get install failed (see $LOGS/apt.log)"
    }
  else
    log "missing packages (run as root to install them): ${missing[*]}"
  fi
}

# --- 2. builds ------------------------------------------------------------------------
build_peer() {  # name source extra-flags...
  local name=$1 src=$2
  shift 2
  if [[ -x $BIN/$name && $BIN/$name -nt $src ]]; then return 0; fi
  log "compiling $name"
  g++ -std=c++17 -O2 -DNDEBUG -o "$BIN/$name.tmp" "$src" -pthread "$@" >"$LOGS/build-$name.log" 2>&1 &&
    mv "$BIN/$name.tmp" "$BIN/$name"
}

build_all() {
  local pids=()
  build_peer beast_echo "$BENCH_DIR/servers/beast_echo.cpp" & pids+=($!)
  if [[ " $SERVERS " == *" websocketpp "* ]]; then
    build_peer websocketpp_echo "$BENCH_DIR/servers/websocketpp_echo.cpp" & pids+=($!)
  fi
  local p
  for p in "${pids[@]}"; do wait "$p"; done
  [[ -x $BIN/beast_echo ]] || { log "beast_echo failed to build: $LOGS/build-beast_echo.log"; exit 1; }
  if [[ ! -x $WSVISOR || ! -x $WSLOAD ]]; then
    log "building wsvisor and wsload in build/"
    cmake --build "$ROOT/build" --target wsvisor wsload -j2 >"$LOGS/build-wsvisor.log" 2>&1 || true
  fi
  [[ -x $WSLOAD ]] || { log "no $WSLOAD (run make build first)"; exit 1; }
  [[ -x $WSVISOR ]] || { log "no $WSVISOR: wsvisor is left out"; SERVERS=${SERVERS/wsvisor/}; }
}

# --- servers --------------------------------------------------------------------------
# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"  # WSVISOR_COMMON, wait_listening

server_command() {  # name port [wsvisor extra --set ...] -> CMD array
  local name=$1 port=$2
  shift 2
  case $name in
    beast) CMD=("$BIN/beast_echo" "$port" 1) ;;
    websocketpp) CMD=("$BIN/websocketpp_echo" "$port") ;;
    node) CMD=(node "$BENCH_DIR/servers/node_ws_echo.js" "$port") ;;
    python) CMD=("$PY" "$BENCH_DIR/servers/python_echo.py" "$port") ;;
    wsvisor) CMD=("$WSVISOR" --set "server.port=$port" "${WSVISOR_COMMON[@]}" "$@") ;;
    # The same at the default soft watermark (90 % of max_connections = 18,000): above it
    # a background moderate sweep pings every connection (memory phase only).
    wsvisor_soft90) CMD=("$WSVISOR" --set "server.port=$port" "${WSVISOR_COMMON[@]}" "$@") ;;
    # wsvisor with its default limits (accept_rate 2000/s, burst 4000, max_per_ip 1000,
    # max_connections 10000...): the connect rate an operator gets out of the box.
    wsvisor_defaults) CMD=("$WSVISOR" --set "server.port=$port" --set server.host=127.0.0.1
      --set server.io_threads=1 --set log.level=warn "$@") ;;
    *) log "unknown server $name"; return 1 ;;
  esac
}

start_server() {  # name port [extra] ; sets SERVER_PID[name]
  local name=$1 port=$2
  shift 2
  server_command "$name" "$port" "$@" || return 1
  NODE_PATH=/usr/share/nodejs WSVISOR_ADMIN_TOKEN=bench-admin-token \
    taskset -c $SERVER_CORE "${CMD[@]}" >>"$LOGS/$name-$port.log" 2>&1 &
  SERVER_PID[$name]=$!
  SERVER_PORT[$name]=$port
  if ! wait_listening "$port" "${SERVER_PID[$name]}"; then
    log "$name did not start listening on $port (see $LOGS/$name-$port.log)"
    kill -KILL "${SERVER_PID[$name]}" 2>/dev/null
    SERVER_PID[$name]=""
    return 1
  fi
}

stop_server() {  # name [signal]
  local name=$1 pid=${SERVER_PID[$1]:-}
  [[ -z $pid ]] && return 0
  kill -"${2:-TERM}" "$pid" 2>/dev/null
  local i
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid" 2>/dev/null; note "$name did not exit within 10 s of SIGTERM (killed)"; }
  wait "$pid" 2>/dev/null
  SERVER_PID[$name]=""
}

alive() { [[ -n ${SERVER_PID[$1]:-} ]] && kill -0 "${SERVER_PID[$1]}" 2>/dev/null; }
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
established() { ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l; }
note() { log "NOTE: $*"; printf '%s\n' "$*" >>"$RAW/notes.txt"; }
json_str() { printf '"%s"' "${1//\"/\\\"}"; }

client() { taskset -c $CLIENT_CORE "$WSLOAD" "$@"; }

port_of() {  # index -> a free port
  local p=$((PORT_BASE + $1))
  while ss -Hltn "sport = :$p" | grep -q .; do p=$((p + 50)); done
  echo "$p"
}

# --- hold helpers ---------------------------------------------------------------------
start_hold() {  # port connections jsonfile errfile [extra wsload args]
  local port=$1 n=$2 json=$3 err=$4
  shift 4
  # Not through the client function: $! must be wsload itself (taskset execs it) so that
  # SIGINT reaches it and it prints its JSON.
  taskset -c $CLIENT_CORE "$WSLOAD" hold --port "$port" --connections "$n" --duration 900 --grace 5 "$@" \
    >"$json" 2>"$err" &
  HOLD_PIDS+=($!)
  LAST_HOLD=$!
}

hold_progress() {  # errfile -> "open failed closed"
  sed -n 's/^wsload hold: \([0-9]*\) open, \([0-9]*\) failed, \([0-9]*\) closed.*/\1 \2 \3/p' "$1" | tail -1
}

wait_hold() {  # errfile target pid -> prints open count; waits until open+failed >= target or stall
  local err=$1 target=$2 pid=$3 last=-1 same=0 open=0 failed=0 closed=0 i
  for ((i = 0; i < 240; i++)); do  # 2 min at most
    sleep 0.5
    read -r open failed closed <<<"$(hold_progress "$err")"
    open=${open:-0} failed=${failed:-0}
    ((open + failed >= target)) && break
    kill -0 "$pid" 2>/dev/null || break
    if ((open + failed == last)); then
      ((++same >= 30)) && break  # no progress for 15 s
    else
      same=0 last=$((open + failed))
    fi
  done
  echo "$open"
}

hold_rate() { case $1 in python) echo 600 ;; node) echo 2000 ;; *) echo 5000 ;; esac; }

stop_holds() {
  local pid
  for pid in "${HOLD_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null; done
  for pid in "${HOLD_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  HOLD_PIDS=()
}

# --- phases ---------------------------------------------------------------------------
phase_memory() {
  local run name idx level prev port add open total base rss est fds src extra pid servers=$SERVERS
  [[ " $SERVERS " == *" wsvisor "* && ${BENCH_MEM_SOFT90:-1} == 1 ]] && servers="$SERVERS wsvisor_soft90"
  for ((run = 1; run <= RUNS; run++)); do
    for name in $servers; do
      # The soft-watermark variant shows a behaviour, not a figure: one run is enough.
      [[ $name == wsvisor_soft90 ]] && ((run > 1)) && continue
      port=$(port_of 20)
      extra=()
      # Heartbeats on; limits out of the way, the soft watermark too (except wsvisor_soft90).
      [[ $name == wsvisor* ]] && extra=(--set "janitor.ping_interval=$HB_PING" --set "janitor.pong_timeout=$HB_PING")
      [[ $name == wsvisor ]] && extra+=(--set limits.soft_connections=20000)
      start_server "$name" "$port" "${extra[@]}" || { note "memory: $name failed to start (run $run)"; continue; }
      pid=${SERVER_PID[$name]}
      sleep 1
      base=$(rss_kb "$pid")
      prev=0 idx=0 total=0
      local lines=$RAW/mem_${name}_r${run}.jsonl
      : >"$lines"
      for level in $MEM_LEVELS; do
        idx=$((idx + 1))
        add=$((level - prev))
        src=()
        # Past ~28k the ports of one source address run out; the top level also shows
        # that the client side is not the limit.
        ((idx == 3)) && src=(--source-addrs 127.0.0.1,127.0.0.2)
        # Paced below what each server accepts on this machine, with a generous client
        # handshake timeout: python websockets takes ~300 upgrades/s here and, flooded,
        # lets clients time out while their sockets still hold its descriptors.
        start_hold "$port" "$add" "$RAW/mem_${name}_r${run}_l${idx}.json" "$RAW/mem_${name}_r${run}_l${idx}.err" \
          --rate "$(hold_rate "$name")" --handshake-timeout 60 "${src[@]}"
        open=$(wait_hold "$RAW/mem_${name}_r${run}_l${idx}.err" "$add" "$LAST_HOLD")
        sleep 1
        total=0
        local e
        for e in "$RAW"/mem_"${name}"_r"${run}"_l*.err; do
          read -r o _ _ <<<"$(hold_progress "$e")"
          total=$((total + ${o:-0}))
        done
        if alive "$name"; then rss=$(rss_kb "$pid"); fds=$(fd_count "$pid"); else rss=0 fds=0; fi
        est=$(established "$port")
        printf '{"server":"%s","run":%d,"level":%d,"open":%d,"server_established":%d,"rss_kb":%d,"base_kb":%d,"fds":%d,"alive":%s,"heartbeat_hold_s":0}\n' \
          "$name" "$run" "$level" "$total" "$est" "$rss" "$base" "$fds" "$(alive "$name" && echo true || echo false)" >>"$lines"
        log "memory $name run $run: $total/$level open (server sees $est), RSS $((rss / 1024)) MiB (base $((base / 1024)) MiB), $fds fds"
        ((total < level)) && note "memory: $name run $run held $total of $level connections (server fds $fds, established $est)"
        alive "$name" || { note "memory: $name died at level $level (run $run)"; break; }
        prev=$level
      done
      if [[ $name == wsvisor* ]] && ((run == 1)) && alive "$name"; then
        # Heartbeats on: hold the top level through at least one ping + pong_timeout +
        # sweep, then count again.
        sleep "$HB_EXTRA"
        total=0
        for e in "$RAW"/mem_"${name}"_r"${run}"_l*.err; do
          read -r o _ _ <<<"$(hold_progress "$e")"
          total=$((total + ${o:-0}))
        done
        rss=$(rss_kb "$pid")
        printf '{"server":"%s","run":%d,"level":%d,"open":%d,"server_established":%d,"rss_kb":%d,"base_kb":%d,"fds":%d,"alive":%s,"heartbeat_hold_s":%d}\n' \
          "$name" "$run" "$prev" "$total" "$(established "$port")" "$rss" "$base" "$(fd_count "$pid")" \
          "$(alive "$name" && echo true || echo false)" "$HB_EXTRA" >>"$lines"
        log "memory $name run $run: $total open after ${HB_EXTRA}s more with ping_interval=$HB_PING"
      fi
      stop_holds
      stop_server "$name"
    done
  done
}

start_all_servers() {
  local i=0 name
  for name in $SERVERS; do
    i=$((i + 1))
    start_server "$name" "$(port_of "$i")" --set janitor.ping_interval=1h ||
      note "$name failed to start for the echo/connect phases"
  done
}

ensure_alive() {  # name: restart a server that died, noting it
  alive "$1" && return 0
  note "$1 was not running before a measurement: restarted"
  start_server "$1" "${SERVER_PORT[$1]}" --set janitor.ping_interval=1h
}

phase_echo() {
  local run size conns k name f cfg=0 rc
  for ((run = 1; run <= RUNS; run++)); do
    for size in $ECHO_SIZES; do
      for conns in $ECHO_CONNECTIONS; do
        for k in $ECHO_IN_FLIGHT; do
          cfg=$((cfg + 1))
          for name in $(rotate "$SERVERS" "$cfg"); do
            ensure_alive "$name" || continue
            f=$RAW/echo_${name}_${size}_${conns}_${k}_r${run}.json
            # wsload measures its rate and latencies only in its window: from the moment
            # every connection is up (python needs seconds for 1,000 upgrades) plus
            # --warmup, for --duration; the run lasts ramp + warm-up + duration.
            client echo --port "${SERVER_PORT[$name]}" --connections "$conns" --size "$size" \
              --in-flight "$k" --warmup "$ECHO_WARMUP" --duration "$DURATION" --grace 2 \
              >"$f" 2>"${f%.json}.err"
            rc=$?
            ((rc != 0)) && note "echo $name ${size}B ${conns}c k=$k run $run: wsload exit $rc"
            log "echo $name ${size}B ${conns}c k=$k run $run: $(jq -r '"\(.messages_per_second|floor) msg/s (window after a \(.window.ramp_s*100|round/100) s ramp, all connected: \(.window.all_connected)), errors \(.error_count), failed \(.connections_failed)"' "$f" 2>/dev/null)"
          done
        done
      done
    done
  done
}

phase_connect() {
  local run name f rc names=$SERVERS
  if [[ " $SERVERS " == *" wsvisor "* ]]; then
    if start_server wsvisor_defaults "$(port_of 9)" --set janitor.ping_interval=1h; then
      names="$names wsvisor_defaults"
    else
      note "wsvisor_defaults failed to start for the connect phase"
    fi
  fi
  for ((run = 1; run <= RUNS; run++)); do
    for name in $(rotate "$names" "$run"); do
      ensure_alive "$name" || continue
      f=$RAW/connect_${name}_r${run}.json
      client connect --port "${SERVER_PORT[$name]}" --connections "$CONNECT_WORKERS" \
        --duration "$DURATION" --grace 5 --quiet >"$f" 2>"${f%.json}.err"
      rc=$?
      ((rc != 0)) && note "connect $name run $run: wsload exit $rc"
      log "connect $name run $run: $(jq -r '"\(.upgrades_per_second|floor) upgrades/s, errors \(.error_count), refusals \(.refusals)"' "$f" 2>/dev/null)"
      sleep 1
    done
  done
  stop_server wsvisor_defaults
}

phase_drain() {
  local run variant spread port open t0 t1 rc pid f
  for ((run = 1; run <= RUNS; run++)); do
    for variant in default nospread; do
      spread=2s
      [[ $variant == nospread ]] && spread=0s
      port=$(port_of 30)
      start_server wsvisor "$port" --set janitor.ping_interval=1h --set "shutdown.drain_spread=$spread" ||
        { note "drain: wsvisor failed to start"; continue; }
      pid=${SERVER_PID[wsvisor]}
      f=$RAW/drain_${variant}_r${run}
      start_hold "$port" "$DRAIN_N" "$f.hold.json" "$f.hold.err" --rate 5000
      open=$(wait_hold "$f.hold.err" "$DRAIN_N" "$LAST_HOLD")
      sleep 1
      t0=$(date +%s.%N)
      kill -TERM "$pid"
      local i
      for ((i = 0; i < 3000; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.01; done
      t1=$(date +%s.%N)
      if kill -0 "$pid" 2>/dev/null; then
        note "drain ($variant) run $run: wsvisor still running 30 s after SIGTERM (killed)"
        kill -KILL "$pid"
      fi
      wait "$pid"
      rc=$?
      SERVER_PID[wsvisor]=""
      sleep 0.5
      stop_holds
      printf '{"variant":"%s","drain_spread":"%s","run":%d,"connections":%d,"seconds":%.3f,"exit_code":%d}\n' \
        "$variant" "$spread" "$run" "$open" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" "$rc" >"$f.json"
      log "drain ($variant, spread $spread) run $run: $open connections, $(jq -r .seconds "$f.json") s, exit $rc"
    done
  done
}

metric() {  # port name -> value (sum over label sets)
  curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 {s += $2} END {printf "%.6f", s + 0}'
}

phase_sweep() {
  local run port open pid f c0 s0 e0 c1 s1 e1 code body
  for ((run = 1; run <= RUNS; run++)); do
    port=$(port_of 40)
    # Full at DRAIN_N, no background sweep below it, no periodic sweeps in the histogram.
    start_server wsvisor "$port" --set "limits.max_connections=$DRAIN_N" \
      --set "limits.soft_connections=$DRAIN_N" --set janitor.ping_interval=1h \
      --set janitor.sweep_interval=1h || { note "sweep: wsvisor failed to start"; continue; }
    pid=${SERVER_PID[wsvisor]}
    f=$RAW/sweep_r${run}
    start_hold "$port" "$DRAIN_N" "$f.hold.json" "$f.hold.err" --rate 5000
    open=$(wait_hold "$f.hold.err" "$DRAIN_N" "$LAST_HOLD")
    sleep 1
    c0=$(metric "$port" wsvisor_sweep_duration_seconds_count)
    s0=$(metric "$port" wsvisor_sweep_duration_seconds_sum)
    e0=$(metric "$port" 'wsvisor_sweeps_total{kind="emergency"}')
    # One more upgrade at the cap: the guard asks for an emergency (moderate) sweep, which
    # pings every connection; all answer, nothing is freed, the upgrade gets 503.
    client connect --port "$port" --connections 1 --count 1 --duration 10 --grace 2 --quiet \
      >"$f.connect.json" 2>"$f.connect.err"
    sleep 0.5
    c1=$(metric "$port" wsvisor_sweep_duration_seconds_count)
    s1=$(metric "$port" wsvisor_sweep_duration_seconds_sum)
    e1=$(metric "$port" 'wsvisor_sweeps_total{kind="emergency"}')
    # Admin sweep, when the admin API exists.
    code=$(curl -s -o "$f.admin.body" -w '%{http_code}' --max-time 30 -X POST \
      -H 'Authorization: Bearer bench-admin-token' "http://127.0.0.1:$port/admin/sweep?level=moderate")
    body=$(tr -d '\n' <"$f.admin.body" 2>/dev/null)
    [[ $code == 200 ]] || body=null
    printf '{"run":%d,"connections":%d,"sweeps_before":%s,"sweeps_after":%s,"emergency_before":%s,"emergency_after":%s,"duration_sum_before":%s,"duration_sum_after":%s,"admin_status":%s,"admin":%s}\n' \
      "$run" "$open" "$c0" "$c1" "$e0" "$e1" "$s0" "$s1" "${code:-0}" "${body:-null}" >"$f.json"
    log "sweep run $run: $open held, emergency sweeps $e0 -> $e1, histogram sum $s0 -> $s1 s, admin sweep HTTP $code"
    stop_holds
    stop_server wsvisor
  done
}

# --- main -----------------------------------------------------------------------------
mkdir -p "$OUT" "$BIN" "$LOGS"
rm -rf "$RAW"
mkdir -p "$RAW"
: >"$RAW/notes.txt"
ensure_packages
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log "open files limit: $(ulimit -n) (hard $(ulimit -Hn))"
build_all
for t in node jq curl gnuplot; do command -v $t >/dev/null || log "missing tool: $t"; done

cat >"$RAW/meta.json" <<EOF
{"command": $(json_str "$([[ $QUICK == 1 ]] && echo "QUICK=1 ")BENCH_DURATION=$DURATION BENCH_WARMUP=$ECHO_WARMUP BENCH_RUNS=$RUNS ./bench/run.sh"),
 "started": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "quick": $QUICK, "duration_s": $DURATION, "runs": $RUNS, "echo_warmup_s": $ECHO_WARMUP,
 "servers": $(json_str "$SERVERS"), "phases": $(json_str "$PHASES"),
 "mem_levels": $(json_str "$MEM_LEVELS"), "drain_connections": $DRAIN_N,
 "connect_workers": $CONNECT_WORKERS, "heartbeat_ping": $(json_str "$HB_PING"), "heartbeat_extra_s": $HB_EXTRA,
 "loadavg_start": $(json_str "$(cut -d' ' -f1-3 /proc/loadavg)"), "open_files_limit": $(ulimit -n),
 "wsvisor_version": $(json_str "$("$WSVISOR" --version 2>/dev/null)"),
 "git": $(json_str "$(git -C "$ROOT" describe --always --dirty 2>/dev/null)"),
 "node": $(json_str "$(node --version 2>/dev/null)"),
 "node_ws": $(json_str "$(node -p "require('/usr/share/nodejs/ws/package.json').version" 2>/dev/null)"),
 "python_websockets": $(json_str "$($PY -c 'import websockets; print(websockets.__version__)' 2>/dev/null)")}
EOF

has_phase memory && { log "phase: memory (idle connections $MEM_LEVELS)"; phase_memory; }
if has_phase echo || has_phase connect; then
  start_all_servers
  has_phase echo && { log "phase: echo"; phase_echo; }
  has_phase connect && { log "phase: connect"; phase_connect; }
  for name in $SERVERS; do stop_server "$name"; done
fi
if [[ " $SERVERS " == *" wsvisor "* ]]; then
  has_phase drain && { log "phase: drain ($DRAIN_N connections)"; phase_drain; }
  has_phase sweep && { log "phase: sweep ($DRAIN_N connections)"; phase_sweep; }
fi

printf '{"loadavg_end": %s, "elapsed_s": %d}\n' "$(json_str "$(cut -d' ' -f1-3 /proc/loadavg)")" \
  $(($(date +%s) - STARTED)) >"$RAW/meta_end.json"
[[ ${BENCH_REPORT:-1} == 1 ]] || { log "raw results in $RAW (no report: BENCH_REPORT=0)"; exit 0; }
mkdir -p "$REPORT_DIR/plots"
"$PY" "$BENCH_DIR/report.py" --raw "$RAW" --results "$REPORT_DIR/RESULTS.md" --plots "$REPORT_DIR/plots" \
  --work "$OUT/plotdata" || { log "report failed"; exit 1; }
log "done in $(($(date +%s) - STARTED)) s: $REPORT_DIR/RESULTS.md, $REPORT_DIR/plots/"
