#!/usr/bin/env bash
# Soak test (not run in CI): an echo server under a steady load for MINUTES minutes, at FRACTION
# of the peak rate measured first, with the server's memory, file descriptors and the calls'
# errors sampled every few seconds.
#   scripts/soak.sh [MINUTES] [FRACTION]        defaults: 10 minutes, 0.5 of peak
#   BUILD=dir (default build): a meson build dir holding test/reliability/{echo-server,cm-load}
#   SOAK_CONCURRENCY (8), SOAK_SAMPLE_S (5)
#
# Fails when a call fails, a call outlives its deadline, the server dies, or, measured from the
# end of a 30 s warm-up, its resident memory grows by more than SOAK_RSS_GROWTH_KB (default
# 10240 KiB: a leak of a few bytes per call at thousands of calls a second shows in minutes) or
# its open file descriptors by more than SOAK_FD_GROWTH (default 4: one leaked connection per
# few hundred thousand calls shows).
# Everything runs on 127.0.0.1 (the server uses the in-process memory registry).
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-10}
fraction=${2:-0.5}
build=${BUILD:-build}
conc=${SOAK_CONCURRENCY:-8}
sample=${SOAK_SAMPLE_S:-5}
rss_growth=${SOAK_RSS_GROWTH_KB:-10240}
fd_growth=${SOAK_FD_GROWTH:-4}
warmup=30
case "$minutes" in
'' | *[!0-9]* | 0)
    echo "usage: scripts/soak.sh [MINUTES >= 1] [FRACTION]" >&2
    exit 2
    ;;
esac
server_bin=$build/test/reliability/echo-server
load_bin=$build/test/reliability/cm-load
for b in "$server_bin" "$load_bin"; do
    if [ ! -x "$b" ]; then
        echo "soak: $b not found: meson setup $build && ninja -C $build" >&2
        exit 2
    fi
done

tmp=$(mktemp -d)
server=
load=
cleanup() {
    [ -n "$load" ] && kill "$load" 2>/dev/null || true
    [ -n "$server" ] && kill -KILL "$server" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "SOAK FAILED: $*" >&2
    exit 1
}

MICRO_REGISTRY=memory MICRO_SERVER_ADDRESS=127.0.0.1:0 CMICRO_QUIET=1 \
    "$server_bin" cm.soak.echo >"$tmp/server.out" 2>"$tmp/server.err" &
server=$!
for _ in $(seq 100); do
    grep -q '^listening ' "$tmp/server.out" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || fail "server exited: $(cat "$tmp/server.err")"
    sleep 0.1
done
addr=$(awk '/^listening /{print $2; exit}' "$tmp/server.out")
[ -n "$addr" ] || fail "server did not start"

rss_kb() {
    awk '/^VmRSS:/{print $2}' "/proc/$server/status"
}
fds() {
    ls "/proc/$server/fd" | wc -l
}

echo "soak: server pid $server at $addr; measuring peak ($conc threads, 10 s)"
"$load_bin" --address "$addr" --concurrency "$conc" --duration 10 --report 10 >"$tmp/peak.out" \
    || fail "peak run failed: $(cat "$tmp/peak.out")"
peak=$(sed -n 's/^total .* rate=\([0-9.]*\).*/\1/p' "$tmp/peak.out")
rate=$(awk -v p="$peak" -v f="$fraction" 'BEGIN {printf "%.0f", p * f}')
secs=$((minutes * 60))
echo "soak: peak $peak calls/s; running $minutes min at $rate calls/s ($fraction of peak)," \
    "sampling every $sample s"

first_rss=$(rss_kb)
first_fds=$(fds)
"$load_bin" --address "$addr" --concurrency "$conc" --duration "$secs" --rate "$rate" \
    --report "$sample" --timeout 5000 >"$tmp/load.out" 2>"$tmp/load.err" &
load=$!
start=$(date +%s)
base_rss=
base_fds=
max_rss=0
max_fds=0
printf "%6s %10s %5s %10s %7s %9s\n" t_s rss_kb fds calls errors p99_ms
while kill -0 "$load" 2>/dev/null; do
    sleep "$sample"
    kill -0 "$server" 2>/dev/null || fail "the server died"
    t=$(($(date +%s) - start))
    r=$(rss_kb)
    f=$(fds)
    line=$(grep '^t=' "$tmp/load.out" 2>/dev/null | tail -n 1 || true)
    calls=$(echo "$line" | sed -n 's/.* calls=\([0-9]*\).*/\1/p')
    errs=$(echo "$line" | sed -n 's/.* errors=\([0-9]*\).*/\1/p')
    p99=$(echo "$line" | sed -n 's/.* p99_ms=\([0-9.]*\).*/\1/p')
    printf "%6s %10s %5s %10s %7s %9s\n" "$t" "$r" "$f" "${calls:-?}" "${errs:-?}" "${p99:-?}"
    [ "${errs:-0}" = 0 ] || fail "calls failed: $(head -n 3 "$tmp/load.err")"
    if [ -z "$base_rss" ] && [ "$t" -ge "$warmup" ]; then
        base_rss=$r
        base_fds=$f
    fi
    [ "$r" -gt "$max_rss" ] && max_rss=$r
    [ "$f" -gt "$max_fds" ] && max_fds=$f
    if [ -n "$base_rss" ]; then
        [ "$r" -le $((base_rss + rss_growth)) ] ||
            fail "RSS grew from $base_rss to $r KiB (bound: +$rss_growth KiB after warm-up)"
        [ "$f" -le $((base_fds + fd_growth)) ] ||
            fail "open fds grew from $base_fds to $f (bound: +$fd_growth after warm-up)"
    fi
done
rc=0
wait "$load" || rc=$?
load=
end_rss=$(rss_kb)
end_fds=$(fds)
total=$(grep '^total ' "$tmp/load.out" || true)
echo "soak: load: $total"
[ "$rc" -eq 0 ] || fail "cm-load exited $rc: $(head -n 5 "$tmp/load.err")"
kill -TERM "$server"
wait "$server" || fail "server exited non-zero after SIGTERM"
server=
echo "soak: RSS KiB before the load $first_rss, after warm-up ${base_rss:-?}, end $end_rss," \
    "max $max_rss; fds before the load $first_fds, after warm-up ${base_fds:-?}, end $end_fds," \
    "max $max_fds"
echo "soak: ok"
