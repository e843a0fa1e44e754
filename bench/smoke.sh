#!/usr/bin/env bash
# The bench smoke (meson test suite 'bench'): proves in a few seconds that the load generator,
# the cmicro echo and the raw echo work together on 127.0.0.1, closed and open loop. It measures
# nothing worth keeping; bench/run.sh is the benchmark.
#   smoke.sh LOADGEN ECHO_CMICRO ECHO_RAW
set -euo pipefail
loadgen=$1; cmicro=$2; raw=$3
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

start() { # name binary -> sets addr, pid
  "$2" 0 > "$tmp/$1.out" 2> "$tmp/$1.err" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    if grep -q '^listening ' "$tmp/$1.out"; then break; fi
    sleep 0.05
  done
  addr=$(sed -n 's/^listening //p' "$tmp/$1.out")
  [ -n "$addr" ] || { echo "$1 did not start"; cat "$tmp/$1.err"; exit 1; }
}

fail=0; passed=0
run() { # label args...
  local label=$1; shift
  if out=$("$loadgen" --label "$label" "$@"); then
    echo "$out"; passed=$((passed + 1))
  else
    echo "FAIL $label: $out"; fail=$((fail + 1))
  fi
}

start cmicro "$cmicro"; cm_addr=$addr; cm_pid=$pid
start raw "$raw"; raw_addr=$addr; raw_pid=$pid
for payload in 64 4096; do
  run "cmicro-c16-$payload" --addr "$cm_addr" --conns 16 --payload $payload --warmup 0.1 \
    --duration 0.4 --max-requests 200000 --server-pid "$cm_pid"
  run "raw-c16-$payload" --addr "$raw_addr" --conns 16 --payload $payload --warmup 0.1 \
    --duration 0.4 --max-requests 200000 --server-pid "$raw_pid"
done
run cmicro-open --addr "$cm_addr" --conns 8 --payload 64 --warmup 0.1 --duration 0.4 \
  --rate 2000 --server-pid "$cm_pid"
# The server stops cleanly on SIGTERM (the callgrind figure relies on it).
kill -TERM "$cm_pid"
if ! wait "$cm_pid"; then echo "FAIL echo-cmicro exit status"; fail=$((fail + 1)); else passed=$((passed + 1)); fi
echo "$passed passed, $fail failed"
[ "$fail" -eq 0 ]
