#!/usr/bin/env bash
# Runs every fuzz target of a WSVISOR_FUZZ build for SECONDS each, starting from its seed
# corpus in tests/fuzz/corpus/<name>/ (read only: what the run finds goes to the build
# directory, so the committed seeds stay small and chosen). A crash, a leak, an ASan or
# UBSan report or a timeout fails the run and leaves the input in
# <build>/fuzz-artifacts/: turn it into a unit test, then add it to the seeds.
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS [NAME ...]
set -euo pipefail
build=${1:?build directory}
seconds=${2:?seconds per fuzzer}
shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(hub_frame hub_wire jwt config fault_body http_request connect_answer hub_api server_api upstream_response)
mkdir -p "$build/fuzz-artifacts"
failed=()
for name in "${names[@]}"; do
  work=$build/fuzz-corpus/$name
  mkdir -p "$work"
  echo "==> fuzz_$name for ${seconds}s (seeds: tests/fuzz/corpus/$name)"
  if ! "$build/tests/fuzz/fuzz_$name" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$build/fuzz-artifacts/$name-" "$work" "$here/corpus/$name" \
      > "$build/fuzz-$name.log" 2>&1; then
    failed+=("$name")
    tail -40 "$build/fuzz-$name.log"
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$build/fuzz-$name.log" || true
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: failed: ${failed[*]} (inputs in $build/fuzz-artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${#names[@]} fuzzers ran ${seconds}s each, nothing found"
