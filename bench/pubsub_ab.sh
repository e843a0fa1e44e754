#!/usr/bin/env bash
# Two subscriber builds of bench/pubsub_cmicro.c in alternating NATS floods against one publisher,
# under `perf stat`: rate and subscriber CPU per run, for changes within the noise of
# bench/broker.sh.
#   bench/pubsub_ab.sh ROUNDS SIZE COUNT SUB_A SUB_B
# SUB_A and SUB_B are pubsub-cmicro binaries (or command prefixes); PUB (default SUB_A) publishes
# COUNT messages of SIZE bytes as fast as it goes with cm_publish. Each round runs A then B
# (`sub nats events COUNT`) against a nats-server started here on a free loopback port; every run
# is bounded (90 s) and the server is killed at the end. Prints per run:
#   A|B ROUND n=<received> rate=<msg/s> sub_ms=<subscriber CPU> pub_ms=<publisher CPU>
#   futex=<subscriber futex calls> cs=<its context switches>
set -u
ROUNDS=$1 SIZE=$2 N=$3 A=$4 B=$5
PUB=${PUB:-$A}
W=$(mktemp -d /tmp/cmicro-pubsub-ab.XXXXXX)
port=$((20000 + RANDOM % 20000))
nats-server -a 127.0.0.1 -p "$port" >"$W/nats.log" 2>&1 &
npid=$!
trap 'kill $npid 2>/dev/null; rm -rf "$W"' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
export MICRO_BROKER_ADDRESS=nats://127.0.0.1:$port
stat_of() { grep "$2" "$1" | cut -d, -f1; }
for r in $(seq "$ROUNDS"); do
  for which in A B; do
    if [ "$which" = A ]; then cmd=$A; else cmd=$B; fi
    : >"$W/sub.out"
    # shellcheck disable=SC2086 # a command prefix
    timeout 90 perf stat -x, -o "$W/s.stat" -e task-clock,context-switches,syscalls:sys_enter_futex \
      $cmd sub nats events "$N" >"$W/sub.out" 2>"$W/sub.err" &
    spid=$!
    for _ in $(seq 200); do grep -q READY "$W/sub.out" && break; sleep 0.05; done
    sleep 0.3
    timeout 90 perf stat -x, -o "$W/p.stat" -e task-clock "$PUB" pub nats events "$N" "$SIZE" 0 \
      >"$W/pub.out" 2>"$W/pub.err"
    wait "$spid"
    echo "$which $r $(grep -o 'n=[0-9]* rate=[0-9]*' "$W/sub.out") sub_ms=$(stat_of "$W/s.stat" task-clock)" \
      "pub_ms=$(stat_of "$W/p.stat" task-clock) futex=$(stat_of "$W/s.stat" futex)" \
      "cs=$(stat_of "$W/s.stat" context)"
  done
done
