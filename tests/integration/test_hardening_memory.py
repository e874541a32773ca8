"""Memory bounded by configuration, whatever the traffic: a local user who opens many
connections and pipelines requests that are never answered costs the agent at most its
--memory-limit, the excess is counted, and tracing goes on once the flood is gone."""
import os
import subprocess
import sys
import time

from lib import Agent, Proc, curl, free_port, python_server, slow, wait_port

# A server that accepts everything and reads everything, and never answers.
SILENT_SERVER = r"""
import resource, selectors, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
port = int(sys.argv[1])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port)); ls.listen(4096); ls.setblocking(False)
sel = selectors.DefaultSelector(); sel.register(ls, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is ls:
            try:
                c, _ = ls.accept()
            except BlockingIOError:
                continue
            c.setblocking(False); sel.register(c, selectors.EVENT_READ)
        else:
            try:
                if not s.recv(65536):
                    sel.unregister(s); s.close()
            except (BlockingIOError, ConnectionError):
                pass
"""

# Opens N connections, sends K pipelined requests on each in one write, says so, and keeps
# them open.
PIPELINING_CLIENT = r"""
import resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
port, nconns, depth = map(int, sys.argv[1:4])
req = b"GET /never-answered HTTP/1.1\r\nHost: flood\r\n\r\n" * depth
conns = []
for _ in range(nconns):
    c = socket.create_connection(("127.0.0.1", port)); conns.append(c)
for c in conns:
    c.sendall(req)
print("sent", flush=True)
time.sleep(3600)
"""

MIB = 1 << 20


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def flood_growth(memory_limit, nconns=1500, depth=16):
    """Run the flood against an agent with this --memory-limit; returns (growth of the
    agent's peak RSS over its RSS before the flood, bytes; counters; spans)."""
    flood_port, normal_port = free_port(), free_port()
    server = Proc([sys.executable, "-c", SILENT_SERVER, str(flood_port)])
    wait_port(flood_port)
    normal = python_server(normal_port)
    # freed blocks go back at once: ASan's quarantine would otherwise hold 256 MiB
    agent = Agent("--port", str(flood_port), "--port", str(normal_port),
                  "--memory-limit", str(memory_limit), "--no-tls",
                  env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:quarantine_size_mb=0"})
    client = None
    try:
        assert curl(f"http://127.0.0.1:{normal_port}/").stdout == b"200"
        time.sleep(slow(0.5))
        before = status_kib(agent.p.pid, "VmRSS")
        client = Proc([sys.executable, "-c", PIPELINING_CLIENT, str(flood_port), str(nconns),
                       str(depth)], stdout=subprocess.PIPE)
        assert client.p.stdout.readline().strip() == b"sent"
        time.sleep(slow(3))  # the agent drains its rings
        peak = status_kib(agent.p.pid, "VmHWM")
        # the flood goes: its connections close, and a normal request is traced again
        client.stop()
        server.stop()
        time.sleep(slow(1))
        assert curl(f"http://127.0.0.1:{normal_port}/after").stdout == b"404"
        spans = agent.stop(settle=1.0)
    finally:
        agent.kill()
        for p in (client, server, normal):
            if p:
                p.stop()
    return (peak - before) * 1024, agent.counters, spans


def test_pipelined_flood_stays_within_memory_limit():
    limit = 16 * MIB
    growth, counters, spans = flood_growth(limit)
    # 1,500 connection pairs x 16 unanswered requests, both ends traced: ~48,000 requests
    # waiting, ~170 MiB of spans without a limit. With it: the budget, plus what the
    # allocator and the sanitizer add around it.
    assert growth < 2 * limit + 16 * MIB, (growth // MIB, counters)
    assert counters["budget_drops"] > 0, counters
    assert counters["budget_peak_bytes"] <= limit, counters
    assert [s for s in spans if s["name"] == "GET /after" and s["kind"] == "SERVER"], \
        [s["name"] for s in spans][-5:]


def test_attributes_that_find_no_room_are_counted():
    # curl's request with a long path, User-Agent and Host: its CLIENT span's url.path,
    # url.full, user_agent.original and server.address outgrow the span's string room
    port = free_port()
    server = python_server(port)
    agent = Agent("--port", str(port), "--no-tls")
    try:
        path = "/" + "p" * 600
        curl(f"http://127.0.0.1:{port}{path}", "-A", "u" * 300, "-H", "Host: " + "h" * 250)
        spans = agent.stop()
    finally:
        agent.kill()
        server.stop()
    client = [s for s in spans if s["kind"] == "CLIENT"]
    assert client, [s["name"] for s in spans]
    assert agent.counters.get("span_attrs_dropped", 0) > 0, agent.counters
