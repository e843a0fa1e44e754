#!/usr/bin/env bash
# Regenerates the encoder-made seeds of corpus/ (the handwritten ones, e.g. the HTTP messages
# of the go-micro spec, are plain files kept as they are):
#   - codec, mDNS and registry payload seeds from cmicro's own encoders (fuzz-gen-seeds);
#   - Consul health and catalog replies captured from the test agent (test/consul/consul_agent.py)
#     after registering the greeter service with the body cmicro's Consul backend sends.
#   test/fuzz/make-seeds.sh BUILD_DIR      (a configured meson build dir)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: make-seeds.sh BUILD_DIR}
corpus=$here/corpus
ninja -C "$build" test/fuzz/fuzz-gen-seeds
tmp=$(mktemp -d)
agent_pid=
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
"$build/test/fuzz/fuzz-gen-seeds" "$corpus" "$tmp/register.json"

python3 -u "$here/../consul/consul_agent.py" --port 0 >"$tmp/port" &
agent_pid=$!
for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
base=http://127.0.0.1:$(head -1 "$tmp/port")
curl -sf -X PUT --data-binary @"$tmp/register.json" "$base/v1/agent/service/register" >/dev/null
# Before the TTL check passes: the node is there with a critical check.
curl -sf "$base/v1/health/service/greeter?stale" >"$corpus/consul-json/health-critical.json"
curl -sf -X PUT "$base/v1/agent/check/pass/service:greeter-5f1c?note=" >/dev/null
curl -sf "$base/v1/health/service/greeter?stale" >"$corpus/consul-json/health-passing.json"
curl -sf "$base/v1/health/service/nothing?stale" >"$corpus/consul-json/health-empty.json"
curl -sf "$base/v1/catalog/services?stale" >"$corpus/consul-json/catalog.json"
echo "seeds written under $corpus"
