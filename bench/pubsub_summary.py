#!/usr/bin/env python3
"""Prints the table of bench/broker.sh from its result lines:

    BROKER PEER SIZE MODE ROUND COUNT OK FAILED n=N rate=R p50_us=A p99_us=B

Per broker, size and peer: the flood run's messages/s (median over the rounds, min-max), the
share of the flood's messages delivered, the paced run's p50 and p99 latency (medians), and the
ratios of messages/s to go-micro's and to raw libnats's in the same round (median, min-max)."""
import statistics
import sys
from collections import defaultdict


def parse(path):
    runs = []
    with open(path) as f:
        for line in f:
            w = line.split()
            if len(w) < 12:
                continue
            kv = dict(x.split("=", 1) for x in w[8:12])
            runs.append({"broker": w[0], "peer": w[1], "size": int(w[2]), "mode": w[3],
                         "round": int(w[4]), "count": int(w[5]), "n": int(kv["n"]),
                         "rate": float(kv["rate"]), "p50": float(kv["p50_us"]),
                         "p99": float(kv["p99_us"])})
    return runs


def spread(xs, fmt="%.0f"):
    if not xs:
        return "-"
    return (fmt + " (" + fmt + "-" + fmt + ")") % (statistics.median(xs), min(xs), max(xs))


def main():
    runs = parse(sys.argv[1])
    by = defaultdict(list)
    for r in runs:
        by[(r["broker"], r["size"], r["peer"], r["mode"])].append(r)
    order = ["cmicro", "cmicro-async", "cmicro-asap", "cmicro-broker", "gomicro", "raw"]
    print("| broker | payload | peer | msg/s (flood) | delivered | p50 µs (paced) | p99 µs (paced)"
          " | msg/s vs go-micro | msg/s vs raw libnats |")
    print("|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(b, s, p) for (b, s, p, _) in by},
                  key=lambda k: (k[0] != "nats", k[1], order.index(k[2])))
    for b, s, p in keys:
        flood = by.get((b, s, p, "flood"), [])
        paced = by.get((b, s, p, "paced"), [])
        rates = [r["rate"] for r in flood]
        dl = "%.0f%%" % (100.0 * sum(r["n"] for r in flood) / max(1, sum(r["count"] for r in flood)))

        def ratio(other):
            if p == other:
                return "-"
            ref = {r["round"]: r["rate"] for r in by.get((b, s, other, "flood"), [])}
            xs = [r["rate"] / ref[r["round"]] for r in flood if ref.get(r["round"])]
            return spread(xs, "%.2f") if xs else "-"
        print("| %s | %d B | %s | %s | %s | %s | %s | %s | %s |" % (
            b, s, p, spread(rates), dl, spread([r["p50"] for r in paced]),
            spread([r["p99"] for r in paced]), ratio("gomicro"),
            ratio("raw") if b == "nats" else "-"))


if __name__ == "__main__":
    main()
