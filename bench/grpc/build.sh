#!/usr/bin/env bash
# Builds the gRPC C++ peer (grpc-echo, grpc-load) into OUT from Debian's libgrpc++-dev.
#   build.sh OUTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1
mkdir -p "$out/gen"
protoc --proto_path="$here/.." --cpp_out="$out/gen" --grpc_out="$out/gen" \
  --plugin=protoc-gen-grpc="$(command -v grpc_cpp_plugin)" "$here/../echo.proto"
flags=$(pkg-config --cflags grpc++ protobuf)
libs=$(pkg-config --libs grpc++ protobuf)
gen="$out/gen/echo.pb.cc $out/gen/echo.grpc.pb.cc"
# shellcheck disable=SC2086
g++ -O2 -std=c++17 -I"$out/gen" $flags -o "$out/grpc-echo" "$here/server.cc" $gen $libs -lpthread
# shellcheck disable=SC2086
g++ -O2 -std=c++17 -I"$out/gen" $flags -o "$out/grpc-load" "$here/client.cc" $gen $libs -lpthread
