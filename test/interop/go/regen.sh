#!/bin/sh
# Regenerates the Go code of the test protos under gen/ (committed, so that building the Go
# peers needs only `go build`). Needs protoc, Go and the Go module proxy:
#
#     test/interop/go/regen.sh
#
# protoc-gen-go is google.golang.org/protobuf v1.34.2. protoc-gen-micro: neither the v4
# generator (github.com/go-micro/generator) nor go-micro v4's own cmd/protoc-gen-micro is
# served by the module proxy this project may use, so the script builds the one of
# go-micro.dev/v5 v5.30.0 (the continuation of the same generator), points its imports
# (client, server) at go-micro.dev/v4 and fixes its package clause (below); for messages without
# @model annotations the output is otherwise what the v4 generator writes.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Both plugins are built inside a throw-away module (`go install pkg@version` also asks the
# proxy for the module's version list, which it may refuse).
mkdir "$tmp/tools"
cat >"$tmp/tools/go.mod" <<MOD
module tools.local/protoc

go 1.21

require (
	go-micro.dev/v5 v5.30.0
	google.golang.org/protobuf v1.34.2
)
MOD
(cd "$tmp/tools" && GOFLAGS=-mod=mod go build -o "$tmp/bin/protoc-gen-go" \
    google.golang.org/protobuf/cmd/protoc-gen-go &&
    GOFLAGS=-mod=mod go build -o "$tmp/bin/protoc-gen-micro" \
    go-micro.dev/v5/cmd/protoc-gen-micro)

gen() { # proto-dir file go-package
    out=$here/gen/$3
    rm -f "$out"/*.go
    PATH=$tmp/bin:$PATH protoc --proto_path="$root/$1" \
        --go_out="$out" --go_opt=paths=source_relative \
        --go_opt="M$2=cmicro.test/interop/gen/$3;$3" \
        --micro_out="$out" --micro_opt=paths=source_relative \
        --micro_opt="M$2=cmicro.test/interop/gen/$3;$3" \
        "$root/$1/$2"
    for f in "$out"/*.pb.micro.go; do
        # The generator names the package after the proto package, ignoring the ";name" of
        # the M option that protoc-gen-go honours.
        sed -e 's#"go-micro.dev/v5/#"go-micro.dev/v4/#' -e "s#^package .*#package $3#" \
            "$f" >"$f.tmp" && mv "$f.tmp" "$f"
    done
    if grep -q 'go-micro.dev/v5' "$out"/*.go; then
        echo "regen.sh: generated code still imports go-micro.dev/v5" >&2
        exit 1
    fi
}
gen test/proto echo.proto echopb
gen examples/hello hello.proto hellopb
echo "regenerated $(ls "$here"/gen/*/*.go | wc -l) files under gen/"
