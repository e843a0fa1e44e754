#!/bin/sh
# The stream example prints each kind's result exactly.
#   stream.sh STREAM_EXAMPLE
set -u
want='countdown: 5 4 3 2 1
total of 1..5: 15
shout: hello -> HELLO
shout: streams -> STREAMS'
out=$("$1" 2>/dev/null) || { echo "FAIL: the example failed: $out"; exit 1; }
[ "$out" = "$want" ] || { printf 'FAIL: got\n%s\nwant\n%s\n' "$out" "$want"; exit 1; }
out=$("$1" 3 2>/dev/null | head -1)
[ "$out" = "countdown: 3 2 1" ] || { echo "FAIL: with n 3: $out"; exit 1; }
echo "2 passed, 0 failed"
