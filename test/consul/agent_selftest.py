#!/usr/bin/env python3
"""Checks consul_agent.py itself against the Consul semantics it claims (consul-api.md): the
parts the C tests do not reach. Starts the agent on a free port; standard library only."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

AGENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "consul_agent.py")
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        print("CHECK failed: %s" % what, file=sys.stderr)
        sys.exit(1)


class Agent:
    def __init__(self, *args):
        self.p = subprocess.Popen([sys.executable, AGENT, "--port", "0"] + list(args),
                                  stdout=subprocess.PIPE)
        self.base = "http://127.0.0.1:%d" % int(self.p.stdout.readline())

    def call(self, method, path, body=None, headers=None):
        data = body.encode() if isinstance(body, str) else body
        if method == "PUT" and data is None:
            data = b""
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    def json(self, path):
        st, hdrs, body = self.call("GET", path)
        check(st == 200, "GET %s: %d %s" % (path, st, body))
        return json.loads(body), hdrs

    def stop(self):
        self.p.terminate()
        self.p.wait()


def register(a, body, expect=200):
    st, _, text = a.call("PUT", "/v1/agent/service/register", json.dumps(body))
    check(st == expect, "register %s: %d %s" % (body, st, text))
    return text


def main():
    a = Agent("--min-reap", "0.5", "--reap-interval", "0.1")

    # Validation words, as the real agent.
    check(register(a, {"ID": "x"}, 400) == "Missing service name", "missing name")
    check(register(a, {"Name": "s", "Address": "0.0.0.0"}, 400) == "Invalid service address",
          "unspecified address")
    text = register(a, {"Name": "s", "Meta": {"a.b": "1"}}, 400)
    check(text == "Invalid Service Meta: Couldn't load metadata pair ('a.b', '1'): Key contains "
                  "invalid characters", text)
    text = register(a, {"Name": "s", "Meta": {"consul-x": "1"}}, 400)
    check(text.endswith("Key prefix 'consul-' is reserved for internal use"), text)
    text = register(a, {"Name": "s", "Meta": {"k%d" % i: "v" for i in range(65)}}, 400)
    check("more than 64 key/value pairs" in text, text)
    text = register(a, {"Name": "s", "Check": {"DeregisterCriticalServiceAfter": "1m"}}, 400)
    check(text == "Invalid check: TTL must be > 0 for TTL checks", text)
    text = register(a, {"Name": "s", "Check": {"TCP": "127.0.0.1:1"}}, 400)
    check(text.startswith("Invalid check: Interval must be > 0"), text)
    text = register(a, {"Name": "s", "Check": {"TTL": "abc"}}, 400)
    check(text == 'Request decode failed: time: invalid duration "abc"', text)
    st, _, text = a.call("PUT", "/v1/agent/service/register", "{")
    check(st == 400 and text.startswith("Request decode failed"), text)
    st, hdrs, text = a.call("GET", "/v1/agent/service/register")
    check(st == 405 and text == "method GET not allowed" and hdrs.get("Allow") == "PUT", text)
    st, _, text = a.call("GET", "/v1/nope")
    check(st == 404 and text.startswith("Invalid URL path"), text)

    # snake_case and any case; check ids and names; critical at first.
    register(a, {"name": "web", "id": "w1", "port": 80,
                 "check": {"ttl": "10s", "deregister_critical_service_after": "1s"}})
    entries, hdrs = a.json("/v1/health/service/web")
    check(len(entries) == 1, "one entry")
    e = entries[0]
    check(e["Service"]["Service"] == "web" and e["Service"]["Tags"] == [], "service shape")
    check(e["Service"]["Address"] == "" and e["Node"]["Address"] == "127.0.0.1", "addresses")
    ids = [c["CheckID"] for c in e["Checks"]]
    check(ids == ["serfHealth", "service:w1"], ids)
    check(e["Checks"][1]["Status"] == "critical", "critical at first")
    check(e["Checks"][1]["Name"] == "Service 'web' check", "default check name")
    check(int(hdrs["X-Consul-Index"]) >= 1, "index header")
    entries, _ = a.json("/v1/health/service/web?passing")
    check(entries == [], "?passing leaves critical out")

    # The update endpoint, then warning is not passing.
    st, _, text = a.call("PUT", "/v1/agent/check/update/service:w1",
                         json.dumps({"Status": "warning", "Output": "hm"}))
    check(st == 200, text)
    entries, _ = a.json("/v1/health/service/web?passing=1")
    check(entries == [], "warning is not passing")
    st, _, text = a.call("PUT", "/v1/agent/check/update/service:w1", '{"Status":"pass"}')
    check(st == 400 and text == "Invalid check status: 'pass'", text)
    st, _, text = a.call("PUT", "/v1/agent/check/pass/service:w1?note=ok")
    check(st == 200, text)
    entries, _ = a.json("/v1/health/service/web?passing=true")
    check(len(entries) == 1 and entries[0]["Checks"][1]["Output"] == "ok", "passing now")

    # Several checks: ids service:<id>:<n>; a TCP check is not a TTL check (500).
    register(a, {"Name": "multi", "ID": "m1", "Checks": [
        {"TTL": "5s"}, {"TCP": "127.0.0.1:1", "Interval": "1s"}]})
    cids = sorted(c["CheckID"] for c in a.json("/v1/agent/checks")[0].values()
                  if c["ServiceID"] == "m1")
    check(cids == ["service:m1:1", "service:m1:2"], cids)
    st, _, text = a.call("PUT", "/v1/agent/check/pass/service:m1:2")
    check(st == 500 and text == 'CheckID "service:m1:2" does not have associated TTL', text)
    st, _, text = a.call("PUT", "/v1/agent/check/pass/service:zz")
    check(st == 404 and text.startswith('Unknown check ID "service:zz"'), text)

    # Consistency and datacenter parameters.
    st, _, text = a.call("GET", "/v1/health/service/web?stale&consistent")
    check(st == 400 and "conflicting semantics" in text, text)
    st, _, text = a.call("GET", "/v1/health/service/web?dc=dc9")
    check(st == 500 and text == "No path to datacenter", text)
    st, _, _ = a.call("GET", "/v1/health/service/web?dc=dc1")
    check(st == 200, "own dc")
    st, _, text = a.call("GET", "/v1/health/service/web?index=1&wait=zz")
    check(st == 400 and text == "Invalid wait time", text)

    # A blocking query waits for wait (plus at most wait/16), or returns on a change.
    _, hdrs = a.json("/v1/health/service/web")
    idx = int(hdrs["X-Consul-Index"])
    t0 = time.monotonic()
    _, hdrs = a.json("/v1/health/service/web?index=%d&wait=300ms" % idx)
    took = time.monotonic() - t0
    check(0.29 <= took <= 0.3 + 0.3 / 16 + 0.2, "wait honoured: %.3f" % took)
    check(int(hdrs["X-Consul-Index"]) == idx, "no change, same index")

    # The reaper: critical longer than DeregisterCriticalServiceAfter (floor --min-reap).
    register(a, {"Name": "gone", "ID": "g1",
                 "Check": {"TTL": "10s", "DeregisterCriticalServiceAfter": "300ms"}})
    time.sleep(1.2)
    entries, _ = a.json("/v1/health/service/gone")
    check(entries == [], "reaped")
    # TTL expiry.
    register(a, {"Name": "ttl", "ID": "t1", "Check": {"TTL": "200ms", "Status": "passing"}})
    entries, _ = a.json("/v1/health/service/ttl")
    check(entries[0]["Checks"][1]["Status"] == "passing", "initial Status honoured")
    time.sleep(0.5)
    entries, _ = a.json("/v1/health/service/ttl")
    check(entries[0]["Checks"][1]["Status"] == "critical" and
          entries[0]["Checks"][1]["Output"] == "TTL expired", "TTL expired")

    # Catalog.
    services, _ = a.json("/v1/catalog/services")
    check("consul" in services and "web" in services, services)
    flat, _ = a.json("/v1/catalog/service/web")
    check(flat[0]["ServiceID"] == "w1" and flat[0]["ServicePort"] == 80, flat)
    leader, _ = a.json("/v1/status/leader")
    check(leader == "127.0.0.1:8300", leader)

    # Deregister: 404 for an unknown ID.
    st, _, text = a.call("PUT", "/v1/agent/service/deregister/w1")
    check(st == 200, text)
    st, _, text = a.call("PUT", "/v1/agent/service/deregister/w1")
    check(st == 404 and text.startswith('Unknown service ID "w1"'), text)
    # The request log says how each request was answered.
    log, _ = a.json("/_test/requests?prefix=/v1/agent/service/deregister/")
    check([r["status"] for r in log] == [200, 404], log)
    a.stop()

    # ACL.
    a = Agent("--token", "t0k")
    st, _, text = a.call("GET", "/v1/catalog/services")
    check(st == 403 and text.startswith("Permission denied"), text)
    st, _, text = a.call("GET", "/v1/catalog/services", headers={"X-Consul-Token": "bad"})
    check(st == 403 and text == "ACL not found", text)
    for hdrs, q in (({"X-Consul-Token": "t0k"}, ""), ({"Authorization": "Bearer t0k"}, ""),
                    ({}, "?token=t0k")):
        st, h, _ = a.call("GET", "/v1/catalog/services" + q, headers=hdrs)
        check(st == 200 and h["X-Consul-Default-ACL-Policy"] == "deny", hdrs)
    st, _, _ = a.call("GET", "/v1/status/leader")
    check(st == 200, "status needs no token")
    a.stop()
    print("ok: %d checks" % checks)


if __name__ == "__main__":
    main()
