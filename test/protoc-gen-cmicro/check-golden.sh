#!/bin/sh
# Runs protoc with the built protoc-gen-cmicro on the test protos and compares its output byte for
# byte with golden/. With --regen it writes the output into golden/ instead (see
# regen-golden.sh).
#
# usage: check-golden.sh [--regen] PROTOC PLUGIN SOURCE_ROOT PROTOBUF_INCLUDE_DIR
set -eu

regen=0
if [ "${1:-}" = "--regen" ]; then
    regen=1
    shift
fi
if [ $# -ne 4 ]; then
    echo "usage: $0 [--regen] PROTOC PLUGIN SOURCE_ROOT PROTOBUF_INCLUDE_DIR" >&2
    exit 2
fi
protoc=$1
plugin=$2
root=$3
pbinc=$4
golden=$root/test/protoc-gen-cmicro/golden

# directory:file of every proto with golden output.
protos="examples/hello:hello.proto test/proto:echo.proto test/protoc-gen-cmicro:naming.proto"
protos="$protos test/protoc-gen-cmicro:optional.proto test/protoc-gen-cmicro:described.proto"
protos="$protos test/protoc-gen-cmicro:events.proto"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail=0
for p in $protos; do
    dir=${p%%:*}
    file=${p#*:}
    base=${file%.proto}
    "$protoc" --plugin=protoc-gen-cmicro="$plugin" --cmicro_out="$tmp" \
        --proto_path="$root/$dir" --proto_path="$pbinc" "$root/$dir/$file"
    for ext in h c; do
        out=$base.cmicro.$ext
        if [ ! -f "$tmp/$out" ]; then
            echo "FAIL: protoc-gen-cmicro wrote no $out for $dir/$file" >&2
            fail=1
        elif [ $regen -eq 1 ]; then
            cp "$tmp/$out" "$golden/$out"
            echo "wrote golden/$out"
        elif ! diff -u "$golden/$out" "$tmp/$out"; then
            echo "FAIL: $out differs from golden/$out (regenerate with regen-golden.sh if the" \
                "change is intended)" >&2
            fail=1
        else
            echo "ok: $out"
        fi
    done
done
# Nothing else: one .h and one .c per proto.
count=$(ls "$tmp" | wc -l)
if [ "$count" -ne 12 ]; then
    echo "FAIL: expected 12 files, protoc-gen-cmicro wrote: $(ls "$tmp" | tr '\n' ' ')" >&2
    fail=1
fi
exit $fail
