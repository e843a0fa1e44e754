#!/bin/sh
# The cmicro tool against the hello server over mDNS (inside test/mdns/run-netns.sh's private
# namespace): services lists it, describe shows its endpoint and node, call answers with JSON
# and metadata, a go-micro error prints as JSON with exit 1, a name nobody serves exits 1, the
# api gateway calls, answers /health and counts its requests on /metrics, and watch prints the
# server's goodbye as a delete event.
#   cli_mdns.sh HELLO_SERVER CMICRO
set -u
server_bin=$1
cli=$2
export MICRO_REGISTRY=mdns MICRO_MDNS_INTERFACE=lo MICRO_SERVER_ADDRESS=127.0.0.1:0
log=$(mktemp)
out=$(mktemp)
"$server_bin" >"$log" 2>&1 &
server=$!
passed=0
api=
fail() {
    echo "FAIL: $*" >&2
    cat "$log" >&2
    kill -KILL "$server" $api 2>/dev/null
    rm -f "$log" "$out"
    exit 1
}
i=0
until grep -q "\[service\] registered" "$log"; do
    i=$((i + 1))
    [ "$i" -le 100 ] || fail "server did not register within 10 s"
    sleep 0.1
done

"$cli" services >"$out" 2>&1 || fail "services failed: $(cat "$out")"
grep -qx "registry-consul.service" "$out" || fail "services did not list the hello service: $(cat "$out")"
passed=$((passed + 1))

"$cli" describe registry-consul.service >"$out" 2>&1 || fail "describe failed: $(cat "$out")"
grep -q '"name":	"Hello.Say"' "$out" || fail "describe shows no Hello.Say: $(cat "$out")"
grep -q '"address":	"127.0.0.1:' "$out" || fail "describe shows no node address: $(cat "$out")"
grep -q '"registry":	"mdns"' "$out" || fail "describe shows no node metadata: $(cat "$out")"
passed=$((passed + 1))

got=$("$cli" call registry-consul.service Hello.Say '{"name":"Ada"}' -m X-User-Id=42 2>&1) ||
    fail "call failed: $got"
[ "$got" = '{"message":"Hello Ada"}' ] || fail "call printed $got"
passed=$((passed + 1))

if got=$("$cli" call registry-consul.service Hello.Say '{"name":""}' 2>&1); then
    fail "an empty name was answered: $got"
fi
echo "$got" | grep -q '"code":400' || fail "the BadRequest printed as $got"
echo "$got" | grep -q '"detail":"name required"' || fail "the BadRequest printed as $got"
passed=$((passed + 1))

if got=$("$cli" call nobody.here Hello.Say '{}' 2>&1); then
    fail "a name nobody serves was answered: $got"
fi
echo "$got" | grep -q 'not found' || fail "unknown service printed $got"
if got=$("$cli" describe nobody.here 2>&1); then
    fail "describe found nobody.here: $got"
fi
passed=$((passed + 1))

# health: Debug.Health and /health/ready of every node.
got=$("$cli" health registry-consul.service 2>&1) || fail "health failed: $got"
echo "$got" | grep -q "^registry-consul.service-.* 127.0.0.1:[0-9]* *latest *ok *up$" ||
    fail "health printed $got"
got=$("$cli" health registry-consul.service -o json 2>&1) || fail "health -o json failed: $got"
echo "$got" | grep -q '"debug_health":"ok","ready":"up"' || fail "health -o json printed $got"
if got=$("$cli" health nobody.here 2>&1); then
    fail "health of a name nobody serves succeeded: $got"
fi
passed=$((passed + 1))

# api: the HTTP gateway, under curl.
apilog=$(mktemp)
"$cli" api --address 127.0.0.1:0 >"$apilog" 2>&1 &
api=$!
i=0
until grep -q "^listening on " "$apilog"; do
    i=$((i + 1))
    [ "$i" -le 100 ] || fail "api did not listen: $(cat "$apilog")"
    sleep 0.1
done
gw=$(sed -n 's/^listening on //p' "$apilog")
post() { # PATH BODY -> "STATUS BODY"
    curl -s -m 10 -o "$out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -H 'X-User-Id: 42' --data-binary "$2" "http://$gw$1"
    printf ' %s' "$(cat "$out")"
}
got=$(post /api/registry-consul.service/Hello.Say '{"name":"Ada"}')
[ "$got" = '200 {"message":"Hello Ada"}' ] || fail "api call answered $got"
got=$(post /api/registry-consul.service/Hello.Say '{"name":""}')
case "$got" in '400 {"id":"registry-consul.service","code":400,"detail":"name required"'*) ;;
    *) fail "api's go-micro error answered $got" ;; esac
got=$(post /api/registry-consul.service/Hello.Say 'not json')
case "$got" in '400 '*'not JSON'*) ;; *) fail "api's non-JSON body answered $got" ;; esac
got=$(post /api/nobody.here/Hello.Say '{}')
case "$got" in '500 '*'not found'*) ;; *) fail "api's unknown service answered $got" ;; esac
got=$(post /nope '{}')
case "$got" in '404 '*) ;; *) fail "api's unknown path answered $got" ;; esac
got=$(curl -s -m 10 -o "$out" -w '%{http_code}' "http://$gw/health")
[ "$got" = 200 ] && grep -q '^{"status":"up"}$' "$out" || fail "api's /health answered $got"
got=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X PUT "http://$gw/api/x/Y.z")
[ "$got" = 405 ] || fail "api's PUT answered $got"
# /metrics: the requests above by status (2 x 200, 2 x 400, 500, 404, 405), in the text format.
got=$(curl -s -m 10 -o "$out" -w '%{http_code} %{content_type}' "http://$gw/metrics")
[ "$got" = "200 text/plain; version=0.0.4; charset=utf-8" ] || fail "api's /metrics answered $got"
grep -q '^# TYPE micro_api_requests_total counter$' "$out" || fail "api's /metrics: $(cat "$out")"
for want in 200:2 400:2 500:1 404:1 405:1; do
    grep -qx "micro_api_requests_total{code=\"${want%%:*}\"} ${want#*:}" "$out" ||
        fail "api's /metrics has no $want: $(cat "$out")"
done
[ "$(grep -c '^micro_api_requests_total{' "$out")" = 5 ] || fail "api's /metrics: $(cat "$out")"
# ... and the scrape itself in the next one.
curl -s -m 10 "http://$gw/metrics?x" | grep -qx 'micro_api_requests_total{code="200"} 3' ||
    fail "the second scrape did not count the first"
got=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "http://$gw/metricsx")
[ "$got" = 405 ] || fail "api's GET /metricsx answered $got"
kill -TERM "$api"
wait "$api" || { api=; fail "api did not exit cleanly on SIGTERM: $(cat "$apilog")"; }
api=
rm -f "$apilog"
passed=$((passed + 1))

# --help on every command, -o json, and the bash completion.
for c in services describe call health api new watch; do
    "$cli" "$c" --help >"$out" 2>&1 || fail "$c --help failed: $(cat "$out")"
    grep -q "^usage: cmicro $c" "$out" || fail "$c --help printed $(cat "$out")"
done
got=$("$cli" services -o json 2>&1) || fail "services -o json failed: $got"
echo "$got" | grep -q '^\[.*"registry-consul.service".*\]$' || fail "services -o json printed $got"
comp=$(dirname "$0")/../../cli/cmicro.bash
got=$(PATH="$(dirname "$cli"):$PATH" bash -c ". '$comp'; COMP_WORDS=(cmicro de); COMP_CWORD=1;
    _cmicro; echo \${COMPREPLY[*]}; COMP_WORDS=(cmicro call reg); COMP_CWORD=2; _cmicro;
    echo \${COMPREPLY[*]}")
[ "$got" = "describe
registry-consul.service" ] || fail "bash completion gave $got"
passed=$((passed + 1))

"$cli" bogus >/dev/null 2>&1
[ $? -eq 2 ] || fail "a bad command did not exit 2"
passed=$((passed + 1))

# watch sees the server's goodbye when it stops.
"$cli" watch registry-consul.service --count 2 --seconds 5 >"$out" 2>&1 &
watcher=$!
sleep 0.5
kill -TERM "$server"
wait "$server"
wait "$watcher" || fail "watch failed: $(cat "$out")"
grep -q '^{"action":"delete","service":{"name":"registry-consul.service"' "$out" ||
    fail "watch printed $(cat "$out")"
passed=$((passed + 1))
rm -f "$log" "$out"
echo "$passed passed, 0 failed"
