# Shell functions shared by the benchmark scripts (bench/run.sh, bench/stream.sh source this).

# apt_install PACKAGES...: installs them when allowed (root, apt-get, not SKIP_INSTALL=1).
apt_install() {
  if [ "${SKIP_INSTALL:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing $* (apt-get)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
}

# grpc_peer OUTDIR: makes the gRPC C++ peers (bench/grpc: grpc-echo, grpc-load, grpc-stream) in
# OUTDIR, installing Debian's libgrpc++-dev and protobuf-compiler-grpc first when they are
# missing (apt_install; not with SKIP_GRPC_INSTALL=1), and building when a source is newer than
# a program. Fails (status 1, with a message) when libgrpc++ is not there.
grpc_peer() {
  local out=$1 src
  src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  if ! pkg-config --exists grpc++ || ! command -v grpc_cpp_plugin >/dev/null; then
    if [ "${SKIP_GRPC_INSTALL:-0}" != 1 ]; then
      apt_install libgrpc++-dev protobuf-compiler-grpc g++ pkg-config || true
    fi
  fi
  if ! pkg-config --exists grpc++ || ! command -v grpc_cpp_plugin >/dev/null; then
    echo "== no libgrpc++ (Debian's libgrpc++-dev, protobuf-compiler-grpc): gRPC peer skipped" >&2
    return 1
  fi
  local stale=0 f p
  for p in grpc-echo grpc-load grpc-stream; do
    [ -x "$out/$p" ] || stale=1
  done
  if [ $stale = 0 ]; then
    for f in "$src"/grpc/*.cc "$src/grpc/build.sh" "$src/echo.proto"; do
      for p in grpc-echo grpc-load grpc-stream; do
        [ "$f" -nt "$out/$p" ] && stale=1
      done
    done
  fi
  if [ $stale = 1 ]; then
    echo "== building the gRPC C++ peers in $out" >&2
    bash "$src/grpc/build.sh" "$out" ||
      { echo "== the gRPC C++ peers did not build" >&2; return 1; }
  fi
}
