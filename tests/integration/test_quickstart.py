"""The README's quick start (issue 14): `./build.sh run` with no arguments runs the agent on
its embedded default, the store, with the web UI on loopback, and a request of a real
process traced meanwhile can be found through the UI's API. build.sh is run as the README
says (it builds what is missing, then execs the agent); the store goes to the suite's
private HOPTRACE_STORE, never the host's."""
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request

from lib import ROOT, curl, free_port, python_server, read_lines, slow, wait_port

UI = "http://127.0.0.1:16686"


def api(path):
    with urllib.request.urlopen(UI + path, timeout=10) as r:
        return r.status, r.headers, r.read()


def wait_log(path, text, proc, timeout):
    deadline = time.time() + slow(timeout)
    while time.time() < deadline:
        log = read_lines(path, whole=False)
        if text in log:
            return log
        assert proc.poll() is None, "build.sh run exited:\n" + read_lines(path, True)[-3000:]
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} in:\n" + read_lines(path, whole=False)[-3000:])


def test_build_sh_run_serves_the_store_in_the_ui():
    tmp = tempfile.mkdtemp(prefix="hoptrace-quickstart-")
    log = os.path.join(tmp, "log")
    port = free_port()
    env = dict(os.environ)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    env.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
    with open(log, "w") as out:
        p = subprocess.Popen(["sh", os.path.join(ROOT, "build.sh"), "run"], cwd=ROOT, env=env,
                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = None
    try:
        # make may have to build the release binary first
        text = wait_log(log, "tracing HTTP/1.x", p, 600)
        assert "web UI on " + UI + "/" in text, text[-3000:]
        assert "output store" in text and os.environ["HOPTRACE_STORE"] in text, text[-3000:]
        server = python_server(port, service="quickstart-web")
        for _ in range(3):
            curl(f"http://127.0.0.1:{port}/")
        found = []
        deadline = time.time() + slow(20)
        while time.time() < deadline and not found:
            time.sleep(0.5)
            _, _, body = api("/api/traces?service=quickstart-web&limit=20&lookback=1h")
            found = json.loads(body)["data"]
        assert len(found) == 3, found
        span = found[0]["spans"][0]
        assert span["operationName"] == "GET /", span
        status, headers, page = api("/")
        assert status == 200 and b"<html" in page.lower(), page[:200]
        assert "default-src" in headers.get("Content-Security-Policy", ""), dict(headers)
    finally:
        if server:
            server.stop()
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
        try:
            rc = p.wait(timeout=slow(30))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            raise
    assert rc == 0, read_lines(log, whole=True)[-3000:]
