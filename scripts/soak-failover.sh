#!/usr/bin/env bash
# Failover soak: two echo servers on fixed loopback ports, one client process calling both (an
# address list, idempotent calls retried on the other node) at FRACTION of the peak rate for
# MINUTES minutes, and every KILL_EVERY seconds one server (in turn) killed with SIGKILL and
# started again on its port.
#   scripts/soak-failover.sh [MINUTES] [FRACTION] [KILL_EVERY]   defaults: 60, 0.5, 300
#   BUILD=dir (default build): a meson build dir holding test/reliability/{echo-server,cm-load}
#   SOAK_CONCURRENCY (8), SOAK_SAMPLE_S (5), SOAK_RSS_PCT (5)
#
# Fails when a call fails (calls cut by a kill are retried, being idempotent, and count as
# retried, not failed), a call outlives its deadline (cm-load's hang check), or the client's
# resident memory leaves a band of SOAK_RSS_PCT percent around its value after the warm-up.
# Everything runs on 127.0.0.1. CI runs a 2-minute version with a kill every 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-60}
fraction=${2:-0.5}
kill_every=${3:-300}
build=${BUILD:-build}
conc=${SOAK_CONCURRENCY:-8}
sample=${SOAK_SAMPLE_S:-5}
rss_pct=${SOAK_RSS_PCT:-5}
warmup=30
server_bin=$build/test/reliability/echo-server
load_bin=$build/test/reliability/cm-load
for b in "$server_bin" "$load_bin"; do
    [ -x "$b" ] || { echo "soak-failover: $b not found: ninja -C $build" >&2; exit 2; }
done

tmp=$(mktemp -d)
pids=("" "")
load=
cleanup() {
    [ -n "$load" ] && kill "$load" 2>/dev/null || true
    for p in "${pids[@]}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "SOAK FAILED: $*" >&2
    exit 1
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
ports=("$(free_port)" "$(free_port)")

# Starts server i on its port and waits until it listens.
start_server() {
    local i=$1 out=$tmp/server$1.out
    : >"$out"
    MICRO_REGISTRY=memory MICRO_SERVER_ADDRESS=127.0.0.1:${ports[$i]} CMICRO_QUIET=1 \
        "$server_bin" cm.soak.failover >"$out" 2>>"$tmp/server$i.err" &
    pids[$i]=$!
    for _ in $(seq 100); do
        grep -q '^listening ' "$out" 2>/dev/null && return 0
        kill -0 "${pids[$i]}" 2>/dev/null || fail "server $i exited: $(tail -n 3 "$tmp/server$i.err")"
        sleep 0.1
    done
    fail "server $i did not listen on ${ports[$i]}"
}

start_server 0
start_server 1
addrs=127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}

echo "soak-failover: servers on $addrs; measuring peak ($conc threads, 10 s)"
"$load_bin" --address "$addrs" --concurrency "$conc" --duration 10 --report 10 --idempotent \
    >"$tmp/peak.out" || fail "peak run failed: $(cat "$tmp/peak.out")"
peak=$(sed -n 's/^total .* rate=\([0-9.]*\).*/\1/p' "$tmp/peak.out")
rate=$(awk -v p="$peak" -v f="$fraction" 'BEGIN {printf "%.0f", p * f}')
secs=$((minutes * 60))
echo "soak-failover: peak $peak calls/s; $minutes min at $rate calls/s, SIGKILL every" \
    "$kill_every s"

"$load_bin" --address "$addrs" --concurrency "$conc" --duration "$secs" --rate "$rate" \
    --report "$sample" --timeout 5000 --attempts 3 --idempotent \
    >"$tmp/load.out" 2>"$tmp/load.err" &
load=$!
start=$(date +%s)
next_kill=$kill_every
victim=0
kills=0
base_rss=
min_rss=
max_rss=0
printf "%6s %10s %10s %7s %9s %6s\n" t_s client_kb calls errors p99_ms kills
while kill -0 "$load" 2>/dev/null; do
    sleep "$sample"
    t=$(($(date +%s) - start))
    if [ "$t" -ge "$next_kill" ] && kill -0 "$load" 2>/dev/null; then
        kill -KILL "${pids[$victim]}" 2>/dev/null || true
        wait "${pids[$victim]}" 2>/dev/null || true
        start_server "$victim"
        kills=$((kills + 1))
        victim=$((1 - victim))
        next_kill=$((next_kill + kill_every))
    fi
    r=$(awk '/^VmRSS:/{print $2}' "/proc/$load/status" 2>/dev/null || echo 0)
    line=$(grep '^t=' "$tmp/load.out" 2>/dev/null | tail -n 1 || true)
    calls=$(echo "$line" | sed -n 's/.* calls=\([0-9]*\).*/\1/p')
    errs=$(echo "$line" | sed -n 's/.* errors=\([0-9]*\).*/\1/p')
    p99=$(echo "$line" | sed -n 's/.* p99_ms=\([0-9.]*\).*/\1/p')
    printf "%6s %10s %10s %7s %9s %6s\n" "$t" "$r" "${calls:-?}" "${errs:-?}" "${p99:-?}" "$kills"
    [ "${errs:-0}" = 0 ] || fail "calls failed: $(head -n 3 "$tmp/load.err")"
    [ "$r" -gt 0 ] || continue
    if [ -z "$base_rss" ] && [ "$t" -ge "$warmup" ]; then
        base_rss=$r
    fi
    if [ -n "$base_rss" ]; then
        [ -z "$min_rss" ] || [ "$r" -lt "$min_rss" ] && min_rss=$r
        [ "$r" -gt "$max_rss" ] && max_rss=$r
        lo=$((base_rss * (100 - rss_pct) / 100))
        hi=$((base_rss * (100 + rss_pct) / 100))
        [ "$r" -ge "$lo" ] && [ "$r" -le "$hi" ] ||
            fail "client RSS $r KiB left ±$rss_pct% of $base_rss KiB"
    fi
done
rc=0
wait "$load" || rc=$?
load=
total=$(grep '^total ' "$tmp/load.out" || true)
echo "soak-failover: load: $total"
[ "$rc" -eq 0 ] || fail "cm-load exited $rc: $(head -n 5 "$tmp/load.err")"
[ "$kills" -ge 1 ] || fail "no server was killed (run longer than the kill interval)"
echo "soak-failover: $kills kills; client RSS KiB after warm-up ${base_rss:-?}, min ${min_rss:-?}," \
    "max $max_rss"
echo "soak-failover: ok"
