#!/bin/sh
# protoc-gen-cmicro run by hand: what it does with empty, garbage and truncated input on stdin
# (a message and exit code 1, never a crash), with a good request (a response holding the two
# files) and with a client-streaming method (the two files as well).
#
# It also checks protobuf-c's (pb_c_file).c_package option, which renames the C types.
#
# usage: check-stdin.sh PROTOC PLUGIN PROTOBUF_INCLUDE_DIR PROTOBUF_C_INCLUDE_DIR
set -u
if [ $# -ne 4 ]; then
    echo "usage: $0 PROTOC PLUGIN PROTOBUF_INCLUDE_DIR PROTOBUF_C_INCLUDE_DIR" >&2
    exit 2
fi
protoc=$1
plugin=$2
pbinc=$3
pbcinc=$4
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

check() {
    if [ "$2" -eq "$3" ] && grep -q -- "$4" "$5"; then
        echo "ok: $1"
    else
        echo "FAIL: $1: exit code $2 (want $3), output:" >&2
        cat "$5" >&2
        fail=1
    fi
}

encode() {
    "$protoc" --proto_path="$pbinc" --proto_path="$pbcinc" \
        --encode=google.protobuf.compiler.CodeGeneratorRequest \
        google/protobuf/compiler/plugin.proto protobuf-c/protobuf-c.proto <"$1" >"$2" || {
        echo "FAIL: cannot encode $1" >&2
        exit 1
    }
}

decode() {
    "$protoc" --proto_path="$pbinc" --decode=google.protobuf.compiler.CodeGeneratorResponse \
        google/protobuf/compiler/plugin.proto <"$1" >"$2" 2>&1
}

"$plugin" </dev/null >"$tmp/out" 2>"$tmp/err"
check "empty stdin" $? 1 "no CodeGeneratorRequest" "$tmp/err"

printf '\377\377\377\377\377\377\377\377\377\377\377\377' >"$tmp/garbage"
"$plugin" <"$tmp/garbage" >"$tmp/out" 2>"$tmp/err"
check "garbage stdin" $? 1 "cannot parse the CodeGeneratorRequest" "$tmp/err"

"$plugin" --help </dev/null >"$tmp/out" 2>"$tmp/err"
check "an argument" $? 1 "usage:" "$tmp/err"

encode "$here/request-ok.txtpb" "$tmp/ok.bin"
"$plugin" <"$tmp/ok.bin" >"$tmp/out" 2>"$tmp/err"
rc=$?
decode "$tmp/out" "$tmp/rsp"
check "good request" $rc 0 'name: "ping.cmicro.h"' "$tmp/rsp"
check "good request, source" $rc 0 'name: "ping.cmicro.c"' "$tmp/rsp"

# Every strict prefix of the good request is malformed: exit 1 with a message.
len=$(wc -c <"$tmp/ok.bin")
n=0
bad=0
while [ $n -lt "$len" ]; do
    head -c $n "$tmp/ok.bin" >"$tmp/cut"
    "$plugin" <"$tmp/cut" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -ne 1 ] || [ ! -s "$tmp/err" ]; then
        echo "FAIL: request cut to $n of $len bytes: exit code $rc (want 1)" >&2
        cat "$tmp/err" >&2
        bad=1
    fi
    n=$((n + 1))
done
if [ $bad -eq 0 ]; then
    echo "ok: $len truncated requests"
else
    fail=1
fi

encode "$here/request-stream.txtpb" "$tmp/stream.bin"
"$plugin" <"$tmp/stream.bin" >"$tmp/out" 2>"$tmp/err"
rc=$?
decode "$tmp/out" "$tmp/rsp"
check "streaming method" $rc 0 'name: "ping.cmicro.c"' "$tmp/rsp"
if grep -q 'error:' "$tmp/rsp"; then
    echo "FAIL: a streaming method was refused" >&2
    fail=1
fi

{ cat "$here/request-ok.txtpb"; echo 'parameter: "fast"'; } >"$tmp/param.txtpb"
encode "$tmp/param.txtpb" "$tmp/param.bin"
"$plugin" <"$tmp/param.bin" >"$tmp/out" 2>"$tmp/err"
rc=$?
decode "$tmp/out" "$tmp/rsp"
check "unknown option" $rc 0 'error: "protoc-gen-cmicro takes no options' "$tmp/rsp"

cpkg='options { [pb_c_file] { c_package: "Other.thing" } }'
sed "s/  package: \"ping.v1\"/&\\n  $cpkg/" "$here/request-ok.txtpb" >"$tmp/cpkg.txtpb"
encode "$tmp/cpkg.txtpb" "$tmp/cpkg.bin"
"$plugin" <"$tmp/cpkg.bin" >"$tmp/out" 2>"$tmp/err"
rc=$?
decode "$tmp/out" "$tmp/rsp"
check "c_package: stub names" $rc 0 'int other_thing_pinger_ping(cm_client' "$tmp/rsp"
check "c_package: C types" $rc 0 'const Other__Thing__Ping \*req' "$tmp/rsp"
check "c_package: descriptors" $rc 0 '&other__thing__ping__descriptor' "$tmp/rsp"
check "c_package: endpoint" $rc 0 '\\"Pinger\.Ping\\", &other__thing' "$tmp/rsp"

exit $fail
