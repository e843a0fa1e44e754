#!/bin/sh
# Runs one mDNS test program inside a private network namespace whose only interface is
# loopback, with multicast on and 224.0.0.0/4 and ff00::/8 routed to it, so that no multicast
# datagram ever leaves this host. Where the namespace has IPv6 (::1 on lo), the IPv6 route must
# work and the program is told so (CMICRO_TEST_IPV6=1): the tests then check mDNS over IPv6 too.
#   run-netns.sh PROGRAM [ARGS...]
# As root: `unshare -n`. Otherwise `unshare -rn` (user namespaces); when neither is possible the
# test is skipped (exit 77) with a visible SKIP line. A namespace that cannot be created or set
# up as root is a failure, never a silent pass.
set -u

if [ "$#" -lt 1 ]; then
    echo "usage: $0 PROGRAM [ARGS...]" >&2
    exit 2
fi

# Inside the namespace: set lo up, then run the program with the markers it checks (the
# program also refuses to run when any interface but loopback is up). Linux turns a plain IPv6
# route over lo into a reject route; a local one delivers multicast to the groups' members.
setup='ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo src 127.0.0.1 || exit 1
if [ "$(cat /proc/sys/net/ipv6/conf/lo/disable_ipv6 2>/dev/null)" = 0 ]; then
    ip -6 route add local ff00::/8 dev lo table local || exit 1
    export CMICRO_TEST_IPV6=1
else
    echo "note: no IPv6 in the namespace: mDNS is tested over IPv4 only" >&2
    export CMICRO_TEST_IPV6=0
fi
CMICRO_TEST_NETNS=1 exec "$@"'
CMICRO_TEST_PARENT_NETNS=$(readlink /proc/self/ns/net) || exit 1
export CMICRO_TEST_PARENT_NETNS

if [ "$(id -u)" -eq 0 ]; then
    unshare -n sh -c "$setup" sh "$@"
    rc=$?
    if [ "$rc" -eq 77 ]; then
        echo "FAIL: the test tried to skip although running as root" >&2
        exit 1
    fi
    exit "$rc"
fi

if unshare -rn sh -c 'ip link set lo up' 2>/dev/null; then
    exec unshare -rn sh -c "$setup" sh "$@"
fi

echo "SKIP: not root and 'unshare -rn' is unavailable: mDNS tests need a private network" \
    "namespace (never run on the host network)" >&2
exit 77
