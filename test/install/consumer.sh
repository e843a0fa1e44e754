#!/bin/sh
# Installs cmicro from a build dir into a temporary root and builds a project outside the tree
# against it three ways: plain cc with pkg-config, meson, and CMake's find_package. Each program
# serves and calls its own service and must print "hi consumer". The public headers are also
# compiled with -std=c11 -pedantic -Werror and as C++, with only pkg-config's flags.
#   consumer.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1
src=$2
here=$src/test/install
tmp=$(mktemp -d /tmp/cmicro-consumer-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

meson install -C "$build" --destdir "$tmp/root" --no-rebuild --quiet >/dev/null
pc=$(find "$tmp/root" -name cmicro.pc | head -n1)
cfg=$(find "$tmp/root" -name cmicroConfig.cmake | head -n1)
[ -n "$pc" ] || { echo "FAIL: no cmicro.pc installed"; exit 1; }
[ -n "$cfg" ] || { echo "FAIL: no cmicroConfig.cmake installed"; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc")"
plugin=$(pkg-config --variable=protoc_gen_cmicro cmicro)
libdir=$(pkg-config --variable=libdir cmicro)
echo "installed: $pc; plugin $plugin; libdir $libdir"
[ -x "$plugin" ] || { echo "FAIL: the pkg-config variable protoc_gen_cmicro ($plugin) is not the plugin"; exit 1; }

expect() { # label program
    out=$("$2")
    if [ "$out" != "hi consumer" ]; then
        echo "FAIL: $1 printed '$out'"
        exit 1
    fi
    echo "ok: $1"
}

echo "== strict headers"
cc -std=c11 -pedantic -Wall -Wextra -Werror $(pkg-config --cflags cmicro) -c "$here/strict.c" \
    -o "$tmp/strict.o"
c++ -x c++ -std=c++11 -pedantic -Wall -Wextra -Werror $(pkg-config --cflags cmicro) \
    -c "$here/strict.c" -o "$tmp/strict-cxx.o"
echo "ok: C11 -pedantic and C++11"

echo "== plain cc"
mkdir "$tmp/cc"
protoc "--plugin=protoc-gen-cmicro=$plugin" --c_out="$tmp/cc" --cmicro_out="$tmp/cc" \
    --proto_path="$here/consumer" "$here/consumer/greet.proto"
cc -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags cmicro libuv) -I"$tmp/cc" \
    "$here/consumer/main.c" "$tmp/cc/greet.pb-c.c" "$tmp/cc/greet.cmicro.c" -o "$tmp/cc/consumer" \
    $(pkg-config --libs cmicro libuv) -Wl,-rpath,"$libdir"
expect "plain cc" "$tmp/cc/consumer"

echo "== meson"
meson setup "$tmp/mb" "$here/consumer" >/dev/null
ninja -C "$tmp/mb" >/dev/null
expect meson "$tmp/mb/consumer"

echo "== cmake"
cmake -S "$here/consumer" -B "$tmp/cb" -Dcmicro_DIR="$(dirname "$cfg")" >/dev/null
cmake --build "$tmp/cb" >/dev/null
expect cmake "$tmp/cb/consumer"
echo "3 passed, 0 failed"
