"""Issue 11, least privilege: after start-up the agent runs under its seccomp filter
(agent/sandbox.c) in every thread, and still does everything it does after start-up:
traces plain HTTP, finds and probes an OpenSSL that a process started later maps (the
uprobes are attached under the filter: bpf() and perf_event_open() stay allowed), and
exports OTLP. That the filter refuses what it lists is tests/unit/test_sandbox.c's part.
"""
import glob
import os
import sys
import tempfile
import time

from lib import Proc, curl, free_port, slow, spans_where, wait_port, HERE
from test_hardening_tls import private_libssl, victim
from test_otlp_export import Collector, ExportAgent, export_env
from test_tls import make_cert


def seccomp_modes(pid):
    """Seccomp: field of every thread of pid, by thread name."""
    modes = {}
    for status in glob.glob(f"/proc/{pid}/task/*/status"):
        fields = dict(l.split(":", 1) for l in open(status).read().splitlines() if ":" in l)
        modes[f"{fields['Name'].strip()}/{os.path.basename(os.path.dirname(status))}"] = \
            int(fields["Seccomp"])
    return modes


def test_filtered_agent_traces_http_https_and_exports():
    """Every thread shows Seccomp: 2; a libssl first mapped after start-up is probed; a
    plain and an HTTPS request both reach the OTLP collector."""
    certs = make_cert()
    port, tls_port = free_port(), free_port()
    app = Proc([sys.executable, os.path.join(HERE, "app_server.py"), str(port)])
    wait_port(port)
    libdir = tempfile.mkdtemp(prefix="hoptrace-seccomp-")
    private_libssl(libdir)
    agent = srv = None
    col = Collector()
    try:
        agent = ExportAgent("--port", str(port), "--port", str(tls_port),
                            env=export_env(OTEL_EXPORTER_OTLP_ENDPOINT=col.url))
        modes = seccomp_modes(agent.p.pid)
        # a libssl nobody mapped at start-up: probed only now, under the filter
        srv, _ = victim("low-server", str(tls_port), f"{certs}/cert.pem", f"{certs}/key.pem",
                        os.path.join(libdir, "libssl.so.3"),
                        env=dict(os.environ, LD_LIBRARY_PATH=libdir))
        wait_port(tls_port)
        deadline = time.time() + slow(15)
        while f"tracing HTTPS through {libdir}" not in agent.stderr():
            assert time.time() < deadline, agent.stderr()[-3000:]
            time.sleep(0.1)
        assert curl(f"http://127.0.0.1:{port}/leaf").stdout == b"200"
        assert curl("-k", f"https://127.0.0.1:{tls_port}/leaf").stdout == b"200"
        agent.stop()
        spans = col.wait_spans(2)
    finally:
        for p in (app, srv):
            if p:
                p.stop()
        if agent:
            agent.kill()
        col.stop()
    print(f"    threads: {modes}; {len(spans)} spans exported")
    assert modes and all(m == 2 for m in modes.values()), modes
    assert "cannot install the seccomp filter" not in agent.stderr(), agent.stderr()[-2000:]
    servers = {s["attributes"]["server.port"]: s for s in spans_where(spans, kind="SERVER")}
    assert servers[port]["attributes"]["url.scheme"] == "http", servers
    assert servers[tls_port]["attributes"]["url.scheme"] == "https", servers
    assert servers[tls_port]["pid"] == srv.pid, servers


def test_no_seccomp_flag_leaves_the_filter_out():
    """--no-seccomp: no thread is filtered."""
    agent = ExportAgent("--port", str(free_port()), "--no-seccomp", env={})
    try:
        modes = seccomp_modes(agent.p.pid)
        agent.stop()
    finally:
        agent.kill()
    assert modes and all(m == 0 for m in modes.values()), modes
