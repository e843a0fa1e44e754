#!/usr/bin/env bash
# Two builds of the echo server in interleaved rounds: each round runs build A, then build B,
# each with the inline handler and then the default one (BENCH_WORKER=1), one server process per
# build and handler, serving bench/loadgen at 1, 64 and 1,000 connections in turn (64 B, 1 s
# warm-up, 2 s measured). Prints one line per process: req/s, p50, server CPU per call and peak
# RSS (VmHWM) after each step.
#   bench/ab.sh A_BENCH_DIR B_BENCH_DIR [ROUNDS]
# A bench dir is a release build's bench/ folder (echo-cmicro, loadgen), e.g. one made by
#   git worktree add /tmp/old COMMIT && meson setup /tmp/old-build /tmp/old --buildtype=release &&
#   ninja -C /tmp/old-build bench/echo-cmicro bench/loadgen
# The server runs on CPU 0, the load generator (B's) on CPU 1; all traffic is on 127.0.0.1 and
# every run stops by itself.
set -euo pipefail
a=${1:?usage: bench/ab.sh A_BENCH_DIR B_BENCH_DIR [ROUNDS]}
b=${2:?usage: bench/ab.sh A_BENCH_DIR B_BENCH_DIR [ROUNDS]}
rounds=${3:-3}
loadgen=$b/loadgen
out=$(mktemp)
trap 'rm -f "$out"' EXIT

one() { # BENCH_DIR WORKER
  BENCH_WORKER=$2 taskset -c 0 "$1/echo-cmicro" 0 > "$out" 2>/dev/null &
  local pid=$! addr=""
  for _ in $(seq 200); do grep -q '^listening ' "$out" && break; sleep 0.02; done
  addr=$(sed -n 's/^listening //p' "$out")
  printf 'idle_rss_kb=%s ' "$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")"
  for c in 1 64 1000; do
    taskset -c 1 "$loadgen" --addr "$addr" --conns "$c" --payload 64 --warmup 1 --duration 2 \
      --max-requests 100000000 --server-pid "$pid" --label ab |
      tr ' ' '\n' | grep -E '^(rps|p50_us|cpu_per_100k)=' | sed "s/^/c$c./" | tr '\n' ' '
    printf 'c%s.rss_kb=%s ' "$c" "$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
  done
  echo
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

for r in $(seq "$rounds"); do
  for build in A B; do
    dir=$a
    [ "$build" = B ] && dir=$b
    for w in 0 1; do
      echo "round=$r build=$build worker=$w $(one "$dir" "$w")"
    done
  done
done
