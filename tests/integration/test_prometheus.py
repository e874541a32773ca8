"""The Prometheus endpoint (--metrics-listen, issue 12): the agent serves /metrics, /healthz
and /readyz over HTTP. Checked with real tools: requests to a real server show up in the
scraped counters, `promtool check metrics` accepts the page, a real prometheus server
scrapes the agent and answers a query through its HTTP API, and hundreds of idle
connections to the endpoint neither stop tracing nor keep another client from scraping.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from lib import AGENT, Agent, Proc, curl, free_port, python_server, require, run, slow, wait_port


def endpoint(agent):
    """The endpoint's base URL, as the agent logs it (it binds port 0: a free one)."""
    m = re.search(r"metrics endpoint on (http://[0-9.:\[\]]+)/metrics", agent.stderr())
    assert m, agent.stderr()[-2000:]
    return m.group(1)


def get(url, method="GET"):
    """(status, headers, body) of one request, errors included."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def samples(text):
    """{'name{labels}': value} of an exposition page."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def scrape_until(base, pred, timeout=10.0):
    """The samples of the first scrape for which pred holds (the page is rendered once a
    second)."""
    deadline = time.time() + slow(timeout)
    while True:
        status, _, body = get(base + "/metrics")
        s = samples(body) if status == 200 else {}
        if status == 200 and pred(s):
            return s, body
        if time.time() > deadline:
            raise AssertionError(f"/metrics never matched (status {status}):\n{body[:3000]}")
        time.sleep(0.2)


def traffic(port, ok=3, missing=2):
    """ok requests for an existing file, missing for a missing one."""
    for _ in range(ok):
        assert curl(f"http://127.0.0.1:{port}/").stdout == b"200"
    for _ in range(missing):
        assert curl(f"http://127.0.0.1:{port}/nope").stdout == b"404"


def test_metrics_count_the_requests_and_pass_promtool():
    require("promtool")
    port = free_port()
    srv = python_server(port)
    agent = Agent("--port", str(port), "--metrics-listen", "0")
    try:
        base = endpoint(agent)
        assert base.startswith("http://127.0.0.1:")  # a bare port binds loopback
        traffic(port)
        s, body = scrape_until(base, lambda s: s.get("hoptrace_spans_server_total") == 5)
        assert s["hoptrace_drops_total{reason=\"parse_error\"}"] == 0
        assert s["hoptrace_bpf_events_total"] > 0
        assert s["hoptrace_traced_processes"] >= 1
        assert s["hoptrace_ring_size_bytes{ring=\"0\"}"] > 0
        assert "hoptrace_budget_peak_bytes" in s  # a gauge, not a counter
        assert "# TYPE hoptrace_budget_peak_bytes gauge" in body
        assert "# TYPE hoptrace_drops_total counter" in body
        r = run(["promtool", "check", "metrics"], input=body.encode(), check=False)
        assert r.returncode == 0, (r.stdout + r.stderr).decode() + body[:2000]

        status, headers, _ = get(base + "/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert get(base + "/healthz")[0] == 200
        assert get(base + "/readyz")[0] == 200
        assert get(base + "/metrics/x")[0] == 404
        assert get(base + "/metrics", method="POST")[0] == 405
        assert get(base + "/metrics", method="HEAD")[0] == 200
    finally:
        spans = agent.stop()
        srv.stop()
    # the scrape counted what the agent traced
    assert len([x for x in spans if x["kind"] == "SERVER"]) == 5


def test_readyz_waits_for_the_loop():
    """/readyz is 503 while the BPF programs load, 200 once the loop has ticked; /healthz is
    200 throughout (starting is being alive)."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="hoptrace-prom-", suffix=".err", delete=False)
    p = subprocess.Popen([AGENT, "-o", "json", "-O", "/dev/null", "--port", str(free_port()),
                          "--metrics-listen", f"127.0.0.1:{port}"], stderr=log,
                         stdout=subprocess.DEVNULL)
    seen = []
    try:
        wait_port(port)
        deadline = time.time() + slow(30)
        while time.time() < deadline:
            ready, alive = get(f"http://127.0.0.1:{port}/readyz")[0], \
                get(f"http://127.0.0.1:{port}/healthz")[0]
            seen.append((ready, alive))
            if ready == 200:
                break
            time.sleep(0.01)
    finally:
        p.terminate()
        p.wait(timeout=30)
        log.close()
        os.unlink(log.name)
    assert seen[0][0] == 503, seen  # bound before the programs load: not ready yet
    assert seen[-1][0] == 200, seen
    assert all(alive == 200 for _, alive in seen), seen


def test_bind_failure_is_one_line():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        started = time.time()
        r = run([AGENT, "--metrics-listen", f"127.0.0.1:{port}", "-d", "5"], check=False,
                timeout=30)
        took = time.time() - started
    err = r.stderr.decode()
    assert r.returncode != 0
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in lines[0], err
    assert took < 5, took  # refused before anything is loaded
    r = run([AGENT, "--metrics-listen", "localhost:80"], check=False)
    assert r.returncode != 0 and "invalid --metrics-listen" in r.stderr.decode()
    assert len(r.stderr.decode().strip().splitlines()) == 1


def test_prometheus_server_scrapes_the_agent():
    require("prometheus")
    port = free_port()
    srv = python_server(port)
    mport = free_port()
    agent = Agent("--port", str(port), "--metrics-listen", f":{mport}")
    d = tempfile.mkdtemp(prefix="hoptrace-prometheus-")
    prom = None
    try:
        with open(os.path.join(d, "prometheus.yml"), "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: hoptrace
    static_configs:
      - targets: ["127.0.0.1:{mport}"]
""")
        pport = free_port()
        prom = Proc(["prometheus", f"--config.file={d}/prometheus.yml",
                     f"--storage.tsdb.path={d}/data", f"--web.listen-address=127.0.0.1:{pport}"])
        traffic(port, ok=4, missing=3)
        wait_port(pport, timeout=20)
        query = urllib.request.quote('hoptrace_spans_server_total{job="hoptrace"}')
        deadline = time.time() + slow(20)
        result = None
        while time.time() < deadline:
            status, _, body = get(f"http://127.0.0.1:{pport}/api/v1/query?query={query}")
            if status == 200:
                result = json.loads(body)["data"]["result"]
                if result and float(result[0]["value"][1]) == 7:
                    break
            time.sleep(0.3)
        assert result and float(result[0]["value"][1]) == 7, result
        up = json.loads(get(f"http://127.0.0.1:{pport}/api/v1/query?query=up")[2])
        assert up["data"]["result"][0]["value"][1] == "1", up
    finally:
        if prom:
            prom.stop()
        shutil.rmtree(d, ignore_errors=True)
        agent.stop()
        srv.stop()


def test_idle_connections_do_not_stop_tracing():
    """500 idle connections to the endpoint from one address (127.0.0.2): the agent still
    traces, and a scraper from another address (127.0.0.1) is still answered."""
    port = free_port()
    srv = python_server(port)
    agent = Agent("--port", str(port), "--metrics-listen", "0")
    idle = []
    try:
        base = endpoint(agent)
        mport = int(base.rsplit(":", 1)[1])
        for _ in range(500):
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", mport))
            idle.append(s)
        time.sleep(slow(0.5))
        traffic(port, ok=3, missing=0)
        s, _ = scrape_until(base, lambda s: s.get("hoptrace_spans_server_total") == 3)
        # the per-address limit held the rest off
        assert s["hoptrace_http_open_connections"] <= 16 + 1, s
        assert get(base + "/healthz")[0] == 200
    finally:
        for s in idle:
            s.close()
        spans = agent.stop()
        srv.stop()
    assert len([x for x in spans if x["kind"] == "SERVER"]) == 3


def test_bpf_run_time_per_program():
    """With kernel.bpf_stats_enabled on, each program's run time and count are exported
    (restored to what it was afterwards)."""
    knob = "/proc/sys/kernel/bpf_stats_enabled"
    with open(knob) as f:
        before = f.read().strip()
    port = free_port()
    srv = python_server(port)
    agent = Agent("--port", str(port), "--metrics-listen", "0")
    try:
        base = endpoint(agent)
        s, _ = scrape_until(base, lambda s: "hoptrace_bpf_stats_enabled" in s)
        if before == "0":
            assert s["hoptrace_bpf_stats_enabled"] == 0
            assert not any(k.startswith("hoptrace_bpf_program_runs_total") for k in s)
        with open(knob, "w") as f:
            f.write("1")
        traffic(port, ok=2, missing=0)

        def counted(s):
            runs = {k: v for k, v in s.items() if k.startswith("hoptrace_bpf_program_runs_total")}
            return s.get("hoptrace_bpf_stats_enabled") == 1 and any(v > 0 for v in runs.values())

        s, body = scrape_until(base, counted)
        busy = [k for k, v in s.items()
                if k.startswith("hoptrace_bpf_program_run_seconds_total") and v > 0]
        assert busy, body
        assert re.search(r'hoptrace_bpf_program_runs_total\{program="ht_\w+"\} [1-9]', body), body
    finally:
        with open(knob, "w") as f:
            f.write(before)
        agent.stop()
        srv.stop()


def test_endpoint_thread_holds_no_capability():
    """The thread that parses what clients send holds no capability (only the loop thread
    keeps the run-time set), and cannot regain any."""
    agent = Agent("--port", str(free_port()), "--metrics-listen", "0")
    try:
        base = endpoint(agent)
        assert get(base + "/healthz")[0] == 200
        threads = {}
        for tid in os.listdir(f"/proc/{agent.p.pid}/task"):
            with open(f"/proc/{agent.p.pid}/task/{tid}/status") as f:
                st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
            threads[int(tid)] = st
    finally:
        agent.stop()
    others = {t: s for t, s in threads.items() if t != agent.p.pid}
    assert len(others) >= 2, threads  # the output writer and the endpoint at least
    for tid, st in others.items():
        assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0, (tid, st["Name"], st)
        assert st["NoNewPrivs"] == "1", (tid, st["Name"])


def test_export_results_with_a_real_collector():
    """-o otlp to hoptrace-collect: the spans the collector received are the spans the page
    counts as exported, and the queue drains to 0."""
    from test_otlp_export import Collector
    port = free_port()
    srv = python_server(port)
    col = Collector()
    agent = Agent("--port", str(port), "--metrics-listen", "0", "--otlp-endpoint", col.url,
                  output="otlp", out_file=False)
    try:
        base = endpoint(agent)
        traffic(port, ok=2, missing=1)  # 3 server and 3 client spans
        spans = col.wait_spans(6, timeout=slow(15))
        s, body = scrape_until(base,
                               lambda s: s.get('hoptrace_export_spans_total{result="exported"}') == 6)
        assert len(spans) == 6
        assert s['hoptrace_export_spans_total{result="failed"}'] == 0
        assert s["hoptrace_export_queue_spans"] == 0
        assert s["hoptrace_export_requests_total"] >= 1
        assert s["hoptrace_export_sent_bytes_total"] > 0
        assert 'reason="output_buffer_full"' not in body  # no json/waterfall output
    finally:
        agent.stop()
        col.stop()
        srv.stop()


def raw_request(port, data, read_timeout=5.0):
    """Send data on a fresh connection; the status line of the answer ('' if closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may close before taking it all
        try:
            first = s.recv(256)
        except OSError:
            first = b""
    return first.split(b"\r\n", 1)[0].decode(errors="replace")


def test_hostile_requests_are_bounded():
    """A header block over the per-connection memory, and a large body, are refused without
    being buffered; the endpoint keeps answering."""
    agent = Agent("--port", str(free_port()), "--metrics-listen", "0")
    try:
        base = endpoint(agent)
        mport = int(base.rsplit(":", 1)[1])
        huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n"
        line = raw_request(mport, huge)
        assert line == "" or line.split()[1] in ("400", "413", "414", "431"), line
        body = b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n"
        started = time.time()
        line = raw_request(mport, body + b"b" * (1 << 20))
        assert line.startswith("HTTP/1.1 405"), line
        assert time.time() - started < 3
        status, _, text = get(base + "/metrics")
        assert status == 200 and "hoptrace_http_requests_total" in text
    finally:
        agent.stop()


def sum_of(s, name, **labels):
    """Sum of the samples of name whose labels include every labels item."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for key, value in s.items():
        base, _, rest = key.partition("{")
        if base == name and all(w in rest for w in want):
            total += value
    return total


def test_red_and_service_graph_metrics_on_the_page():
    """The RED histograms and the service-graph edge of curl -> python on the scraped page,
    exact for a known mix (3 found, 2 missing), accepted by promtool, while spans go
    nowhere (-o none: metrics only)."""
    require("promtool")
    port = free_port()
    srv = python_server(port)
    agent = Agent("--port", str(port), "--metrics-listen", "0", "-o", "none")
    try:
        base = endpoint(agent)
        traffic(port)
        s, body = scrape_until(base, lambda s: sum_of(
            s, "http_server_request_duration_seconds_count") == 5)
        server = "http_server_request_duration_seconds"
        client = "http_client_request_duration_seconds"
        assert sum_of(s, server + "_count", http_response_status_code="200",
                      http_request_method="GET") == 3
        assert sum_of(s, server + "_count", http_response_status_code="404") == 2
        # a 404 is the client's error, not the server's (semantic conventions)
        assert sum_of(s, server + "_count", error_type="404") == 0
        assert sum_of(s, client + "_count", service_name="curl", error_type="404",
                      server_port=str(port)) == 2
        assert sum_of(s, client + "_bucket", le="+Inf") == 5
        assert sum_of(s, "traces_service_graph_request_total", client="curl") == 5
        assert sum_of(s, "traces_service_graph_request_failed_total", client="curl") == 2
        assert "# TYPE http_server_request_duration_seconds histogram" in body
        r = run(["promtool", "check", "metrics"], input=body.encode(), check=False)
        assert r.returncode == 0, (r.stdout + r.stderr).decode() + body[:2000]
    finally:
        agent.stop()
        srv.stop()
