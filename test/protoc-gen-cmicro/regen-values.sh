#!/bin/sh
# Regenerates golden/values.json: the registry Value trees that go-micro v4 (go-micro.dev/v4
# v4.11.0) publishes for the methods of the test protos, computed by go-micro's own extractor on
# the structs protoc-gen-go generates (oracle/main.go). stubs_unit.c compares the tables
# protoc-gen-cmicro generates with this file. Needs Go and the Go module proxy; run it when the
# test protos change:
#
#     test/protoc-gen-cmicro/regen-values.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
oracle=$here/oracle
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$oracle/gen"' EXIT

# protoc-gen-go at the version the oracle module pins.
pgg=$(cd "$oracle" && go list -m -f '{{.Version}}' google.golang.org/protobuf)
GOBIN=$tmp go install "google.golang.org/protobuf/cmd/protoc-gen-go@$pgg"

# directory:file:package of every proto (the order is the order of stubs_unit.c's handlers).
protos="test/proto:echo.proto:echo examples/hello:hello.proto:hello"
protos="$protos test/protoc-gen-cmicro:naming.proto:naming"
files=""
for p in $protos; do
    dir=${p%%:*}
    rest=${p#*:}
    file=${rest%%:*}
    pkg=${rest#*:}
    mkdir -p "$oracle/gen/$pkg"
    PATH=$tmp:$PATH protoc --go_out="$oracle/gen/$pkg" --go_opt=paths=source_relative \
        --go_opt="M$file=cmicro.test/oracle/gen/$pkg" --proto_path="$root/$dir" "$root/$dir/$file"
    files="$files $file"
done
# shellcheck disable=SC2086 # files is a list
(cd "$oracle" && go run . $files) >"$here/golden/values.json"
echo "wrote golden/values.json ($(wc -l <"$here/golden/values.json") endpoints)"
