#!/bin/sh
# A three-member etcd cluster on loopback ports, for the tests. Everything lives in DIR: each
# member's data dir and log (mN/, mN.log), its pid (mN.pid), the client URL list
# (DIR/endpoints, comma separated, also one per line in DIR/urls) and the flags a member was
# started with (mN.args), so that a killed member can be started again.
#   cluster.sh start DIR          three members, waits until all are healthy
#   cluster.sh stop DIR           stops every member (SIGKILL after 5 s), keeps DIR
#   cluster.sh kill DIR N [SIG]   signal member N (1..3; default SIGKILL), waits for its exit
#   cluster.sh pause DIR N        SIGSTOP member N: it keeps its sockets and answers nothing
#   cluster.sh resume DIR N       SIGCONT member N
#   cluster.sh restart DIR N      starts member N again with its data dir, waits until healthy
#   cluster.sh leader DIR         the number (1..3) of the current leader
#   cluster.sh ctl DIR ARGS...    etcdctl against the cluster (ETCDCTL_* variables apply)
#   cluster.sh tls DIR            one more member, alone, serving https with a certificate of a
#                                 new CA (DIR/tls/ca.pem) for 127.0.0.1; prints its URL; its pid
#                                 is DIR/tls.pid (stop stops it too)
# Exit 77 (the meson skip code) when etcd or etcdctl is not installed.
set -eu
cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
    echo "usage: cluster.sh start|stop|kill|pause|resume|restart|leader|ctl DIR ..." >&2
    exit 2
fi
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
    echo "cluster.sh: etcd is not installed (Debian: etcd-server etcd-client)" >&2
    exit 77
fi
export ETCDCTL_API=3

# Six loopback ports nobody listens on now (the kernel's choice, released at once).
free_ports() {
    python3 -c '
import socket
ss = []
for _ in range(6):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ss.append(s)
print(" ".join(str(s.getsockname()[1]) for s in ss))'
}

healthy() { # URL
    etcdctl --endpoints="$1" --command-timeout=1s endpoint health >/dev/null 2>&1
}

wait_healthy() { # URL
    i=0
    while ! healthy "$1"; do
        i=$((i + 1))
        if [ $i -ge 100 ]; then
            echo "cluster.sh: $1 not healthy after 20 s" >&2
            return 1
        fi
        sleep 0.2
    done
}

launch() { # N
    # shellcheck disable=SC2046
    nohup etcd $(cat "$dir/m$1.args") >"$dir/m$1.log" 2>&1 &
    echo $! >"$dir/m$1.pid"
}

member_url() { # N
    sed -n "${1}p" "$dir/urls"
}

ctl() {
    etcdctl --endpoints="$(cat "$dir/endpoints")" "$@"
}

case "$cmd" in
start)
    mkdir -p "$dir"
    set -- $(free_ports)
    c1=$1 c2=$2 c3=$3 p1=$4 p2=$5 p3=$6
    cluster="m1=http://127.0.0.1:$p1,m2=http://127.0.0.1:$p2,m3=http://127.0.0.1:$p3"
    : >"$dir/urls"
    for n in 1 2 3; do
        eval c=\$c$n
        eval p=\$p$n
        echo "http://127.0.0.1:$c" >>"$dir/urls"
        # Short heartbeats keep elections quick; a small quota is not needed.
        echo "--name m$n --data-dir $dir/m$n" \
            "--listen-client-urls http://127.0.0.1:$c --advertise-client-urls http://127.0.0.1:$c" \
            "--listen-peer-urls http://127.0.0.1:$p --initial-advertise-peer-urls http://127.0.0.1:$p" \
            "--initial-cluster $cluster --initial-cluster-state new" \
            "--initial-cluster-token cmicro-test-$$ --heartbeat-interval 100 --election-timeout 1000 --auth-token-ttl 2" \
            "--enable-v2=false --logger zap --log-level warn" >"$dir/m$n.args"
    done
    paste -sd, "$dir/urls" >"$dir/endpoints"
    for n in 1 2 3; do launch $n; done
    for n in 1 2 3; do
        if ! wait_healthy "$(member_url $n)"; then
            tail -20 "$dir/m$n.log" >&2
            exit 1
        fi
    done
    cat "$dir/endpoints"
    ;;
stop)
    if [ -f "$dir/tls.pid" ]; then
        kill "$(cat "$dir/tls.pid")" 2>/dev/null || true
        rm -f "$dir/tls.pid"
    fi
    for n in 1 2 3; do
        [ -f "$dir/m$n.pid" ] || continue
        pid=$(cat "$dir/m$n.pid")
        kill "$pid" 2>/dev/null || true
        kill -s CONT "$pid" 2>/dev/null || true
    done
    for n in 1 2 3; do
        [ -f "$dir/m$n.pid" ] || continue
        pid=$(cat "$dir/m$n.pid")
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$dir/m$n.pid"
    done
    ;;
pause | resume)
    n=${3:?member}
    if [ "$cmd" = pause ]; then sig=STOP; else sig=CONT; fi
    kill -s "$sig" "$(cat "$dir/m$n.pid")"
    ;;
kill)
    n=${3:?member}
    sig=${4:-KILL}
    pid=$(cat "$dir/m$n.pid")
    kill -s "$sig" "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    rm -f "$dir/m$n.pid"
    ;;
restart)
    n=${3:?member}
    launch "$n"
    wait_healthy "$(member_url "$n")"
    ;;
leader)
    # Polled for up to 20 s: an election may be running.
    i=0
    while [ $i -lt 40 ]; do
        for n in 1 2 3; do
            [ -f "$dir/m$n.pid" ] || continue
            if etcdctl --endpoints="$(member_url $n)" --command-timeout=2s endpoint status \
                -w simple 2>/dev/null | awk -F', ' '{print $5}' | grep -qx true; then
                echo "$n"
                exit 0
            fi
        done
        i=$((i + 1))
        sleep 0.5
    done
    echo "cluster.sh: no leader" >&2
    exit 1
    ;;
tls)
    t="$dir/tls"
    mkdir -p "$t"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=cmicro test CA" \
        -keyout "$t/ca-key.pem" -out "$t/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$t/server-key.pem" \
        -out "$t/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\n' >"$t/ext.cnf"
    openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca-key.pem" \
        -CAcreateserial -days 1 -extfile "$t/ext.cnf" -out "$t/server.pem" 2>/dev/null
    set -- $(free_ports)
    url="https://127.0.0.1:$1"
    nohup etcd --name tls --data-dir "$t/data" --listen-client-urls "$url" \
        --advertise-client-urls "$url" --listen-peer-urls "http://127.0.0.1:$2" \
        --initial-advertise-peer-urls "http://127.0.0.1:$2" \
        --initial-cluster "tls=http://127.0.0.1:$2" --cert-file "$t/server.pem" \
        --key-file "$t/server-key.pem" --enable-v2=false --logger zap --log-level warn \
        >"$t/etcd.log" 2>&1 &
    echo $! >"$dir/tls.pid"
    i=0
    while ! etcdctl --endpoints="$url" --cacert "$t/ca.pem" --command-timeout=1s endpoint health \
        >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -ge 100 ]; then
            tail -20 "$t/etcd.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "$url"
    ;;
ctl)
    shift 2
    ctl "$@"
    ;;
*)
    echo "cluster.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac
