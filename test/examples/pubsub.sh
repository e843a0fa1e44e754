#!/bin/sh
# The pubsub example end to end on go-micro's HTTP broker: one subscriber gets every greeting,
# two in the queue group "workers" share them (each exactly once), the publisher's every publish
# succeeds; SIGTERM stops the subscribers, which removes their subscriptions.
#   pubsub.sh mdns PUBLISHER SUBSCRIBER            (under test/mdns/run-netns.sh)
#   pubsub.sh consul PUBLISHER SUBSCRIBER PYTHON CONSUL_AGENT_PY
set -u
mode=$1
pub_bin=$2
sub_bin=$3
N=12
tmp=$(mktemp -d)
pids=
agent=
cleanup() {
    for p in $pids; do kill -KILL "$p" 2>/dev/null; done
    [ -n "$agent" ] && kill "$agent" 2>/dev/null
    rm -rf "$tmp"
}
fail() {
    echo "FAIL: $*" >&2
    for f in "$tmp"/*.log; do echo "== $f" >&2; cat "$f" >&2; done
    cleanup
    exit 1
}
export MICRO_SERVER_ADDRESS=127.0.0.1:0
if [ "$mode" = mdns ]; then
    export MICRO_REGISTRY=mdns MICRO_MDNS_INTERFACE=lo
else
    export MICRO_REGISTRY=consul
    . "$(dirname "$5")/agent.sh"
    consul_agent_start "$4" "$5" "$tmp" || fail "test agent did not start"
fi
PUBSUB_MAX=$N "$sub_bin" pubsub.all >"$tmp/all.log" 2>&1 &
all=$!
"$sub_bin" pubsub.worker workers >"$tmp/w1.log" 2>&1 &
w1=$!
"$sub_bin" pubsub.worker workers >"$tmp/w2.log" 2>&1 &
w2=$!
pids="$all $w1 $w2"
for f in all w1 w2; do
    i=0
    until grep -q "\[event\] subscribed to greetings" "$tmp/$f.log"; do
        i=$((i + 1))
        [ "$i" -le 150 ] || fail "$f did not subscribe within 15 s"
        sleep 0.1
    done
done
"$pub_bin" $N >"$tmp/pub.log" 2>&1 || fail "the publisher failed"
[ "$(grep -c '^published #' "$tmp/pub.log")" -eq $N ] || fail "not every publish succeeded"
# The plain subscriber stops by itself after N greetings.
i=0
while kill -0 "$all" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -le 100 ] || fail "pubsub.all did not get $N greetings within 10 s"
    sleep 0.1
done
wait "$all" || fail "pubsub.all exited with $?"
got=$(grep -c '^pubsub.all got #' "$tmp/all.log")
[ "$got" -eq $N ] || fail "pubsub.all got $got greetings, not $N"
grep -q '^pubsub.all got #1 "hello number 1" from pubsub-publisher$' "$tmp/all.log" ||
    fail "pubsub.all did not print the first greeting with its metadata"
# The queue group: every greeting once across the two workers.
i=0
while [ "$(cat "$tmp/w1.log" "$tmp/w2.log" | grep -c '^pubsub.worker got #')" -lt $N ]; do
    i=$((i + 1))
    [ "$i" -le 100 ] || fail "the workers did not get $N greetings within 10 s"
    sleep 0.1
done
sleep 0.3 # a duplicate would have arrived
seqs=$(cat "$tmp/w1.log" "$tmp/w2.log" | sed -n 's/^pubsub.worker got #\([0-9]*\) .*/\1/p' | sort -n)
[ "$seqs" = "$(seq 1 $N)" ] || fail "the queue group got: $(echo $seqs)"
kill -TERM "$w1" "$w2"
wait "$w1" || fail "worker 1 exited with $? after SIGTERM"
wait "$w2" || fail "worker 2 exited with $? after SIGTERM"
pids=
# Nobody subscribes any more: a publish reaches no one and succeeds, as in go-micro.
"$pub_bin" 1 >"$tmp/pub2.log" 2>&1 || fail "a publish with no subscriber failed"
cleanup
echo "ok: pubsub over $mode"
