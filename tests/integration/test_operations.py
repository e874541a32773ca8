"""Operations (issue 13): structured logs (--log-format json, --log-level), `hoptrace status`
read through the agent's endpoint, and a /healthz that fails for real when the exporter
gets no answer or the event loop stops, and recovers when they do.

Everything is real: the agent traces a real server, the OTLP endpoint is a real socket
server that accepts and never answers, the event loop is stopped by ptrace (only its
thread: the HTTP thread keeps answering).
"""
import ctypes
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

from lib import AGENT, Agent, free_port, python_server, read_lines, run, slow

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"error", "warn", "info", "debug"}


def json_log(text):
    """Every line of stderr as a JSON object with ts, level and msg (fails otherwise)."""
    lines = []
    for line in text.split("\n"):
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise AssertionError(f"stderr line is not JSON ({e}): {line!r}")
        assert isinstance(obj, dict), line
        assert TS.match(obj.get("ts", "")), line
        assert obj.get("level") in LEVELS, line
        assert isinstance(obj.get("msg"), str), line
        lines.append(obj)
    assert lines, "no log lines"
    return lines


def get(url):
    """(status, body) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def endpoint(agent):
    """The endpoint's address, from the JSON log's key field or the text line."""
    m = re.search(r"metrics endpoint on http://([0-9.:\[\]]+)/metrics", agent.stderr())
    assert m, agent.stderr()[-2000:]
    return m.group(1)


def traffic(port, n=3):
    for _ in range(n):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            r.read()


def wait_for(pred, timeout, what):
    deadline = time.time() + slow(timeout)
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError(f"{what} not seen within {timeout} s")
        time.sleep(0.2)


def test_json_logs_every_line_parses():
    """--log-format json: every stderr line is a JSON object with ts (RFC 3339, ms), level
    and msg, from start-up to the exit summary, a handled export error included."""
    app = free_port()
    closed = free_port()  # nothing listens: the exporter's requests fail and are retried
    srv = python_server(app)
    agent = Agent("--log-format", "json", "--port", str(app), "--metrics-listen", "0",
                  "--otlp-endpoint", f"http://127.0.0.1:{closed}", output="otlp",
                  out_file=False, env={"OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        traffic(app)
        wait_for(lambda: "export to" in agent.stderr(), 15, "the export failure log line")
    finally:
        agent.stop()
        srv.stop()
    lines = json_log(agent.stderr())
    start = [x for x in lines if x["msg"].startswith("metrics endpoint on")]
    assert start and start[0]["level"] == "info" and start[0]["endpoint"] == endpoint(agent)
    fail = [x for x in lines if "export to" in x["msg"]]
    assert fail[0]["level"] == "warn", fail
    assert f"127.0.0.1:{closed}" in fail[0]["msg"]
    summary = [x for x in lines if x["msg"] == "counters"]
    assert len(summary) == 1, lines[-3:]
    assert summary[0]["spans_server"] == 3 and summary[0]["capture_backend"]
    assert "hoptrace: counters" not in agent.stderr()  # no text table in JSON mode


def test_json_logs_escape_hostile_bytes():
    """A configuration error that quotes hostile bytes (escape sequences, quotes, invalid
    UTF-8) is one valid JSON line whose bytes hold no control character; --log-level error
    keeps the info lines out; HOPTRACE_LOG_FORMAT and HOPTRACE_LOG_LEVEL do the same without
    the flags."""
    hostile = b"/tmp/\x1b[31m\"q\\\xff\xc2\x9b\n/x/out"
    for env, args in (({}, ["--log-format", "json", "--log-level", "error"]),
                      ({"HOPTRACE_LOG_FORMAT": "json", "HOPTRACE_LOG_LEVEL": "error"}, [])):
        e = dict(os.environ, **env)
        r = subprocess.run([AGENT.encode(), *[a.encode() for a in args], b"--metrics-listen",
                            b"0", b"-o", b"json", b"-O", hostile, b"-d", b"1"], env=e,
                           capture_output=True, timeout=60)
        assert r.returncode != 0
        raw = r.stderr
        assert not any(b < 0x20 and b != 0x0a for b in raw), raw  # no ESC, no CR
        assert b"\xc2\x9b" not in raw and b"\xff" not in raw, raw
        lines = json_log(raw.decode("utf-8"))
        assert all(x["level"] == "error" for x in lines), lines  # no "metrics endpoint"
        bad = [x for x in lines if "-O" in x["msg"]]
        assert len(bad) == 1, lines
        # the bytes are shown escaped, as text logs show them
        assert "\\x1b[31m\"q\\" in bad[0]["msg"] and "\\xff" in bad[0]["msg"], bad
        # and what a reader decodes holds no control either (jq -r .msg to a terminal)
        assert not any(ord(ch) < 0x20 or 0x7f <= ord(ch) < 0xa0 for ch in bad[0]["msg"]), bad
    # a bad option value in text format: escaped too
    r = subprocess.run([AGENT.encode(), b"--pid", b"\x1b[31m1"], capture_output=True, timeout=60)
    assert r.returncode != 0 and r.stderr.startswith(b"hoptrace: invalid --pid '\\x1b[31m1'")
    assert b"\x1b" not in r.stderr, r.stderr


def test_status_lists_the_traced_process():
    """`hoptrace status` reads a running agent's /status: the process that served traced
    requests is listed with its spans, the counters are non-zero; with no agent it says so
    and exits 1."""
    app, port = free_port(), free_port()
    srv = python_server(app, service="ops-status-app")
    agent = Agent("--port", str(app), "--metrics-listen", f"127.0.0.1:{port}")
    try:
        traffic(app, 4)

        def listed():
            r = run([AGENT, "status", "--endpoint", str(port), "--json"], check=False)
            if r.returncode != 0:
                return None
            doc = json.loads(r.stdout)
            procs = [p for p in doc["processes"] if p["pid"] == srv.pid]
            return doc if procs and procs[0]["spans"] == 4 else None

        doc = wait_for(listed, 10, "the server in /status")
        me = [p for p in doc["processes"] if p["pid"] == srv.pid][0]
        assert me["service"] == "ops-status-app" and me["exe"].startswith("python"), me
        assert doc["counters"]["spans_server"] == 4 and doc["counters"]["bpf_events"] > 0
        assert doc["ready"] is True and doc["pid"] == agent.p.pid
        table = run([AGENT, "status", "--endpoint", f"127.0.0.1:{port}"]).stdout.decode()
        row = [line for line in table.splitlines() if line.startswith(f"{srv.pid} ")]
        assert row and "ops-status-app" in row[0] and row[0].split()[-1] == "4", table
        assert re.search(r"^spans_server +4$", table, re.M), table
        assert re.search(r"^health: +ok", table, re.M), table
        # something else listens there: said, exit 1
        r = run([AGENT, "status", "--endpoint", str(app)], check=False)
        assert r.returncode == 1 and b"answered HTTP 404" in r.stderr, r
    finally:
        agent.stop()
        srv.stop()
    r = run([AGENT, "status", "--endpoint", str(port)], check=False)
    assert r.returncode == 1, r
    assert b"no agent answers at http://127.0.0.1:%d" % port in r.stderr, r.stderr


def test_status_escapes_hostile_names():
    """A traced process whose service name holds an escape sequence, a quote, a C1 control
    and a byte that is not UTF-8: /status stays strict JSON and the table shows the name
    escaped, with no control byte reaching the terminal."""
    app, port = free_port(), free_port()
    hostile = "ev\x1b[31mil\"q\u009b\udcff"  # \udcff: the raw byte 0xff in the environment
    srv = python_server(app, service=hostile)
    agent = Agent("--port", str(app), "--metrics-listen", f"127.0.0.1:{port}")
    try:
        traffic(app, 1)

        def listed():
            r = run([AGENT, "status", "--endpoint", str(port), "--json"], check=False)
            doc = json.loads(r.stdout) if r.returncode == 0 else {"processes": []}
            return [p for p in doc["processes"] if p["pid"] == srv.pid and p["spans"]]

        me = wait_for(listed, 10, "the server in /status")[0]
        assert me["service"] == "ev\\x1b[31mil\"q\\xc2\\x9b\\xff", me
        table = run([AGENT, "status", "--endpoint", str(port)]).stdout
        assert not any(b < 0x20 and b != 0x0a for b in table), table
        assert not any(b >= 0x80 for b in table), table  # names shown in ASCII
        assert b"ev\\x1b[31mil\"q" in table, table
    finally:
        agent.stop()
        srv.stop()


class OtlpEndpoint:
    """An OTLP/HTTP endpoint that accepts connections and reads requests, and either never
    answers (hanging) or answers each with 200 and an empty ExportTraceServiceResponse."""

    def __init__(self):
        self.answer = threading.Event()
        self.answered = 0
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        with c:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                need = int(m.group(1)) if m else 0
                while len(buf) < need:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                buf = buf[need:]
                while not self.answer.is_set():  # hang: read (and drop) until closed
                    c.settimeout(0.2)
                    try:
                        if not c.recv(65536):
                            return
                    except socket.timeout:
                        pass
                c.settimeout(None)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n"
                          b"Content-Length: 0\r\n\r\n")
                self.answered += 1

    def close(self):
        self.ls.close()


def test_healthz_fails_while_an_export_request_hangs():
    """Spans wait and the one export request hangs (no request timeout, an endpoint that
    accepts but never answers): /healthz turns 503 within --health-export-timeout (plus a
    second), and back to 200 once the request finishes."""
    app = free_port()
    otlp = OtlpEndpoint()
    srv = python_server(app)
    agent = Agent("--port", str(app), "--metrics-listen", "0", "--health-export-timeout", "3",
                  "--otlp-endpoint", f"http://127.0.0.1:{otlp.port}", output="otlp",
                  out_file=False,
                  env={"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_EXPORTER_OTLP_TIMEOUT": "0",
                       "OTEL_BSP_EXPORT_TIMEOUT": "60000"})
    try:
        base = "http://" + endpoint(agent)
        assert get(base + "/healthz") == (200, "ok\n")
        traffic(app, 2)
        started = time.time()

        def failing():
            traffic(app, 1)  # traffic keeps flowing
            status, body = get(base + "/healthz")
            return body if status == 503 else None

        why = wait_for(failing, 3 + 1 + 2, "/healthz 503")
        assert time.time() - started >= 3, why  # not before the threshold
        assert re.match(r"exporter stuck: \d+ spans waiting, no export attempt finished "
                        r"for \d+ s\n$", why), why
        otlp.answer.set()  # the endpoint recovers
        wait_for(lambda: get(base + "/healthz")[0] == 200, 10, "/healthz 200 again")
        wait_for(lambda: otlp.answered > 0, 5, "an answered export")
    finally:
        agent.stop()
        srv.stop()
        otlp.close()


def test_healthz_stays_ok_while_the_collector_is_down():
    """A collector that is down (connections refused) or never answers within the request
    timeout is not the agent being stuck: restarting the agent would not bring it back, and
    a liveness probe on every node would restart them all. /healthz stays 200 past
    --health-export-timeout while the failures are counted."""
    app, dead = free_port(), free_port()
    hanging = OtlpEndpoint()
    srv = python_server(app)
    agents = [Agent("--port", str(app), "--metrics-listen", "0", "--health-export-timeout", "2",
                    "--otlp-endpoint", f"http://127.0.0.1:{port}", output="otlp",
                    out_file=False,
                    env={"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_EXPORTER_OTLP_TIMEOUT": "500"})
              for port in (dead, hanging.port)]
    try:
        bases = ["http://" + endpoint(a) for a in agents]
        deadline = time.time() + 5
        while time.time() < deadline:
            traffic(app, 1)
            for base in bases:
                status, body = get(base + "/healthz")
                assert status == 200, body
            time.sleep(0.3)
        for a in agents:
            a.stop()
        for a in agents:
            assert a.counters.get("otlp_requests", 0) > 0, a.counters  # it did try
    finally:
        for a in agents:
            a.kill()
        srv.stop()
        hanging.close()


PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_DETACH = 0x4206, 0x4207, 17
WALL = 0x40000000


def ptrace(req, tid):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(req, tid, None, None) != 0:
        raise OSError(ctypes.get_errno(), f"ptrace({req:#x}, {tid})")


def test_healthz_fails_while_the_event_loop_is_stopped():
    """The loop thread alone is stopped (ptrace interrupt of the main thread; the HTTP thread
    keeps answering): /healthz turns 503 after --health-loop-timeout, and 200 once it runs
    again. /status still answers meanwhile (the last document)."""
    agent = Agent("--port", str(free_port()), "--metrics-listen", "0",
                  "--health-loop-timeout", "2")
    try:
        base = "http://" + endpoint(agent)
        wait_for(lambda: get(base + "/readyz")[0] == 200, 10, "/readyz 200")
        assert get(base + "/healthz")[0] == 200
        tid = agent.p.pid  # main() runs the loop
        ptrace(PTRACE_SEIZE, tid)
        try:
            ptrace(PTRACE_INTERRUPT, tid)
            os.waitpid(tid, WALL)
            stopped = time.time()
            why = wait_for(lambda: (lambda r: r[1] if r[0] == 503 else None)(
                get(base + "/healthz")), 2 + 2, "/healthz 503")
            assert time.time() - stopped >= 1, why
            assert re.match(r"event loop stalled: no heartbeat for \d+ s\n$", why), why
            assert get(base + "/readyz")[0] == 503
            assert get(base + "/status")[0] == 200
        finally:
            ptrace(PTRACE_DETACH, tid)
        wait_for(lambda: get(base + "/healthz")[0] == 200, 5, "/healthz 200 again")
    finally:
        agent.stop()
