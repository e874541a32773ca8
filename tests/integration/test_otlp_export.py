"""OTLP export (issue 3): the real agent exporting real spans to real receivers.

- Round trip: one two-hop request (curl with a traceparent -> app_server.py /hop, which
  calls app_server.py /leaf propagating the context) traced at once by four agents: one
  writing JSON lines, two exporting OTLP/HTTP to hoptrace-collect (gzip on, gzip off) and one
  exporting OTLP/gRPC to otlp_grpc_receiver.js. Every field of every exported span is checked
  against the JSON agent's line for the same span. The agents run side by side because an
  agent has one output: ids the agents take from the wire (trace ids, the span ids of client
  spans, which are the parent-ids the applications sent) must be equal, while ids each agent
  draws itself (server span ids) must map one to one, and parent ids through that same map.
  Times may differ by what separates two BPF programs reading the clock for one syscall.
- Independent decoding: the request bodies (dumped by the receivers) are decoded by the
  protobufjs code that npm's @opentelemetry/otlp-transformer ships, not generated from our
  proto/, and must say exactly what hoptrace-collect wrote (HTTP) or what the JSON agent
  wrote (gRPC).
- The other direction: the real OpenTelemetry JS SDK exporter sends spans to
  hoptrace-collect, which must write them exactly as the SDK holds them.
- Faults, with the real agent: collector down at start and down again mid-run, 503 with
  Retry-After, 400, a slow collector, queue overflow with bounded memory, SIGTERM flushing
  within the deadline.
- Concurrent export workers: against a collector that answers late, four workers deliver a
  burst in a fraction of the time one needs.

The npm packages are installed once under the build directory (build/npm-otlp) and reused;
in CI (CI=true) an install failure fails the tests that need them, elsewhere they skip.
"""
import fcntl
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from lib import (npm_modules, unavailable, BUILD, HERE, IN_CI, ROOT, Agent, Proc, SkipTest, free_port, json_lines,
                 parse_counters, read_lines, require, run, wait_port)

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"
TRACESTATE = "vendor=abc,other=x%2Cy"
# two more requests, for error statuses: the leaf answers 503; the caller gives up early
TRACE_503 = "1af7651916cd43dd8448eb211c80319d"
TRACE_CUT = "2af7651916cd43dd8448eb211c80319e"
N_SPANS = 10

with open(os.path.join(ROOT, "VERSION")) as _f:
    VERSION = _f.read().strip()

# Verified with Node 20.20 / npm 11: 24 packages, about 10 s. The 0.3xx line of the JS SDK
# needs Node >= 22.15, hence 0.214 / 2.6.
NPM_PACKAGES = {
    "@opentelemetry/api": "1.9.0",
    "@opentelemetry/sdk-trace-base": "2.6.1",
    "@opentelemetry/resources": "2.6.1",
    "@opentelemetry/exporter-trace-otlp-proto": "0.214.0",
    "@opentelemetry/otlp-transformer": "0.214.0",
    "protobufjs": "7.6.6",
}

# What the exporter adds to every process's resource (the agent's own attributes).
AGENT_RESOURCE = {
    "host.name": socket.gethostname(),
    "os.type": "linux",
    "telemetry.sdk.name": "hoptrace",
    "telemetry.sdk.version": VERSION,
    "telemetry.distro.name": "hoptrace",
    "telemetry.distro.version": VERSION,
}
SCOPE = {"name": "hoptrace", "version": VERSION}
# Keys hoptrace-collect writes beyond the agent's JSON schema (tools/hoptrace-collect.c).
COLLECT_EXTRAS = ("parent_is_remote", "scope", "events", "dropped_attributes_count",
                  "dropped_events_count", "dropped_links_count")
# Two agents timestamp the same syscall in two BPF programs, and convert with offsets read
# at their own start: their times for one span differ by microseconds, not more.
TIME_TOLERANCE_NS = 2_000_000


# ---- receivers and agents -----------------------------------------------------------------

def collect_binary():
    for path in (os.path.join(BUILD, "san", "hoptrace-collect"),
                 os.path.join(BUILD, "hoptrace-collect")):
        if os.access(path, os.X_OK):
            return path
    raise AssertionError(f"hoptrace-collect is not built in {BUILD} (make all asan)")


def log_times(text, pattern):
    """Seconds since midnight of each log line (hoptrace HH:MM:SS.mmm ...) matching."""
    out = []
    for line in text.splitlines():
        m = re.match(r"hoptrace (\d\d):(\d\d):(\d\d\.\d+) ", line)
        if m and re.search(pattern, line):
            out.append(int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]))
    return out


class Collector:
    """hoptrace-collect (ASan build) on a port; spans() reads the JSON lines it wrote."""

    def __init__(self, *args, port=0, out=None, dump=False, count_only=False):
        self.dir = tempfile.mkdtemp(prefix="hoptrace-collect-")
        self.out_path = out or os.path.join(self.dir, "spans.jsonl")
        self.counts_path = os.path.join(self.dir, "counts.json")
        self.err_path = os.path.join(self.dir, "err")
        self.dump_dir = os.path.join(self.dir, "dump") if dump else None
        sink = ["--count-only", self.counts_path] if count_only else ["-o", self.out_path]
        argv = [collect_binary(), "--port", str(port), *sink, *args]
        if self.dump_dir:
            os.mkdir(self.dump_dir)
            argv += ["--dump", self.dump_dir]
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
        with open(self.err_path, "w") as err:
            self.p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                      start_new_session=True)
        deadline = time.time() + 10
        while time.time() < deadline:
            m = re.search(r"listening on \S+ port (\d+)", self.stderr())
            if m:
                self.port = int(m[1])
                self.url = f"http://127.0.0.1:{self.port}"
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"hoptrace-collect did not start:\n{self.stderr()[-2000:]}")

    def running(self):
        return self.p.poll() is None

    def stderr(self):
        """The log so far: complete lines only while the collector runs (a half-written
        "listening ... port 4" is not port 4)."""
        return read_lines(self.err_path, whole=not self.running())

    def spans(self):
        """The spans written so far: complete lines only while the collector runs."""
        try:
            return json_lines(self.out_path, whole=not self.running())
        except FileNotFoundError:
            return []

    def wait_spans(self, n, timeout=15.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            spans = self.spans()
            if len(spans) >= n:
                return spans
            time.sleep(0.05)
        raise AssertionError(f"the collector has {len(self.spans())} spans, not {n}, after "
                             f"{timeout} s:\n{self.stderr()[-3000:]}")

    def dumps(self):
        return sorted((os.path.join(self.dump_dir, f) for f in os.listdir(self.dump_dir)),
                      key=lambda p: int(re.search(r"(\d+)\.bin$", p)[1]))

    def stop(self):
        """SIGTERM; returns the exit line's counters. The ASan build must exit clean."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise AssertionError("hoptrace-collect did not exit on SIGTERM")
        text = self.stderr()
        assert rc == 0, f"hoptrace-collect exited with {rc}:\n{text[-3000:]}"
        assert "Sanitizer" not in text and "runtime error" not in text, text[-4000:]
        m = re.search(r"exit: (\d+) connections, (\d+) requests, (\d+) spans, (\d+) bad "
                      r"requests, (\d+) injected failures", text)
        assert m, text[-2000:]
        return dict(zip(("connections", "requests", "spans", "bad_requests", "faults"),
                        map(int, m.groups())))

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


class ExportAgent(Agent):
    """lib.Agent exporting OTLP. Without -o, an endpoint in env makes OTLP the default
    output; -O names a file OTLP output never writes. stop() takes the signal to send, and
    the agent may be signalled first (send()) and waited for later (finish()), so that
    several agents stop together."""

    def __init__(self, *args, env=None, explicit=True):
        super().__init__(*args, output="otlp" if explicit else None, env=env)
        self.signalled = None

    def send(self, sig=signal.SIGINT):
        self.signalled = time.time()
        self.p.send_signal(sig)

    def finish(self, timeout=30):
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise AssertionError(f"agent did not stop within {timeout} s of its signal")
        self.exit_seconds = time.time() - self.signalled
        self.err.close()
        self.outf.close()
        text = self.stderr()
        assert rc == 0, f"agent exited with {rc}:\n{text[-4000:]}"
        for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert bad not in text, f"sanitizer report from the agent:\n{text[-6000:]}"
        self.counters = parse_counters(text)
        self.spans = []
        return self.counters

    def stop(self, settle=0.5, sig=signal.SIGINT):
        time.sleep(settle)
        self.send(sig)
        return self.finish()

    def vm_kb(self, field):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.p.pid}/status")


def start_agents(specs):
    """Start several agents at once (each takes about a second to load its BPF programs).
    specs: list of (factory, args, kwargs)."""
    results = [None] * len(specs)

    def start(i, factory, args, kwargs):
        try:
            results[i] = factory(*args, **kwargs)
        except BaseException as e:  # re-raised below, in the test's thread
            results[i] = e

    threads = [threading.Thread(target=start, args=(i, *spec)) for i, spec in enumerate(specs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for r in results:
            if not isinstance(r, BaseException):
                r.kill()
        raise errors[0]
    return results


def grpc_receiver(out_dir):
    """otlp_grpc_receiver.js (node's http2, h2c) keeping each request in out_dir."""
    log_path = os.path.join(out_dir, "log")
    p = None

    def log():
        return read_lines(log_path, whole=p is not None and p.p.poll() is not None)

    with open(log_path, "w") as f:
        p = Proc(["node", os.path.join(HERE, "otlp_grpc_receiver.js"), "--out", out_dir],
                 stdout=f, stderr=subprocess.STDOUT)
    deadline = time.time() + 15
    while not re.search(r"listening on port \d+", log()):
        if time.time() > deadline or p.p.poll() is not None:
            p.stop()
            raise AssertionError(f"otlp_grpc_receiver.js did not start:\n{log()[-2000:]}")
        time.sleep(0.05)
    return p, int(re.search(r"listening on port (\d+)", log())[1])


def export_env(**kw):
    env = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
    env.update({k: str(v) for k, v in kw.items()})
    return env


def app_server(port, env_extra=None):
    """app_server.py on port, with its own OTEL_* environment (hoptrace reads it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(env_extra or {})
    p = Proc(["python3", os.path.join(HERE, "app_server.py"), str(port)], env=env)
    wait_port(port)
    return p


def curl_many(port, n, path="/status?code=200"):
    """n requests on one keep-alive connection: n CLIENT spans (curl) + n SERVER spans.
    The default path answers in one write: app_server.py writes a body apart from the
    header block, and Nagle's algorithm then holds it for the client's delayed ACK (40 ms)."""
    require("curl")
    argv = ["curl", "-sS", "--fail"]
    for _ in range(n):
        argv += ["-o", "/dev/null", f"http://127.0.0.1:{port}{path}"]
    run(argv, timeout=60)


def total_spans(c):
    return c["spans_server"] + c["spans_client"]


# ---- npm: protobufjs with the OTLP schema, the OpenTelemetry JS SDK -------------------------

def npm_modules_otlp():
    """node_modules with NPM_PACKAGES (see lib.npm_modules)."""
    return npm_modules("npm-otlp", NPM_PACKAGES)


def node(script, *args, timeout=60):
    env = dict(os.environ, NODE_PATH=npm_modules_otlp())
    r = subprocess.run(["node", os.path.join(HERE, script), *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, env=env)
    if r.returncode != 0:
        raise AssertionError(f"node {script} failed ({r.returncode}):\n"
                             f"{r.stderr.decode(errors='replace')[-3000:]}")
    return r.stdout.decode()


def decode_independently(files):
    """ExportTraceServiceRequest files through otlp_decode.js (protobufjs, npm's schema)."""
    # split on "\n" only: JSON.stringify leaves U+0085 and U+2028 raw, splitlines() splits there
    out = [json.loads(line) for line in node("otlp_decode.js", *files).split("\n") if line]
    for d in out:
        # protobufjs re-encodes what it decoded to as many bytes: nothing it did not know,
        # nothing twice
        assert d["reencoded_bytes"] == d["bytes"], d["file"]
    return out


# The agent's JSON span schema, built from protobufjs's view of a request: what
# hoptrace-collect must write for each span (tools/hoptrace-collect.c, README).

def _any(v):
    if not v:
        return None
    if "stringValue" in v:
        return v["stringValue"]
    if "boolValue" in v:
        return v["boolValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return v["doubleValue"]
    if "bytesValue" in v:
        return v["bytesValue"]
    if "arrayValue" in v:
        return [_any(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return _kvs(v["kvlistValue"].get("values", []))
    return None


def _kvs(kvs, skip=None):
    out = {}
    for kv in kvs:
        key = kv.get("key", "")
        if key != skip and key not in out:
            out[key] = _any(kv.get("value"))
    return out


def _int_attr(attrs, key):
    v = attrs.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def schema_spans(request):
    spans = []
    for rs in request.get("resourceSpans", []):
        res = _kvs(rs.get("resource", {}).get("attributes", []))
        for ss in rs.get("scopeSpans", []):
            scope = ss.get("scope", {})
            for s in ss.get("spans", []):
                attrs = _kvs(s.get("attributes", []))
                status = s.get("status", {})
                flags = s.get("flags", 0)
                start, end = int(s.get("startTimeUnixNano", "0")), int(s.get("endTimeUnixNano", "0"))
                svc = res.get("service.name")
                o = {
                    "trace_id": s.get("traceId", ""),
                    "span_id": s.get("spanId", ""),
                    "parent_span_id": s.get("parentSpanId", ""),
                    "name": s.get("name", ""),
                    "kind": s.get("kind", "SPAN_KIND_UNSPECIFIED").replace("SPAN_KIND_", ""),
                    "start_unix_ns": start,
                    "end_unix_ns": end,
                    "duration_ns": max(0, end - start),
                    "status": status.get("code", "STATUS_CODE_UNSET").replace("STATUS_CODE_", ""),
                    "status_message": status.get("message", ""),
                    "service.name": svc if isinstance(svc, str) and svc else "unknown_service",
                }
                if _int_attr(res, "process.pid") is not None:
                    o["pid"] = res["process.pid"]
                if _int_attr(attrs, "thread.id") is not None:
                    o["tid"] = attrs["thread.id"]
                o["trace_flags"] = flags & 0xff
                o["tracestate"] = s.get("traceState", "")
                o["attributes"] = attrs
                links = []
                for link in s.get("links", []):
                    la = link.get("attributes", [])
                    reason = _kvs(la).get("hoptrace.link.reason")
                    lo = {"trace_id": link.get("traceId", ""), "span_id": link.get("spanId", ""),
                          "reason": reason if isinstance(reason, str) else ""}
                    if link.get("traceState"):
                        lo["tracestate"] = link["traceState"]
                    other = _kvs(la, skip="hoptrace.link.reason")
                    if other:
                        lo["attributes"] = other
                    links.append(lo)
                o["links"] = links
                o["resource"] = res
                if flags & 0x100:
                    o["parent_is_remote"] = bool(flags & 0x200)
                o["scope"] = {"name": scope.get("name", ""), "version": scope.get("version", "")}
                if scope.get("attributes"):
                    o["scope"]["attributes"] = _kvs(scope["attributes"])
                if s.get("events"):
                    o["events"] = [{"name": e.get("name", ""),
                                    "time_unix_ns": int(e.get("timeUnixNano", "0")),
                                    "attributes": _kvs(e.get("attributes", []))}
                                   for e in s["events"]]
                for key in ("droppedAttributesCount", "droppedEventsCount", "droppedLinksCount"):
                    if s.get(key):
                        o[re.sub(r"([A-Z])", r"_\1", key).lower()] = s[key]
                spans.append(o)
    return spans


def assert_same_lines(written, expected, what):
    """Equal as JSON text: same keys in the same order, same values and types."""
    assert len(written) == len(expected), f"{what}: {len(written)} spans, not {len(expected)}"
    for w, e in zip(written, expected):
        assert json.dumps(w) == json.dumps(e), f"{what}:\nwritten  {w}\nexpected {e}"


# ---- the round trip -------------------------------------------------------------------------

def pair_spans(exported, reference, what):
    """Pair each exported span with the JSON agent's line for the same span."""
    def key(s):
        return (s["kind"], s.get("pid"), s["name"], s["attributes"].get("network.peer.port"))

    ref = {key(s): s for s in reference}
    assert len(ref) == len(reference), f"ambiguous reference spans: {reference}"
    got = {key(s): s for s in exported}
    assert sorted(got) == sorted(ref), f"{what}: spans differ:\n{exported}\nvs JSON\n{reference}"
    return [(ref[k], got[k]) for k in ref]


def assert_matches_json_agent(exported, reference, agent_resource, long_lived, what):
    """Every field of every exported span (in hoptrace-collect's schema) against the JSON
    agent's line for the same span. long_lived: pids of processes alive throughout."""
    pairs = pair_spans(exported, reference, what)
    idmap = {}
    for j, o in pairs:
        if j["kind"] == "CLIENT":
            # the parent-id the application sent: both agents must take it
            assert o["span_id"] == j["span_id"], (what, j, o)
        assert idmap.setdefault(j["span_id"], o["span_id"]) == o["span_id"], (what, j, o)
    assert len(set(idmap.values())) == len(idmap), f"{what}: two spans share an id"
    for j, o in pairs:
        ctx = f"{what}: {j['kind']} {j['name']} (pid {j['pid']})"
        assert len(o["span_id"]) == 16 and len(o["trace_id"]) == 32, ctx
        # schema: the agent's keys, in its order, then only the documented extras
        agent_keys = list(j)  # tid travels as the semconv thread.id attribute
        assert [k for k in o if k not in COLLECT_EXTRAS] == agent_keys, (ctx, list(o), list(j))
        for k in agent_keys:
            if k in ("span_id", "start_unix_ns", "end_unix_ns", "duration_ns", "resource"):
                continue
            if k == "parent_span_id":
                want = idmap.get(j[k], j[k])
            elif k == "links":
                want = [dict(link, span_id=idmap.get(link["span_id"], link["span_id"]))
                        for link in j[k]]
            else:
                want = j[k]
            assert o[k] == want, f"{ctx}: {k} is {o[k]!r}, the JSON agent says {want!r}"
            assert type(o[k]) is type(want), f"{ctx}: {k} typed {type(o[k])}"
        for k in ("start_unix_ns", "end_unix_ns", "duration_ns"):
            assert abs(o[k] - j[k]) <= TIME_TOLERANCE_NS, f"{ctx}: {k} {o[k]} vs {j[k]}"
        assert o["duration_ns"] == o["end_unix_ns"] - o["start_unix_ns"], ctx
        for k, v in j["attributes"].items():  # typed: ints stay ints (ports, status codes)
            assert type(o["attributes"][k]) is type(v), (ctx, k)
        want_res = dict(j["resource"])
        want_res.update({"service.name": j["service.name"], "process.pid": j["pid"]})
        want_res.update(AGENT_RESOURCE)
        want_res.update(agent_resource)
        got_res = dict(o["resource"])
        if j["pid"] not in long_lived:
            # curl exits as soon as it has its answer: each agent reads /proc/PID/exe when
            # it first meets the process, and one may come too late for the path
            for r in (got_res, want_res):
                r.pop("process.executable.path", None)
        assert got_res == want_res, f"{ctx}: resource\n{o['resource']}\nvs\n{want_res}"
        assert type(o["resource"]["process.pid"]) is int, ctx
        assert o["scope"] == SCOPE, ctx
        # a server span's parent came over the network; a client span's is in its process
        if j["parent_span_id"]:
            assert o["parent_is_remote"] is (j["kind"] == "SERVER"), ctx
        else:
            assert "parent_is_remote" not in o, ctx
        assert not any(k in o for k in COLLECT_EXTRAS[2:]), ctx


def check_reference(all_spans, front, back, front_pid, back_pid, exes):
    """The JSON agent's view of the requests: what the exported spans must equal."""
    assert len(all_spans) == N_SPANS, all_spans
    spans = [s for s in all_spans if s["trace_id"] == TRACE]
    assert len(spans) == 4, all_spans
    by = {(s["kind"], s["attributes"]["url.path"], s["pid"]): s for s in spans}
    curl_span = next(s for s in spans if s["service.name"] == "curl")
    entry = by[("SERVER", "/hop", front_pid)]
    call = by[("CLIENT", "/leaf", front_pid)]
    leaf = by[("SERVER", "/leaf", back_pid)]
    assert {s["trace_id"] for s in spans} == {TRACE}
    assert curl_span["span_id"] == PARENT and curl_span["parent_span_id"] == ""
    assert entry["parent_span_id"] == PARENT and entry["tracestate"] == TRACESTATE
    assert call["parent_span_id"] == entry["span_id"]
    assert leaf["parent_span_id"] == call["span_id"]
    # resource attributes from each traced process's own environment
    assert entry["service.name"] == call["service.name"] == "hop-front"
    assert entry["resource"]["deployment.environment.name"] == "otlp-test"
    assert entry["resource"]["hop.role"] == "front,entry"  # percent-decoded
    assert leaf["service.name"] == "hop-back"  # service.name in OTEL_RESOURCE_ATTRIBUTES
    assert leaf["resource"]["service.version"] == "2.0"
    for s, pid in ((entry, front_pid), (leaf, back_pid)):
        exe = exes[pid]
        assert s["resource"]["process.executable.name"] == os.path.basename(exe)
        assert s["resource"]["process.executable.path"] == exe
    a = leaf["attributes"]
    assert a["server.port"] == back and a["http.response.status_code"] == 200
    assert call["attributes"]["server.port"] == back and call["attributes"]["url.full"] == \
        f"http://127.0.0.1:{back}/leaf"
    assert entry["attributes"]["server.port"] == front
    # the 503: an error for the server that answered it and for the client that got it
    failed = {(s["kind"], s["pid"]): s for s in all_spans if s["trace_id"] == TRACE_503}
    assert len(failed) == 4, all_spans
    for k in (("SERVER", back_pid), ("CLIENT", front_pid)):
        assert failed[k]["status"] == "ERROR" and failed[k]["attributes"]["error.type"] == "503"
        assert failed[k]["attributes"]["http.response.status_code"] == 503
    assert failed[("SERVER", front_pid)]["status"] == "UNSET"
    # the caller that hung up: an incomplete exchange, with a status message
    cut = [s for s in all_spans if s["trace_id"] == TRACE_CUT]
    assert len(cut) == 2, all_spans
    cut_client = next(s for s in cut if s["kind"] == "CLIENT")
    assert cut_client["status"] == "ERROR" and cut_client["status_message"], cut_client
    assert cut_client["attributes"]["error.type"] == "incomplete"
    return entry, call, leaf, curl_span


def test_round_trip_http_gzip_plain_and_grpc():
    require("node")
    front, back = free_port(), free_port()
    procs, agents, receivers = [], [], []
    grpc_dir = tempfile.mkdtemp(prefix="hoptrace-grpc-")
    try:
        procs.append(app_server(front, {
            "OTEL_SERVICE_NAME": "hop-front",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=otlp-test,hop.role=front%2Centry"}))
        procs.append(app_server(back, {
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=hop-back,service.version=2.0"}))
        exes = {p.pid: os.readlink(f"/proc/{p.pid}/exe") for p in procs}
        gz, plain = Collector(dump=True), Collector(dump=True)
        receivers += [gz, plain]
        grpc, grpc_port = grpc_receiver(grpc_dir)
        procs.append(grpc)

        sel = ("--port", str(front), "--port", str(back))
        specs = [
            (Agent, sel, {}),
            # an endpoint in the environment makes OTLP the default output
            (ExportAgent, sel, {"explicit": False, "env": export_env(
                OTEL_EXPORTER_OTLP_ENDPOINT=gz.url, OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
                OTEL_RESOURCE_ATTRIBUTES="hoptrace.test.agent=http-gzip")}),
            (ExportAgent, sel, {"env": export_env(
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=plain.url + "/v1/traces",
                OTEL_RESOURCE_ATTRIBUTES="hoptrace.test.agent=http-plain")}),
            (ExportAgent, (*sel, "--otlp-endpoint", f"http://127.0.0.1:{grpc_port}",
                           "--otlp-protocol", "grpc"),
             {"env": export_env(OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
                                OTEL_RESOURCE_ATTRIBUTES="hoptrace.test.agent=grpc")}),
        ]
        agents = start_agents(specs)
        json_agent, gz_agent, plain_agent, grpc_agent = agents
        assert "output otlp" in gz_agent.stderr()

        r = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                 "-H", f"traceparent: {TRACEPARENT}", "-H", f"tracestate: {TRACESTATE}",
                 f"http://127.0.0.1:{front}/hop?to={back}&propagate=child"])
        assert r.stdout == b"200"
        r = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                 "-H", f"traceparent: 00-{TRACE_503}-{PARENT}-01",
                 f"http://127.0.0.1:{front}/hop?to={back}&propagate=child&path=/status%3Fcode%3D503"])
        assert r.stdout == b"200"
        r = run(["curl", "-sS", "-o", "/dev/null", "--max-time", "0.3",
                 "-H", f"traceparent: 00-{TRACE_CUT}-{PARENT}-01",
                 f"http://127.0.0.1:{front}/slow?ms=800"], check=False)
        assert r.returncode == 28, r  # curl: operation timed out
        gz.wait_spans(N_SPANS)
        plain.wait_spans(N_SPANS)
        time.sleep(0.3)
        for a in agents[1:]:
            a.send()
        reference = json_agent.stop(settle=0)
        counters = [a.finish() for a in agents[1:]]
        gz_stats, plain_stats = gz.stop(), plain.stop()
    finally:
        for x in agents + receivers + procs:
            x.kill() if not isinstance(x, Proc) else x.stop()

    entry, call, leaf, curl_span = check_reference(reference, front, back, procs[0].pid,
                                                   procs[1].pid, exes)
    for c in counters:
        assert c["otlp_exported"] == N_SPANS and total_spans(c) == N_SPANS, c
        for k in ("otlp_failed", "otlp_retried", "otlp_dropped_queue_full",
                  "otlp_dropped_shutdown", "otlp_rejected", "otlp_queued"):
            assert c[k] == 0, (k, c)
    assert gz_stats["spans"] == plain_stats["spans"] == N_SPANS
    assert gz_stats["bad_requests"] == plain_stats["bad_requests"] == 0
    assert ", gzip)" in gz.stderr() and ", gzip)" not in plain.stderr()

    # OTLP/HTTP: what hoptrace-collect wrote, against the JSON agent ...
    for col, name in ((gz, "http-gzip"), (plain, "http-plain")):
        written = col.spans()
        assert_matches_json_agent(written, reference, {"hoptrace.test.agent": name}, exes,
                                  f"OTLP/HTTP {name}")
        # ... and against protobufjs reading the very bytes hoptrace-collect decoded
        decoded = decode_independently(col.dumps())
        expected = [s for d in decoded for s in schema_spans(d["request"])]
        assert_same_lines(written, expected, f"protobufjs vs hoptrace-collect ({name})")

    # OTLP/gRPC: the raw requests the node receiver kept, decoded by protobufjs
    files = sorted((os.path.join(grpc_dir, f) for f in os.listdir(grpc_dir) if f.endswith(".bin")),
                   key=lambda p: int(re.search(r"(\d+)\.bin$", p)[1]))
    assert files, os.listdir(grpc_dir)
    exported = [s for d in decode_independently(files) for s in schema_spans(d["request"])]
    assert_matches_json_agent(exported, reference, {"hoptrace.test.agent": "grpc"}, exes,
                              "OTLP/gRPC")
    for f in files:
        with open(f[:-4] + ".json") as fh:
            meta = json.load(fh)
        h = meta["headers"]
        assert meta["compressed"] is True and h["grpc-encoding"] == "gzip", meta
        assert h["content-type"] == "application/grpc" and h["te"] == "trailers", meta
        assert h[":method"] == "POST" and h["user-agent"] == f"hoptrace/{VERSION}", meta


def test_sdk_exporter_to_hoptrace_collect():
    """The real OpenTelemetry JS SDK exporter (protobuf over HTTP, gzip and not) sends to
    hoptrace-collect, which writes the spans exactly as the SDK holds them."""
    col = Collector(dump=True)
    try:
        out = json.loads(node("otlp_sdk_send.js", col.url + "/v1/traces"))
        spans = col.wait_spans(2 * len(out["spans"]), timeout=10)
        stats = col.stop()
    finally:
        col.kill()
    assert [r["code"] for r in out["results"]] == [0, 0], out["results"]  # ExportResultCode.SUCCESS
    assert stats["bad_requests"] == 0 and stats["requests"] == 2, stats
    assert col.stderr().count(", gzip)") == 1

    kinds = {0: "INTERNAL", 1: "SERVER", 2: "CLIENT", 3: "PRODUCER", 4: "CONSUMER"}
    statuses = {0: "UNSET", 1: "OK", 2: "ERROR"}
    expected = []
    for s in out["spans"]:
        start, end = int(s["start_unix_ns"]), int(s["end_unix_ns"])
        e = {"trace_id": s["trace_id"], "span_id": s["span_id"],
             "parent_span_id": s["parent_span_id"], "name": s["name"], "kind": kinds[s["kind"]],
             "start_unix_ns": start, "end_unix_ns": end, "duration_ns": end - start,
             "status": statuses[s["status"]["code"]],
             "status_message": s["status"].get("message", ""),
             "service.name": s["resource"]["service.name"], "pid": s["resource"]["process.pid"]}
        if "thread.id" in s["attributes"]:
            e["tid"] = s["attributes"]["thread.id"]
        e.update({"trace_flags": s["trace_flags"], "tracestate": s["tracestate"],
                  "attributes": s["attributes"]})
        links = []
        for link in s["links"]:
            attrs = dict(link["attributes"])
            lo = {"trace_id": link["trace_id"], "span_id": link["span_id"],
                  "reason": attrs.pop("hoptrace.link.reason", "")}
            if link["tracestate"]:
                lo["tracestate"] = link["tracestate"]
            if attrs:
                lo["attributes"] = attrs
            links.append(lo)
        e["links"] = links
        e["resource"] = s["resource"]
        e["scope"] = s["scope"]
        if s["events"]:
            e["events"] = [dict(ev, time_unix_ns=int(ev["time_unix_ns"])) for ev in s["events"]]
        expected.append(e)

    # the same spans twice (gzip, then plain), in the SDK's order
    assert len(spans) == 2 * len(expected)
    for got, want in zip(spans, expected + expected):
        extras = {k: got.pop(k) for k in ("parent_is_remote",) if k in got}
        assert got == want, f"hoptrace-collect wrote\n{got}\nthe SDK holds\n{want}"
        if want["parent_span_id"]:
            sdk = next(x for x in out["spans"] if x["span_id"] == want["span_id"])
            assert extras.get("parent_is_remote") is sdk["parent_is_remote"], (got, extras)
    client = next(s for s in spans if s["kind"] == "CLIENT")
    assert client["tid"] == 77 and client["status"] == "ERROR"
    assert client["attributes"]["hoptrace.test.text"] == 'h\u00e9llo \u2713 "quoted"\ttab\nline \u0085'
    assert client["links"][0]["reason"] == "ambiguous"

    # protobufjs reads the same requests the same way
    decoded = decode_independently(col.dumps())
    assert_same_lines(col.spans(), [s for d in decoded for s in schema_spans(d["request"])],
                      "protobufjs vs hoptrace-collect (SDK spans)")


# ---- faults -----------------------------------------------------------------------------------

def wait_log(agent, pattern, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if re.search(pattern, agent.stderr()):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} in the agent's log after {timeout} s:\n"
                         f"{agent.stderr()[-3000:]}")


def assert_delivered_once(spans, n, what):
    ids = [s["span_id"] for s in spans]
    assert len(ids) == n and len(set(ids)) == n, f"{what}: {len(ids)} spans, {len(set(ids))} " \
        f"distinct, expected {n}"


def assert_nothing_lost(c):
    for k in ("otlp_failed", "otlp_dropped_queue_full", "otlp_dropped_shutdown", "otlp_queued",
              "otlp_rejected", "drop_sink_queue_full"):
        assert c[k] == 0, (k, c)
    assert c["otlp_exported"] == total_spans(c), c


def test_collector_down_at_start_and_mid_run():
    """Spans wait in the queue while nothing listens, retried with backoff, and all arrive
    once the collector is up; again after it goes away mid-run and comes back."""
    app_port, port = free_port(), free_port()
    srv = app_server(app_port)
    agent = col = None
    try:
        agent = ExportAgent("--port", str(app_port),
                            env=export_env(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}"))
        curl_many(app_port, 5)
        wait_log(agent, r"otlp: export to .* failed \(.*[Cc]onnect.*\); retrying")
        col = Collector(port=port)
        assert_delivered_once(col.wait_spans(10), 10, "after the collector came up")
        col.stop()
        curl_many(app_port, 5)
        time.sleep(1.0)  # at least one failed attempt while it is away
        out = col.out_path
        col = Collector(port=port, out=out)  # appends to the same file
        spans = col.wait_spans(20)
        c = agent.stop()
        col.stop()
    finally:
        for x in (agent, col):
            if x:
                x.kill()
        srv.stop()
    assert_delivered_once(spans, 20, "after the outages")
    assert total_spans(c) == 20 and c["otlp_retried"] >= 2, c
    assert_nothing_lost(c)
    assert re.search(r"otlp: export to \S+ works again after \d+ failed attempts", agent.stderr())


def test_collector_503_with_retry_after():
    """503 with Retry-After: 1, twice: the agent waits what the server asks (not its own
    shorter backoff), then delivers everything."""
    app_port = free_port()
    srv = app_server(app_port)
    agent = None
    col = Collector("--fail-first", "2", "--fail-status", "503", "--retry-after", "1")
    try:
        agent = ExportAgent("--port", str(app_port),
                            env=export_env(OTEL_EXPORTER_OTLP_ENDPOINT=col.url))
        curl_many(app_port, 3)
        spans = col.wait_spans(6)
        c = agent.stop()
        stats = col.stop()
    finally:
        for x in (agent, col):
            if x:
                x.kill()
        srv.stop()
    assert_delivered_once(spans, 6, "after 503s")
    assert stats["faults"] == 2 and stats["requests"] == c["otlp_requests"], (stats, c)
    assert c["otlp_retried"] == 2, c
    assert_nothing_lost(c)
    log = col.stderr()
    failures, accepted = log_times(log, "answered 503"), log_times(log, "accepted")
    # the first backoff step would be 0.25-0.5 s: two waits of 1 s say Retry-After was obeyed
    assert accepted[0] - failures[0] >= 1.9, log
    assert "HTTP 503" in agent.stderr() and "retrying with backoff" in agent.stderr()


def test_collector_400_is_permanent():
    """400: the batch is dropped and counted at once (not retried), one clear log line, and
    the agent goes on tracing and exporting."""
    app_port = free_port()
    srv = app_server(app_port)
    agent = None
    col = Collector("--fail-first", "1", "--fail-status", "400")
    try:
        # 300 ms: the first wave's 4 spans surely make one batch, the one that fails
        agent = ExportAgent("--port", str(app_port), env=export_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=col.url, OTEL_BSP_SCHEDULE_DELAY=300))
        curl_many(app_port, 2)
        wait_log(agent, "failed permanently")
        curl_many(app_port, 3, path="/status?code=201")
        spans = col.wait_spans(6)
        time.sleep(0.3)
        c = agent.stop()
        stats = col.stop()
    finally:
        for x in (agent, col):
            if x:
                x.kill()
        srv.stop()
    assert total_spans(c) == 10, c
    assert c["otlp_failed"] == 4 and c["otlp_exported"] == 6 and c["otlp_retried"] == 0, c
    assert c["otlp_requests"] == stats["requests"] == 2, (c, stats)
    assert stats["faults"] == 1
    # what came after the failure is whole: the second wave, every span of it
    assert_delivered_once(spans, 6, "after the 400")
    assert sorted(s["attributes"]["http.response.status_code"] for s in spans) == [201] * 6
    lines = [l for l in agent.stderr().splitlines() if "failed permanently" in l]
    assert len(lines) == 1, lines
    assert re.search(r"error: otlp: export to http://127\.0\.0\.1:\d+/v1/traces failed "
                     r"permanently \(HTTP 400: injected failure\): the receiver could not parse "
                     r"the data; 4 spans dropped, not retried", lines[0]), lines[0]


def test_slow_collector():
    """A collector that takes 1.5 s per answer: the agent goes on tracing meanwhile, and what
    it traced during the slow export goes in the next request."""
    app_port = free_port()
    srv = app_server(app_port)
    agent = None
    col = Collector("--delay-ms", "1500")
    try:
        agent = ExportAgent("--port", str(app_port),
                            env=export_env(OTEL_EXPORTER_OTLP_ENDPOINT=col.url))
        curl_many(app_port, 2)
        col.wait_spans(4)  # written on arrival; the answer is 1.5 s away
        t0 = time.time()
        curl_many(app_port, 3)
        assert time.time() - t0 < 1.0, "the traced application was slowed down"
        spans = col.wait_spans(10)
        c = agent.stop()
        stats = col.stop()
    finally:
        for x in (agent, col):
            if x:
                x.kill()
        srv.stop()
    assert_delivered_once(spans, 10, "slow collector")
    assert total_spans(c) == 10 and c["otlp_retried"] == 0, c
    assert_nothing_lost(c)
    assert stats["requests"] == c["otlp_requests"] >= 2, (stats, c)


def test_queue_overflow_drops_oldest_and_memory_stays_bounded():
    """Collector down, 4000 spans into a queue of 16: the oldest go, each counted; the newest
    are delivered once the collector is up; the agent's memory does not grow with the flood.
    ASan's quarantine is turned off for this agent: it keeps freed memory resident (256 MB),
    which would hide whether spans are freed or kept (with an unbounded queue this flood
    grows the agent by 16 MB, with the bounded one by a few hundred kB)."""
    app_port, port = free_port(), free_port()
    srv = app_server(app_port)
    agent = col = None
    try:
        agent = ExportAgent("--port", str(app_port), env=export_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
            OTEL_BSP_MAX_QUEUE_SIZE=16, OTEL_BSP_MAX_EXPORT_BATCH_SIZE=8,
            OTEL_BSP_EXPORT_TIMEOUT=500,
            ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:quarantine_size_mb=0:"
                         "thread_local_quarantine_size_kb=0"))
        curl_many(app_port, 20)
        time.sleep(0.3)
        rss_before = agent.vm_kb("VmRSS")
        curl_many(app_port, 1999)
        curl_many(app_port, 1, path="/status?code=202")  # the newest two spans
        time.sleep(1.0)  # the batch in flight is given up under pressure
        hwm = agent.vm_kb("VmHWM")
        col = Collector(port=port)
        deadline = time.time() + 15
        while time.time() < deadline and len(col.spans()) < 16:
            time.sleep(0.1)
        time.sleep(0.5)
        c = agent.stop()
        col.stop()
        spans = col.spans()
    finally:
        for x in (agent, col):
            if x:
                x.kill()
        srv.stop()
    total = total_spans(c)
    assert total == 4040, c
    assert c["otlp_dropped_queue_full"] > 0 and c["drop_sink_queue_full"] > 0, c
    # every span is accounted for, and the receiver has exactly those reported exported
    assert c["otlp_exported"] + c["otlp_dropped_queue_full"] + c["otlp_dropped_shutdown"] + \
        c["otlp_failed"] == total, c
    assert c["otlp_failed"] == c["otlp_dropped_shutdown"] == c["otlp_queued"] == 0, c
    assert_delivered_once(spans, c["otlp_exported"], "after the overflow")
    # the queue budget (16) is what survives, the newest spans, plus at most the batch (8)
    # each of the 4 export workers was retrying when the collector came up
    assert 16 <= c["otlp_exported"] <= 16 + 4 * 8, c
    assert [s for s in spans if s["attributes"].get("http.response.status_code") == 202], spans
    assert hwm - rss_before < 4 * 1024, (rss_before, hwm)
    assert hwm < 256 * 1024, hwm


def test_sigterm_flushes_within_the_deadline():
    """SIGTERM with spans queued (schedule delay 60 s): sent at once, before the agent exits.
    With a collector that does not answer in time: the agent still exits by the 5 s flush
    deadline, counting the spans as dropped at shutdown."""
    app_port = free_port()
    srv = app_server(app_port)
    agents, cols = [], []
    try:
        fast = Collector()
        slow = Collector("--delay-ms", "30000")
        cols += [fast, slow]
        agents += start_agents([
            (ExportAgent, ("--port", str(app_port)), {"env": export_env(
                OTEL_EXPORTER_OTLP_ENDPOINT=col.url, OTEL_BSP_SCHEDULE_DELAY=60000)})
            for col in (fast, slow)])
        curl_many(app_port, 3)
        time.sleep(0.5)
        assert fast.spans() == [] and slow.spans() == []  # still queued
        for a in agents:
            a.send(signal.SIGTERM)
        quick, stuck = [a.finish() for a in agents]
        spans = fast.spans()
        for col in cols:
            col.stop()
    finally:
        for x in agents + cols:
            x.kill()
        srv.stop()
    # exit time = detaching the BPF programs (about a second under ASan) + the flush
    assert agents[0].exit_seconds < 4.5, agents[0].exit_seconds
    assert_delivered_once(spans, 6, "flushed at SIGTERM")
    assert_nothing_lost(quick)
    # the slow one gives up at the 5 s flush deadline, not when the collector would answer
    assert 4.5 <= agents[1].exit_seconds < 10.0, agents[1].exit_seconds
    assert stuck["otlp_dropped_shutdown"] == 6 and stuck["otlp_exported"] == 0, stuck
    assert "received Terminated" in agents[1].stderr() or "stopping" in agents[1].stderr()
    assert re.search(r"otlp: 6 spans not exported within the 5000 ms flush deadline",
                     agents[1].stderr()), agents[1].stderr()[-2000:]


def test_concurrent_exporters_with_a_slow_collector():
    """A collector answering every request 250 ms late, and a burst of 48 spans in batches of
    4. One export worker sends one batch per round trip: the 12th request leaves at least 11
    round trips (2.75 s) after the first. Four workers (the default) send four at a time.
    Two agents trace the same burst side by side, one with --otlp-exporters 1, one with
    HOPTRACE_OTLP_EXPORTERS=4: the second has every span at its collector in well under half
    the time, each worker on its own kept-alive connection."""
    app_port = free_port()
    srv = app_server(app_port)
    agents, cols = [], []
    try:
        one, four = Collector("--delay-ms", "250"), Collector("--delay-ms", "250")
        cols += [one, four]
        batch = {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": 4}
        agents += start_agents([
            (ExportAgent, ("--port", str(app_port), "--otlp-exporters", "1"),
             {"env": export_env(OTEL_EXPORTER_OTLP_ENDPOINT=one.url, **batch)}),
            (ExportAgent, ("--port", str(app_port)),
             {"env": export_env(OTEL_EXPORTER_OTLP_ENDPOINT=four.url,
                                HOPTRACE_OTLP_EXPORTERS=4, **batch)}),
        ])
        t0 = time.time()
        curl_many(app_port, 24)
        took = {}
        deadline = t0 + 20
        while len(took) < 2 and time.time() < deadline:
            for name, col in (("one", one), ("four", four)):
                if name not in took and len(col.spans()) >= 48:
                    took[name] = time.time() - t0
            time.sleep(0.02)
        assert len(took) == 2, (took, len(one.spans()), len(four.spans()))
        for a in agents:
            a.send()
        counters = [a.finish() for a in agents]
        stats = [col.stop() for col in cols]
        spans = [col.spans() for col in cols]
    finally:
        for x in agents + cols:
            x.kill()
        srv.stop()
    print(f"    48 spans, batches of 4, 250 ms round trip: 1 worker {took['one']:.2f} s, "
          f"4 workers {took['four']:.2f} s")
    for c, s, what in zip(counters, spans, ("1 worker", "4 workers")):
        assert total_spans(c) == 48, (what, c)
        assert_nothing_lost(c)
        assert_delivered_once(s, 48, what)
    assert took["one"] >= 11 * 0.25, took
    assert took["four"] < took["one"] / 2, took
    assert stats[0]["connections"] == 1, stats
    assert 2 <= stats[1]["connections"] <= 4, stats
    assert re.search(r"otlp: http/protobuf \S+, 1 exporter$", agents[0].stderr(), re.M)
    assert re.search(r"otlp: http/protobuf \S+, 4 exporters$", agents[1].stderr(), re.M)


def test_collect_count_only():
    """hoptrace-collect --count-only, the benchmark's receiver: spans counted by kind into a
    JSON object, none written; a malformed request is still a 400, and counted."""
    app_port = free_port()
    srv = app_server(app_port)
    agent = None
    col = Collector(count_only=True)
    try:
        agent = ExportAgent("--port", str(app_port),
                            env=export_env(OTEL_EXPORTER_OTLP_ENDPOINT=col.url))
        curl_many(app_port, 5)
        c = agent.stop()
        conn = http.client.HTTPConnection("127.0.0.1", col.port, timeout=10)
        conn.request("POST", "/v1/traces", body=b"\x0a\x05\x12\x03",  # truncated
                     headers={"Content-Type": "application/x-protobuf"})
        status = conn.getresponse().status
        conn.close()
        stats = col.stop()
    finally:
        for x in (agent, col):
            if x:
                x.kill()
        srv.stop()
    with open(col.counts_path) as f:
        counts = json.load(f)
    assert status == 400 and counts["bad_requests"] == stats["bad_requests"] == 1, counts
    assert counts["accepted"] == c["otlp_requests"] and counts["requests"] == stats["requests"]
    assert (counts["spans"], counts["server"], counts["client"], counts["other"]) == \
        (10, 5, 5, 0), counts
    assert not os.path.exists(col.out_path)
