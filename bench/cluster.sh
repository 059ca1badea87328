#!/usr/bin/env bash
# Cluster mode benchmarks (issue 15): what cluster.mode = redis costs at admission, how many
# commands each operation sends to Redis, and /api/send across nodes against one node, in
# one run, side by side (cluster on and off interleaved, rotated run by run).
#
#   bench/cluster.sh                                     full run (~3 min)
#   CL_RUNS=1 CL_DURATION=2 CL_LAT_DURATION=1 CL_COUNT_UPGRADES=200 CL_COUNT_SENDS=100 \
#     bench/cluster.sh                                   smoke pass (~40 s)
#
# It starts its own redis-server (Debian's, --save '' --appendonly no, on a free port from
# CL_PORT_BASE or CL_REDIS_PORT) and wsvisor nodes (one io thread, limits out of the way as
# in bench/common.sh, janitor pings off), all pinned to core 0; every client
# (bench/cluster_load.py on /usr/bin/python3, `wsload`, redis-cli) runs on core 1.
# Loopback only. Each cluster (admission, one node, three nodes) has a key prefix of its
# own in the one Redis.
#
#   admission  upgrades per second, cluster on against off, on one node: with a user
#              (auth.mode = header, X-User-Id a new user per upgrade, or per CL_USERS_PER
#              upgrades, so never at max_per_user) and without (auth.mode = none).
#              `cluster_load.py connect`: CL_WORKERS loops of TCP connect, upgrade, close
#              frame, the server's close; CL_DURATION s after 0.5 s. 64 loops keep the node
#              busy with cluster mode on (core 0 near 1.0 with Redis) while with it off the
#              client's core is the limit (near 0.8): the off rates are lower bounds, and
#              CPU per upgrade is the steadier ratio. Per window: upgrades/s,
#              handshake latency p50 / p99 (connect to 101), the wsvisor node's and
#              redis-server's CPU time per upgrade (/proc/PID/stat) and the commands Redis
#              executed per upgrade (INFO stats, scripts' inner commands included).
#              CL_ADM_CASES also takes wsload_anon (`wsload connect`, no user) and
#              wsload_user1 (`wsload connect --header 'X-User-Id: one'`: one user, at most
#              CL_USER1_WORKERS of its connections at once, below max_per_user's 20, so
#              each claim reads the user's other entries): the project's own client as a
#              cross-check (its window is the whole run, CPU over the whole run).
#   commands   Redis commands per operation, counted in a `redis-cli MONITOR` capture
#              (cluster_load.py redis-count tells the scripts apart by their keys):
#              CL_COUNT_UPGRADES upgrades with a user and as many without (each counted
#              from the claim to the release, the connection's open and close included),
#              and CL_COUNT_SENDS /api/send {"user"} to a user with CL_PER_NODE
#              connections on each of CL_NODES nodes (HVALS, one PUBLISH per other node,
#              their "done" answers). Commands the nodes sent (by node) and those their
#              scripts ran inside Redis; leases and probes counted apart as background.
#   delivery   /api/send by user: CL_NODES nodes on one Redis (CL_PER_NODE connections of
#              the user on each, the API on the first) against one node holding all
#              CL_NODES x CL_PER_NODE, cluster on and off. `cluster_load.py send`:
#              saturation = CL_SENDERS keep-alive senders, one request outstanding each,
#              CL_DURATION s after CL_WARMUP s (sends/s, deliveries/s); paced = CL_SEND_RATE
#              sends/s for CL_LAT_DURATION s (latency from just before the request is
#              written to the frame's arrival, on the API's node ("same") and on the others
#              ("other"); the API's answer time). The client (one Python process) also
#              queues: see its core share.
#
# Environment: CL_PHASES ("admission commands delivery"), CL_RUNS (3), CL_DURATION (5 s),
# CL_WARMUP (1 s), CL_WORKERS (64), CL_USER1_WORKERS (16), CL_USERS_PER (1 = a user per upgrade), CL_ADM_CASES
# ("user anon"; also wsload_anon wsload_user1), CL_COUNT_UPGRADES (1000),
# CL_COUNT_SENDS (500), CL_NODES (3), CL_PER_NODE (10), CL_SENDERS (8), CL_SEND_RATE (200),
# CL_LAT_DURATION (3 s), CL_SEND_SETUPS ("single_off single multi"), CL_PORT_BASE (23700),
# CL_REDIS_PORT (a free one from the base), CL_OUT (bench/out/cluster), WSVISOR_BIN /
# WSLOAD_BIN (build/wsvisor, build/wsload). Raw JSON lines, the servers' logs, the MONITOR
# captures and summary.md go to CL_OUT. Every process it starts is stopped on exit (by
# pid); every wait is bounded.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
WSVISOR=${WSVISOR_BIN:-$ROOT/build/wsvisor}
WSLOAD=${WSLOAD_BIN:-$ROOT/build/wsload}
OUT=${CL_OUT:-$BENCH_DIR/out/cluster}
PY=/usr/bin/python3
LOAD="$BENCH_DIR/cluster_load.py"
PHASES=${CL_PHASES:-"admission commands delivery"}
RUNS=${CL_RUNS:-3}
DURATION=${CL_DURATION:-5}
WARMUP=${CL_WARMUP:-1}
WORKERS=${CL_WORKERS:-64}
USER1_WORKERS=${CL_USER1_WORKERS:-16}
USERS_PER=${CL_USERS_PER:-1}
ADM_CASES=${CL_ADM_CASES:-"user anon"}
COUNT_UPGRADES=${CL_COUNT_UPGRADES:-1000}
COUNT_SENDS=${CL_COUNT_SENDS:-500}
NODES=${CL_NODES:-3}
PER_NODE=${CL_PER_NODE:-10}
SENDERS=${CL_SENDERS:-8}
SEND_RATE=${CL_SEND_RATE:-200}
LAT_DURATION=${CL_LAT_DURATION:-3}
SEND_SETUPS=${CL_SEND_SETUPS:-"single_off single multi"}
PORT_BASE=${CL_PORT_BASE:-23700}
API_KEY=bench-cluster-api-key-0123456789
SOURCE_ADDRS=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8
STARTED=$(date +%s)

# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"  # WSVISOR_COMMON, *_CORE, HZ, PIDS, stop_pid, free_port, ...

log() { printf '[cluster %s] %s\n' "$(date +%T)" "$*" >&2; }
has_phase() { [[ " $PHASES " == *" $1 "* ]]; }

stop_pids_on_exit  # only what goes into PIDS is ever signalled

# --- Redis ----------------------------------------------------------------------------
REDIS_PORT="" REDIS_PID=""
start_redis() {
  REDIS_PORT=${CL_REDIS_PORT:-$(free_port 0)}
  taskset -c $SERVER_CORE redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
    --appendonly no --dir "$OUT" --logfile "$OUT/redis.log" &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  wait_listening "$REDIS_PORT" "$REDIS_PID" || { log "redis-server did not listen (see $OUT/redis.log)"; exit 1; }
}
rcli() { taskset -c $CLIENT_CORE redis-cli -p "$REDIS_PORT" "$@"; }
redis_stat() {  # INFO stats field
  { rcli info stats || true; } | awk -F: -v k="$1" '$1 == k {printf "%d", $2}'
}

# --- wsvisor nodes --------------------------------------------------------------------
declare -A SRV_PID=() SRV_PORT=()
start_node() {  # name port-index extra --set...
  local name=$1 port
  port=$(free_port "$2")
  shift 2
  WSVISOR_API_KEY=$API_KEY taskset -c $SERVER_CORE "$WSVISOR" --set "server.port=$port" \
    "${WSVISOR_COMMON[@]}" --set limits.soft_connections=20000 --set janitor.ping_interval=1h \
    "$@" >>"$OUT/wsvisor-$name.log" 2>&1 &
  SRV_PID[$name]=$!
  SRV_PORT[$name]=$port
  PIDS+=("$!")
  wait_listening "$port" "$!" || { log "wsvisor $name did not listen (see $OUT/wsvisor-$name.log)"; exit 1; }
}
cluster_sets() {  # prefix node-id
  echo "--set cluster.mode=redis --set cluster.redis_url=redis://127.0.0.1:$REDIS_PORT/0 --set cluster.prefix=$1 --set cluster.node_id=$2"
}
stop_nodes() { local n; for n in "$@"; do stop_pid "${SRV_PID[$n]}"; done; }

health_field() {  # port python-expression-of-d: /health's answer
  curl -s -m 2 "http://127.0.0.1:$1/health" | "$PY" -c "import json, sys; d = json.load(sys.stdin); print($2)" 2>/dev/null || echo "?"
}
wait_cluster_ok() {  # name...: at most 10 s for each node's cluster state to be ok
  local n i
  for n in "$@"; do
    for ((i = 0; i < 100; i++)); do
      [[ $(health_field "${SRV_PORT[$n]}" 'd["cluster"]["state"]') == ok ]] && break
      sleep 0.1
    done
    ((i < 100)) || log "NOTE: $n's cluster state is not ok: $(health_field "${SRV_PORT[$n]}" 'd.get("cluster")')"
  done
}
wait_released() {  # name...: at most 10 s for the nodes to hold no connection
  local n i c
  for n in "$@"; do
    for ((i = 0; i < 100; i++)); do
      c=$(health_field "${SRV_PORT[$n]}" 'd["connections"]')
      [[ $c == 0 ]] && break
      sleep 0.1
    done
    ((i < 100)) || log "NOTE: $n still holds $c connections 10 s after the run"
  done
}

# The nodes' Redis connections: "source-port=node,..." (for redis-count).
node_ports_map() {
  local n out="" port
  for n in "$@"; do
    while read -r port; do out+="$port=$n,"; done < <(ss -Htnp "dport = :$REDIS_PORT" |
      awk -v pid="pid=${SRV_PID[$n]}," 'index($0, pid) {n = split($4, a, ":"); print a[n]}')
  done
  echo "${out%,}"
}

# --- one measurement ------------------------------------------------------------------
# Runs a client on core 1 (stdout: one JSON object to $OUT/$tag.json, stderr to .err).
# With a "window open" / "window closed" pair on stderr (cluster_load.py), samples the
# CPU ticks of the server pids, redis-server's and Redis's command and read counters at
# both lines; without (wsload), at the start and the end of the client. Sets W_TICKS
# (server ticks, summed), W_RTICKS (redis-server's), W_CMDS, W_READS, W_SPAN (s), and
# W_CORE0 / W_CORE1: the busy ticks of the two cores (/proc/stat), whoever used them, so
# that what other processes took of each core can be told.
measure() {  # tag windowed(0|1) "server pids" -- command...
  local tag=$1 windowed=$2 pids=$3 cpid p t0=0 t1=0 r0 r1 c0 c1 q0 q1 s0 s1 k0 k1
  shift 4
  taskset -c $CLIENT_CORE "$@" >"$OUT/$tag.json" 2>"$OUT/$tag.err" &
  cpid=$!
  PIDS+=("$cpid")
  W_TICKS="" W_SPAN=""
  if ((windowed)); then
    wait_line "$OUT/$tag.err" "window open" "$cpid" || { log "NOTE: $tag: no window (see $OUT/$tag.err)"; wait "$cpid" || true; return 1; }
  fi
  s0=$(date +%s.%N) r0=$(cpu_ticks "$REDIS_PID") c0=$(redis_stat total_commands_processed) q0=$(redis_stat total_reads_processed)
  k0=$(core_ticks)
  for p in $pids; do t0=$((t0 + $(cpu_ticks "$p"))); done
  if ((windowed)); then
    wait_line "$OUT/$tag.err" "window closed" "$cpid" $(((${DURATION%.*} + ${LAT_DURATION%.*} + 10) * 50)) || true
  else
    wait "$cpid" || true
  fi
  s1=$(date +%s.%N) r1=$(cpu_ticks "$REDIS_PID") c1=$(redis_stat total_commands_processed) q1=$(redis_stat total_reads_processed)
  k1=$(core_ticks)
  for p in $pids; do t1=$((t1 + $(cpu_ticks "$p"))); done
  wait "$cpid" 2>/dev/null || true
  [[ -s $OUT/$tag.json ]] || { log "NOTE: $tag: no result (see $OUT/$tag.err)"; return 1; }
  # The three INFO calls of each sample (redis_stat, this script's) are not the nodes'.
  W_TICKS=$((t1 - t0)) W_RTICKS=$((r1 - r0)) W_CMDS=$((c1 - c0 - 2)) W_READS=$((q1 - q0 - 2))
  W_SPAN=$("$PY" -c "print($s1 - $s0)")
  W_CORE0=$((${k1% *} - ${k0% *})) W_CORE1=$((${k1#* } - ${k0#* }))
}
core_ticks() {  # the busy ticks of core 0 and of core 1 ("n0 n1")
  awk '/^cpu[01] / {printf "%d ", $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat | sed 's/ $//'
}

# --- phase admission ------------------------------------------------------------------
# Four nodes side by side: {cluster on, off} x {auth header, none}.
ADM_NODES="on_user off_user on_anon off_anon"
start_admission_nodes() {
  # shellcheck disable=SC2046
  start_node on_user 1 --set auth.mode=header $(cluster_sets bench-adm adm-user)
  start_node off_user 2 --set auth.mode=header
  # shellcheck disable=SC2046
  start_node on_anon 3 $(cluster_sets bench-adm adm-anon)
  start_node off_anon 4
  wait_cluster_ok on_user on_anon
}

user_args() {  # the connect client's user arguments for a case
  if [[ $1 == anon ]]; then echo "--user-mode none"
  elif ((USERS_PER > 1)); then echo "--user-mode group --users-per $USERS_PER"
  else echo "--user-mode each"; fi
}

phase_admission() {
  local lines=$OUT/admission.jsonl run acase cl node tag windowed
  local -a cmd
  : >"$lines"
  for ((run = 1; run <= RUNS; run++)); do
    for acase in $ADM_CASES; do
      for cl in $(rotate "on off" $((run - 1))); do
        case $acase in
          user | wsload_user1) node=${cl}_user ;;
          *) node=${cl}_anon ;;
        esac
        tag=adm_${acase}_${cl}_r$run
        if [[ $acase == wsload_* ]]; then
          windowed=0
          cmd=("$WSLOAD" connect --port "${SRV_PORT[$node]}" --duration "$DURATION" --source-addrs "$SOURCE_ADDRS" --quiet)
          if [[ $acase == wsload_user1 ]]; then
            cmd+=(--connections "$USER1_WORKERS" --header "X-User-Id: one-$run-$cl")
          else
            cmd+=(--connections "$WORKERS")
          fi
        else
          windowed=1
          # shellcheck disable=SC2207
          cmd=("$PY" "$LOAD" connect --port "${SRV_PORT[$node]}" $(user_args "$acase")
            --user-prefix "u$run$cl-" --workers "$WORKERS" --duration "$DURATION" --warmup 0.5
            --source-addrs "$SOURCE_ADDRS")
        fi
        measure "$tag" "$windowed" "${SRV_PID[$node]}" -- "${cmd[@]}" || continue
        "$PY" - "$OUT/$tag.json" "$acase" "$cl" "$run" "$W_TICKS" "$W_RTICKS" "$W_CMDS" "$W_READS" "$W_SPAN" "$HZ" \
          "$W_CORE0" "$W_CORE1" >>"$lines" <<'EOF'
import json, sys
f, case, cl, run, ticks, rticks, cmds, reads, span, hz, core0, core1 = sys.argv[1:]
d = json.load(open(f))
span = float(span)
# Upgrades in the sampled span: the client's window rate times the span (they differ by
# the few ms the samples take).
n = max(1e-9, d.get("upgrades_per_second", 0) * span)
lat = d.get("handshake_latency_us", {})
print(json.dumps({"case": case, "cluster": cl, "run": int(run), "client": "wsload" if case.startswith("wsload") else "cluster_load.py",
                  "upgrades_per_second": d.get("upgrades_per_second", 0), "upgrades": d.get("upgrades"),
                  "p50_us": lat.get("p50"), "p99_us": lat.get("p99"),
                  "wsvisor_cpu_us_per_upgrade": int(ticks) / int(hz) * 1e6 / n,
                  "redis_cpu_us_per_upgrade": int(rticks) / int(hz) * 1e6 / n,
                  "redis_commands_per_upgrade": int(cmds) / n, "redis_reads_per_upgrade": int(reads) / n,
                  "wsvisor_cpu_share": int(ticks) / int(hz) / span, "redis_cpu_share": int(rticks) / int(hz) / span,
                  "client_cpu_share": d.get("client_cpu_share"), "span_s": span,
                  # What other processes (not these servers, not this client) took of each core.
                  "others_core0_share": round((int(core0) - int(ticks) - int(rticks)) / int(hz) / span, 3),
                  "others_core1_share": None if d.get("client_cpu_share") is None else round(int(core1) / int(hz) / span - d["client_cpu_share"], 3),
                  "refusals": d.get("refusals"), "errors": d.get("errors") if not isinstance(d.get("errors"), dict) else d.get("error_count"),
                  "timeouts": d.get("timeouts")}))
EOF
        log "admission $acase cluster $cl run $run: $(show "$lines" '%(upgrades_per_second).0f upgrades/s, p50 %(p50_us).0f us, p99 %(p99_us).0f us; wsvisor %(wsvisor_cpu_us_per_upgrade).0f us + Redis %(redis_cpu_us_per_upgrade).0f us CPU and %(redis_commands_per_upgrade).2f Redis commands per upgrade; refusals %(refusals)s, errors %(errors)s; others took %(others_core0_share).2f of core 0, %(others_core1_share)s of core 1')"
        wait_released "$node"
      done
    done
  done
}

# --- phase commands -------------------------------------------------------------------
# A MONITOR capture around one operation; its counts by kind go to commands.jsonl.
MON_PID=""
monitor_start() { rcli monitor >"$OUT/$1.monitor" 2>&1 & MON_PID=$!; PIDS+=("$MON_PID"); sleep 0.2; }
monitor_count() {  # tag operation count nodes...
  local tag=$1 op=$2 n=$3
  shift 3
  sleep 0.3
  stop_pid "$MON_PID"
  "$PY" "$LOAD" redis-count --monitor "$OUT/$tag.monitor" --clients "$(node_ports_map "$@")" |
    "$PY" -c 'import json, sys; d = json.load(sys.stdin); d.update(operation=sys.argv[1], count=int(sys.argv[2]), tag=sys.argv[3]); print(json.dumps(d))' \
      "$op" "$n" "$tag" >>"$OUT/commands.jsonl"
  log "commands $op: $(show "$OUT/commands.jsonl" 'sent %(sent)s; inside scripts %(inside_scripts)s')"
}

phase_commands_admission() {
  local acase node
  for acase in user anon; do
    node=on_$acase
    monitor_start "cmd_admission_$acase"
    # shellcheck disable=SC2046
    taskset -c $CLIENT_CORE "$PY" "$LOAD" connect --port "${SRV_PORT[$node]}" $(user_args "$acase") \
      --user-prefix "c-" --workers "$WORKERS" --count "$COUNT_UPGRADES" >"$OUT/cmd_admission_$acase.json" 2>/dev/null || true
    wait_released "$node"
    monitor_count "cmd_admission_$acase" "admission_$acase" "$COUNT_UPGRADES" "$node"
  done
}

# --- phase delivery -------------------------------------------------------------------
# single_off: one node, cluster off; single: one node, cluster on; multi: NODES nodes.
declare -A SETUP_NODES=()
start_delivery_nodes() {
  local s i names
  local -a user=(--set auth.mode=header --set limits.max_per_user=0)
  # shellcheck disable=SC2046
  for s in $SEND_SETUPS; do
    case $s in
      single_off) start_node d_off 10 "${user[@]}"; SETUP_NODES[$s]=d_off ;;
      single) start_node d_one 11 "${user[@]}" $(cluster_sets bench-one one-1); SETUP_NODES[$s]=d_one ;;
      multi)
        names=""
        for ((i = 1; i <= NODES; i++)); do
          start_node "d_m$i" $((11 + i)) "${user[@]}" $(cluster_sets bench-multi "m-$i")
          names+=" d_m$i"
        done
        SETUP_NODES[$s]=${names# } ;;
      *) log "unknown setup $s (single_off, single, multi)"; exit 2 ;;
    esac
  done
  # shellcheck disable=SC2086
  wait_cluster_ok ${SETUP_NODES[single]:-} ${SETUP_NODES[multi]:-}
}
setup_ports() {  # setup: the ports of its nodes, comma-separated (the API's first)
  local n out=""
  for n in ${SETUP_NODES[$1]}; do out+="${SRV_PORT[$n]},"; done
  echo "${out%,}"
}
setup_pids() { local n out=""; for n in ${SETUP_NODES[$1]}; do out+="${SRV_PID[$n]} "; done; echo "$out"; }
send_args() {  # setup user: cluster_load.py send's placement arguments
  local ports
  ports=$(setup_ports "$1")
  if [[ $1 == multi ]]; then
    echo "--api-port ${ports%%,*} --ports $ports --per-node $PER_NODE --user $2"
  else
    echo "--api-port $ports --ports $ports --per-node $((NODES * PER_NODE)) --user $2"
  fi
}

phase_commands_send() {
  [[ -n ${SETUP_NODES[multi]:-} ]] || { log "NOTE: no multi setup: /api/send commands not counted"; return 0; }
  monitor_start cmd_send
  # shellcheck disable=SC2046
  taskset -c $CLIENT_CORE "$PY" "$LOAD" send $(send_args multi cmd-user) --api-key "$API_KEY" \
    --senders "$SENDERS" --count "$COUNT_SENDS" >"$OUT/cmd_send.json" 2>/dev/null || true
  # shellcheck disable=SC2086
  wait_released ${SETUP_NODES[multi]}
  # shellcheck disable=SC2086
  monitor_count cmd_send send_user_multi "$COUNT_SENDS" ${SETUP_NODES[multi]}
}

phase_delivery() {
  local lines=$OUT/delivery.jsonl run s load tag
  local -a rate
  : >"$lines"
  for ((run = 1; run <= RUNS; run++)); do
    for s in $(rotate "$SEND_SETUPS" $((run - 1))); do
      for load in saturation paced; do
        tag=send_${s}_${load}_r$run
        if [[ $load == paced ]]; then
          rate=(--rate "$SEND_RATE" --duration "$LAT_DURATION" --warmup 0.5)
        else
          rate=(--duration "$DURATION" --warmup "$WARMUP")
        fi
        # shellcheck disable=SC2046
        measure "$tag" 1 "$(setup_pids "$s")" -- "$PY" "$LOAD" send $(send_args "$s" "u-$tag") \
          --api-key "$API_KEY" --senders "$SENDERS" "${rate[@]}" || continue
        "$PY" - "$OUT/$tag.json" "$s" "$load" "$run" "$W_TICKS" "$W_RTICKS" "$W_CMDS" "$W_SPAN" "$HZ" \
          "$W_CORE0" "$W_CORE1" >>"$lines" <<'EOF'
import json, sys
f, setup, load, run, ticks, rticks, cmds, span, hz, core0, core1 = sys.argv[1:]
d = json.load(open(f))
span = float(span)
sends = max(1e-9, d.get("sends_per_second", 0) * span)
for name, p in (("same", d["latency_us"]["same"]), ("other", d["latency_us"]["other"]), ("api", d["api_latency_us"])):
    d[name + "_p50_us"], d[name + "_p99_us"] = p.get("p50") or 0, p.get("p99") or 0
d.update({"setup": setup, "load": load, "run": int(run),
          "wsvisor_cpu_share": int(ticks) / int(hz) / span, "redis_cpu_share": int(rticks) / int(hz) / span,
          "redis_commands_per_send": int(cmds) / sends, "span_s": span,
          "wsvisor_cpu_us_per_send": int(ticks) / int(hz) * 1e6 / sends, "redis_cpu_us_per_send": int(rticks) / int(hz) * 1e6 / sends,
          "others_core0_share": round((int(core0) - int(ticks) - int(rticks)) / int(hz) / span, 3),
          "others_core1_share": round(int(core1) / int(hz) / span - d["client_cpu_share"], 3)})
print(json.dumps(d))
EOF
        log "delivery $s $load run $run: $(show "$lines" '%(sends_per_second).0f sends/s, %(deliveries_per_second).0f deliveries/s; p50 / p99 same node %(same_p50_us).0f / %(same_p99_us).0f us, other %(other_p50_us).0f / %(other_p99_us).0f us, API answer %(api_p50_us).0f / %(api_p99_us).0f us; wsvisor %(wsvisor_cpu_share).2f + Redis %(redis_cpu_share).2f of core 0, client %(client_cpu_share).2f of core 1; others took %(others_core0_share).2f of core 0, %(others_core1_share).2f of core 1; %(frames)d frames of %(delivered_sum)d delivered, %(sends_failed)d failed, %(unconfirmed_nodes_sum)d unconfirmed')"
        # shellcheck disable=SC2046
        wait_released ${SETUP_NODES[$s]}
      done
    done
  done
}

# --- summary --------------------------------------------------------------------------
summarize() {
  summarize_jsonl "$OUT" <<'EOF'
def ms(x):
    return "-" if x is None else f"{x / 1000:.2f}"
meta = load("meta.json")
if meta:
    m = meta[0]
    print(f"{m['started']}, {m['nproc']} cores ({m['cpu']}), Linux {m['kernel']}, {m['redis']}, wsvisor {m['wsvisor']} "
          f"(a copy of {m['wsvisor_from']}, built {m['wsvisor_built']}, its checkout at {m['wsvisor_git']} when the run began; sha256 {m['wsvisor_sha256']}...; "
          f"bench scripts at git {m['git']}), load average {m['loadavg_start']} at the start. Command: `{m['command']}`\n")
adm = load("admission.jsonl")
if adm:
    print("### Admission: upgrades per second on one node, cluster on against off\n")
    print("| upgrades | client | off: upgrades/s | on: upgrades/s | on / off | p50 / p99 handshake off (ms) | on (ms) | wsvisor CPU per upgrade off / on (us) | Redis CPU per upgrade (us) | CPU per upgrade on / off (wsvisor + Redis) | Redis commands executed / socket reads per upgrade (on) | wsvisor + Redis core share on | client core share on / off | others' share of core 0 / 1, on (off) | runs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case in ["user", "anon", "wsload_anon", "wsload_user1"]:
        g = {cl: [r for r in adm if r["case"] == case and r["cluster"] == cl] for cl in ("off", "on")}
        if not g["on"] and not g["off"]: continue
        f = {cl: {k: med([r.get(k) for r in rs]) for k in ("upgrades_per_second", "p50_us", "p99_us", "wsvisor_cpu_us_per_upgrade",
                  "redis_cpu_us_per_upgrade", "redis_commands_per_upgrade", "redis_reads_per_upgrade", "wsvisor_cpu_share", "redis_cpu_share", "client_cpu_share",
                  "others_core0_share", "others_core1_share")}
             for cl, rs in g.items()}
        on, off = f["on"], f["off"]
        ratio = "-" if not on["upgrades_per_second"] or not off["upgrades_per_second"] else f"**{on['upgrades_per_second'] / off['upgrades_per_second']:.2f}**"
        cpu_ratio = "-" if not on["wsvisor_cpu_us_per_upgrade"] or not off["wsvisor_cpu_us_per_upgrade"] else \
            f"**{(on['wsvisor_cpu_us_per_upgrade'] + on['redis_cpu_us_per_upgrade']) / (off['wsvisor_cpu_us_per_upgrade'] + off['redis_cpu_us_per_upgrade']):.2f}**"
        label = {"user": "with a user (header), a user per CL_USERS_PER upgrades", "anon": "without a user", "wsload_anon": "without a user",
                 "wsload_user1": "one user, at most CL_USER1_WORKERS at once"}[case]
        client = "wsload" if case.startswith("wsload") else "cluster_load.py"
        share = "-" if on["wsvisor_cpu_share"] is None else f"{on['wsvisor_cpu_share']:.2f} + {on['redis_cpu_share']:.2f}"
        print(f"| {label} | {client} | {num(off['upgrades_per_second'])} | {num(on['upgrades_per_second'])} | {ratio} | "
              f"{ms(off['p50_us'])} / {ms(off['p99_us'])} | {ms(on['p50_us'])} / {ms(on['p99_us'])} | "
              f"{num(off['wsvisor_cpu_us_per_upgrade'])} / {num(on['wsvisor_cpu_us_per_upgrade'])} | {num(on['redis_cpu_us_per_upgrade'])} | {cpu_ratio} | "
              f"{num(on['redis_commands_per_upgrade'], '{:.1f}')} / {num(on['redis_reads_per_upgrade'], '{:.2f}')} | {share} | "
              f"{num(on['client_cpu_share'], '{:.2f}')} / {num(off['client_cpu_share'], '{:.2f}')} | "
              f"{num(on['others_core0_share'], '{:.2f}')} / {num(on['others_core1_share'], '{:.2f}')} "
              f"({num(off['others_core0_share'], '{:.2f}')} / {num(off['others_core1_share'], '{:.2f}')}) | {len(g['on'])} / {len(g['off'])} |")
    print("\nCPU per upgrade = CPU time of the node (and of redis-server) over the window / upgrades in it: the steadier figure "
          "where other processes share the cores (upgrades/s then moves with what they leave). Commands executed include "
          "those the scripts run inside Redis; socket reads (INFO stats total_reads_processed) below the commands the node "
          "sends mean its client batched them (several commands per write).\n")
cmds = load("commands.jsonl")
if cmds:
    print("### Redis commands per operation (MONITOR capture)\n")
    print("| operation | counted | commands the nodes sent, per operation (by node) | sent per operation | run inside its scripts, per operation | also in the capture |")
    print("|---|---:|---|---:|---:|---|")
    own = {"admission": {"claim", "open", "release"}, "send": {"send_lookup", "publish_send", "publish_done"}}
    for c in cmds:
        n = max(1, c["count"])
        mine = own[c["operation"].split("_")[0]]
        fg = {k: v for k, v in c["sent"].items() if k in mine}
        rest = {k: v for k, v in c["sent"].items() if k not in mine}
        inner = sum(v for k, v in c["inside_scripts"].items() if k in mine)
        parts = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(fg.items(), key=lambda kv: -kv[1]))
        nodes = "; ".join(f"{node}: " + ", ".join(f"{k} {v / n:.2f}" for k, v in kinds.items() if k in mine)
                          for node, kinds in sorted(c["by_node"].items()))
        extra = ", ".join(f"{k} {v}" for k, v in rest.items())
        if c["operation"].startswith("send"):
            extra += " (the receivers' own admissions and releases, and the background)"
        print(f"| {c['operation']} | {c['count']:,} | {parts} ({nodes}) | **{sum(fg.values()) / n:.2f}** | {inner / n:.2f} | {extra or '-'} |")
    print()
dl = load("delivery.jsonl")
if dl:
    print("### /api/send by user: one node against several on one Redis\n")
    print("| setup | load | sends/s | deliveries/s | sends vs 1 node, cluster off | API answer p50 / p99 (ms) | same node p50 / p99 (ms) | other node p50 / p99 (ms) | wsvisor + Redis CPU per send (us) | wsvisor + Redis core share | client core share | others' share of core 0 / 1 | frames / delivered | failed, unconfirmed | runs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    names = {"single_off": "1 node, cluster off", "single": "1 node, cluster on", "multi": f"{max(r['nodes'] for r in dl)} nodes"}
    base = {}
    for load_ in ("saturation", "paced"):
        for s in ("single_off", "single", "multi"):
            rs = [r for r in dl if r["setup"] == s and r["load"] == load_]
            if not rs: continue
            m = {k: med([r.get(k) for r in rs]) for k in ("sends_per_second", "deliveries_per_second", "api_p50_us", "api_p99_us",
                 "same_p50_us", "same_p99_us", "other_p50_us", "other_p99_us", "wsvisor_cpu_share", "redis_cpu_share",
                 "client_cpu_share", "others_core0_share", "others_core1_share", "wsvisor_cpu_us_per_send", "redis_cpu_us_per_send")}
            if s == "single_off": base[load_] = m["sends_per_second"]
            vs = f"{m['sends_per_second'] / base[load_]:.2f}" if base.get(load_) and s != "single_off" else "-"
            lat = lambda k: "-" if not m[k + "_p50_us"] else f"{ms(m[k + '_p50_us'])} / {ms(m[k + '_p99_us'])}"
            rate = f" {int(rs[0]['rate'])}/s" if load_ == "paced" else f" ({rs[0]['senders']} senders)"
            cpu = f"{num(m['wsvisor_cpu_us_per_send'])} + {num(m['redis_cpu_us_per_send'])}" if load_ == "saturation" else "-"
            print(f"| {names[s]} ({rs[0]['connections']} conns) | {load_}{rate} | {num(m['sends_per_second'])} | {num(m['deliveries_per_second'])} | {vs} | "
                  f"{lat('api')} | {lat('same')} | {lat('other')} | {cpu} | {m['wsvisor_cpu_share']:.2f} + {m['redis_cpu_share']:.2f} | {m['client_cpu_share']:.2f} | {m['others_core0_share']:.2f} / {m['others_core1_share']:.2f} | "
                  f"{sum(r['frames'] for r in rs):,} / {sum(r['delivered_sum'] for r in rs):,} | {sum(r['sends_failed'] for r in rs)}, {sum(r['unconfirmed_nodes_sum'] for r in rs)} | {len(rs)} |")
    print("\nLatency: from just before the request is written to the frame's arrival (same: a connection on the node that took the API request; other: on another node), sends made in the window. Paced rows are the latency figures; saturation rows are mostly queueing. "
          "CPU per send (all the setup's nodes, and redis-server) only at saturation: at the paced rate the idle nodes' own timers dominate it.")
EOF
}

# --- main -----------------------------------------------------------------------------
mkdir -p "$OUT"
rm -f "$OUT"/*.jsonl "$OUT"/*.json "$OUT"/*.err "$OUT"/*.monitor "$OUT"/*.log "$OUT/summary.md"
raise_open_files
[[ -x $WSVISOR ]] || { log "no $WSVISOR (make build first)"; exit 2; }
[[ " $ADM_CASES " == *" wsload_"* && ! -x $WSLOAD ]] && { log "no $WSLOAD (make build first)"; exit 2; }
for tool in taskset redis-server redis-cli curl ss; do
  command -v "$tool" >/dev/null || { log "$tool is missing (util-linux, redis-server, curl, iproute2)"; exit 2; }
done

log "phases: $PHASES; runs $RUNS, window ${DURATION}s (paced ${LAT_DURATION}s); out: $OUT"
start_redis
# The binary may be rebuilt while this runs (a shared checkout): every node runs one copy
# of it, taken now, and meta.json says where it came from.
WSVISOR_FROM=$WSVISOR WSVISOR_GIT=$(git -C "$(dirname "$WSVISOR")" describe --always --dirty 2>/dev/null || echo "?")
WSVISOR_BUILT=$(date -u -r "$WSVISOR" +%Y-%m-%dT%H:%M:%SZ)
mkdir -p "$OUT/bin"
cp "$WSVISOR" "$OUT/bin/wsvisor"
WSVISOR=$OUT/bin/wsvisor
WSVISOR_SUM=$(sha256sum "$WSVISOR" | cut -c1-16)
printf '{"started":"%s","command":"%s","nproc":%s,"cpu":"%s","kernel":"%s","loadavg_start":"%s","wsvisor":"%s","wsvisor_from":"%s","wsvisor_git":"%s","wsvisor_built":"%s","wsvisor_sha256":"%s","redis":"%s","git":"%s","python":"%s"}\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  "CL_RUNS=$RUNS CL_DURATION=$DURATION CL_WARMUP=$WARMUP CL_LAT_DURATION=$LAT_DURATION CL_WORKERS=$WORKERS CL_USER1_WORKERS=$USER1_WORKERS CL_USERS_PER=$USERS_PER CL_ADM_CASES='$ADM_CASES' CL_NODES=$NODES CL_PER_NODE=$PER_NODE CL_SENDERS=$SENDERS CL_SEND_RATE=$SEND_RATE CL_PHASES='$PHASES' bench/cluster.sh" \
  "$(nproc)" "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)" \
  "$("$WSVISOR" --version 2>/dev/null)" "$WSVISOR_FROM" "$WSVISOR_GIT" "$WSVISOR_BUILT" "$WSVISOR_SUM" "$(redis-server --version | cut -d' ' -f1-3)" \
  "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo "?")" "$("$PY" --version 2>&1)" >"$OUT/meta.json"

: >"$OUT/commands.jsonl"
if has_phase admission || has_phase commands; then
  start_admission_nodes
  has_phase admission && { log "phase: admission"; phase_admission; }
  has_phase commands && { log "phase: commands (admission)"; phase_commands_admission; }
  # shellcheck disable=SC2086
  stop_nodes $ADM_NODES
fi
if has_phase delivery || has_phase commands; then
  start_delivery_nodes
  has_phase commands && { log "phase: commands (/api/send)"; phase_commands_send; }
  has_phase delivery && { log "phase: delivery"; phase_delivery; }
  for s in $SEND_SETUPS; do
    # shellcheck disable=SC2086
    stop_nodes ${SETUP_NODES[$s]}
  done
fi
leftover=$(rcli dbsize)
((leftover == 0)) || log "NOTE: Redis still holds $leftover keys after every node left: $(rcli --scan | head -5 | xargs)"
stop_pid "$REDIS_PID"
log "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); elapsed $(($(date +%s) - STARTED)) s"
summarize
