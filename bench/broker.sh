#!/usr/bin/env bash
# cmicro's pub/sub benchmark: one invocation runs every publisher/subscriber pair below on
# 127.0.0.1 and prints the table of docs/BENCHMARKS.md "Pub/sub".
#
#   bench/broker.sh              the full run (REPS rounds; about 10 minutes on 2 CPUs)
#   QUICK=1 bench/broker.sh      a short run (1 round, small counts) to try the script
#
# Pairs (a subscriber process and a publisher process of the same kind, one topic):
#   nats  cmicro         the events API in the default configuration (cm_publish from the main
#                        thread, as go-micro's Publish; cm_service_subscribe, handlers on the
#                        worker pool; metrics and trace context on), NATS broker
#         cmicro-async   the same publishing with cm_publish_async, WINDOW in flight
#         cmicro-asap    cmicro with the NATS broker's send_asap (a write per publish)
#         cmicro-broker  the broker layer alone (cm_broker_publish / cm_broker_subscribe on a loop)
#         gomicro        go-micro v4.11 with plugins broker/nats v1.2.0 (bench/go/pubsub)
#         raw            plain libnats, the payload as the NATS message (bench/pubsub_nats_raw.c)
#   http  cmicro (cm_publish_async, WINDOW in flight: a cm_publish waits for its POSTs), cmicro-broker,
#         gomicro: the HTTP brokers, subscriptions in the Consul test agent
#         (test/consul/consul_agent.py) for both languages
# against a nats-server the script starts on a free loopback port. The message is bench.EchoMsg
# (payload 64 B or 4 KiB); its first 8 bytes are the publish time (CLOCK_REALTIME ns), and the
# subscriber measures publish-to-delivery latency and the rate (messages received over the time
# from the first publish to the last delivery). Two runs per pair and size: "flood" (publish as
# fast as the publisher goes: messages/s) and "paced" (a fixed rate well below every peer's
# ceiling: p50/p99 latency without queueing). Peers' order rotates each round; the table shows
# medians over REPS rounds with min-max, and ratios of the same rounds.
#
# Knobs (environment): REPS (3), SIZES ("64 4096"), NATS_COUNT (20000), HTTP_COUNT (2000),
# NATS_RATE/NATS_PACED (2000 msg/s for 2000 messages), HTTP_RATE/HTTP_PACED (200/s for 400),
# BROKERS ("nats http"), WINDOW (cmicro publishes in flight, 256), WORK (build and result folder,
# default /tmp/cmicro-bench-pubsub), BUILD (an existing cmicro build folder to use instead of a
# release build in WORK), BIN_DIR (a folder holding pubsub-cmicro and pubsub-nats-raw: no build),
# GOMICRO (a built bench/go/pubsub binary), IDLE_MS (1500). Every run is bounded in count
# and time (a subscriber stops after its count, 1.5 s without a message, or 60 s) and stops by
# itself; nothing leaves 127.0.0.1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
WORK=${WORK:-/tmp/cmicro-bench-pubsub}
if [ "${QUICK:-0}" = 1 ]; then
  REPS=${REPS:-1}; NATS_COUNT=${NATS_COUNT:-2000}; HTTP_COUNT=${HTTP_COUNT:-200}
  NATS_PACED=${NATS_PACED:-200}; HTTP_PACED=${HTTP_PACED:-40}
fi
REPS=${REPS:-3}
SIZES=${SIZES:-"64 4096"}
NATS_COUNT=${NATS_COUNT:-20000}
HTTP_COUNT=${HTTP_COUNT:-2000}
NATS_RATE=${NATS_RATE:-2000}
NATS_PACED=${NATS_PACED:-2000}
HTTP_RATE=${HTTP_RATE:-200}
HTTP_PACED=${HTTP_PACED:-400}
BROKERS=${BROKERS:-"nats http"}
export IDLE_MS=${IDLE_MS:-1500}
export WINDOW=${WINDOW:-256}
mkdir -p "$WORK"
res="$WORK/pubsub-results.txt"
: > "$res"
log() { echo "== $*" >&2; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# ---- build ----
if [ -n "${BIN_DIR:-}" ]; then
  B=$BIN_DIR
elif [ -n "${BUILD:-}" ]; then
  B="$BUILD/bench"
  ninja -j2 -C "$BUILD" bench/pubsub-cmicro bench/pubsub-nats-raw >/dev/null
else
  log "building cmicro (release) in $WORK/build"
  if [ ! -f "$WORK/build/build.ninja" ]; then
    meson setup "$WORK/build" "$root" --buildtype=release >/dev/null
  fi
  ninja -j2 -C "$WORK/build" bench/pubsub-cmicro bench/pubsub-nats-raw >/dev/null
  B="$WORK/build/bench"
fi
CMICRO="$B/pubsub-cmicro"
RAW="$B/pubsub-nats-raw"
if [ -z "${GOMICRO:-}" ]; then
  GOMICRO="$WORK/gomicro-pubsub"
  if command -v go >/dev/null; then
    log "building the go-micro peer"
    "$root/test/interop/go-build.sh" go "$here/go/pubsub" "$GOMICRO" v4.11.0
  else
    log "no Go toolchain: the go-micro peer is skipped"; GOMICRO=
  fi
fi

# ---- servers ----
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NATSD=$(command -v nats-server || echo /usr/sbin/nats-server)
nport=$(free_port)
"$NATSD" -a 127.0.0.1 -p "$nport" >"$WORK/nats-server.log" 2>&1 &
pids+=($!)
NATS_URL="nats://127.0.0.1:$nport"
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$nport") 2>/dev/null && break
  sleep 0.05
done
# its first line is its port; its request log goes to a file, never to a pipe nobody reads
python3 "$root/test/consul/consul_agent.py" --port 0 >"$WORK/consul.out" 2>"$WORK/consul.err" &
pids+=($!)
cport=
for _ in $(seq 200); do
  cport=$(head -n1 "$WORK/consul.out" 2>/dev/null || true)
  [ -n "$cport" ] && break
  sleep 0.05
done
[ -n "$cport" ] || { echo "the Consul test agent did not start" >&2; exit 1; }
export CONSUL_HTTP_ADDR="127.0.0.1:$cport" MICRO_REGISTRY=consul
log "nats-server at $NATS_URL, Consul test agent at $CONSUL_HTTP_ADDR"

# ---- one run: a subscriber, then a publisher ----
# run BROKER PEER SIZE MODE COUNT RATE ROUND -> a line in $res
run() {
  local broker=$1 peer=$2 size=$3 mode=$4 count=$5 rate=$6 round=$7 sub pub mode_env
  case $peer in
    cmicro) sub=("$CMICRO" sub "$broker" events "$count")
            # cm_publish, as go-micro's Publish, over NATS; over HTTP, where each publish waits
            # for its POSTs, cm_publish_async with a window (go-micro's HTTP broker returns
            # before it sends)
            if [ "$broker" = nats ]; then mode_env=PUBLISH=sync; else mode_env=PUBLISH=async; fi
            pub=(env "$mode_env" "$CMICRO" pub "$broker" events "$count" "$size" "$rate") ;;
    cmicro-async) sub=("$CMICRO" sub "$broker" events "$count")
            pub=(env PUBLISH=async "$CMICRO" pub "$broker" events "$count" "$size" "$rate") ;;
    cmicro-asap) sub=(env NATS_SEND_ASAP=1 "$CMICRO" sub "$broker" events "$count")
            pub=(env NATS_SEND_ASAP=1 "$CMICRO" pub "$broker" events "$count" "$size" "$rate") ;;
    cmicro-broker) sub=("$CMICRO" sub "$broker" broker "$count")
            pub=("$CMICRO" pub "$broker" broker "$count" "$size" "$rate") ;;
    gomicro) sub=("$GOMICRO" sub "$broker" "$count")
             pub=("$GOMICRO" pub "$broker" "$count" "$size" "$rate") ;;
    raw) sub=("$RAW" sub "$NATS_URL" "$count")
         pub=("$RAW" pub "$NATS_URL" "$count" "$size" "$rate") ;;
  esac
  # the NATS server for nats; for http, MICRO_BROKER_ADDRESS would be the listen address
  if [ "$broker" = nats ]; then
    export MICRO_BROKER_ADDRESS=$NATS_URL
  else
    unset MICRO_BROKER_ADDRESS
  fi
  local out="$WORK/sub.out"
  : > "$out"
  timeout 90 "${sub[@]}" >"$out" 2>"$WORK/sub.err" &
  local spid=$!
  for _ in $(seq 200); do
    grep -q READY "$out" && break
    sleep 0.05
  done
  sleep 0.3 # the subscription reaches nats-server / the Consul agent's catalogue
  local p
  p=$(timeout 90 "${pub[@]}" 2>"$WORK/pub.err" | grep PUBLISHED || echo "PUBLISHED 0 0")
  wait "$spid" || true
  local r
  r=$(grep RESULT "$out" || echo "RESULT n=0 rate=0 p50_us=0 p99_us=0")
  local st
  st=$(grep STATS "$out" || true)
  echo "$broker $peer $size $mode $round $count ${p#PUBLISHED } ${r#RESULT } ${st#STATS }" |
    tee -a "$res" >&2
}

peers_of() {
  case $1 in
    nats) echo "cmicro cmicro-async cmicro-asap cmicro-broker${GOMICRO:+ gomicro} raw" ;;
    http) echo "cmicro cmicro-broker${GOMICRO:+ gomicro}" ;;
  esac
}

for round in $(seq "$REPS"); do
  for broker in $BROKERS; do
    read -ra peers <<<"$(peers_of "$broker")"
    # rotate the peers' order each round
    k=$(( (round - 1) % ${#peers[@]} ))
    peers=("${peers[@]:k}" "${peers[@]:0:k}")
    if [ "$broker" = nats ]; then fc=$NATS_COUNT; pr=$NATS_RATE; pc=$NATS_PACED
    else fc=$HTTP_COUNT; pr=$HTTP_RATE; pc=$HTTP_PACED; fi
    for size in $SIZES; do
      for peer in "${peers[@]}"; do
        run "$broker" "$peer" "$size" flood "$fc" 0 "$round"
        run "$broker" "$peer" "$size" paced "$pc" "$pr" "$round"
      done
    done
  done
done

python3 "$here/pubsub_summary.py" "$res"
