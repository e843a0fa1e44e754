#!/bin/sh
# The README's main job as a test: the hello server registers over mDNS, the client calls
# Hello.Say by name and must print "Hello BOSSMA"; SIGTERM stops the server cleanly.
# Runs under test/mdns/run-netns.sh (a private network namespace).
#   hello_mdns.sh HELLO_SERVER HELLO_CLIENT
set -u
server_bin=$1
client_bin=$2
export MICRO_REGISTRY=mdns MICRO_MDNS_INTERFACE=lo MICRO_SERVER_ADDRESS=127.0.0.1:0
log=$(mktemp)
"$server_bin" >"$log" 2>&1 &
server=$!
fail() {
    echo "FAIL: $*" >&2
    cat "$log" >&2
    kill -KILL "$server" 2>/dev/null
    rm -f "$log"
    exit 1
}
i=0
until grep -q "\[service\] registered" "$log"; do
    i=$((i + 1))
    [ "$i" -le 100 ] || fail "server did not register within 10 s"
    kill -0 "$server" 2>/dev/null || fail "server exited"
    sleep 0.1
done
grep -q "do register check" "$log" || fail "RegisterCheck did not run"
out=$("$client_bin" 2>&1) || fail "client failed: $out"
[ "$out" = "Hello BOSSMA" ] || fail "client printed '$out'"
out=$("$client_bin" Ada 2>&1) || fail "client failed: $out"
[ "$out" = "Hello Ada" ] || fail "client printed '$out'"
# An empty name is the seed's BadRequest.
if out=$("$client_bin" "" 2>&1); then
    fail "an empty name was answered: $out"
fi
echo "$out" | grep -q "name required" || fail "an empty name got '$out', not 'name required'"
kill -TERM "$server"
wait "$server"
rc=$?
[ "$rc" -eq 0 ] || fail "server exited with $rc after SIGTERM"
# After the goodbye, the name no longer resolves.
if out=$("$client_bin" 2>&1); then
    fail "client still reached a stopped server: $out"
fi
echo "$out" | grep -q "not found" || fail "unexpected client error: $out"
# ... and the error says what the lookup saw.
echo "$out" | grep -q "0 answers in [0-9]* ms on interfaces \[.*\]; multicast may be blocked" ||
    fail "the not-found error lacks the mDNS diagnostic: $out"
rm -f "$log"
echo "ok: hello over mDNS"
