#!/usr/bin/env bash
# The three client-fault scenarios of tools/scenarios/ against a fresh wsvisor each,
# measured from the clients' side by `wsload reconnect --scenario` (CONTRACT 8, issue 19):
# time to reconnect, refusals met while reconnecting, messages lost, per fault.
#
#   bench/fault_scenarios.sh                 all three, CONNECTIONS=5000 (~3.5 min)
#   CONNECTIONS=500 bench/fault_scenarios.sh a smaller population
#   SCENARIOS="stall-10pct" bench/fault_scenarios.sh
#   WSLOAD_ARGS="--silence-timeout-ms 0" ...   extra wsload options (here: clients that wait)
#
# Server on core 0 (one io thread, bench/common.sh's limits), wsload on core 1 (one
# thread); both raise their open-file limit to 20,000. Each scenario's own server
# settings are its file's (its header comment): the zombie storm's heartbeat, for one.
# Reports: bench/out/faults/<scenario>.json; a summary table on stdout.
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
WSVISOR=${WSVISOR_BIN:-$ROOT/build/wsvisor}
WSLOAD=${WSLOAD_BIN:-$ROOT/build/wsload}
OUT=${OUT:-$BENCH_DIR/out/faults}
CONNECTIONS=${CONNECTIONS:-5000}
SCENARIOS=${SCENARIOS:-"rolling-restart stall-10pct zombie-storm"}
PY=/usr/bin/python3
PORT_BASE=${PORT_BASE:-19400}
# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"
log() { echo "[faults $(date -u +%H:%M:%S)] $*" >&2; }
stop_pids_on_exit
ulimit -n 20000
mkdir -p "$OUT"
for binary in "$WSVISOR" "$WSLOAD"; do
  [[ -x $binary ]] || { echo "no $binary: run \`make build\`" >&2; exit 2; }
done

# What each scenario's header asks of the server, beyond bench/common.sh's settings.
server_sets() {
  case $1 in
    zombie-storm) echo "--set janitor.ping_interval=2s --set janitor.pong_timeout=10s" ;;
    *) echo "" ;;
  esac
}

token=fault-bench-token
port=$PORT_BASE
for scenario in $SCENARIOS; do
  file=$ROOT/tools/scenarios/$scenario.scenario
  [[ -f $file ]] || { echo "no $file" >&2; exit 2; }
  port=$((port + 1))
  # shellcheck disable=SC2046  # the sets are words
  WSVISOR_ADMIN_TOKEN=$token taskset -c "$SERVER_CORE" "$WSVISOR" --config /dev/null \
    "${WSVISOR_COMMON[@]}" --set server.port=$port --set faults.enabled=true \
    --set auth.mode=header $(server_sets "$scenario") > "$OUT/$scenario.server.log" 2>&1 &
  server=$!
  PIDS+=("$server")
  wait_listening "$port" "$server" || { log "$scenario: the server did not start"; exit 1; }
  users=$((CONNECTIONS / 10))
  log "$scenario: $CONNECTIONS clients of $users users on port $port"
  WSVISOR_ADMIN_TOKEN=$token taskset -c "$CLIENT_CORE" "$WSLOAD" reconnect --port $port \
    --threads 1 --connections "$CONNECTIONS" --users "$users" --rate 2000 \
    --scenario "$file" ${WSLOAD_ARGS:-} --quiet > "$OUT/$scenario.json" 2> "$OUT/$scenario.wsload.log"
  rc=$?
  # The server's side, once the clients have gone: how the slots ended (zombies freed
  # by the heartbeat, say), and that none is left held.
  sleep 2
  curl -s "http://127.0.0.1:$port/metrics" > "$OUT/$scenario.metrics" || true
  stop_pid "$server"
  [[ $rc == 0 ]] || { log "$scenario: wsload exited $rc (see $OUT/$scenario.wsload.log)"; exit 1; }
done

$PY - "$OUT" $SCENARIOS <<'PYEOF'
import json, sys
out, names = sys.argv[1], sys.argv[2:]
def server_side(name):
    """The server's closes by reason (non-zero ones) and its slots at the end."""
    closed, slots = {}, None
    for line in open(f"{out}/{name}.metrics"):
        if line.startswith("wsvisor_connections_closed_total{"):
            reason = line.split('reason="')[1].split('"')[0]
            value = float(line.rsplit(" ", 1)[1])
            if value:
                closed[reason] = int(value)
        elif line.startswith("wsvisor_connections "):
            slots = int(float(line.split()[1]))
    return ", ".join(f"{r}: {n}" for r, n in sorted(closed.items())), slots

print("| scenario | fault (at) | applied | closes by code | reconnects | time to reconnect p50 / p99 / max (ms) | refusals | sent / lost / late | connected at end | server: closed by reason; slots 2 s after the clients left |")
print("|---|---|---:|---|---:|---:|---:|---:|---:|---|")
for name in names:
    report = json.load(open(f"{out}/{name}.json"))
    closed, slots = server_side(name)
    for window in [dict(report["before_faults"], at_s=0, request={"action": "(before)"}, answer={})] + report["faults"]:
        t = window["time_to_reconnect_ms"]
        ttr = f'{t["p50"]:.0f} / {t["p99"]:.0f} / {t["max"]:.0f}' if t.get("count") else "-"
        codes = ", ".join(f"{c}: {n}" for c, n in sorted(window["closes_by_code"].items())) or "-"
        m = window["messages"]
        print(f'| {name} | {window["request"].get("action")} ({window["at_s"]:g} s) | '
              f'{window["answer"].get("applied", "-")} | {codes} | {window["reconnects"]} | {ttr} | '
              f'{window["refusals"]["total"]} | {m["sent"]:,} / {m["lost"]:,} / {m["late"]:,} | '
              f'{report["connected_at_end"] if window is report["faults"][-1] else ""} | '
              f'{f"{closed}; {slots}" if window is report["faults"][-1] else ""} |')
PYEOF
