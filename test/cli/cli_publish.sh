#!/bin/sh
# cmicro publish over go-micro's HTTP broker and the Consul test agent (or CONSUL_HTTP_ADDR): a C
# subscriber (the pubsub example) and a go-micro v4.11 subscriber (gbroker) each get the JSON with
# its metadata; bad JSON, a broker that is not there and a subscriber that died each answer one
# line on stderr with a non-zero exit.
#   cli_publish.sh CMICRO SUBSCRIBER PYTHON CONSUL_AGENT_PY [GBROKER]
set -u
cmicro=$1
sub_bin=$2
python=$3
agent_py=$4
gbroker=${5:-}
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
wait_for() { # FILE TEXT: up to 15 s
    i=0
    until grep -q "$2" "$1"; do
        i=$((i + 1))
        [ "$i" -le 150 ] || fail "no '$2' in $1 within 15 s"
        sleep 0.1
    done
}
one_line() { # WANT_RC GOT_RC STDERR_FILE NEEDLE WHAT
    [ "$2" -eq "$1" ] || fail "$5: exit $2, want $1"
    [ "$(wc -l <"$3")" -eq 1 ] || fail "$5: stderr is not one line: $(cat "$3")"
    grep -q "$4" "$3" || fail "$5: stderr does not say '$4': $(cat "$3")"
}
. "$(dirname "$agent_py")/agent.sh"
consul_agent_start "$python" "$agent_py" "$tmp" || fail "test agent did not start"
export MICRO_REGISTRY=consul MICRO_SERVER_ADDRESS=127.0.0.1:0

# A C subscriber.
PUBSUB_MAX=1 "$sub_bin" cli.sub >"$tmp/csub.log" 2>&1 &
csub=$!
pids=$csub
wait_for "$tmp/csub.log" "\[event\] subscribed to greetings"
"$cmicro" publish greetings '{"text":"from the cli","seq":"7"}' -m X-From=cmicro \
    >"$tmp/out" 2>"$tmp/err" || fail "publish to the C subscriber: $(cat "$tmp/err")"
wait_for "$tmp/csub.log" '^cli.sub got #7 "from the cli" from cmicro$'
wait "$csub" || fail "the C subscriber exited with $?"

# A go-micro subscriber.
if [ -n "$gbroker" ]; then
    "$gbroker" sub -broker http -topic cli.go -count 1 >"$tmp/gsub.log" 2>&1 &
    gsub=$!
    pids=$gsub
    wait_for "$tmp/gsub.log" READY
    sleep 0.3
    "$cmicro" publish cli.go '{"name":"msg-3"}' -m X-Seq=3 >"$tmp/out" 2>"$tmp/err" ||
        fail "publish to the go-micro subscriber: $(cat "$tmp/err")"
    wait_for "$tmp/gsub.log" '"name":"msg-3","content_type":"application/json","topic":"cli.go"'
    grep -q '"seq":"3"' "$tmp/gsub.log" || fail "the go-micro subscriber lost the metadata"
    wait "$gsub" || fail "the go-micro subscriber exited with $?"
elif [ "${CI:-}" = true ]; then
    fail "Go is not installed: the go-micro subscriber was not built"
else
    echo "note: Go is not installed: the go-micro subscriber is skipped" >&2
fi

# Bad input.
"$cmicro" publish greetings '{"text":' >"$tmp/out" 2>"$tmp/err"
one_line 2 $? "$tmp/err" "the message is not JSON (at byte" "bad JSON"
MICRO_BROKER=nats MICRO_BROKER_ADDRESS=nats://127.0.0.1:1 "$cmicro" publish greetings '{}' \
    >"$tmp/out" 2>"$tmp/err"
one_line 1 $? "$tmp/err" "publish greetings on broker nats" "NATS down"
# A subscriber killed without deregistering: its node stays until its TTL; the publish names it.
"$sub_bin" cli.dead >"$tmp/dead.log" 2>&1 &
dead=$!
pids=$dead
wait_for "$tmp/dead.log" "\[event\] subscribed to greetings"
kill -KILL "$dead"
wait "$dead" 2>/dev/null
"$cmicro" publish greetings '{}' >"$tmp/out" 2>"$tmp/err"
one_line 1 $? "$tmp/err" "connection refused" "a dead subscriber"
grep -q "node greetings-" "$tmp/err" || fail "the error does not name the node: $(cat "$tmp/err")"
pids=
cleanup
echo "ok: cmicro publish"
