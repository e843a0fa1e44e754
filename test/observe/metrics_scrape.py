#!/usr/bin/env python3
"""GET /metrics of a running C service, parsed by prometheus-client's own parser: the counts match
the calls made (successes, go-micro errors, refusals of the concurrency limit), the histogram
counts every call, the sampled families are there, a call blocked in its handler is in flight on
its endpoint's gauge and no longer once it has returned; MICRO_METRICS=off turns /metrics into a
404.

    metrics_scrape.py ECHO_SERVER
"""
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

SERVICE = "cm.metrics.test"


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def start(server, extra):
    env = dict(os.environ, MICRO_REGISTRY="memory", MICRO_SERVER_ADDRESS="127.0.0.1:0",
               CMICRO_QUIET="1", **extra)
    p = subprocess.Popen([server, SERVICE], env=env, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    if len(line) < 2 or line[0] != "listening":
        p.kill()
        fail("echo-server printed %r" % line)
    return p, line[1]


def call(addr, body):
    """One go-micro call over HTTP with the JSON codec: (HTTP status, Micro-Error or None)."""
    req = urllib.request.Request("http://%s/" % addr, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Micro-Service": SERVICE, "Micro-Endpoint": "Echo.Call"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.headers.get("Micro-Error")


def get(addr, path):
    try:
        with urllib.request.urlopen("http://%s%s" % (addr, path), timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def samples(text):
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m, name, **labels):
    return m.get((name, tuple(sorted(labels.items()))))


def main():
    server = sys.argv[1]
    p, addr = start(server, {"MICRO_SERVER_MAX_CONCURRENT": "1"})
    try:
        for i in range(7):
            call(addr, {"n": i})
        errors = [call(addr, {"failCode": 409}) for _ in range(3)]
        if any(e[1] is None or '"code":409' not in e[1] for e in errors):
            fail("the failing calls answered %r" % errors)
        # Two calls at once on a limit of one: one sleeps, the other is refused with 429. The
        # sleeping one is in flight on Echo.Call's gauge while it sleeps.
        results = []
        ts = [threading.Thread(target=lambda: results.append(call(addr, {"sleepMs": 2000})))
              for _ in range(2)]
        for t in ts:
            t.start()
        inflight = dict(service=SERVICE, endpoint="Echo.Call")
        deadline = time.time() + 1.5
        while True:
            got = value(samples(get(addr, "/metrics")[2]), "micro_server_endpoint_inflight",
                        **inflight)
            if got == 1:
                break
            if time.time() > deadline or len(results) == 2:
                fail("micro_server_endpoint_inflight while a call sleeps: %r" % got)
            time.sleep(0.02)
        for t in ts:
            t.join()
        refused = [r for r in results if r[1] and '"code":429' in r[1]]
        if len(refused) != 1:
            fail("two calls on a concurrency limit of one answered %r" % results)
        status, ctype, text = get(addr, "/metrics")
        if status != 200 or not ctype.startswith("text/plain; version=0.0.4"):
            fail("/metrics answered %d %r" % (status, ctype))
        m = samples(text)
        base = dict(service=SERVICE, endpoint="Echo.Call")
        want = [("success", "200", 8), ("fail", "409", 3), ("fail", "429", 1)]
        for st, code, n in want:
            got = value(m, "micro_request_total", status=st, code=code, **base)
            if got != n:
                fail("micro_request_total %s %s = %r, want %d\n%s" % (st, code, got, n, text))
            cnt = value(m, "micro_request_duration_seconds_count", status=st, **base)
            if cnt is None or cnt < n:
                fail("micro_request_duration_seconds_count %s = %r, want >= %d" % (st, cnt, n))
        slow = value(m, "micro_request_duration_seconds_bucket", status="success", le="0.25", **base)
        if slow is None or slow != 7:
            fail("7 fast calls under 0.25 s, the 2 s one above: bucket le=0.25 is %r" % slow)
        if value(m, "micro_server_endpoint_inflight", **inflight) != 0:
            fail("micro_server_endpoint_inflight after the calls returned: %r" %
                 value(m, "micro_server_endpoint_inflight", **inflight))
        if value(m, "micro_server_refused_total", reason="concurrency") != 1:
            fail("micro_server_refused_total{reason=concurrency} is %r" %
                 value(m, "micro_server_refused_total", reason="concurrency"))
        for name in ("micro_server_inflight", "micro_server_connections",
                     "micro_server_connections_accepted_total"):
            if value(m, name) is None:
                fail("%s is missing" % name)
        if value(m, "micro_server_connections_accepted_total") < 1:
            fail("no connection counted as accepted")
        print("ok: /metrics parses with prometheus-client and counts 8 successes, 3 errors, "
              "1 refusal, 1 call in flight on Echo.Call while it sleeps, 0 after")
        for path in ("/metrics/x", "/metricsx", "/metrics?" + "a" * 300):
            st, _, _ = get(addr, path)
            if st != (200 if path.startswith("/metrics?") else 404):
                fail("GET %s answered %d" % (path, st))
    finally:
        p.terminate()
        p.wait(timeout=10)
    p, addr = start(server, {"MICRO_METRICS": "off"})
    try:
        status, _, _ = get(addr, "/metrics")
        if status != 404:
            fail("/metrics with MICRO_METRICS=off answered %d" % status)
        print("ok: MICRO_METRICS=off: no /metrics")
    finally:
        p.terminate()
        p.wait(timeout=10)
    print("2 passed, 0 failed")


if __name__ == "__main__":
    main()
