#!/usr/bin/env bash
# A long fuzzing campaign outside CI: every harness of test/fuzz in turn, for an equal share of
# HOURS, with libFuzzer's fork mode using both cores of the machine. It keeps going after a
# crash (each reproducer lands in the artifacts folder) and ends with a summary.
#   scripts/fuzz-long.sh HOURS [HARNESS...]
# Environment: FUZZ_BUILD (default build-fuzz, shared with scripts/fuzz-smoke.sh),
# FUZZ_WORKERS (default 2). The corpus grows in $FUZZ_BUILD/fuzz-corpus/HARNESS and is kept
# across campaigns. To refresh a checked-in corpus with what a campaign found, minimised:
#   $FUZZ_BUILD/test/fuzz/fuzz-NAME -merge=1 test/fuzz/corpus/NAME $FUZZ_BUILD/fuzz-corpus/NAME
# (keep the checked-in corpora small: seeds and regressions, a few dozen files).
set -euo pipefail
cd "$(dirname "$0")/.."

hours=${1:?usage: scripts/fuzz-long.sh HOURS [HARNESS...]}
shift
dir=${FUZZ_BUILD:-build-fuzz}
workers=${FUZZ_WORKERS:-2}
all=(http-request http-response codec-proto codec-json mdns-packet consul-json registry-tags
     micro-error codec-envelope http-server trace-context
     broker-msg stream-server)
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=("${all[@]}")
each=$(awk -v h="$hours" -v n=${#harnesses[@]} 'BEGIN { printf "%d", h * 3600 / n }')

# The same build as scripts/fuzz-smoke.sh's (same dir, same options).
if [ ! -f "$dir/build.ninja" ]; then
  CC=clang meson setup "$dir" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debugoptimized \
    -Dc_args='-fsanitize=fuzzer-no-link -fno-sanitize-recover=all -fno-omit-frame-pointer'
fi
targets=()
for h in "${harnesses[@]}"; do targets+=("test/fuzz/fuzz-$h"); done
ninja -C "$dir" "${targets[@]}"

logs=$dir/fuzz-long-logs
artifacts=$dir/fuzz-artifacts
mkdir -p "$logs" "$artifacts"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
echo "== fuzz campaign: ${#harnesses[@]} harnesses, ${each}s each, $workers workers"
for h in "${harnesses[@]}"; do
  work=$dir/fuzz-corpus/$h
  mkdir -p "$work"
  dict=()
  [ -f "test/fuzz/dict/$h.dict" ] && dict=(-dict="test/fuzz/dict/$h.dict")
  echo "-- $h from $(date +%H:%M)"
  TIMEFORMAT='%U %S'
  { time "$dir/test/fuzz/fuzz-$h" -fork="$workers" -ignore_crashes=1 -ignore_timeouts=1 \
      -ignore_ooms=1 -max_total_time="$each" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$artifacts/$h-" "${dict[@]}" \
      "$work" "test/fuzz/corpus/$h" >"$logs/$h.log" 2>&1 || true; } 2>"$logs/$h.time"
  runs=$(grep -o '^#[0-9]*' "$logs/$h.log" | tail -1 | tr -d '#')
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*' "$logs/$h.log" | tail -1)
  echo "   cpu $(awk '{printf "%.0f", $1 + $2}' "$logs/$h.time") s, ${runs:-?} runs, $cov"
done
found=$(ls "$artifacts" 2>/dev/null | wc -l)
echo "== campaign done: $found reproducers in $artifacts"
ls "$artifacts" 2>/dev/null || true
[ "$found" -eq 0 ]
