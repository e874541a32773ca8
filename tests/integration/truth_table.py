#!/usr/bin/env python3
"""Print the results of test_runtime_truth.py (BUILD/runtime-truth/*.json) as one markdown
table: python3 tests/integration/truth_table.py [BUILD]"""
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ORDER = ["go", "jvm", "aiohttp", "prefork", "ruby", "php", "haproxy", "apache", "node"]


def pct(pair):
    k, n = pair
    return f"{k}/{n} ({100.0 * k / n:.0f} %)" if n else "-"


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "build")
    rows = {}
    for path in glob.glob(os.path.join(build, "runtime-truth", "*.json")):
        with open(path) as f:
            r = json.load(f)
        rows[r["runtime"]] = r
    print("| runtime | calls (leaf + timer) | parented | false parents (evidence) "
          "| sound parent fwd | sound parent drop | false audit findings (spans / report) "
          "| lost server spans | lost client spans |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in sorted(rows, key=lambda n: (ORDER.index(n) if n in ORDER else 99, n)):
        r = rows[name]
        ev = ", ".join(f"{k} {v}" for k, v in sorted(r["false_parents_by_evidence"].items()))
        ev += "; " + ", ".join(f"{k} {v}" for k, v in sorted(
            r.get("false_parents_by_call", {}).items())) if ev else ""
        print(f"| {name} | {r['calls']} ({r['calls'] - r['timer_calls']} + {r['timer_calls']}) "
              f"| {r['parented']} | {r['false_parents']}{f' ({ev})' if ev else ''} "
              f"| {pct(r['sound_fwd'])} | {pct(r['sound_drop'])} "
              f"| {r['audit_false']} / {r.get('audit_report_false', '-')} "
              f"| {len(r['server_spans_lost'])}/{r['requests']} "
              f"| {r['client_spans_lost']}/{r['calls_expected']} |")


if __name__ == "__main__":
    main()
