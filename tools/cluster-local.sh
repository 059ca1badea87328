#!/usr/bin/env bash
# A wsvisor cluster on this machine: Redis, N wsvisor nodes in cluster mode and HAProxy
# in front of them (deploy/haproxy/haproxy.cfg.in), until Ctrl-C. Build first (`make`
# builds build/wsvisor); needs redis-server and haproxy (apt-get install redis-server
# haproxy). Run `tools/cluster-local.sh --help` for the options.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  cat <<EOF
usage: tools/cluster-local.sh [options] [--set section.key=value]...

Starts redis-server, N wsvisor nodes (cluster.mode = redis) and haproxy in front of them,
all on 127.0.0.1, prints their URLs and runs until Ctrl-C (or SIGTERM), then stops
everything: haproxy first, then the nodes (each drains), then Redis.

  --lb-port N       HAProxy's port, where clients connect          [8080]
  --node-port N     the first node's port; node i listens on N+i-1 [8081]
  --nodes N         how many wsvisor nodes (1-20)                  [3]
  --redis-port N    Redis's port                                   [6390]
  --bin FILE        the wsvisor binary                             [build/wsvisor]
  --config FILE     the nodes' configuration file                  [config/wsvisor.toml]
  --timeout SECS    how long each process may take to get ready    [15]
  --set K=V         passed to every node after the cluster settings (repeatable),
                    e.g. --set app.mode=hub --set hub.allow_anonymous=true
  -h, --help        this text

A node that dies (kill -9 one to watch the others reap it) is reported and the rest keep
running. WSVISOR_* variables in the environment reach every node; with
WSVISOR_CLUSTER_REDIS_PASSWORD set, Redis is started with that password. Logs and the
generated haproxy.cfg are in a temporary directory, printed at start and kept at exit.
EOF
}

die() {
  echo "cluster-local: $*" >&2
  exit 1
}

lb_port=8080
node_port=8081
nodes=3
redis_port=6390
bin="$repo/build/wsvisor"
config="$repo/config/wsvisor.toml"
ready_timeout=15
extra_sets=()

need_value() {
  [ "$#" -ge 2 ] || die "$1 needs a value (see --help)"
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --lb-port) need_value "$@"; lb_port=$2; shift 2 ;;
    --node-port) need_value "$@"; node_port=$2; shift 2 ;;
    --nodes) need_value "$@"; nodes=$2; shift 2 ;;
    --redis-port) need_value "$@"; redis_port=$2; shift 2 ;;
    --bin) need_value "$@"; bin=$2; shift 2 ;;
    --config) need_value "$@"; config=$2; shift 2 ;;
    --timeout) need_value "$@"; ready_timeout=$2; shift 2 ;;
    --set) need_value "$@"; extra_sets+=(--set "$2"); shift 2 ;;
    --set=*) extra_sets+=(--set "${1#--set=}"); shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

is_number() {
  [[ "$1" =~ ^[0-9]+$ ]]
}

for name in lb_port node_port redis_port; do
  value=${!name}
  if ! is_number "$value" || [ "$value" -lt 1 ] || [ "$value" -gt 65535 ]; then
    die "--${name//_/-} must be a port number (1-65535), not '$value'"
  fi
done
if ! is_number "$nodes" || [ "$nodes" -lt 1 ] || [ "$nodes" -gt 20 ]; then
  die "--nodes must be 1 to 20, not '$nodes'"
fi
if ! is_number "$ready_timeout" || [ "$ready_timeout" -lt 1 ]; then
  die "--timeout must be a whole number of seconds, at least 1"
fi
[ $((node_port + nodes - 1)) -le 65535 ] || die "--node-port $node_port leaves no room for $nodes nodes"

# ---------------------------------------------------------------- what must be there

[ -x "$bin" ] || die "wsvisor binary $bin not found or not executable: run 'make' first (or give --bin)"
[ -f "$config" ] || die "configuration file $config not found (give --config)"
template="$repo/deploy/haproxy/haproxy.cfg.in"
[ -f "$template" ] || die "HAProxy template $template not found"
redis_server=$(command -v redis-server) || die "redis-server not found: apt-get install redis-server"
haproxy=$(command -v haproxy || { [ -x /usr/sbin/haproxy ] && echo /usr/sbin/haproxy; }) ||
  die "haproxy not found: apt-get install haproxy"

node_ports=()
for ((i = 0; i < nodes; i++)); do
  node_ports+=($((node_port + i)))
done
all_ports=("$lb_port" "$redis_port" "${node_ports[@]}")
duplicate=$(printf '%s\n' "${all_ports[@]}" | sort | uniq -d | head -n 1)
[ -z "$duplicate" ] || die "port $duplicate is given twice (HAProxy $lb_port, Redis $redis_port, nodes ${node_ports[*]})"

# True when something accepts TCP connections on 127.0.0.1:$1.
listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for port in "${all_ports[@]}"; do
  if listening "$port"; then
    die "port $port is already taken on 127.0.0.1 (stop what listens there, or choose other ports: see --help)"
  fi
done

# ---------------------------------------------------------------------- processes

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/wsvisor-cluster.XXXXXX")
pids=()   # every child, in start order
names=()  # names[i] goes with pids[i]
stopping=0

# Starts "$@" in a session of its own (so that Ctrl-C in the terminal reaches this script
# only, and the children are stopped in order), output into $run_dir/$1.log.
start() {
  local name=$1
  shift
  setsid "$@" >"$run_dir/$name.log" 2>&1 </dev/null &
  pids+=("$!")
  names+=("$name")
}

alive() {
  kill -0 "$1" 2>/dev/null
}

# stop_group SECONDS INDEX...: SIGTERM to each, then waits up to SECONDS for all of
# them, then SIGKILL for what is left.
stop_group() {
  local seconds=$1 i deadline left
  shift
  for i in "$@"; do
    if alive "${pids[$i]}"; then kill -TERM "${pids[$i]}" 2>/dev/null || true; fi
  done
  deadline=$((SECONDS + seconds))
  while :; do
    left=0
    for i in "$@"; do
      if alive "${pids[$i]}"; then left=1; fi
    done
    if [ "$left" -eq 0 ] || [ "$SECONDS" -ge "$deadline" ]; then break; fi
    sleep 0.1
  done
  for i in "$@"; do
    if alive "${pids[$i]}"; then
      echo "cluster-local: ${names[$i]} did not exit within ${seconds}s of SIGTERM: killed" >&2
      kill -KILL "${pids[$i]}" 2>/dev/null || true
    fi
  done
}

kill_all() {
  local pid
  echo "cluster-local: killing everything" >&2
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  exit 130
}

# Stops everything: HAProxy first (no new connections), then the nodes (they drain and
# leave Redis while it is still there: shutdown.drain_timeout is 8 s by default), Redis
# last. A second Ctrl-C kills whatever is left at once.
cleanup() {
  local status=$? i lb=() wsvisor=() redis=()
  [ "$stopping" -eq 0 ] || return 0
  stopping=1
  trap kill_all INT TERM
  for i in "${!names[@]}"; do
    case "${names[$i]}" in
      haproxy) lb+=("$i") ;;
      redis) redis+=("$i") ;;
      *) wsvisor+=("$i") ;;
    esac
  done
  if [ "${#pids[@]}" -gt 0 ]; then
    echo "cluster-local: stopping (Ctrl-C again to kill at once)"
    [ "${#lb[@]}" -eq 0 ] || stop_group 5 "${lb[@]}"
    [ "${#wsvisor[@]}" -eq 0 ] || stop_group 20 "${wsvisor[@]}"
    [ "${#redis[@]}" -eq 0 ] || stop_group 5 "${redis[@]}"
    wait 2>/dev/null || true
    echo "cluster-local: stopped; logs in $run_dir"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Prints the last lines of a child's log, for a failure message.
log_tail() {
  echo "--- last lines of $run_dir/$1.log ---" >&2
  tail -n 20 "$run_dir/$1.log" >&2 || true
}

# The status code of GET $2 on 127.0.0.1:$1 ("" when there is no answer within 2 s).
http_status() {
  local line=""
  {
    exec 3<>"/dev/tcp/127.0.0.1/$1" &&
      printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3 &&
      IFS=' ' read -r -t 2 _ line _ <&3
  } 2>/dev/null || true
  exec 3>&-
  printf '%s' "$line"
}

# True when Redis on port $1 answers PING (+PONG, or -NOAUTH with a password set).
redis_answers() {
  local line=""
  {
    exec 4<>"/dev/tcp/127.0.0.1/$1" && printf 'PING\r\n' >&4 && IFS= read -r -t 2 line <&4
  } 2>/dev/null || true
  exec 4>&-
  [[ "$line" == +PONG* || "$line" == -NOAUTH* ]]
}

# wait_for NAME PID WHAT COMMAND...: polls COMMAND until it succeeds, for at most
# $ready_timeout seconds, failing at once if the process exits.
wait_for() {
  local name=$1 pid=$2 what=$3 deadline=$((SECONDS + ready_timeout))
  shift 3
  until "$@"; do
    if ! alive "$pid"; then
      local code=0
      wait "$pid" || code=$?
      log_tail "$name"
      die "$name exited (status $code) before $what"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log_tail "$name"
      die "$name: no $what within ${ready_timeout}s"
    fi
    sleep 0.1
  done
}

node_ready() {
  [ "$(http_status "$1" /health/ready)" = 200 ]
}

echo "cluster-local: logs in $run_dir"

redis_args=(--bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$run_dir")
if [ -n "${WSVISOR_CLUSTER_REDIS_PASSWORD:-}" ]; then
  # From a file rather than the command line, where ps would show it.
  password=${WSVISOR_CLUSTER_REDIS_PASSWORD//\\/\\\\}
  printf 'requirepass "%s"\n' "${password//\"/\\\"}" >"$run_dir/redis.conf"
  chmod 600 "$run_dir/redis.conf"
  redis_args=("$run_dir/redis.conf" "${redis_args[@]}")
fi
start redis "$redis_server" "${redis_args[@]}"
wait_for redis "${pids[-1]}" "answering PING on port $redis_port" redis_answers "$redis_port"

redis_url="redis://127.0.0.1:$redis_port/0"
for ((i = 1; i <= nodes; i++)); do
  port=${node_ports[$((i - 1))]}
  start "node-$i" "$bin" --config "$config" \
    --set server.host=127.0.0.1 --set "server.port=$port" \
    --set cluster.mode=redis --set "cluster.redis_url=$redis_url" --set "cluster.node_id=node-$i" \
    --set 'server.trusted_proxies=["127.0.0.1/32"]' \
    ${extra_sets[@]+"${extra_sets[@]}"}
done
for ((i = 1; i <= nodes; i++)); do
  wait_for "node-$i" "${pids[$i]}" "/health/ready 200 on port ${node_ports[$((i - 1))]}" \
    node_ready "${node_ports[$((i - 1))]}"
done

servers=""
for ((i = 1; i <= nodes; i++)); do
  servers+="    server node-$i 127.0.0.1:${node_ports[$((i - 1))]} check"$'\n'
done
cfg="$run_dir/haproxy.cfg"
while IFS= read -r line || [ -n "$line" ]; do
  if [[ "$line" =~ ^[[:space:]]*@SERVERS@[[:space:]]*$ ]]; then
    printf '%s' "$servers"
  else
    line=${line//@FRONTEND_ADDR@/127.0.0.1}
    printf '%s\n' "${line//@FRONTEND_PORT@/$lb_port}"
  fi
done <"$template" >"$cfg"
"$haproxy" -c -q -f "$cfg" >"$run_dir/haproxy-check.log" 2>&1 || {
  cat "$run_dir/haproxy-check.log" >&2
  die "haproxy rejected the generated $cfg"
}
start haproxy "$haproxy" -f "$cfg" -db
# Through HAProxy: its frontend accepts and at least one node is in the rotation.
wait_for haproxy "${pids[-1]}" "/health/ready 200 through port $lb_port" node_ready "$lb_port"

echo
echo "wsvisor cluster up ($nodes nodes, cluster.mode = redis):"
echo "  ws://127.0.0.1:$lb_port/ws                 through HAProxy (leastconn)"
echo "  http://127.0.0.1:$lb_port/health"
for ((i = 1; i <= nodes; i++)); do
  printf '  ws://127.0.0.1:%s/ws  node-%s, pid %s\n' "${node_ports[$((i - 1))]}" "$i" "${pids[$i]}"
done
echo "  $redis_url          Redis, pid ${pids[0]} (redis-cli -p $redis_port)"
echo "  logs: $run_dir"
echo "Ctrl-C stops everything."

# Reports every child that exits, and returns when none is left (or on a signal).
while :; do
  running=0
  for pid in "${pids[@]}"; do
    if alive "$pid"; then running=1; fi
  done
  [ "$running" -eq 1 ] || break
  exited=""
  code=0
  wait -n -p exited "${pids[@]}" || code=$?
  for i in "${!pids[@]}"; do
    if [ "${pids[$i]}" = "$exited" ]; then
      echo "cluster-local: ${names[$i]} (pid $exited) exited with status $code; the others keep running"
    fi
  done
done
echo "cluster-local: every process has exited"
