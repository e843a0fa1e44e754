#!/usr/bin/env bash
# Runs the unit tests once under valgrind memcheck, in a plain build (gcc, no sanitizers) of its
# own, and fails on any memory error or definite/indirect leak. Reports from external libraries
# that are not cmicro's bugs are suppressed in scripts/valgrind.supp, each with its reason.
#   scripts/valgrind.sh [TEST...]       default: every unit test but the excluded ones
# Environment: VALGRIND_BUILD (default build-valgrind).
#
# Excluded, with the reason:
#   protoc-gen-golden, protoc-gen-stdin  shell scripts that run protoc, which runs the plugin as a
#       child: valgrind would check /bin/sh (dash leaks by design) and not the plugin, whose code
#       runs in-process under valgrind in protoc-gen-robust and protoc-gen-stubs.
#   selector-cache  checks what happens within 20-120 ms windows around a 100 ms cache TTL;
#       under valgrind's slow-down those windows overlap and the test flakes. The selector's
#       memory is checked here by selector-pick, and selector-cache runs in the ASan build.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${VALGRIND_BUILD:-build-valgrind}
excluded=(protoc-gen-golden protoc-gen-stdin selector-cache)

if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" -Dbuildtype=debug
fi
ninja -C "$dir"

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  while read -r name; do
    skip=0
    for x in "${excluded[@]}"; do [ "$name" = "$x" ] && skip=1; done
    [ $skip -eq 0 ] && tests+=("$name")
  done < <(meson test -C "$dir" --list --suite unit --no-rebuild 2>/dev/null |
           sed -n 's/^[^ ]*:unit \/ //p')
fi
echo "== valgrind: ${#tests[@]} unit tests (excluded: ${excluded[*]})"

wrapper="valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect"
wrapper+=" --show-leak-kinds=definite,indirect --track-origins=yes --num-callers=30"
wrapper+=" --suppressions=$PWD/scripts/valgrind.supp --gen-suppressions=all"
meson test -C "$dir" --no-rebuild --print-errorlogs --num-processes 2 --timeout-multiplier 20 \
  --wrapper="$wrapper" "${tests[@]}"
echo "== valgrind: no errors, no leaks"
