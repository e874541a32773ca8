"""Traces from elsewhere (issue 14): `hoptrace audit` reading spans from an OTLP JSON file, a
Jaeger query API and a Tempo API, and auditing hops between hosts from there.

- otlp:FILE: the real OpenTelemetry JS SDK's OTLP/HTTP JSON exporter (npm
  @opentelemetry/exporter-trace-otlp-http) posts two services' spans to a receiver that
  writes each request body as one line, as the Collector's file exporter does.
- jaeger:URL and tempo:URL: recorded answers (trace_api_fixtures/, shaped as the documented
  JSON models: Jaeger's /api/services and /api/traces, Tempo's /api/search and
  /api/traces/<id> with base64 ids, "batches", and the v2 {"trace":...} wrapping) replayed by
  trace_api.py. Faults: HTTP errors, a response past the size bound, a token, secrets in the
  URL never shown.
- Cross-host: one real agent run of a two-service chain, its spans split by service into two
  "hosts" (each without what only the other host's agent could know), served through the
  Jaeger replay as a backend holding both: the audit names the remote callee.
"""
import json
import os
import subprocess
import tempfile
import time
from urllib.parse import quote

from lib import (AGENT, HERE, Agent, Proc, curl, free_port, npm_modules, one, python_server,
                 run, wait_port)
from trace_api import TraceApi

FIXTURES = os.path.join(HERE, "trace_api_fixtures")

# Verified with Node 20.20 / npm 11 (as test_otlp_export.py's pins).
NPM_PACKAGES = {
    "@opentelemetry/api": "1.9.0",
    "@opentelemetry/core": "2.6.1",
    "@opentelemetry/sdk-trace-base": "2.6.1",
    "@opentelemetry/resources": "2.6.1",
    "@opentelemetry/exporter-trace-otlp-http": "0.214.0",
}


def audit(*sources, env=None, check=True):
    """hoptrace audit --json over the sources: (report, stderr, returncode)."""
    e = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
    e.pop("HOPTRACE_SOURCE_TOKEN", None)
    e.update(env or {})
    r = run([AGENT, "audit", "--json", *sources], check=False, timeout=50, env=e)
    err = r.stderr.decode(errors="replace")
    for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert bad not in err, err[-4000:]
    if check:
        assert r.returncode == 0, err[-3000:]
    report = json.loads(r.stdout) if r.returncode == 0 else None
    return report, err, r.returncode


def edges(report):
    return {(e["caller"], e["callee"]): e for e in report["edges"]}


# The fixture's traces (trace_api_fixtures/): frontend -> cart by SDKs, propagated; frontend ->
# cart with the context dropped (two traces); orders (host A) -> payments (host B) by
# hoptrace, the callee known only from host B's server span.
def assert_fixture_report(report):
    e = edges(report)
    assert set(e) == {("frontend", "cart"), ("orders", "payments")}, report
    assert e[("frontend", "cart")]["results"] == {"ok": {
        "calls": 1, "example_trace_id": "6f1a0b2c3d4e5f60718293a4b5c6d7e8",
        "confidence": "server_span"}}
    assert e[("orders", "payments")]["results"] == {"ok": {
        "calls": 1, "example_trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "confidence": "exact"}}
    assert report["calls"] == 2
    assert report["unmatched_client_calls"] == 1


def test_jaeger_replay():
    api = TraceApi(fixture=FIXTURES)
    try:
        report, err, _ = audit(f"jaeger:{api.url}")
        assert "skipped" not in err and "left out" not in err, err
        assert_fixture_report(report)
        # every service's traces asked for, each trace (listed under two services) counted
        # once: the same report as above says so
        reqs = api.requests
        assert reqs[0]["path"] == "/api/services"
        asked = sorted(r["query"]["service"] for r in reqs[1:])
        assert asked == ["cart", "frontend", "orders", "payments"], reqs
        assert all(r["query"]["limit"] == "1000" for r in reqs[1:])
        assert all(r["headers"].get("Accept") == "application/json" for r in reqs)
        # the table says what could not be joined
        r = run([AGENT, "audit", f"jaeger:{api.url}/"], check=True)
        assert b"not joined: 1 client call(s)" in r.stdout
    finally:
        api.stop()


def test_tempo_replay():
    api = TraceApi(fixture=FIXTURES)
    try:
        report, err, _ = audit(f"tempo:{api.url}")
        assert "skipped" not in err and "left out" not in err, err
        assert_fixture_report(report)
        paths = api.paths()
        assert paths[0] == "/api/search"
        # search ids without their leading zeros are asked for whole
        assert "/api/traces/0000000000000000a1b2c3d4e5f60718" in paths
        assert len(paths) == 5
        # a trace gone between the search and the fetch (retention) is counted, not fatal
        del api.tempo_traces["9e8d7c6b5a4938271605f4e3d2c1b0a9"]
        report, err, _ = audit(f"tempo:{api.url}")
        assert "trace 9e8d7c6b5a4938271605f4e3d2c1b0a9: not found (HTTP 404): skipped" in err
        assert "skipped 1 malformed" in err
        assert_fixture_report(report)
    finally:
        api.stop()


def test_remote_faults():
    api = TraceApi(fixture=FIXTURES)
    try:
        # secrets in the URL (userinfo, query) never appear in messages
        url = f"http://reader:s3cret-pw@127.0.0.1:{api.port}/?apikey=s3cret-key"
        api.fail("/api/services", 503)
        _, err, rc = audit(f"jaeger:{url}", check=False)
        assert rc == 1
        assert f"jaeger:http://127.0.0.1:{api.port}/: GET /api/services: HTTP 503" in err, err
        assert "s3cret" not in err
        api.failures.clear()
        # a response past the bound is refused, not buffered whole: one Tempo trace is
        # skipped and counted; a Jaeger query is asked again for fewer traces
        api.huge("/api/traces/6f1a0b2c3d4e5f60718293a4b5c6d7e8", 40 << 20)
        report, err, _ = audit(f"tempo:{api.url}")
        assert "GET /api/traces/6f1a0b2c3d4e5f60718293a4b5c6d7e8: response larger than 32 MiB: refused" in err, err
        assert "skipped 1 malformed" in err
        assert set(edges(report)) == {("orders", "payments")}
        api.huge_bodies.clear()
        api.requests.clear()
        api.huge("/api/traces", 40 << 20, when=lambda q: int(q["limit"]) > 300)
        report, err, _ = audit(f"jaeger:{api.url}")
        assert_fixture_report(report)
        limits = [r["query"]["limit"] for r in api.requests if r["query"].get("service") == "cart"]
        assert limits == ["1000", "500", "250"], limits
        api.huge_bodies.clear()
        # a bearer token from the environment, never shown; without it: said what to do
        api.require_token("t0ken-value")
        _, err, rc = audit(f"jaeger:{api.url}", check=False)
        assert rc == 1 and "HTTP 401 (set HOPTRACE_SOURCE_TOKEN" in err, err
        report, err, _ = audit(f"jaeger:{api.url}", env={"HOPTRACE_SOURCE_TOKEN": "t0ken-value"})
        assert_fixture_report(report)
        assert "t0ken" not in err
        assert api.requests[-1]["headers"]["Authorization"] == "Bearer t0ken-value"
        # not JSON where JSON is due
        api.token = None
        api.jaeger_services = ["x"]
        api.jaeger_traces = {}
        api.fail("/api/traces", 200)
        _, err, rc = audit(f"jaeger:{api.url}", check=False)
        assert rc == 0  # {"errors":[...]} has no "data": counted, not fatal
        assert "no \"data\" array (not a Jaeger API answer): skipped" in err, err
        # a backend that hangs: the request's timeout ends the reading, said clearly
        api.failures.clear()
        api.stall("/api/services", 5)
        t0 = time.monotonic()
        _, err, rc = audit(f"jaeger:{api.url}", env={"HOPTRACE_SOURCE_TIMEOUT": "1"}, check=False)
        assert rc == 1 and time.monotonic() - t0 < 4, err
        assert "GET /api/services: " in err and "timed out" in err.lower(), err
        _, err, rc = audit(f"jaeger:{api.url}", env={"HOPTRACE_SOURCE_TIMEOUT": "0"}, check=False)
        assert rc == 1 and "HOPTRACE_SOURCE_TIMEOUT must be seconds from 1 to 3600" in err, err
    finally:
        api.stop()
    # nothing listening
    port = free_port()
    _, err, rc = audit(f"tempo:http://127.0.0.1:{port}", check=False)
    assert rc == 1 and f"tempo:http://127.0.0.1:{port}: GET /api/search: " in err, err
    _, err, rc = audit("jaeger:ftp://x", check=False)
    assert rc == 1 and "not an http:// or https:// URL" in err


def node_send(url):
    env = dict(os.environ, NODE_PATH=npm_modules("npm-otlp-json", NPM_PACKAGES))
    r = subprocess.run(["node", os.path.join(HERE, "otlp_json_send.js"), url],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=50, env=env)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    return json.loads(r.stdout)


def test_otlp_file_from_real_js_exporter():
    d = tempfile.mkdtemp(prefix="hoptrace-otlp-file-")
    path = os.path.join(d, "traces.jsonl")
    port = free_port()
    receiver = Proc(["python3", os.path.join(HERE, "otlp_file_receiver.py"), str(port), path])
    try:
        wait_port(port)
        sent = node_send(f"http://127.0.0.1:{port}/v1/traces")
    finally:
        receiver.stop()
    assert [r["code"] for r in sent["results"]] == [0, 0], sent["results"]
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    assert len(lines) == 3 and lines[2] == b"", "one line per export request"
    for line in lines[:2]:
        assert json.loads(line)["resourceSpans"]
    report, err, _ = audit(f"otlp:{path}")
    assert "skipped" not in err and "left out" not in err, err
    spans = sent["spans"]
    call = next(s for s in spans if s["kind"] == 2 and s["service"] == "frontend"
                and s["attributes"].get("http.response.status_code") == 500)
    # the hop that passed the context on: frontend's CLIENT span is backend's SERVER parent
    assert edges(report) == {("frontend", "backend"): {
        "caller": "frontend", "callee": "backend", "calls": 1, "verdict": "ok",
        "tracestate_dropped": 0, "results": {"ok": {
            "calls": 1, "example_trace_id": call["trace_id"], "confidence": "server_span"}}}}
    # the call whose context was dropped left two traces: never joined by guess
    assert report["unmatched_client_calls"] == 1
    assert report["calls"] == 1
    # the file read twice (two sources) is the same spans twice: counted twice, same edges
    report2, _, _ = audit(f"otlp:{path}", f"otlp:{path}")
    assert report2["calls"] == 2 and report2["unmatched_client_calls"] == 2


# ---- cross-host, from a real agent run ----------------------------------------------------

def to_jaeger_trace(trace_id, spans):
    """hoptrace JSON span lines of one trace in Jaeger's JSON model (as its query API
    answers): typed tags, span.kind and the error status as tags, processes by service."""
    procs, out = {}, []
    for s in spans:
        pid = procs.setdefault(s["service.name"], f"p{len(procs) + 1}")
        tags = [{"key": "span.kind", "type": "string", "value": s["kind"].lower()}]
        for k, v in s["attributes"].items():
            t = "bool" if isinstance(v, bool) else "int64" if isinstance(v, int) else "string"
            tags.append({"key": k, "type": t, "value": v})
        if s["status"] == "ERROR":
            tags += [{"key": "error", "type": "bool", "value": True},
                     {"key": "otel.status_code", "type": "string", "value": "ERROR"}]
        refs = [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": s["parent_span_id"]}] \
            if s["parent_span_id"] else []
        out.append({"traceID": trace_id, "spanID": s["span_id"], "operationName": s["name"],
                    "references": refs, "startTime": s["start_unix_ns"] // 1000,
                    "duration": s["duration_ns"] // 1000, "tags": tags, "logs": [],
                    "processID": pid, "warnings": None, "flags": s["trace_flags"]})
    processes = {pid: {"serviceName": svc, "tags": [
        {"key": k, "type": "string", "value": v} for k, v in sorted(
            next(x for x in spans if x["service.name"] == svc)["resource"].items())]}
        for svc, pid in procs.items()}
    return {"traceID": trace_id, "spans": out, "processes": processes, "warnings": None}


# What only the other host's agent could know: the callee's service on the calling host, the
# caller's on the serving host.
ONE_HOST_ONLY = ("hoptrace.callee.service", "hoptrace.caller.service")


def test_cross_host_audit_through_jaeger():
    ports = [free_port(), free_port()]
    servers = [python_server(ports[0], script="app_server.py", service="edge-svc"),
               python_server(ports[1], script="app_server.py", service="stock-svc")]
    agent = Agent("--port", str(ports[0]), "--port", str(ports[1]))
    trace = "5c0ffee0000000000000000000000001"
    try:
        for mode in ("child", "none"):
            leaf = quote("/leaf", safe="")
            assert curl("-H", f"traceparent: 00-{trace}-00f067aa0ba902b7-01",
                        f"http://127.0.0.1:{ports[0]}/hop?to={ports[1]}&propagate={mode}"
                        f"&path={leaf}").stdout == b"200"
        spans = agent.stop()
    finally:
        agent.kill()
        for s in servers:
            s.stop()
    calls = [s for s in spans if s["kind"] == "CLIENT" and s["service.name"] == "edge-svc"]
    assert sorted(c["attributes"]["hoptrace.propagation"] for c in calls) == ["dropped", "ok"]
    # two "hosts": each service's spans as its own host's agent would have written them
    hosts = {"edge-svc": [], "stock-svc": []}
    for s in spans:
        if s["service.name"] in hosts:
            s = dict(s, attributes={k: v for k, v in s["attributes"].items()
                                    if k not in ONE_HOST_ONLY})
            hosts[s["service.name"]].append(s)
    d = tempfile.mkdtemp(prefix="hoptrace-hosts-")
    files = []
    for name, host_spans in hosts.items():
        files.append(os.path.join(d, f"{name}.jsonl"))
        with open(files[-1], "w") as f:
            for s in host_spans:
                f.write(json.dumps(s) + "\n")
    # each host alone cannot name the other side
    alone, _, _ = audit(files[0])
    assert set(edges(alone)) == {("edge-svc", f"127.0.0.1:{ports[1]}")}, alone
    # a backend holding both hosts' spans, grouped by trace as Jaeger stores them
    by_trace = {}
    for s in hosts["edge-svc"] + hosts["stock-svc"]:
        by_trace.setdefault(s["trace_id"], []).append(s)
    traces = {tid: to_jaeger_trace(tid, ss) for tid, ss in by_trace.items()}
    api = TraceApi()
    api.set_jaeger({svc: [traces[tid] for tid, ss in by_trace.items()
                          if any(x["service.name"] == svc for x in ss)] for svc in hosts})
    try:
        report, err, _ = audit(f"jaeger:{api.url}")
    finally:
        api.stop()
    assert "skipped" not in err, err
    e = edges(report)
    # the hop that passed the context on: joined through stock-svc's server span
    ok = e[("edge-svc", "stock-svc")]
    assert ok["results"] == {"ok": {"calls": 1, "example_trace_id": trace,
                                    "confidence": "exact"}}, report
    # the dropped one started a new trace on host B: no join, the address as before
    dropped = e[("edge-svc", f"127.0.0.1:{ports[1]}")]
    assert list(dropped["results"]) == ["dropped"]
    assert set(e) == {("edge-svc", "stock-svc"), ("edge-svc", f"127.0.0.1:{ports[1]}")}
    assert report["unmatched_client_calls"] == 0
    # the same two files read as two sources give the same report as the backend
    both, _, _ = audit(*files)
    assert both["edges"] == report["edges"]
