# shellcheck shell=bash
# Shared by the bench/*.sh scripts (sourced, not run): how wsvisor is started for a
# benchmark, the bounded wait for a server's listening port, and (below) what the
# scripts need to start and stop processes of their own.

# One io thread (the server is pinned to one core) and its limits out of the way.
# shellcheck disable=SC2034  # used by the scripts that source this file
WSVISOR_COMMON=(--set server.host=127.0.0.1 --set server.io_threads=1 --set log.level=warn
  --set limits.max_per_ip=0 --set limits.accept_rate=1000000 --set limits.accept_burst=1000000
  --set limits.max_connections=20000 --set limits.max_pending_handshakes=20000)

# Where the benchmarks run: the server on core 0, every client on core 1 (taskset -c).
# HZ turns the CPU ticks of /proc/PID/stat (cpu_ticks below) into seconds.
# shellcheck disable=SC2034  # used by the scripts that source this file
SERVER_CORE=0 CLIENT_CORE=1 HZ=$(getconf CLK_TCK)

wait_listening() {  # port pid [tries of 50 ms, 200 = 10 s]: 0 once listening, 1 if pid died or time ran out
  local i
  for ((i = 0; i < ${3:-200}; i++)); do
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# --- Processes, ports and samples of the scripts that start servers and clients in the
# background (gateway.sh, hub_fanout.sh, cluster.sh; run.sh takes rss_kb and rotate). Each script
# defines log (its own prefix) before it calls these; free_port reads PORT_BASE, show
# reads PY.

# Every process a script starts goes into PIDS (PIDS+=("$!")): only these are ever
# signalled. stop_pids_on_exit: at exit, those still running get SIGTERM, SIGKILL 0.3 s
# later, and are reaped; SIGINT or SIGTERM logs "interrupted" and exits 130.
PIDS=()
stop_pids() {
  local pid
  for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null; done
  sleep 0.3
  for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  return 0
}
stop_pids_on_exit() {
  trap stop_pids EXIT
  trap 'log "interrupted"; exit 130' INT TERM
}

stop_pid() {  # pid: TERM, at most 10 s, then KILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid" 2>/dev/null; log "NOTE: pid $pid did not exit within 10 s of SIGTERM (killed)"; }
  wait "$pid" 2>/dev/null || true
  return 0
}

free_port() {  # index -> a free port
  local p=$((PORT_BASE + $1))
  while ss -Hltn "sport = :$p" | grep -q .; do p=$((p + 50)); done
  echo "$p"
}

# The soft open files limit up to 20,000 (else to the hard limit), logged.
raise_open_files() {
  ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  log "open files limit: $(ulimit -n) (hard $(ulimit -Hn))"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
show() {  # jsonl-file python-%-format: the last line formatted
  tail -1 "$1" | "$PY" -c 'import json, sys; print(sys.argv[1] % json.loads(sys.stdin.read()))' "$2"
}

wait_line() {  # file pattern pid [tries of 20 ms, 1500 = 30 s]: 0 once the pattern is in file
  local i
  for ((i = 0; i < ${4:-1500}; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.02
  done
  return 1
}

rotate() {  # "list" offset -> the list rotated (spreads each server's runs over a phase)
  local -a a
  read -ra a <<<"$1"
  local n=${#a[@]} i rotated=()
  for ((i = 0; i < n; i++)); do rotated+=("${a[$(((i + $2) % n))]}"); done
  echo "${rotated[@]}"
}

# Runs the Python program on stdin after a prelude that imports json, os, statistics and
# sys and defines out (the directory), load(name) (the objects of out/name, one a line;
# [] without the file), med(xs) (the median of those not None, None without any) and
# num(x, format) ("-" for None); what it prints goes to stdout and to out/summary.md.
summarize_jsonl() {  # directory < program
  {
    cat <<'PRELUDE'
import json, os, statistics, sys
out = sys.argv[1]
def load(n):
    p = os.path.join(out, n)
    return [json.loads(l) for l in open(p) if l.strip()] if os.path.exists(p) else []
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def num(x, f="{:,.0f}"):
    return "-" if x is None else f.format(x)
PRELUDE
    cat
  } | "$PY" - "$1" | tee "$1/summary.md"
}
