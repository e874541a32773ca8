#!/usr/bin/env python3
"""A small Jaeger query API and Tempo HTTP API that replay recorded answers, for the tests of
hoptrace's jaeger:URL and tempo:URL span sources (test_sources.py).

It serves what those sources ask for, shaped as the real APIs answer:
  Jaeger (the query service's /api, JSON model of jaeger-idl's model.proto as the UI gets it)
    GET /api/services                               {"data":[names],"total":N,...}
    GET /api/traces?service=S&start=&end=&limit=    {"data":[traces of S],...}; limit honoured
  Tempo
    GET /api/search?tags=&start=&end=&limit=        {"traces":[{"traceID":...}],"metrics":{}}
    GET /api/traces/<32 hex>                        the trace as OTLP JSON ({"batches":[...]});
                                                    404 for an unknown id
Answers come from a fixture directory (jaeger/services.json, jaeger/traces-<service>.json,
tempo/search.json, tempo/trace-<id>.json) or are set by the test (set_jaeger). Controls for
tests: fail(path_prefix, status) answers that status; huge(path_prefix, nbytes, when) streams
a body that large; stall(path_prefix, s) answers after s
seconds; require_token(t) answers 401 without "Authorization: Bearer t". Every request
is recorded (path, query, headers) in .requests.

As a module: TraceApi(fixture=DIR). Standalone:
    python3 tests/integration/trace_api.py --port P --fixture DIR
"""
import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class TraceApi:
    def __init__(self, fixture=None, port=0):
        self.jaeger_services = []
        self.jaeger_traces = {}  # service -> [trace]
        self.tempo_search = {"traces": [], "metrics": {}}
        self.tempo_traces = {}  # 32 hex -> body (bytes)
        self.failures = {}
        self.huge_bodies = {}
        self.token = None
        self.stalls = {}
        self.requests = []
        self.lock = threading.Lock()
        if fixture:
            self.load(fixture)
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                api.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def load(self, d):
        jd = os.path.join(d, "jaeger")
        if os.path.isdir(jd):
            with open(os.path.join(jd, "services.json")) as f:
                self.jaeger_services = json.load(f)["data"]
            for s in self.jaeger_services:
                with open(os.path.join(jd, f"traces-{s}.json")) as f:
                    self.jaeger_traces[s] = json.load(f)["data"]
        td = os.path.join(d, "tempo")
        if os.path.isdir(td):
            with open(os.path.join(td, "search.json")) as f:
                self.tempo_search = json.load(f)
            for name in os.listdir(td):
                if name.startswith("trace-"):
                    with open(os.path.join(td, name), "rb") as f:
                        self.tempo_traces[name[6:-5]] = f.read()

    def set_jaeger(self, traces_by_service):
        self.jaeger_services = sorted(traces_by_service)
        self.jaeger_traces = dict(traces_by_service)

    def fail(self, prefix, status):
        self.failures[prefix] = status

    def huge(self, prefix, nbytes, when=None):
        """Answer requests under prefix with nbytes of JSON-looking text; when(query), if
        given, picks the requests that get it."""
        self.huge_bodies[prefix] = (nbytes, when)

    def stall(self, prefix, seconds):
        """Answer requests under prefix only after seconds (a backend that hangs)."""
        self.stalls[prefix] = seconds

    def require_token(self, token):
        self.token = token

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def paths(self):
        with self.lock:
            return [r["path"] for r in self.requests]

    # ---- serving ---------------------------------------------------------------------

    def handle(self, h):
        u = urlsplit(h.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        with self.lock:
            self.requests.append({"path": u.path, "query": q, "headers": dict(h.headers)})
        for prefix, seconds in self.stalls.items():
            if u.path.startswith(prefix):
                time.sleep(seconds)
        if self.token and h.headers.get("Authorization") != f"Bearer {self.token}":
            return self.send(h, 401, {"error": "unauthorized"})
        for prefix, status in self.failures.items():
            if u.path.startswith(prefix):
                return self.send(h, status, {"errors": [{"code": status, "msg": "replayed failure"}]})
        for prefix, (n, when) in self.huge_bodies.items():
            if u.path.startswith(prefix) and (when is None or when(q)):
                return self.send_huge(h, n)
        if u.path == "/api/services":
            return self.send(h, 200, self.jaeger_answer(self.jaeger_services))
        if u.path == "/api/traces" and "service" in q:
            traces = self.jaeger_traces.get(q["service"], [])
            limit = int(q.get("limit", "20"))
            return self.send(h, 200, self.jaeger_answer(traces[:limit]))
        if u.path == "/api/search":
            body = dict(self.tempo_search)
            body["traces"] = body["traces"][:int(q.get("limit", "20"))]
            return self.send(h, 200, body)
        if u.path.startswith("/api/traces/"):
            body = self.tempo_traces.get(u.path[len("/api/traces/"):])
            if body is None:
                return self.send(h, 404, None, raw=b"trace not found")
            return self.send(h, 200, None, raw=body)
        self.send(h, 404, None, raw=b"404 page not found\n")

    @staticmethod
    def jaeger_answer(data):
        return {"data": data, "total": len(data), "limit": 0, "offset": 0, "errors": None}

    @staticmethod
    def send(h, status, obj, raw=None):
        body = raw if raw is not None else json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json" if raw is None else "text/plain")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    @staticmethod
    def send_huge(h, n):
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(n))
        h.end_headers()
        chunk = b"[" + b"0," * 32767 + b"0"
        try:
            sent = 0
            while sent < n:
                part = chunk[:n - sent]
                h.wfile.write(part)
                sent += len(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what a bounded client does


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fixture", required=True)
    args = ap.parse_args()
    api = TraceApi(fixture=args.fixture, port=args.port)
    print(f"listening on {api.url}", flush=True)
    api.thread.join()


if __name__ == "__main__":
    main()
