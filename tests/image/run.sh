#!/usr/bin/env bash
# The container image test (issue 12). With podman, or docker with an engine that
# answers, it builds the Dockerfile (`make image`), starts the image with PORT set to a
# free port on the host network and checks what an operator relies on:
#   readiness (/health/ready 200), an echo over WebSocket, the server running as uid
#   10001, no apt caches left in the image, the image's HEALTHCHECK passing (podman
#   healthcheck run, and its command run in the container), and a SIGTERM that drains
#   an open connection (1001) and exits 0.
# Without either engine it prints one `SKIP: ...` line and exits 0 at once (CI machines
# have neither; .ci/run calls this script only when one is there).
#
#   tests/image/run.sh        (as root for podman; the whole test took 218 s on 2 cores
#                              on 2026-12-04, debootstrap of the bases included, once the
#                              build stage installed only the compiler and libraries;
#                              later runs reuse the dependency layer)
#
# It removes the container, the client and its temporary files whatever happens; the
# images (the test image, and the bases debootstrap-base.sh may have made) stay, as the
# layer cache of the next run. Environment: WSVISOR_TEST_IMAGE (the tag, default
# localhost/wsvisor:image-test), WSVISOR_IMAGE_BUILD_TIMEOUT (seconds, default 3600).
set -euo pipefail
cd "$(dirname "$0")/../.."

started_at=$SECONDS
step() { echo "==> [$((SECONDS - started_at))s] $*"; }
fail() {
  echo "FAIL: tests/image/run.sh: $*" >&2
  exit 1
}

# --------------------------------------------------------------- which engine, if any
# docker only when an engine answers: the client alone (as on machines that have the
# docker CLI and no daemon) can neither build nor run. Same choice as `make image`.
engine=""
if command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then
  engine=docker
elif command -v podman >/dev/null 2>&1; then
  engine=podman
else
  echo "SKIP: tests/image/run.sh: neither podman nor a docker engine (docker info fails)"
  exit 0
fi

python=/usr/bin/python3
"$python" -c 'import websockets' 2>/dev/null ||
  fail "needs /usr/bin/python3 with python3-websockets (tools/install-deps.sh installs it)"

image=${WSVISOR_TEST_IMAGE:-localhost/wsvisor:image-test}
name=wsvisor-image-test-$$
tmp=$(mktemp -d /tmp/wsvisor-image-test.XXXXXX)
bounded_pid=""
# LOG SECONDS COMMAND...: COMMAND under timeout, its output in LOG ("": this script's),
# in the background and waited for, so that a signal to this script is handled at once
# (bash defers traps until a foreground command ends) and cleanup can stop it: timeout
# passes the TERM on to COMMAND's process group. (A redirection of the call itself would
# also catch the output of a trap that runs meanwhile, the cleanup's.)
bounded() {
  local log=$1 seconds=$2 code=0
  shift 2
  if [ -n "$log" ]; then
    timeout "$seconds" "$@" >"$log" 2>&1 &
  else
    timeout "$seconds" "$@" &
  fi
  bounded_pid=$!
  wait "$bounded_pid" || code=$?
  bounded_pid=""
  return "$code"
}
cleanup() {
  local code=$?
  if [ -n "$bounded_pid" ]; then
    kill -TERM "$bounded_pid" 2>/dev/null || true
    wait "$bounded_pid" 2>/dev/null || true
  fi
  if "$engine" container inspect "$name" >/dev/null 2>&1; then
    if [ "$code" -ne 0 ]; then
      echo "--- container log ---" >&2
      "$engine" logs "$name" 2>&1 | tail -n 40 >&2 || true
    fi
    "$engine" rm -f "$name" >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
  echo "==> [$((SECONDS - started_at))s] tests/image/run.sh: $([ "$code" -eq 0 ] && echo passed || echo FAILED)"
}
trap cleanup EXIT
# An interrupt or a CI timeout's SIGTERM: the cleanup, and a failing exit code.
trap 'exit 130' INT
trap 'exit 143' TERM
step "engine: $engine ($("$engine" --version))"

# ---------------------------------------------------------------------- base images
# The Dockerfile's FROM images, from local storage or the registry. A machine that
# reaches a Debian mirror but not docker.io (this project's sandboxes) gets them from
# debootstrap, under the same names, so that the Dockerfile builds unchanged.
# shellcheck disable=SC2013 # image names are single words
for base in $(awk '/^FROM /{print $2}' Dockerfile | sort -u); do
  if "$engine" image inspect "$base" >/dev/null 2>&1; then continue; fi
  step "pulling $base"
  if bounded "$tmp/pull.log" 300 "$engine" pull "$base"; then continue; fi
  sed 's/^/    /' "$tmp/pull.log" | tail -n 3
  command -v debootstrap >/dev/null ||
    fail "cannot pull $base and debootstrap is missing to build it (apt-get install debootstrap)"
  step "the registry is unreachable: building the debian bases with debootstrap (about 3 minutes)"
  bounded "" 1200 tests/image/debootstrap-base.sh "$engine" || fail "debootstrap-base.sh failed"
  "$engine" image inspect "$base" >/dev/null 2>&1 || fail "debootstrap-base.sh made no $base"
done

# ---------------------------------------------------------------------------- build
step "make image IMAGE=$image ENGINE=$engine"
bounded "$tmp/build.log" "${WSVISOR_IMAGE_BUILD_TIMEOUT:-3600}" \
  make --no-print-directory image IMAGE="$image" ENGINE="$engine" || {
  tail -n 40 "$tmp/build.log" >&2
  fail "the image did not build (log above)"
}
size=$("$engine" image inspect --format '{{.Size}}' "$image")
step "built $image: $((size / 1000000)) MB"

# The checks below read the image's own configuration, as a platform would.
healthcheck=$("$engine" image inspect --format '{{json .Config.Healthcheck}}' "$image")
[ "$("$engine" image inspect --format '{{.Config.User}}' "$image")" = "10001:10001" ] ||
  fail "the image's USER is not 10001:10001"
case "$healthcheck" in
  *'"--health"'*) ;;
  *) fail "the image has no HEALTHCHECK running wsvisor --health (got: $healthcheck); podman keeps it only with --format docker" ;;
esac

# ------------------------------------------------------------ how a container runs here
# Engines' defaults do not run everywhere. Seen on this project's sandboxes (no
# CAP_SYS_RESOURCE, a cgroup v1/v2 hybrid): crun refuses the hybrid cgroups, and podman's
# default nofile and nproc limits exceed what the host may grant. The first set of
# options that runs `wsvisor --version` is the one the test uses.
nofile=$(ulimit -n)
[[ "$nofile" =~ ^[0-9]+$ ]] || nofile=1048576
option_sets=(
  ""
  "--ulimit nofile=$nofile:$nofile --ulimit nproc=4096:4096"
)
if [ "$engine" = podman ] && command -v runc >/dev/null; then
  option_sets+=("--runtime runc --ulimit nofile=$nofile:$nofile --ulimit nproc=4096:4096")
fi
run_options=""
found=no
for options in "${option_sets[@]}"; do
  # shellcheck disable=SC2086 # the option sets are word lists
  if timeout 60 "$engine" run --rm --network host $options \
    --entrypoint /usr/local/bin/wsvisor "$image" --version >"$tmp/probe.log" 2>&1; then
    run_options=$options
    found=yes
    break
  fi
done
if [ "$found" = no ]; then
  grep -v systemd "$tmp/probe.log" | tail -n 5 >&2
  fail "$engine cannot run a container here with any of: ${option_sets[*]:1} (podman without systemd and with crun on hybrid cgroups may need runc: apt-get install runc)"
fi
step "run options: ${run_options:-none, the defaults work}"

# -------------------------------------------------------------------------------- run
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
step "starting $name with PORT=$port (host network)"
# podman without systemd logs that it cannot schedule the healthcheck timer; the check
# is run by hand below, so that is noise.
# shellcheck disable=SC2086
"$engine" run -d --name "$name" --network host $run_options -e PORT="$port" "$image" \
  >"$tmp/run.log" 2>&1 || {
  cat "$tmp/run.log" >&2
  fail "$engine run failed"
}

http_status() { # PORT PATH: the status of a GET, or 000 when nothing answers
  "$python" - "$@" <<'EOF'
import http.client, sys
try:
    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=1)
    c.request("GET", sys.argv[2])
    print(c.getresponse().status)
except OSError:
    print("000")
EOF
}

# Readiness within 30 s (start-up takes well under a second); a container that exits
# meanwhile fails at once.
ready=no
for _ in $(seq 1 150); do
  [ "$("$engine" inspect --format '{{.State.Running}}' "$name")" = true ] ||
    fail "the container exited before it was ready"
  if [ "$(http_status "$port" /health/ready)" = 200 ]; then
    ready=yes
    break
  fi
  sleep 0.2
done
[ "$ready" = yes ] || fail "/health/ready did not answer 200 within 30 s"
step "ready: /health/ready 200 on port $port"

"$python" tests/image/ws_client.py echo "$port" || fail "WebSocket echo"

# PID 1 of the container is the server; its real, effective, saved and fs uids must all be
# 10001 (read inside the container, so that a user-namespaced engine reports the same).
# shellcheck disable=SC2016 # awk's own fields
uids=$("$engine" exec "$name" awk '/^Uid:/ {print $2, $3, $4, $5}' /proc/1/status)
command_line=$("$engine" exec "$name" sh -c "tr '\\0' ' ' </proc/1/cmdline")
command_line=${command_line% }
[ "$uids" = "10001 10001 10001 10001" ] || fail "PID 1 ($command_line) runs with uids $uids, expected 10001"
step "non-root: PID 1 ($command_line) runs as uid 10001"

# Neither the package lists nor apt's caches may be left in the image.
leftovers=$("$engine" exec "$name" sh -c \
  'ls -d /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb 2>/dev/null || true')
[ -z "$leftovers" ] || fail "apt caches left in the image: $leftovers"
step "no apt caches in the image"

# The image's HEALTHCHECK: podman's own verdict, and the command itself for its output.
if [ "$engine" = podman ] && podman healthcheck run --help >/dev/null 2>&1; then
  podman healthcheck run "$name" >"$tmp/health.log" 2>&1 || {
    cat "$tmp/health.log" >&2
    fail "podman healthcheck run reports unhealthy"
  }
  step "podman healthcheck run: healthy"
fi
mapfile -t health_command < <("$python" -c '
import json, sys
test = json.loads(sys.argv[1])["Test"]
# ["CMD", argv...] or ["CMD-SHELL", "command"]
print("\n".join(test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]))' "$healthcheck")
health_output=$("$engine" exec "$name" "${health_command[@]}" 2>&1) ||
  fail "the HEALTHCHECK command (${health_command[*]}) failed: $health_output"
[ "$health_output" = alive ] || fail "the HEALTHCHECK command printed '$health_output', expected 'alive'"
step "HEALTHCHECK command (${health_command[*]}): $health_output"

# ------------------------------------------------------------------------------ drain
# `stop` sends the image's STOPSIGNAL (SIGTERM) and waits: a connection held open across
# it must be closed with 1001 (ws_client.py checks), and the process must exit 0 within
# drain_timeout (8 s) and a margin, before stop's own SIGKILL at 20 s.
"$python" tests/image/ws_client.py drain "$port" "$engine" stop --time 20 "$name" ||
  fail "drain"
"$engine" logs "$name" >"$tmp/container.log" 2>&1 || true
exit_code=$("$engine" inspect --format '{{.State.ExitCode}}' "$name")
[ "$exit_code" = 0 ] || fail "exit code $exit_code after SIGTERM, expected 0"
grep -q 'drain complete' "$tmp/container.log" || fail "no 'drain complete' in the server's log"
step "SIGTERM: drained and exited 0"
