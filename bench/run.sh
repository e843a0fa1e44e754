#!/usr/bin/env bash
# cmicro's benchmark: one invocation runs the echo peers side by side on 127.0.0.1 and prints
# the table of README "Performance".
#
#   bench/run.sh                 the full run (about 35 minutes on 2 CPUs)
#   QUICK=1 bench/run.sh         a short run (1 repetition, short windows) to try the script
#
# Peers: cmicro (bench/echo_cmicro.c) with an inline handler ("cmicro") and with the default
# handler on the worker pool ("cmicro-worker", BENCH_WORKER=1), a raw libuv echo (the physical
# limit), nginx (Debian's, one worker, a fixed 64 B reply on keep-alive connections: the HTTP/1.1
# floor; its configuration is written to a temporary folder, on a loopback port), go-micro v4.11
# (bench/go, HTTP transport + proto codec) and gRPC C++ (bench/grpc, Debian's libgrpc++). nginx and
# libgrpc++ are installed with apt-get when missing and the script runs as root. The HTTP/1.1 peers
# are driven by two load generators in turn: the project's C load generator (bench/loadgen.c) and
# wrk (Debian's wrk, one thread, bench/wrk-echo.lua sends the same request); gRPC by its own C++
# client (bench/grpc/client.cc).
#
# Method: the server is pinned to CPU 0 and the load generator to CPU 1 (taskset); every
# configuration (payload x concurrency) is run for each peer in turn, the peer order rotating
# each round; each run has its own warm-up; REPS rounds; the table shows medians with min-max
# and the cmicro/peer ratios of the same rounds. Then: per-call CPU from 1 to 1000 connections,
# open-loop tail latencies at 50% and 80% of cmicro's peak, callgrind instructions per call
# (server side, difference of two runs of N calls), heap allocations per call (LD_PRELOAD
# counter) on the server hot path and on the cmicro client's cached path.
#
# Knobs (environment): REPS (5), WARMUP (1 s), DURATION (2 s), PAYLOADS ("64 4096"),
# CONCS ("1 16 64 256"), PEERS ("cmicro cmicro-worker raw nginx gomicro grpc"), GENS ("loadgen
# wrk": the load generators of the closed-loop table), WORK (build and result folder, default
# /tmp/cmicro-bench), SKIP_CALLGRIND=1, SKIP_GRPC_INSTALL=1 (and SKIP_INSTALL=1: no apt-get at
# all), CLOSED_ONLY=1 (the closed-loop table alone), LOOPS (the cmicro server's event loops, cm_server_opts.loops; unset: its default),
# SERVER_CPUS (the CPUs the servers are pinned to, taskset's list; default 0: with LOOPS=2 both
# loops then share CPU 0, which measures the cost of the second loop, not scaling).
# Every load run is bounded in time and count and stops by itself; all traffic is on 127.0.0.1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
WORK=${WORK:-/tmp/cmicro-bench}
if [ "${QUICK:-0}" = 1 ]; then
  REPS=${REPS:-1}; WARMUP=${WARMUP:-0.3}; DURATION=${DURATION:-0.7}
fi
REPS=${REPS:-5}
WARMUP=${WARMUP:-1}
DURATION=${DURATION:-2}
PAYLOADS=${PAYLOADS:-"64 4096"}
CONCS=${CONCS:-"1 16 64 256"}
PEERS=${PEERS:-"cmicro cmicro-worker raw nginx gomicro grpc"}
GENS=${GENS:-"loadgen wrk"}
MAXREQ=20000000
mkdir -p "$WORK"
res="$WORK/results.txt"
: > "$res"
log() { echo "== $*" >&2; }
# shellcheck source=bench/lib.sh
. "$here/lib.sh"  # apt_install, grpc_peer

if [ "$(nproc)" -lt 2 ]; then
  echo "bench/run.sh needs 2 CPUs (server on CPU 0, load generator on CPU 1)" >&2
  exit 1
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# ---- build ----
log "building cmicro (release) in $WORK/build"
if [ ! -f "$WORK/build/build.ninja" ]; then
  meson setup "$WORK/build" "$root" --buildtype=release >/dev/null
fi
ninja -C "$WORK/build" bench/loadgen bench/echo-cmicro bench/echo-raw bench/client-cmicro \
  bench/libmalloc_count.so >/dev/null
B="$WORK/build/bench"
LOADGEN="$B/loadgen"

have_peer() { case " $PEERS " in *" $1 "*) return 0 ;; esac; return 1; }
drop_peer() { PEERS=$(tr ' ' '\n' <<< "$PEERS" | grep -vx "$1" | tr '\n' ' '); }

if ! command -v wrk >/dev/null; then
  apt_install wrk || true
fi
if ! command -v wrk >/dev/null; then
  log "no wrk: the wrk rows are skipped"; GENS=${GENS/wrk/}
fi
if have_peer nginx && ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  apt_install nginx || true
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if have_peer nginx && [ ! -x "$NGINX" ]; then
  log "no nginx: nginx peer skipped"; drop_peer nginx
fi

if have_peer gomicro; then
  if command -v go >/dev/null; then
    log "building the go-micro peer"
    (cd "$here/go" && GOFLAGS=-mod=mod go build -o "$WORK/gomicro-echo" .) || {
      log "go-micro peer did not build: skipped"; drop_peer gomicro; }
  else
    log "no Go toolchain: go-micro peer skipped"; drop_peer gomicro
  fi
fi
if have_peer grpc && ! grpc_peer "$WORK/grpc"; then
  drop_peer grpc
fi

# ---- servers ----
declare -A BIN PID ADDR IDLE ENVS
BIN[cmicro]="$B/echo-cmicro"
BIN[cmicro-worker]="$B/echo-cmicro"
ENVS[cmicro]="${LOOPS:+BENCH_LOOPS=$LOOPS}"
ENVS[cmicro-worker]="BENCH_WORKER=1 ${LOOPS:+BENCH_LOOPS=$LOOPS}"
BIN[raw]="$B/echo-raw"
BIN[gomicro]="$WORK/gomicro-echo"
BIN[grpc]="$WORK/grpc/grpc-echo"
spids=()
cleanup() {
  for p in "${spids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# nginx: one worker answering every request with 64 bytes, keep-alive, on a free loopback port,
# everything in a temporary folder. PID[nginx] is the worker (the process that serves).
start_nginx() {
  local dir="$WORK/nginx" port
  rm -rf "$dir" && mkdir -p "$dir"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat > "$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 1000000000;
  keepalive_timeout 60s;
  client_max_body_size 2m;
  server {
    listen 127.0.0.1:$port;
    location / {
      default_type application/octet-stream;
      return 200 "$(printf 'x%.0s' $(seq 64))";
    }
  }
}
EOF
  taskset -c 0 "$NGINX" -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" \
    > "$WORK/nginx.out" 2> "$WORK/nginx.err" &
  local master=$! worker=""
  spids+=("$master")
  for _ in $(seq 200); do
    worker=$(cat "/proc/$master/task/$master/children" 2>/dev/null || true)
    [ -n "$worker" ] && (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
  done
  [ -n "$worker" ] || { echo "nginx did not start:"; cat "$WORK/nginx.err" "$dir/error.log"; exit 1; }
  ADDR[nginx]="127.0.0.1:$port"
  PID[nginx]=${worker%% *}
  NGINX_MASTER=$master
}

# start NAME [env...]: starts the server pinned to CPU 0; sets PID[NAME] and ADDR[NAME].
start() {
  local name=$1; shift
  if [ "$name" = nginx ]; then start_nginx; return; fi
  local out="$WORK/$name.out"
  : > "$out"  # now, not in the background job: the wait below must not see the last run's line
  # shellcheck disable=SC2086 # ENVS holds VAR=value words
  env ${ENVS[$name]:-} "$@" taskset -c "${SERVER_CPUS:-0}" "${BIN[$name]}" 0 > "$out" \
    2> "$WORK/$name.err" &
  local pid=$!
  spids+=("$pid")
  for _ in $(seq 400); do
    grep -q '^listening ' "$out" 2>/dev/null && break
    sleep 0.05
  done
  ADDR[$name]=$(sed -n 's/^listening //p' "$out")
  [ -n "${ADDR[$name]}" ] || { echo "$name did not start:"; cat "$WORK/$name.err"; exit 1; }
  PID[$name]=$pid
}
stop() {
  local name=$1 pid=${PID[$1]}
  [ "$name" = nginx ] && pid=$NGINX_MASTER
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# wrk_load NAME CONNS PAYLOAD: a warm-up run, then the measured one; prints loadgen's key=value
# line (the server's CPU from /proc around the measured run).
wrk_load() {
  local name=$1 conns=$2 payload=$3 pid=${PID[$1]}
  local url="http://${ADDR[$name]}/" lua="$here/wrk-echo.lua"
  local warm dur  # wrk takes whole seconds
  warm=$(awk -v s="$WARMUP" 'BEGIN {n = int(s); print (n < s ? n + 1 : n)}')
  dur=$(awk -v s="$DURATION" 'BEGIN {n = int(s); print (n < s ? n + 1 : n)}')
  taskset -c 1 wrk -t1 -c"$conns" -d"${warm}s" -s "$lua" "$url" -- "$payload" > /dev/null || true
  local t0 t1 out calls
  t0=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${dur}s" -s "$lua" "$url" -- "$payload" |
    grep '^calls=' || true)
  t1=$(cpu_ticks "$pid")
  calls=$(sed -n 's/^calls=\([0-9]*\).*/\1/p' <<< "$out")
  echo "label=$name conns=$conns payload=$payload $out $(awk -v t=$((t1 - t0)) -v n="${calls:-0}" \
    'BEGIN {printf "cpu_s=%.2f cpu_per_100k=%.3f", t / 100, (n > 0 ? t / 100 / n * 100000 : -1)}')"
}

# load NAME CONNS PAYLOAD [extra loadgen args]: one bounded run against a running server, by the
# load generator GEN (loadgen, or wrk for the closed loop).
load() {
  local name=$1 conns=$2 payload=$3; shift 3
  local pid=${PID[$name]}
  echo 5 > "/proc/$pid/clear_refs" 2>/dev/null || true  # resets VmHWM: peak of this run
  local line
  if [ "${GEN:-loadgen}" = wrk ]; then
    line=$(wrk_load "$name" "$conns" "$payload")
  elif [ "$name" = nginx ]; then
    line=$(taskset -c 1 "$LOADGEN" --addr "${ADDR[$name]}" --conns "$conns" --payload "$payload" \
      --warmup "$WARMUP" --duration "$DURATION" --max-requests $MAXREQ --server-pid "$pid" \
      --label "$name" --rsp-body 64 "$@") || true
  elif [ "$name" = grpc ]; then
    line=$(taskset -c 1 "$WORK/grpc/grpc-load" --addr "${ADDR[$name]}" --conns "$conns" \
      --payload "$payload" --warmup "$WARMUP" --duration "$DURATION" --max-requests $MAXREQ \
      --server-pid "$pid" --label "$name" "$@") || true
  else
    line=$(taskset -c 1 "$LOADGEN" --addr "${ADDR[$name]}" --conns "$conns" --payload "$payload" \
      --warmup "$WARMUP" --duration "$DURATION" --max-requests $MAXREQ --server-pid "$pid" \
      --label "$name" "$@") || true
  fi
  echo "$line peak_rss_kb=$(rss_kb "$pid" VmHWM)"
}

log "starting servers: $PEERS"
for p in $PEERS; do
  start "$p"
done
sleep 1
for p in $PEERS; do
  IDLE[$p]=$(rss_kb "${PID[$p]}" VmRSS)
  echo "idle peer=$p rss_kb=${IDLE[$p]}" >> "$res"
done

# ---- rounds: closed loop ----
read -r -a order <<< "$PEERS"
for r in $(seq "$REPS"); do
  for payload in $PAYLOADS; do
    for c in $CONCS; do
      for GEN in $GENS; do
        for i in "${!order[@]}"; do
          p=${order[$(( (i + r) % ${#order[@]} ))]}
          [ "$GEN" = wrk ] && [ "$p" = grpc ] && continue  # HTTP/2: its own client only
          line=$(load "$p" "$c" "$payload")
          echo "closed round=$r gen=$GEN peer=$p $line" >> "$res"
          log "round $r/$REPS payload $payload conns $c $GEN $p: $(grep -o 'rps=[0-9]*' <<< "$line")"
        done
      done
    done
  done
done
GEN=loadgen
if [ "${CLOSED_ONLY:-0}" = 1 ]; then  # the closed-loop table alone: no later section has a peer
  PEERS=""
  SKIP_CALLGRIND=1
fi

# ---- per-call cost and memory from 1 to 1000 connections (64 B) ----
for p in cmicro cmicro-worker raw nginx gomicro; do
  have_peer "$p" || continue
  for c in 1 64 1000; do
    for r in 1 2 3; do
      echo "flat round=$r peer=$p $(load "$p" "$c" 64)" >> "$res"
    done
  done
done
log "per-call cost from 1 to 1000 connections: done"

# ---- open loop at 50% and 80% of cmicro's peak (64 B, 64 connections) ----
peak=$(awk '$1 == "closed" && / gen=loadgen / && / peer=cmicro / && / conns=64 / && / payload=64 / {
  for (i = 1; i <= NF; i++) if ($i ~ /^rps=/) { sub("rps=", "", $i); print $i } }' "$res" |
  sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
for pct in 50 80; do
  rate=$(( peak * pct / 100 ))
  for p in cmicro cmicro-worker raw gomicro; do
    have_peer "$p" || continue
    for r in 1 2 3; do
      echo "open pct=$pct round=$r peer=$p $(load "$p" 64 64 --rate "$rate")" >> "$res"
    done
  done
done
log "open loop at ${peak} x 50%/80%: done"

# ---- heap allocations per call (LD_PRELOAD counter) ----
alloc_run() { # name conns payload
  local name=$1 cnt="$WORK/malloc-$1-$2-$3.txt"
  rm -f "$cnt"
  stop "$name"
  start "$name" MALLOC_COUNT_OUT="$cnt" LD_PRELOAD="$B/libmalloc_count.so"
  local line
  line=$(load "$name" "$2" "$3" --snap 1)
  sleep 0.2
  echo "alloc peer=$name $line $(tr '\n' ' ' < "$cnt")" >> "$res"
}
for p in cmicro cmicro-worker raw; do
  have_peer "$p" || continue
  for payload in $PAYLOADS; do
    alloc_run "$p" 64 "$payload"
  done
done
if have_peer cmicro; then
  for owned in 0 1; do
    label=client-cmicro
    [ "$owned" = 1 ] && label=client-cmicro-owned
    for c in 1 64; do
      cnt="$WORK/malloc-$label-$c.txt"
      rm -f "$cnt"
      line=$(MALLOC_COUNT_OUT="$cnt" LD_PRELOAD="$B/libmalloc_count.so" taskset -c 1 \
        "$B/client-cmicro" --addr "${ADDR[cmicro]}" --conns "$c" --payload 64 --warmup "$WARMUP" \
        --duration "$DURATION" --snap 1 --owned "$owned" --label "$label") || true
      echo "alloc peer=$label $line $(tr '\n' ' ' < "$cnt")" >> "$res"
    done
  done
fi
log "allocation counts: done"

# ---- callgrind: instructions per call, server side ----
if [ "${SKIP_CALLGRIND:-0}" != 1 ] && command -v valgrind >/dev/null; then
  cg_total() { # name calls -> total Ir of a server run serving that many calls (16 conns)
    local name=$1 n=$2 out="$WORK/cg-$1-$2.out"
    stop "$name"
    : > "$WORK/$name.out"
    # shellcheck disable=SC2086 # ENVS holds VAR=value words
    env ${ENVS[$name]:-} taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out" \
      "${BIN[$name]}" 0 \
      > "$WORK/$name.out" 2> "$WORK/$name.err" &
    local pid=$!
    spids+=("$pid")
    for _ in $(seq 400); do grep -q '^listening ' "$WORK/$name.out" && break; sleep 0.05; done
    local addr
    addr=$(sed -n 's/^listening //p' "$WORK/$name.out")
    taskset -c 1 "$LOADGEN" --addr "$addr" --conns 16 --payload 64 --warmup 0 --duration 300 \
      --max-requests "$n" --label cg > /dev/null
    kill -TERM "$pid"; wait "$pid" || true
    awk '/^(summary|totals):/ {print $2; exit}' "$out"
  }
  for p in cmicro cmicro-worker raw; do
    have_peer "$p" || continue
    n1=2000; n2=12000
    [ "${QUICK:-0}" = 1 ] && n2=4000
    a=$(cg_total "$p" $n1); b=$(cg_total "$p" $n2)
    echo "callgrind peer=$p n1=$n1 ir1=$a n2=$n2 ir2=$b per_call=$(( (b - a) / (n2 - n1) ))" >> "$res"
  done
  log "callgrind: done"
fi

cleanup
trap - EXIT
{
  echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)," \
    "Linux $(uname -r); server on CPU 0, load generator on CPU 1"
  echo "run: REPS=$REPS WARMUP=${WARMUP}s DURATION=${DURATION}s per run; $(date -u +%Y-%m-%d);" \
    "load average at the end (other processes on the machine): $(cut -d' ' -f1-3 /proc/loadavg)"
} >> "$res"
python3 "$here/summarize.py" "$res"
echo "(raw results: $res)"
