#!/usr/bin/env python3
"""Reads cmicro's rendered metrics with prometheus-client's text parser and checks every value.

    metrics_parse.py METRICS_EXPOSE_BINARY

Runs the binary (test/core/metrics_expose.c), which renders a registry to a file and logs the
families, updates and collected values it made as JSON. From that log this script computes on its
own what each series must hold (counters, gauges, cumulative histogram buckets with +Inf, sums
and counts, the series cap and its drop count), parses the text with
prometheus_client.parser.text_string_to_metric_families, and compares family by family: names,
types, help texts, and every sample's labels and value. prometheus-client is pinned in
scripts/setup.sh."""
import importlib.metadata
import json
import math
import os
import subprocess
import sys
import tempfile

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit("prometheus-client is missing: run scripts/setup.sh "
             "(pip install prometheus-client==0.26.0)")

VERSION = importlib.metadata.version("prometheus-client")  # scripts/setup.sh pins 0.26.0


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def expected_registered(log):
    """The families of the registry, in order: (name, type, help, {sample key: value})."""
    fams = {}
    order = []
    for f in log["families"]:
        f = dict(f, series={}, dropped=0, cap=int(f["max_series"]) or 10000,
                 buckets=[float(b) for b in f["buckets"]])
        fams[f["name"]] = f
        order.append(f)
    for kind, name, labels, value in log["ops"]:
        f = fams[name]
        key = tuple(labels)
        value = float(value)
        if key not in f["series"]:
            if len(f["series"]) >= f["cap"]:
                f["dropped"] += 1
                continue
            f["series"][key] = ([0] * (len(f["buckets"]) + 1), 0.0) if f["type"] == "histogram" \
                else 0.0
        if f["type"] == "counter":
            f["series"][key] += value
        elif f["type"] == "gauge":
            f["series"][key] = value if kind == "set" else f["series"][key] + value
        else:
            counts, total = f["series"][key]
            i = next((i for i, b in enumerate(f["buckets"]) if value <= b), len(f["buckets"]))
            counts[i] += 1
            f["series"][key] = (counts, total + value)
    out = []
    for f in order:
        samples = {}
        for key, v in f["series"].items():
            labels = dict(zip(f["labels"], key))
            if f["type"] != "histogram":
                samples[sample_key(f["name"], labels)] = float(v)
                continue
            counts, total = v
            cumulative = 0
            for bound, n in zip(f["buckets"] + [math.inf], counts):
                cumulative += n
                samples[sample_key(f["name"] + "_bucket", dict(labels, le=bound))] = cumulative
            samples[sample_key(f["name"] + "_sum", labels)] = total
            samples[sample_key(f["name"] + "_count", labels)] = cumulative
        out.append((f["name"], f["type"], f["help"], samples))
    drops = {sample_key("cmicro_metrics_dropped_updates_total", {"family": f["name"]}): f["dropped"]
             for f in order if f["dropped"] > 0}
    return out, drops


def sample_key(name, labels):
    return (name, frozenset(labels.items()))


def family_name(name, typ):
    # The parser names a counter family without its _total suffix (OpenMetrics style).
    return name[:-len("_total")] if typ == "counter" and name.endswith("_total") else name


def main():
    with tempfile.TemporaryDirectory() as tmp:
        text_path, log_path = os.path.join(tmp, "metrics.txt"), os.path.join(tmp, "ops.json")
        subprocess.run([sys.argv[1], text_path, log_path], check=True)
        with open(text_path, "rb") as f:
            text = f.read().decode("utf-8")  # strict: the text must be UTF-8
        with open(log_path) as f:
            log = json.load(f)

    expected, drops = expected_registered(log)
    for c in log["collected"]:
        samples = {sample_key(c["name"], dict(zip(c["labels"], labels))): float(v)
                   for labels, v in c["values"]}
        expected.append((c["name"], c["type"], c["help"], samples))
    expected.append(("cmicro_metrics_dropped_updates_total", "counter",
                     "Updates dropped because a family was at its cap of series or out of memory.",
                     drops))
    assert drops, "the capped family dropped nothing: the test lost its point"

    parsed = list(text_string_to_metric_families(text))
    names = [p.name for p in parsed]
    want = [family_name(e[0], e[1]) for e in expected]
    assert names == want, f"families {names} != {want}"
    nsamples = 0
    for p, (name, typ, helptext, samples) in zip(parsed, expected):
        assert p.type == typ, f"{name}: type {p.type} != {typ}"
        assert p.documentation == helptext, f"{name}: help {p.documentation!r} != {helptext!r}"
        got = {}
        for s in p.samples:
            labels = dict(s.labels)
            if "le" in labels:
                labels["le"] = float(labels["le"])  # "+Inf" reads as inf
            key = sample_key(s.name, labels)
            assert key not in got, f"{name}: sample twice: {s}"
            assert s.timestamp is None
            got[key] = s.value
        assert got.keys() == samples.keys(), \
            f"{name}: samples differ:\n  only parsed: {sorted(map(str, got.keys() - samples.keys()))}" \
            f"\n  only expected: {sorted(map(str, samples.keys() - got.keys()))}"
        for k, v in samples.items():
            assert same(got[k], v), f"{name}: {k}: parsed {got[k]!r} != expected {v!r}"
        nsamples += len(samples)
    print(f"ok: {len(parsed)} families, {nsamples} samples match "
          f"({len(log['ops'])} updates; prometheus-client {VERSION})")


if __name__ == "__main__":
    main()
