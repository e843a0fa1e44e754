#!/usr/bin/env bash
# Runs a command inside a private network namespace whose only interface is loopback, with
# multicast enabled on it, so that mDNS traffic never leaves this host.
#   scripts/netns.sh COMMAND [ARGS...]
# As root it uses `unshare -n`; as a user, `unshare -rn` where user namespaces are enabled.
set -euo pipefail
if [ "${CMICRO_IN_NETNS:-}" = 1 ]; then
  ip link set lo up
  ip link set lo multicast on
  ip route add 224.0.0.0/4 dev lo 2>/dev/null || true
  exec "$@"
fi
export CMICRO_IN_NETNS=1
if [ "$(id -u)" -eq 0 ]; then
  exec unshare -n -- "$0" "$@"
else
  exec unshare -rn -- "$0" "$@"
fi
