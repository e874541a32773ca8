"""The embedded store and `hoptrace query` (issue 14): the real agent on its default output
(the store, here in a temp path) tracing real python servers that call each other and curl,
then every filter of `hoptrace query` and its three formats; a full disk (a small tmpfs);
a damaged store file at start."""
import json
import os
import stat
import subprocess
import tempfile
import time
import urllib.request

from lib import (AGENT, Agent, curl, free_port, python_server, read_lines, require, run, slow,
                 wait_port)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TP = f"00-{TRACE}-00f067aa0ba902b7-01"


def query(store, *args, check=True):
    r = run([AGENT, "query", "--store", store, *args], check=check)
    return r.stdout.decode(), r.stderr.decode()


def table_ids(text):
    """Trace ids of a query table (first column), header skipped."""
    lines = [line for line in text.split("\n") if line]
    assert lines and lines[0].startswith("TRACE ID"), text
    return [line.split()[0] for line in lines[1:]]


def json_traces(text):
    return [json.loads(line) for line in text.split("\n") if line]


def store_agent(store, *args, env=None):
    """The agent on its default output: no -o, no -O, no collector; the store at store."""
    e = {"HOPTRACE_STORE": store}
    e.update(env or {})
    return Agent(*args, output=None, out_file=False, env=e)


def test_default_store_and_every_query():
    d = tempfile.mkdtemp(prefix="hoptrace-store-test-")
    store = os.path.join(d, "state", "traces.db")  # the directory does not exist yet
    front_port, back_port = free_port(), free_port()
    front = python_server(front_port, script="app_server.py", service="front")
    back = python_server(back_port, script="app_server.py", service="back")
    agent = store_agent(store, "--port", str(front_port), "--port", str(back_port),
                        "--no-tls")
    try:
        t0 = time.time()
        # front -> back in the trace curl starts (propagated by the app: child)
        assert curl("-H", f"traceparent: {TP}",
                    f"http://127.0.0.1:{front_port}/hop?to={back_port}&propagate=child"
                    ).stdout == b"200"
        assert curl(f"http://127.0.0.1:{back_port}/status?code=503").stdout == b"503"
        assert curl(f"http://127.0.0.1:{back_port}/slow?ms=300").stdout == b"200"
        agent.stop(settle=1.0)
    finally:
        agent.kill()
        front.stop()
        back.stop()
    log = agent.stderr()
    assert f"spans go to the store {store}" in log and "hoptrace query" in log, log
    c = agent.counters
    spans = c["spans_server"] + c["spans_client"]
    assert spans >= 7 and c["store_spans_written"] == spans, c
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(store)).st_mode) == 0o700

    out, _ = query(store, "--format", "json", "--limit", "100")
    traces = json_traces(out)
    hop = [t for t in traces if t["trace_id"] == TRACE]
    assert len(hop) == 1, traces
    hop = hop[0]
    names = sorted((s["service.name"], s["kind"], s["name"]) for s in hop["spans"])
    assert ("front", "SERVER", "GET /hop") in names and ("back", "SERVER", "GET /leaf") in names
    assert ("front", "CLIENT", "GET") in names or any(
        n[:2] == ("front", "CLIENT") for n in names), names
    assert hop["nservices"] >= 2 and hop["root_service"] in ("front", "curl"), hop
    by_id = {t["trace_id"]: t for t in traces}
    slow_id = next(t["trace_id"] for t in traces
                   if any(s["name"] == "GET /slow" and s["service.name"] == "back"
                          for s in t["spans"]))
    err_id = next(t["trace_id"] for t in traces
                  if any(s["name"] == "GET /status" and s["service.name"] == "back"
                         for s in t["spans"]))

    def ids(*args):
        out, err = query(store, "--limit", "100", *args)
        return set(table_ids(out)) if out else set()

    everything = ids()
    assert {TRACE, slow_id, err_id} <= everything, everything
    # service: the three traces with a back span; front only in the hop
    assert {TRACE, slow_id, err_id} <= ids("--service", "back")
    assert ids("--service", "front") == {TRACE}
    assert ids("--service", "nobody") == set()
    # operation: the span name (routes are covered by the unit test)
    assert ids("--service", "back", "--operation", "GET /slow") == {slow_id}
    assert ids("--operation", "GET /hop") >= {TRACE}
    # durations of that span
    assert ids("--service", "back", "--min-duration", "250ms") == {slow_id}
    assert slow_id not in ids("--service", "back", "--max-duration", "250ms")
    assert ids("--service", "back", "--max-duration", "250ms") >= {TRACE, err_id}
    # error
    assert err_id in ids("--error") and TRACE not in ids("--error")
    assert err_id not in ids("--no-error") and TRACE in ids("--no-error")
    # attributes
    assert ids("--tag", "http.response.status_code=503", "--service", "back") == {err_id}
    assert ids("--tag", "service.name=front") == set()  # a column, not an attribute
    assert TRACE in ids("--tag", "http.request.method=GET", "--tag",
                        "http.response.status_code=200")
    # time
    assert ids("--since", "1h") == everything
    assert ids("--from", f"{t0 - 60:.3f}") == everything
    assert ids("--from", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 3600))) == set()
    assert ids("--to", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 - 3600))) == set()
    # a time past what nanoseconds since 1970 hold (2554) is the end of time, not a wrap
    # to long ago
    assert ids("--to", "2600-01-01T00:00:00Z") == everything
    assert ids("--to", "18446744075") == everything
    assert ids("--from", "2600-01-01T00:00:00Z") == set()
    # trace id, limit
    assert ids("--trace-id", TRACE) == {TRACE}
    assert len(ids("--limit", "1")) == 1
    _, err = query(store, "--service", "nobody")
    assert "no trace matches" in err

    # the table shows the trace's numbers
    out, _ = query(store, "--trace-id", TRACE)
    row = out.split("\n")[1].split()
    assert row[0] == TRACE and int(row[4]) == len(hop["spans"]) and int(row[5]) == 0, out
    # waterfall: the -o waterfall drawing, nested
    out, _ = query(store, "--trace-id", TRACE, "--format", "waterfall", "--no-color")
    assert f"trace {TRACE}" in out, out
    lines = [line for line in out.split("\n") if "GET" in line]
    front_srv = next(line for line in lines if "front SERVER GET /hop" in line)
    back_srv = next(line for line in lines if "back SERVER GET /leaf" in line)
    indent = lambda line: len(line) - len(line.lstrip())
    assert indent(back_srv) > indent(front_srv), out

    # the dependencies: front -> back from the client span's callee, with its verdict (the
    # app propagated as an instrumented one does: ok)
    out, _ = query(store, "--dependencies", "--format", "json")
    edges = {(e["parent"], e["child"]): e for e in json_traces(out)}
    fb = edges[("front", "back")]
    assert fb["calls"] == 1 and fb["errors"] == 0 and fb["propagation"]["ok"] == 1, edges
    assert sum(fb["propagation"].values()) == 1, fb
    out, _ = query(store, "--dependencies")
    assert out.startswith("CALLER") and any(
        line.split()[:3] == ["front", "back", "1"] for line in out.split("\n")), out
    _, err = query(store, "--dependencies", "--from", f"{t0 + 3600:.0f}")
    assert "no dependency" in err

    # the same query over another source: the store as a tsource, and a JSON span file
    out, _ = run([AGENT, "query", "--source", f"store:{store}", "--service", "front"]).stdout, 0
    assert table_ids(out.decode()) == [TRACE]
    spans_file = os.path.join(d, "spans.jsonl")
    with open(spans_file, "w") as f:
        for s in hop["spans"]:
            f.write(json.dumps(s) + "\n")
        f.write("not a span\n")
    r = run([AGENT, "query", "--source", spans_file, "--service", "back", "--format", "json"])
    got = json_traces(r.stdout.decode())
    assert [t["trace_id"] for t in got] == [TRACE] and len(got[0]["spans"]) == len(hop["spans"])
    assert "1 lines skipped" in r.stderr.decode(), r.stderr

    # a bad filter is a usage error that names it
    r = run([AGENT, "query", "--store", store, "--min-duration", "fast"], check=False)
    assert r.returncode == 64 and b"'fast'" in r.stderr and not r.stdout, r  # EX_USAGE
    r = run([AGENT, "query", "--store", os.path.join(d, "none.db")], check=False)
    assert r.returncode == 1 and b"no such file" in r.stderr, r.stderr


def metrics_text(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric(text, name):
    for line in text.split("\n"):
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_disk_full_keeps_tracing_and_counts_losses():
    """The store on a 2 MiB tmpfs that then fills up: one clear error line, tracing goes on
    (the metrics page, rendered by the event loop, keeps answering and counting spans),
    every span lost is counted; with room again, writing resumes."""
    require("mount")
    d = tempfile.mkdtemp(prefix="hoptrace-store-full-")
    mnt = os.path.join(d, "mnt")
    os.mkdir(mnt)
    run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", mnt])
    srv = agent = None
    try:
        store = os.path.join(mnt, "traces.db")
        port, mport = free_port(), free_port()
        srv = python_server(port, script="app_server.py", service="full")
        agent = store_agent(store, "--port", str(port), "--no-tls", "--metrics-listen",
                            f"127.0.0.1:{mport}")
        for _ in range(5):
            curl(f"http://127.0.0.1:{port}/leaf")
        time.sleep(slow(1.0))
        # fill what is left of the file system
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        # long paths: spans of ~2 KiB, so that the WAL must grow
        path = "/leaf/" + "x" * 3000
        deadline = time.time() + slow(30)
        n = 0
        while time.time() < deadline:
            for _ in range(50):
                curl(f"http://127.0.0.1:{port}{path}")
                n += 1
            if "disk full" in agent.stderr():
                break
        assert "disk full" in agent.stderr(), agent.stderr()[-3000:]
        # the loop is not held: the page (rendered by the loop once a second) answers at
        # once and counts the new spans
        time.sleep(slow(1.5))
        before = metric(metrics_text(mport), "hoptrace_spans_server_total") or 0
        for _ in range(20):
            curl(f"http://127.0.0.1:{port}/leaf")
        deadline = time.time() + slow(5)
        while True:
            t = time.time()
            text = metrics_text(mport)
            assert time.time() - t < 2
            if metric(text, "hoptrace_spans_server_total") >= before + 20:
                break
            assert time.time() < deadline, (before, text)
            time.sleep(0.2)
        assert (metric(text, 'hoptrace_drops_total{reason="store_write_failed"}') or 0) > 0
        # room again: writing resumes
        os.unlink(filler)
        for _ in range(10):
            curl(f"http://127.0.0.1:{port}/leaf")
        deadline = time.time() + slow(10)
        while "writing again" not in agent.stderr() and time.time() < deadline:
            curl(f"http://127.0.0.1:{port}/leaf")
            time.sleep(0.2)
        agent.stop()
    finally:
        if agent:
            agent.kill()
        if srv:
            srv.stop()
        subprocess.run(["umount", "-l", mnt])
    log = agent.stderr()
    assert log.count("disk full: spans are not stored") == 1, log  # once an episode
    assert "writing again" in log, log
    c = agent.counters
    total = c["spans_server"] + c["spans_client"]
    assert c["drop_store_write_failed"] > 0 and c["store_write_errors"] > 0, c
    # every span is written or counted as lost
    assert (c["store_spans_written"] + c["drop_store_write_failed"] + c["drop_store_queue_full"]
            + c["drop_store_shutdown"]) == total, c


def test_damaged_store_is_moved_aside():
    d = tempfile.mkdtemp(prefix="hoptrace-store-bad-")
    store = os.path.join(d, "traces.db")
    with open(store, "wb") as f:
        f.write(b"this is not a database, but it is where the store goes\n" * 100)
    port = free_port()
    srv = python_server(port, script="app_server.py", service="again")
    agent = store_agent(store, "--port", str(port), "--no-tls")
    try:
        curl(f"http://127.0.0.1:{port}/leaf")
        agent.stop(settle=1.0)
    finally:
        agent.kill()
        srv.stop()
    log = agent.stderr()
    moved = [f for f in os.listdir(d) if f.startswith("traces.db.corrupt-")]
    assert len(moved) == 1, os.listdir(d)
    assert "not a SQLite database" in log and moved[0] in log, log
    assert agent.counters["store_files_replaced"] == 1
    with open(os.path.join(d, moved[0]), "rb") as f:
        assert f.read().startswith(b"this is not a database")  # kept for a look
    out, _ = query(store, "--service", "again")
    assert len(table_ids(out)) >= 1, out
