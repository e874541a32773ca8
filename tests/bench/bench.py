#!/usr/bin/env python3
"""hoptrace benchmark suite (`make bench`, issue 6). Python standard library only.

Real servers on loopback under wrk, each without the agent and with it (JSON sink to a file,
OTLP sink to hoptrace-collect), in alternating runs; a paced ~20k req/s run for 60 s; a
host-noise scenario (processes the agent does not trace); the exporter micro-benchmark.
Figures are ratios to the untraced runs. Results go to OUT/bench/results.{md,json} and the
table is printed. tests/bench/README.md says what every figure means.

This is a measurement, not a test: it fails only when something cannot run, never on a
missed goal.
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
HZ = os.sysconf("SC_CLK_TCK")
BPF_STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"
LIBC = ctypes.CDLL(None, use_errno=True)
SYS_TGKILL = {"x86_64": 234, "aarch64": 131}.get(platform.machine(), 234)

# Goals of issue 6, checked in the summary (never fail the run).
GOAL_THROUGHPUT = 0.985
GOAL_P99 = 1.05
GOAL_BPF_NS = 300
GOAL_AGENT_US = 2.0
GOAL_RSS_MIB = 32
GOAL_EXPORT_SPS = 500_000
GOAL_NOISE = 1.01


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ---- /proc readers ------------------------------------------------------------------------


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def children_of(pid):
    """All descendants of pid (nginx master -> worker)."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = read(f"/proc/{d}/stat")
        if not st:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def cpu_ns(pid, tree=False):
    """On-CPU nanoseconds of every thread of pid (and of its descendants when tree)."""
    total = 0
    for p in [pid] + (children_of(pid) if tree else []):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            s = read(f"/proc/{p}/task/{t}/schedstat")
            if s:
                total += int(s.split()[0])
    return total


def user_sys_s(pid):
    """utime and stime of the whole process, in seconds (clock ticks: 10 ms resolution)."""
    st = read(f"/proc/{pid}/stat")
    if not st:
        return 0.0, 0.0
    f = st[st.rindex(")") + 2:].split()
    return int(f[11]) / HZ, int(f[12]) / HZ


def status_kib(pid, key):
    for line in read(f"/proc/{pid}/status").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def host_busy_ns():
    """CPU time of the whole host spent not idle, in ns (from /proc/stat)."""
    f = read("/proc/stat").splitlines()[0].split()[1:]
    v = [int(x) for x in f]
    idle = v[3] + v[4]
    busy = sum(v[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy * 1_000_000_000 // HZ


# ---- processes ----------------------------------------------------------------------------


class Proc:
    """A background process in its own session; wait4() gives its rusage."""

    def __init__(self, argv, cpus=None, stdout=None, stderr=None, env=None):
        self.argv = pin(argv, cpus)
        self.p = subprocess.Popen(self.argv, start_new_session=True, env=env,
                                  stdout=stdout or subprocess.DEVNULL,
                                  stderr=stderr or subprocess.DEVNULL)
        self.rusage = None

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.rusage is None and self.p.poll() is None

    def wait4(self, timeout):
        """Reap the process; returns (status, rusage) or raises TimeoutError."""
        deadline = time.time() + timeout
        while True:
            pid, status, ru = os.wait4(self.p.pid, os.WNOHANG)
            if pid:
                self.p.returncode = os.waitstatus_to_exitcode(status)
                self.rusage = ru
                return self.p.returncode, ru
            if time.time() > deadline:
                raise TimeoutError(f"{self.argv[0]} did not exit")
            time.sleep(0.02)

    def signal(self, sig):
        if self.rusage is None:
            try:
                os.kill(self.p.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        """SIGKILL the process group (servers fork workers) and reap."""
        if self.rusage is not None:
            return
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.wait4(10)
        except (TimeoutError, ChildProcessError):
            pass


LIVE = []  # every Proc started, killed on the way out


def start(argv, **kw):
    p = Proc(argv, **kw)
    LIVE.append(p)
    return p


def pin(argv, cpus):
    if cpus is None or not shutil.which("taskset"):
        return list(argv)
    return ["taskset", "-c", ",".join(str(c) for c in cpus)] + list(argv)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.argv} exited before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


# ---- the pieces under test ----------------------------------------------------------------


class Agent:
    """build/hoptrace with one sink, pinned; counters parsed from its exit summary."""

    def __init__(self, bench, args, cpus, env=None):
        self.dir = tempfile.mkdtemp(prefix="agent-", dir=bench.tmp)
        self.err_path = os.path.join(self.dir, "stderr")
        self.err = open(self.err_path, "w")
        self.proc = start([bench.agent, *args], cpus=cpus, stderr=self.err,
                          env=dict(os.environ, **env) if env else None)
        self.wait_ready()
        self.prog_ids = prog_ids_of(self.proc.pid)
        self.counters = {}

    def stderr(self):
        return read(self.err_path)

    def wait_ready(self, timeout=60.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "tracing HTTP/1.x" in self.stderr():
                return
            if not self.proc.alive():
                raise BenchError(f"agent exited before it was ready:\n{self.stderr()[-3000:]}")
            time.sleep(0.05)
        raise BenchError(f"agent not ready after {timeout}s:\n{self.stderr()[-3000:]}")

    def sample(self):
        u, s = user_sys_s(self.proc.pid)
        return {"cpu_ns": cpu_ns(self.proc.pid), "utime_s": u, "stime_s": s}

    def stop(self):
        # SIGINT to the main thread only (tgkill), which reads it from its signalfd. Before
        # 85b1b4b a process-wide kill() could land in the OTLP export thread, which did not
        # block it, and kill the agent unflushed: this keeps such builds measurable.
        if self.proc.alive() and LIBC.syscall(SYS_TGKILL, self.proc.pid, self.proc.pid,
                                              signal.SIGINT) != 0:
            self.proc.signal(signal.SIGINT)
        try:
            rc, ru = self.proc.wait4(60)
        except TimeoutError:
            self.proc.kill()
            raise BenchError("agent did not stop within 60 s of SIGINT")
        self.err.close()
        text = self.stderr()
        if rc != 0:
            raise BenchError(f"agent exited with {rc}:\n{text[-3000:]}")
        self.counters = parse_counters(text)
        return ru


def parse_counters(text):
    out, started = {}, False
    for line in text.splitlines():
        if line.startswith("hoptrace: counters"):
            started = True
        elif started and line.startswith("  "):
            f = line.split()
            if len(f) >= 2 and f[1].isdigit() and f[0] != "?":
                out[f[0]] = int(f[1])
    return out


class Collector:
    """hoptrace-collect as the OTLP/HTTP receiver, on wrk's core. It checks every request as
    strictly as ever but only counts the spans by kind (--count-only): writing each as JSON
    cost more CPU per request than wrk itself. Builds without that option write JSON lines,
    counted here."""

    def __init__(self, bench, cpus):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="collect-", dir=bench.tmp)
        self.counts = os.path.join(self.dir, "counts.json") if bench.collector_counts else None
        self.out = os.path.join(self.dir, "spans.jsonl")
        self.err_path = os.path.join(self.dir, "stderr")
        self.err = open(self.err_path, "w")
        sink = ["-q", "--count-only", self.counts] if self.counts else ["-o", self.out]
        self.proc = start([bench.collector, "-p", str(self.port), *sink], cpus=cpus,
                          stderr=self.err)
        wait_port(self.port, self.proc)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        """Spans received: {requests, spans, server, client} (and other with --count-only)."""
        self.proc.signal(signal.SIGINT)
        try:
            self.proc.wait4(30)
        except TimeoutError:
            self.proc.kill()
        self.err.close()
        if self.counts:
            try:
                with open(self.counts) as f:
                    c = json.load(f)
                os.unlink(self.counts)
            except (OSError, ValueError) as e:
                raise BenchError(f"hoptrace-collect left no counts in {self.counts} ({e}):\n"
                                 f"{read(self.err_path)[-3000:]}")
            return {k: c[k] for k in ("requests", "spans", "server", "client", "other")}
        m = re.search(r"(\d+) requests, (\d+) spans", read(self.err_path))
        kinds = count_kinds(self.out, b'"kind":"SERVER"', b'"kind":"CLIENT"')
        try:
            os.unlink(self.out)
        except OSError:
            pass
        return {"requests": int(m.group(1)) if m else None,
                "spans": int(m.group(2)) if m else None, **kinds}


def count_kinds(path, server, client):
    """Spans by kind in a JSON-lines file. Older hoptrace-collect builds wrote the kind in
    lower case: both spellings count."""
    n = {"server": 0, "client": 0, "lines": 0}
    server_lc, client_lc = server.lower(), client.lower()
    try:
        with open(path, "rb") as f:
            for line in f:
                n["lines"] += 1
                if server in line or server_lc in line:
                    n["server"] += 1
                elif client in line or client_lc in line:
                    n["client"] += 1
    except OSError:
        pass
    return n


def bpf_progs(bpftool):
    """hoptrace's BPF programs (names start with ht_) by id, with bpf_stats figures."""
    r = subprocess.run([bpftool, "prog", "show", "--json"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=30)
    try:
        progs = json.loads(r.stdout or b"[]")
    except ValueError:
        return {}
    return {p["id"]: {"name": p.get("name", ""), "run_time_ns": p.get("run_time_ns", 0),
                      "run_cnt": p.get("run_cnt", 0)}
            for p in progs if p.get("name", "").startswith("ht_")}


def prog_ids_of(pid):
    """Ids of the BPF programs a process holds, from its fds' fdinfo (another hoptrace may
    be loaded at the same time: its ht_* programs are not ours)."""
    ids = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fdinfo")
    except OSError:
        return []
    for fd in fds:
        m = re.search(r"^prog_id:\s+(\d+)", read(f"/proc/{pid}/fdinfo/{fd}"), re.M)
        if m:
            ids.add(int(m.group(1)))
    return sorted(ids)


def bpf_delta(before, after, ids):
    out = {}
    for i in ids:
        if i in after:
            a, b = after[i], before.get(i, {"run_time_ns": 0, "run_cnt": 0})
            out[a["name"]] = {"run_time_ns": a["run_time_ns"] - b["run_time_ns"],
                              "run_cnt": a["run_cnt"] - b["run_cnt"]}
    return out


def set_bpf_stats(on):
    with open(BPF_STATS_SYSCTL, "w") as f:
        f.write("1\n" if on else "0\n")


# ---- servers ------------------------------------------------------------------------------


NGINX_CONF = """worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 10000000;
  server {{
    listen 127.0.0.1:{port};
    root {d}/html;
  }}
}}
"""

NODE_SERVER = r"""
const http = require('http');
const body = 'hello from node\n'.repeat(40);
http.createServer((req, res) => {
  res.writeHead(200, {'Content-Type': 'text/plain', 'Content-Length': body.length});
  res.end(body);
}).listen(+process.argv[2], '127.0.0.1');
"""

PY_SERVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
BODY = b'hello from python\n' * 40
class H(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Content-Length', str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *a):
        pass
HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
"""

# --only logs: the same server, logging one line per request to its stdout (a file), the way
# an application logs an access line (issue 14's --capture-logs cost). A thread per
# connection (ThreadingHTTPServer): the single-threaded server serves one keep-alive
# connection at a time, and wrk's other connections wait for it. TCP_NODELAY: the head and
# the body are two writes, and Nagle would hold the body for the client's delayed ACK.
PY_LOG_SERVER = PY_SERVER.replace(
    "    def do_GET(self):\n",
    "    def do_GET(self):\n"
    "        print(f'served {self.path} to {self.client_address[0]} token=abc', flush=True)\n"
).replace("HTTPServer", "ThreadingHTTPServer").replace(
    "    protocol_version = 'HTTP/1.1'\n",
    "    protocol_version = 'HTTP/1.1'\n"
    "    disable_nagle_algorithm = True\n")


def start_server(bench, kind, cpus):
    port = free_port()
    d = tempfile.mkdtemp(prefix=kind + "-", dir=bench.tmp)
    if kind == "nginx":
        os.chmod(d, 0o755)  # workers run as an unprivileged user
        os.makedirs(os.path.join(d, "html"))
        with open(os.path.join(d, "html", "index.html"), "w") as f:
            f.write("hello from nginx\n" * 40)  # 680 bytes
        os.chmod(os.path.join(d, "html"), 0o755)
        os.chmod(os.path.join(d, "html", "index.html"), 0o644)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(d=d, port=port))
        p = start(["nginx", "-c", conf, "-e", os.path.join(d, "error.log")], cpus=cpus)
        url = f"http://127.0.0.1:{port}/index.html"
    elif kind == "node":
        script = os.path.join(d, "server.js")
        with open(script, "w") as f:
            f.write(NODE_SERVER)
        p = start(["node", script, str(port)], cpus=cpus)
        url = f"http://127.0.0.1:{port}/"
    else:
        script = os.path.join(d, "server.py")
        with open(script, "w") as f:
            f.write(PY_LOG_SERVER if kind == "pylog" else PY_SERVER)
        stdout = open(os.path.join(d, "stdout.log"), "w") if kind == "pylog" else None
        p = start([sys.executable, script, str(port)], cpus=cpus, stdout=stdout)
        if stdout:
            stdout.close()
        url = f"http://127.0.0.1:{port}/"
    wait_port(port, p)
    return p, port, url


# ---- wrk ----------------------------------------------------------------------------------

UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wrk(text):
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", text)
    if not m:
        raise BenchError(f"cannot parse wrk output:\n{text}")
    r = {"requests": int(m.group(1)), "duration_s": float(m.group(2)) * UNIT[m.group(3)]}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    r["rps"] = float(m.group(1)) if m else r["requests"] / r["duration_s"]
    for p in (50, 75, 90, 99):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        r[f"p{p}_us"] = float(m.group(1)) * UNIT[m.group(2)] * 1e6 if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    r["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    r["non_2xx"] = int(m.group(1)) if m else 0
    return r


def run_wrk(bench, url, conns, secs, cpus, script=None):
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency"]
    if script:
        argv += ["-s", script]
    p = start(argv + [url], cpus=cpus, stdout=subprocess.PIPE)
    out = p.p.stdout.read().decode(errors="replace")
    rc, ru = p.wait4(secs + 60)
    if rc != 0:
        raise BenchError(f"wrk failed ({rc}):\n{out}")
    r = parse_wrk(out)
    r["cpu_s"] = ru.ru_utime + ru.ru_stime
    return r


PACE_LUA = """-- every connection waits DELAY ms after each response: a paced rate, as wrk has no -R
function delay()
  return {ms}
end
"""


# ---- one measured run ---------------------------------------------------------------------


def measured_run(bench, srv, mode, port, url, secs, conns, script=None, bpf_stats=False,
                 extra_args=()):
    """One wrk run against a started server, with the agent in mode off/json/otlp/other-port.
    Returns a dict of raw figures."""
    res = {"mode": mode, "bpf_stats": bpf_stats}
    agent = coll = None
    env = None
    if mode in ("otlp", "metrics"):
        coll = Collector(bench, bench.cpu_client)
    try:
        if mode != "off":
            if mode == "json":
                out = os.path.join(bench.tmp, "spans.jsonl")
                args = ["-o", "json", "-O", out, "--port", str(port)]
            elif mode == "otlp":
                args = ["-o", "otlp", "--otlp-endpoint", coll.url, "--port", str(port)]
            elif mode == "other-port":
                args = ["-o", "json", "-O", os.devnull, "--port", "1"]
            elif mode == "metrics":
                # metrics only: no span leaves the agent; the registry counts every request
                # and is exported once a second to the collector's address; the sampler is off,
                # so no request builds what only span export needs
                args = ["-o", "none", "--sampler", "always_off", "--port", str(port)]
                env = {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": coll.url.rsplit("/v1/", 1)[0]
                       + "/v1/metrics", "OTEL_METRIC_EXPORT_INTERVAL": "1000"}
            else:
                raise BenchError(mode)
            agent = Agent(bench, [*args, *extra_args], bench.cpu_agent, env=env)
        time.sleep(0.3)
        progs0 = bpf_progs(bench.bpftool) if bpf_stats else {}
        a0 = agent.sample() if agent else None
        s0 = cpu_ns(srv.pid, tree=True)
        su0 = sum(user_sys_s(srv.pid))
        c0 = cpu_ns(coll.proc.pid) if coll else 0
        h0, t0 = host_busy_ns(), time.time()
        w = run_wrk(bench, url, conns, secs, bench.cpu_client, script)
        res["wrk"] = w
        res["server_cpu_ns_per_req"] = (cpu_ns(srv.pid, tree=True) - s0) / max(w["requests"], 1)
        # the whole process's utime+stime (10 ms ticks), exited threads included: a server
        # with a thread per connection loses them when wrk closes its connections
        res["server_proc_cpu_ns_per_req"] = ((sum(user_sys_s(srv.pid)) - su0) * 1e9
                                             / max(w["requests"], 1))
        res["wrk_cpu_ns_per_req"] = w["cpu_s"] * 1e9 / max(w["requests"], 1)
        if bpf_stats:
            progs1 = bpf_progs(bench.bpftool)
            res["bpf"] = bpf_delta(progs0, progs1, agent.prog_ids if agent else [])
        if agent:
            time.sleep(1.2)  # the 5 ms drain and the 1 s OTLP schedule delay
            a1 = agent.sample()
            res["agent_cpu_ns"] = a1["cpu_ns"] - a0["cpu_ns"]
            res["agent_user_s"] = a1["utime_s"] - a0["utime_s"]
            res["agent_sys_s"] = a1["stime_s"] - a0["stime_s"]
            res["agent_vmhwm_kib"] = status_kib(agent.proc.pid, "VmHWM")
            res["agent_vmrss_kib"] = status_kib(agent.proc.pid, "VmRSS")
            # the ring buffer's data pages are mapped twice and count as RssFile
            res["agent_rssanon_kib"] = status_kib(agent.proc.pid, "RssAnon")
        wall = time.time() - t0
        ours = (w["cpu_s"] * 1e9 + (cpu_ns(srv.pid, tree=True) - s0)
                + (res.get("agent_cpu_ns") or 0)
                + ((cpu_ns(coll.proc.pid) - c0) if coll else 0))
        res["other_load_pct"] = max(0.0, (host_busy_ns() - h0 - ours) / (wall * 1e9 * bench.ncpu)
                                    * 100)
        if coll:
            res["collector_cpu_ns_per_req"] = (cpu_ns(coll.proc.pid) - c0) / max(w["requests"], 1)
        if agent:
            ru = agent.stop()
            res["agent_maxrss_kib"] = ru.ru_maxrss
            res["counters"] = agent.counters
            agent = None
            if mode == "json":
                res["delivered"] = count_kinds(out, b'"kind":"SERVER"', b'"kind":"CLIENT"')
                os.unlink(out)
        if coll:
            delivered = coll.stop()
            if mode != "metrics":
                res["delivered"] = delivered
            coll = None
    finally:
        if agent:
            agent.proc.kill()
        if coll:
            coll.proc.kill()
    return res


# ---- scenarios ----------------------------------------------------------------------------


def scenario_server(bench, kind):
    """Alternating untraced / JSON / OTLP runs, order rotated each repetition, then one run
    with bpf_stats on (its clock reads slow every program run, so it is kept apart)."""
    srv, port, url = start_server(bench, kind, bench.cpu_server)
    runs = []
    try:
        log(f"{kind}: warm-up")
        run_wrk(bench, url, bench.conns, 2, bench.cpu_client)
        modes = ["off", "json", "otlp"]
        for rep in range(bench.reps):
            order = modes[rep % 3:] + modes[:rep % 3]
            for mode in order:
                r = measured_run(bench, srv, mode, port, url, bench.duration, bench.conns)
                r["rep"] = rep
                runs.append(r)
                log(f"{kind} rep {rep + 1}/{bench.reps} {mode:5}: "
                    f"{r['wrk']['rps']:9.0f} req/s  p99 {r['wrk']['p99_us']:8.0f} us"
                    + (f"  agent {r['agent_cpu_ns'] / r['wrk']['requests'] / 1e3:.2f} us/req"
                       if "agent_cpu_ns" in r else "")
                    + f"  other load {r['other_load_pct']:.0f}%")
        log(f"{kind}: BPF run time (kernel.bpf_stats_enabled=1)")
        set_bpf_stats(True)
        try:
            r = measured_run(bench, srv, "json", port, url, bench.duration, bench.conns,
                             bpf_stats=True)
        finally:
            set_bpf_stats(bench.bpf_stats_saved)
        r["rep"] = "bpf_stats"
        runs.append(r)
    finally:
        srv.kill()
    return runs


def scenario_metrics(bench):
    """Metrics-only mode (-o none, OTLP metrics) against full tracing (OTLP spans) and no
    agent (issue 12): nginx under wrk, the three rotated each repetition."""
    srv, port, url = start_server(bench, "nginx", bench.cpu_server)
    runs = []
    try:
        run_wrk(bench, url, bench.conns, 2, bench.cpu_client)
        modes = ["off", "otlp", "metrics"]
        for rep in range(bench.reps):
            for mode in modes[rep % 3:] + modes[:rep % 3]:
                r = measured_run(bench, srv, mode, port, url, bench.duration, bench.conns)
                r["rep"] = rep
                runs.append(r)
                log(f"metrics rep {rep + 1}/{bench.reps} {mode:7}: {r['wrk']['rps']:9.0f} req/s"
                    + (f"  agent {r['agent_cpu_ns'] / r['wrk']['requests'] / 1e3:.2f} us/req"
                       if "agent_cpu_ns" in r else ""))
    finally:
        srv.kill()
    return runs


LOG_MODES = ("off", "json", "json+logs")


def scenario_logs(bench):
    """What --capture-logs costs (issue 14): a Python server that logs one line per request
    to its stdout (a file) under wrk, untraced, traced (-o json) and traced with
    --capture-logs, rotated each repetition. Each logged write runs the log program in the
    server's write(2) (server CPU) and becomes a record and a span event (agent CPU)."""
    srv, port, url = start_server(bench, "pylog", bench.cpu_server)
    runs = []
    try:
        run_wrk(bench, url, bench.conns, 2, bench.cpu_client)
        for rep in range(bench.reps):
            for mode in LOG_MODES[rep % 3:] + LOG_MODES[:rep % 3]:
                extra = ("--capture-logs",) if mode == "json+logs" else ()
                r = measured_run(bench, srv, "off" if mode == "off" else "json", port, url,
                                 bench.duration, bench.conns, extra_args=extra)
                r["rep"], r["logs_mode"] = rep, mode
                runs.append(r)
                log(f"logs rep {rep + 1}/{bench.reps} {mode:9}: {r['wrk']['rps']:9.0f} req/s"
                    f"  server {r['server_proc_cpu_ns_per_req'] / 1e3:.2f} us/req"
                    + (f"  agent {r['agent_cpu_ns'] / r['wrk']['requests'] / 1e3:.2f} us/req"
                       if "agent_cpu_ns" in r else "")
                    + (f"  log lines {r['counters'].get('log_lines', 0)}"
                       if "counters" in r else ""))
        log("logs: BPF run time of the log programs (kernel.bpf_stats_enabled=1)")
        set_bpf_stats(True)
        try:
            r = measured_run(bench, srv, "json", port, url, bench.duration, bench.conns,
                             bpf_stats=True, extra_args=("--capture-logs",))
        finally:
            set_bpf_stats(bench.bpf_stats_saved)
        r["rep"], r["logs_mode"] = "bpf_stats", "json+logs"
        runs.append(r)
    finally:
        srv.kill()
    return runs


def render_logs(all_runs):
    runs = [r for r in all_runs if r["rep"] != "bpf_stats"]
    L = ["## Log lines as span events (`--capture-logs`; issue 14)", "",
         "A Python `http.server` logging one line per request to its stdout (a file), under "
         "wrk. traced = `-o json -O FILE --port P`; + logs adds `--capture-logs`. Ratios are to "
         "the untraced run of the same repetition; \"logs cost\" is the difference between "
         "the two traced modes. Server CPU per request (utime+stime of the whole process, 10 ms "
         "ticks) includes the BPF programs run in its system calls (the log program in every "
         "write(2)).", "",
         "| mode | req/s | throughput | p99 | server CPU/req | agent CPU/req | log lines "
         "attached | log writes dropped |",
         "|---|---|---|---|---|---|---|---|"]
    for mode in LOG_MODES:
        rs = [r for r in runs if r["logs_mode"] == mode]
        base = {r["rep"]: r for r in runs if r["logs_mode"] == "off"}
        tp = [r["wrk"]["rps"] / base[r["rep"]]["wrk"]["rps"] for r in rs if r["rep"] in base]
        p99 = [r["wrk"]["p99_us"] / base[r["rep"]]["wrk"]["p99_us"] for r in rs
               if r["rep"] in base and base[r["rep"]]["wrk"]["p99_us"]]
        cpu = [r["agent_cpu_ns"] / r["wrk"]["requests"] for r in rs if "agent_cpu_ns" in r]
        srv_cpu = med([r["server_proc_cpu_ns_per_req"] for r in rs])
        lines = sum(r.get("counters", {}).get("log_lines", 0) for r in rs)
        dropped = sum(r.get("counters", {}).get("drop_log_no_request", 0)
                      + r.get("counters", {}).get("drop_log_ambiguous", 0) for r in rs)
        L.append(f"| {'untraced' if mode == 'off' else 'traced' if mode == 'json' else '+ logs'}"
                 f" | {fmt(med([r['wrk']['rps'] for r in rs]), '.0f')} | "
                 f"{fmt(med(tp), '.3f')} | {fmt(med(p99), '.2f')} | "
                 f"{fmt(srv_cpu / 1e3, '.2f')} µs | "
                 f"{fmt(med(cpu) / 1e3, '.2f') + ' µs' if cpu else '–'} | "
                 f"{lines if mode == 'json+logs' else '–'} | "
                 f"{dropped if mode == 'json+logs' else '–'} |")
    on = [r for r in runs if r["logs_mode"] == "json+logs"]
    off = {r["rep"]: r for r in runs if r["logs_mode"] == "json"}
    d_agent = [r["agent_cpu_ns"] / r["wrk"]["requests"]
               - off[r["rep"]]["agent_cpu_ns"] / off[r["rep"]]["wrk"]["requests"]
               for r in on if r["rep"] in off]
    d_srv = [r["server_proc_cpu_ns_per_req"] - off[r["rep"]]["server_proc_cpu_ns_per_req"]
             for r in on if r["rep"] in off]
    d_tp = [r["wrk"]["rps"] / off[r["rep"]]["wrk"]["rps"] for r in on if r["rep"] in off]
    L += ["", f"Logs cost (median of paired repetitions, + logs against traced): agent "
          f"{fmt(med(d_agent) / 1e3, '+.2f')} µs/req, server {fmt(med(d_srv) / 1e3, '+.2f')} "
          f"µs/req, throughput ×{fmt(med(d_tp), '.3f')}.", ""]
    for r in all_runs:
        if r["rep"] != "bpf_stats":
            continue
        reqs = max(r["wrk"]["requests"], 1)
        for name in ("ht_log_write", "ht_log_writev"):
            b = r.get("bpf", {}).get(name)
            if b and b["run_cnt"]:
                L.append(f"- `{name}` (bpf_stats run): {b['run_time_ns'] / b['run_cnt']:.0f} ns "
                         f"per run, {b['run_cnt'] / reqs:.2f} runs per request (every write "
                         "on the host runs it; most return at the fd or process test)")
        L.append("")
    return L


SAMPLERS = ("always_on", "always_off")


def scenario_sampling(bench):
    """The agent's cost of a sampled request against an unsampled one (issue 12): nginx
    under wrk, JSON spans to a file, --sampler always_on and always_off alternated each
    repetition. An unsampled request is decided at its start and skips what only export
    needs; metrics and the audit still see it."""
    srv, port, url = start_server(bench, "nginx", bench.cpu_server)
    runs = []
    try:
        run_wrk(bench, url, bench.conns, 2, bench.cpu_client)
        for rep in range(bench.reps):
            for sampler in SAMPLERS[rep % 2:] + SAMPLERS[:rep % 2]:
                r = measured_run(bench, srv, "json", port, url, bench.duration, bench.conns,
                                 extra_args=("--sampler", sampler))
                r["rep"], r["sampler"] = rep, sampler
                runs.append(r)
                log(f"sampling rep {rep + 1}/{bench.reps} {sampler:10}: "
                    f"{r['wrk']['rps']:9.0f} req/s  agent "
                    f"{r['agent_cpu_ns'] / r['wrk']['requests'] / 1e3:.2f} us/req")
    finally:
        srv.kill()
    return runs


def render_sampling(runs):
    L = ["## Sampled against unsampled requests (nginx under wrk, `-o json`; issue 12)", "",
         "| sampler | req/s | agent CPU/req | agent user/req | agent sys/req | spans written |",
         "|---|---|---|---|---|---|"]
    for sampler in SAMPLERS:
        rs = [r for r in runs if r["sampler"] == sampler]
        per = [r["agent_cpu_ns"] / r["wrk"]["requests"] for r in rs]
        usr = [r["agent_user_s"] * 1e9 / r["wrk"]["requests"] for r in rs]
        sys_ = [r["agent_sys_s"] * 1e9 / r["wrk"]["requests"] for r in rs]
        spans = sum((r.get("delivered") or {}).get("lines", 0) for r in rs)
        L.append(f"| {sampler} | {fmt(med([r['wrk']['rps'] for r in rs]), '.0f')} | "
                 f"{fmt(med(per) / 1e3, '.2f')} µs | {fmt(med(usr) / 1e3, '.2f')} µs | "
                 f"{fmt(med(sys_) / 1e3, '.2f')} µs | {spans} |")
    L.append("")
    return L


def render_metrics(runs):
    L = ["## Metrics-only mode against full tracing (nginx under wrk; issue 12)", "",
         "full tracing = `-o otlp` to hoptrace-collect; metrics only = `-o none` with OTLP "
         "metrics every second and `--sampler always_off`. Ratios are to the untraced run of "
         "the same repetition. Server CPU per request includes the BPF programs that run in "
         "its system calls, and is the figure least disturbed by other load on the host.", "",
         "| mode | req/s | throughput | p99 | server CPU/req | agent CPU/req | agent max RSS |",
         "|---|---|---|---|---|---|---|"]
    for mode, label in (("off", "untraced"), ("otlp", "full tracing (OTLP)"),
                        ("metrics", "metrics only")):
        rs = [r for r in runs if r["mode"] == mode]
        tp = paired_ratios(runs, mode, lambda r: r["wrk"]["rps"])
        p99 = paired_ratios(runs, mode, lambda r: r["wrk"]["p99_us"])
        cpu = [r["agent_cpu_ns"] / r["wrk"]["requests"] for r in rs if "agent_cpu_ns" in r]
        rss = [r["agent_maxrss_kib"] for r in rs if "agent_maxrss_kib" in r]
        srv_cpu = med([r["server_cpu_ns_per_req"] for r in rs])
        srv_ratio = paired_ratios(runs, mode, lambda r: r["server_cpu_ns_per_req"])
        L.append(f"| {label} | {fmt(med([r['wrk']['rps'] for r in rs]), '.0f')} | "
                 f"{fmt(med(tp), '.3f') if mode != 'off' else '1'} | "
                 f"{fmt(med(p99), '.2f') if mode != 'off' else '1'} | "
                 f"{fmt(srv_cpu / 1e3, '.2f')} µs"
                 f"{' (' + fmt(med(srv_ratio), '.2f') + '×)' if mode != 'off' else ''} | "
                 f"{fmt(med(cpu) / 1e3, '.2f') + ' µs' if cpu else '–'} | "
                 f"{fmt(med(rss) / 1024, '.1f') + ' MiB' if rss else '–'} |")
    L.append("")
    return L


def calibrate_pace(bench, url, target, delay_ms, script):
    """Connections that give about `target` req/s with `delay_ms` think time (untraced)."""
    conns = max(1, target // 500)
    for _ in range(3):
        w = run_wrk(bench, url, conns, 3, bench.cpu_client, script)
        log(f"pace: {conns} connections -> {w['rps']:.0f} req/s")
        if abs(w["rps"] - target) / target < 0.05:
            break
        conns = max(1, round(conns * target / max(w["rps"], 1)))
        if conns > 2000:
            break
    return conns


def scenario_sustained(bench):
    """nginx at a paced ~20k req/s: untraced, then 60 s with the OTLP sink."""
    srv, port, url = start_server(bench, "nginx", bench.cpu_server)
    script = os.path.join(bench.tmp, "pace.lua")
    with open(script, "w") as f:
        f.write(PACE_LUA.format(ms=1))
    try:
        run_wrk(bench, url, bench.conns, 2, bench.cpu_client)
        conns = calibrate_pace(bench, url, bench.sustain_rps, 1, script)
        log(f"sustained: untraced {bench.sustain_base}s at {conns} paced connections")
        base = measured_run(bench, srv, "off", port, url, bench.sustain_base, conns, script)
        log(f"sustained: OTLP sink, {bench.sustain_secs}s")
        traced = measured_run(bench, srv, "otlp", port, url, bench.sustain_secs, conns, script)
        log(f"sustained: {traced['wrk']['rps']:.0f} req/s achieved")
    finally:
        srv.kill()
    return {"target_rps": bench.sustain_rps, "connections": conns, "delay_ms": 1,
            "off": base, "otlp": traced}


NOISE_JOBS = [
    ("pipe: dd bs=4k | cat", "dd if=/dev/zero bs=4k count={n} status=none | cat > /dev/null",
     400_000),
    ("file write: dd bs=4k (tmpfs)", "dd if=/dev/zero of={f} bs=4k count={n} status=none",
     100_000),
    ("file read: dd bs=4k (tmpfs)", "dd if={f} of=/dev/null bs=4k status=none", 100_000),
]


def time_job(bench, cmd):
    """Wall time and CPU time (user+sys of the shell and its children, from wait4) of a job.
    CPU time is the figure compared: wall time moves with whatever else runs on the host."""
    t0 = time.perf_counter()
    p = start(["sh", "-c", cmd], cpus=bench.cpu_server)
    rc, ru = p.wait4(300)
    if rc != 0:
        raise BenchError(f"{cmd} failed ({rc})")
    return time.perf_counter() - t0, ru.ru_utime + ru.ru_stime


def scenario_noise(bench):
    """Untraced work timed with and without the agent, alternating; plus socket I/O of a
    process the agent does not select."""
    data = os.path.join(bench.tmp, "noise.dat")
    out = {"jobs": [], "reps": bench.noise_reps}
    jobs = [(name, cmd.format(n=n, f=data), n) for name, cmd, n in NOISE_JOBS]
    # the file read needs the file, the write recreates it: run them once to prime the cache
    for _, cmd, _ in jobs:
        time_job(bench, cmd)
    times = {name: {"off": [], "on": [], "off_wall": [], "on_wall": []} for name, _, _ in jobs}
    out["agent_cpu_ms_per_s"] = []
    for rep in range(bench.noise_reps):
        for mode in (("off", "on") if rep % 2 == 0 else ("on", "off")):
            agent = None
            if mode == "on":
                # --port 1 selects nothing: the same hooks are attached as without a
                # filter, but the agent does not trace (and compete with) unrelated traffic
                agent = Agent(bench, ["-o", "json", "-O", os.devnull, "--port", "1"],
                              bench.cpu_agent)
                a0, t0 = agent.sample(), time.time()
            try:
                for name, cmd, _ in jobs:
                    wall, cpu = time_job(bench, cmd)
                    times[name][mode].append(cpu)
                    times[name][mode + "_wall"].append(wall)
            finally:
                if agent:
                    out["agent_cpu_ms_per_s"].append((agent.sample()["cpu_ns"] - a0["cpu_ns"])
                                                     / 1e6 / (time.time() - t0))
                    agent.stop()
                    out["agent_counters"] = agent.counters
        log(f"noise rep {rep + 1}/{bench.noise_reps}")
    for name, cmd, n in jobs:
        t = times[name]
        ratios = [a / b for a, b in zip(t["on"], t["off"])]
        out["jobs"].append({"name": name, "cmd": cmd, "blocks": n, "off_cpu_s": t["off"],
                            "on_cpu_s": t["on"], "off_wall_s": t["off_wall"],
                            "on_wall_s": t["on_wall"], "ratio": statistics.median(ratios),
                            "ratio_min": min(ratios), "ratio_max": max(ratios),
                            "delta_ns_per_block": (statistics.median(t["on"])
                                                   - statistics.median(t["off"])) / n * 1e9})
    try:
        os.unlink(data)
    except OSError:
        pass
    # socket I/O the agent sees but does not select (filter on another port)
    srv, port, url = start_server(bench, "nginx", bench.cpu_server)
    runs = []
    try:
        run_wrk(bench, url, bench.conns, 2, bench.cpu_client)
        for rep in range(bench.noise_sock_reps):
            for mode in (("off", "other-port") if rep % 2 == 0 else ("other-port", "off")):
                r = measured_run(bench, srv, mode, port, url, bench.noise_sock_secs, bench.conns)
                r["rep"] = rep
                runs.append(r)
        set_bpf_stats(True)
        try:
            r = measured_run(bench, srv, "other-port", port, url, bench.noise_sock_secs,
                             bench.conns, bpf_stats=True)
        finally:
            set_bpf_stats(bench.bpf_stats_saved)
        r["rep"] = "bpf_stats"
        runs.append(r)
        log("noise: unselected socket I/O done")
    finally:
        srv.kill()
    out["unselected_socket"] = runs
    return out


BACKENDS = ("tp_btf", "fexit", "syscalls")


def supported_backends(bench):
    """The capture backends the agent loads on this kernel (its self-test, one each)."""
    out = []
    for b in BACKENDS:
        r = subprocess.run([bench.agent, "--self-test", "--no-tls", "--capture", b],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        if r.returncode == 0:
            out.append(b)
    return out


def scenario_backends(bench):
    """What each capture backend costs (issue 10): nginx under wrk untraced and traced (JSON
    sink) with each backend this kernel runs, alternated and rotated, one bpf_stats run per
    backend; then host noise (pipe and file I/O of a process the agent does not select),
    which the syscall backend sees and the others do not."""
    backends = supported_backends(bench)
    if not backends:
        raise BenchError("no capture backend loads on this kernel")
    srv, port, url = start_server(bench, "nginx", bench.cpu_server)
    runs = []
    try:
        run_wrk(bench, url, bench.conns, 2, bench.cpu_client)
        modes = ["off", *backends]
        for rep in range(bench.reps):
            order = modes[rep % len(modes):] + modes[:rep % len(modes)]
            for m in order:
                r = measured_run(bench, srv, "off" if m == "off" else "json", port, url,
                                 bench.duration, bench.conns,
                                 extra_args=() if m == "off" else ("--capture", m))
                r["mode"], r["rep"] = m, rep
                runs.append(r)
                log(f"backends rep {rep + 1}/{bench.reps} {m:8}: {r['wrk']['rps']:9.0f} req/s"
                    f"  p99 {r['wrk']['p99_us']:8.0f} us")
        set_bpf_stats(True)
        try:
            for b in backends:
                r = measured_run(bench, srv, "json", port, url, bench.duration, bench.conns,
                                 bpf_stats=True, extra_args=("--capture", b))
                r["mode"], r["rep"] = b, "bpf_stats"
                runs.append(r)
        finally:
            set_bpf_stats(bench.bpf_stats_saved)
    finally:
        srv.kill()
    return {"backends": backends, "runs": runs, "noise": backend_noise(bench, backends)}


def backend_noise(bench, backends):
    """CPU time of pipe and file I/O of an unselected process, agent off and on (--port 1:
    selects nothing, the hooks are the same), per backend; ns added per 4 KiB block."""
    data = os.path.join(bench.tmp, "noise.dat")
    jobs = [(name, cmd.format(n=n, f=data), n) for name, cmd, n in NOISE_JOBS]
    for _, cmd, _ in jobs:
        time_job(bench, cmd)
    out = {}
    reps = bench.noise_reps if bench.quick else max(bench.noise_reps, 9)  # a few % apart
    for b in backends:
        times = {name: {"off": [], "on": []} for name, _, _ in jobs}
        for rep in range(reps):
            for mode in (("off", "on") if rep % 2 == 0 else ("on", "off")):
                agent = None
                if mode == "on":
                    agent = Agent(bench, ["-o", "json", "-O", os.devnull, "--port", "1",
                                          "--capture", b], bench.cpu_agent)
                try:
                    for name, cmd, _ in jobs:
                        times[name][mode].append(time_job(bench, cmd)[1])
                finally:
                    if agent:
                        agent.stop()
        out[b] = {name: {"ratio": med([a / o for a, o in zip(t["on"], t["off"])]),
                         "delta_ns_per_block": (med(t["on"]) - med(t["off"])) / n * 1e9}
                  for (name, _, n), t in zip(jobs, times.values())}
        log(f"backends noise {b}: " + ", ".join(f"{k} x{v['ratio']:.3f}"
                                                 for k, v in out[b].items()))
    try:
        os.unlink(data)
    except OSError:
        pass
    return out


def summarize_backends(res):
    runs, rows = res["runs"], {}
    for b in res["backends"]:
        rs = [r for r in runs if r["mode"] == b and r["rep"] != "bpf_stats"]
        st = next((r for r in runs if r["mode"] == b and r["rep"] == "bpf_stats"), None)
        row = {"rps": med([r["wrk"]["rps"] for r in rs])}
        for name, key in (("throughput", lambda r: r["wrk"]["rps"]),
                          ("p50", lambda r: r["wrk"]["p50_us"]),
                          ("p99", lambda r: r["wrk"]["p99_us"])):
            pr = paired_ratios(runs, b, key)
            row[name], row[name + "_range"] = med(pr), span_of(pr)
        row["agent_ns_per_req"] = med([r["agent_cpu_ns"] / r["wrk"]["requests"] for r in rs])
        row["drops"] = sum(v for r in rs for k, v in r["counters"].items() if "drop" in k)
        row["spans"] = sum(r["delivered"]["server"] + r["delivered"]["client"] for r in rs)
        row["requests"] = sum(r["wrk"]["requests"] for r in rs)
        if st and st.get("bpf"):
            req = st["wrk"]["requests"]
            row["bpf_ns_per_req"] = sum(v["run_time_ns"] for v in st["bpf"].values()) / req
            row["capture_ns_per_req"] = sum(v["run_time_ns"] for n, v in st["bpf"].items()
                                            if is_capture_prog(n)) / req
            row["capture_runs_per_req"] = sum(v["run_cnt"] for n, v in st["bpf"].items()
                                              if is_capture_prog(n)) / req
        rows[b] = row
    off = [r for r in runs if r["mode"] == "off"]
    return {"off_rps": med([r["wrk"]["rps"] for r in off]),
            "off_p99_us": med([r["wrk"]["p99_us"] for r in off]), "rows": rows}


def render_backends(res):
    s = summarize_backends(res)
    L = ["## Capture backends (nginx under wrk, JSON sink; issue 10)", "",
         f"Untraced: {fmt(s['off_rps'], '.0f')} req/s, p99 {fmt(s['off_p99_us'], '.0f')} µs. "
         "Ratios are to the untraced run of the same repetition. BPF figures from one run per "
         "backend with kernel.bpf_stats_enabled=1; capture = the backend's own programs. Host "
         "noise: CPU time of a process the agent does not select (dd through a pipe, dd "
         "reading a tmpfs file), agent on (--port 1) / off.", "",
         "| backend | req/s | throughput | p50 | p99 | BPF ns/req (capture) | capture runs/req "
         "| agent CPU/req | drops | spans / requests | pipe I/O | file read |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for b, r in s["rows"].items():
        nz = res["noise"].get(b, {})

        def noise(name):
            j = nz.get(name)
            return "–" if not j else f"x{j['ratio']:.3f} ({j['delta_ns_per_block']:+.0f} ns/4K)"
        L.append(f"| {b} | {fmt(r['rps'], '.0f')} | {fmt(r['throughput'], '.3f')}"
                 f"{fmt_range(r['throughput_range'], '.3f')} | {fmt(r['p50'], '.2f')} | "
                 f"{fmt(r['p99'], '.2f')} | {fmt(r.get('bpf_ns_per_req'), '.0f')} "
                 f"({fmt(r.get('capture_ns_per_req'), '.0f')}) | "
                 f"{fmt(r.get('capture_runs_per_req'), '.1f')} | "
                 f"{fmt(r['agent_ns_per_req'] and r['agent_ns_per_req'] / 1e3, '.2f')} µs | "
                 f"{r['drops']} | {r['spans']} / {r['requests']} | "
                 f"{noise(NOISE_JOBS[0][0])} | {noise(NOISE_JOBS[2][0])} |")
    L.append("")
    return L


def scenario_exporter(bench):
    if not bench.otlp_bench:
        return None
    r = subprocess.run(pin([bench.otlp_bench, str(bench.micro_secs)], bench.cpu_client),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    text = r.stdout.decode(errors="replace")
    if r.returncode != 0:
        raise BenchError(f"otlp_bench failed:\n{text}")
    out = {"raw": text, "cases": {}}
    for m in re.finditer(r"^\s+(\S+)\s+([\d.]+) spans/s per core\s+([\d.]+) bytes/span", text,
                         re.M):
        out["cases"][m.group(1)] = {"spans_per_s": float(m.group(2)),
                                    "bytes_per_span": float(m.group(3))}
    return out


# ---- summary ------------------------------------------------------------------------------


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def span_of(xs):
    xs = [x for x in xs if x is not None]
    return (min(xs), max(xs)) if xs else (None, None)


def paired_ratios(runs, mode, key):
    """Ratio of each traced run to the untraced run of the same repetition."""
    out = []
    for rep in {r["rep"] for r in runs if r["rep"] != "bpf_stats"}:
        off = [r for r in runs if r["rep"] == rep and r["mode"] == "off"]
        on = [r for r in runs if r["rep"] == rep and r["mode"] == mode]
        if off and on and key(off[0]) and key(on[0]) is not None:
            out.append(key(on[0]) / key(off[0]))
    return out


# The programs of the three capture backends (bpf/sockio.bpf.c, bpf/syscalls.bpf.c).
CAPTURE_PROG_PREFIXES = ("ht_sock_", "ht_inet", "ht_sys_")


def is_capture_prog(name):
    return name.startswith(CAPTURE_PROG_PREFIXES)


def summarize_server(runs):
    rows = {}
    stats_run = next((r for r in runs if r["rep"] == "bpf_stats"), None)
    bpf = None
    if stats_run and stats_run.get("bpf"):
        req = stats_run["wrk"]["requests"]
        progs = {n: {"runs_per_req": v["run_cnt"] / req,
                     "ns_per_run": v["run_time_ns"] / v["run_cnt"] if v["run_cnt"] else 0,
                     "ns_per_req": v["run_time_ns"] / req}
                 for n, v in stats_run["bpf"].items()}
        bpf = {"ns_per_req": sum(p["ns_per_req"] for p in progs.values()), "progs": progs,
               # the socket tracepoints: what HTTP/1.x capture costs. The others fire for
               # whatever else the host does (fork/exec/exit, libssl calls of any process)
               "sock_ns_per_req": sum(p["ns_per_req"] for n, p in progs.items()
                                      if is_capture_prog(n)),
               "requests": req, "rps": stats_run["wrk"]["rps"],
               "spans_per_req": (stats_run["counters"].get("spans_server", 0)
                                 + stats_run["counters"].get("spans_client", 0)) / req}
    for mode in ("off", "json", "otlp"):
        rs = [r for r in runs if r["mode"] == mode and r["rep"] != "bpf_stats"]
        row = {"n": len(rs), "rps": med([r["wrk"]["rps"] for r in rs]),
               "p50_us": med([r["wrk"]["p50_us"] for r in rs]),
               "p99_us": med([r["wrk"]["p99_us"] for r in rs]),
               "server_ns_per_req": med([r["server_cpu_ns_per_req"] for r in rs]),
               "wrk_ns_per_req": med([r["wrk_cpu_ns_per_req"] for r in rs]),
               "other_load_pct": span_of([r["other_load_pct"] for r in rs])}
        if mode != "off":
            for name, key in (("throughput", lambda r: r["wrk"]["rps"]),
                              ("p50", lambda r: r["wrk"]["p50_us"]),
                              ("p99", lambda r: r["wrk"]["p99_us"])):
                pr = paired_ratios(runs, mode, key)
                row[name] = med(pr)
                row[name + "_range"] = span_of(pr)
            row["agent_ns_per_req"] = med([r["agent_cpu_ns"] / r["wrk"]["requests"] for r in rs])
            row["agent_user_ns_per_req"] = med([r["agent_user_s"] * 1e9 / r["wrk"]["requests"]
                                                for r in rs])
            row["agent_sys_ns_per_req"] = med([r["agent_sys_s"] * 1e9 / r["wrk"]["requests"]
                                               for r in rs])
            row["ringbuf_drops"] = sum(r["counters"].get("bpf_drop_ringbuf_full", 0) for r in rs)
            row["other_drops"] = sum(v for r in rs for k, v in r["counters"].items()
                                     if "drop" in k and k != "bpf_drop_ringbuf_full")
            row["drop_counters"] = sorted({k for r in rs for k, v in r["counters"].items()
                                           if "drop" in k and v})
            row["requests"] = sum(r["wrk"]["requests"] for r in rs)
            row["events_per_req"] = med([r["counters"].get("bpf_events", 0) / r["wrk"]["requests"]
                                         for r in rs])
            row["bytes_per_req"] = med([r["counters"].get("bytes_captured", 0)
                                        / r["wrk"]["requests"] for r in rs])
            row["spans_server"] = sum(r["delivered"]["server"] for r in rs)
            row["spans_client"] = sum(r["delivered"]["client"] for r in rs)
            row["vmhwm_kib"] = max(r["agent_vmhwm_kib"] for r in rs)
            row["vmrss_kib"] = max(r["agent_vmrss_kib"] for r in rs)
            row["rssanon_kib"] = max(r["agent_rssanon_kib"] for r in rs)
            if mode == "otlp":
                row["collector_ns_per_req"] = med([r["collector_cpu_ns_per_req"] for r in rs])
            if bpf:
                row["bpf_ns_per_req"] = bpf["ns_per_req"]
        rows[mode] = row
    return {"modes": rows, "bpf": bpf}


def fmt(v, spec, dash="–"):
    return dash if v is None else format(v, spec)


def fmt_range(r, spec):
    return "" if r[0] is None else f" ({format(r[0], spec)}–{format(r[1], spec)})"


def mark(ok):
    return "✓" if ok else "✗"


def render(bench, results):
    L = []
    meta = results["meta"]
    L.append(f"# hoptrace benchmark ({meta['date']})")
    L.append("")
    L.append(f"- host: {meta['cpus']} CPUs ({meta['cpu_model']}), kernel {meta['kernel']}, "
             f"hoptrace {meta['version']} ({meta['git']})")
    L.append(f"- pinning: {meta['pinning']}")
    L.append(f"- closed loop: wrk -t1 -c{bench.conns} -d{bench.duration}s --latency, "
             f"{bench.reps} repetitions, modes alternated and rotated; figures are medians, "
             "ratios are medians of per-repetition ratios to the untraced run (range)")
    if meta["warnings"]:
        for w in meta["warnings"]:
            L.append(f"- **warning:** {w}")
    L.append("")
    if results["servers"]:
        L.append("## Overhead on real servers (ratios to the untraced run)")
        L.append("")
        L.append("| server | sink | req/s | throughput | p50 | p99 | BPF ns/req | agent CPU/req "
                 "(user+sys) | ringbuf drops | other drops | spans srv / cli / requests | "
                 "agent peak RSS (anon at end) | other load |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for kind, s in results["servers"].items():
            m = s["modes"]
            off = m["off"]
            L.append(f"| {kind} | none | {fmt(off['rps'], '.0f')} | 1 | 1 ({fmt(off['p50_us'], '.0f')}"
                     f" µs) | 1 ({fmt(off['p99_us'], '.0f')} µs) | – | – | – | – | – | – | "
                     f"{fmt(off['other_load_pct'][0], '.0f')}–{fmt(off['other_load_pct'][1], '.0f')}%"
                     " |")
            for mode in ("json", "otlp"):
                r = m[mode]
                bpf = r.get("bpf_ns_per_req")
                L.append(
                    f"| {kind} | {mode} | {fmt(r['rps'], '.0f')} | "
                    f"{fmt(r['throughput'], '.3f')}{fmt_range(r['throughput_range'], '.3f')} | "
                    f"{fmt(r['p50'], '.2f')}{fmt_range(r['p50_range'], '.2f')} | "
                    f"{fmt(r['p99'], '.2f')}{fmt_range(r['p99_range'], '.2f')} | "
                    f"{fmt(bpf, '.0f')} | {r['agent_ns_per_req'] / 1e3:.2f} µs "
                    f"({r['agent_user_ns_per_req'] / 1e3:.2f}+{r['agent_sys_ns_per_req'] / 1e3:.2f})"
                    f" | {r['ringbuf_drops']} | {r['other_drops']} | "
                    f"{r['spans_server']} / {r['spans_client']} / {r['requests']} | "
                    f"{r['vmhwm_kib'] / 1024:.1f} MiB ({r['rssanon_kib'] / 1024:.1f}) | "
                    f"{fmt(r['other_load_pct'][0], '.0f')}–{fmt(r['other_load_pct'][1], '.0f')}% |")
        L.append("")
        L.append("Where the CPU goes, per request (medians; ns of on-CPU time from schedstat):")
        L.append("")
        L.append("| server | sink | server ns/req | wrk ns/req | agent ns/req | collector ns/req | "
                 "ring-buffer records/req | bytes captured/req |")
        L.append("|---|---|---|---|---|---|---|---|")
        for kind, s in results["servers"].items():
            for mode in ("off", "json", "otlp"):
                r = s["modes"][mode]
                L.append(f"| {kind} | {mode if mode != 'off' else 'none'} | "
                         f"{fmt(r['server_ns_per_req'], '.0f')} | {fmt(r['wrk_ns_per_req'], '.0f')} | "
                         f"{fmt(r.get('agent_ns_per_req'), '.0f')} | "
                         f"{fmt(r.get('collector_ns_per_req'), '.0f')} | "
                         f"{fmt(r.get('events_per_req'), '.2f')} | {fmt(r.get('bytes_per_req'), '.0f')} |")
        L.append("")
        L.append("## BPF run time (kernel.bpf_stats_enabled=1, one extra JSON-sink run per server)")
        L.append("")
        L.append("Both ends of each request are on the host and selected by --port (wrk and the "
                 "server): one request is two traced exchanges, two spans. Runs/req counts every "
                 "run during the wrk run, including other traffic of the host rejected by the "
                 "filter; programs other than ht_sock_* fire for whatever else the host does.")
        L.append("")
        L.append("| server | program | runs/req | ns/run | ns/req |")
        L.append("|---|---|---|---|---|")
        for kind, s in results["servers"].items():
            b = s["bpf"]
            if not b:
                L.append(f"| {kind} | (no figures: bpf_stats unavailable) | | | |")
                continue
            for name, p in sorted(b["progs"].items(), key=lambda kv: -kv[1]["ns_per_req"]):
                if p["runs_per_req"] == 0:
                    continue
                L.append(f"| {kind} | {name} | {p['runs_per_req']:.2f} | {p['ns_per_run']:.0f} | "
                         f"{p['ns_per_req']:.0f} |")
            L.append(f"| {kind} | **total** | | | **{b['ns_per_req']:.0f}** "
                     f"({b['ns_per_req'] / max(b['spans_per_req'], 1e-9):.0f} per span) |")
            L.append(f"| {kind} | ht_sock_* only | | | {b['sock_ns_per_req']:.0f} "
                     f"({b['sock_ns_per_req'] / max(b['spans_per_req'], 1e-9):.0f} per span) |")
            L.append(f"| {kind} | (this run: {b['rps']:.0f} req/s with stats on, JSON runs without: "
                     f"{fmt(s['modes']['json']['rps'], '.0f')}) | | | |")
        L.append("")
    sus = results.get("sustained")
    if sus:
        o, t = sus["off"], sus["otlp"]
        d = t["delivered"]
        c = t["counters"]
        L.append(f"## Sustained: nginx, paced ~{sus['target_rps']} req/s, OTLP sink")
        L.append("")
        L.append(f"wrk has no constant-rate mode (-R is wrk2's): each of {sus['connections']} "
                 f"connections waits {sus['delay_ms']} ms after every response (Lua delay()). "
                 "The rate is paced, not open-loop: latency has no coordinated-omission "
                 "correction.")
        L.append("")
        L.append("| run | seconds | req/s achieved | requests | p50 | p99 | ringbuf drops | "
                 "other drops | spans srv / cli received | agent CPU/req | agent peak RSS | "
                 "other load |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        L.append(f"| untraced | {o['wrk']['duration_s']:.0f} | {o['wrk']['rps']:.0f} | "
                 f"{o['wrk']['requests']} | {o['wrk']['p50_us']:.0f} µs | "
                 f"{o['wrk']['p99_us']:.0f} µs | – | – | – | – | – | "
                 f"{o['other_load_pct']:.0f}% |")
        drops = sum(v for k, v in c.items() if "drop" in k and k != "bpf_drop_ringbuf_full")
        L.append(f"| OTLP | {t['wrk']['duration_s']:.0f} | {t['wrk']['rps']:.0f} | "
                 f"{t['wrk']['requests']} | {t['wrk']['p50_us']:.0f} µs "
                 f"({t['wrk']['p50_us'] / o['wrk']['p50_us']:.2f}×) | {t['wrk']['p99_us']:.0f} µs "
                 f"({t['wrk']['p99_us'] / o['wrk']['p99_us']:.2f}×) | "
                 f"{c.get('bpf_drop_ringbuf_full', 0)} | {drops} | "
                 f"{d['server']} / {d['client']} | "
                 f"{t['agent_cpu_ns'] / t['wrk']['requests'] / 1e3:.2f} µs | "
                 f"{t['agent_vmhwm_kib'] / 1024:.1f} MiB | {t['other_load_pct']:.0f}% |")
        L.append("")
    noise = results.get("noise")
    if noise:
        L.append("## Host noise: processes the agent does not trace")
        L.append("")
        L.append(f"Agent loaded and attached (JSON sink, --port 1 so that it traces no unrelated "
                 f"traffic); {noise['reps']} alternating repetitions, jobs on the server core. "
                 "Compared: CPU time (user+sys) of the job, median of paired (with / without) "
                 "ratios; wall time shown for reference. The idle agent itself used "
                 f"{fmt(med(noise['agent_cpu_ms_per_s']), '.1f')} ms of CPU per second meanwhile.")
        L.append("")
        L.append("| workload | CPU without | CPU with | ratio | Δ CPU per 4 KiB block | "
                 "wall without / with |")
        L.append("|---|---|---|---|---|---|")
        for j in noise["jobs"]:
            L.append(f"| {j['name'].replace('|', chr(92) + '|')} | {med(j['off_cpu_s']):.3f} s | "
                     f"{med(j['on_cpu_s']):.3f} s | "
                     f"{j['ratio']:.3f}{fmt_range((j['ratio_min'], j['ratio_max']), '.3f')} | "
                     f"{j['delta_ns_per_block']:+.0f} ns | {med(j['off_wall_s']):.3f} s / "
                     f"{med(j['on_wall_s']):.3f} s |")
        us = noise.get("unselected_socket") or []
        if us:
            tp = paired_ratios(us, "other-port", lambda r: r["wrk"]["rps"])
            p99 = paired_ratios(us, "other-port", lambda r: r["wrk"]["p99_us"])
            st = next((r for r in us if r["rep"] == "bpf_stats"), None)
            us = [r for r in us if r["rep"] != "bpf_stats"]
            srv_off = med([r["server_cpu_ns_per_req"] for r in us if r["mode"] == "off"])
            srv_on = med([r["server_cpu_ns_per_req"] for r in us if r["mode"] == "other-port"])
            rej = {n: v for n, v in (st or {}).get("bpf", {}).items() if n.startswith("ht_sock_")}
            runs_ = sum(v["run_cnt"] for v in rej.values())
            rej_ns = sum(v["run_time_ns"] for v in rej.values()) / runs_ if runs_ else None
            L.append(f"| nginx+wrk socket I/O, agent selecting another port (--port 1) | "
                     f"{med([r['wrk']['rps'] for r in us if r['mode'] == 'off']):.0f} req/s | "
                     f"{med([r['wrk']['rps'] for r in us if r['mode'] == 'other-port']):.0f} req/s"
                     f" | {fmt(med(tp), '.3f')}{fmt_range(span_of(tp), '.3f')} (throughput; "
                     f"p99 {fmt(med(p99), '.2f')}) | server CPU {srv_on - srv_off:+.0f} ns/req; "
                     f"ht_sock_* {fmt(rej_ns, '.0f')} ns per rejected run (bpf_stats) | |")
        L.append("")
    if results.get("backends"):
        L.extend(render_backends(results["backends"]))
    if results.get("metrics"):
        L.extend(render_metrics(results["metrics"]))
    if results.get("sampling"):
        L.extend(render_sampling(results["sampling"]))
    if results.get("logs"):
        L.extend(render_logs(results["logs"]))
    ex = results.get("exporter")
    if ex:
        L.append("## Exporter micro-benchmark (build/otlp_bench, one core)")
        L.append("")
        L.append("| case | spans/s per core | bytes/span |")
        L.append("|---|---|---|")
        for name, c in ex["cases"].items():
            L.append(f"| {name} | {c['spans_per_s']:.0f} | {c['bytes_per_span']:.1f} |")
        L.append("")
    L.append("## Goals (issue 6)")
    L.append("")
    L.extend(goal_lines(results))
    L.append("")
    L.append(f"Total time {results['meta']['elapsed_s']:.0f} s.")
    return "\n".join(L) + "\n"


def goal_lines(results):
    out = []
    for kind, s in results["servers"].items():
        for mode in ("json", "otlp"):
            r = s["modes"][mode]
            out.append(f"- {kind}/{mode}: throughput {fmt(r['throughput'], '.3f')} "
                       f"{mark((r['throughput'] or 0) >= GOAL_THROUGHPUT)} (≥ {GOAL_THROUGHPUT}); "
                       f"p99 {fmt(r['p99'], '.2f')}× {mark((r['p99'] or 99) <= GOAL_P99)} "
                       f"(≤ {GOAL_P99}); agent {r['agent_ns_per_req'] / 1e3:.2f} µs/req "
                       f"{mark(r['agent_ns_per_req'] / 1e3 <= GOAL_AGENT_US)} (≤ {GOAL_AGENT_US});"
                       f" peak RSS {r['vmhwm_kib'] / 1024:.1f} MiB "
                       f"{mark(r['vmhwm_kib'] / 1024 <= GOAL_RSS_MIB)} (≤ {GOAL_RSS_MIB})")
        b = s["bpf"]
        if b:
            per_span = b["ns_per_req"] / max(b["spans_per_req"], 1e-9)
            out.append(f"- {kind}: BPF {b['ns_per_req']:.0f} ns per request with both ends "
                       f"traced ({b['sock_ns_per_req']:.0f} in ht_sock_*), {per_span:.0f} ns per "
                       f"traced side {mark(per_span <= GOAL_BPF_NS)} (≤ {GOAL_BPF_NS})")
    sus = results.get("sustained")
    if sus:
        t = sus["otlp"]
        c, d, req = t["counters"], t["delivered"], t["wrk"]["requests"]
        drops = sum(v for k, v in c.items() if "drop" in k)
        ok = drops == 0 and abs(d["server"] - req) <= sus["connections"] \
            and abs(d["client"] - req) <= sus["connections"]
        out.append(f"- sustained {t['wrk']['rps']:.0f} req/s for {t['wrk']['duration_s']:.0f} s: "
                   f"{drops} drops, {d['server']} server / {d['client']} client spans received "
                   f"for {req} requests {mark(ok)} (0 drops, spans = requests within the "
                   f"{sus['connections']} in flight when wrk stops)")
    ex = results.get("exporter")
    if ex and ex["cases"]:
        enc = ex["cases"].get("encode", {}).get("spans_per_s", 0)
        gz = ex["cases"].get("encode+gzip(1)", {}).get("spans_per_s", 0)
        out.append(f"- exporter: encode {enc:.0f} spans/s {mark(enc >= GOAL_EXPORT_SPS)}, "
                   f"encode+gzip(1) (the agent's level with OTEL_EXPORTER_OTLP_COMPRESSION=gzip;"
                   f" off by default) {gz:.0f} spans/s "
                   f"{mark(gz >= GOAL_EXPORT_SPS)} (≥ {GOAL_EXPORT_SPS})")
    noise = results.get("noise")
    if noise:
        worst = max(j["ratio"] for j in noise["jobs"])
        out.append(f"- untraced processes (pipe/file I/O CPU time): worst ratio {worst:.3f} "
                   f"{mark(worst < GOAL_NOISE)} (< {GOAL_NOISE})")
        us = noise.get("unselected_socket") or []
        tp = med(paired_ratios(us, "other-port", lambda r: r["wrk"]["rps"])) if us else None
        if tp is not None:
            out.append(f"- socket I/O of an unselected process (nginx under wrk, agent on "
                       f"another port): throughput {tp:.3f} {mark(tp >= 1 / GOAL_NOISE)} "
                       f"(slowdown < 1 %)")
    return out


# ---- main ---------------------------------------------------------------------------------


def plan_cpus(ncpu):
    """Server, agent and client cores. Two cores: server+agent share one, so the agent's CPU
    comes out of the server's throughput; wrk (and the collector) get the other."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) >= 3:
        return [allowed[0]], [allowed[1]], allowed[2:], (
            f"server on CPU {allowed[0]}, agent on CPU {allowed[1]}, wrk and hoptrace-collect "
            f"on CPU {','.join(map(str, allowed[2:]))}")
    if len(allowed) == 2:
        return [allowed[0]], [allowed[0]], [allowed[1]], (
            f"server and agent on CPU {allowed[0]}, wrk and hoptrace-collect on CPU "
            f"{allowed[1]} (2 CPUs: the agent competes with the server for its core, so its "
            "CPU time lowers the server's throughput; BPF programs run in the server's and "
            "wrk's context on their own cores)")
    return None, None, None, "1 CPU: no pinning, everything competes for the one core"


def git_id():
    r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return r.stdout.decode().strip() or "unknown"


def preflight(bench):
    if os.geteuid() != 0:
        raise BenchError("run as root: the agent loads BPF programs (sudo make bench)")
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            raise BenchError(f"{tool} is not installed (apt-get install wrk nginx-light)")
    for path in (bench.agent, bench.collector):
        if not os.access(path, os.X_OK):
            raise BenchError(f"{path} missing: run make all first")
    warnings = []
    usage = subprocess.run([bench.collector, "--help"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=30).stdout
    bench.collector_counts = "--count-only" in usage
    if not bench.collector_counts:
        warnings.append("hoptrace-collect has no --count-only (an older build): it writes "
                        "every span as JSON, on wrk's core, which lowers the OTLP throughput")
    if not os.path.exists(BPF_STATS_SYSCTL):
        raise BenchError(f"{BPF_STATS_SYSCTL} missing: the kernel has no BPF run-time stats")
    if not shutil.which("taskset"):
        warnings.append("taskset not found: nothing pinned")
    foreign = bpf_progs(bench.bpftool)
    if foreign:
        warnings.append(f"{len(foreign)} ht_* BPF programs of another hoptrace were loaded at "
                        "start: they run on this benchmark's traffic too, baseline included")
    h0, t0 = host_busy_ns(), time.time()
    time.sleep(1.0)
    load = (host_busy_ns() - h0) / ((time.time() - t0) * 1e9 * bench.ncpu) * 100
    if load > 10:
        warnings.append(f"host not idle before the benchmark ({load:.0f}% CPU busy): expect noise; "
                        "the 'other load' column shows how much per run")
    return warnings


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="build directory")
    ap.add_argument("--out", help="results directory (default BUILD/bench)")
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", 3)))
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", 8)),
                    help="seconds per closed-loop wrk run")
    ap.add_argument("--conns", type=int, default=int(os.environ.get("BENCH_CONNS", 32)))
    ap.add_argument("--sustain-secs", type=int,
                    default=int(os.environ.get("BENCH_SUSTAIN_SECS", 60)))
    ap.add_argument("--sustain-rps", type=int,
                    default=int(os.environ.get("BENCH_SUSTAIN_RPS", 20000)))
    ap.add_argument("--only", default=os.environ.get("BENCH_ONLY", ""),
                    help="comma list of nginx,node,sustained,noise,exporter,backends,"
                    "metrics,sampling,logs (default all)")
    ap.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1",
                    help="1 repetition, short runs (a smoke test of the suite, not figures)")
    a = ap.parse_args()

    bench = argparse.Namespace(**vars(a))
    if a.quick:
        bench.reps, bench.duration, bench.sustain_secs = 1, 3, 5
    bench.sustain_base = min(15, bench.sustain_secs)
    bench.noise_reps = 2 if a.quick else 5
    bench.noise_sock_reps = 1 if a.quick else 3
    bench.noise_sock_secs = 3 if a.quick else 4
    bench.micro_secs = 0.5 if a.quick else 2
    bench.agent = os.path.join(a.build, "hoptrace")
    bench.collector = os.path.join(a.build, "hoptrace-collect")
    ob = os.path.join(a.build, "otlp_bench")
    bench.otlp_bench = ob if os.access(ob, os.X_OK) else None
    bench.bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    bench.ncpu = len(os.sched_getaffinity(0))
    bench.cpu_server, bench.cpu_agent, bench.cpu_client, pinning = plan_cpus(bench.ncpu)
    out_dir = a.out or os.path.join(a.build, "bench")
    os.makedirs(out_dir, exist_ok=True)
    only = set(filter(None, bench.only.split(","))) or {"nginx", "node", "sustained", "noise",
                                                         "exporter", "backends", "metrics",
                                                         "sampling", "logs"}

    t_start = time.time()
    bench.bpf_stats_saved = read(BPF_STATS_SYSCTL, "0").strip() == "1"
    # tmpfs when there is one: span files and the noise file never wait for the disk
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    bench.tmp = tempfile.mkdtemp(prefix="hoptrace-bench-", dir=shm)
    os.chmod(bench.tmp, 0o755)  # nginx workers read their document root under it

    def on_signal(sig, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    results = {"servers": {}}
    try:
        warnings = preflight(bench)
        for w in warnings:
            log("warning: " + w)
        if not bench.otlp_bench:
            warnings.append(f"{ob} missing: exporter micro-benchmark skipped")
        if not shutil.which("node"):
            warnings.append("node not installed: the Python http.server stands in for it")
        results["meta"] = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "kernel": platform.release(), "cpus": bench.ncpu,
            "cpu_model": next((line.split(":", 1)[1].strip()
                               for line in read("/proc/cpuinfo").splitlines()
                               if line.startswith("model name")), "?"),
            "version": read(os.path.join(ROOT, "VERSION"), "?").strip(), "git": git_id(),
            "pinning": pinning, "warnings": warnings,
            "config": {k: v for k, v in vars(bench).items()
                       if isinstance(v, (int, str, float, bool, list, type(None)))},
        }
        log(f"pinning: {pinning}")
        if "exporter" in only:
            log("exporter micro-benchmark")
            results["exporter"] = scenario_exporter(bench)
        raw = {}
        for kind in ("nginx", "node"):
            if kind not in only:
                continue
            srv = kind if kind == "nginx" or shutil.which("node") else "python"
            raw[kind] = scenario_server(bench, srv)
            results["servers"][srv] = summarize_server(raw[kind])
        results["raw_runs"] = raw
        if "sustained" in only:
            results["sustained"] = scenario_sustained(bench)
        if "noise" in only:
            log("host noise")
            results["noise"] = scenario_noise(bench)
        if "backends" in only:
            log("capture backends")
            results["backends"] = scenario_backends(bench)
        if "metrics" in only:
            log("metrics-only mode")
            results["metrics"] = scenario_metrics(bench)
        if "sampling" in only:
            log("sampled against unsampled requests")
            results["sampling"] = scenario_sampling(bench)
        if "logs" in only:
            log("log lines as span events (--capture-logs)")
            results["logs"] = scenario_logs(bench)
    except BenchError as e:
        log(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        for p in LIVE:
            p.kill()
        try:
            set_bpf_stats(bench.bpf_stats_saved)
        except OSError:
            pass
        shutil.rmtree(bench.tmp, ignore_errors=True)
    results["meta"]["elapsed_s"] = time.time() - t_start
    md = render(bench, results)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(md)
    print(md)
    log(f"results in {out_dir}/results.md and results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
