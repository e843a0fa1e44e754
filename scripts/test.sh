#!/usr/bin/env bash
# Sets up a Debian machine, builds cmicro twice (plain, and with AddressSanitizer +
# UndefinedBehaviorSanitizer) and runs every test suite in both builds, then the fuzz smoke
# (scripts/fuzz-smoke.sh), the unit tests under valgrind (scripts/valgrind.sh) and a 2-minute
# failover soak (scripts/soak-failover.sh).
#   scripts/test.sh            everything
#   scripts/test.sh --quick    the plain build only
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

quick=0
[ "${1:-}" = "--quick" ] && quick=1

run_build() {
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@"
  fi
  ninja -C "$dir"
  meson test -C "$dir" --print-errorlogs --num-processes 2
}

echo "== plain build (gcc)"
run_build build

if [ $quick -eq 0 ]; then
  echo "== sanitizer build (clang, address + undefined)"
  CC=clang run_build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
  echo "== fuzz smoke (clang, libFuzzer + address + undefined)"
  bash scripts/fuzz-smoke.sh
  echo "== unit tests under valgrind (plain build)"
  bash scripts/valgrind.sh
  echo "== failover soak, 2 minutes (plain build; scripts/soak-failover.sh runs the hour)"
  BUILD=build bash scripts/soak-failover.sh 2 0.5 30 2>&1 | grep -v ' Killed '
fi
echo "== all tests passed"
