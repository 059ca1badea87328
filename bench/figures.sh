#!/usr/bin/env bash
# Supervision, admission and janitor figures for wsvisor.
# One command, bounded (~2-4 min), installs nothing. Prints a Markdown section on stdout;
# raw JSON goes to bench/out/figures/. Server pinned to CPU 0, clients to CPU 1, loopback.
#   bench/figures.sh            (from the repo root or anywhere)
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/build/wsvisor
LOAD=$ROOT/build/wsload
PY=/usr/bin/python3
OUT=$ROOT/bench/out/figures
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ulimit -n 20000 2>/dev/null || true
export WSVISOR_ADMIN_TOKEN=t
AUTH=(-H 'Authorization: Bearer t')
NOTES=()
SRV_PID=""
PORT_BASE=${PORT_BASE:-18600}

OUT_OF_WAY=(--set limits.max_per_ip=0 --set limits.max_connections=20000
  --set limits.soft_connections=20000 --set limits.accept_rate=1000000
  --set limits.accept_burst=1000000 --set limits.max_pending_handshakes=20000)

note() { NOTES+=("$*"); echo "note: $*" >&2; }
jq_py() { $PY -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
snap() { curl -s -m 5 "http://127.0.0.1:$1/metrics" >"$OUT/$2.metrics"; }  # one scrape
mval() { awk -v name="$2" '$1 == name {print $NF; exit}' "$OUT/$1.metrics"; }  # mval SNAP SERIES
metric() { # metric PORT SERIES -> value of that exact series (or empty)
  curl -s -m 5 "http://127.0.0.1:$1/metrics" | awk -v name="$2" '$1 == name {print $NF; exit}'
}

start_server() { # start_server PORT LOGNAME args...
  local port=$1 log=$2; shift 2
  taskset -c 0 "$BIN" --set server.host=127.0.0.1 --set server.port="$port" "$@" \
    >"$OUT/$log.log" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 1 100); do  # up to 10 s
    [ "$(curl -s -m 1 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/ready")" = 200 ] && return 0
    sleep 0.1
  done
  note "server on port $port not ready after 10 s"; return 1
}

alive() { # true while the pid exists and is not a zombie
  [ -r "/proc/$1/stat" ] || return 1
  local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)
  [ -n "$st" ] && [ "$st" != Z ]
}

stop_server() { # SIGTERM, bounded wait, then SIGKILL
  [ -n "$SRV_PID" ] || return 0
  kill -TERM "$SRV_PID" 2>/dev/null
  for _ in $(seq 1 150); do alive "$SRV_PID" || break; sleep 0.1; done
  if alive "$SRV_PID"; then note "server $SRV_PID still alive 15 s after SIGTERM: killed"; kill -KILL "$SRV_PID" 2>/dev/null; fi
  wait "$SRV_PID" 2>/dev/null
  SRV_PID=""
}
trap 'stop_server' EXIT

START_DATE=$(date -u)
MACHINE="$(uname -srm); $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"

########## 1. crash to service ##########
P=$((PORT_BASE+1))
start_server $P crash_latency "${OUT_OF_WAY[@]}" --set faults.enabled=true \
  --set supervision.connection_restarts=1000000
timeout 180 taskset -c 1 $PY bench/crash_latency.py latency $P t 10000 >"$OUT/crash_latency.json" 2>"$OUT/crash_latency.err" \
  || note "crash_latency.py latency failed: $(tail -2 "$OUT/crash_latency.err")"
stop_server

########## 2. throughput with crashes ##########
P=$((PORT_BASE+2))
start_server $P crash_throughput "${OUT_OF_WAY[@]}" --set faults.enabled=true \
  --set supervision.connection_restarts=1000000
timeout 120 taskset -c 1 $PY bench/crash_latency.py throughput $P t 5 10 100 >"$OUT/crash_throughput.json" 2>"$OUT/crash_throughput.err" \
  || note "crash_latency.py throughput failed: $(tail -2 "$OUT/crash_throughput.err")"
stop_server

########## 3. admission spike ##########
declare -A ADM_ARGS
ADM_ARGS[guard]="--set limits.max_per_ip=0 --set limits.max_connections=20000 --set limits.accept_rate=1000000 --set limits.accept_burst=1000000"
ADM_ARGS[open]="${OUT_OF_WAY[*]}"
ADM_ARGS[defaults]=""
i=3
for cfg in guard open defaults; do
  P=$((PORT_BASE+i)); i=$((i+1))
  # shellcheck disable=SC2086
  start_server $P "admission_$cfg" ${ADM_ARGS[$cfg]}
  timeout 60 taskset -c 1 "$LOAD" connect --host 127.0.0.1 --port $P --connections 200 --count 10000 \
    --duration 30 --grace 5 >"$OUT/admission_$cfg.json" 2>"$OUT/admission_$cfg.err" \
    || note "wsload connect ($cfg) exited non-zero"
  curl -s -m 5 "http://127.0.0.1:$P/metrics" | grep '^wsvisor_admissions_rejected_total' | awk '$NF!=0' >"$OUT/admission_$cfg.rejected"
  stop_server
done

########## 4. janitor ##########
P=$((PORT_BASE+7))
start_server $P janitor "${OUT_OF_WAY[@]}"
T0=$(date +%s.%N)
taskset -c 1 "$LOAD" hold --host 127.0.0.1 --port $P --connections 14000 --rate 3000 --duration 40 \
  --source-addrs 127.0.0.1,127.0.0.2 >"$OUT/hold.json" 2>"$OUT/hold.err" &
HOLD=$!
taskset -c 1 "$LOAD" zombie --host 127.0.0.1 --port $P --connections 5000 --rate 3000 --duration 40 \
  >"$OUT/zombie.json" 2>"$OUT/zombie.err" &
ZOMB=$!
PEAK=0
for _ in $(seq 1 300); do  # up to 30 s for all 19,000 to be up
  C=$(metric $P wsvisor_connections); C=${C%.*}
  [ -n "$C" ] && [ "$C" -gt "$PEAK" ] && PEAK=$C
  [ -n "$C" ] && [ "$C" -ge 19000 ] && break
  sleep 0.1
done
UP_S=$(echo "$(date +%s.%N) - $T0" | bc)
sleep 1
CONN_UP=$(metric $P wsvisor_connections); FDS_UP=$(metric $P process_open_fds)
[ "${CONN_UP%.*}" -ge 19000 ] 2>/dev/null || note "only $CONN_UP connections up before the admin sweep (expected 19000)"
SWEEP_T0=$(date +%s%N)
curl -s -m 30 -X POST "${AUTH[@]}" "http://127.0.0.1:$P/admin/sweep?level=moderate" >"$OUT/sweep.json"
SWEEP_WALL_MS=$(( ($(date +%s%N) - SWEEP_T0) / 1000000 ))
sleep 2
CONN_AFTER=$(metric $P wsvisor_connections)
# a second admin sweep right after the first (how many of the zombies does it catch?)
SWEEP2_T0=$(date +%s%N)
curl -s -m 30 -X POST "${AUTH[@]}" "http://127.0.0.1:$P/admin/sweep?level=moderate" >"$OUT/sweep2.json"
SWEEP2_WALL_MS=$(( ($(date +%s%N) - SWEEP2_T0) / 1000000 ))
sleep 1
CONN_AFTER2=$(metric $P wsvisor_connections)
# let the periodic sweeps finish off any zombie left (pong_timeout 10s), so that the window
# below measures sweeps that evict nothing
for _ in $(seq 1 200); do  # up to 20 s
  C=$(metric $P wsvisor_connections); [ "${C%.*}" -le 14000 ] 2>/dev/null && break; sleep 0.1
done
CONN_SETTLED=$(metric $P wsvisor_connections)
[ "${CONN_SETTLED%.*}" -le 14000 ] 2>/dev/null || note "connections still $CONN_SETTLED (not 14000) when the periodic window started"
sleep 1.5
# periodic sweep cost with nothing to evict (the histogram has no kind label: check that only
# periodic sweeps ran in the window)
snap $P periodic0
S0=$(mval periodic0 wsvisor_sweep_duration_seconds_sum); N0=$(mval periodic0 wsvisor_sweep_duration_seconds_count)
K0=$(mval periodic0 'wsvisor_sweeps_total{kind="periodic"}')
E0=$(mval periodic0 'wsvisor_evictions_total{reason="zombie"}')
sleep 10
snap $P periodic1
S1=$(mval periodic1 wsvisor_sweep_duration_seconds_sum); N1=$(mval periodic1 wsvisor_sweep_duration_seconds_count)
K1=$(mval periodic1 'wsvisor_sweeps_total{kind="periodic"}')
E1=$(mval periodic1 'wsvisor_evictions_total{reason="zombie"}')
CONN_PER=$(mval periodic1 wsvisor_connections)
curl -s -m 5 "http://127.0.0.1:$P/metrics" | grep -E '^wsvisor_(evictions_total|connections_closed_total|admissions_rejected_total)' | awk '$NF!=0' >"$OUT/janitor_before_drain.metrics"
# drain
CONN_DRAIN=$(metric $P wsvisor_connections)
D0=$(date +%s%N)
kill -TERM "$SRV_PID"
for _ in $(seq 1 3000); do alive "$SRV_PID" || break; sleep 0.01; done  # up to 30 s
D1=$(date +%s%N)
if alive "$SRV_PID"; then note "server did not exit within 30 s of SIGTERM"; kill -KILL "$SRV_PID"; fi
wait "$SRV_PID"; DRAIN_RC=$?
SRV_PID=""
DRAIN_MS=$(( (D1 - D0) / 1000000 ))
for _ in $(seq 1 600); do  # wsload stops by itself by duration+grace (45 s); bound 60 s
  alive $HOLD || alive $ZOMB || break; sleep 0.1
done
alive $HOLD && { note "wsload hold still running: killed"; kill $HOLD; }
alive $ZOMB && { note "wsload zombie still running: killed"; kill $ZOMB; }
wait $HOLD $ZOMB 2>/dev/null

########## report ##########
$PY - "$OUT" <<EOF
import json, os, sys
out = sys.argv[1]
def load(n):
    try:
        return json.load(open(os.path.join(out, n)))
    except Exception as e:
        return {"_error": str(e)}
f = lambda x, d=0: ("n/a" if x is None else ("{:,.%df}" % d).format(x))
print("### Environment")
print()
print("- machine: $MACHINE")
print("- date: $START_DATE")
print("- command: \`bench/figures.sh\` (server \`taskset -c 0\`, clients \`taskset -c 1\`, loopback, \`ulimit -n 20000\`)")
print()
L = load("crash_latency.json")
print("### 1. Crash to service (one connection, 10,000 iterations, 16-byte text message)")
print()
print("Time from the admin POST returning (crash) or GET /health/ready returning (baseline) to the echo.")
print()
print("| loop | n | p50 (us) | p99 (us) | mean (us) | max (us) |")
print("|---|---:|---:|---:|---:|---:|")
for m in ("baseline", "crash"):
    r = L.get(m, {})
    print("| %s | %s | %s | %s | %s | %s |" % (m if m == "baseline" else "crash fault before each message", f(r.get("n")), f(r.get("p50_us"),1), f(r.get("p99_us"),1), f(r.get("mean_us"),1), f(r.get("max_us"),1)))
print()
print("connection restarts counted: %s; errors: %s; connection still open: %s" % (f(L.get("connection_restarts_delta")), L.get("errors"), L.get("still_open")))
print()
T = load("crash_throughput.json")
print("### 2. Echo throughput, 10 connections, request/response, 5 s each, same process")
print()
print("| run | messages | msg/s | crash posts | applied | connection restarts |")
print("|---|---:|---:|---:|---:|---:|")
for m, lab in (("none", "no crashes"), ("crash", "crash every 100 msgs/conn")):
    r = T.get(m, {})
    print("| %s | %s | %s | %s | %s | %s |" % (lab, f(r.get("messages")), f(r.get("messages_per_second")), f(r.get("crash_posts")), f(r.get("crashes_applied")), f(r.get("connection_restarts_delta"))))
print()
print("ratio crash/none: **%s**; all connections open at the end: %s" % (f(T.get("ratio_crash_over_none"), 3), T.get("all_open_at_end")))
print()
print("### 3. Admission spike: \`wsload connect --connections 200 --count 10000\`")
print()
print("| server limits | upgrades | upgrades/s | handshake p50 (us) | p99 (us) | refusals | errors | server rejections |")
print("|---|---:|---:|---:|---:|---|---|---|")
labels = {"guard": "defaults except max_per_ip=0, max_connections=20000, accept rate/burst 1e6",
          "open": "every limit out of the way",
          "defaults": "defaults (accept_rate 2000/s, burst 4000)"}
for c in ("guard", "open", "defaults"):
    r = load("admission_%s.json" % c)
    h = r.get("handshake_latency_us") or {}
    try:
        rej = ", ".join(l.strip() for l in open(os.path.join(out, "admission_%s.rejected" % c)) if l.strip()) or "none"
    except Exception:
        rej = "n/a"
    rej = rej.replace("wsvisor_admissions_rejected_total", "")
    print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (labels[c], f(r.get("upgrades")), f(r.get("upgrades_per_second")), f(h.get("p50")), f(h.get("p99")), json.dumps(r.get("refusals")), json.dumps(r.get("errors")), rej))
print()
S = load("sweep.json"); H = load("hold.json"); Z = load("zombie.json")
def fl(x):
    try: return float(x)
    except Exception: return None
S0, S1, N0, N1 = fl("$S0"), fl("$S1"), fl("$N0"), fl("$N1")
K0, K1 = fl("$K0"), fl("$K1")
mean = (S1 - S0) / (N1 - N0) if None not in (S0, S1, N0, N1) and N1 > N0 else None
conn_per = fl("$CONN_PER")
print("### 4. Janitor: 14,000 healthy (\`wsload hold\`, 2 source addresses) + 5,000 zombies (\`wsload zombie\`)")
print()
print("| figure | value |")
print("|---|---|")
print("| connections up (wsvisor_connections) / process_open_fds | %s / %s (peak seen %s, %.1f s after start) |" % (f(fl("$CONN_UP")), f(fl("$FDS_UP")), f(fl("$PEAK")), float("$UP_S")))
print("| POST /admin/sweep?level=moderate | duration_ms %s (HTTP wall %s ms), evicted %s |" % (S.get("duration_ms"), "$SWEEP_WALL_MS", json.dumps(S.get("evicted"))))
S2 = load("sweep2.json")
print("| connections 2 s after the sweep | %s |" % f(fl("$CONN_AFTER")))
print("| second POST /admin/sweep?level=moderate right after | duration_ms %s (HTTP wall %s ms), evicted %s; connections after: %s |" % (S2.get("duration_ms"), "$SWEEP2_WALL_MS", json.dumps(S2.get("evicted")), f(fl("$CONN_AFTER2"))))
print("| connections when the periodic window started | %s |" % f(fl("$CONN_SETTLED")))
print("| periodic sweeps in the 10 s window / histogram observations | %s / %s |" % (f(K1-K0 if None not in (K0,K1) else None), f(N1-N0 if None not in (N0,N1) else None)))
print("| zombie evictions during the periodic window | %s |" % f(fl("$E1") - fl("$E0") if None not in (fl("$E0"), fl("$E1")) else None))
print("| mean periodic sweep at %s connections | %s us |" % (f(conn_per), f(mean*1e6 if mean is not None else None, 1)))
print("| periodic sweep cost per connection | **%s ns** |" % f(mean*1e9/conn_per if mean is not None and conn_per else None, 1))
print("| SIGTERM to process exit, %s connections (drain_spread 2s, drain_timeout 8s) | **%s ms**, exit code %s |" % (f(fl("$CONN_DRAIN")), "$DRAIN_MS", "$DRAIN_RC"))
print()
print("wsload hold: established %s, failed %s, refusals %s, closed_by_server %s, close_codes %s, errors %s" % (H.get("established"), H.get("failed"), H.get("refusals"), H.get("closed_by_server"), H.get("close_codes"), H.get("errors")))
print()
print("wsload zombie: established %s, failed %s, refusals %s, closed_by_server %s, time_to_close_s %s, close_codes %s, errors %s" % (Z.get("established"), Z.get("failed"), Z.get("refusals"), Z.get("closed_by_server"), Z.get("time_to_close_s"), Z.get("close_codes"), Z.get("errors")))
print()
try:
    print("server counters before the drain (non-zero): " + "; ".join(l.strip() for l in open(os.path.join(out, "janitor_before_drain.metrics")) if l.strip()))
except Exception:
    pass
print()
EOF
if [ ${#NOTES[@]} -gt 0 ]; then
  echo "Notes from the run:"; echo
  for n in "${NOTES[@]}"; do echo "- $n"; done; echo
fi
