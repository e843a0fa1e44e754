#!/bin/sh
# Calls over a link with loss and delay: echo-server in one private network namespace, cm-load in
# another, joined by a veth pair whose two ends carry `tc qdisc ... netem delay 40ms 10ms loss 5%`.
# Checks that calls complete as configured (idempotent calls retried within their deadline,
# others ended by their attempt timeout) and that nothing hangs.
#   netem.sh ECHO_SERVER CM_LOAD
#
# Both namespaces are private (`unshare -n`, the second one held by a `sleep` and entered with
# nsenter): nothing is bound on, routed to or sent from the host's network. As root `unshare -n`;
# otherwise `unshare -rn`; when neither works, or when the kernel has no netem qdisc (sch_netem),
# the test prints SKIP with the reason and exits 77. CMICRO_NETEM_FALLBACK=htb (for kernels
# without netem) emulates the link with an htb rate limit over a 2-packet queue instead: delay by
# queueing, loss by tail drop.
set -u

if [ "$#" -ne 2 ]; then
    echo "usage: $0 ECHO_SERVER CM_LOAD" >&2
    exit 2
fi
server_bin=$1
load_bin=$2

if [ -z "${CMICRO_NETEM_INNER:-}" ]; then
    export CMICRO_NETEM_INNER=1
    if [ "$(id -u)" -eq 0 ]; then
        exec unshare -n sh "$0" "$@"
    fi
    if unshare -rn true 2>/dev/null; then
        exec unshare -rn sh "$0" "$@"
    fi
    echo "SKIP: not root and 'unshare -rn' is unavailable: the lossy link needs private network" \
        "namespaces (never the host network)"
    exit 77
fi

# ---- inside namespace A ----
tmp=$(mktemp -d)
holder=
server=
cleanup() {
    [ -n "$server" ] && kill -KILL "$server" 2>/dev/null
    [ -n "$holder" ] && kill -KILL "$holder" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$tmp"
}
fail() {
    echo "FAIL: $*"
    cat "$tmp/server.err" 2>/dev/null
    cleanup
    exit 1
}
skip() {
    echo "SKIP: $*"
    cleanup
    exit 77
}

# Refuse to run anywhere but in a namespace of our own.
host_ns=$(readlink /proc/1/ns/net 2>/dev/null || echo unknown)
[ "$(readlink /proc/self/ns/net)" != "$host_ns" ] || fail "not in a private network namespace"

ip link set lo up || fail "cannot set up loopback"
# Namespace B: held by a sleep (bounded: it goes with this test).
unshare -n sleep 300 &
holder=$!
i=0
while [ "$(readlink /proc/$holder/ns/net 2>/dev/null)" = "$(readlink /proc/self/ns/net)" ] ||
    [ -z "$(readlink /proc/$holder/ns/net 2>/dev/null)" ]; do
    i=$((i + 1))
    [ "$i" -le 50 ] || fail "the second namespace did not come up"
    sleep 0.1
done
inb() {
    nsenter -t "$holder" -n "$@"
}

ip link add cmnetA type veth peer name cmnetB 2>"$tmp/err" ||
    skip "cannot create a veth pair: $(cat "$tmp/err")"
ip link set cmnetB netns "$holder" || fail "cannot move the veth end"
ip addr add 10.203.0.1/24 dev cmnetA && ip link set cmnetA up || fail "veth A"
inb ip link set lo up && inb ip addr add 10.203.0.2/24 dev cmnetB && inb ip link set cmnetB up ||
    fail "veth B"

mode=netem
if ! tc qdisc add dev cmnetA root netem delay 40ms 10ms loss 5% 2>"$tmp/err"; then
    reason="tc netem: $(tr '\n' ' ' <"$tmp/err")(the kernel has no sch_netem)"
    command -v tc >/dev/null || reason="tc not found (install iproute2)"
    [ "${CMICRO_NETEM_FALLBACK:-}" = htb ] || skip "$reason"
    echo "netem unavailable: $reason; emulating with htb (CMICRO_NETEM_FALLBACK=htb)"
    mode=htb
    for side in "" inb; do
        dev=cmnetA
        [ -n "$side" ] && dev=cmnetB
        $side tc qdisc add dev $dev root handle 1: htb default 1 &&
            $side tc class add dev $dev parent 1: classid 1:1 \
                htb rate 96kbit burst 1600 quantum 1600 &&
            $side tc qdisc add dev $dev parent 1:1 handle 10: pfifo limit 2 ||
            skip "htb fallback could not be set up"
    done
else
    inb tc qdisc add dev cmnetB root netem delay 40ms 10ms loss 5% || fail "netem on veth B"
fi
echo "link: $mode; A: $(tc qdisc show dev cmnetA | head -n 2 | tr '\n' ' ')"

# The server in A.
MICRO_REGISTRY=memory MICRO_SERVER_ADDRESS=10.203.0.1:0 CMICRO_QUIET=1 \
    "$server_bin" cm.netem.echo >"$tmp/server.out" 2>"$tmp/server.err" &
server=$!
i=0
until grep -q '^listening ' "$tmp/server.out" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -le 100 ] || fail "server did not start"
    kill -0 "$server" 2>/dev/null || fail "server exited"
    sleep 0.1
done
addr=$(awk '/^listening /{print $2; exit}' "$tmp/server.out")

# Idempotent calls: retried on timeouts and transport errors within a 4 s deadline. Almost all
# complete; at most 2% may exhaust their attempts; none may outlive its deadline.
echo "== idempotent calls (attempt timeout 1 s, 4 attempts, deadline 4 s)"
inb "$load_bin" --address "$addr" --concurrency 4 --duration 12 --rate 40 --timeout 4000 \
    --attempt-timeout 1000 --attempts 4 --idempotent --report 4 --max-errors 10 \
    >"$tmp/load1.out" 2>"$tmp/load1.err"
rc=$?
cat "$tmp/load1.out"
head -n 5 "$tmp/load1.err"
[ "$rc" -eq 0 ] || fail "idempotent calls: cm-load exited $rc (too many errors, or a hang)"
calls=$(awk '/^total /{sub("calls=","",$2); print $2}' "$tmp/load1.out")
[ "${calls:-0}" -ge 240 ] || fail "idempotent calls: only ${calls:-0} of 480 calls made"

# Plain calls: not retried after a timeout (they may have been processed). Errors are allowed
# (timeouts of unlucky attempts); a hang is not.
echo "== plain calls (attempt timeout 600 ms, deadline 2 s)"
inb "$load_bin" --address "$addr" --concurrency 4 --duration 8 --rate 40 --timeout 2000 \
    --attempt-timeout 600 --report 4 --max-errors 1000000 >"$tmp/load2.out" 2>"$tmp/load2.err"
rc=$?
cat "$tmp/load2.out"
head -n 5 "$tmp/load2.err"
[ "$rc" -eq 0 ] || fail "plain calls: cm-load exited $rc (a call outlived its deadline)"
if grep -v 'CM_ETIMEDOUT\|CM_ECLOSED\|ECONNRESET' "$tmp/load2.err" | grep -q 'call failed'; then
    fail "plain calls: an error other than a timeout or a cut connection"
fi
kill -TERM "$server"
wait "$server" || fail "server exited non-zero after SIGTERM"
server=
cleanup
echo "ok: calls over a lossy link ($mode)"
