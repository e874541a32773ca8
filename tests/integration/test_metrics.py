"""RED, service-graph and propagation metrics (issue 12), exported as OTLP metrics to real
receivers: a Python OTLP/HTTP receiver that keeps each POST to /v1/metrics, and
otlp_grpc_receiver.js (node's http2) for the gRPC MetricsService. Every request is decoded
by protobufjs with npm's OpenTelemetry schema (otlp_decode.js --metrics), not by our code.

A known mix of requests to app_server.py (real Python servers, /slow?ms=N sleeps N ms) is
checked exactly: counts per status, error counts, and the buckets of known latencies. Then
a two-service chain on this host (front -> back), with each propagation mode of app_server,
gives the service-graph edge and the propagation verdict counts.
"""
import json
import os
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lib import Agent, free_port, npm_modules, require, run
from test_otlp_export import NPM_PACKAGES, app_server, grpc_receiver

HERE = os.path.dirname(os.path.abspath(__file__))
BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TP = f"00-{TRACE}-00f067aa0ba902b7-01"


class HttpMetricsReceiver:
    """OTLP/HTTP receiver: each POST /v1/metrics body to DIR/request-N.bin, answered 200 with
    an empty ExportMetricsServiceResponse."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hoptrace-metrics-")
        self.paths = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.paths.append(self.path)
                n = len(outer.paths)
                with open(os.path.join(outer.dir, f"request-{n}.bin"), "wb") as f:
                    f.write(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def requests_in(directory):
    files = [f for f in os.listdir(directory) if f.startswith("request-") and f.endswith(".bin")]
    return [os.path.join(directory, f) for f in sorted(files, key=lambda f: int(f[8:-4]))]


def decode(files):
    env = dict(os.environ, NODE_PATH=npm_modules("npm-otlp", NPM_PACKAGES))
    r = subprocess.run(["node", os.path.join(HERE, "otlp_decode.js"), "--metrics", *files],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return [json.loads(line)["request"] for line in r.stdout.decode().splitlines() if line]


def _value(v):
    for k in ("stringValue", "boolValue"):
        if k in v:
            return v[k]
    if "intValue" in v:
        return int(v["intValue"])
    raise AssertionError(f"unexpected attribute value {v}")


def attrs_of(kvs):
    return {kv["key"]: _value(kv["value"]) for kv in kvs or []}


def points(request):
    """Every data point: (service.name, metric name, attributes, point, metric, pid)."""
    out = []
    for rm in request.get("resourceMetrics", []):
        res = attrs_of(rm.get("resource", {}).get("attributes"))
        svc = res.get("service.name")
        for sm in rm.get("scopeMetrics", []):
            for m in sm.get("metrics", []):
                data = m.get("histogram") or m.get("sum")
                for p in data.get("dataPoints", []):
                    out.append((svc, m["name"], attrs_of(p.get("attributes")), p, m,
                                res.get("process.pid")))
    return out


def select(pts, svc=None, name=None, **attrs):
    return [p for p in pts if (svc is None or p[0] == svc) and (name is None or p[1] == name)
            and all(p[2].get(k.replace("_", ".")) == v for k, v in attrs.items())]


def bucket(seconds):
    """The index of the semconv bucket (upper-inclusive) a latency falls in."""
    return next((i for i, b in enumerate(BOUNDS) if seconds <= b), len(BOUNDS))


def curl(url, *headers):
    require("curl")
    argv = ["curl", "-sS", "-o", "/dev/null"]
    for h in headers:
        argv += ["-H", h]
    run([*argv, url])


def run_mix(agent_env, output="json"):
    """The known mix against one app_server; returns (the agent, the app's service name)."""
    svc = "metrics-app-" + uuid.uuid4().hex[:8]
    port = free_port()
    agent = Agent(output=output, env=agent_env)
    app = app_server(port, {"OTEL_SERVICE_NAME": svc})
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(4):
            curl(f"{base}/status?code=200")
        for _ in range(2):
            curl(f"{base}/status?code=500")
        curl(f"{base}/status?code=404")
        for _ in range(3):
            curl(f"{base}/slow?ms=150")   # (0.1, 0.25]
        for _ in range(2):
            curl(f"{base}/slow?ms=320")   # (0.25, 0.5]
        curl(f"{base}/slow?ms=560")       # (0.5, 0.75]
        time.sleep(0.5)
    finally:
        app.stop()
        agent.stop()
    return agent, svc


def check_mix(requests, svc):
    assert requests, "no metrics request reached the receiver"
    last = points(requests[-1])
    server = select(last, svc, "http.server.request.duration")
    assert server, f"no server histogram for {svc}: {[p[:3] for p in last][:20]}"
    for _, _, attrs, p, m, _ in server:
        assert m["unit"] == "s"
        assert m["histogram"]["aggregationTemporality"] == "AGGREGATION_TEMPORALITY_CUMULATIVE"
        assert [float(b) for b in p["explicitBounds"]] == BOUNDS
        assert attrs["http.request.method"] == "GET" and attrs["url.scheme"] == "http"
        assert int(p["startTimeUnixNano"]) < int(p["timeUnixNano"])
        assert sum(int(c) for c in p["bucketCounts"]) == int(p["count"])

    def total(code):
        return sum(int(p[3]["count"]) for p in server if p[2].get("http.response.status_code") == code)

    assert total(200) == 4 + 3 + 2 + 1, server
    assert total(500) == 2 and total(404) == 1
    errors = [p for p in server if "error.type" in p[2]]
    assert [p[2]["error.type"] for p in errors] == ["500"], "only 5xx is a server error"
    assert sum(int(p[3]["count"]) for p in errors) == 2
    # the known latencies, in their buckets: the 200s of each http.route share a series
    ok200 = [p for p in server if p[2].get("http.response.status_code") == 200]
    assert sorted(p[2].get("http.route") for p in ok200) == ["/slow", "/status"], ok200
    (fast,) = [p for p in ok200 if p[2]["http.route"] == "/status"]
    (ok,) = [p for p in ok200 if p[2]["http.route"] == "/slow"]
    fast_buckets = [int(c) for c in fast[3]["bucketCounts"]]
    assert sum(fast_buckets[:bucket(0.1) + 1]) == 4, fast_buckets  # the fast ones
    buckets = [int(c) for c in ok[3]["bucketCounts"]]
    assert buckets[bucket(0.150)] == 3 and buckets[bucket(0.320)] == 2, buckets
    assert buckets[bucket(0.560)] == 1, buckets
    assert sum(buckets[:bucket(0.1) + 1]) == 0, buckets
    s = float(ok[3]["sum"])
    assert 0.150 * 3 + 0.320 * 2 + 0.560 <= s < 0.150 * 3 + 0.320 * 2 + 0.560 + 0.4, s
    # the same requests seen by curl: client histogram with server.address and server.port
    client = [p for p in select(last, None, "http.client.request.duration")
              if p[2].get("server.address") == "127.0.0.1" and
              p[2].get("server.port") == ok[2].get("server.port", p[2].get("server.port"))]
    assert sum(int(p[3]["count"]) for p in client) >= 13
    # cumulative: counts never go down from one export to the next
    for earlier in requests[:-1]:
        for svc_, name, attrs, p, _, pid in points(earlier):
            later = [q for q in last if q[:3] == (svc_, name, attrs) and q[5] == pid]
            assert len(later) == 1, (svc_, name, attrs, pid)
            assert int(later[0][3].get("count", later[0][3].get("asInt", 0))) >= \
                int(p.get("count", p.get("asInt", 0)))


def test_red_metrics_over_http():
    recv = HttpMetricsReceiver()
    try:
        agent, svc = run_mix({
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{recv.port}/v1/metrics",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_METRIC_EXPORT_INTERVAL": "300"})
    finally:
        recv.stop()
    assert set(recv.paths) == {"/v1/metrics"}, recv.paths
    reqs = decode(requests_in(recv.dir))
    assert len(reqs) >= 2, "periodic exports and the final one"
    check_mix(reqs, svc)
    assert "metric_exports" in agent.stderr()


def test_red_metrics_over_grpc():
    out = tempfile.mkdtemp(prefix="hoptrace-metrics-grpc-")
    grpc, port = grpc_receiver(out)
    try:
        _, svc = run_mix({
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_METRIC_EXPORT_INTERVAL": "300"})
    finally:
        grpc.stop()
    files = requests_in(out)
    for f in files:
        with open(f[:-4] + ".json") as h:
            assert json.load(h)["headers"][":path"] == \
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
    check_mix(decode(files), svc)


def test_metrics_only_mode():
    """-o none: no span is written anywhere, every request is still counted."""
    recv = HttpMetricsReceiver()
    try:
        agent, svc = run_mix({
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{recv.port}/v1/metrics",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, output="none")
    finally:
        recv.stop()
    assert os.path.getsize(agent.out_path) == 0, "no span written"
    assert "output none (metrics only)" in agent.stderr()
    reqs = decode(requests_in(recv.dir))
    assert len(reqs) == 1, "the default interval is 60 s: only the final export"
    check_mix(reqs, svc)


def test_service_graph_and_propagation_two_services():
    recv = HttpMetricsReceiver()
    tag = uuid.uuid4().hex[:6]
    front_svc, back_svc = f"mfront-{tag}", f"mback-{tag}"
    fport, bport = free_port(), free_port()
    agent = Agent(output="json", env={
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{recv.port}/v1/metrics",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_METRIC_EXPORT_INTERVAL": "60000"})  # only the final export at shutdown
    back = app_server(bport, {"OTEL_SERVICE_NAME": back_svc})
    front = app_server(fport, {"OTEL_SERVICE_NAME": front_svc})
    try:
        hop = f"http://127.0.0.1:{fport}/hop?to={bport}"
        for mode, n in (("child", 2), ("none", 1), ("forward", 1), ("invalid", 1)):
            for _ in range(n):
                curl(f"{hop}&propagate={mode}", f"traceparent: {TP}")
        curl(f"{hop}&propagate=child&path=/status%3Fcode%3D500", f"traceparent: {TP}")
        time.sleep(0.5)
    finally:
        front.stop()
        back.stop()
        agent.stop()
        recv.stop()
    reqs = decode(requests_in(recv.dir))
    assert len(reqs) == 1, "one export: the final one"
    pts = points(reqs[0])
    edge = {"client": front_svc, "server": back_svc}

    def count(name, **attrs):
        sel = [p for p in pts if p[1] == name and all(p[2].get(k) == v for k, v in attrs.items())]
        assert len(sel) <= 1, sel
        return int(sel[0][3].get("count", sel[0][3].get("asInt", 0))) if sel else 0

    assert count("traces_service_graph_request_total", **edge) == 6
    assert count("traces_service_graph_request_failed_total", **edge) == 1
    assert count("traces_service_graph_request_client_seconds", **edge) == 6
    assert count("traces_service_graph_request_server_seconds", **edge) == 6
    for result, n in (("ok", 3), ("dropped", 1), ("forwarded", 1), ("invalid", 1),
                      ("restarted", 0)):
        assert count("hoptrace.propagation.calls", result=result, **edge) == n, result
    # curl called the front six times: an edge too (curl's client spans)
    assert count("traces_service_graph_request_total", client="curl", server=front_svc) == 6
    sums = [p for p in pts if p[1] == "traces_service_graph_request_total"]
    assert all(p[4]["sum"]["isMonotonic"] for p in sums)
    # the edges are the agent's: its own resource
    assert {p[0] for p in sums} == {"hoptrace"}
