#!/bin/sh
# cmicro stream against a C and a go-micro v4.11 server of service Streamer
# (test/proto/stream.proto) over Consul (the test agent, or CONSUL_HTTP_ADDR): a server-stream,
# a client-stream and a bidi stream with metadata, a go-micro error mid-stream, a line that is not
# JSON and an unknown service, each with its exit status.
#   cli_stream.sh consul|mdns CMICRO C_STREAM_SERVER PYTHON CONSUL_AGENT_PY [GMICRO]
# (mdns: under test/mdns/run-netns.sh)
set -u
reg=$1
shift
cmicro=$1
cserver=$2
python=$3
agent_py=$4
gmicro=${5:-}
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
if [ "$reg" = mdns ]; then
    export MICRO_REGISTRY=mdns MICRO_MDNS_INTERFACE=lo MICRO_SERVER_ADDRESS=127.0.0.1:0
else
    . "$(dirname "$agent_py")/agent.sh"
    consul_agent_start "$python" "$agent_py" "$tmp" || fail "test agent did not start"
    export MICRO_REGISTRY=consul MICRO_SERVER_ADDRESS=127.0.0.1:0
fi

# run NAME ENDPOINT STDIN [ARGS...]: the tool's exit status in $rc, its output in out and err.
run() {
    name=$1 ep=$2 input=$3
    shift 3
    printf '%s' "$input" | "$cmicro" stream "$name" "$ep" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}

check_server() { # NAME
    run "$1" Streamer.Count '{"count":3,"text":"x"}
'
    [ "$rc" -eq 0 ] || fail "$1 Count: exit $rc: $(cat "$tmp/err")"
    [ "$(grep -c '"text":"x"' "$tmp/out")" -eq 3 ] || fail "$1 Count printed: $(cat "$tmp/out")"
    run "$1" Streamer.Chat '{"seq":1,"text":"a"}
{"seq":2,"text":"b"}
' -m X-Tenant=acme
    [ "$rc" -eq 0 ] || fail "$1 Chat: exit $rc: $(cat "$tmp/err")"
    grep -q '"text":"a|acme"' "$tmp/out" && grep -q '"text":"b|acme"' "$tmp/out" ||
        fail "$1 Chat printed: $(cat "$tmp/out")"
    run "$1" Streamer.Sum '{"seq":1}
{"seq":2}
{"seq":3,"last":true}
'
    [ "$rc" -eq 0 ] || fail "$1 Sum: exit $rc: $(cat "$tmp/err")"
    [ "$(wc -l <"$tmp/out")" -eq 1 ] && grep -q '"count":3' "$tmp/out" ||
        fail "$1 Sum printed: $(cat "$tmp/out")"
    run "$1" Streamer.Count '{"count":2,"fail_code":409}
'
    [ "$rc" -eq 1 ] || fail "$1 a failing Count: exit $rc"
    [ "$(wc -l <"$tmp/out")" -eq 2 ] || fail "$1 a failing Count printed: $(cat "$tmp/out")"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q '"code":409' "$tmp/err" ||
        fail "$1 a failing Count said: $(cat "$tmp/err")"
    run "$1" Streamer.Chat '{"seq":1
'
    [ "$rc" -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "not JSON" "$tmp/err" ||
        fail "$1 a line that is not JSON: exit $rc: $(cat "$tmp/err")"
    echo "ok: cmicro stream with $1"
}

MICRO_SERVER_NAME=cli.c.stream "$cserver" >"$tmp/c.log" 2>&1 &
pids=$!
wait_for "$tmp/c.log" "\[service\] registered"
check_server cli.c.stream
if [ -n "$gmicro" ]; then
    "$gmicro" stream-server -registry "$reg" -name cli.go.stream >"$tmp/go.log" 2>&1 &
    pids="$pids $!"
    wait_for "$tmp/go.log" "^REGISTERED"
    check_server cli.go.stream
elif [ "${CI:-}" = true ]; then
    fail "Go is not installed: the go-micro stream server was not built"
fi
run cli.nobody Streamer.Count '{}
'
[ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "an unknown service: exit $rc: $(cat "$tmp/err")"
cleanup
echo "ok: cmicro stream over $reg"
