#!/usr/bin/env python3
"""The broker interop tests: cmicro's brokers against go-micro v4.11.0 programs (go/gbroker).

    broker_interop.py --c PEER --go GBROKER --consul-agent PY encode
    broker_interop.py --c PEER --go GBROKER --consul-agent PY BROKER CODEC FROM TO [mdns]
    broker_interop.py --c PEER --go GBROKER --consul-agent PY killed-subscriber

encode: go-micro's JSON of broker.Message and cmicro's cm_broker_msg_encode agree byte for byte
on a set of messages (escapes, sorted keys, invalid UTF-8, binary bodies).

BROKER nats|http, CODEC json|proto, FROM/TO c|cev|go (c: the broker layer alone, cev: the events
API of a service, --cev PEER): four subscribers of TO (two on topic "fan",
two in queue group "grp" on topic "work") and one publisher of FROM that publishes 20 events to
each topic with go-micro's client header (Content-Type, Micro-Topic, Micro-ID) and X-Seq. Each
"fan" subscriber gets all 20, the queue group gets each "work" event exactly once, every event
decodes with its codec and carries its header. nats: a real nats-server on a free loopback
port. http: the subscriptions in the Consul test agent (test/consul/consul_agent.py), or with
"mdns" in mDNS (run under test/mdns/run-netns.sh).

killed-subscriber: HTTP broker over the Consul test agent, see killed_subscriber().
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77
N = 20


class Fail(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Proc:
    def __init__(self, label, argv, env):
        self.label = label
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen(argv, env=env, stdout=self.out, stderr=self.err)

    def text(self, which="out"):
        f = self.out if which == "out" else self.err
        f.seek(0)
        return f.read().decode(errors="replace")

    def wait_for(self, needle, timeout=30.0):
        end = time.time() + timeout
        while time.time() < end:
            if needle in self.text():
                return
            check(self.p.poll() is None, "%s exited (%s) before %r:\n%s\n%s" % (
                self.label, self.p.returncode, needle, self.text(), self.text("err")))
            time.sleep(0.02)
        raise Fail("%s did not print %r in %ss:\n%s" % (self.label, needle, timeout,
                                                        self.text("err")))

    def wait(self, timeout=30.0):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise Fail("%s did not finish in %ss:\n%s" % (self.label, timeout, self.text("err")))

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def events(self):
        out = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


def encode(args, env):
    g = subprocess.run([args.go, "encode"], env=env, capture_output=True, check=True)
    c = subprocess.run([args.c, "encode"], env=env, capture_output=True, check=True)
    gl, cl = g.stdout.decode().split(), c.stdout.decode().split()
    check(len(gl) == 4 and len(cl) == 4, "want 4 lines each: go %r c %r" % (gl, cl))
    import base64
    for i, (a, b) in enumerate(zip(gl, cl)):
        check(a == b, "message %d differs:\n  go: %r\n  c:  %r" % (
            i, base64.b64decode(a), base64.b64decode(b)))
        log("  message %d: %d bytes, identical" % (i, len(base64.b64decode(a))))


def c_peer(args, side):
    return args.cev if side == "cev" else args.c


def sub_argv(args, side, broker, topic, queue, count):
    if side in ("c", "cev"):
        return [c_peer(args, side), "sub", broker, topic, queue or "-", str(count)]
    return [args.go, "sub", "-broker", broker, "-address", os.environ.get("NATS_URL", ""),
            "-topic", topic, "-count", str(count)] + (["-queue", queue] if queue else [])


def pub_argv(args, side, broker, topic, ct):
    if side in ("c", "cev"):
        return [c_peer(args, side), "pub", broker, topic, str(N), ct]
    return [args.go, "pub", "-broker", broker, "-address", os.environ.get("NATS_URL", ""),
            "-topic", topic, "-count", str(N), "-content-type", ct]


def check_events(evs, label, topic, ct, want):
    names = sorted(int(e.get("name", "x-1").split("-")[1]) for e in evs if "name" in e)
    errs = [e for e in evs if "error" in e]
    check(not errs, "%s: events that did not decode: %r" % (label, errs))
    check(names == want, "%s: got events %r, want %r" % (label, names, want))
    for e in evs:
        check(e["content_type"] == ct, "%s: Content-Type %r" % (label, e["content_type"]))
        check(e["topic"] == topic, "%s: Micro-Topic %r" % (label, e["topic"]))
        check(e["seq"] == e["name"].split("-")[1], "%s: X-Seq %r for %r" % (
            label, e["seq"], e["name"]))
        check(len(e["id"]) == 36, "%s: Micro-ID %r" % (label, e["id"]))


def pubsub(args, env, broker, codec, src, dst):
    ct = {"json": "application/json", "proto": "application/protobuf"}[codec]
    procs = []
    try:
        fans = [Proc("%s fan sub %d" % (dst, i), sub_argv(args, dst, broker, "fan", None, N), env)
                for i in range(2)]
        grp = [Proc("%s queue sub %d" % (dst, i), sub_argv(args, dst, broker, "work", "grp", 1000),
                    env) for i in range(2)]
        procs = fans + grp
        for p in procs:
            p.wait_for("READY")
        time.sleep(0.3)  # a Go subscriber prints READY before its SUB reaches the server
        for topic in ("fan", "work"):
            p = Proc("%s publisher" % src, pub_argv(args, src, broker, topic, ct), env)
            procs.append(p)
            rc = p.wait()
            check(rc == 0, "publisher failed (exit %s):\n%s" % (rc, p.text("err")))
            check("PUBLISHED %d" % N in p.text(), "publisher: %r" % p.text())
        for p in fans:
            rc = p.wait()
            check(rc == 0, "%s failed (exit %s):\n%s" % (p.label, rc, p.text("err")))
            check_events(p.events(), p.label, "fan", ct, list(range(N)))
        end = time.time() + 10
        while time.time() < end and sum(len(p.events()) for p in grp) < N:
            time.sleep(0.05)
        time.sleep(0.3)  # room for a duplicate to show
        for p in grp:
            p.stop()
        evs = grp[0].events() + grp[1].events()
        check_events(evs, "queue group", "work", ct, list(range(N)))
        log("  fan-out: 2 x %d; queue group: %d + %d" % (
            N, len(grp[0].events()), len(grp[1].events())))
    finally:
        for p in procs:
            p.stop()


def killed_subscriber(args, env):
    """Two C subscribers of the HTTP broker; one is killed (SIGKILL: its node stays in Consul
    until its TTL); a Go and a C publisher: the C one names the dead node in its errors, and the
    survivor gets every event from both."""
    live = Proc("c fan sub live", sub_argv(args, "c", "http", "fan", None, 2 * N), env)
    dead = Proc("c fan sub killed", sub_argv(args, "c", "http", "fan", None, 2 * N), env)
    procs = [live, dead]
    try:
        live.wait_for("READY")
        dead.wait_for("READY")
        dead.p.kill()
        dead.p.wait()
        p = Proc("c publisher", pub_argv(args, "c", "http", "fan", "application/json"), env)
        procs.append(p)
        rc = p.wait()
        errs = [l.split() for l in p.text().splitlines() if l.startswith("NODE-ERROR")]
        check(rc == 3 and len(errs) == N, "want exit 3 and %d node errors: exit %s, %r\n%s" % (
            N, rc, errs, p.text("err")))
        check(len({e[1] for e in errs}) == 1 and errs[0][3] == "ECONNREFUSED",
              "node errors: %r" % errs[:3])
        log("  the publisher: %s at %s: %s (x%d)" % (errs[0][1], errs[0][2], errs[0][3], N))
        g = Proc("go publisher", pub_argv(args, "go", "http", "fan", "application/json"), env)
        procs.append(g)
        check(g.wait() == 0, "go publisher failed:\n%s" % g.text("err"))
        check(live.wait() == 0, "the live subscriber failed:\n%s" % live.text("err"))
        check_events(live.events(), live.label, "fan", "application/json",
                     sorted(list(range(N)) * 2))
        log("  the live subscriber: all %d events" % (2 * N))
    finally:
        for p in procs:
            p.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--c", required=True)
    ap.add_argument("--cev", default="")
    ap.add_argument("--go", default="")
    ap.add_argument("--consul-agent", required=True)
    ap.add_argument("mode", nargs="+")
    args = ap.parse_args()
    if not args.go:
        why = "Go is not installed: the go-micro broker peer was not built"
        if os.environ.get("CI") == "true":
            log("FAIL: %s" % why)
            return 1
        log("SKIP: %s" % why)
        return SKIP
    env = dict(os.environ)
    env.pop("MICRO_BROKER_ADDRESS", None)
    helpers = []
    try:
        if args.mode == ["encode"]:
            encode(args, env)
            return 0
        if args.mode == ["killed-subscriber"]:
            args.mode = ["http", "killed-subscriber"]
        broker, codec, src, dst, reg = (args.mode + ["", "", ""])[:5]
        if broker == "nats":
            natsd = shutil.which("nats-server") or "/usr/sbin/nats-server"
            if not os.access(natsd, os.X_OK):
                log("SKIP: nats-server is not installed (scripts/setup.sh installs it)")
                return 1 if os.environ.get("CI") == "true" else SKIP
            port = free_port()
            helpers.append(Proc("nats-server", [natsd, "-a", "127.0.0.1", "-p", str(port)], env))
            end = time.time() + 10
            while time.time() < end:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.02)
            env["NATS_URL"] = os.environ["NATS_URL"] = "nats://127.0.0.1:%d" % port
            env["MICRO_BROKER_ADDRESS"] = env["NATS_URL"]
        elif reg == "mdns":
            env["MICRO_REGISTRY"] = "mdns"
            env["MICRO_MDNS_INTERFACE"] = "lo"
        else:
            agent = subprocess.Popen([sys.executable, args.consul_agent, "--port", "0"],
                                     stdout=subprocess.PIPE, env=env)
            helpers.append(agent)
            line = agent.stdout.readline().decode().strip()
            check(line.isdigit(), "the Consul test agent did not start: %r" % line)
            env["CONSUL_HTTP_ADDR"] = "127.0.0.1:" + line
            env["MICRO_REGISTRY"] = "consul"
        if codec == "killed-subscriber":
            killed_subscriber(args, env)
        else:
            pubsub(args, env, broker, codec, src, dst)
    except Fail as e:
        log("FAIL: %s" % e)
        return 1
    finally:
        for h in helpers:
            p = h.p if isinstance(h, Proc) else h
            p.kill()
            p.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
