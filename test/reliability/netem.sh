#!/bin/sh
# Calls over a link with loss and delay: echo-server in one private network namespace, cm-load in
# another, joined by a link that delays each packet by 40 ms +- 10 ms and loses 5 %, both ways.
# Where the kernel has netem (sch_netem), the link is a veth pair whose two ends carry
# `tc qdisc ... netem delay 40ms 10ms loss 5%`. Where it has not, the link is linkem (linkem.c,
# no setting needed): a TUN device in each namespace and a userspace process that forwards IP
# packets between them with the same delay, jitter and loss.
# Checks that calls complete as configured (idempotent calls retried within their deadline,
# others ended by their attempt timeout), that nothing hangs, and that the link really is slow and
# lossy: the median call of every cm-load interval takes at least 70 ms (a round trip is two
# 40 ms delays, less jitter), and with linkem, both directions forwarded and lost packets.
#   netem.sh ECHO_SERVER CM_LOAD LINKEM
#
# Both namespaces are private (`unshare -n`, the second one held by a `sleep` and entered with
# nsenter; linkem enters it through /proc/PID/ns/net): nothing is bound on, routed to or sent from
# the host's network. As root `unshare -n`; otherwise `unshare -rn`. When that fails, or when
# neither netem nor TUN devices (/dev/net/tun) can be set up, the test prints SKIP with the reason
# and exits 77.
set -u

if [ "$#" -ne 3 ]; then
    echo "usage: $0 ECHO_SERVER CM_LOAD LINKEM" >&2
    exit 2
fi
server_bin=$1
load_bin=$2
linkem_bin=$3

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
linkem=
cleanup() {
    [ -n "$server" ] && kill -KILL "$server" 2>/dev/null
    [ -n "$linkem" ] && kill -KILL "$linkem" 2>/dev/null
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
inb ip link set lo up || fail "cannot set up loopback in the second namespace"

# The link: netem on a veth pair where the kernel has netem, else linkem.
mode=
if ! command -v tc >/dev/null; then
    reason="tc not found (install iproute2)"
elif ! ip link add cmnetA type veth peer name cmnetB 2>"$tmp/err"; then
    reason="cannot create a veth pair: $(tr '\n' ' ' <"$tmp/err")"
elif ! tc qdisc add dev cmnetA root netem delay 40ms 10ms loss 5% 2>"$tmp/err"; then
    reason="tc netem: $(tr '\n' ' ' <"$tmp/err")(the kernel has no sch_netem)"
    ip link del cmnetA
else
    mode=netem
    ip link set cmnetB netns "$holder" || fail "cannot move the veth end"
    ip addr add 10.203.0.1/24 dev cmnetA && ip link set cmnetA up || fail "veth A"
    inb ip addr add 10.203.0.2/24 dev cmnetB && inb ip link set cmnetB up || fail "veth B"
    inb tc qdisc add dev cmnetB root netem delay 40ms 10ms loss 5% || fail "netem on veth B"
    echo "link: netem; A: $(tc qdisc show dev cmnetA | head -n 1)"
fi
if [ -z "$mode" ]; then
    echo "netem unavailable: $reason; emulating the link with linkem"
    "$linkem_bin" --ns-b "$holder" --dev-a cmtunA --addr-a 10.203.0.1/24 --dev-b cmtunB \
        --addr-b 10.203.0.2/24 --delay-ms 40 --jitter-ms 10 --loss 5 --seed $$ \
        >"$tmp/linkem.out" 2>"$tmp/linkem.err" &
    linkem=$!
    i=0
    until grep -q '^ready ' "$tmp/linkem.out" 2>/dev/null; do
        if ! kill -0 "$linkem" 2>/dev/null; then
            wait "$linkem"
            rc=$?
            linkem=
            [ "$rc" -ne 3 ] || skip "$reason; and linkem cannot have TUN devices:" \
                "$(tr '\n' ' ' <"$tmp/linkem.err")"
            fail "linkem exited $rc: $(tr '\n' ' ' <"$tmp/linkem.err")"
        fi
        i=$((i + 1))
        [ "$i" -le 50 ] || fail "linkem did not get ready"
        sleep 0.1
    done
    mode=linkem
    echo "link: linkem; $(head -n 1 "$tmp/linkem.out")"
fi

# The median call of every cm-load interval (of 20 calls or more) takes at least a round trip.
check_delay() {
    low=$(awk '/^t=/ {
            for (i = 2; i <= NF; i++) {
                split($i, kv, "=")
                v[kv[1]] = kv[2] + 0
            }
            if (v["calls"] >= 20 && (low == "" || v["p50_ms"] < low)) low = v["p50_ms"]
        }
        END { print low }' "$1")
    [ -n "$low" ] || fail "$2: no interval of 20 calls or more"
    awk -v p="$low" 'BEGIN { exit !(p >= 70) }' ||
        fail "$2: an interval's p50 latency is $low ms, under 70 ms: the link is not delaying"
    echo "$2: lowest p50 latency of an interval $low ms (>= 70 ms)"
}

# linkem's counter NAME for direction DIR (a->b or b->a).
linkem_counter() {
    awk -v d="$1" -v k="$2=" '$1 == d {
            for (i = 2; i <= NF; i++) if (index($i, k) == 1) print substr($i, length(k) + 1) + 0
        }' "$tmp/linkem.out"
}

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
check_delay "$tmp/load1.out" "idempotent calls"

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
check_delay "$tmp/load2.out" "plain calls"
kill -TERM "$server"
wait "$server" || fail "server exited non-zero after SIGTERM"
server=
if [ "$mode" = linkem ]; then
    kill -TERM "$linkem"
    wait "$linkem"
    rc=$?
    linkem=
    grep -e '^a->b ' -e '^b->a ' "$tmp/linkem.out"
    [ "$rc" -eq 0 ] || fail "linkem exited $rc: $(tr '\n' ' ' <"$tmp/linkem.err")"
    for dir in 'a->b' 'b->a'; do
        [ "$(linkem_counter "$dir" forwarded)" -gt 0 ] 2>/dev/null ||
            fail "linkem forwarded nothing $dir"
        [ "$(linkem_counter "$dir" lost)" -gt 0 ] 2>/dev/null ||
            fail "linkem lost nothing $dir: the link is not lossy"
    done
fi
cleanup
echo "ok: calls over a lossy link ($mode)"
