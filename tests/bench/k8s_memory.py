#!/usr/bin/env python3
"""The memory the DaemonSet's container must hold (README "Kubernetes (DaemonSet)").

Runs the release agent as deploy/k8s/base/daemonset.yaml runs it (every process traced,
OTLP export, the metrics endpoint, --memory-limit), first idle, then under wrk against a
local nginx, and prints what a memory cgroup is charged for it:
  - VmHWM (/proc/PID/status): the agent's resident peak (heap, stacks, libraries);
  - the BPF maps' memory (memlock in /proc/PID/fdinfo of each map fd): from Linux 5.11
    the kernel charges map memory to the memory cgroup of the process that creates it,
    so it counts against the container's limit too;
  - the --memory-limit budget's peak (hoptrace_budget_peak_bytes on /metrics).
As root: python3 tests/bench/k8s_memory.py --build build [--memory-limit 64M] [--seconds 20]
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from lib import Proc, free_port, nginx, wait_port  # noqa: E402

MIB = 1024 * 1024


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def bpf_map_bytes(pid):
    """memlock of every BPF map the process holds an fd of."""
    total = 0
    fd_dir = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(fd_dir):
        try:
            with open(os.path.join(fd_dir, fd)) as f:
                info = f.read()
        except OSError:
            continue
        if "map_type:" in info:
            m = re.search(r"^memlock:\s+(\d+)", info, re.M)
            total += int(m.group(1)) if m else 0
    return total


def scrape(port, family):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        page = r.read().decode()
    m = re.search(rf"^{family} (\S+)$", page, re.M)
    return float(m.group(1)) if m else 0.0


def wait_ready(port, agent, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if agent.p.poll() is not None:
            raise SystemExit(f"the agent exited ({agent.p.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the agent was not ready in time")


def sample(pid, metrics_port):
    return {"hwm": status_kib(pid, "VmHWM") * 1024, "rss": status_kib(pid, "VmRSS") * 1024,
            "maps": bpf_map_bytes(pid),
            "budget_peak": scrape(metrics_port, "hoptrace_budget_peak_bytes")}


def show(name, s):
    print(f"{name:5} VmHWM {s['hwm'] / MIB:6.1f} MiB  VmRSS {s['rss'] / MIB:6.1f} MiB  "
          f"BPF maps {s['maps'] / MIB:6.1f} MiB  budget peak {s['budget_peak'] / MIB:6.2f} MiB  "
          f"charged {(s['hwm'] + s['maps']) / MIB:6.1f} MiB")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--memory-limit", default="64M")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    agent_bin = os.path.join(args.build, "hoptrace")
    collect_port, web_port, metrics_port = free_port(), free_port(), free_port()
    collector = Proc([os.path.join(args.build, "hoptrace-collect"), "--port", str(collect_port),
                      "-q", "--count-only", "/dev/null"])
    web = nginx(web_port, "location / { root {root}; }")
    env = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collect_port}",
               OTEL_TRACES_EXPORTER="otlp")
    agent = Proc([agent_bin, "--metrics-listen", f"127.0.0.1:{metrics_port}",
                  "--memory-limit", args.memory_limit], env=env)
    try:
        wait_port(collect_port)
        wait_ready(metrics_port, agent)
        time.sleep(5)
        show("idle", sample(agent.pid, metrics_port))
        subprocess.run(["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s",
                        f"http://127.0.0.1:{web_port}/index.html"], check=True,
                       stdout=subprocess.DEVNULL)
        time.sleep(2)  # the queue drains, spans are exported
        show("load", sample(agent.pid, metrics_port))
        exported = scrape(metrics_port, 'hoptrace_export_spans_total{result="exported"}')
        print(f"spans exported {exported:.0f}")
        agent.p.send_signal(signal.SIGTERM)
        agent.p.wait(timeout=30)
    finally:
        agent.stop()
        web.stop()
        collector.stop()


if __name__ == "__main__":
    main()
