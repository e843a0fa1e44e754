#!/usr/bin/env python3
"""GET /status of a running C service: the JSON form checked field by field against the calls just
made (served and made, successes and go-micro errors, the selector's view of the called service),
the HTML form loaded in headless Chromium, which must log no console message and whose DOM must
show the endpoint table with those counts and a hostile service name as plain text; odd paths and a
huge query answered without a crash; 302 called endpoints shown as 256 rows and 46 omitted; with
MICRO_METRICS=off the endpoints listed without counts, and a registry that refuses (Consul on a
closed loopback port) shown with its last error; a call blocked in its handler shown in flight on
its endpoint's row, in JSON and HTML, and no longer once it has returned.

    status_page.py STATUS_SERVER

Chromium (the Debian package) runs with its console logged to stderr: any "CONSOLE" line fails the
test. A page that logs an error is loaded first, alongside, to prove that such a line is caught.
"""
import html.parser
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

SERVICE = "cm.status.test"
# A callee that does not exist, named to break the page if it were not escaped.
EVIL = "cm.missing.<img src=x onerror=console.error(1)>&\"'"


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def start(server, **extra):
    env = dict(os.environ, MICRO_REGISTRY="memory", MICRO_SERVER_ADDRESS="127.0.0.1:0",
               CMICRO_QUIET="1")
    env.update(extra)
    p = subprocess.Popen([server, SERVICE], env=env, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    if len(line) < 3 or line[0] != "listening":
        p.kill()
        fail("status-server printed %r" % line)
    return p, line[1], line[2]


def call(addr, endpoint, body):
    """One go-micro call over HTTP with the JSON codec: its Micro-Error's code, or None."""
    req = urllib.request.Request("http://%s/" % addr, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Micro-Service": SERVICE, "Micro-Endpoint": endpoint})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            err = r.headers.get("Micro-Error")
    except urllib.error.HTTPError as e:
        err = e.headers.get("Micro-Error")
    return json.loads(err)["code"] if err else None


def get(addr, path, headers=None):
    req = urllib.request.Request("http://%s%s" % (addr, path), headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def status_json(addr):
    st, ctype, body = get(addr, "/status?format=json")
    check(st == 200 and ctype == "application/json", "/status?format=json: %d %r" % (st, ctype))
    return json.loads(body)


def make_calls(addr):
    """The calls, and the error code the relay to EVIL answers (the client's own error code)."""
    for i in range(5):
        check(call(addr, "Echo.Call", {"n": i}) is None, "Echo.Call failed")
    for _ in range(2):
        check(call(addr, "Echo.Call", {"failCode": 409}) == 409, "Echo.Call did not fail with 409")
    for i in range(3):
        check(call(addr, "Echo.Relay", {"name": SERVICE, "n": i}) is None, "relay to self failed")
    check(call(addr, "Echo.Relay", {"name": SERVICE, "failCode": 418}) == 418,
          "relay of a 418 did not answer 418")
    codes = [call(addr, "Echo.Relay", {"name": EVIL}) for _ in range(2)]
    check(codes[0] is not None and codes[0] == codes[1], "relay to a missing service: %r" % codes)
    return codes[0]


def settled_status(addr):
    """The status once the last calls are finished: a worker writes its call's reply itself, and
    the loop finishes the call (the in-flight count) right after, so the client may ask first."""
    deadline = time.time() + 2
    s = status_json(addr)
    while s["server"]["inflight"] != 1 and time.time() < deadline:
        time.sleep(0.01)
        s = status_json(addr)
    return s


def rows_by_endpoint(rows, service):
    return {r["endpoint"]: r for r in rows if r["service"] == service}


def check_row(row, calls, errors, codes, what):
    check(row is not None, "%s: no row" % what)
    if "inflight" not in row:  # a call made: the in-flight gauge is the server's
        row = dict(row, inflight=0)
    check(row["calls"] == calls, "%s: calls %r, want %d" % (what, row["calls"], calls))
    check(row["errors"] == errors, "%s: errors %r, want %d" % (what, row["errors"], errors))
    check(row["error_codes"] == codes, "%s: error codes %r, want %r" % (what, row["error_codes"],
                                                                       codes))
    check(row["inflight"] == 0, "%s: inflight %r, want 0" % (what, row["inflight"]))
    lat = row["latency_seconds"]
    q = [lat["p50"], lat["p90"], lat["p99"]]
    check(all(isinstance(v, (int, float)) for v in q) and 0 < q[0] <= q[1] <= q[2] <= 10,
          "%s: latency quantiles %r" % (what, lat))
    check(isinstance(lat["mean"], (int, float)) and 0 < lat["mean"] < 10,
          "%s: mean latency %r" % (what, lat["mean"]))


def check_json(s, addr, node, pid, evil_code):
    svc = s["service"]
    want = {"name": SERVICE, "id": node, "address": addr, "transport": "http", "pid": pid,
            "metrics": True}
    for k, v in want.items():
        check(svc.get(k) == v, "service.%s is %r, want %r" % (k, svc.get(k), v))
    check(isinstance(svc["version"], str) and svc["version"], "service.version %r" % svc["version"])
    check(isinstance(svc["cmicro_version"], str), "service.cmicro_version")
    check(abs(svc["started_unix"] - time.time()) < 120, "service.started_unix %r" %
          svc["started_unix"])
    check(0 <= svc["uptime_seconds"] < 120, "service.uptime_seconds %r" % svc["uptime_seconds"])
    reg = s["registry"]
    check(reg["backend"] == "memory" and reg["registered"] is True and
          reg["register_failures"] == 0 and reg["last_error"] is None, "registry %r" % reg)
    srv = s["server"]
    # 17 calls reached a handler: 11 Echo.Call (5 + 2 + the 4 relayed) and 6 Echo.Relay.
    check(srv["calls"] == 17 and srv["errors"] == 6, "server calls/errors %r" % srv)
    check(srv["inflight"] == 1, "server.inflight %r: only this GET should be in flight" % srv)
    check(srv["connections"]["open"] >= 1 and srv["connections"]["accepted"] >= 13,
          "server.connections %r" % srv["connections"])
    check(srv["refused"] == {"timeout": 0, "evicted": 0, "max_conns": 0, "malformed": 0,
                             "concurrency": 0, "rate": 0, "max_streams": 0},
          "server.refused %r" % srv["refused"])
    eps = rows_by_endpoint(s["endpoints"], SERVICE)
    check(len(s["endpoints"]) == 2 and s["endpoints_omitted"] == 0,
          "endpoints %r" % s["endpoints"])
    check_row(eps.get("Echo.Call"), 11, 3, {"409": 2, "418": 1}, "endpoint Echo.Call")
    check_row(eps.get("Echo.Relay"), 6, 3, {"418": 1, str(evil_code): 2}, "endpoint Echo.Relay")
    made = s["calls_made"]
    check(len(made) == 2 and s["calls_made_omitted"] == 0, "calls_made %r" % made)
    check_row(rows_by_endpoint(made, SERVICE).get("Echo.Call"), 4, 1, {"418": 1},
              "call made to %s" % SERVICE)
    check_row(rows_by_endpoint(made, EVIL).get("Echo.Call"), 2, 2, {str(evil_code): 2},
              "call made to the missing service")
    called = {c["service"]: c for c in s["called_services"]}
    me = called.get(SERVICE)
    check(me is not None and me["nodes"] == 1 and me["ejected"] == 0 and
          me["stale_served"] == 0 and me["registry_ok"] is True and
          0 <= me["cache_age_seconds"] < 60, "called_services[%s] %r" % (SERVICE, me))


# ---- the browser ----

class Tables(html.parser.HTMLParser):
    """The text of each cell of each table, by table id; the tags seen."""

    def __init__(self):
        super().__init__()
        self.tables, self.tags = {}, []
        self.table = self.row = self.text = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "table":
            self.table = self.tables.setdefault(dict(attrs).get("id"), [])
        elif tag == "tr" and self.table is not None:
            self.row = []
            self.table.append(self.row)
        elif tag in ("td", "th") and self.row is not None:
            self.text = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.text is not None:
            self.row.append(self.text.strip())
            self.text = None
        elif tag == "table":
            self.table = None

    def handle_data(self, data):
        if self.text is not None:
            self.text += data


def chromium_start(url, workdir, name):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        fail("chromium is not installed (scripts/setup.sh installs the Debian package)")
    out = open(os.path.join(workdir, name + ".dom"), "w")
    err = open(os.path.join(workdir, name + ".log"), "w")
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-default-apps", "--disable-extensions",
            "--user-data-dir=" + os.path.join(workdir, name + ".profile"),
            "--enable-logging=stderr", "--v=0", "--dump-dom", url]
    env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS="disabled:")
    return subprocess.Popen(args, stdout=out, stderr=err, env=env), out, err


def chromium_wait(proc, workdir, name):
    try:
        rc = proc[0].wait(timeout=240)
    except subprocess.TimeoutExpired:
        proc[0].kill()
        fail("chromium did not finish loading %s" % name)
    proc[1].close()
    proc[2].close()
    with open(os.path.join(workdir, name + ".dom")) as f:
        dom = f.read()
    with open(os.path.join(workdir, name + ".log")) as f:
        console = [ln for ln in f.read().splitlines() if ":CONSOLE" in ln]
    check(rc == 0 and dom, "chromium on %s: exit %d, DOM %d bytes" % (name, rc, len(dom)))
    return dom, console


def cell(table, row, col):
    try:
        return table[row][col]
    except (IndexError, TypeError):
        return None


def check_browser(addr, evil_code):
    workdir = tempfile.mkdtemp(prefix="cm-status-")
    try:
        canary = ("data:text/html,<title>canary</title><script>console.error('canary')</script>")
        procs = {"canary": chromium_start(canary, workdir, "canary"),
                 "status": chromium_start("http://%s/status" % addr, workdir, "status")}
        results = {n: chromium_wait(p, workdir, n) for n, p in procs.items()}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    check(any("canary" in ln for ln in results["canary"][1]),
          "the console of a page that logs an error was not seen: the check below proves nothing")
    dom, console = results["status"]
    check(not console, "the status page logged to the console:\n" + "\n".join(console))
    t = Tables()
    t.feed(dom)
    check("script" not in t.tags and "img" not in t.tags, "the DOM has tags %r" % set(t.tags))
    eps = t.tables.get("endpoints")
    check(eps is not None and cell(eps, 0, 0) == "service", "no endpoint table in\n" + dom)
    want = {"Echo.Call": ["11", "3"], "Echo.Relay": ["6", "3"]}
    got = {r[1]: r[2:4] for r in eps[1:] if len(r) > 4 and r[0] == SERVICE}
    check(got == want, "the endpoint table shows %r, want %r" % (got, want))
    made = {r[0]: r[2:4] for r in t.tables.get("calls", [])[1:] if len(r) > 4}
    check(made.get(EVIL) == ["2", "2"] and made.get(SERVICE) == ["4", "1"],
          "the calls made table shows %r" % made)
    called = {r[0]: r[1:3] for r in t.tables.get("called", [])[1:] if len(r) > 2}
    check(called.get(SERVICE) == ["1", "0"], "the called services table shows %r" % called)
    check(cell(t.tables.get("service"), 0, 0) == "node", "no service table")
    print("ok: Chromium loads /status with no console message; the endpoint table shows "
          "Echo.Call 11 calls 3 errors, Echo.Relay 6/3; the hostile name is text")


# ---- calls in flight ----

def html_inflight(addr):
    """The "in flight" cell of each endpoint row of the HTML page."""
    st, _, page = get(addr, "/status")
    check(st == 200, "/status answered %d" % st)
    t = Tables()
    t.feed(page)
    eps = t.tables.get("endpoints")
    check(eps is not None and cell(eps, 0, 9) == "in flight", "no in flight column in\n" + page)
    return {r[1]: r[9] for r in eps[1:] if len(r) > 9 and r[0] == SERVICE}


def check_inflight(addr):
    """A call blocked in its handler: in flight on Echo.Call's row while it runs, 0 after."""
    done = []
    t = threading.Thread(target=lambda: done.append(call(addr, "Echo.Call",
                                                         {"n": 1, "sleepMs": 3000})))
    t.start()
    try:
        deadline = time.time() + 2.5
        while True:
            eps = rows_by_endpoint(status_json(addr)["endpoints"], SERVICE)
            if eps["Echo.Call"]["inflight"] == 1:
                break
            check(time.time() < deadline and not done,
                  "the blocked call is not in flight: %r" % eps)
            time.sleep(0.02)
        check(eps["Echo.Relay"]["inflight"] == 0, "Echo.Relay in flight: %r" % eps["Echo.Relay"])
        cells = html_inflight(addr)
        check(cells == {"Echo.Call": "1", "Echo.Relay": "0"},
              "the HTML in flight column shows %r while a call blocks" % cells)
    finally:
        t.join()
    check(done == [None], "the blocked call answered %r" % done)
    eps = rows_by_endpoint(status_json(addr)["endpoints"], SERVICE)
    check(eps["Echo.Call"]["inflight"] == 0 and eps["Echo.Relay"]["inflight"] == 0,
          "in flight after the call returned: %r" % eps)
    cells = html_inflight(addr)
    check(cells == {"Echo.Call": "0", "Echo.Relay": "0"}, "the HTML in flight column after: %r"
          % cells)
    print("ok: a call blocked in Echo.Call shows 1 in flight on its row (JSON and HTML), 0 after")


# ---- bad input ----

def raw_get(addr, target):
    host, port = addr.rsplit(":", 1)
    data = b""
    with socket.create_connection((host, int(port)), timeout=10) as s:
        try:
            s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass  # a refusal that closed before reading everything may reset the connection
    return data


def raw_status(addr, target):
    data = raw_get(addr, target)
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None


def check_odd_paths(addr):
    for target, want in [(b"/status/x", 404), (b"/statusx", 404), (b"/Status", 404),
                         (b"//status", 404), (b"/status?", 200), (b"/status?format=", 200),
                         (b"/status?format=json&format=html", 200), (b"/status?\xff\xfe%00", 200),
                         (b"/status?" + b"&" * 2000, 200), (b"*", 404),
                         (b"/status?format=json&" + b"a=" * 3000, 200)]:
        st = raw_status(addr, target)
        check(st == want, "GET %r answered %r, want %d" % (target[:60], st, want))
    # Past the transport's header limit (64 KiB): its go-micro 431, and the server goes on.
    for n in (200000, 2000000):
        data = raw_get(addr, b"/status?format=json&" + b"x" * n)
        head = data.split(b"\r\n\r\n", 1)[0].lower()
        check((b"micro-error:" in head and b'"code":431' in head) or data == b"",
              "GET with a %d byte query answered %r" % (n, data[:300]))
    st, ctype, body = get(addr, "/status", {"Accept": "application/json"})
    check(st == 200 and ctype == "application/json" and json.loads(body)["service"],
          "Accept: application/json answered %d %r" % (st, ctype))
    st, ctype, body = get(addr, "/status?format=html", {"Accept": "application/json"})
    check(st == 200 and ctype.startswith("text/html") and body.startswith("<!DOCTYPE html>"),
          "format=html answered %d %r" % (st, ctype))
    print("ok: odd paths and huge queries answered, the service still serves")


def check_bounded(addr):
    """Calls to 300 more services: the table stops at 256 rows and counts the rest."""
    for i in range(300):
        check(call(addr, "Echo.Relay", {"name": "cm.missing.%d" % i}) is not None,
              "relay to cm.missing.%d succeeded" % i)
    s = status_json(addr)
    # 2 rows before, 302 (service, endpoint) pairs now, one series each.
    check(len(s["calls_made"]) == 256 and s["calls_made_omitted"] == 46,
          "calls_made: %d rows, %r omitted" % (len(s["calls_made"]), s["calls_made_omitted"]))
    st, _, page = get(addr, "/status")
    check(st == 200 and "46 more series not shown" in page and len(page) < 256 * 1024,
          "the HTML page with 302 callees: %d, %d bytes" % (st, len(page)))
    print("ok: 302 callees: 256 rows shown, 46 counted as omitted")


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_off_and_failing(server):
    """Metrics off: endpoints without counts. A registry that refuses: its last error shows."""
    p, addr, _ = start(server, MICRO_METRICS="off", MICRO_REGISTRY="consul",
                       MICRO_REGISTRY_ADDRESS="127.0.0.1:%d" % closed_port())
    try:
        deadline = time.time() + 10
        while True:
            s = status_json(addr)
            if s["registry"]["register_failures"] >= 1:
                break
            check(time.time() < deadline, "no register failure after 10 s: %r" % s["registry"])
            time.sleep(0.05)
        reg = s["registry"]
        check(reg["backend"] == "consul" and reg["registered"] is False and
              "consul" in reg["last_error"] and abs(reg["last_error_unix"] - time.time()) < 60,
              "registry %r" % reg)
        check(s["service"]["metrics"] is False and s["calls_made"] == [] and
              [(e["endpoint"], "calls" in e) for e in s["endpoints"]] ==
              [("Echo.Call", False), ("Echo.Relay", False)], "metrics off: %r" % s)
        st, _, page = get(addr, "/status")
        check(st == 200 and "Metrics are off" in page and reg["last_error"] in page,
              "the HTML page with metrics off and a failing registry: %d\n%s" % (st, page))
        print("ok: MICRO_METRICS=off lists the endpoints without counts; the register error "
              "shows: %s" % reg["last_error"])
    finally:
        p.terminate()
        p.wait(timeout=10)
    check(p.returncode == 0, "status-server (metrics off) exited %d" % p.returncode)


def main():
    p, addr, node = start(sys.argv[1])
    try:
        deadline = time.time() + 10
        while not status_json(addr)["registry"]["registered"]:
            check(time.time() < deadline, "not registered in the memory registry after 10 s")
            time.sleep(0.05)
        evil_code = make_calls(addr)
        check_json(settled_status(addr), addr, node, p.pid, evil_code)
        print("ok: /status?format=json: 17 calls served, 6 made, errors by code, quantiles, "
              "server, registry and selector fields")
        check_browser(addr, evil_code)
        check_inflight(addr)
        check_odd_paths(addr)
        check_bounded(addr)
        check(p.poll() is None, "the service exited")
    finally:
        p.terminate()
        p.wait(timeout=10)
    check(p.returncode == 0, "status-server exited %d" % p.returncode)
    check_off_and_failing(sys.argv[1])
    print("6 passed, 0 failed")


if __name__ == "__main__":
    main()
