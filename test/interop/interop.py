#!/usr/bin/env python3
"""The driver of cmicro's interop suite: starts callee processes (C or go-micro), a caller that
takes commands on stdin, and checks every answer. One run is one meson test.

    interop.py OPTIONS cell CALLER CALLEE REGISTRY   CALLER, CALLEE: c, go4.11, go4.9
    interop.py OPTIONS registry REGISTRY             registry cross-checks, both directions
    interop.py OPTIONS hello REGISTRY                the seed's hello pair, C <-> Go
    interop.py OPTIONS tls REGISTRY                  calls over TLS, C <-> Go, with a test CA
    interop.py OPTIONS stream CALLER CALLEE REGISTRY streams (stream_cases.py), C <-> Go
    interop.py OPTIONS stream-faults CALLER CALLEE REGISTRY  a stream's peer killed mid-stream
    interop.py OPTIONS faults etcd                   C servers, C and Go callers through etcd
                                                     member failures and a server killed -9

REGISTRY is mdns, consul or etcd. mDNS runs re-execute this script inside the private network
namespace of test/mdns/run-netns.sh (--netns) before anything opens a socket. Consul runs use
the agent at CONSUL_HTTP_ADDR, or start the project's test agent (--consul-agent) on 127.0.0.1.
etcd runs start a three-member cluster on loopback ports (--etcd-cluster, test/etcd/cluster.sh)
and use go-micro v4.11 with go-micro/plugins' etcd registry (--go4.11-etcd) as the Go peer; a
machine without etcd prints SKIP and exits 77 (fails when CI=true).

A go-micro peer that was not built (no Go on the machine: its option is missing) makes the run
print a SKIP line and exit 77, or fail when CI=true.
"""

import argparse
import binascii
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib

SKIP = 77
ECHO_NAME = "cmicro.interop.echo"
FAIL_DETAIL = "bad \"input\" <\u00e9> \u2713"
STATUS_TEXT = {400: "Bad Request", 408: "Request Timeout", 409: "Conflict",
               500: "Internal Server Error"}
REGISTER_TIMEOUT = 20.0
# How long a caller may take to see a stopped callee's deregistration (watch lag).
SETTLE = 1.5


class Fail(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def check(cond, msg):
    if not cond:
        raise Fail(msg)


# ---- processes ----

class Proc:
    """A child process with its output in a file (and, for callers, a pipe for commands)."""

    def __init__(self, ctx, label, argv, env, interactive=False):
        self.label = label
        self.argv = argv
        self.path = os.path.join(ctx.tmp, label.replace("/", "_") + ".log")
        self.out = open(self.path, "w+b")
        self.p = subprocess.Popen(
            argv, env=env, stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE if interactive else self.out, stderr=self.out,
            start_new_session=True)
        ctx.procs.append(self)

    def text(self):
        self.out.flush()
        with open(self.path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for(self, needle, timeout=REGISTER_TIMEOUT):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if needle in self.text():
                return
            if self.p.poll() is not None:
                raise Fail("%s exited with %s before printing %r:\n%s"
                           % (self.label, self.p.returncode, needle, self.text()))
            time.sleep(0.05)
        raise Fail("%s did not print %r within %.0f s:\n%s"
                   % (self.label, needle, timeout, self.text()))

    def terminate(self):
        # Once: a second SIGTERM tells a cmicro service to cut its graceful stop short.
        if self.p.poll() is None and not getattr(self, "terminated", False):
            self.terminated = True
            self.p.send_signal(signal.SIGTERM)

    def stop(self, timeout=15.0):
        """SIGTERM, then the exit status (a graceful stop must exit 0)."""
        self.terminate()
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Fail("%s did not exit within %.0f s of SIGTERM:\n%s"
                       % (self.label, timeout, self.text()))
        check(rc == 0, "%s exited with %s after SIGTERM:\n%s" % (self.label, rc, self.text()))

    def kill(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except OSError:
                pass
            self.p.wait()


class Caller(Proc):
    """An echo caller (echo_client.c or gmicro echo-client): one command in, one RESULT out."""

    def __init__(self, ctx, label, argv, env):
        Proc.__init__(self, ctx, label, argv, env, interactive=True)
        self.lines = []
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.p.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cv:
                self.lines.append(line)
                self.cv.notify_all()
        with self.cv:
            self.lines.append(None)
            self.cv.notify_all()

    def run(self, cmd, timeout=30.0):
        self.p.stdin.write((cmd + "\n").encode())
        self.p.stdin.flush()
        end = time.monotonic() + timeout
        with self.cv:
            while True:
                while self.lines:
                    line = self.lines.pop(0)
                    if line is None:
                        raise Fail("%s exited (%s) during %r:\n%s"
                                   % (self.label, self.p.wait(), cmd, self.text()))
                    if line.startswith("RESULT "):
                        res = json.loads(line[len("RESULT "):])
                        log("   %s: %s -> %s" % (self.label, cmd, json.dumps(res)))
                        return res
                left = end - time.monotonic()
                if left <= 0:
                    raise Fail("%s gave no result for %r within %.0f s:\n%s"
                               % (self.label, cmd, timeout, self.text()))
                self.cv.wait(left)

    def quit(self):
        self.p.stdin.write(b"quit\n")
        self.p.stdin.close()
        rc = self.p.wait(15)
        check(rc == 0, "%s exited with %s:\n%s" % (self.label, rc, self.text()))


class Ctx:
    def __init__(self, args):
        self.args = args
        self.reg = args.registry
        self.tmp = tempfile.mkdtemp(prefix="cmicro-interop-")
        self.procs = []
        self.suffix = ""
        self.own_agent = False
        self.cluster = None
        self.go_peers = ["go4.11"] if self.reg == "etcd" else ["go4.11", "go4.9"]
        self.env = dict(os.environ)
        self.env["MICRO_REGISTRY"] = self.reg
        self.env["MICRO_SERVER_ADDRESS"] = "127.0.0.1:0"
        if self.reg == "mdns":
            self.env["MICRO_MDNS_INTERFACE"] = "lo"

    def agent_requests(self):
        url = "http://%s/_test/requests" % self.env["CONSUL_HTTP_ADDR"]
        with urllib.request.urlopen(url, timeout=5) as f:
            return json.load(f)

    def dump_agent_log(self):
        """After a failure: the requests our Consul test agent saw, for the diagnosis."""
        if not self.own_agent:
            return
        try:
            reqs = self.agent_requests()
        except (OSError, ValueError) as e:
            log("(no request log from the test agent: %s)" % e)
            return
        log("the Consul test agent's last requests:")
        for r in reqs[-60:]:
            log("  %.3f %s %s%s%s -> %s (%s)"
                % (r["time"] % 1000, r["method"], r["path"], "?" if r["query"] else "",
                   r["query"], r.get("status"), r["headers"].get("user-agent", "")))

    def check_agent_log(self):
        """Every request go-micro's consul plugin (hashicorp/consul/api) or cmicro made was
        served: an answer >= 400 is a defect of the test agent (or of the caller)."""
        if not self.own_agent:
            return
        bad = [r for r in self.agent_requests() if (r.get("status") or 0) >= 400]
        check(not bad, "the Consul test agent refused %d request(s): %s" % (len(bad), "; ".join(
            "%s %s?%s -> %s (%s)" % (r["method"], r["path"], r["query"], r["status"],
                                    r["headers"].get("user-agent", "")) for r in bad[:10])))

    def close(self):
        for p in reversed(self.procs):
            p.kill()
        if self.cluster:
            subprocess.run([self.args.etcd_cluster, "stop", self.cluster],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def name(self, base):
        """A service name of this run (unique when a shared real Consul agent is used)."""
        return base + self.suffix

    # -- the programs --

    def go_bin(self, peer):
        if self.reg == "etcd":
            return {"go4.11": self.args.go4_11_etcd}[peer]
        path = {"go4.11": self.args.go4_11, "go4.9": self.args.go4_9}[peer]
        return path

    def server(self, peer, label, name, instance, version=None, metadata=None, relay_to=None,
               tls=None):
        """tls: None, or {"cert": F, "key": F} (the C server reads MICRO_TRANSPORT_TLS_*)."""
        env = dict(self.env)
        if tls and peer == "c":
            env["MICRO_TRANSPORT_TLS_CERT"] = tls["cert"]
            env["MICRO_TRANSPORT_TLS_KEY"] = tls["key"]
        if peer == "c":
            env["MICRO_SERVER_NAME"] = name
            env["INTEROP_INSTANCE"] = instance
            if relay_to:
                env["INTEROP_RELAY_TO"] = relay_to
            if version:
                env["INTEROP_VERSION"] = version
            if metadata:
                env["INTEROP_METADATA"] = metadata
            p = Proc(self, label, [self.args.c_echo_server], env)
            p.wait_for("[service] registered")
        else:
            argv = [self.go_bin(peer), "echo-server", "-registry", self.reg, "-name", name,
                    "-instance", instance]
            if version:
                argv += ["-version", version]
            if metadata:
                argv += ["-metadata", metadata]
            if relay_to:
                argv += ["-relay-to", relay_to]
            if tls:
                argv += ["-tls-cert", tls["cert"], "-tls-key", tls["key"]]
            p = Proc(self, label, argv, env)
            p.wait_for("REGISTERED ")
        return p

    def caller(self, peer, name, tls=None, label=None, retries=None):
        """tls: None (plain), or {"ca": F} (trust F), or {} (TLS with the system's CAs)."""
        env = dict(self.env)
        label = label or "caller-" + peer
        if peer == "c":
            env["MICRO_SELECTOR"] = "roundrobin"
            if retries is not None:
                env["MICRO_CLIENT_RETRIES"] = str(retries)
            if tls is not None:
                env["MICRO_TRANSPORT_TLS"] = "true"
                if "ca" in tls:
                    env["MICRO_TRANSPORT_TLS_CA"] = tls["ca"]
            return Caller(self, label, [self.args.c_echo_client, name], env)
        argv = [self.go_bin(peer), "echo-client", "-registry", self.reg, "-name", name]
        if tls is not None:
            argv += ["-tls-ca", tls["ca"]] if "ca" in tls else ["-tls"]
        return Caller(self, label, argv, env)

    def run_tool(self, argv, label, timeout=20.0):
        p = subprocess.run(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        if p.returncode != 0:
            raise Fail("%s failed (%s): %s" % (label, p.returncode,
                                               p.stderr.decode("utf-8", "replace")))
        return p.stdout.decode("utf-8", "replace")


# ---- the matrix cell ----

def check_error(res, code, ident, detail, what):
    e = res.get("error") or {}
    check(not res["ok"], "%s: the call succeeded" % what)
    got = (e.get("id"), e.get("code"), e.get("detail"), e.get("status"))
    want = (ident, code, detail, STATUS_TEXT[code])
    check(got == want, "%s: error %r, want %r" % (what, got, want))


def md_get(md, key):
    for k, v in (md or {}).items():
        if k.lower() == key.lower():
            return v
    return None


def cell(ctx):
    a = ctx.args
    name = ctx.name(ECHO_NAME)
    log("== %s -> %s over %s (service %s)" % (a.caller, a.callee, ctx.reg, name))
    servers = {}
    for inst in ("a", "b", "c"):
        servers[inst] = ctx.server(a.callee, "callee-" + inst, name, inst)
    cl = ctx.caller(a.caller, name)
    for codec in ("proto", "json", "grpc", "grpc+proto", "grpc+json", "proto-rpc", "json-rpc"):
        r = cl.run("echo " + codec)
        check(r["ok"], "echo %s failed: %s" % (codec, r.get("error")))
        check(r.get("equal") is True, "echo %s: the echo differs from the request" % codec)
        check(r.get("instance") in servers, "echo %s: answered by %r" % (codec, r.get("instance")))

        check_error(cl.run("fail %s 400" % codec), 400, name, FAIL_DETAIL, "fail %s 400" % codec)
        check_error(cl.run("fail %s 409" % codec), 409, name, FAIL_DETAIL, "fail %s 409" % codec)

        r = cl.run("empty " + codec)
        check(r["ok"], "empty %s failed: %s" % (codec, r.get("error")))

        r = cl.run("md " + codec)
        check(r["ok"], "md %s failed: %s" % (codec, r.get("error")))
        for k, v in (("X-User-Id", "42"), ("X-Tenant", "acme")):
            check(md_get(r.get("md"), k) == v,
                  "md %s: the callee saw %s=%r (metadata %r)"
                  % (codec, k, md_get(r.get("md"), k), r.get("md")))

        r = cl.run("rr %s 30" % codec)
        check(r["ok"], "rr %s: %s failures, last %s" % (codec, r.get("failures"), r.get("error")))
        check(r.get("counts") == {"a": 10, "b": 10, "c": 10},
              "rr %s: round robin over 3 instances gave %r" % (codec, r.get("counts")))

    # A go-micro caller starts watching a service up to 100 ms after its first lookup, and a
    # removal it did not watch is never applied (watch events only merge nodes into its cache,
    # which lives a minute): let the watch start before stopping a callee.
    time.sleep(SETTLE / 2)
    log("-- SIGTERM to instance c")
    servers.pop("c").stop()
    time.sleep(SETTLE)
    r = cl.run("rr proto 12")
    check(r["ok"], "after c stopped: %s failures, last %s" % (r.get("failures"), r.get("error")))
    check(r.get("counts") == {"a": 6, "b": 6},
          "after c stopped: 12 calls went to %r, want a: 6, b: 6" % r.get("counts"))

    # Last, as cmicro's selector takes a node that timed out out of rotation for a while. The
    # callee sleeps 2 s; the caller gives up after 400 ms with a 408, well before the answer.
    for codec in ("proto", "json"):
        r = cl.run("sleep %s 2000 400" % codec)
        e = r.get("error") or {}
        check(not r["ok"] and e.get("code") == 408,
              "sleep %s: want a 408 after 400 ms, got %r" % (codec, r))
        check(380 <= r["ms"] < 1900, "sleep %s: the 408 came after %s ms" % (codec, r["ms"]))
    # The late answers of the timed-out calls must not reach later calls (a connection that
    # timed out is not reused).
    time.sleep(1.8)
    for codec in ("proto", "json", "proto", "json"):
        r = cl.run("echo " + codec)
        check(r["ok"] and r.get("equal") is True, "echo %s after the timeouts: %r" % (codec, r))

    log("-- SIGTERM to instances a and b")
    for inst in ("a", "b"):
        servers[inst].terminate()
    for inst in ("a", "b"):
        servers.pop(inst).stop()
    time.sleep(SETTLE)
    r = cl.run("echo proto")
    e = r.get("error") or {}
    detail = e.get("detail") or ""
    check(not r["ok"] and e.get("code") == 500 and
          ("not found" in detail or "none available" in detail),
          "with every callee stopped: want 500 not found, got %r" % r)
    cl.quit()
    log("ok: %s -> %s over %s" % (a.caller, a.callee, ctx.reg))


# ---- registry cross-checks ----

def norm_service(s):
    """A service as go-micro's JSON writes it, in a form where order does not matter."""
    s = dict(s)
    s["nodes"] = sorted(s.get("nodes") or [], key=lambda n: n["id"])
    s["endpoints"] = sorted(s.get("endpoints") or [], key=lambda e: e["name"])
    if not s.get("metadata"):
        s["metadata"] = None
    return s


def decode_tags(tags):
    """go-micro's consul plugin decoders (encoding.go), written again: t- metadata pairs,
    e- endpoints, the v- version; hex(zlib(...)) payloads."""
    md, eps, version = {}, [], None
    for t in tags:
        if len(t) < 2 or t[1] != "-":
            continue
        raw = zlib.decompress(binascii.unhexlify(t[2:]))
        if t[0] == "t":
            md.update(json.loads(raw))
        elif t[0] == "e":
            eps.append(json.loads(raw))
        elif t[0] == "v" and version is None:
            version = raw.decode()
    return md, eps, version


def registered(ctx, name):
    """The registration of service name as the Consul test agent stored it, decoded."""
    url = "http://%s/_test/state" % ctx.env["CONSUL_HTTP_ADDR"]
    with urllib.request.urlopen(url, timeout=5) as f:
        state = json.load(f)
    svcs = [s for s in state["services"] if s["Service"] == name]
    check(len(svcs) == 1, "the agent holds %d registrations of %s" % (len(svcs), name))
    s = svcs[0]
    md, eps, version = decode_tags(s["Tags"])
    return norm_service({"name": name, "version": version, "metadata": None, "endpoints": eps,
                         "nodes": [{"id": s["ID"], "address": "%s:%d" % (s["Address"], s["Port"]),
                                    "metadata": md}]})


def etcd_stored(ctx, name):
    """The one node of name stored in etcd (key /micro/registry/NAME/ID), as a service."""
    out = subprocess.run([ctx.args.etcd_cluster, "ctl", ctx.cluster, "get", "--prefix",
                          "/micro/registry/%s/" % name], stdout=subprocess.PIPE, check=True,
                         timeout=20).stdout.decode().splitlines()
    check(len(out) == 2, "etcd holds %d keys of %s: %r" % (len(out) // 2, name, out))
    svc = json.loads(out[1])
    check(out[0] == "/micro/registry/%s/%s" % (name, svc["nodes"][0]["id"]),
          "%s: key %r for node %r" % (name, out[0], svc["nodes"][0]["id"]))
    return norm_service(svc)


def viewers(ctx):
    out = [("c", lambda *a: [ctx.args.c_registry] + list(a))]
    for peer in ctx.go_peers:
        b = ctx.go_bin(peer)
        out.append((peer, lambda *a, b=b: [b, "registry", "-registry", ctx.reg] + list(a)))
    return out


def registry_get(ctx, viewer, argv, name):
    if viewer == "c":
        cmd = argv("get", name, "1", "5000")
    else:
        cmd = argv("-nodes", "1", "-wait", "5000", "get", name)
    return json.loads(ctx.run_tool(cmd, "%s registry get %s" % (viewer, name)))


def registry_list(ctx, viewer, argv, want):
    if viewer == "c":
        cmd = argv("list", want, "5000")
    else:
        cmd = argv("-want", want, "-wait", "5000", "list")
    return json.loads(ctx.run_tool(cmd, "%s registry list" % viewer))


def registry(ctx):
    log("== registry cross-checks over %s" % ctx.reg)
    published = {}  # service name -> (publisher, version, metadata)
    for peer, version, zone in (("go4.11", "1.2.3", "z11"), ("go4.9", "1.2.4", "z9"),
                                ("c", "2.0.0-c", "zc")):
        if peer != "c" and peer not in ctx.go_peers:
            continue
        name = ctx.name("cmicro.interop.x" + peer.replace(".", ""))
        md = "team=interop,zone=" + zone
        ctx.server(peer, "publisher-" + peer, name, peer, version, md)
        published[name] = (peer, version, {"team": "interop", "zone": zone})
    endpoints = {}
    for name, (peer, version, md) in published.items():
        views = {}
        for viewer, argv in viewers(ctx):
            got = registry_get(ctx, viewer, argv, name)
            check(len(got) == 1, "%s sees %d versions of %s (%s): %r"
                  % (viewer, len(got), name, peer, got))
            views[viewer] = norm_service(got[0])
        first = views["c"]
        if ctx.own_agent:
            # What the publisher sent to the agent, decoded here independently.
            views["registration"] = registered(ctx, name)
        if ctx.cluster:
            # What the publisher stored in etcd, read with etcdctl.
            views["stored"] = etcd_stored(ctx, name)
        for viewer, v in views.items():
            check(v == first, "%s and c see %s (published by %s) differently:\n%s\n%s"
                  % (viewer, name, peer, json.dumps(v, sort_keys=True),
                     json.dumps(first, sort_keys=True)))
        check(first["name"] == name and first["version"] == version,
              "%s: name/version %r/%r" % (name, first["name"], first["version"]))
        check(len(first["nodes"]) == 1, "%s: nodes %r" % (name, first["nodes"]))
        node = first["nodes"][0]
        check(node["id"].startswith(name + "-"), "%s: node id %r" % (name, node["id"]))
        check(node["address"].startswith("127.0.0.1:"), "%s: address %r" % (name, node["address"]))
        want_md = dict(md, transport="http", broker="http", server="mucp", protocol="mucp",
                       registry=ctx.reg)
        check(node["metadata"] == want_md, "%s: node metadata %r, want %r"
              % (name, node["metadata"], want_md))
        names = [e["name"] for e in first["endpoints"]]
        check(names == ["Echo.Call", "Echo.Empty", "Echo.Fail"], "%s: endpoints %r" % (name, names))
        endpoints[peer] = first["endpoints"]
        log("   %s (published by %s): the same for %s" % (name, peer, ", ".join(views)))
    # The C service publishes the endpoint shapes go-micro's extractor gives the same proto.
    for peer in ctx.go_peers:
        check(endpoints["c"] == endpoints[peer],
              "the endpoints cmicro publishes differ from %s's:\n%s\n%s"
              % (peer, json.dumps(endpoints["c"]), json.dumps(endpoints[peer])))
    for viewer, argv in viewers(ctx):
        for name in published:
            got = registry_list(ctx, viewer, argv, name)
            check(name in got, "%s ListServices misses %s: %r" % (viewer, name, got))
    log("   ListServices of c, %s list all %d" % (", ".join(ctx.go_peers), len(published)))
    log("ok: registry cross-checks over %s" % ctx.reg)


# ---- the hello pair ----

def hello(ctx):
    log("== hello pair over %s" % ctx.reg)
    a = ctx.args
    for peer in ctx.go_peers:
        p = Proc(ctx, "hello-server-" + peer, [ctx.go_bin(peer), "hello-server", "-registry",
                                               ctx.reg], ctx.env)
        p.wait_for("REGISTERED ")
        out = ctx.run_tool([a.c_hello_client], "C hello-client").strip()
        check(out == "Hello BOSSMA", "C hello-client -> %s hello-server printed %r" % (peer, out))
        p.stop()
        log("   C hello-client -> %s hello-server: %s" % (peer, out))
    p = Proc(ctx, "hello-server-c", [a.c_hello_server], ctx.env)
    p.wait_for("[service] registered")
    for peer in ctx.go_peers:
        for ct in ("application/json", "application/protobuf"):
            out = ctx.run_tool([ctx.go_bin(peer), "hello-client", "-registry", ctx.reg,
                                "-content-type", ct, "Ada"], "%s hello-client" % peer).strip()
            check(out == "Hello Ada", "%s hello-client (%s) -> C hello-server printed %r"
                  % (peer, ct, out))
            log("   %s hello-client (%s) -> C hello-server: %s" % (peer, ct, out))
    # go-micro's tooling asks a C service for Debug.Health and Debug.Stats.
    for peer in ctx.go_peers:
        out = ctx.run_tool([ctx.go_bin(peer), "debug-client", "-registry", ctx.reg,
                            "registry-consul.service"], "%s debug-client" % peer).strip()
        f = dict(kv.split("=", 1) for kv in out.split())
        check(f.get("status") == "ok" and int(f.get("requests", "0")) >= 4 and
              f.get("uptime_ok") == "true" and f.get("threads_ok") == "true",
              "%s debug-client -> C hello-server printed %r" % (peer, out))
        log("   %s debug-client -> C hello-server: %s" % (peer, out))
    p.stop()
    log("ok: hello pair over %s" % ctx.reg)


# ---- trace context across hops ----

def traceparent(v, what):
    """(trace id, parent id) of a version 00 traceparent, or a Fail."""
    m = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})", v or "")
    check(m is not None, "%s: %r is not a traceparent" % (what, (v or "")[:80]))
    return m.group(1), m.group(2)


def trace(ctx):
    """W3C traceparent from a C client through C -> Go (go-micro v4.11, which forwards metadata
    but makes no span) -> C: one trace id; each C hop sends its own span; the Go hop passes on
    what it got. A malformed or huge traceparent starts a new trace at the first C server."""
    log("== trace context C -> C -> go4.11 -> C over %s" % ctx.reg)
    a, g, b = ctx.name("cmicro.trace.a"), ctx.name("cmicro.trace.g"), ctx.name("cmicro.trace.b")
    ctx.server("c", "trace-b", b, "c-b")
    ctx.server("go4.11", "trace-g", g, "go", relay_to=b)
    ctx.server("c", "trace-a", a, "c-a", relay_to=g)
    caller = ctx.caller("c", a)
    md = caller.run("relay proto 0").get("md") or {}
    ta, pa = traceparent(md.get("via-c-a"), "what the first C server got (the client's root)")
    tg, pg = traceparent(md.get("via-go"), "what the Go server got from the first C server")
    tb, pb = traceparent(md.get("via-c-b"), "what the last C server got from the Go server")
    check(ta == tg == tb, "the trace id changed across hops: %s %s %s" % (ta, tg, tb))
    check(pg != pa, "the first C server sent its caller's span, not its own: %s" % pg)
    check(pb == pg, "the Go server did not pass the traceparent on: %s then %s" % (pg, pb))
    log("   one trace %s: client span %s, C span %s (passed on by Go)" % (ta, pa, pg))
    for bad, what in ((1, "a malformed traceparent"), (2, "an 8 KiB traceparent")):
        md = caller.run("relay proto %d" % bad).get("md") or {}
        check(not re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", md.get("via-c-a", "")),
              "the first C server did not get %s" % what)
        tg, pg = traceparent(md.get("via-go"), "after %s, what the Go server got" % what)
        tb, _ = traceparent(md.get("via-c-b"), "after %s, what the last C server got" % what)
        check(tg == tb, "after %s the trace id changed: %s %s" % (what, tg, tb))
        log("   %s: a new trace %s from the first C server" % (what, tg))
    caller.quit()
    log("ok: trace context over %s" % ctx.reg)

# ---- TLS ----

def tls_calls(cl, what):
    """Calls that must work over TLS: every codec family, errors and metadata."""
    for codec in ("proto", "json", "grpc", "json-rpc"):
        r = cl.run("echo " + codec)
        check(r["ok"] and r.get("equal") is True, "%s: echo %s: %r" % (what, codec, r))
    r = cl.run("fail proto 409")
    e = r.get("error") or {}
    check(not r["ok"] and e.get("code") == 409 and e.get("detail") == FAIL_DETAIL,
          "%s: fail proto 409: %r" % (what, r))
    r = cl.run("md json")
    check(r["ok"] and md_get(r.get("md"), "X-User-Id") == "42", "%s: md json: %r" % (what, r))
    r = cl.run("rr proto 6")
    check(r["ok"] and sum((r.get("counts") or {}).values()) == 6, "%s: rr: %r" % (what, r))


def tls_refused(ctx, caller_peer, callee_peer, name, tls, needles):
    """A caller that must fail against the TLS callee: the error says why (one of needles)."""
    what = "%s caller (%s) -> %s TLS server" % (caller_peer, tls, callee_peer)
    # One attempt: cmicro's client retries a handshake that failed (nothing was sent), with
    # back-off, and would only say the same thing later.
    cl = ctx.caller(caller_peer, name, tls, label="refused-%s-%d" % (caller_peer, len(ctx.procs)),
                    retries=0)
    r = cl.run("echo proto")
    e = r.get("error") or {}
    detail = e.get("detail") or ""
    check(not r["ok"] and any(n in detail for n in needles),
          "%s: want an error saying %r, got %r" % (what, needles, r))
    cl.quit()
    log("   %s refused: %s" % (what, detail[:160]))


def tls(ctx):
    """TLS both ways with go-micro's HTTP transport (transport.TLSConfig) and a CA made here."""
    log("== TLS over %s" % ctx.reg)
    pki = os.path.join(ctx.tmp, "pki")
    subprocess.run(["sh", ctx.args.make_ca, pki], check=True)
    cert = {"cert": os.path.join(pki, "server.pem"), "key": os.path.join(pki, "server.key")}
    ca = {"ca": os.path.join(pki, "ca.pem")}
    other = {"ca": os.path.join(pki, "other-ca.pem")}
    # A Go TLS server called by the C client.
    for peer in ("go4.11", "go4.9"):
        name = ctx.name("cmicro.interop.tls" + peer.replace(".", ""))
        srv = ctx.server(peer, "tls-server-" + peer, name, peer, tls=cert)
        cl = ctx.caller("c", name, ca, label="tls-caller-c-" + peer)
        tls_calls(cl, "C -> %s over TLS" % peer)
        cl.quit()
        log("   C caller -> %s TLS server: ok" % peer)
        tls_refused(ctx, "c", peer, name, other, ["TLS peer certificate not trusted"])
        tls_refused(ctx, "c", peer, name, {}, ["TLS peer certificate not trusted"])
        # Go's TLS server writes its 400 and closes at once: the C caller reads the answer, or
        # sees the connection closed first. Either is a clear error, never a success.
        tls_refused(ctx, "c", peer, name, None,
                    ["Client sent an HTTP request to an HTTPS server", "connection closed"])
        srv.stop()
    # A C TLS server called by Go clients that trust the test CA.
    name = ctx.name("cmicro.interop.tlsc")
    srv = ctx.server("c", "tls-server-c", name, "c", tls=cert)
    for peer in ("go4.11", "go4.9", "c"):
        cl = ctx.caller(peer, name, ca, label="tls-caller-%s-c" % peer)
        tls_calls(cl, "%s -> C over TLS" % peer)
        cl.quit()
        log("   %s caller -> C TLS server: ok" % peer)
    for peer in ("go4.11", "go4.9"):
        tls_refused(ctx, peer, "c", name, other, ["certificate signed by unknown authority"])
    tls_refused(ctx, "go4.9", "c", name, None,
                ["400 Bad Request: Client sent an HTTP request to an HTTPS server."])
    # go-micro v4.11's HTTP transport loses the error of a non-200 answer (a deferred Close
    # overwrites it in httpTransportClient.Recv): a plain v4.11 caller gets an empty answer
    # from any TLS server, Go's as well. It must at least never see a real echo.
    cl = ctx.caller("go4.11", name, None, label="plain-go4.11-c")
    r = cl.run("echo proto")
    check(r.get("equal") is not True, "a plain go4.11 caller got an echo over TLS: %r" % r)
    cl.quit()
    srv.stop()
    log("ok: TLS over %s" % ctx.reg)

# ---- etcd member failures ----

def etcd_ctl(ctx, *args):
    p = subprocess.run([ctx.args.etcd_cluster] + list(args[:1]) + [ctx.cluster] + list(args[1:]),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    check(p.returncode == 0, "cluster.sh %s: %s" % (" ".join(args), p.stderr.decode()))
    return p.stdout.decode().strip()


def c_nodes(ctx, name, want, wait_ms):
    """The node ids cmicro's etcd backend reads for name, polled until there are want."""
    got = json.loads(ctx.run_tool([ctx.args.c_registry, "get", name, str(want), str(wait_ms)],
                                  "registry get", timeout=wait_ms / 1000.0 + 20))
    return sorted(n["id"] for s in got for n in s["nodes"])


def rr_all(callers, n, what):
    """n calls from every caller at once, all of which must succeed; the answers per caller."""
    res = {}

    def one(cl):
        try:
            res[cl.label] = cl.run("rr proto %d" % n, timeout=120)
        except Fail as e:
            res[cl.label] = {"ok": False, "error": str(e)}
    ts = [threading.Thread(target=one, args=(cl,)) for cl in callers]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for cl in callers:
        r = res[cl.label]
        check(r["ok"], "%s, %s: %s failures, last %s; its log:\n%s"
              % (what, cl.label, r.get("failures"), r.get("error"), cl.text()[-3000:]))
    return {label: r.get("counts") for label, r in res.items()}


def faults(ctx):
    check(ctx.reg == "etcd", "faults runs over etcd")
    name = ctx.name("cmicro.interop.faults")
    log("== etcd member failures (service %s)" % name)
    # A short TTL: a node killed with -9 goes within TTL seconds (plus etcd's expiry check).
    ttl = 6
    ctx.env["MICRO_REGISTER_TTL"] = str(ttl)
    ctx.env["MICRO_REGISTER_INTERVAL"] = "2"
    servers = {i: ctx.server("c", "callee-" + i, name, i) for i in ("a", "b")}
    callers = [ctx.caller("c", name), ctx.caller("go4.11", name)]
    rr_all(callers, 20, "before")

    lead = int(etcd_ctl(ctx, "leader"))
    log("-- the leader (member %d) killed while 2 x 1000 calls run" % lead)
    timer = threading.Timer(0.05, lambda: etcd_ctl(ctx, "kill", str(lead)))
    timer.start()
    counts = rr_all(callers, 1000, "leader killed")
    timer.join()
    for label, c in counts.items():
        check(c == {"a": 500, "b": 500}, "leader killed, %s: %r" % (label, c))
    time.sleep(2.5)  # registrations keep their leases through the election: nothing expires
    check(len(c_nodes(ctx, name, 2, 3000)) == 2, "after the election the registry lost a node")
    etcd_ctl(ctx, "restart", str(lead))

    lead = int(etcd_ctl(ctx, "leader"))
    down = [lead, lead % 3 + 1]
    log("-- members %s killed: no quorum" % down)
    for m in down:
        etcd_ctl(ctx, "kill", str(m))
    env = dict(ctx.env)
    env["MICRO_SERVER_NAME"] = name
    env["INTEROP_INSTANCE"] = "c"
    late = Proc(ctx, "callee-c", [ctx.args.c_echo_server], env)
    counts = rr_all(callers, 20, "without quorum")
    for label, c in counts.items():
        check(c == {"a": 10, "b": 10}, "without quorum, %s: %r" % (label, c))
    time.sleep(3)
    check("[service] registered" not in late.text(),
          "a server registered without quorum:\n%s" % late.text())
    log("   calls continue from the callers' caches; a new server cannot register")
    t0 = time.monotonic()
    for m in down:
        etcd_ctl(ctx, "restart", str(m))
    late.wait_for("[service] registered", timeout=30)
    log("   quorum back: the new server registered %.1f s later" % (time.monotonic() - t0))
    servers["c"] = late
    check(len(c_nodes(ctx, name, 3, 10000)) == 3, "the registry does not list 3 nodes")
    time.sleep(SETTLE)
    counts = rr_all(callers, 30, "after recovery")
    for label, c in counts.items():
        check(c == {"a": 10, "b": 10, "c": 10}, "after recovery, %s: %r" % (label, c))

    log("-- instance c killed with -9")
    t0 = time.monotonic()
    late.kill()
    while len(c_nodes(ctx, name, 2, 0)) > 2:
        check(time.monotonic() - t0 < 30, "the killed node is still registered after 30 s")
        time.sleep(0.1)
    took = time.monotonic() - t0
    log("   its key went with its lease after %.1f s (TTL %d s)" % (took, ttl))
    check(took <= ttl + 4.0, "the killed node stayed %.1f s" % took)
    time.sleep(SETTLE)
    counts = rr_all(callers, 12, "after kill -9")
    for label, c in counts.items():
        check(c == {"a": 6, "b": 6}, "after kill -9, %s: %r" % (label, c))
    for cl in callers:
        cl.quit()
    for i in ("a", "b"):
        servers[i].stop()
    log("ok: etcd member failures")


# ---- main ----

def stream(ctx):
    import stream_cases
    stream_cases.run(ctx, Proc, Caller, check, log)


def stream_faults(ctx):
    import stream_cases
    stream_cases.run_faults(ctx, Proc, Caller, check, log)


def start_agent(ctx):
    """The project's Consul test agent on 127.0.0.1, unless CONSUL_HTTP_ADDR names one."""
    if os.environ.get("CONSUL_HTTP_ADDR"):
        ctx.suffix = "-%d-%d" % (os.getpid(), int(time.time()) % 100000)
        return
    p = Proc(ctx, "consul-agent", [sys.executable, ctx.args.consul_agent, "--port", "0"],
             ctx.env, interactive=True)
    line = p.p.stdout.readline().decode().strip()
    check(line.isdigit(), "the Consul test agent did not start: %r %s" % (line, p.text()))
    ctx.env["CONSUL_HTTP_ADDR"] = "127.0.0.1:" + line
    ctx.own_agent = True


def start_etcd(ctx):
    """A three-member etcd cluster on loopback ports, stopped by ctx.close."""
    d = os.path.join(ctx.tmp, "etcd")
    p = subprocess.run([ctx.args.etcd_cluster, "start", d], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    if p.returncode == SKIP:
        return False
    ctx.cluster = d
    check(p.returncode == 0, "the etcd cluster did not start: %s" % p.stderr.decode())
    ctx.env["MICRO_REGISTRY_ADDRESS"] = p.stdout.decode().strip()
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--netns", required=True)
    ap.add_argument("--consul-agent", required=True)
    ap.add_argument("--c-echo-server", required=True)
    ap.add_argument("--c-echo-client", required=True)
    ap.add_argument("--c-registry", required=True)
    ap.add_argument("--c-hello-server", required=True)
    ap.add_argument("--c-hello-client", required=True)
    ap.add_argument("--go4.11", dest="go4_11", default="")
    ap.add_argument("--go4.9", dest="go4_9", default="")
    ap.add_argument("--make-ca", default="", help="test/common/make-test-ca.sh (mode tls)")
    ap.add_argument("--go4.11-etcd", dest="go4_11_etcd", default="")
    ap.add_argument("--etcd-cluster", default="")
    ap.add_argument("--c-stream-server", default="")
    ap.add_argument("--c-stream-client", default="")
    sub = ap.add_subparsers(dest="mode", required=True)
    for m in ("stream", "stream-faults"):
        c = sub.add_parser(m)
        c.add_argument("caller", choices=["c", "go4.11", "go4.9"])
        c.add_argument("callee", choices=["c", "go4.11", "go4.9"])
        c.add_argument("registry", choices=["mdns", "consul"])
    c = sub.add_parser("cell")
    c.add_argument("caller", choices=["c", "go4.11", "go4.9"])
    c.add_argument("callee", choices=["c", "go4.11", "go4.9"])
    c.add_argument("registry", choices=["mdns", "consul", "etcd"])
    for m in ("registry", "hello"):
        sub.add_parser(m).add_argument("registry", choices=["mdns", "consul", "etcd"])
    for m in ("trace", "tls"):
        sub.add_parser(m).add_argument("registry", choices=["mdns", "consul"])
    sub.add_parser("faults").add_argument("registry", choices=["etcd"])
    args = ap.parse_args()

    peers = ({args.caller, args.callee} if args.mode in ("cell", "stream", "stream-faults")
             else {"go4.11", "go4.9"})
    if args.registry == "etcd":
        # One Go peer over etcd: go-micro v4.11 with the plugin.
        missing = "go4.11" in peers and not args.go4_11_etcd
    else:
        missing = ("go4.11" in peers and not args.go4_11) or ("go4.9" in peers and not args.go4_9)
    if missing:
        why = "Go is not installed: the go-micro peers of the interop suite were not built"
        if os.environ.get("CI") == "true":
            log("FAIL: %s (CI=true requires them; install Go and reconfigure)" % why)
            return 1
        log("SKIP: %s" % why)
        return SKIP

    if args.registry == "mdns" and os.environ.get("CMICRO_TEST_NETNS") != "1":
        # Nothing has opened a socket yet: continue inside the private namespace.
        argv = [args.netns, sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
        os.execv(args.netns, argv)

    ctx = Ctx(args)
    try:
        if args.registry == "consul":
            start_agent(ctx)
        if args.registry == "etcd" and not start_etcd(ctx):
            why = "etcd is not installed (Debian: etcd-server etcd-client)"
            if os.environ.get("CI") == "true":
                log("FAIL: %s (CI=true requires it)" % why)
                return 1
            log("SKIP: %s" % why)
            return SKIP
        {"cell": cell, "registry": registry, "hello": hello, "faults": faults, "trace": trace,
         "tls": tls, "stream": stream, "stream-faults": stream_faults}[args.mode](ctx)
        ctx.check_agent_log()
    except Fail as e:
        log("FAIL: %s" % e)
        ctx.dump_agent_log()
        return 1
    finally:
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
