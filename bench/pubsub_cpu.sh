#!/usr/bin/env bash
# Where the CPU of a NATS flood goes: per message, the subscriber's, the publisher's and
# nats-server's, for the events API in the default configuration, the broker layer alone, and raw
# libnats (the floor), against one nats-server started here on a free loopback port.
#   bench/pubsub_cpu.sh ROUNDS SIZE COUNT BIN_DIR
# BIN_DIR holds pubsub-cmicro and pubsub-nats-raw (a release build's bench/). COUNT stays below
# libnats's 65,536 pending messages so that nothing is dropped. Prints per run:
#   LAYER ROUND n=<received> rate=<msg/s> sub_us=<µs/msg> pub_us=<µs/msg> srv_us=<µs/msg>
# (the server's by `perf stat -p` from the publisher's start to the last delivery). Every run is
# bounded (90 s); the server is killed at the end.
set -u
ROUNDS=$1 SIZE=$2 N=$3 B=$4
W=$(mktemp -d /tmp/cmicro-pubsub-cpu.XXXXXX)
port=$((20000 + RANDOM % 20000))
nats-server -a 127.0.0.1 -p "$port" >"$W/nats.log" 2>&1 &
npid=$!
trap 'kill $npid 2>/dev/null; rm -rf "$W"' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
url=nats://127.0.0.1:$port
export MICRO_BROKER_ADDRESS=$url
ms() { grep task-clock "$1" | cut -d, -f1; }
per() { awk -v t="$1" -v n="$N" 'BEGIN { printf "%.2f", t * 1000 / n }'; }
for r in $(seq "$ROUNDS"); do
  for layer in events broker raw; do
    if [ "$layer" = raw ]; then
      sub=("$B/pubsub-nats-raw" sub "$url" "$N"); pub=("$B/pubsub-nats-raw" pub "$url" "$N" "$SIZE" 0)
    else
      sub=("$B/pubsub-cmicro" sub nats "$layer" "$N"); pub=("$B/pubsub-cmicro" pub nats "$layer" "$N" "$SIZE" 0)
    fi
    : >"$W/sub.out"
    timeout 90 perf stat -x, -o "$W/s.stat" -e task-clock "${sub[@]}" >"$W/sub.out" 2>"$W/sub.err" &
    spid=$!
    for _ in $(seq 200); do grep -q READY "$W/sub.out" && break; sleep 0.05; done
    sleep 0.3
    perf stat -x, -o "$W/v.stat" -e task-clock -p "$npid" 2>/dev/null &
    vpid=$!
    sleep 0.1
    timeout 90 perf stat -x, -o "$W/p.stat" -e task-clock "${pub[@]}" >"$W/pub.out" 2>"$W/pub.err"
    wait "$spid"
    kill -INT "$vpid"
    wait "$vpid" 2>/dev/null
    echo "$layer $r $(grep -o 'n=[0-9]* rate=[0-9]*' "$W/sub.out") sub_us=$(per "$(ms "$W/s.stat")")" \
      "pub_us=$(per "$(ms "$W/p.stat")") srv_us=$(per "$(ms "$W/v.stat")")"
  done
done
