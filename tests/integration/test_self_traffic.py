"""The agent's own export traffic, and its receiving end on this host, are never traced."""
import json
import os
import tempfile

from lib import Agent, BUILD, Proc, curl, free_port, python_server, wait_port


def test_local_collector_receiving_side_is_not_traced():
    collector_port, app_port = free_port(), free_port()
    # a fresh file: the collector appends, and a port of an earlier run may come again
    out = os.path.join(tempfile.mkdtemp(prefix="hoptrace-self-"), "spans.jsonl")
    collector = Proc([os.path.join(BUILD, "hoptrace-collect"), "--port", str(collector_port),
                      "-o", out])
    wait_port(collector_port)
    app = python_server(app_port, script="app_server.py")
    # no selection: every process is traced, the collector included
    agent = Agent("--otlp-endpoint", f"http://127.0.0.1:{collector_port}", output="otlp",
                  env={"OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        for _ in range(3):
            assert curl(f"http://127.0.0.1:{app_port}/leaf").stdout == b"200"
        agent.stop(settle=1.5)
    finally:
        agent.kill()
        app.stop()
        collector.stop()
    with open(out) as f:
        spans = [json.loads(line) for line in f]
    names = [(s["kind"], s["name"]) for s in spans
             if s["attributes"].get("server.port") in (collector_port, app_port)]
    assert names.count(("SERVER", "GET /leaf")) == 3, names
    # exports arrive as POST /v1/traces: none of them may come back as spans
    assert not [s for s in spans if s["name"].startswith("POST /v1/traces")], names
    assert agent.counters["otlp_requests"] >= 1
