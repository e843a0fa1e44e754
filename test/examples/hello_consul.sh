#!/bin/sh
# The hello example on Consul: the server registers registry-consul.service with the agent
# (CONSUL_HTTP_ADDR, or the project's test agent started here), the client calls it by name.
#   hello_consul.sh PYTHON CONSUL_AGENT_PY HELLO_SERVER HELLO_CLIENT
set -u
python=$1
agent_py=$2
server_bin=$3
client_bin=$4
tmp=$(mktemp -d)
agent=
server=
cleanup() {
    [ -n "$server" ] && kill -KILL "$server" 2>/dev/null
    [ -n "$agent" ] && kill "$agent" 2>/dev/null
    rm -rf "$tmp"
}
fail() {
    echo "FAIL: $*" >&2
    cat "$tmp/server.log" >&2 2>/dev/null
    cleanup
    exit 1
}
. "$(dirname "$agent_py")/agent.sh"
consul_agent_start "$python" "$agent_py" "$tmp" || fail "test agent did not start"
export MICRO_REGISTRY=consul MICRO_SERVER_ADDRESS=127.0.0.1:0
"$server_bin" >"$tmp/server.log" 2>&1 &
server=$!
i=0
until grep -q "\[service\] registered" "$tmp/server.log"; do
    i=$((i + 1))
    [ "$i" -le 100 ] || fail "server did not register within 10 s"
    kill -0 "$server" 2>/dev/null || fail "server exited"
    sleep 0.1
done
out=$("$client_bin" 2>&1) || fail "client failed: $out"
[ "$out" = "Hello BOSSMA" ] || fail "client printed '$out'"
kill -TERM "$server"
wait "$server" || fail "server exited non-zero after SIGTERM"
server=
# SIGTERM deregistered at once: the agent no longer lists the node.
out=$("$client_bin" 2>&1) && fail "client still reached a stopped server: $out"
echo "$out" | grep -q "not found" || fail "unexpected client error: $out"
cleanup
echo "ok: hello over Consul"
