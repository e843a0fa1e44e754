#!/usr/bin/env bash
# The main job: sets up and builds cmicro if needed, then starts the hello server and calls it
# by name from the hello client over mDNS, printing the reply. Both run inside a private network
# namespace (scripts/netns.sh), so no multicast packet leaves this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${CMICRO_IN_NETNS:-}" != 1 ]; then
  bash scripts/setup.sh
  if [ ! -f build/build.ninja ]; then meson setup build >/dev/null; fi
  ninja -C build >/dev/null
  exec bash scripts/netns.sh "$0" "$@"
fi

export MICRO_REGISTRY=mdns MICRO_MDNS_INTERFACE=lo MICRO_SERVER_ADDRESS=127.0.0.1:0
log=$(mktemp)
build/examples/hello/hello-server >"$log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -f "$log"' EXIT

# Wait (at most 10 s) until the server says it is registered.
for _ in $(seq 100); do
  grep -q "registered" "$log" && break
  kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
build/examples/hello/hello-client "${1:-BOSSMA}"
