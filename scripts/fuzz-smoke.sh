#!/usr/bin/env bash
# Builds the libFuzzer harnesses of test/fuzz with clang (-fsanitize=fuzzer,address,undefined)
# in their own build dir and runs each for a bounded time on top of its checked-in corpus.
# Fails on any crash, leak, timeout, out-of-memory or sanitizer report; the reproducer is left
# in the artifacts folder it names.
#   scripts/fuzz-smoke.sh [HARNESS...]      default: every harness
# Environment:
#   FUZZ_SECONDS   time per harness (default 30)
#   FUZZ_PARALLEL  harnesses run at once (default 2: one per core of the CI machine)
#   FUZZ_BUILD     the build dir (default build-fuzz)
# New inputs the run finds go to $FUZZ_BUILD/fuzz-corpus/HARNESS (kept across runs, never the
# checked-in corpus). A crash found: fix the code, copy the reproducer into
# test/fuzz/corpus/HARNESS/regression-<what> (it then runs in every build as the unit test
# fuzz-replay-HARNESS) and add a unit test where one fits. Long campaigns: scripts/fuzz-long.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-30}
parallel=${FUZZ_PARALLEL:-2}
dir=${FUZZ_BUILD:-build-fuzz}
all=(http-request http-response codec-proto codec-json mdns-packet consul-json registry-tags
     micro-error codec-envelope http-server trace-context
     broker-msg stream-server)
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=("${all[@]}")

if [ ! -f "$dir/build.ninja" ]; then
  CC=clang meson setup "$dir" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debugoptimized \
    -Dc_args='-fsanitize=fuzzer-no-link -fno-sanitize-recover=all -fno-omit-frame-pointer'
fi
targets=()
for h in "${harnesses[@]}"; do targets+=("test/fuzz/fuzz-$h"); done
ninja -C "$dir" "${targets[@]}"

logs=$dir/fuzz-logs
artifacts=$dir/fuzz-artifacts
mkdir -p "$logs" "$artifacts"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# One harness: its log, its CPU seconds (user + system) and its exit status in $logs.
run_one() {
  local h=$1 dict=() work=$dir/fuzz-corpus/$1
  mkdir -p "$work"
  [ -f "test/fuzz/dict/$h.dict" ] && dict=(-dict="test/fuzz/dict/$h.dict")
  local TIMEFORMAT='%U %S' rc=0
  { time "$dir/test/fuzz/fuzz-$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$artifacts/$h-" "${dict[@]}" \
      "$work" "test/fuzz/corpus/$h" >"$logs/$h.log" 2>&1 || rc=$?; } 2>"$logs/$h.time"
  echo "$rc" >"$logs/$h.status"
}

echo "== fuzz smoke: ${#harnesses[@]} harnesses, ${seconds}s each, $parallel at a time"
for h in "${harnesses[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
  run_one "$h" &
done
wait

failed=0
printf '%-14s %6s %10s %8s %8s  %s\n' harness cpu_s runs cov corpus result
for h in "${harnesses[@]}"; do
  rc=$(cat "$logs/$h.status")
  cpu=$(awk '{printf "%.1f", $1 + $2}' "$logs/$h.time")
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$h.log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$logs/$h.log" | tail -1 | cut -d' ' -f2)
  corp=$(grep -o 'corp: [0-9]*' "$logs/$h.log" | tail -1 | cut -d' ' -f2)
  result=ok
  if [ "$rc" -ne 0 ]; then
    result="FAILED (exit $rc), log $logs/$h.log"
    failed=1
  fi
  printf '%-14s %6s %10s %8s %8s  %s\n' "$h" "$cpu" "${runs:-?}" "${cov:-?}" "${corp:-?}" \
    "$result"
done
if [ $failed -ne 0 ]; then
  for h in "${harnesses[@]}"; do
    if [ "$(cat "$logs/$h.status")" -ne 0 ]; then
      echo "---- $h (last lines of $logs/$h.log)"
      tail -40 "$logs/$h.log"
    fi
  done
  echo "reproducers: $(ls "$artifacts" | tr '\n' ' ')"
  echo "replay one: $dir/test/fuzz/fuzz-HARNESS $artifacts/FILE"
  exit 1
fi
echo "== fuzz smoke passed"
