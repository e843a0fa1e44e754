#!/bin/sh
# Regenerates golden/ after an intended change of protoc-gen-cmicro's output:
#
#     test/protoc-gen-cmicro/regen-golden.sh BUILD_DIR
#
# BUILD_DIR is a configured meson build directory; the plugin is rebuilt there first. Review
# the diff (git diff test/protoc-gen-cmicro/golden) before committing it.
set -eu
if [ $# -ne 1 ]; then
    echo "usage: $0 BUILD_DIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "$1" && pwd)
ninja -C "$build" protoc-gen-cmicro/protoc-gen-cmicro
pbinc=$(pkg-config --variable=includedir protobuf 2>/dev/null || echo /usr/include)
exec "$here/check-golden.sh" --regen protoc "$build/protoc-gen-cmicro/protoc-gen-cmicro" "$root" \
    "$pbinc"
