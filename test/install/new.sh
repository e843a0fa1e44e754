#!/bin/sh
# The new user's path: install cmicro into a temporary root, scaffold a service with the
# installed `cmicro new`, build it with meson against the installed library and plugin, run its
# server on Consul (the project's test agent, or CONSUL_HTTP_ADDR), and see it with the client,
# `cmicro services`, `describe`, `call` and through `cmicro api` under curl.
#   new.sh BUILD_DIR PYTHON CONSUL_AGENT_PY
set -u
build=$1
python=$2
agent_py=$3
tmp=$(mktemp -d /tmp/cmicro-new-XXXXXX)
agent=
server=
api=
cleanup() {
    for p in "$server" "$api" "$agent"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
fail() {
    echo "FAIL: $*" >&2
    cat "$tmp/server.log" >&2 2>/dev/null
    cleanup
    exit 1
}
wait_for() { # FILE PATTERN WHAT
    i=0
    until grep -q "$2" "$1" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -le 150 ] || fail "$3: $(cat "$1")"
        sleep 0.1
    done
}

meson install -C "$build" --destdir "$tmp/root" --no-rebuild --quiet >/dev/null ||
    fail "meson install"
pc=$(find "$tmp/root" -name cmicro.pc | head -n1)
export PKG_CONFIG_PATH="$(dirname "$pc")"
libdir=$(pkg-config --variable=libdir cmicro)
cmicro=$(find "$tmp/root" -path '*/bin/cmicro' | head -n1)
[ -x "$cmicro" ] || fail "no cmicro installed"
export LD_LIBRARY_PATH="$libdir"

cd "$tmp" || fail "cd"
"$cmicro" new hello2 >/dev/null || fail "cmicro new hello2"
"$cmicro" new hello2 >/dev/null 2>&1 && fail "cmicro new over an existing folder succeeded"
"$cmicro" new 'bad/name' >/dev/null 2>&1
[ $? -eq 2 ] || fail "cmicro new with a bad name did not exit 2"
grep -q "meson setup build && ninja -C build" hello2/README.md || fail "README lacks the build"
(cd hello2 && meson setup build >"$tmp/setup.log" 2>&1 && ninja -C build >"$tmp/ninja.log" 2>&1) ||
    fail "the scaffold does not build: $(tail -n 20 "$tmp/setup.log" "$tmp/ninja.log")"
echo "ok: cmicro new hello2 builds against the installed cmicro"

. "$(dirname "$agent_py")/agent.sh"
consul_agent_start "$python" "$agent_py" "$tmp" || fail "test agent did not start"
export MICRO_REGISTRY=consul MICRO_SERVER_ADDRESS=127.0.0.1:0
hello2/build/server >"$tmp/server.log" 2>&1 &
server=$!
wait_for "$tmp/server.log" "\[service\] registered" "server did not register"

out=$(hello2/build/client Ada 2>&1) || fail "client failed: $out"
[ "$out" = "Hello Ada" ] || fail "client printed '$out'"
"$cmicro" services | grep -qx hello2 || fail "services does not list hello2"
"$cmicro" describe hello2 | grep -q '"name":	"Greeter.Hello"' || fail "describe lacks Greeter.Hello"
out=$("$cmicro" call hello2 Greeter.Hello '{"name":"Ada"}' 2>&1) || fail "call failed: $out"
[ "$out" = '{"message":"Hello Ada"}' ] || fail "call printed $out"
"$cmicro" api --address 127.0.0.1:0 >"$tmp/api.log" 2>&1 &
api=$!
wait_for "$tmp/api.log" "^listening on " "api did not listen"
gw=$(sed -n 's/^listening on //p' "$tmp/api.log")
out=$(curl -s -m 10 -X POST -d '{"name":"Ada"}' "http://$gw/api/hello2/Greeter.Hello")
[ "$out" = '{"message":"Hello Ada"}' ] || fail "curl through cmicro api printed $out"
echo "ok: the server is seen and called by client, services, describe, call and api"

kill -TERM "$api" "$server"
wait "$server" || fail "server exited non-zero after SIGTERM"
server=
wait "$api" || fail "api exited non-zero after SIGTERM"
api=
cleanup
echo "2 passed, 0 failed"
