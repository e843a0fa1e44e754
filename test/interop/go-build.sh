#!/bin/sh
# Builds the go-micro peer of the interop suite for one go-micro version (a meson
# custom_target, so ninja rebuilds it when a Go source, go.mod or go.sum changes; Go's own build
# cache makes that quick). The module cache is Go's usual one; modules not in it come from the
# Go module proxy and are checked against the committed go.sum (-mod=readonly).
#   go-build.sh GO MODULE_DIR OUTPUT GO_MICRO_VERSION
set -eu
go=$1
dir=$2
out=$(cd "$(dirname "$3")" && pwd)/$(basename "$3")
want=$4
cd "$dir"
CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" "$go" build -trimpath -o "$out.tmp" .
got=$("$out.tmp" version)
if [ "$got" != "$want" ]; then
    echo "go-build.sh: $out links go-micro $got, not $want (check $dir/go.mod)" >&2
    rm -f "$out.tmp"
    exit 1
fi
mv "$out.tmp" "$out"
