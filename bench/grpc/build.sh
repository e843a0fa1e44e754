#!/usr/bin/env bash
# Builds the gRPC C++ peers into OUT from Debian's libgrpc++-dev: grpc-echo and grpc-load (the
# unary benchmark, bench/run.sh), grpc-stream (the streaming benchmark, bench/stream.sh).
#   build.sh OUTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1
mkdir -p "$out/gen"
protoc --proto_path="$here/.." --cpp_out="$out/gen" --grpc_out="$out/gen" \
  --plugin=protoc-gen-grpc="$(command -v grpc_cpp_plugin)" "$here/../echo.proto"
flags=$(pkg-config --cflags grpc++ protobuf)
libs=$(pkg-config --libs grpc++ protobuf)
cxx() { # shellcheck disable=SC2086
  g++ -O2 -std=c++17 -I"$out/gen" $flags "$@"; }
# The generated code once, then each program.
cxx -c -o "$out/gen/echo.pb.o" "$out/gen/echo.pb.cc"
cxx -c -o "$out/gen/echo.grpc.pb.o" "$out/gen/echo.grpc.pb.cc"
gen="$out/gen/echo.pb.o $out/gen/echo.grpc.pb.o"
for p in echo:server load:client stream:stream; do
  # shellcheck disable=SC2086
  cxx -o "$out/grpc-${p%%:*}" "$here/${p#*:}.cc" $gen $libs -lpthread
done
