#!/usr/bin/env python3
"""The cmicro tool against a go-micro v4.11 service: the interop suite's Go hello server
(registry-consul.service, Hello.Say) over REGISTRY (mdns inside test/mdns/run-netns.sh's private
namespace, or consul: the project's test agent). services lists it, describe shows what go-micro
registered (endpoint, request and response fields, node id, address and metadata), call answers
with one line of JSON, health shows the node with go-micro's answers, and bad input answers one
line on stderr with a non-zero exit: an unknown service, an unknown endpoint, JSON that does not
fit the message, a request that is not JSON and, over Consul, the registry down.

    cli_go.py --netns RUN_NETNS --consul-agent AGENT --cmicro CMICRO [--go GMICRO] REGISTRY

Without --go (Go is not installed) the test prints a SKIP line and exits 77, or fails when
CI=true; its processes and helpers are those of test/interop/interop.py.
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import interop  # noqa: E402
from interop import Fail, Proc, check, log  # noqa: E402

HELLO = "registry-consul.service"


def run(ctx, *argv, env=None, timeout=20.0):
    """The tool's (exit status, stdout, stderr)."""
    p = subprocess.run([ctx.args.cmicro] + list(argv), env=env or ctx.env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    log("   cmicro %s -> %d %r %r" % (" ".join(argv), p.returncode, out[:200], err[:300]))
    return p.returncode, out, err


def one_line_error(res, rc, needles, what):
    """A failure: exit status rc, nothing on stdout, one line on stderr containing needles."""
    got_rc, out, err = res
    lines = err.splitlines()
    check(got_rc == rc and out == "" and len(lines) == 1 and err.endswith("\n"),
          "%s: exit %d, stdout %r, stderr %r; want exit %d and one line" % (what, got_rc, out, err,
                                                                          rc))
    for n in needles:
        check(n in lines[0], "%s: %r does not say %r" % (what, lines[0], n))
    return lines[0]


def check_found(ctx, node, addr):
    rc, out, err = run(ctx, "services")
    check(rc == 0 and HELLO in out.splitlines(), "services: %d %r %r" % (rc, out, err))
    rc, out, err = run(ctx, "services", "-o", "json")
    check(rc == 0 and HELLO in json.loads(out), "services -o json: %d %r %r" % (rc, out, err))
    rc, out, err = run(ctx, "describe", HELLO)
    check(rc == 0 and err == "", "describe: %d %r" % (rc, err))
    svcs = json.loads(out)
    check(len(svcs) == 1 and svcs[0]["name"] == HELLO and svcs[0]["version"] == "latest",
          "describe: %r" % svcs)
    eps = {e["name"]: e for e in svcs[0]["endpoints"]}
    say = eps.get("Hello.Say")
    check(say is not None and say["request"]["name"] == "SayRequest" and
          [(v["name"], v["type"]) for v in say["request"]["values"]] == [("name", "string")] and
          say["response"]["name"] == "SayResponse" and
          [(v["name"], v["type"]) for v in say["response"]["values"]] == [("message", "string")],
          "describe: Hello.Say is %r" % say)
    nodes = svcs[0]["nodes"]
    check(len(nodes) == 1 and nodes[0]["id"] == node and nodes[0]["address"] == addr,
          "describe: nodes %r, want %s at %s" % (nodes, node, addr))
    md = nodes[0]["metadata"]
    check(md.get("registry") == ctx.reg and md.get("server") == "mucp" and
          md.get("transport") == "http", "describe: node metadata %r" % md)
    log("ok: services and describe show the go-micro node %s at %s" % (node, addr))


def check_call(ctx):
    rc, out, err = run(ctx, "call", HELLO, "Hello.Say", '{"name":"Ada"}', "-m", "X-User-Id=42")
    # go-micro's JSON codec ends its reply with a newline: the tool prints one line all the same.
    check(rc == 0 and out == '{"message":"Hello Ada"}\n' and err == "",
          "call: %d %r %r" % (rc, out, err))
    rc, out, err = run(ctx, "call", HELLO, "Hello.Say")
    check(rc == 0 and out == '{"message":"Hello "}\n', "call with no JSON: %d %r %r" % (rc, out,
                                                                                      err))
    # go-micro's errors: the peer's words as one JSON line on stderr, exit 1.
    line = one_line_error(run(ctx, "call", HELLO, "Hello.Nope", "{}"), 1,
                          ["can't find method Nope"], "call of an unknown endpoint")
    check(json.loads(line)["detail"] == "rpc: can't find method Nope", "unknown endpoint: %r" % line)
    one_line_error(run(ctx, "call", HELLO, "Nope.Say", "{}"), 1, ["can't find service Nope"],
                   "call of an unknown handler")
    line = one_line_error(run(ctx, "call", HELLO, "Hello.Say", '{"name":5}'), 1,
                          ["cannot unmarshal number", "string"], "call with a number for a string")
    json.loads(line)
    one_line_error(run(ctx, "call", HELLO, "Hello.Say", '["Ada"]'), 1, ["cannot unmarshal array"],
                   "call with an array for the message")
    # Not JSON at all: refused before any lookup, as a usage error.
    one_line_error(run(ctx, "call", HELLO, "Hello.Say", '{"name":'), 2,
                   ["cmicro: the request is not JSON", '{"name":'], "call with broken JSON")
    one_line_error(run(ctx, "call", "nobody.here", "Hello.Say", "{}"), 1,
                   ["service nobody.here: not found"], "call of an unknown service")
    log("ok: call answers Hello Ada; unknown endpoint and handler, misfit JSON, broken JSON and an "
        "unknown service each give one line and a non-zero exit")


def check_health(ctx, node, addr):
    """A go-micro v4 node has no Debug handler and no /health/ready: health says so, exit 1."""
    rc, out, err = run(ctx, "health", HELLO)
    lines = out.splitlines()
    check(rc == 1 and err == "" and len(lines) == 2 and lines[0].split() ==
          ["NODE", "ADDRESS", "VERSION", "DEBUG", "READY"], "health: %d %r %r" % (rc, out, err))
    check(re.fullmatch(r"%s +%s +latest +rpc: can't find service Debug +no health endpoint "
                       r"\(HTTP \d+\)" % (re.escape(node), re.escape(addr)), lines[1]),
          "health's row: %r" % lines[1])
    # The columns line up: each header starts where its cells do.
    check(lines[0].index("ADDRESS") == lines[1].index(addr) and
          lines[0].index("DEBUG") == lines[1].index("rpc: ") and
          lines[0].index("READY") == lines[1].index("no health endpoint"),
          "health's columns do not line up:\n%s" % out)
    rc, out, err = run(ctx, "health", HELLO, "-o", "json")
    rows = json.loads(out) if rc == 1 else None
    check(rows is not None and len(rows) == 1 and rows[0]["node"] == node and
          rows[0]["address"] == addr and rows[0]["version"] == "latest" and
          rows[0]["debug_health"] == "rpc: can't find service Debug" and
          rows[0]["ready"].startswith("no health endpoint"), "health -o json: %d %r %r" % (rc, out,
                                                                                       err))
    one_line_error(run(ctx, "health", "nobody.here"), 1, ["cmicro: service nobody.here: not found"],
                   "health of an unknown service")
    one_line_error(run(ctx, "describe", "nobody.here"), 1,
                   ["cmicro: service nobody.here: not found"], "describe of an unknown service")
    log("ok: health shows the go-micro node without Debug and /health/ready, exit 1")


def check_registry_down(ctx):
    """Consul refusing (a closed loopback port): one line naming the registry, exit 1."""
    env = dict(ctx.env, CONSUL_HTTP_ADDR="127.0.0.1:%d" % closed_port())
    want = "registry consul: connection refused"
    one_line_error(run(ctx, "services", env=env), 1, ["cmicro: listing services: " + want],
                   "services with the registry down")
    for cmd in ("describe", "health", "watch"):
        one_line_error(run(ctx, cmd, HELLO, env=env), 1, ["cmicro: service %s: %s" % (HELLO, want)],
                       "%s with the registry down" % cmd)
    line = one_line_error(run(ctx, "call", HELLO, "Hello.Say", "{}", env=env), 1,
                          ["registry lookup failed: connection refused"],
                          "call with the registry down")
    check(json.loads(line)["code"] == 500, "call with the registry down: %r" % line)
    log("ok: with Consul down, services, describe, health, watch and call each give one line, "
        "exit 1")


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--netns", required=True)
    ap.add_argument("--consul-agent", required=True)
    ap.add_argument("--cmicro", required=True)
    ap.add_argument("--go", default="")
    ap.add_argument("registry", choices=["mdns", "consul"])
    args = ap.parse_args()
    if not args.go:
        why = "Go is not installed: the go-micro peer was not built"
        if os.environ.get("CI") == "true":
            log("FAIL: %s (CI=true requires it; install Go and reconfigure)" % why)
            return 1
        log("SKIP: %s" % why)
        return interop.SKIP
    if args.registry == "mdns" and os.environ.get("CMICRO_TEST_NETNS") != "1":
        # Nothing has opened a socket yet: continue inside the private namespace.
        os.execv(args.netns, [args.netns, sys.executable, os.path.abspath(__file__)] + sys.argv[1:])
    args.go4_11 = args.go
    ctx = interop.Ctx(args)
    try:
        if args.registry == "consul":
            interop.start_agent(ctx)
        p = Proc(ctx, "hello-server-go4.11", [args.go, "hello-server", "-registry", ctx.reg],
                 ctx.env)
        p.wait_for("REGISTERED ")
        m = re.search(r"^REGISTERED (\S+) (\S+) v4\.11\.0$", p.text(), re.M)
        check(m is not None, "the Go hello server printed %r" % p.text())
        node, addr = m.group(1), m.group(2)
        check_found(ctx, node, addr)
        check_call(ctx)
        check_health(ctx, node, addr)
        if args.registry == "consul":
            check_registry_down(ctx)
        p.stop()
        ctx.check_agent_log()
    except Fail as e:
        log("FAIL: %s" % e)
        ctx.dump_agent_log()
        return 1
    finally:
        ctx.close()
    print("ok: the cmicro tool against go-micro v4.11 over %s" % args.registry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
