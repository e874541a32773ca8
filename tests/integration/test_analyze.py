"""Trace analysis (issue 14) on traces recorded from real servers: Python http.server
services (analyze_app.py) written to show each pattern, traced by the real agent with
--repair=stitch (the apps pass no context on; the agent joins each callee to its call), then
`hoptrace analyze FILE` and `--json` must find:
  - N+1: front calls items /item/{id} six times while serving one request;
  - sequential calls: front calls users, slow and stock one after another; slow sleeps
    300 ms, so it is the slowest hop on the critical path and parallelism saves ~80 ms;
  - an error origin: leaf answers 500, middle 502, front 500: the origin is leaf's span,
    middle and front only propagated it.
The text report of the run is saved as BUILD/analyze-patterns.txt (quoted in the note).
"""
import json
import os
import time
from urllib.parse import quote

from lib import AGENT, BUILD, Agent, Proc, curl, free_port, python_server, run

SERVICES = ("front", "items", "users", "slow", "stock", "middle", "leaf")
MS = 1_000_000


def analyze(*args, check=True):
    """`hoptrace analyze args`: (returncode, stdout, stderr), checked for sanitizer reports."""
    r = run([AGENT, "analyze", *args], check=False)
    err = r.stderr.decode(errors="replace")
    for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert bad not in err, f"sanitizer report from hoptrace analyze:\n{err}"
    if check:
        assert r.returncode == 0, f"hoptrace analyze failed ({r.returncode}):\n{err}"
    return r.returncode, r.stdout.decode(), err


def record(ports):
    """Run the three patterns under the agent; the path of the JSON span file."""
    procs = []
    agent = None
    try:
        for name in SERVICES:
            procs.append(python_server(ports[name], script="analyze_app.py", service=name))
        args = [a for name in SERVICES for a in ("--port", str(ports[name]))]
        agent = Agent(*args, "--repair=stitch")
        front = f"http://127.0.0.1:{ports['front']}"
        assert curl(f"{front}/nplus1?to={ports['items']}&n=6").stdout == b"200"
        fan = f"{ports['users']}:40,{ports['slow']}:300,{ports['stock']}:40"
        assert curl(f"{front}/fanout?to={fan}").stdout == b"200"
        downstream = quote(f"/chain?to={ports['leaf']}&path=/fail&fail=502", safe="")
        assert curl(f"{front}/chain?to={ports['middle']}&path={downstream}&fail=500"
                    ).stdout == b"500"
        spans = agent.stop()
    finally:
        if agent:
            agent.kill()
        for p in procs:
            p.stop()
    # curl's call and front's server span each, then two spans a call: nplus1 6 calls,
    # fanout 3, chain 2 (front -> middle -> leaf)
    assert len(spans) == 3 * 2 + 2 * (6 + 3 + 2), "\n".join(json.dumps(s) for s in spans)
    return agent.out_path


def by_root_name(report):
    """The traces of the report by the name of their root's first server span (front's)."""
    out = {}
    for t in report["traces"]:
        front = [s for s in t["span_times"] if s["service"] == "front" and s["kind"] == "SERVER"]
        assert len(front) == 1, t
        out[front[0]["name"].split("?")[0]] = t
    return out


def test_analyze_patterns_real():
    ports = {name: free_port() for name in SERVICES}
    path = record(ports)
    _, text, err = analyze(path)
    with open(os.path.join(BUILD, "analyze-patterns.txt"), "w") as f:
        f.write(text)
    print(f"\n{text}", end="")
    _, out, _ = analyze("--json", path)
    report = json.loads(out)
    traces = by_root_name(report)
    assert sorted(traces) == ["GET /chain", "GET /fanout", "GET /nplus1"], sorted(traces)
    for t in traces.values():
        # curl -> front -> ...: one connected trace each, nothing missing or clamped away
        assert t["complete"] and t["roots"] == 1 and not t["missing_parents"], t
        assert t["root"]["service"] == "curl", t["root"]
        # every nanosecond of the root is given to one span of the critical path
        assert sum(s["self_on_path_ns"] for s in t["critical_path"]) == t["duration_ns"]

    # N+1: six calls from front's /nplus1 to one endpoint, and no other finding
    t = traces["GET /nplus1"]
    assert len(t["n_plus_one"]) == 1, t["n_plus_one"]
    np = t["n_plus_one"][0]
    assert np["calls"] == 6 and np["parent"]["service"] == "front", np
    assert np["endpoint"] == f"GET 127.0.0.1:{ports['items']} /item/{{id}}", np
    assert not t["sequential_calls"] and not t["errors"]["origins"], t

    # sequential calls to three backends; slow is the slowest hop
    t = traces["GET /fanout"]
    assert not t["n_plus_one"] and not t["errors"]["origins"], t
    assert len(t["sequential_calls"]) == 1, t["sequential_calls"]
    seq = t["sequential_calls"][0]
    assert seq["calls"] == 3 and seq["endpoints"] == 3 and seq["parent"]["service"] == "front"
    assert [s["endpoint"].split()[1] for s in seq["spans"]] == [
        f"127.0.0.1:{ports[n]}" for n in ("users", "slow", "stock")], seq
    # saved = the two shorter calls (40 ms sleeps plus the round trips)
    assert 75 * MS <= seq["saved_ns"] <= 300 * MS, seq
    assert seq["parallel_ns"] >= 300 * MS, seq
    hop = t["slowest_hop"]
    assert hop["service"] == "slow" and hop["kind"] == "SERVER", hop
    assert hop["self_on_path_ns"] >= 295 * MS, hop
    assert {s["service"] for s in t["critical_path"]} >= {"curl", "front", "users", "slow",
                                                         "stock"}
    # front's self time is small next to the time it waited on its calls
    front = [s for s in t["span_times"] if s["service"] == "front" and s["kind"] == "SERVER"][0]
    assert front["child_ns"] >= 380 * MS and front["self_ns"] < front["child_ns"] / 4, front

    # the error started at leaf; middle (502) and front (500) only propagated it
    t = traces["GET /chain"]
    assert not t["n_plus_one"] and not t["sequential_calls"], t
    origins = t["errors"]["origins"]
    assert len(origins) == 1, origins
    o = origins[0]
    assert (o["service"], o["kind"], o["status_code"]) == ("leaf", "SERVER", 500), o
    assert not o["callee_not_seen"]
    chain = [(p["service"], p["kind"], p["status_code"]) for p in o["propagated_by"]]
    assert chain == [("middle", "CLIENT", 500), ("middle", "SERVER", 502),
                     ("front", "CLIENT", 502), ("front", "SERVER", 500),
                     ("curl", "CLIENT", 500)], chain

    agg = report["aggregate"]
    assert agg["traces"] == 3 and agg["incomplete_traces"] == 0, agg
    assert agg["patterns"] == {"n_plus_one": 1, "sequential_calls": 1, "errors": 1}, agg
    assert [(r["service"], r["name"]) for r in agg["error_origins"]] == [("leaf", "GET /fail")]
    assert agg["n_plus_one"][0]["calls"] == 6, agg["n_plus_one"]
    assert agg["slowest_hops"][0]["service"] == "slow", agg["slowest_hops"]
    assert report["input"]["malformed"] == 0, report["input"]

    # the text report says the same
    assert f"called GET 127.0.0.1:{ports['items']} /item/{{id}} 6 times" in text, text
    assert "slowest hop: slow GET /work (SERVER)" in text, text
    assert "made 3 calls one after another to 3 endpoints" in text, text
    assert "error origin: leaf GET /fail (SERVER, 500" in text, text
    assert "propagated by middle GET /chain (SERVER, 502)" in text, text

    # the aggregate alone
    _, only, _ = analyze("--aggregate-only", path)
    assert only.startswith("== aggregate: 3 traces (0 incomplete), 28 spans"), only
    assert "\ntrace " not in only and "error origins:\n       1 errors  leaf GET /fail" in only
    _, out, _ = analyze("--json", "--aggregate-only", path)
    assert json.loads(out)["traces"] == [] and json.loads(out)["aggregate"] == agg

    # one trace by id
    chain_id = traces["GET /chain"]["trace_id"]
    _, out, _ = analyze("--json", "--trace-id", chain_id.upper(), path)
    one = json.loads(out)
    assert [t["trace_id"] for t in one["traces"]] == [chain_id]
    assert one["input"]["filtered"] == report["aggregate"]["spans"] - one["traces"][0]["spans"]


def test_analyze_cli_input_errors():
    """No agent: what the command says about sources it cannot use."""
    rc, _, err = analyze("/nonexistent/spans.jsonl", check=False)
    assert rc == 1 and "cannot open /nonexistent/spans.jsonl" in err, err
    rc, _, err = analyze("--trace-id", "xyz", "-", check=False)
    assert rc == 64 and "--trace-id" in err, err
    rc, _, err = analyze("--from", "2026-12-06T03:00:00Z", "--to", "1000", "-", check=False)
    assert rc == 64 and "time range is empty" in err, err
    d = os.path.join(BUILD, "analyze-test")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "mixed.jsonl")
    with open(path, "w") as f:
        f.write("not json\n{\"trace_id\": 1}\n")
    rc, out, err = analyze("--json", path)
    assert "skipped 2 malformed line(s) of 2" in err and "no spans found" in err, err
    report = json.loads(out)
    assert report["traces"] == [] and report["input"]["malformed"] == 2, report


def test_analyze_cli_time_range():
    """--since and --from/--to keep the spans that started in the range (no agent)."""
    now = time.time_ns()
    old = 1_000_000_000 * 1_000_000_000  # 2001-09-09
    path = os.path.join(BUILD, "analyze-test", "times.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for tid, start in (("a" * 32, now - 60 * 10**9), ("b" * 32, old)):
            f.write(json.dumps({
                "trace_id": tid, "span_id": "1" * 16, "parent_span_id": "", "name": "GET /",
                "kind": "SERVER", "start_unix_ns": start, "end_unix_ns": start + 10**6,
                "status": "UNSET", "service.name": "s", "attributes": {}}) + "\n")
    ids = lambda out: [t["trace_id"] for t in json.loads(out)["traces"]]
    assert ids(analyze("--json", path)[1]) == ["b" * 32, "a" * 32]
    assert ids(analyze("--json", "--since", "1h", path)[1]) == ["a" * 32]
    assert ids(analyze("--json", "--from", "2001-09-09T00:00:00Z", "--to",
                       "2001-09-10T00:00:00Z", path)[1]) == ["b" * 32]
    with open(path) as f:
        r = run([AGENT, "analyze", "--json", "--to", str(old // 10**9 + 1), "-"], stdin=f)
    assert ids(r.stdout.decode()) == ["b" * 32]
