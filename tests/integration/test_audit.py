"""Propagation audit and trace repair (issue 4)."""
import json
import os
import subprocess
from urllib.parse import quote

from lib import Agent, AGENT, curl, free_port, one, python_server, run, spans_where

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TP = f"00-{TRACE}-{PARENT}-01"


def chain(agent_args, modes):
    """curl -> s0 -> s1 -> ... -> leaf; modes[i] is how s_i propagates to s_i+1."""
    ports = [free_port() for _ in range(len(modes) + 1)]
    servers = [python_server(p, script="app_server.py", service=f"svc{i}")
               for i, p in enumerate(ports)]
    path = "/leaf"
    for i in range(len(modes) - 1, -1, -1):
        path = f"/hop?to={ports[i + 1]}&propagate={modes[i]}&path={quote(path, safe='')}"
    args = []
    for p in ports:
        args += ["--port", str(p)]
    env = {}
    agent = Agent(*args, *agent_args)
    try:
        assert curl("-H", f"traceparent: {TP}", "-H", "tracestate: congo=t61rcWkgMzE",
                    f"http://127.0.0.1:{ports[0]}{path}").stdout == b"200"
        spans = agent.stop()
    finally:
        agent.kill()
        for s in servers:
            s.stop()
    return spans, ports, agent


def calls_to(spans, port):
    return [s for s in spans if s["kind"] == "CLIENT" and s["attributes"].get("server.port") == port]


def test_audit_names_the_hop_that_drops_context():
    spans, ports, agent = chain(["--audit-json"], ["child", "none"])
    ok_call = calls_to(spans, ports[1])
    dropped_call = calls_to(spans, ports[2])
    assert len(ok_call) == 1 and len(dropped_call) == 1
    assert ok_call[0]["attributes"]["hoptrace.propagation"] == "ok"
    assert ok_call[0]["attributes"]["hoptrace.propagation.confidence"] == "exact"
    assert dropped_call[0]["attributes"]["hoptrace.propagation"] == "dropped"
    assert dropped_call[0]["attributes"]["hoptrace.propagation.confidence"] == "thread"
    # tracestate came in with the traceparent, the app passed only the traceparent on
    assert ok_call[0]["attributes"]["hoptrace.propagation.tracestate"] == "dropped"
    # the callee on this host is named, and so is the caller on the receiving side
    assert dropped_call[0]["attributes"]["hoptrace.callee.service"] == "svc2"
    assert dropped_call[0]["service.name"] == "svc1"
    leaf = one(spans, kind="SERVER", attr_url__path="/leaf")
    assert leaf["attributes"]["hoptrace.traceparent.received"] == "none"
    assert leaf["attributes"]["hoptrace.caller.service"] == "svc1"
    # without stitching the leaf starts its own trace: two traces
    assert leaf["trace_id"] != TRACE
    report = json.loads(agent.stdout().strip().splitlines()[-1])
    edges = report["edges"]
    by_edge = {(e["caller"], e["callee"]): e["verdict"] for e in edges}
    assert by_edge == {("svc0", "svc1"): "ok", ("svc1", "svc2"): "dropped"}, report
    dropped = [e for e in edges if e["verdict"] == "dropped"][0]
    assert dropped["calls"] == 1
    assert dropped["results"]["dropped"]["example_trace_id"] == TRACE


def test_stitching_joins_the_broken_hop():
    spans, ports, agent = chain(["--repair=stitch"], ["child", "none"])
    dropped_call = calls_to(spans, ports[2])[0]
    leaf = one(spans, kind="SERVER", attr_url__path="/leaf")
    assert leaf["trace_id"] == TRACE == dropped_call["trace_id"]
    assert leaf["parent_span_id"] == dropped_call["span_id"]
    assert leaf["attributes"]["hoptrace.repair"] == "stitched"
    assert {s["trace_id"] for s in spans} == {TRACE}  # one connected trace
    assert agent.counters["spans_stitched"] == 1


def test_audit_forwarded_restarted_invalid():
    results = {}
    for mode in ("forward", "invalid", "none", "child"):
        spans, ports, agent = chain([], [mode])
        call = calls_to(spans, ports[1])[0]
        results[mode] = call["attributes"].get("hoptrace.propagation")
    assert results == {"forward": "forwarded", "invalid": "invalid", "none": "dropped",
                       "child": "ok"}, results


def test_no_finding_without_incoming_context():
    port, back = free_port(), free_port()
    a = python_server(port, script="app_server.py")
    b = python_server(back, script="app_server.py")
    agent = Agent("--port", str(port), "--port", str(back), "--audit")
    try:
        curl(f"http://127.0.0.1:{port}/hop?to={back}&propagate=none")
        spans = agent.stop()
    finally:
        agent.kill()
        a.stop()
        b.stop()
    call = one(spans, kind="CLIENT", attr_url__path="/leaf")
    # the request served carried no context: not passing one on is no finding
    assert "hoptrace.propagation" not in call["attributes"]
    assert "no classified calls" in agent.stdout()
