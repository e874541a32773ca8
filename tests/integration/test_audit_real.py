"""Propagation audit against real programs (issue 4): a Node.js app instrumented with the
real OpenTelemetry SDK, nginx proxy_pass, Python http.server apps that drop or garble the
context, and a multi-service topology on loopback with one broken hop. The live report
(--audit-json, --audit) is checked against the offline one (`hoptrace audit FILE`).
"""
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from urllib.parse import quote

from lib import (unavailable, AGENT, BUILD, HERE, IN_CI, Agent, Proc, SkipTest, free_port, nginx, npm_modules,
                 one, python_server,
                 require, run, spans_where, wait_port)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TP = f"00-{TRACE}-{PARENT}-01"
TRACESTATE = "congo=t61rcWkgMzE"

# Verified with Node 20 (the 0.3xx line needs Node >= 22.15). About 70 packages, ~10 s.
OTEL_PACKAGES = {
    "@opentelemetry/api": "1.9.0",
    "@opentelemetry/sdk-node": "0.214.0",
    "@opentelemetry/instrumentation-http": "0.214.0",
}
BROKEN = ("dropped", "invalid", "restarted")


# ---- helpers ------------------------------------------------------------------------------

def otel_node_modules():
    """node_modules with the pinned OpenTelemetry packages (see lib.npm_modules)."""
    return npm_modules("npm", OTEL_PACKAGES)


def start_otel_app(port, downstream, service):
    """otel_app.js, the real OpenTelemetry Node SDK with HTTP instrumentation."""
    modules = otel_node_modules()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(NODE_PATH=modules, OTEL_SERVICE_NAME=service, OTEL_TRACES_EXPORTER="none",
               OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    log = tempfile.NamedTemporaryFile("w+", prefix="hoptrace-node-", suffix=".log", delete=False)
    p = Proc(["node", os.path.join(HERE, "otel_app.js"), str(port), str(downstream)], env=env,
             stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, timeout=30)
    except AssertionError:
        p.stop()
        log.seek(0)
        raise AssertionError(f"otel_app.js did not start:\n{log.read()[-3000:]}")
    return p


def start_nginx_proxy(port, backend):
    """nginx, one worker, proxy_pass to 127.0.0.1:backend with its default header handling
    (every request header forwarded unchanged, traceparent and tracestate included)."""
    return nginx(port, f"location / {{ proxy_pass http://127.0.0.1:{backend}; }}",
                 static_files=False)


def http_get(url, *headers):
    """curl (a real client that sends only the headers it is given); the response body."""
    require("curl")
    argv = ["curl", "-sS", "--fail"]
    for h in headers:
        argv += ["-H", h]
    return run([*argv, url]).stdout.decode()


def live_report(agent):
    """The --audit-json document: the last line the agent printed on stdout."""
    lines = [line for line in agent.stdout().splitlines() if line.strip()]
    assert lines, "the agent printed no audit report"
    return json.loads(lines[-1])


def offline(path, *args):
    """`hoptrace audit [args] path`: (stdout, stderr), checked for sanitizer reports."""
    r = run([AGENT, "audit", *args, path], check=False)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, f"hoptrace audit failed ({r.returncode}):\n{err}"
    for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert bad not in err, f"sanitizer report from hoptrace audit:\n{err}"
    assert "malformed" not in err, err
    return r.stdout.decode(), err


def verdicts(report):
    return {(e["caller"], e["callee"]): e["verdict"] for e in report["edges"]}


def client_calls(spans, service, port):
    return [s for s in spans if s["kind"] == "CLIENT" and s["service.name"] == service
            and s["attributes"].get("server.port") == port]


class _NoAgent:
    """Stands for an agent not started yet, so cleanup code needs no special case."""

    def kill(self):
        pass


def stop_all(agent, procs):
    agent.kill()
    for p in procs:
        p.stop()


# ---- 1. a real OpenTelemetry SDK propagates: ok, exact ---------------------------------------

def test_audit_real_otel_node_sdk_is_ok():
    front, leaf_port = free_port(), free_port()
    procs = [python_server(leaf_port, script="app_server.py", service="leaf")]
    agent = _NoAgent()
    try:
        procs.append(start_otel_app(front, leaf_port, "otel-node"))
        # always_on: the second request's context says "not sampled", which the default
        # parent-based sampler honours; this test wants both calls' spans to inspect
        agent = Agent("--port", str(front), "--port", str(leaf_port), "--audit-json",
                      "--sampler", "always_on")
        sampled = json.loads(http_get(f"http://127.0.0.1:{front}/call?path=%2Fleaf",
                                      f"traceparent: {TP}", f"tracestate: {TRACESTATE}"))
        # not sampled upstream: the SDK still passes the context on (W3C 3.2.2.5)
        unsampled = json.loads(http_get(f"http://127.0.0.1:{front}/call?path=%2Fleaf",
                                        f"traceparent: 00-{TRACE}-{PARENT}-00"))
        spans = agent.stop()
    finally:
        stop_all(agent, procs)
    for body in (sampled, unsampled):
        # what the SDK itself did: joined the incoming trace, sent a child context
        assert body["status"] == 200 and body["server_trace_id"] == TRACE, body
        assert body["sent_traceparent"].split("-")[1] == TRACE, body
    calls = sorted(client_calls(spans, "otel-node", leaf_port), key=lambda s: s["start_unix_ns"])
    assert len(calls) == 2, spans
    for call, body in zip(calls, (sampled, unsampled)):
        a = call["attributes"]
        assert a["hoptrace.propagation"] == "ok", call
        # the outgoing trace id matched the one server span of that trace in flight
        assert a["hoptrace.propagation.confidence"] == "exact", call
        assert a["hoptrace.callee.service"] == "leaf"
        # hoptrace's client span is the SDK's client span: same ids
        sdk_client_id = body["sent_traceparent"].split("-")[2]
        assert call["trace_id"] == TRACE and call["span_id"] == sdk_client_id, (call, body)
    # the SDK forwarded the tracestate with the sampled request: nothing lost
    assert "hoptrace.propagation.tracestate" not in calls[0]["attributes"]
    leaves = spans_where(spans, kind="SERVER", attr_url__path="/leaf")
    assert {s["parent_span_id"] for s in leaves} == {c["span_id"] for c in calls}
    assert all(s["attributes"]["hoptrace.traceparent.received"] == "valid" for s in leaves)
    report = live_report(agent)
    assert verdicts(report) == {("otel-node", "leaf"): "ok"}, report
    assert report["edges"][0]["results"]["ok"]["calls"] == 2


# ---- 2. nginx proxy_pass forwards the header unchanged: forwarded ----------------------------

def test_audit_real_nginx_proxy_forwards():
    port, backend = free_port(), free_port()
    procs = [python_server(backend, script="app_server.py", service="backend")]
    agent = _NoAgent()
    try:
        procs.append(start_nginx_proxy(port, backend))
        agent = Agent("--port", str(port), "--port", str(backend), "--audit-json")
        assert http_get(f"http://127.0.0.1:{port}/leaf", f"traceparent: {TP}",
                        f"tracestate: {TRACESTATE}") == "leaf"
        spans = agent.stop()
    finally:
        stop_all(agent, procs)
    call = one(spans, kind="CLIENT", **{"service.name": "nginx"})
    a = call["attributes"]
    assert a["hoptrace.propagation"] == "forwarded", call
    # nginx's worker is one thread serving many connections, but the forwarded header names
    # the trace, and one nginx request of that trace is in flight: the link is exact, not
    # a guess from the thread
    assert a["hoptrace.propagation.confidence"] == "exact", call
    assert a["hoptrace.callee.service"] == "backend"
    assert "hoptrace.propagation.tracestate" not in a  # nginx forwards tracestate too
    entry = one(spans, kind="SERVER", **{"service.name": "nginx"})
    assert call["trace_id"] == TRACE and call["parent_span_id"] == entry["span_id"]
    # a forwarded header carries the upstream span id: the client span must not reuse it
    assert call["span_id"] != PARENT
    back = one(spans, kind="SERVER", **{"service.name": "backend"})
    assert back["parent_span_id"] == PARENT
    assert back["attributes"]["hoptrace.caller.service"] == "nginx"
    report = live_report(agent)
    assert verdicts(report) == {("nginx", "backend"): "forwarded"}, report


# ---- 3. Python apps that drop or garble the context ------------------------------------------

def test_audit_real_python_drops_and_invalid():
    leaf_port, drop_port, bad_port = free_port(), free_port(), free_port()
    procs = [python_server(leaf_port, script="app_server.py", service="py-leaf"),
             python_server(drop_port, script="app_server.py", service="py-drop"),
             python_server(bad_port, script="app_server.py", service="py-invalid")]
    agent = _NoAgent()
    try:
        agent = Agent("--port", str(leaf_port), "--port", str(drop_port), "--port",
                      str(bad_port), "--audit-json")
        http_get(f"http://127.0.0.1:{drop_port}/hop?to={leaf_port}&propagate=none",
                 f"traceparent: {TP}")
        http_get(f"http://127.0.0.1:{bad_port}/hop?to={leaf_port}&propagate=invalid",
                 f"traceparent: {TP}")
        # no incoming context: calling on without one is no finding
        http_get(f"http://127.0.0.1:{drop_port}/hop?to={leaf_port}&propagate=none")
        spans = agent.stop()
    finally:
        stop_all(agent, procs)
    dropped = client_calls(spans, "py-drop", leaf_port)
    assert len(dropped) == 2
    classified = [s for s in dropped if "hoptrace.propagation" in s["attributes"]]
    assert len(classified) == 1, dropped
    assert classified[0]["attributes"]["hoptrace.propagation"] == "dropped"
    # http.server threads: the call is made on the thread that read the request
    assert classified[0]["attributes"]["hoptrace.propagation.confidence"] == "thread"
    bad = client_calls(spans, "py-invalid", leaf_port)
    assert len(bad) == 1, bad
    bad = bad[0]
    assert bad["attributes"]["hoptrace.propagation"] == "invalid"
    assert bad["attributes"]["hoptrace.traceparent.sent"] == "invalid"
    assert bad["attributes"]["hoptrace.propagation.confidence"] == "thread"
    report = live_report(agent)
    assert verdicts(report) == {("py-drop", "py-leaf"): "dropped",
                                ("py-invalid", "py-leaf"): "invalid"}, report
    edge = {e["caller"]: e for e in report["edges"]}["py-drop"]
    assert edge["calls"] == 1 and edge["results"]["dropped"]["example_trace_id"] == TRACE
    # the curl calls and the context-less hop are counted, not classified
    assert report["unclassified"] >= 2


# ---- 4 and 5. a topology with one broken hop, live and offline -------------------------------

class Topology:
    """curl -> web (Node, OTel SDK) -> nginx (proxy_pass) -> orders (Python, calls on WITHOUT
    the context) -> stock (Python). Exactly one hop, orders -> stock, drops the context."""

    def __init__(self):
        self.ports = {n: free_port() for n in ("web", "nginx", "orders", "stock")}
        p = self.ports
        self.procs = [python_server(p["stock"], script="app_server.py", service="stock"),
                      python_server(p["orders"], script="app_server.py", service="orders")]
        try:
            self.procs.append(start_nginx_proxy(p["nginx"], p["orders"]))
            self.procs.append(start_otel_app(p["web"], p["nginx"], "web"))
        except BaseException:
            self.stop()
            raise
        orders_path = f"/hop?to={p['stock']}&propagate=none&path=%2Fleaf"
        self.url = f"http://127.0.0.1:{p['web']}/call?path={quote(orders_path, safe='')}"
        self.port_args = [a for port in p.values() for a in ("--port", str(port))]

    def request(self):
        body = json.loads(http_get(self.url, f"traceparent: {TP}"))
        assert body["status"] == 200, body
        return body

    def stop(self):
        for proc in self.procs:
            proc.stop()


def run_topology(*agent_args, requests=3):
    topo = Topology()
    agent = _NoAgent()
    try:
        agent = Agent(*topo.port_args, *agent_args)
        bodies = [topo.request() for _ in range(requests)]
        spans = agent.stop()
    finally:
        agent.kill()
        topo.stop()
    return topo, agent, spans, bodies


EXPECTED_EDGES = {("web", "nginx"): "ok", ("nginx", "orders"): "forwarded",
                  ("orders", "stock"): "dropped"}


def summary(spans):
    """One line per span, for failure messages."""
    keys = ("hoptrace.propagation", "hoptrace.propagation.confidence", "hoptrace.parent.confidence",
            "hoptrace.callee.service", "hoptrace.caller.service", "server.port")
    return "\n".join(f'{s["kind"]:6} {s["service.name"]:8} {s["name"]:24} trace={s["trace_id"]} '
                     f'span={s["span_id"]} parent={s["parent_span_id"] or "-":16} '
                     + " ".join(f"{k.split('.', 1)[1]}={s['attributes'][k]}" for k in keys
                                if k in s["attributes"])
                     for s in sorted(spans, key=lambda s: s["start_unix_ns"]))


def check_topology_report(report, requests, spans):
    assert verdicts(report) == EXPECTED_EDGES, \
        json.dumps(report, indent=1) + "\nspans:\n" + summary(spans)
    for e in report["edges"]:
        # every call on each edge got the same result: no false finding on any call
        assert e["calls"] == requests and list(e["results"]) == [e["verdict"]], \
            f"{e}\nspans:\n{summary(spans)}"
        assert e["tracestate_dropped"] == 0
    broken = [e for e in report["edges"] if e["verdict"] in BROKEN]
    assert [(e["caller"], e["callee"]) for e in broken] == [("orders", "stock")]
    evidence = {e["caller"]: e["results"][e["verdict"]]["confidence"] for e in report["edges"]}
    assert evidence == {"web": "exact", "nginx": "exact", "orders": "thread"}, \
        f"{evidence}\nspans:\n{summary(spans)}"
    assert broken[0]["results"]["dropped"]["example_trace_id"] == TRACE


def test_audit_real_topology_names_the_one_broken_hop():
    topo, agent, spans, _ = run_topology("--audit-json")
    live = live_report(agent)
    check_topology_report(live, 3, spans)
    # the same report offline, from the agent's JSON span file (5.)
    out, _ = offline(agent.out_path, "--json")
    assert json.loads(out) == live, (out, live)
    assert out.strip() == agent.stdout().strip().splitlines()[-1]
    # and from standard input
    with open(agent.out_path) as f:
        r = run([AGENT, "audit", "--json", "-"], stdin=f)
    assert json.loads(r.stdout) == live
    # without repair the broken hop splits the request into two traces
    stock = spans_where(spans, kind="SERVER", **{"service.name": "stock"})
    assert len(stock) == 3 and all(s["trace_id"] != TRACE for s in stock)
    assert all(s["attributes"]["hoptrace.caller.service"] == "orders" for s in stock)


def connected(spans):
    """One trace, one root, every other span's parent among the spans."""
    ids = {s["span_id"] for s in spans}
    roots = [s for s in spans if not s["parent_span_id"]]
    orphans = [s for s in spans if s["parent_span_id"] and s["parent_span_id"] not in ids]
    return len({s["trace_id"] for s in spans}) == 1 and len(roots) == 1 and not orphans


def test_audit_real_topology_stitched_is_one_trace():
    topo, agent, spans, bodies = run_topology("--repair=stitch", "--audit", requests=1)
    # the table, live and offline, is the same (5.)
    table = agent.stdout()
    out, _ = offline(agent.out_path)
    assert out == table, f"live:\n{table}\noffline:\n{out}"
    print(f"\n{table}", end="")
    head = ("propagation audit:", "not classified", "CALLER ")
    rows = {tuple(line.split()[:2]): line.split()[3] for line in table.splitlines()
            if len(line.split()) > 3 and not line.startswith((" ",) + head)}
    assert rows == EXPECTED_EDGES, table + summary(spans)
    # stitching repairs the trace; it does not hide the finding
    offline_json = json.loads(offline(agent.out_path, "--json")[0])
    check_topology_report(offline_json, 1, spans)
    assert {s["trace_id"] for s in spans} == {TRACE}
    assert connected(spans), "\n".join(json.dumps(s) for s in spans)
    stock = one(spans, kind="SERVER", **{"service.name": "stock"})
    call = one(spans, kind="CLIENT", **{"service.name": "orders"})
    assert stock["parent_span_id"] == call["span_id"]
    assert stock["attributes"]["hoptrace.repair"] == "stitched"
    assert agent.counters["spans_stitched"] == 1
    # every service's spans are in it: curl, web (server, client), nginx, orders, stock
    services = sorted(s["service.name"] for s in spans)
    assert services == sorted(["curl", "web", "web", "nginx", "nginx", "orders", "orders",
                               "stock"]), services
    # and the web -> nginx call is the SDK's own client span
    web_call = one(spans, kind="CLIENT", **{"service.name": "web"})
    assert web_call["span_id"] == bodies[0]["sent_traceparent"].split("-")[2]
