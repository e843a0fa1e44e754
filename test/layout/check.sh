#!/bin/sh
# The tree is the architecture: checks the layering rules on the #include lines and that the
# library writes nothing to stdout or stderr except through the log facade (core/log.c).
#   check.sh SOURCE_ROOT
# Rules, bottom up (each module may include itself and the modules listed):
#   core       nothing of cmicro
#   codec, transport, registry   core
#   selector   core, registry (it caches the registry's answers, as go-micro's selector does)
#   broker     core, codec, transport, registry (the HTTP broker listens and POSTs with the
#              transport and keeps its subscriptions in the registry)
#   framework  everything below it
# A backend folder (registry/consul, transport/http, ...) counts as its module. The core never
# includes a backend's header.
set -u
root=${1:-.}
cd "$root" || exit 2
status=0

# The public headers each module owns, by file name.
owner() {
    for m in core codec transport registry selector broker framework; do
        if [ -f "$m/include/cmicro/$1" ]; then
            echo "$m"
            return
        fi
    done
    echo unknown
}

allowed() { # module included-module
    [ "$1" = "$2" ] && return 0
    case "$1:$2" in
    codec:core | transport:core | registry:core | selector:core | selector:registry) return 0 ;;
    broker:core | broker:codec | broker:transport | broker:registry) return 0 ;;
    framework:*) return 0 ;;
    esac
    return 1
}

for m in core codec transport registry selector broker framework; do
    for f in $(find "$m" -name '*.c' -o -name '*.h'); do
        # Public headers of cmicro: <cmicro/x.h>.
        for h in $(sed -n 's|^#include <cmicro/\([a-z_]*\.h\)>.*|\1|p' "$f"); do
            o=$(owner "$h")
            if ! allowed "$m" "$o"; then
                echo "layering: $f includes <cmicro/$h> of $o" >&2
                status=1
            fi
        done
        # Internal headers: "x_int.h" must be the module's own (or core_int.h).
        for h in $(sed -n 's|^#include "\([a-z_]*_int\.h\)".*|\1|p' "$f"); do
            if [ "$h" = core_int.h ]; then
                continue
            fi
            if [ -z "$(find "$m" -name "$h")" ]; then
                echo "layering: $f includes \"$h\" from outside $m/" >&2
                status=1
            fi
        done
    done
done

# The core includes no backend header.
if grep -rn '#include "\(http\|mdns\|consul\|memory\|json\)_int\.h"' core >&2; then
    echo "layering: core includes a backend header" >&2
    status=1
fi
# No go-micro RPC error in the transport.
if grep -rn 'cm_error' transport >&2; then
    echo "layering: the transport uses cm_error (an RPC-layer value)" >&2
    status=1
fi
# No direct writes to stdout/stderr in library code, except the facade's default writer.
if grep -rnE '\b(fprintf|fputs|fwrite) *\((stderr|stdout)|\bv?printf *\(|\bputs *\(|\bperror *\(' \
    core codec transport registry selector broker framework | grep -v '^core/log\.c:' >&2; then
    echo "logging: library code writes to stdout/stderr outside core/log.c" >&2
    status=1
fi
# No tracked file over 1 MiB (when the tree is a git checkout).
if command -v git >/dev/null && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    big=$(git ls-files -z | xargs -0 -r find 2>/dev/null -maxdepth 0 -type f -size +1024k)
    if [ -n "$big" ]; then
        echo "size: tracked files over 1 MiB: $big" >&2
        status=1
    fi
fi
[ $status -eq 0 ] && echo "layout: ok"
exit $status
