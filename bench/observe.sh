#!/usr/bin/env bash
# The cost of the built-in observability on the default service path: bench/echo-cmicro as a
# cm_service (BENCH_SERVICE=1, inline handler, 64 B) with metrics and trace context off, metrics
# on, and both on (the default). Per configuration: req/s at 64 connections (bench/loadgen,
# server on CPU 0, load on CPU 1, configurations alternating per round, REPS rounds, medians and
# the ratio to "off" from the same rounds) and callgrind instructions per call on the server
# (the difference of two runs of N calls, which does not depend on the machine's load).
#   bench/observe.sh             REPS (5), DURATION (2 s), WORK (/tmp/cmicro-bench-observe)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
WORK=${WORK:-/tmp/cmicro-bench-observe}
REPS=${REPS:-5}
DURATION=${DURATION:-2}
mkdir -p "$WORK"
if [ ! -f "$WORK/build/build.ninja" ]; then
  meson setup "$WORK/build" "$root" --buildtype=release >/dev/null
fi
ninja -C "$WORK/build" bench/loadgen bench/echo-cmicro >/dev/null
B="$WORK/build/bench"
configs=(off metrics default)
declare -A ENVS=([off]="MICRO_METRICS=off MICRO_TRACE=off" [metrics]="MICRO_METRICS=on MICRO_TRACE=off"
                 [default]="MICRO_METRICS=on MICRO_TRACE=on")
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

# serve CONFIG [wrapper...]: starts the server; sets pid and addr.
serve() {
  local c=$1; shift
  : >"$WORK/srv.out" # before the server starts, so that no earlier run's line is read
  # shellcheck disable=SC2086
  env BENCH_SERVICE=1 ${ENVS[$c]} taskset -c 0 "$@" "$B/echo-cmicro" 0 >"$WORK/srv.out" 2>&1 &
  pid=$!
  for _ in $(seq 400); do grep -q '^listening ' "$WORK/srv.out" && break; sleep 0.05; done
  addr=$(sed -n 's/^listening //p' "$WORK/srv.out")
  [ -n "$addr" ] || { cat "$WORK/srv.out"; exit 1; }
}
unserve() { kill -TERM "$pid"; wait "$pid" || true; pid=; }

: >"$WORK/rps.txt"
for r in $(seq "$REPS"); do
  for c in "${configs[@]}"; do
    serve "$c"
    line=$(taskset -c 1 "$B/loadgen" --addr "$addr" --conns 64 --payload 64 --warmup 1 \
      --duration "$DURATION" --max-requests 20000000 --label "$c")
    unserve
    echo "$r $c $(echo "$line" | sed -n 's/.* rps=\([0-9]*\).*/\1/p')" >>"$WORK/rps.txt"
  done
done

cg() { # CONFIG N -> total instructions of a server run serving N calls
  local out="$WORK/cg-$1-$2.out"
  serve "$1" valgrind --tool=callgrind --callgrind-out-file="$out"
  taskset -c 1 "$B/loadgen" --addr "$addr" --conns 16 --payload 64 --warmup 0 --duration 300 \
    --max-requests "$2" --label cg >/dev/null
  unserve
  awk '/^(summary|totals):/ {print $2; exit}' "$out"
}
for c in "${configs[@]}"; do
  a=$(cg "$c" 2000); b=$(cg "$c" 12000)
  echo "$c $(( (b - a) / 10000 ))" >>"$WORK/cg.txt.new"
done
mv "$WORK/cg.txt.new" "$WORK/cg.txt"

python3 - "$WORK/rps.txt" "$WORK/cg.txt" <<'PY'
import statistics, sys
rounds = {}
for line in open(sys.argv[1]):
    r, c, v = line.split()
    rounds.setdefault(r, {})[c] = int(v)
cg = dict((l.split()[0], int(l.split()[1])) for l in open(sys.argv[2]))
print("| configuration | req/s at 64 conns (median, min-max) | ratio to off (median) | instructions per call |")
print("| --- | --- | --- | --- |")
for c in ("off", "metrics", "default"):
    v = [x[c] for x in rounds.values() if c in x]
    ratio = statistics.median(x[c] / x["off"] for x in rounds.values() if c in x and x.get("off"))
    print("| %s | %d (%d-%d) | %.3f | %d |" % (c, statistics.median(v), min(v), max(v), ratio, cg[c]))
PY
