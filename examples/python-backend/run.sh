#!/usr/bin/env bash
# Starts the example backend and wsvisor in gateway mode in front of it; Ctrl-C stops both.
#
#   examples/python-backend/run.sh [--backend-port P] [--ws-port W] [backend.py options]
#                                  [-- wsvisor options]
#
# Ports are free ones unless given. Options before `--` that run.sh does not know go to
# backend.py (--max-tabs 3, --reject eve, --test-controls, ...); everything after `--`
# goes to wsvisor (--set limits.max_per_user=5, ...).
#
# Environment: WSVISOR_BIN (default <repo>/build/wsvisor); WSVISOR_API_KEY and
# WSVISOR_UPSTREAM_TOKEN (random ones when unset; both processes read these names);
# WSVISOR_AUTH_JWT_SECRET is passed on to wsvisor as it is (for --set auth.mode=jwt).
# PYTHON (default /usr/bin/python3). READY_TIMEOUT (default 15 s) bounds each wait.
# shellcheck disable=SC2317  # the functions that traps and wait_until call
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
WSVISOR_BIN="${WSVISOR_BIN:-$REPO/build/wsvisor}"
PYTHON="${PYTHON:-/usr/bin/python3}"
[ -x "$PYTHON" ] || PYTHON=python3
READY_TIMEOUT="${READY_TIMEOUT:-15}"

backend_port=""
ws_port=""
backend_args=()
wsvisor_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --backend-port) backend_port="${2:?--backend-port needs a port}"; shift 2 ;;
    --ws-port) ws_port="${2:?--ws-port needs a port}"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; wsvisor_args=("$@"); break ;;
    *) backend_args+=("$1"); shift ;;
  esac
done

die() { echo "run.sh: $*" >&2; exit 1; }

[ -x "$WSVISOR_BIN" ] || die "no wsvisor binary at $WSVISOR_BIN (run \`make\` in $REPO, or set WSVISOR_BIN)"

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
random_secret() {
  "$PYTHON" -c 'import secrets; print(secrets.token_hex(16))'
}

backend_port="${backend_port:-$(free_port)}"
ws_port="${ws_port:-$(free_port)}"
api_key_note="(\$WSVISOR_API_KEY)"
if [ -z "${WSVISOR_API_KEY:-}" ]; then
  WSVISOR_API_KEY="$(random_secret)"
  api_key_note="$WSVISOR_API_KEY (generated for this run)"
fi
export WSVISOR_API_KEY
export WSVISOR_UPSTREAM_TOKEN="${WSVISOR_UPSTREAM_TOKEN:-$(random_secret)}"
backend_url="http://127.0.0.1:$backend_port"

run_dir="$(mktemp -d "${TMPDIR:-/tmp}/wsvisor-example.XXXXXX")"
backend_pid=""
wsvisor_pid=""

# Stops both processes. After Ctrl-C they got the terminal's SIGINT already: a second
# signal would make wsvisor skip its drain, so they get 10 s to stop by themselves
# first. Then SIGTERM, and SIGKILL for one still running 10 s later (wsvisor drains for
# at most shutdown.drain_timeout, 8 s by default).
interrupted=""
stopping=""
wait_gone() {
  local _
  for _ in $(seq $(( $1 * 10 ))); do
    alive=""
    for pid in $wsvisor_pid $backend_pid; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && return 0
    sleep 0.1
  done
  return 1
}
stop_all() {
  [ -n "$stopping" ] && return
  stopping=1
  if [ -z "$interrupted" ] || ! wait_gone 10; then
    for pid in $wsvisor_pid $backend_pid; do kill -TERM "$pid" 2>/dev/null || true; done
    wait_gone 10 || true
  fi
  for pid in $wsvisor_pid $backend_pid; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$run_dir"
}
trap stop_all EXIT
trap 'interrupted=1; exit 130' INT
trap 'exit 143' TERM

# Waits until the command succeeds, at most READY_TIMEOUT seconds, while pid lives.
wait_until() {
  local what="$1" pid="$2"; shift 2
  local deadline=$(( SECONDS + READY_TIMEOUT ))
  until "$@"; do
    kill -0 "$pid" 2>/dev/null || die "$what exited before it was ready"
    [ $SECONDS -lt $deadline ] || die "$what not ready within ${READY_TIMEOUT} s"
    sleep 0.1
  done
}

# The backend: the same secrets from the environment; WSVISOR_URL is given as a flag
# instead, because wsvisor refuses a WSVISOR_ variable that names no key of its own.
"$PYTHON" "$HERE/backend.py" --port "$backend_port" --wsvisor "http://127.0.0.1:$ws_port" \
  "${backend_args[@]}" > "$run_dir/backend.out" &
backend_pid=$!
wait_until backend "$backend_pid" grep -q '^listening on ' "$run_dir/backend.out"

config_args=()
[ -f "$REPO/config/wsvisor.toml" ] && config_args=(--config "$REPO/config/wsvisor.toml")
env -u WSVISOR_URL "$WSVISOR_BIN" "${config_args[@]}" \
  --set server.host=127.0.0.1 --set "server.port=$ws_port" \
  --set app.mode=gateway \
  --set "upstream.url=$backend_url" \
  --set gateway.connect_path=/connect \
  --set "events.url=$backend_url/events" \
  --set 'upstream.forward_headers=["Cookie","Authorization","User-Agent","Origin","X-Demo-User"]' \
  "${wsvisor_args[@]}" &
wsvisor_pid=$!

ready() {
  "$PYTHON" - "$ws_port" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health/ready", timeout=1) as r:
        sys.exit(0 if r.status == 200 else 1)
except OSError:
    sys.exit(1)
EOF
}
wait_until wsvisor "$wsvisor_pid" ready

cat <<EOF

  page        $backend_url/
  WebSocket   ws://127.0.0.1:$ws_port/ws   (try: x-demo-user header, or log in on the page)
  registry    $backend_url/registry
  server API  http://127.0.0.1:$ws_port/api/info   X-API-Key: $api_key_note

  Ctrl-C stops both.
EOF

# Until either one exits (or Ctrl-C); then the EXIT trap stops the other.
set +e
wait -n "$backend_pid" "$wsvisor_pid"
status=$?
[ -n "$stopping" ] || echo "run.sh: a process exited (status $status); stopping the other" >&2
exit "$status"
