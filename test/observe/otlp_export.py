#!/usr/bin/env python3
"""Span export: a running C service posts the spans of its served calls as OTLP/HTTP JSON to a
collector stand-in on loopback. Every body is read by opentelemetry-proto's own message
(ExportTraceServiceRequest, strict: an unknown field fails), after the hex ids the OTLP JSON
encoding uses are turned into protobuf JSON's base64. Spans carry the caller's trace id and span
as parent, errors as STATUS_CODE_ERROR; with the collector gone, calls go on and the failed
spans are counted on /metrics.

    otlp_export.py ECHO_SERVER
"""
import base64
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

SERVICE = "cm.otlp.test"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
bodies = []


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


class Collector(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/json":
            fail("the exporter posted %s as %s" % (self.path, self.headers.get("Content-Type")))
        bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def to_proto_json(obj):
    """OTLP JSON (hex ids) to protobuf JSON (base64 bytes)."""
    for rs in obj.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                for k in ("traceId", "spanId", "parentSpanId"):
                    if k in s:
                        s[k] = base64.b64encode(bytes.fromhex(s[k])).decode()
    return obj


def call(addr, body, headers=None):
    h = {"Content-Type": "application/json", "Micro-Service": SERVICE, "Micro-Endpoint": "Echo.Call"}
    h.update(headers or {})
    req = urllib.request.Request("http://%s/" % addr, data=json.dumps(body).encode(), headers=h)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers.get("Micro-Error")


def spans():
    out = []
    for b in list(bodies):
        msg = ExportTraceServiceRequest()
        json_format.Parse(json.dumps(to_proto_json(json.loads(b))), msg)
        for rs in msg.resource_spans:
            names = {a.key: a.value.string_value for a in rs.resource.attributes}
            if names.get("service.name") != SERVICE:
                fail("resource service.name is %r" % names)
            for ss in rs.scope_spans:
                if ss.scope.name != "cmicro":
                    fail("scope is %r" % ss.scope.name)
                out.extend(ss.spans)
    return out


def main():
    coll = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=coll.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d/v1/traces" % coll.server_address[1]
    env = dict(os.environ, MICRO_REGISTRY="memory", MICRO_SERVER_ADDRESS="127.0.0.1:0",
               CMICRO_QUIET="1", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=url)
    p = subprocess.Popen([sys.argv[1], SERVICE], env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().split()
        if len(line) < 2 or line[0] != "listening":
            fail("echo-server printed %r" % line)
        addr = line[1]
        tp = "00-%s-%s-01" % (TRACE, PARENT)
        for i in range(5):
            if call(addr, {"n": i}, {"Traceparent": tp}) is not None:
                fail("a call failed")
        for _ in range(2):
            if '"code":409' not in (call(addr, {"failCode": 409}) or ""):
                fail("a failing call did not fail")
        end = time.time() + 10
        while len(spans()) < 7 and time.time() < end:
            time.sleep(0.1)
        got = spans()
        if len(got) != 7:
            fail("the collector got %d spans, want 7" % len(got))
        traced = [s for s in got if s.trace_id.hex() == TRACE]
        if len(traced) != 5 or any(s.parent_span_id.hex() != PARENT for s in traced):
            fail("spans of the traced calls: %r" % [(s.trace_id.hex(), s.parent_span_id.hex())
                                                     for s in got])
        if len({s.span_id for s in got}) != 7 or any(len(s.span_id) != 8 for s in got):
            fail("span ids are not 7 distinct 8-byte ids")
        for s in got:
            if s.name != "Echo.Call" or s.kind != Span.SPAN_KIND_SERVER:
                fail("span %r kind %r" % (s.name, s.kind))
            if not 0 < s.start_time_unix_nano <= s.end_time_unix_nano:
                fail("span times %d %d" % (s.start_time_unix_nano, s.end_time_unix_nano))
        errs = [s for s in got if s.status.code == Status.STATUS_CODE_ERROR]
        codes = [{a.key: a.value.string_value for a in s.attributes}.get("rpc.micro.error_code")
                 for s in errs]
        if len(errs) != 2 or codes != ["409", "409"] or any(s.parent_span_id for s in errs):
            fail("error spans: %r" % [(s.status, codes) for s in errs])
        print("ok: 7 spans in %d OTLP request(s), read by opentelemetry-proto" % len(bodies))
        # The collector goes away: calls go on, the spans are counted as failed.
        coll.shutdown()
        coll.server_close()
        for i in range(3):
            if call(addr, {"n": i}) is not None:
                fail("a call failed with the collector gone")
        end = time.time() + 10
        failed = 0
        while time.time() < end:
            with urllib.request.urlopen("http://%s/metrics" % addr, timeout=10) as r:
                text = r.read().decode()
            for l in text.splitlines():
                if l.startswith('micro_trace_spans_total{outcome="failed"}'):
                    failed = float(l.split()[-1])
            if failed >= 3:
                break
            time.sleep(0.2)
        if failed < 3:
            fail("micro_trace_spans_total failed is %r after the collector went away" % failed)
        print("ok: the collector gone, calls go on and %d spans count as failed" % failed)
    finally:
        p.terminate()
        p.wait(timeout=20)
    print("2 passed, 0 failed")


if __name__ == "__main__":
    main()
