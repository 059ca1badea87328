# shellcheck shell=bash
# Shared by bench/run.sh and bench/ab_echo.sh (sourced, not run): how wsvisor is started
# for a benchmark, and the bounded wait for a server's listening port.

# One io thread (the server is pinned to one core) and its limits out of the way.
# shellcheck disable=SC2034  # used by the scripts that source this file
WSVISOR_COMMON=(--set server.host=127.0.0.1 --set server.io_threads=1 --set log.level=warn
  --set limits.max_per_ip=0 --set limits.accept_rate=1000000 --set limits.accept_burst=1000000
  --set limits.max_connections=20000 --set limits.max_pending_handshakes=20000)

wait_listening() {  # port pid [tries of 50 ms, 200 = 10 s]: 0 once listening, 1 if pid died or time ran out
  local i
  for ((i = 0; i < ${3:-200}; i++)); do
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
