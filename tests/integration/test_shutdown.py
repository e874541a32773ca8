"""Shutdown is idempotent (issue 15): a second SIGTERM or SIGINT while the agent flushes
does not kill it. `timeout` signals its command and then the command's process group,
systemd signals every process of the unit, and people press Ctrl-C twice: the output
(spans, the --audit-json report, the counters) must come out whole all the same, and the
exit status must be 0.

Each test traces one real request that crosses two app_server.py processes with a
traceparent (4 spans, one audited call) and one request still in flight when the agent
stops (2 spans that only the shutdown ends, as errors). Then the agent is signalled,
and once it says it is stopping, signalled again while it detaches its programs and
flushes. -v: the agent says at debug level which signals it ignored, which proves that
they came during the shutdown and not after the agent was gone.
"""
import json
import os
import re
import signal
import subprocess
import threading
import time

from lib import (Agent, Proc, curl, free_port, json_lines, one, parse_counters, python_server,
                 require, slow)
from test_otlp_export import Collector

TRACE = "5bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "10f067aa0ba902b7"
TP = f"00-{TRACE}-{PARENT}-01"
STOPPED = "agent stopped before the response completed"
# the collector answers this late: the OTLP flush takes that long (its deadline is 5 s)
COLLECTOR_DELAY_MS = 2500


class Scene:
    """curl -> front /hop -> back /leaf with a traceparent, and a /slow request to front
    that is still waiting for its answer when the agent stops."""

    def __init__(self):
        self.front, self.back = free_port(), free_port()
        self.procs = [python_server(self.front, script="app_server.py", service="shop-front"),
                      python_server(self.back, script="app_server.py", service="shop-back")]
        self.selection = ("--port", str(self.front), "--port", str(self.back))

    def traffic(self):
        assert curl("-H", f"traceparent: {TP}",
                    f"http://127.0.0.1:{self.front}/hop?to={self.back}&propagate=child"
                    ).stdout == b"200"
        require("curl")
        self.procs.append(Proc(["curl", "-sS", "-o", "/dev/null",
                                f"http://127.0.0.1:{self.front}/slow?ms=120000"]))
        time.sleep(slow(0.5))  # the agent has seen the request and waits for its answer

    def stop(self):
        for p in self.procs:
            p.stop()


def stop_twice(agent, first, second, target=None, gap=0.0):
    """Signal the agent (or target: the wrapper it runs under), wait until it says it is
    stopping, then send each of second, gap seconds apart. Returns the seconds from the
    first signal to the exit and the exit status."""
    pid = target or agent.p.pid
    t0 = time.time()
    first(pid)
    deadline = t0 + slow(15)
    while not re.search(r"info: received \w+, stopping", agent.stderr()):
        assert time.time() < deadline, f"the agent did not stop:\n{agent.stderr()[-3000:]}"
        assert agent.running(), f"the agent exited at once:\n{agent.stderr()[-3000:]}"
        time.sleep(0.01)
    for send in second:
        time.sleep(gap)
        assert agent.running(), "the agent finished before the second signal: nothing tested"
        send(pid)
    try:
        rc = agent.p.wait(timeout=slow(30))
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the agent did not exit:\n{agent.stderr()[-3000:]}")
    return time.time() - t0, rc


def term(pid):
    os.kill(pid, signal.SIGTERM)


def intr(pid):
    os.kill(pid, signal.SIGINT)


def term_group(pid):
    """What systemd does to stop a unit, and `timeout` after signalling its command."""
    os.killpg(pid, signal.SIGTERM)


def intr_group(pid):
    """Ctrl-C: the terminal signals the foreground process group."""
    os.killpg(pid, signal.SIGINT)


def check_exit(agent, rc, ignored):
    """Exit status 0, no sanitizer report, the counters printed, and the debug line naming
    the signals that came during the shutdown. Returns the counters."""
    agent.err.close()
    agent.outf.close()
    text = agent.stderr()
    assert rc == 0, f"the agent exited with {rc} (-N: killed by signal N):\n{text[-3000:]}"
    for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert bad not in text, f"sanitizer report from the agent:\n{text[-6000:]}"
    assert "hoptrace: counters" in text, text[-3000:]
    for name in ignored:
        assert f"{name} while shutting down: ignored" in text, \
            f"no debug line for the {name} sent during the shutdown:\n{text[-3000:]}"
    return parse_counters(text)


def check_spans(spans, scene):
    """The request's four spans, and the two that only the shutdown ends."""
    assert len(spans) == 6, json.dumps(spans, indent=1)
    assert len([s for s in spans if s["trace_id"] == TRACE]) == 4, spans
    call = one(spans, kind="CLIENT", attr_server__port=scene.back)
    assert call["attributes"]["hoptrace.propagation"] == "ok", call
    cut = [s for s in spans if s["attributes"].get("url.path") == "/slow"]
    assert len(cut) == 2 and all(s["status"] == "ERROR" for s in cut), cut
    assert {s["status_message"] for s in cut} == {STOPPED}, cut


def check_audit(text):
    """The --audit-json document (its one line), whole: the one audited call."""
    lines = [line for line in text.split("\n") if line.startswith('{"calls":')]
    assert len(lines) == 1, f"no --audit-json report:\n{text[-3000:]}"
    report = json.loads(lines[0])
    edges = [(e["caller"], e["callee"], e["verdict"], e["calls"]) for e in report["edges"]]
    assert edges == [("shop-front", "shop-back", "ok", 1)], report
    return report


def test_second_sigterm_during_the_otlp_flush_is_ignored():
    """OTLP to a collector that answers 2.5 s late, spans held in the queue until the
    flush: SIGTERM, then SIGTERM and SIGINT while the flush waits. Every span reaches the
    collector, the audit report is on stdout, and the exit is clean."""
    scene = Scene()
    col = Collector("--delay-ms", str(COLLECTOR_DELAY_MS))
    agent = None
    try:
        agent = Agent(*scene.selection, "--audit-json", "-v", output="otlp", env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": col.url, "OTEL_BSP_SCHEDULE_DELAY": "60000"})
        scene.traffic()
        took, rc = stop_twice(agent, term, [term, intr], gap=0.3)
        c = check_exit(agent, rc, ["Terminated", "Interrupt"])
        spans = col.spans()
        stats = col.stop()
    finally:
        if agent:
            agent.kill()
        col.kill()
        scene.stop()
    check_spans(spans, scene)
    assert c["otlp_exported"] == 6 and c["otlp_dropped_shutdown"] == 0, c
    assert stats["spans"] == 6, stats
    # it waited for the collector's answer, well after the second and third signals
    assert took >= COLLECTOR_DELAY_MS / 1000, took
    check_audit(agent.stdout())


def test_second_signal_while_writing_json_to_a_pipe():
    """-o json into a pipe (the way `hoptrace -o json | jq` runs): SIGINT, then SIGTERM
    at once, while the agent detaches and writes the spans that only the shutdown ends.
    The audit report goes to stderr (stdout carries the spans)."""
    scene = Scene()
    agent = None
    out = []
    try:
        agent = Agent(*scene.selection, "--audit-json", "-v", out_file=False,
                      stdout=subprocess.PIPE)
        reader = threading.Thread(target=lambda: out.append(agent.p.stdout.read()))
        reader.start()
        scene.traffic()
        _, rc = stop_twice(agent, intr, [term])
        reader.join(timeout=10)
        c = check_exit(agent, rc, ["Terminated"])
    finally:
        if agent:
            agent.kill()
        scene.stop()
    assert out, "the agent's stdout was not read to its end"
    text = out[0].decode()
    assert text.endswith("\n"), text[-500:]
    spans = [json.loads(line) for line in text.split("\n") if line]
    check_spans(spans, scene)
    assert c["json_spans_written"] == 6 and c["json_write_errors"] == 0, c
    check_audit(agent.stderr())


def test_under_timeout_the_group_signalled_twice():
    """The agent under timeout(1), as in a CI job or a unit's ExecStart: the process group
    gets SIGTERM (systemd stopping the unit; timeout passes it on to the agent and to the
    group again, so the agent gets it up to three times), then SIGINT while the agent
    flushes (Ctrl-C; again passed on by timeout). Spans to a file, the audit report on
    stdout."""
    require("timeout")
    scene = Scene()
    agent = None
    try:
        agent = Agent(*scene.selection, "--audit-json", "-v", wrap=("timeout", "-s", "TERM", "600"))
        scene.traffic()
        _, rc = stop_twice(agent, term_group, [intr_group])
        c = check_exit(agent, rc, ["Interrupt"])
    finally:
        if agent:
            agent.kill()
        scene.stop()
    spans = json_lines(agent.out_path, whole=True)
    check_spans(spans, scene)
    assert c["json_spans_written"] == 6, c
    check_audit(agent.stdout())
