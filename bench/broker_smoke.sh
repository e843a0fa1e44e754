#!/bin/sh
# The 'bench' suite's check of bench/broker.sh: one round with tiny counts and 64 B payloads;
# every pair must deliver messages and the table must have its rows.
#   broker_smoke.sh PUBSUB_CMICRO PUBSUB_NATS_RAW
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=$(cd "$(dirname "$1")" && pwd)
[ -x "$bin/pubsub-nats-raw" ] || { echo "no pubsub-nats-raw next to $1" >&2; exit 1; }
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || {
  echo "SKIP: nats-server is not installed (scripts/setup.sh installs it)"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
table=$(WORK=$work BIN_DIR=$bin REPS=1 SIZES=64 NATS_COUNT=300 NATS_PACED=40 NATS_RATE=2000 \
  HTTP_COUNT=60 HTTP_PACED=20 HTTP_RATE=500 IDLE_MS=500 "$here/broker.sh")
echo "$table"
peers="nats:cmicro nats:cmicro-asap nats:cmicro-broker nats:raw http:cmicro http:cmicro-broker"
if command -v go >/dev/null; then
  peers="$peers nats:gomicro http:gomicro"
fi
fail=0
for bp in $peers; do
  b=${bp%%:*} p=${bp#*:}
  if ! echo "$table" | grep -q "^| $b | 64 B | $p | [1-9]"; then
    echo "FAIL: no row with messages for $b $p" >&2
    fail=1
  fi
  for mode in flood paced; do
    if ! grep -q "^$b $p 64 $mode 1 [0-9]* [0-9]* [0-9]* n=[1-9]" "$work/pubsub-results.txt"; then
      echo "FAIL: $b $p $mode delivered nothing" >&2
      fail=1
    fi
  done
done
# cmicro delivers every message of both runs.
for p in cmicro cmicro-broker; do
  for b in nats http; do
    if ! echo "$table" | grep -q "^| $b | 64 B | $p | .* | 100% |"; then
      echo "FAIL: $b $p lost messages" >&2
      fail=1
    fi
  done
done
exit $fail
