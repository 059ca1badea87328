#!/usr/bin/env bash
# A/B of echo servers, for the decisions `make bench` is too coarse (and too long) for.
#
#   bench/ab_echo.sh [NAME=BINARY ...]      e.g. bench/ab_echo.sh before=/tmp/wsvisor.old now=build/wsvisor
#
# Each argument is a wsvisor binary to compare (started with one io thread and limits out
# of the way, as bench/run.sh does); "beast" (bench/out/bin/beast_echo, built by
# `make bench`) is always included. Two ways to measure, by MODE:
#
#   MODE=time (default)  the servers interleaved, ROUNDS times per workload: messages/s
#                        from `wsload echo`, and the server's CPU time per echoed message
#                        (utime + stime from /proc over the client's whole run, divided by
#                        every message it got back). Server on core 0, client on core 1.
#   MODE=callgrind       each server once under valgrind's callgrind: user-space
#                        instructions per echoed message, counted from zeroing the
#                        counters before the client starts to a dump after it ends.
#                        Deterministic enough to see a change of 2 %, where the shared
#                        2-core machines here move time figures by 15 % from run to run.
#                        The kernel (about half of an echo's cost) is not counted.
#
# Environment: WORKLOADS ("SIZE:IN_FLIGHT:CONNECTIONS ...", default "64:1:100 64:1:1000"),
# ROUNDS (3), DURATION (seconds per measurement: 4; callgrind 10). TLS=1: every server
# speaks TLS with a self-signed certificate made here, "beast" is raw Beast over
# beast::ssl_stream (bench/out/bin/beast_tls_echo: bench/servers/beast_echo.cpp with
# -DBEAST_ECHO_TLS=1, compiled here if missing), and the
# client is `wsload echo --tls on`.
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
WSLOAD=${WSLOAD_BIN:-$ROOT/build/wsload}
BEAST=$BENCH_DIR/out/bin/beast_echo
PY=/usr/bin/python3
MODE=${MODE:-time}
WORKLOADS=${WORKLOADS:-"64:1:100 64:1:1000"}
ROUNDS=${ROUNDS:-3}
if [[ $MODE == callgrind ]]; then DURATION=${DURATION:-10}; else DURATION=${DURATION:-4}; fi
# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"  # WSVISOR_COMMON, wait_listening
# As bench/run.sh starts it, with room for valgrind's slowness in the handshake.
WSVISOR_ARGS=("${WSVISOR_COMMON[@]}" --set limits.soft_connections=20000
  --set server.handshake_timeout=60s)

TLS=${TLS:-0}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TLS_SERVER_ARGS=() TLS_CLIENT_ARGS=()
if [[ $TLS == 1 ]]; then
  BEAST=$BENCH_DIR/out/bin/beast_tls_echo
  if [[ ! -x $BEAST || $BEAST -ot $BENCH_DIR/servers/beast_echo.cpp ]]; then
    mkdir -p "$BENCH_DIR/out/bin"
    g++ -std=c++17 -O2 -DNDEBUG -DBEAST_ECHO_TLS=1 -o "$BEAST" "$BENCH_DIR/servers/beast_echo.cpp" \
      -pthread -lssl -lcrypto || { echo "beast_tls_echo did not build" >&2; exit 2; }
  fi
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null || { echo "openssl req failed" >&2; exit 2; }
  TLS_SERVER_ARGS=(--set "server.tls_cert_file=$WORK/cert.pem" --set "server.tls_key_file=$WORK/key.pem")
  TLS_CLIENT_ARGS=(--tls on)
fi
[[ -x $BEAST ]] || { echo "no $BEAST: run \`make bench\` once (it builds the peers)" >&2; exit 2; }
[[ -x $WSLOAD ]] || { echo "no $WSLOAD: build first (\`make build\`)" >&2; exit 2; }
command -v taskset >/dev/null || { echo "taskset is missing (util-linux)" >&2; exit 2; }
declare -A BINARY=([beast]=$BEAST)
NAMES=(beast)
for arg in "$@"; do
  name=${arg%%=*} path=${arg#*=}
  [[ $name != "$arg" && -x $path ]] || { echo "expected NAME=BINARY, got '$arg'" >&2; exit 2; }
  BINARY[$name]=$path
  NAMES+=("$name")
done
ulimit -n 20000 2>/dev/null || true

server_command() {  # name port -> the command line
  if [[ $1 == beast && $TLS == 1 ]]; then echo "$BEAST $2 $WORK/cert.pem $WORK/key.pem 1"
  elif [[ $1 == beast ]]; then echo "$BEAST $2 1"
  else echo "${BINARY[$1]} --set server.port=$2 ${WSVISOR_ARGS[*]} ${TLS_SERVER_ARGS[*]}"; fi
}

run_client() {  # port size in_flight connections -> JSON on stdout
  taskset -c 1 "$WSLOAD" echo --port "$1" --size "$2" --in-flight "$3" --connections "$4" \
    --duration "$DURATION" --warmup 1 "${TLS_CLIENT_ARGS[@]}" 2>/dev/null
}

field() {  # json-file python-expression-of-d
  "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}

measure_time() {  # name size k conns round
  local port=$((21000 + RANDOM % 20000)) pid t0 t1
  # shellcheck disable=SC2046  # the command line is split on purpose
  taskset -c 0 $(server_command "$1" "$port") >/dev/null 2>&1 &
  pid=$!
  wait_listening "$port" "$pid" || { echo "$1 did not listen" >&2; kill "$pid"; return; }
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  run_client "$port" "$2" "$3" "$4" >"$WORK/out.json"
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null
  local ticks=$((t1 - t0)) hz
  hz=$(getconf CLK_TCK)
  printf "round %s  %-5s x %-2s x %-5s  %-12s %8.0f msg/s  %6.2f us CPU/msg\n" "$5" "$2" "$3" "$4" "$1" \
    "$(field "$WORK/out.json" 'd["messages_per_second"]')" \
    "$(field "$WORK/out.json" "$ticks / $hz * 1e6 / max(1, d['messages_received'])")"
}

measure_callgrind() {  # name size k conns
  local port=$((21000 + RANDOM % 20000)) pid out=$WORK/callgrind.out
  rm -f "$out"*
  # shellcheck disable=SC2046
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out" \
    $(server_command "$1" "$port") >/dev/null 2>&1 &
  pid=$!
  wait_listening "$port" "$pid" 1200 || { echo "$1 did not listen under valgrind" >&2; kill "$pid"; return; }
  sleep 1
  callgrind_control -z "$pid" >/dev/null 2>&1
  run_client "$port" "$2" "$3" "$4" >"$WORK/out.json"
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill -TERM "$pid"; wait "$pid" 2>/dev/null
  local dump instructions messages
  dump=$(ls -t "$out".* 2>/dev/null | head -1)
  instructions=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
  messages=$(field "$WORK/out.json" 'd["messages_received"]')
  printf "%-5s x %-2s x %-5s  %-12s %6d user-space instructions per echoed message (%s messages)\n" \
    "$2" "$3" "$4" "$1" $((instructions / messages)) "$messages"
}

echo "# $(date -u '+%F %H:%M UTC'), $(nproc) cores, MODE=$MODE DURATION=$DURATION TLS=$TLS"
for workload in $WORKLOADS; do
  IFS=: read -r size in_flight connections <<<"$workload"
  if [[ $MODE == callgrind ]]; then
    command -v valgrind >/dev/null || { echo "valgrind is missing" >&2; exit 2; }
    for name in "${NAMES[@]}"; do measure_callgrind "$name" "$size" "$in_flight" "$connections"; done
  else
    for round in $(seq "$ROUNDS"); do
      for name in "${NAMES[@]}"; do measure_time "$name" "$size" "$in_flight" "$connections" "$round"; done
    done
  fi
done
