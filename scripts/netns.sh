#!/usr/bin/env bash
# Runs a command inside a private network namespace whose only interface is loopback, with
# multicast enabled on it and the IPv4 and IPv6 multicast ranges routed to it, so that mDNS
# traffic never leaves this host.
#   scripts/netns.sh COMMAND [ARGS...]
# As root it uses `unshare -n`; as a user, `unshare -rn` where user namespaces are enabled.
set -euo pipefail
if [ "${CMICRO_IN_NETNS:-}" = 1 ]; then
  ip link set lo up
  ip link set lo multicast on
  ip route add 224.0.0.0/4 dev lo src 127.0.0.1 2>/dev/null || true
  # IPv6 (ff02::fb): a plain route over lo would be a reject route; a local one delivers.
  ip -6 route add local ff00::/8 dev lo table local 2>/dev/null || true
  exec "$@"
fi
export CMICRO_IN_NETNS=1
if [ "$(id -u)" -eq 0 ]; then
  exec unshare -n -- "$0" "$@"
else
  exec unshare -rn -- "$0" "$@"
fi
