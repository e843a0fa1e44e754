#!/usr/bin/env bash
# cmicro's streaming benchmark: messages per second of one stream, server-stream ("down") and
# bidi (the client sends from one thread while it receives on another; the server answers each
# message), 64 B and 4 KiB payloads, for cmicro (bench/stream_cmicro.c) and go-micro v4.11
# (bench/go, stream-server / stream-client), each server with its own client and with the
# other's. Server on CPU 0, client on CPU 1 (taskset); REPS runs per cell, median shown.
#
#   bench/stream.sh                    REPS=3, N_C=200000 and N_GO=20000 messages per stream
#   QUICK=1 bench/stream.sh            a short run
#   KINDS, PAYLOADS                    the rows ("down bidi", "64 4096")
#
# gRPC C++ streaming is not measured (see docs/BENCHMARKS.md). All traffic is on 127.0.0.1;
# every run is bounded by its message count and a timeout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
WORK=${WORK:-/tmp/cmicro-bench}
if [ "${QUICK:-0}" = 1 ]; then REPS=${REPS:-1}; N_C=${N_C:-50000}; N_GO=${N_GO:-5000}; fi
REPS=${REPS:-3}
N_C=${N_C:-200000}
N_GO=${N_GO:-20000}
mkdir -p "$WORK"
log() { echo "== $*" >&2; }

log "building cmicro (release) in $WORK/build and the go-micro peer"
if [ ! -f "$WORK/build/build.ninja" ]; then
  meson setup "$WORK/build" "$root" --buildtype=release >/dev/null
fi
ninja -C "$WORK/build" bench/stream-cmicro >/dev/null
(cd "$here/go" && GOFLAGS=-mod=readonly go build -o "$WORK/gomicro-echo" .)
C="$WORK/build/bench/stream-cmicro"
G="$WORK/gomicro-echo"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
start() { # NAME CMD...: a server on CPU 0; sets ADDR
  local out="$WORK/stream-$1.out"; shift
  taskset -c 0 "$@" > "$out" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q '^listening ' "$out" && break; sleep 0.05; done
  ADDR=$(sed -n 's/^listening //p' "$out")
  [ -n "$ADDR" ] || { echo "server did not start: $(cat "$out")" >&2; exit 1; }
}
start cmicro "$C" server; A_C=$ADDR
start gomicro "$G" stream-server; A_G=$ADDR

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
run() { # CLIENT ADDR KIND PAYLOAD N: prints the median rate of REPS runs
  local bin=$1 addr=$2 kind=$3 payload=$4 n=$5 sub=client
  [ "$bin" = "$G" ] && sub=stream-client
  for _ in $(seq "$REPS"); do
    # A run that fails or times out counts as 0 (and is logged).
    { timeout 120 taskset -c 1 "$bin" $sub "$addr" "$kind" "$payload" "$n" ||
        echo "rate=0 ($bin $kind $payload to $addr failed: $?)" >&2; } |
      sed -n 's/.* rate=\([0-9]*\).*/\1/p'
  done | median
}

printf '| kind | payload | cmicro -> cmicro | go-micro -> go-micro | cmicro client -> go-micro | go-micro client -> cmicro |\n'
printf '| --- | --- | --- | --- | --- | --- |\n'
for kind in ${KINDS:-down bidi}; do
  for payload in ${PAYLOADS:-64 4096}; do
    cc=$(run "$C" "$A_C" $kind $payload "$N_C")
    gg=$(run "$G" "$A_G" $kind $payload "$N_GO")
    cg=$(run "$C" "$A_G" $kind $payload "$N_GO")
    gc=$(run "$G" "$A_C" $kind $payload "$N_C")
    label=$([ $kind = down ] && echo server-stream || echo bidi)
    printf '| %s | %s B | %s | %s | %s | %s |\n' "$label" "$payload" "$cc" "$gg" "$cg" "$gc"
  done
done
