#!/usr/bin/python3
"""Turns scripts/bench-archive's results into the BENCHMARKS.md table."""
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by = {}
for r in rows:
    by[(r.get("tool", "letterlock"), r["set"])] = r

print("| set | measure | Letterlock | notmuch | ratio (Letterlock / notmuch) |")
print("|---|---|---|---|---|")
for s in ("plain", "encrypted"):
    ours, theirs = by.get(("letterlock", s)), by.get(("notmuch", s))
    if not ours or not theirs:
        continue
    a, b = statistics.median(ours["rates"]), statistics.median(theirs["rates"])
    print(f"| {s} ({ours['messages']} msgs) | indexed msgs/s (median of {len(ours['rates'])}) | {a:.0f} | {b:.0f} | {a / b:.2f} |")
    for kind in ("term", "phrase", "prefix"):
        for p in ("p50_ms", "p99_ms"):
            x, y = ours["queries"][kind][p], theirs["queries"][kind][p]
            print(f"| {s} | {kind} query {p[:3]} ms | {x:.2f} | {y:.2f} | {x / y:.2f} |")
    x, y = ours["bytes"], theirs["bytes"]
    print(f"| {s} | on-disk MiB | {x / 2**20:.1f} | {y / 2**20:.1f} | {x / y:.2f} |")
