"""Ground truth for parent association and the propagation audit on real runtimes (issue 15).

The identity of each request is in its URL path, so the truth never depends on the agent:

  test client --GET /work/<mode>/<id>?n=N&sleep=MS, traceparent T-->  middle service
  middle      --GET /leaf/<id> (N times), traceparent T (mode fwd) or none (drop)-->  leaf
  middle      --GET /timer/<k>, no traceparent, every TIMER_MS, from a background timer-->  leaf

A CLIENT span of the middle for /leaf/<id> may have no parent or the middle's SERVER span
for /work/<mode>/<id>; any other parent is false. A /timer/ call is made outside every
request: it must have no parent and no audit verdict. Proxies (HAProxy, Apache) forward
/work/<mode>/<id> unchanged (dropping the traceparent for mode drop) and send health checks
to /timer/hc: their CLIENT span for a path may only have the SERVER span of the same path as
parent.

check() computes the numbers, summary_line() prints them in one line, write_result() keeps
them under BUILD/runtime-truth/, assert_truth() asserts.
"""
import collections
import http.client
import json
import os
import queue
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from lib import AGENT, BUILD, HERE, Agent, Proc, free_port, slow, wait_port

APPS = os.path.join(HERE, "truth_apps")
# Debian's interpreter: python3-aiohttp is installed for it (the suite may run under another)
SYSTEM_PYTHON = "/usr/bin/python3"

REQUESTS = 300       # short requests per runtime, half fwd, half drop
CONCURRENCY = 8      # client threads, each with its own keep-alive connection
TIMER_MS = 75        # background calls of the middle service
LONG_MS = 1500       # the long requests: one fwd, then one drop, each alone in flight
LEAF_SERVICE = "truth-leaf"

EXPECTED_VERDICT = {"fwd": "forwarded", "drop": "dropped"}


# ---- the plan: what the test client sends -------------------------------------------------

class Req:
    def __init__(self, ident, mode, calls, sleep_ms=0, variant=""):
        self.id, self.mode, self.calls, self.sleep_ms, self.variant = (ident, mode, calls,
                                                                        sleep_ms, variant)
        self.trace_id = secrets.token_hex(16)
        self.span_id = secrets.token_hex(8)
        self.status = None
        self.error = None

    @property
    def path(self):
        return f"/work/{self.mode}/{self.id}"

    def url(self):
        q = f"?n={self.calls}"
        if self.sleep_ms:
            q += f"&sleep={self.sleep_ms}"
        if self.variant:
            q += f"&client={self.variant}"
        return self.path + q

    @property
    def traceparent(self):
        return f"00-{self.trace_id}-{self.span_id}-01"


def make_plan(requests=REQUESTS, variants=("",), proxy=False):
    """Short requests alternating fwd/drop; a third make two leaf calls (never behind a
    proxy, which forwards each request once); variants (e.g. the JVM's two HTTP clients)
    spread evenly over both modes."""
    short = []
    for i in range(requests):
        mode = "fwd" if i % 2 == 0 else "drop"
        calls = 1 if proxy or i % 3 else 2
        short.append(Req(f"r{i}", mode, calls, variant=variants[(i // 2) % len(variants)]))
    longs = [Req(f"long-{m}", m, 1 if proxy else 2, LONG_MS, variant=variants[0])
             for m in ("fwd", "drop")]
    return short, longs


def drive(port, reqs, concurrency):
    """Send reqs to 127.0.0.1:port from `concurrency` threads, each on its own keep-alive
    connection (reopened when the server closes it). A request that fails is not retried:
    it keeps its error."""
    todo = queue.Queue()
    for r in reqs:
        todo.put(r)

    def worker():
        conn = None
        while True:
            try:
                r = todo.get_nowait()
            except queue.Empty:
                break
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=slow(30))
                conn.request("GET", r.url(), headers={"traceparent": r.traceparent})
                resp = conn.getresponse()
                resp.read()
                r.status = resp.status
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                r.error = f"{type(e).__name__}: {e}"
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(min(concurrency, len(reqs)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ---- running one runtime ------------------------------------------------------------------

def service_env(service, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_SERVICE_NAME"] = service
    env.update(extra)
    return env


def start_leaf(port):
    p = Proc([SYSTEM_PYTHON, os.path.join(APPS, "leaf.py"), str(port)],
             env=service_env(LEAF_SERVICE))
    wait_port(port)
    return p


def start_logged(argv, port, what, work, timeout=30, env=None):
    """Proc whose output goes to BUILD/runtime-truth/logs/WHAT.log, shown when it does not
    start listening on port (at once when it exits)."""
    logdir = os.path.join(BUILD, "runtime-truth", "logs")
    os.makedirs(logdir, exist_ok=True)
    log = open(os.path.join(logdir, f"{what}.log"), "w+")
    p = Proc(argv, stdout=log, stderr=subprocess.STDOUT, cwd=work, env=env)
    deadline = time.time() + slow(timeout)
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return p
        except OSError:
            pass
        if p.p.poll() is not None or time.time() > deadline:
            p.stop()
            log.seek(0)
            raise AssertionError(f"{what} did not start ({' '.join(argv)}):\n"
                                 f"{log.read()[-3000:]}")
        time.sleep(0.05)


_audit_takes_file = None


def audit_args(dirpath):
    """--audit-json as this agent takes it: with a FILE argument, or printing to stdout."""
    global _audit_takes_file
    if _audit_takes_file is None:
        r = subprocess.run([AGENT, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        _audit_takes_file = bool(re.search(rb"--audit-json(\[)?=", r.stdout))
    if _audit_takes_file:
        return [f"--audit-json={os.path.join(dirpath, 'audit.json')}"]
    return ["--audit-json"]


def audit_report(agent, dirpath):
    path = os.path.join(dirpath, "audit.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    lines = [line for line in agent.stdout().splitlines() if line.strip().startswith("{")]
    assert lines, "the agent printed no audit report"
    return json.loads(lines[-1])


def run_runtime(name, start_mid, *, proxy=False, variants=("",), requests=REQUESTS):
    """Start the leaf, the agent on both ports, the middle service (start_mid(port,
    leaf_port, service, work) -> Proc; work: a private directory removed at the end); send
    the load, then the long requests one at a time while the timers go on; check the spans
    against the plan."""
    leaf_port, mid_port = free_port(), free_port()
    service = f"truth-{name}"
    short, longs = make_plan(requests, variants, proxy)
    procs = []
    agent = None
    t0 = time.time()
    work = tempfile.mkdtemp(prefix=f"hoptrace-truth-{name}-")
    os.chmod(work, 0o755)  # servers that drop privileges (apache2) read their files here
    try:
        procs.append(start_leaf(leaf_port))
        # the agent before the middle service: it sees every process and thread the service
        # creates (ancestry), and every connection from its first byte
        agent = Agent("--port", str(mid_port), "--port", str(leaf_port),
                      "--ringbuf-bytes", str(32 << 20), *audit_args(work))
        procs.append(start_mid(mid_port, leaf_port, service, work))
        t_started = time.time()
        time.sleep(slow(0.3))  # a few timer calls before the load
        drive(mid_port, short, CONCURRENCY)
        for r in longs:  # alone in flight, timers going on
            drive(mid_port, [r], 1)
        time.sleep(slow(0.3))
        spans = agent.stop(settle=1.0)
        report = audit_report(agent, work)
        shutil.copy(agent.out_path, os.path.join(BUILD, "runtime-truth", f"{name}.spans.jsonl"))
    finally:
        if agent:
            agent.kill()
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(work, ignore_errors=True)
    res = check(name, spans, service, short + longs, proxy=proxy, report=report)
    res["seconds"] = round(time.time() - t0, 1)
    res["startup_seconds"] = round(t_started - t0, 1)
    res["counters"] = {k: v for k, v in agent.counters.items()
                       if v and (k.startswith("parent_") or "drop" in k or "lost" in k)}
    return res


# ---- the checker --------------------------------------------------------------------------

def evidence(span):
    """The parent evidence the agent gives a client span (exact, thread, ancestor, ambiguous,
    none)."""
    a = span["attributes"]
    return a.get("hoptrace.parent") or a.get("hoptrace.parent.confidence") or "?"


def check(name, spans, service, plan, proxy=False, report=None):
    """Compare the middle service's spans with the plan. Returns a dict of numbers and
    examples (see summary_line)."""
    by_id = {r.id: r for r in plan}
    mine = [s for s in spans if s.get("service.name") == service]
    servers = collections.defaultdict(list)   # /work/... path -> SERVER spans
    for s in mine:
        if s["kind"] == "SERVER":
            servers[s["attributes"].get("url.path", "")].append(s)
    server_ids = {s["span_id"]: s for ss in servers.values() for s in ss}
    work_re = re.compile(r"^/work/(fwd|drop)/([^/]+)$")
    leaf_re = work_re if proxy else re.compile(r"^/leaf/([^/]+)$")

    res = collections.OrderedDict(runtime=name, service=service)
    res["requests"] = len(plan)
    res["requests_failed"] = [f"{r.path}: {r.error or r.status}" for r in plan
                              if r.error or r.status != 200]
    lost_servers, dup_servers, join_wrong = [], [], 0
    for r in plan:
        ss = servers.get(r.path, [])
        if not ss:
            lost_servers.append(r.path)
        elif len(ss) > 1:
            dup_servers.append(r.path)
        for s in ss:
            if s["trace_id"] != r.trace_id or s["parent_span_id"] != r.span_id:
                join_wrong += 1
    res["server_spans_lost"] = lost_servers
    res["server_spans_duplicated"] = dup_servers
    res["server_join_wrong"] = join_wrong

    calls_seen = collections.Counter()   # request id -> client spans seen
    per_mode = {m: collections.Counter() for m in ("fwd", "drop")}
    per_variant = collections.defaultdict(collections.Counter)
    false_parents, false_by_ev, false_examples = 0, collections.Counter(), []
    ev_all = collections.Counter()
    # which threads do what (the tid of a span is the thread of its first I/O)
    threads = {"server_pids": len({s.get("pid") for ss in servers.values() for s in ss}),
               "server_tids": len({s.get("tid") for ss in servers.values() for s in ss}),
               "client_tids": len({s.get("tid") for s in mine if s["kind"] == "CLIENT"}),
               "timer_tids": len({s.get("tid") for s in mine if s["kind"] == "CLIENT" and
                                  s["attributes"].get("url.path", "").startswith("/timer/")}),
               "calls_on_server_thread": [0, 0]}
    timer_calls = parented = other_calls = 0
    audit_false, audit_false_examples = 0, []
    verdicts_seen = collections.Counter()     # verdict -> client spans carrying it
    verdicts_correct = collections.Counter()  # verdict -> ... where ground truth agrees

    false_by_call = collections.Counter()  # timer / leaf (proxied for proxies)

    def false_parent(s, why):
        nonlocal false_parents
        false_parents += 1
        false_by_ev[evidence(s)] += 1
        false_by_call["timer" if "background" in why else "leaf"] += 1
        if len(false_examples) < 8:
            p = server_ids.get(s["parent_span_id"])
            false_examples.append(
                f'{s["attributes"].get("url.path")} tid={s.get("tid")} evidence={evidence(s)} '
                f'parent={p["attributes"].get("url.path") if p else s["parent_span_id"]}'
                f'{" tid=%s" % p.get("tid") if p else ""} ({why})')

    for s in mine:
        if s["kind"] != "CLIENT":
            continue
        a = s["attributes"]
        path = a.get("url.path", "")
        ev = evidence(s)
        ev_all[ev] += 1
        verdict = a.get("hoptrace.propagation")
        if verdict:
            verdicts_seen[verdict] += 1
        if s["parent_span_id"]:
            parented += 1
        if path.startswith("/timer/"):
            timer_calls += 1
            if s["parent_span_id"]:
                false_parent(s, "a background call has no parent")
            if verdict:
                audit_false += 1
                if len(audit_false_examples) < 8:
                    audit_false_examples.append(
                        f"{path}: {verdict} ({a.get('hoptrace.propagation.confidence')}) "
                        "for a call made outside any request")
            continue
        m = leaf_re.match(path)
        r = by_id.get(m.group(m.lastindex)) if m else None
        if r is None:
            other_calls += 1
            continue
        calls_seen[r.id] += 1
        truth = servers.get(r.path, [])
        if truth:
            threads["calls_on_server_thread"][1] += 1
            threads["calls_on_server_thread"][0] += s.get("tid") == truth[0].get("tid")
        ok_parent = {t["span_id"] for t in truth}
        stats = per_mode[r.mode]
        sound = False
        if s["parent_span_id"]:
            if s["parent_span_id"] in ok_parent:
                sound = True
                stats["sound"] += 1
                per_variant[r.variant]["sound"] += 1
            else:
                false_parent(s, f"serving {r.path}")
        if verdict:
            right = verdict == EXPECTED_VERDICT[r.mode]
            if s["parent_span_id"] and not sound:
                right = False
            if right:
                verdicts_correct[verdict] += 1
                stats["verdict_right"] += 1
            else:
                audit_false += 1
                if len(audit_false_examples) < 8:
                    audit_false_examples.append(
                        f"{path}: {verdict} ({a.get('hoptrace.propagation.confidence')}), "
                        f"truth {EXPECTED_VERDICT[r.mode]} serving {r.path}"
                        f"{'' if sound or not s['parent_span_id'] else ' (false parent)'}")

    lost_calls, dup_calls = 0, 0
    for r in plan:
        per_mode[r.mode]["calls"] += r.calls
        per_variant[r.variant]["calls"] += r.calls
        lost_calls += max(0, r.calls - calls_seen[r.id])
        dup_calls += max(0, calls_seen[r.id] - r.calls)
    res["calls_expected"] = sum(r.calls for r in plan)
    res["client_spans_lost"] = lost_calls
    res["client_spans_duplicated"] = dup_calls
    res["timer_calls"] = timer_calls
    res["other_calls"] = other_calls
    res["calls"] = sum(calls_seen.values()) + timer_calls
    res["parented"] = parented
    res["evidence"] = dict(ev_all)
    res["threads"] = threads
    res["false_parents"] = false_parents
    res["false_parents_by_evidence"] = dict(false_by_ev)
    res["false_parents_by_call"] = dict(false_by_call)
    res["false_parent_examples"] = false_examples
    for mode in ("fwd", "drop"):
        res[f"sound_{mode}"] = [per_mode[mode]["sound"], per_mode[mode]["calls"]]
        res[f"verdict_right_{mode}"] = [per_mode[mode]["verdict_right"], per_mode[mode]["calls"]]
    if len(per_variant) > 1:
        res["sound_by_variant"] = {v: [c["sound"], c["calls"]] for v, c in per_variant.items()}
    res["audit_verdicts"] = dict(verdicts_seen)
    res["audit_false"] = audit_false
    res["audit_false_examples"] = audit_false_examples
    # the report at exit must not count more findings than ground truth supports
    if report is not None:
        in_report = collections.Counter()
        for e in report.get("edges", []):
            if e.get("caller") == service:
                for v, c in e.get("results", {}).items():
                    in_report[v] += c.get("calls", 0)
        res["audit_report"] = dict(in_report)
        res["audit_report_false"] = sum(max(0, n - verdicts_correct[v])
                                        for v, n in in_report.items())
        res["audit_report_unclassified"] = {k: report.get(k) for k in
                                            ("unclassified", "not_serving", "without_context")}
    return res


def _pct(pair):
    k, n = pair
    return f"{k}/{n} {100.0 * k / n:.0f}%" if n else "0/0"


def summary_line(res, completeness_note=None):
    fb = ", ".join(f"{k} {v}" for k, v in sorted(res["false_parents_by_evidence"].items()))
    line = (f"truth {res['runtime']}: requests {res['requests']} "
            f"(failed {len(res['requests_failed'])}, server spans lost "
            f"{len(res['server_spans_lost'])}, client spans lost {res['client_spans_lost']}) | "
            f"calls {res['calls']} ({res['calls'] - res['timer_calls']} leaf, "
            f"{res['timer_calls']} timer), parented {res['parented']} | "
            f"false parents {res['false_parents']}{f' ({fb})' if fb else ''} | "
            f"sound parent fwd {_pct(res['sound_fwd'])}, drop {_pct(res['sound_drop'])} | "
            f"audit false {res['audit_false']} (report {res.get('audit_report_false', '-')}), "
            f"right verdict fwd {_pct(res['verdict_right_fwd'])}, "
            f"drop {_pct(res['verdict_right_drop'])}")
    if "sound_by_variant" in res:
        line += " | sound by client " + ", ".join(
            f"{v} {_pct(p)}" for v, p in sorted(res["sound_by_variant"].items()))
    if completeness_note:
        line += f" | completeness NOT ASSERTED: {completeness_note}"
    return line


def write_result(res, line):
    d = os.path.join(BUILD, "runtime-truth")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"{res['runtime']}.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(d, "summary.txt"), "a") as f:
        f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + line + "\n")


def assert_truth(res, complete=True):
    """Zero false parents, zero false audit findings, every request answered; with complete,
    also a server span for every request and a client span for every call."""
    problems = []
    if res["requests_failed"]:
        problems.append(f"{len(res['requests_failed'])} requests failed: "
                        f"{res['requests_failed'][:5]}")
    if res["false_parents"]:
        problems.append(f"{res['false_parents']} false parents "
                        f"{res['false_parents_by_evidence']}, e.g.\n    "
                        + "\n    ".join(res["false_parent_examples"]))
    if res["audit_false"]:
        problems.append(f"{res['audit_false']} false audit findings, e.g.\n    "
                        + "\n    ".join(res["audit_false_examples"]))
    if res.get("audit_report_false"):
        problems.append(f"the audit report counts {res['audit_report_false']} findings more "
                        f"than ground truth allows: {res['audit_report']}")
    if complete:
        if res["server_spans_lost"]:
            problems.append(f"{len(res['server_spans_lost'])} requests without a server span: "
                            f"{res['server_spans_lost'][:5]}")
        if res["server_spans_duplicated"]:
            problems.append(f"requests with several server spans: "
                            f"{res['server_spans_duplicated'][:5]}")
        if res["client_spans_lost"]:
            problems.append(f"{res['client_spans_lost']} calls without a client span")
        if res["client_spans_duplicated"]:
            problems.append(f"{res['client_spans_duplicated']} client spans more than calls")
    assert not problems, f"{res['runtime']}:\n  " + "\n  ".join(problems)
