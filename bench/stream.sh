#!/usr/bin/env bash
# cmicro's streaming benchmark: messages per second of one stream, server-stream ("down") and
# bidi (the client sends from one thread while it receives on another; the server answers each
# message), 64 B and 4 KiB payloads, for cmicro (bench/stream_cmicro.c) and go-micro v4.11
# (bench/go, stream-server / stream-client), each server with its own client and with the
# other's, and gRPC C++ (bench/grpc/stream.cc, Debian's libgrpc++: its own client only, the
# protocols differ; apt-get installs libgrpc++-dev when missing and the script runs as root,
# see bench/lib.sh; without it the gRPC column says "-"). Server on CPU 0, client on CPU 1
# (taskset); REPS runs per cell, median shown, then the ratios of the medians cmicro -> cmicro
# over go-micro -> go-micro and over gRPC -> gRPC. Every run's line is kept in
# $WORK/stream-runs.txt.
#
#   bench/stream.sh                    REPS=3, N_C=N_GRPC=200000 and N_GO=20000 messages per
#                                      stream (to a cmicro, gRPC, go-micro server)
#   QUICK=1 bench/stream.sh            a short run (REPS=1, 50000 / 5000 messages)
#   KINDS, PAYLOADS                    the rows ("down bidi", "64 4096")
#   SKIP_GRPC=1                        no gRPC column (SKIP_GRPC_INSTALL=1: no apt-get for it)
#
# All traffic is on 127.0.0.1; every run is bounded by its message count and a timeout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
WORK=${WORK:-/tmp/cmicro-bench}
if [ "${QUICK:-0}" = 1 ]; then REPS=${REPS:-1}; N_C=${N_C:-50000}; N_GO=${N_GO:-5000}; fi
REPS=${REPS:-3}
N_C=${N_C:-200000}
N_GO=${N_GO:-20000}
N_GRPC=${N_GRPC:-$N_C}
mkdir -p "$WORK"
log() { echo "== $*" >&2; }
# shellcheck source=bench/lib.sh
. "$here/lib.sh"  # grpc_peer
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

log "building cmicro (release) in $WORK/build and the go-micro peer"
if [ ! -f "$WORK/build/build.ninja" ]; then
  meson setup "$WORK/build" "$root" --buildtype=release >/dev/null
fi
ninja -C "$WORK/build" bench/stream-cmicro >/dev/null
(cd "$here/go" && GOFLAGS=-mod=readonly go build -o "$WORK/gomicro-echo" .)
C="$WORK/build/bench/stream-cmicro"
G="$WORK/gomicro-echo"
R="$WORK/grpc/grpc-stream"
grpc=0
if [ "${SKIP_GRPC:-0}" != 1 ] && grpc_peer "$WORK/grpc"; then grpc=1; fi

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
if [ $grpc = 1 ]; then start grpc "$R" server; A_R=$ADDR; fi

runs="$WORK/stream-runs.txt"  # every run's line, for the spread behind the medians
: > "$runs"
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
run() { # CLIENT ADDR KIND PAYLOAD N: prints the median rate of REPS runs
  local bin=$1 addr=$2 kind=$3 payload=$4 n=$5 sub=client
  [ "$bin" = "$G" ] && sub=stream-client
  for _ in $(seq "$REPS"); do
    # A run that fails or times out counts as 0 (and is logged).
    { timeout 120 taskset -c 1 "$bin" $sub "$addr" "$kind" "$payload" "$n" ||
        { echo "== $bin $kind $payload to $addr failed ($?): counted as 0" >&2
          echo " rate=0"; }; } |
      sed -n "s|^|$(basename "$bin") to $addr: |; /rate=/p" | tee -a "$runs" |
      sed -n 's/.* rate=\([0-9]*\).*/\1/p'
  done | median
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {print (b + 0 > 0 ? sprintf("%.2f", a / b) : "-")}'; }

printf '| kind | payload | cmicro -> cmicro | go-micro -> go-micro | cmicro client -> go-micro | go-micro client -> cmicro | gRPC C++ -> gRPC C++ | cmicro / go-micro | cmicro / gRPC C++ |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n'
for kind in ${KINDS:-down bidi}; do
  for payload in ${PAYLOADS:-64 4096}; do
    cc=$(run "$C" "$A_C" $kind $payload "$N_C")
    gg=$(run "$G" "$A_G" $kind $payload "$N_GO")
    cg=$(run "$C" "$A_G" $kind $payload "$N_GO")
    gc=$(run "$G" "$A_C" $kind $payload "$N_C")
    rr=-
    if [ $grpc = 1 ]; then rr=$(run "$R" "$A_R" $kind $payload "$N_GRPC"); fi
    label=$([ $kind = down ] && echo server-stream || echo bidi)
    printf '| %s | %s B | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$payload" "$cc" "$gg" \
      "$cg" "$gc" "$rr" "$(ratio "$cc" "$gg")" "$(ratio "$cc" "$rr")"
  done
done

# Heap allocations per message in the cmicro server (bench/malloc_count.c counts them between two
# SIGUSR2; a warm-up stream first), for a cmicro client's streams.
ninja -C "$WORK/build" bench/libmalloc_count.so >/dev/null
cnt="$WORK/stream-malloc.txt"
: > "$cnt"
start counted env MALLOC_COUNT_OUT="$cnt" LD_PRELOAD="$WORK/build/bench/libmalloc_count.so" \
  "$C" server
counted=${pids[-1]}
echo
printf '| kind | payload | heap allocations per message, cmicro server |\n| --- | --- | --- |\n'
for kind in ${KINDS:-down bidi}; do
  for payload in ${PAYLOADS:-64 4096}; do
    timeout 60 taskset -c 1 "$C" client "$ADDR" $kind $payload 1000 >/dev/null
    sleep 0.2; kill -USR2 "$counted"; sleep 0.1
    timeout 120 taskset -c 1 "$C" client "$ADDR" $kind $payload "$N_C" >/dev/null
    sleep 0.2; kill -USR2 "$counted"; sleep 0.1
    per=$(tail -2 "$cnt" | sed 's/[^0-9 ]//g' |
          awk -v n="$N_C" 'NR == 1 {a = $1} NR == 2 {printf "%.2f", ($1 - a) / n}')
    printf '| %s | %s B | %s |\n' "$([ $kind = down ] && echo server-stream || echo bidi)" \
      "$payload" "$per"
  done
done
echo
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)," \
  "Linux $(uname -r); server on CPU 0, client on CPU 1"
echo "run: $(date -u +%Y-%m-%d) REPS=$REPS, N_C=$N_C N_GO=$N_GO N_GRPC=$N_GRPC messages" \
  "per stream;" \
  "load average (other processes on the machine) at the start: $load_start, at the end:" \
  "$(cut -d' ' -f1-3 /proc/loadavg)"
