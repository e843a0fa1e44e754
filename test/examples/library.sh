#!/bin/sh
# The library example (nested and repeated fields built in a handler) prints exactly the shelf,
# with a limit, and a go-micro 404 for an unknown shelf.
#   library.sh LIBRARY_EXAMPLE
set -u
bin=$1
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
want='classics (3 of 3)
- Middlemarch by George Eliot (1819) [novel, england]
- War and Peace by Leo Tolstoy (1828) [novel, russia, war]
- The Odyssey by Homer (0) [epic]'
out=$("$bin" 2>"$tmp") || { echo "FAIL: the example failed: $out"; exit 1; }
[ "$out" = "$want" ] || { printf 'FAIL: got\n%s\nwant\n%s\n' "$out" "$want"; exit 1; }
out=$("$bin" classics 1 2>"$tmp") || { echo "FAIL: with a limit: $out"; exit 1; }
[ "$out" = "classics (1 of 3)
- Middlemarch by George Eliot (1819) [novel, england]" ] || { echo "FAIL: limit 1 gave: $out"; exit 1; }
if "$bin" poetry >/dev/null 2>"$tmp"; then
    echo "FAIL: an unknown shelf was answered"
    exit 1
fi
out=$(grep '^library:' "$tmp")
[ "$out" = "library: no shelf poetry" ] || { echo "FAIL: unknown shelf gave: $out"; exit 1; }
echo "3 passed, 0 failed"
