#!/usr/bin/env python3
"""A stateful test double of a Consul agent's HTTP API (one dev-mode node, one datacenter),
for cmicro's Consul registry tests. Python standard library only.

    consul_agent.py [--port N] [--token T] [--min-reap S] [--reap-interval S] [--dc NAME]
                    [--node NAME] [--tls-cert PEM --tls-key PEM [--tls-ca PEM]]

It listens on 127.0.0.1 (port 0: any free port) and prints the chosen port on stdout as its
first line. Semantics follow Consul v1.16 as written down in shared/spec/consul-api.md:

  PUT  /v1/agent/service/register[?replace-existing-checks]
       Validates the body as the agent does: JSON (400 "Request decode failed: ..."), Name
       (400 "Missing service name"), Address (400 "Invalid service address" for 0.0.0.0/::),
       Meta (400 "Invalid Service Meta: Couldn't load metadata pair ('k', 'v'): Key contains
       invalid characters", ... > 64 pairs, key > 128, "consul-" prefix, value > 512), checks
       (400 "Invalid check: TTL must be > 0 for TTL checks", "Interval must be > 0 for ...",
       "Interval and TTL cannot both be specified", bad Status). Keys are matched without case
       and with snake_case accepted. Check IDs "service:<id>" (":<n>" with several), name
       "Service '<name>' check", initial status critical (or Status), and a re-registration keeps
       a check's previous status and output as Consul's snapshot does. Durations are Go
       duration strings ("1m30s", "500ms") or integer nanoseconds.
  PUT  /v1/agent/service/deregister/<id>       404 for an unknown ID, as v1.16 does
  GET  /v1/agent/services, /v1/agent/service/<id>, /v1/agent/checks
  PUT  /v1/agent/check/{pass,warn,fail}/<id>?note=  and  PUT /v1/agent/check/update/<id>
       404 'Unknown check ID "<id>". ...' for unknown checks, 500 'CheckID "<id>" does not
       have associated TTL' for checks that are not TTL checks, 400 for a bad status.
  GET  /v1/health/service/<name>  ?passing ?tag= ?dc= ?stale ?consistent ?index= ?wait=
  GET  /v1/health/checks/<name>, /v1/catalog/services (lists "consul"), /v1/catalog/service/<name>,
       /v1/catalog/datacenters, /v1/catalog/nodes, /v1/agent/self, /v1/agent/host,
       /v1/agent/members, /v1/status/leader, /v1/status/peers

Reads carry X-Consul-Index (>= 1), X-Consul-KnownLeader, X-Consul-LastContact,
X-Consul-Effective-Consistency and X-Consul-Default-ACL-Policy. The index is one counter bumped on
every change (a service added, changed or removed; a check's status or output changed); the
index of a health/catalog query on a service is the counter's value at that service's last
change (the services-table index when the service does not exist), so blocking queries
(index>0) wake when their service changes, or after wait (default 5m, capped at 10m) plus up to
wait/16 of jitter, as the agent does. Every entry of /v1/health/service carries the node check
"serfHealth" (passing). JSON shapes of Node, Service and Checks are those of the real agent.

TTL checks turn critical ("TTL expired") when not updated in time; TCP checks are dialled every
Interval; a service whose check has been critical longer than DeregisterCriticalServiceAfter is
removed by a reaper that runs every --reap-interval seconds (Consul: 30), with the minimum raised
to --min-reap seconds (Consul: 60; tests lower both).

ACL: with --token T every /v1/ request except /v1/status/* must carry T (X-Consul-Token,
?token= or Authorization: Bearer); without a token it gets 403 "Permission denied: anonymous
token lacks permission ...", with another one 403 "ACL not found", both in plain text as Consul.
Errors are plain text: 404 "Invalid URL path: not a recognized HTTP API endpoint", 405 "method
X not allowed" with Allow, 400 for bad JSON and bad parameters, 500 "No path to datacenter".

TLS: with --tls-cert/--tls-key it serves HTTPS only (as an agent with ports.http = -1 and
ports.https set); --tls-ca also requires a client certificate signed by that CA
(verify_incoming).

Test control (never logged, never under ACL):
  GET /_test/last?path=P      the last request to path P: {"method","path","query","headers"
                              (lower-case names),"body"}; 404 when none
  GET /_test/requests[?prefix=P]  every logged request (method, path, query, headers, time,
                              and the status it was answered with)
  PUT /_test/clear            forgets the request log
  GET /_test/state            index, services and checks as stored
  PUT /_test/restart          as a dev agent restarting: every service and check is gone and
                              the index starts again low (it goes BACKWARDS; ?keep_index=1 bumps
                              it instead); blocking queries in flight return at once
  PUT /_test/delay?ms=N[&prefix=P]  delays every later matching request by N ms (0: off)
  PUT /_test/fail?status=S&count=N[&prefix=P][&body=B]  the next N matching requests answer S
  PUT /_test/shutdown         exits

Limits (what a real agent does and this one does not): a single node and datacenter, no
cluster, raft, gossip or anti-entropy (changes are visible at once, there is no ?stale vs
?consistent difference, X-Consul-LastContact is 0); no KV, sessions, ACL policies or tokens
beyond the one --token (a real agent filters reads it denies rather than refusing them); no
?filter, ?near, ?node-meta, ?cached, hash-based blocking, namespaces or partitions (?filter is
refused with 400); HTTP, gRPC, script, alias and docker checks are accepted but never run
(they keep their initial status); check output is not truncated; connect/proxy fields are
stored but ignored; a restart keeps the listening socket (no connection reset).
"""

import argparse
import json
import random
import re
import socket
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

MAX_WAIT = 600.0
DEFAULT_WAIT = 300.0

# ---- Go-compatible helpers ----

_DUR_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_DUR_UNIT = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0,
             "m": 60.0, "h": 3600.0}


def parse_go_duration(s):
    """time.ParseDuration, in seconds. Raises ValueError with Go's message."""
    orig = s
    if s in ("0", "+0", "-0"):
        return 0.0
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if not s:
        raise ValueError('time: invalid duration "%s"' % orig)
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DUR_PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            if re.fullmatch(r"[0-9.]+", s[pos:]):
                raise ValueError('time: missing unit in duration "%s"' % orig)
            raise ValueError('time: invalid duration "%s"' % orig)
        total += float(m.group(1)) * _DUR_UNIT[m.group(2)]
        pos = m.end()
    return -total if neg else total


def duration_value(v):
    """A duration field as Consul decodes it: a Go duration string or integer nanoseconds."""
    if v is None or v == "":
        return 0.0
    if isinstance(v, bool):
        raise ValueError("json: cannot unmarshal bool into Go value of type time.Duration")
    if isinstance(v, (int, float)):
        return float(v) / 1e9
    if isinstance(v, str):
        return parse_go_duration(v)
    raise ValueError("json: cannot unmarshal %s into Go value of type time.Duration"
                     % type(v).__name__)


def go_duration(sec):
    """time.Duration.String() of sec seconds (millisecond precision is enough here)."""
    ms = int(round(sec * 1000))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return "%dms" % ms
    h, rem = divmod(ms, 3600000)
    m, rem = divmod(rem, 60000)
    s, frac = divmod(rem, 1000)
    sec_s = "%d" % s if frac == 0 else ("%d.%03d" % (s, frac)).rstrip("0")
    if h:
        return "%dh%dm%ss" % (h, m, sec_s)
    if m:
        return "%dm%ss" % (m, sec_s)
    return "%ss" % sec_s


def parse_bool(s):
    """strconv.ParseBool; None when unparsable."""
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def norm(key):
    """Field names as Go's decoder matches them: any case, snake_case accepted."""
    return key.replace("_", "").lower()


def pick(obj, name, default=None):
    want = norm(name)
    for k, v in obj.items():
        if norm(k) == want:
            return v
    return default


class HTTPError(Exception):
    def __init__(self, status, reason, headers=None):
        Exception.__init__(self, reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def decode_failed(msg):
    return HTTPError(400, "Request decode failed: %s" % msg)


META_KEY = re.compile(r"^[a-zA-Z0-9_-]+$")


def validate_meta(meta):
    if len(meta) > 64:
        raise HTTPError(400, "Invalid Service Meta: Node metadata cannot contain more than 64 "
                             "key/value pairs")
    for k, v in meta.items():
        err = None
        if k == "":
            err = "Key cannot be blank"
        elif not META_KEY.match(k):
            err = "Key contains invalid characters"
        elif len(k) > 128:
            err = "Key is too long (limit: 128 characters)"
        elif k.startswith("consul-"):
            err = "Key prefix 'consul-' is reserved for internal use"
        elif len(v) > 512:
            err = "Value is too long (limit: 512 characters)"
        if err:
            raise HTTPError(400, "Invalid Service Meta: Couldn't load metadata pair ('%s', '%s'): "
                                 "%s" % (k, v, err))


def want_str(v, what):
    if v is None:
        return ""
    if not isinstance(v, str):
        raise decode_failed("json: cannot unmarshal %s into Go struct field %s of type string"
                            % (json_type(v), what))
    return v


def json_type(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


# ---- state ----

class Agent:
    def __init__(self, args):
        self.args = args
        self.cond = threading.Condition()
        self.node = args.node
        self.node_id = str(uuid.uuid4())
        self.dc = args.dc
        self.reqlog = []
        self.delay_ms = 0
        self.delay_prefix = ""
        self.fail_count = 0
        self.fail_status = 500
        self.fail_prefix = ""
        self.fail_body = ""
        self.gen = 0
        self.reset(index=1)

    def reset(self, index):
        self.index = index
        self.services = {}   # id -> service dict
        self.checks = {}     # check id -> check dict
        self.svc_index = {}  # service name -> index of its last change
        self.table_index = index
        self.node_index = index

    def bump(self, names, table=False):
        """One change touching the named services; call with the lock held."""
        self.index += 1
        for n in names:
            self.svc_index[n] = self.index
        if table:
            self.table_index = self.index
        self.cond.notify_all()

    def query_index(self, name):
        if name is not None and name in self.svc_index and self.service_exists(name):
            return max(self.svc_index[name], 1)
        return max(self.table_index, 1)

    def service_exists(self, name):
        return any(s["Service"] == name for s in self.services.values())

    # -- checks --

    def set_status(self, chk, status, output, now):
        changed = chk["Status"] != status or chk["Output"] != output
        if chk["Status"] != "critical" and status == "critical":
            chk["_critical_since"] = now
        elif status != "critical":
            chk["_critical_since"] = None
        chk["Status"] = status
        chk["Output"] = output
        if changed:
            self.bump([chk["ServiceName"]] if chk["ServiceName"] else list(self.svc_index))
            chk["ModifyIndex"] = self.index
        return changed

    def tick(self, now):
        """TTL expiry and TCP probes; call with the lock held."""
        for chk in list(self.checks.values()):
            if chk["_ttl"] > 0 and chk["Status"] != "critical" and now > chk["_deadline"]:
                self.set_status(chk, "critical", "TTL expired", now)
            if chk["_tcp"] and now >= chk["_next_run"] and not chk["_running"]:
                chk["_running"] = True
                chk["_next_run"] = now + max(chk["_interval"], 1.0)
                threading.Thread(target=self.probe_tcp, args=(chk["CheckID"], chk["_tcp"],
                                 chk["_timeout"]), daemon=True).start()

    def probe_tcp(self, cid, target, timeout):
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                status, out = "passing", "TCP connect %s: Success" % target
        except (OSError, ValueError) as e:
            status, out = "critical", "dial tcp %s: %s" % (target, e)
        with self.cond:
            chk = self.checks.get(cid)
            if chk is not None:
                chk["_running"] = False
                self.set_status(chk, status, out, time.monotonic())

    def reap(self, now):
        min_reap = self.args.min_reap
        doomed = set()
        for chk in self.checks.values():
            after = chk["_dereg_after"]
            since = chk["_critical_since"]
            if after > 0 and since is not None and chk["ServiceID"]:
                if now - since >= max(after, min_reap):
                    doomed.add(chk["ServiceID"])
        for sid in doomed:
            if sid in self.services:
                self.remove_service(sid)

    def remove_service(self, sid):
        svc = self.services.pop(sid)
        for cid in [c for c, v in self.checks.items() if v["ServiceID"] == sid]:
            del self.checks[cid]
        self.bump([svc["Service"]], table=True)

    # -- JSON shapes --

    def node_json(self):
        return {"ID": self.node_id, "Node": self.node, "Address": "127.0.0.1",
                "Datacenter": self.dc,
                "TaggedAddresses": {"lan": "127.0.0.1", "lan_ipv4": "127.0.0.1",
                                    "wan": "127.0.0.1", "wan_ipv4": "127.0.0.1"},
                "Meta": {"consul-network-segment": ""},
                "CreateIndex": self.node_index, "ModifyIndex": self.node_index}

    def consul_service(self):
        return {"ID": "consul", "Service": "consul", "Tags": [], "Address": "", "Meta": {
                "raft_version": "3", "serf_protocol_current": "2", "version": "1.16.4"},
                "Port": 8300, "Weights": {"Passing": 1, "Warning": 1},
                "EnableTagOverride": False,
                "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}}, "Connect": {},
                "CreateIndex": self.node_index, "ModifyIndex": self.node_index}

    def serf_check(self):
        return {"Node": self.node, "CheckID": "serfHealth", "Name": "Serf Health Status",
                "Status": "passing", "Notes": "", "Output": "Agent alive and reachable",
                "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": "",
                "Interval": "", "Timeout": "", "ExposedPort": 0, "Definition": {},
                "CreateIndex": self.node_index, "ModifyIndex": self.node_index}

    @staticmethod
    def public(d):
        return {k: v for k, v in d.items() if not k.startswith("_")}

    def all_services(self):
        out = [self.consul_service()]
        out += [self.public(s) for s in sorted(self.services.values(), key=lambda s: s["ID"])]
        return out

    def service_checks(self, sid):
        return [self.public(c) for c in sorted(self.checks.values(), key=lambda c: c["CheckID"])
                if c["ServiceID"] == sid]


# ---- registration ----

def parse_check(agent, obj, svc, i, n, old):
    if not isinstance(obj, dict):
        raise decode_failed("json: cannot unmarshal %s into Go struct field "
                            "ServiceDefinition.Check of type structs.CheckType" % json_type(obj))
    try:
        ttl = duration_value(pick(obj, "TTL"))
        interval = duration_value(pick(obj, "Interval"))
        timeout = duration_value(pick(obj, "Timeout"))
        dereg = duration_value(pick(obj, "DeregisterCriticalServiceAfter"))
    except ValueError as e:
        raise decode_failed(str(e))
    tcp = want_str(pick(obj, "TCP"), "CheckType.TCP")
    http = want_str(pick(obj, "HTTP"), "CheckType.HTTP")
    grpc = want_str(pick(obj, "GRPC"), "CheckType.GRPC")
    h2ping = want_str(pick(obj, "H2PING"), "CheckType.H2PING")
    udp = want_str(pick(obj, "UDP"), "CheckType.UDP")
    args = pick(obj, "Args") or pick(obj, "ScriptArgs") or []
    alias = want_str(pick(obj, "AliasService"), "CheckType.AliasService") or \
        want_str(pick(obj, "AliasNode"), "CheckType.AliasNode")
    status = want_str(pick(obj, "Status"), "CheckType.Status")
    probe = bool(tcp or http or grpc or h2ping or udp or args)
    if status and status not in ("passing", "warning", "critical"):
        raise HTTPError(400, "Invalid check: Status for checks must 'passing', 'warning', "
                             "'critical'")
    if interval > 0 and ttl > 0:
        raise HTTPError(400, "Invalid check: Interval and TTL cannot both be specified")
    if probe and interval <= 0:
        raise HTTPError(400, "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, "
                             "TCP, UDP or OSService checks")
    if not probe and not alias and ttl <= 0:
        raise HTTPError(400, "Invalid check: TTL must be > 0 for TTL checks")
    if args:
        raise HTTPError(500, "Scripts are disabled on this agent; to enable, configure "
                             "'enable_script_checks' or 'enable_local_script_checks' to true")
    cid = want_str(pick(obj, "CheckID") or pick(obj, "ID"), "CheckType.CheckID")
    if not cid:
        cid = "service:%s" % svc["ID"] if n == 1 else "service:%s:%d" % (svc["ID"], i + 1)
    name = want_str(pick(obj, "Name"), "CheckType.Name") or \
        "Service '%s' check" % svc["Service"]
    kind = "ttl" if ttl > 0 else "tcp" if tcp else "http" if http else "grpc" if grpc else \
        "h2ping" if h2ping else "udp" if udp else "alias"
    if interval > 0 and interval < 1:
        interval = 1.0
    now = time.monotonic()
    chk = {"Node": agent.node, "CheckID": cid, "Name": name, "Status": status or "critical",
           "Notes": want_str(pick(obj, "Notes"), "CheckType.Notes"), "Output": "",
           "ServiceID": svc["ID"], "ServiceName": svc["Service"],
           "ServiceTags": list(svc["Tags"]), "Type": kind,
           "Interval": go_duration(interval) if interval else "",
           "Timeout": go_duration(timeout) if timeout else ("10s" if tcp or http else ""),
           "ExposedPort": 0, "Definition": {}, "CreateIndex": 0, "ModifyIndex": 0,
           "_ttl": ttl, "_deadline": now + ttl, "_tcp": tcp, "_interval": interval,
           "_timeout": min(timeout or 10.0, 10.0), "_next_run": now, "_running": False,
           "_dereg_after": dereg, "_critical_since": None}
    prev = old.get(cid)
    if prev is not None:
        # Consul restores a re-registered check's state from its snapshot.
        chk["Status"] = prev["Status"]
        chk["Output"] = prev["Output"]
        chk["_critical_since"] = prev["_critical_since"]
        chk["CreateIndex"] = prev["CreateIndex"]
    if chk["Status"] == "critical" and chk["_critical_since"] is None:
        chk["_critical_since"] = now
    return chk


def register_service(agent, body, replace):
    try:
        obj = json.loads(body.decode("utf-8")) if body else None
    except (ValueError, UnicodeDecodeError) as e:
        raise decode_failed(str(e))
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise decode_failed("json: cannot unmarshal %s into Go value of type "
                            "structs.ServiceDefinition" % json_type(obj))
    name = want_str(pick(obj, "Name"), "ServiceDefinition.Name")
    if not name:
        raise HTTPError(400, "Missing service name")
    sid = want_str(pick(obj, "ID"), "ServiceDefinition.ID") or name
    address = want_str(pick(obj, "Address"), "ServiceDefinition.Address")
    if address.strip("[]") in ("0.0.0.0", "::", "0:0:0:0:0:0:0:0"):
        raise HTTPError(400, "Invalid service address")
    port = pick(obj, "Port", 0)
    if port is None:
        port = 0
    if isinstance(port, bool) or not isinstance(port, int):
        raise decode_failed("json: cannot unmarshal %s into Go struct field "
                            "ServiceDefinition.Port of type int" % json_type(port))
    tags = pick(obj, "Tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise decode_failed("json: cannot unmarshal into Go struct field ServiceDefinition.Tags "
                            "of type []string")
    meta = pick(obj, "Meta") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise decode_failed("json: cannot unmarshal into Go struct field ServiceDefinition.Meta "
                            "of type map[string]string")
    validate_meta(meta)
    weights = pick(obj, "Weights") or {"Passing": 1, "Warning": 1}
    if not isinstance(weights, dict):
        raise decode_failed("json: cannot unmarshal Weights")
    w_pass = pick(weights, "Passing", 1)
    w_warn = pick(weights, "Warning", 1)
    if not isinstance(w_pass, int) or w_pass < 1:
        raise HTTPError(400, "Invalid Weights: Passing must be greater than 0")
    svc = {"ID": sid, "Service": name, "Tags": list(tags), "Address": address,
           "Meta": dict(meta), "Port": port, "Weights": {"Passing": w_pass, "Warning": w_warn},
           "EnableTagOverride": bool(pick(obj, "EnableTagOverride", False)),
           "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}}, "Connect": {},
           "CreateIndex": 0, "ModifyIndex": 0}
    if address:
        kind = "ipv6" if ":" in address else "ipv4"
        svc["TaggedAddresses"] = {"lan_" + kind: {"Address": address, "Port": port},
                                  "wan_" + kind: {"Address": address, "Port": port}}
    raw = []
    one = pick(obj, "Check")
    if isinstance(one, dict) and one:
        raw.append(one)
    elif one not in (None, {}):
        raise decode_failed("json: cannot unmarshal %s into Go struct field "
                            "ServiceDefinition.Check of type structs.CheckType" % json_type(one))
    many = pick(obj, "Checks") or []
    if not isinstance(many, list):
        raise decode_failed("json: cannot unmarshal %s into Go struct field "
                            "ServiceDefinition.Checks of type structs.CheckTypes"
                            % json_type(many))
    raw += [c for c in many if c]
    with agent.cond:
        old = {c["CheckID"]: c for c in agent.checks.values()}
        checks = [parse_check(agent, c, svc, i, len(raw), old) for i, c in enumerate(raw)]
        prev = agent.services.get(sid)
        same = prev is not None and Agent.public(prev) == dict(
            svc, CreateIndex=prev["CreateIndex"], ModifyIndex=prev["ModifyIndex"])
        new_ids = {c["CheckID"] for c in checks}
        stale = [cid for cid, c in agent.checks.items()
                 if c["ServiceID"] == sid and cid not in new_ids and
                 (replace or prev is None or prev["Service"] != name)]
        checks_same = all(c["CheckID"] in old and
                          Agent.public(old[c["CheckID"]]) == dict(
                              Agent.public(c), CreateIndex=old[c["CheckID"]]["CreateIndex"],
                              ModifyIndex=old[c["CheckID"]]["ModifyIndex"])
                          for c in checks)
        if same and checks_same and not stale:
            # Nothing changes: keep the TTL timers as the re-registration resets them.
            for c in checks:
                old[c["CheckID"]]["_deadline"] = c["_deadline"]
            return
        for cid in stale:
            del agent.checks[cid]
        names = {name}
        if prev is not None:
            names.add(prev["Service"])
        agent.bump(names, table=True)
        svc["CreateIndex"] = prev["CreateIndex"] if prev is not None else agent.index
        svc["ModifyIndex"] = agent.index
        agent.services[sid] = svc
        for c in checks:
            if not c["CreateIndex"]:
                c["CreateIndex"] = agent.index
            c["ModifyIndex"] = agent.index
            agent.checks[c["CheckID"]] = c


# ---- HTTP ----

ROUTES = []  # (prefix or exact path, exact?, methods, handler name, acl perm)


def route(path, methods, perm, exact=True):
    def deco(fn):
        ROUTES.append((path, exact, methods, fn, perm))
        return fn
    return deco


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "consul-test-agent"
    agent = None  # set in main

    def log_message(self, fmt, *args):  # quiet
        pass

    # -- plumbing --

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def reply(self, status, body=b"", ctype=None, headers=None):
        entry = getattr(self, "log_entry", None)
        if entry is not None:
            entry["status"] = status
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        if ctype is None and body:
            ctype = "text/plain; charset=utf-8"
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Vary", "Accept-Encoding")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply_json(self, obj, headers=None):
        self.reply(200, json.dumps(obj, indent=4 if self.pretty else None), "application/json",
                   headers)

    def handle_any(self):
        agent = self.agent
        self.log_entry = None
        parts = urlsplit(self.path)
        self.raw_path = parts.path
        self.path_only = unquote(parts.path)
        self.query_raw = parts.query
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.pretty = "pretty" in self.query
        body = self.read_body()
        if self.path_only.startswith("/_test/"):
            try:
                self.test_control(body)
            except HTTPError as e:
                self.reply(e.status, e.reason)
            return
        entry = {"method": self.command, "path": self.path_only, "query": self.query_raw,
                 "headers": {k.lower(): v for k, v in self.headers.items()},
                 "body": body.decode("utf-8", "replace"), "time": time.time(), "status": None}
        self.log_entry = entry
        with agent.cond:
            agent.reqlog.append(entry)
            del agent.reqlog[:-5000]
            delay = agent.delay_ms if self.path_only.startswith(agent.delay_prefix) else 0
            fail = None
            if agent.fail_count > 0 and self.path_only.startswith(agent.fail_prefix):
                agent.fail_count -= 1
                fail = (agent.fail_status, agent.fail_body)
        if delay > 0:
            time.sleep(delay / 1000.0)
        if fail is not None:
            self.reply(fail[0], fail[1])
            return
        try:
            self.dispatch(body)
        except HTTPError as e:
            self.reply(e.status, e.reason, headers=e.headers)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = handle_any

    def dispatch(self, body):
        p = self.path_only
        for path, exact, methods, fn, perm in ROUTES:
            if (exact and p == path) or (not exact and p.startswith(path)):
                if self.command not in methods:
                    raise HTTPError(405, "method %s not allowed" % self.command,
                                    {"Allow": ", ".join(methods)})
                arg = None if exact else p[len(path):]
                self.check_acl(perm, arg)
                fn(self, arg, body)
                return
        raise HTTPError(404, "Invalid URL path: not a recognized HTTP API endpoint")

    def token(self):
        if "token" in self.query:
            return self.query["token"][0]
        t = self.headers.get("X-Consul-Token")
        if t:
            return t
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return None

    def check_acl(self, perm, arg):
        want = self.agent.args.token
        if not want or perm is None:
            return
        got = self.token()
        if got == want:
            return
        if got:
            raise HTTPError(403, "ACL not found")
        raise HTTPError(403, "Permission denied: anonymous token lacks permission '%s' on \"%s\". "
                             "The anonymous token is used implicitly when a request does not "
                             "specify a token." % (perm, arg or ""))

    def read_params(self):
        """dc and the consistency mode of a read."""
        q = self.query
        dc = q.get("dc", [""])[0]
        if dc and dc != self.agent.dc:
            raise HTTPError(500, "No path to datacenter")
        if "stale" in q and "consistent" in q:
            raise HTTPError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
        if "filter" in q:
            raise HTTPError(400, "?filter is not supported by the test agent")
        return "stale" if "stale" in q else "consistent" if "consistent" in q else "leader"

    def blocking(self, index_of):
        """Waits as a blocking query when ?index= is given; returns the index to report."""
        q = self.query
        agent = self.agent
        want = 0
        if "index" in q:
            try:
                want = int(q["index"][0])
                if want < 0:
                    raise ValueError
            except ValueError:
                raise HTTPError(400, "Invalid index")
        wait = DEFAULT_WAIT
        if "wait" in q:
            try:
                wait = parse_go_duration(q["wait"][0])
            except ValueError:
                raise HTTPError(400, "Invalid wait time")
            if wait <= 0:
                wait = DEFAULT_WAIT
        wait = min(wait, MAX_WAIT)
        with agent.cond:
            idx = index_of()
            if want > 0 and idx <= want:
                deadline = time.monotonic() + wait + random.uniform(0, wait / 16)
                gen = agent.gen
                while idx <= want and agent.gen == gen:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    agent.cond.wait(left)
                    idx = index_of()
            return max(idx, 1)

    def read_headers(self, idx, mode):
        policy = "deny" if self.agent.args.token else "allow"
        return {"X-Consul-Index": idx, "X-Consul-KnownLeader": "true",
                "X-Consul-LastContact": "0", "X-Consul-Effective-Consistency": mode,
                "X-Consul-Default-ACL-Policy": policy,
                "X-Consul-Query-Backend": "blocking-query"}

    # -- test control --

    def test_control(self, body):
        agent = self.agent
        q = self.query
        p = self.path_only
        arg = lambda k, d="": q.get(k, [d])[0]  # noqa: E731
        with agent.cond:
            if p == "/_test/last" and self.command == "GET":
                want = arg("path")
                for e in reversed(agent.reqlog):
                    if e["path"] == want:
                        return self.reply_json({k: v for k, v in e.items() if k != "time"})
                raise HTTPError(404, "no request to %s" % want)
            if p == "/_test/requests" and self.command == "GET":
                pre = arg("prefix")
                return self.reply_json([{k: v for k, v in e.items() if k != "body"}
                                        for e in agent.reqlog if e["path"].startswith(pre)])
            if p == "/_test/clear" and self.command == "PUT":
                agent.reqlog = []
                return self.reply(200)
            if p == "/_test/state" and self.command == "GET":
                return self.reply_json({"index": agent.index, "services": agent.all_services(),
                                        "checks": [Agent.public(c)
                                                   for c in agent.checks.values()]})
            if p == "/_test/restart" and self.command == "PUT":
                keep = arg("keep_index") not in ("", "0", "false")
                agent.gen += 1
                agent.reset(agent.index + 1 if keep else 5)
                agent.cond.notify_all()
                return self.reply(200)
            if p == "/_test/delay" and self.command == "PUT":
                agent.delay_ms = int(arg("ms", "0"))
                agent.delay_prefix = arg("prefix")
                return self.reply(200)
            if p == "/_test/fail" and self.command == "PUT":
                agent.fail_status = int(arg("status", "500"))
                agent.fail_count = int(arg("count", "1"))
                agent.fail_prefix = arg("prefix")
                agent.fail_body = arg("body", "injected failure")
                return self.reply(200)
            if p == "/_test/shutdown" and self.command == "PUT":
                self.reply(200)
                self.wfile.flush()
                threading.Thread(target=self.server.shutdown, daemon=True).start()
                return None
        raise HTTPError(404, "unknown test endpoint %s %s" % (self.command, p))


# ---- routes ----

@route("/v1/agent/service/register", ["PUT"], "service:write")
def r_register(h, _, body):
    replace = "replace-existing-checks" in h.query and \
        h.query["replace-existing-checks"][0] in ("", "1", "true", "True", "t")
    register_service(h.agent, body, replace)
    h.reply(200)


@route("/v1/agent/service/deregister/", ["PUT"], "service:write", exact=False)
def r_deregister(h, sid, _):
    agent = h.agent
    with agent.cond:
        if sid not in agent.services:
            raise HTTPError(404, 'Unknown service ID "%s". Ensure that the service ID is passed, '
                                 'not the service name.' % sid)
        agent.remove_service(sid)
    h.reply(200)


def check_update(h, cid, status, output):
    agent = h.agent
    with agent.cond:
        chk = agent.checks.get(cid)
        if chk is None:
            raise HTTPError(404, 'Unknown check ID "%s". Ensure that the check ID is passed, not '
                                 'the check name.' % cid)
        if chk["_ttl"] <= 0:
            raise HTTPError(500, 'CheckID "%s" does not have associated TTL' % cid)
        chk["_deadline"] = time.monotonic() + chk["_ttl"]
        agent.set_status(chk, status, output, time.monotonic())
    h.reply(200)


def ttl_route(verb, status):
    @route("/v1/agent/check/%s/" % verb, ["PUT"], "service:write", exact=False)
    def r_ttl(h, cid, _):
        check_update(h, cid, status, h.query.get("note", [""])[0])
    return r_ttl


ttl_route("pass", "passing")
ttl_route("warn", "warning")
ttl_route("fail", "critical")


@route("/v1/agent/check/update/", ["PUT"], "service:write", exact=False)
def r_update(h, cid, body):
    try:
        obj = json.loads(body.decode("utf-8")) if body else {}
    except (ValueError, UnicodeDecodeError) as e:
        raise decode_failed(str(e))
    if not isinstance(obj, dict):
        raise decode_failed("json: cannot unmarshal %s into Go value of type "
                            "structs.checkUpdate" % json_type(obj))
    status = pick(obj, "Status", "")
    if status not in ("passing", "warning", "critical"):
        raise HTTPError(400, "Invalid check status: '%s'" % status)
    check_update(h, cid, status, want_str(pick(obj, "Output"), "checkUpdate.Output"))


@route("/v1/agent/services", ["GET"], "service:read")
def r_agent_services(h, _, __):
    with h.agent.cond:
        out = {s["ID"]: agent_service(h.agent, s) for s in h.agent.services.values()}
    h.reply_json(out)


def agent_service(agent, s):
    out = {k: v for k, v in Agent.public(s).items() if k not in ("CreateIndex", "ModifyIndex")}
    out["Datacenter"] = agent.dc
    return out


@route("/v1/agent/service/", ["GET"], "service:read", exact=False)
def r_agent_service(h, sid, _):
    with h.agent.cond:
        s = h.agent.services.get(sid)
        if s is None:
            raise HTTPError(404, "unknown service ID: %s" % sid)
        out = agent_service(h.agent, s)
    h.reply_json(out)


@route("/v1/agent/checks", ["GET"], "node:read")
def r_agent_checks(h, _, __):
    with h.agent.cond:
        out = {c["CheckID"]: Agent.public(c) for c in h.agent.checks.values()}
    h.reply_json(out)


@route("/v1/health/service/", ["GET"], "service:read", exact=False)
def r_health_service(h, name, _):
    agent = h.agent
    mode = h.read_params()
    passing = None
    if "passing" in h.query:
        v = h.query["passing"][0]
        passing = True if v == "" else parse_bool(v)
        if passing is None:
            raise HTTPError(400, "Invalid value for ?passing")
    tags = h.query.get("tag", [])
    idx = h.blocking(lambda: agent.query_index(name))
    with agent.cond:
        out = []
        for s in agent.all_services():
            if s["Service"] != name or not all(t in s["Tags"] for t in tags):
                continue
            checks = [] if s["ID"] == "consul" else agent.service_checks(s["ID"])
            checks = [agent.serf_check()] + checks
            if passing and any(c["Status"] != "passing" for c in checks):
                continue
            out.append({"Node": agent.node_json(), "Service": s, "Checks": checks})
    h.reply_json(out, h.read_headers(idx, mode))


@route("/v1/health/checks/", ["GET"], "service:read", exact=False)
def r_health_checks(h, name, _):
    agent = h.agent
    mode = h.read_params()
    idx = h.blocking(lambda: agent.query_index(name))
    with agent.cond:
        out = [Agent.public(c) for c in agent.checks.values() if c["ServiceName"] == name]
    h.reply_json(out, h.read_headers(idx, mode))


@route("/v1/catalog/services", ["GET"], "service:read")
def r_catalog_services(h, _, __):
    agent = h.agent
    mode = h.read_params()
    idx = h.blocking(lambda: max(agent.table_index, 1))
    with agent.cond:
        out = {}
        for s in agent.all_services():
            tags = out.setdefault(s["Service"], [])
            for t in s["Tags"]:
                if t not in tags:
                    tags.append(t)
        for v in out.values():
            v.sort()
    h.reply_json(out, h.read_headers(idx, mode))


@route("/v1/catalog/service/", ["GET"], "service:read", exact=False)
def r_catalog_service(h, name, _):
    agent = h.agent
    mode = h.read_params()
    idx = h.blocking(lambda: agent.query_index(name))
    with agent.cond:
        n = agent.node_json()
        out = []
        for s in agent.all_services():
            if s["Service"] != name:
                continue
            out.append({"ID": n["ID"], "Node": n["Node"], "Address": n["Address"],
                        "Datacenter": n["Datacenter"], "TaggedAddresses": n["TaggedAddresses"],
                        "NodeMeta": n["Meta"], "ServiceKind": "", "ServiceID": s["ID"],
                        "ServiceName": s["Service"], "ServiceTags": s["Tags"],
                        "ServiceAddress": s["Address"],
                        "ServiceTaggedAddresses": s.get("TaggedAddresses", {}),
                        "ServiceWeights": s["Weights"], "ServiceMeta": s["Meta"],
                        "ServicePort": s["Port"], "ServiceSocketPath": "",
                        "ServiceEnableTagOverride": s["EnableTagOverride"],
                        "ServiceProxy": s["Proxy"], "ServiceConnect": s["Connect"],
                        "CreateIndex": s["CreateIndex"], "ModifyIndex": s["ModifyIndex"]})
    h.reply_json(out, h.read_headers(idx, mode))


@route("/v1/catalog/datacenters", ["GET"], None)
def r_datacenters(h, _, __):
    h.reply_json([h.agent.dc])


@route("/v1/catalog/nodes", ["GET"], "node:read")
def r_nodes(h, _, __):
    mode = h.read_params()
    with h.agent.cond:
        out = [h.agent.node_json()]
        idx = max(h.agent.node_index, 1)
    h.reply_json(out, h.read_headers(idx, mode))


def member(agent):
    return {"Name": agent.node, "Addr": "127.0.0.1", "Port": 8301,
            "Tags": {"dc": agent.dc, "role": "consul", "build": "1.16.4", "port": "8300",
                     "id": agent.node_id, "vsn": "2", "bootstrap": "1"},
            "Status": 1, "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
            "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4}


@route("/v1/agent/self", ["GET"], "agent:read")
def r_self(h, _, __):
    agent = h.agent
    h.reply_json({"Config": {"Datacenter": agent.dc, "PrimaryDatacenter": agent.dc,
                             "NodeName": agent.node, "NodeID": agent.node_id,
                             "Revision": "cmicro-test", "Server": True,
                             "Version": "1.16.4", "BuildDate": "2023-01-01T00:00:00Z"},
                  "DebugConfig": {}, "Coord": None, "Member": member(agent), "Stats": {},
                  "Meta": {"consul-network-segment": ""}})


@route("/v1/agent/host", ["GET"], "operator:read")
def r_host(h, _, __):
    h.reply_json({"Memory": {}, "CPU": [], "Host": {"hostname": socket.gethostname(),
                                                    "os": sys.platform},
                  "Disk": {}, "CollectionTime": time.time_ns(), "Errors": None})


@route("/v1/agent/members", ["GET"], "node:read")
def r_members(h, _, __):
    h.reply_json([member(h.agent)])


@route("/v1/status/leader", ["GET"], None)
def r_leader(h, _, __):
    h.reply_json("127.0.0.1:8300")


@route("/v1/status/peers", ["GET"], None)
def r_peers(h, _, __):
    h.reply_json(["127.0.0.1:8300"])


# ---- main ----

def ticker(agent):
    last_reap = time.monotonic()
    while True:
        time.sleep(0.05)
        now = time.monotonic()
        with agent.cond:
            agent.tick(now)
            if now - last_reap >= agent.args.reap_interval:
                last_reap = now
                agent.reap(now)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default="")
    ap.add_argument("--min-reap", type=float, default=60.0, dest="min_reap",
                    help="floor of DeregisterCriticalServiceAfter, seconds (Consul: 60)")
    ap.add_argument("--reap-interval", type=float, default=30.0, dest="reap_interval",
                    help="how often the reaper runs, seconds (Consul: 30)")
    ap.add_argument("--dc", default="dc1")
    ap.add_argument("--node", default="cmicro-test")
    ap.add_argument("--tls-cert", default="", dest="tls_cert")
    ap.add_argument("--tls-key", default="", dest="tls_key")
    ap.add_argument("--tls-ca", default="", dest="tls_ca",
                    help="require client certificates signed by this CA")
    args = ap.parse_args()
    agent = Agent(args)
    Handler.agent = agent
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.tls_ca)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(srv.server_address[1], flush=True)
    threading.Thread(target=ticker, args=(agent,), daemon=True).start()
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    srv.server_close()


if __name__ == "__main__":
    main()
