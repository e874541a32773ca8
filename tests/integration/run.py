#!/usr/bin/env python3
"""Integration test runner: every test_* function of every test_*.py module here.

Prints one line per test and a closing "N passed, N failed, N skipped" line. Each test
gets HOPTRACE_TEST_TIMEOUT seconds (default 300, times HOPTRACE_TEST_SLOWDOWN). In CI
(CI=true) a test that cannot load BPF fails; it is never skipped; and any other skip fails
the run.
"""
import argparse
import importlib
import os
import signal
import sys
import time
import traceback

# No test may hang the suite: each gets this long (scaled for emulated kernels).
TEST_TIMEOUT_S = int(os.environ.get("HOPTRACE_TEST_TIMEOUT", "300"))


class TestTimeout(Exception):
    pass


def on_alarm(signum, frame):
    raise TestTimeout(f"the test ran for more than its {TEST_TIMEOUT_S} s (x slowdown)")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", help="hoptrace binary to test")
    ap.add_argument("--build", help="build directory (tools)")
    ap.add_argument("-k", dest="pattern", default="", help="run tests whose name contains this")
    args = ap.parse_args()
    if args.agent:
        os.environ["HOPTRACE_AGENT"] = os.path.abspath(args.agent)
    if args.build:
        os.environ["HOPTRACE_BUILD"] = os.path.abspath(args.build)
    import lib

    if os.geteuid() != 0:
        print("integration tests load BPF programs: run them as root", file=sys.stderr)
        if lib.IN_CI:
            return 1
    here = os.path.dirname(os.path.abspath(__file__))
    modules = sorted(f[:-3] for f in os.listdir(here) if f.startswith("test_") and f.endswith(".py"))
    passed = failed = skipped = 0
    signal.signal(signal.SIGALRM, on_alarm)
    for name in modules:
        mod = importlib.import_module(name)
        for fname in sorted(n for n in dir(mod) if n.startswith("test_")):
            full = f"{name}.{fname}"
            if args.pattern and args.pattern not in full:
                continue
            t0 = time.time()
            signal.alarm(int(lib.slow(TEST_TIMEOUT_S)))
            try:
                getattr(mod, fname)()
                passed += 1
                print(f"PASS {full} ({time.time() - t0:.1f}s)", flush=True)
            except lib.SkipTest as e:
                skipped += 1
                print(f"SKIP {full}: {e}", flush=True)
            except lib.BpfUnavailable as e:
                if lib.IN_CI:
                    failed += 1
                    print(f"FAIL {full}: BPF could not be loaded (CI never skips this)\n{e}", flush=True)
                else:
                    skipped += 1
                    print(f"SKIP {full}: BPF could not be loaded: {str(e)[-300:]}", flush=True)
            except Exception:
                failed += 1
                print(f"FAIL {full} ({time.time() - t0:.1f}s)\n{traceback.format_exc()}", flush=True)
            finally:
                signal.alarm(0)
    print(f"integration: {passed} passed, {failed} failed, {skipped} skipped")
    if lib.IN_CI and skipped:
        print("integration: CI=true: a skipped test is a failure")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
