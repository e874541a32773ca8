"""A request waiting for its response costs the memory budget a compact record, not a
whole span: with a fixed --memory-limit, pipelined requests that a real server holds
unanswered all fit, and all become spans once answered (issue 11, "a compact record per
request until it finishes")."""
import os
import signal
import subprocess
import sys
import time

from lib import Agent, Proc, free_port, slow, wait_port

# Reads pipelined requests and answers none of them until SIGUSR1; then answers every one,
# in order, and keeps answering.
GATED_SERVER = r"""
import selectors, signal, socket, sys
port = int(sys.argv[1])
gate = []
signal.signal(signal.SIGUSR1, lambda *_: gate.append(1))
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port)); ls.listen(128); ls.setblocking(False)
sel = selectors.DefaultSelector(); sel.register(ls, selectors.EVENT_READ)
held = {}  # socket -> [bytes read, requests not answered]
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
while True:
    for key, _ in sel.select(timeout=0.05):
        s = key.fileobj
        if s is ls:
            try:
                c, _ = ls.accept()
            except BlockingIOError:
                continue
            c.setblocking(False); sel.register(c, selectors.EVENT_READ); held[c] = [b"", 0]
            continue
        try:
            data = s.recv(65536)
        except BlockingIOError:
            continue
        if not data:
            sel.unregister(s); s.close(); held.pop(s, None); continue
        st = held[s]
        st[0] += data
        while b"\r\n\r\n" in st[0]:
            st[0] = st[0].split(b"\r\n\r\n", 1)[1]
            st[1] += 1
    if gate:
        for s, st in held.items():
            if st[1]:
                s.setblocking(True); s.sendall(RESPONSE * st[1]); s.setblocking(False)
                st[1] = 0
"""

# Opens N connections and sends K pipelined requests on each in one write, says "sent",
# then reads every response and says "done".
PIPELINING_CLIENT = r"""
import socket, sys
port, nconns, depth = map(int, sys.argv[1:4])
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(nconns)]
for n, c in enumerate(conns):
    c.sendall(b"".join(b"GET /held/%d/%d HTTP/1.1\r\nHost: gate\r\nUser-Agent: compact\r\n\r\n"
                       % (n, i) for i in range(depth)))
print("sent", flush=True)
for c in conns:
    want, got = len(RESPONSE) * depth, b""
    while len(got) < want:
        chunk = c.recv(65536)
        assert chunk, "server closed early"
        got += chunk
print("done", flush=True)
for c in conns:
    c.close()
"""

KIB = 1024


def held_then_answered(memory_limit, nconns, depth):
    """nconns x depth pipelined requests held unanswered by a real server, then answered,
    both ends traced under --memory-limit; returns (counters, spans)."""
    port = free_port()
    server = Proc([sys.executable, "-c", GATED_SERVER, str(port)])
    client = None
    agent = None
    try:
        wait_port(port)
        agent = Agent("--port", str(port), "--memory-limit", str(memory_limit), "--no-tls")
        client = Proc([sys.executable, "-c", PIPELINING_CLIENT, str(port), str(nconns),
                       str(depth)], stdout=subprocess.PIPE)
        assert client.p.stdout.readline().strip() == b"sent"
        time.sleep(slow(1))  # the agent has every request pending now
        os.kill(server.pid, signal.SIGUSR1)
        assert client.p.stdout.readline().strip() == b"done"
        assert client.p.wait(timeout=slow(10)) == 0
        spans = agent.stop(settle=1.0)
    finally:
        if agent:
            agent.kill()
        for p in (client, server):
            if p:
                p.stop()
    return agent.counters, spans


def test_pending_requests_fit_the_budget_and_are_all_traced():
    nconns, depth = 4, 32  # 32: the most requests one connection may have pending
    limit = 512 * KIB
    counters, spans = held_then_answered(limit, nconns, depth)
    # the span names are routes ("GET /held/{id}/{id}"): each request by its url.path
    paths = {f"/held/{n}/{i}" for n in range(nconns) for i in range(depth)}
    for kind in ("SERVER", "CLIENT"):
        answered = [s for s in spans if s["kind"] == kind
                    and s["attributes"].get("url.path") in paths
                    and s["attributes"].get("http.response.status_code") == 200]
        # each request once: 128 requests at ~3 KB per pending span, both ends, needed
        # ~800 KiB of budget; as compact records they need a fraction of 512 KiB
        assert len(answered) == len(paths), (kind, len(answered), counters)
        assert {s["attributes"]["url.path"] for s in answered} == paths
        assert {s["name"] for s in answered} == {"GET /held/{id}/{id}"}
    assert counters.get("budget_drops", 0) == 0, counters
    # all 256 exchanges (both ends) were pending at once: under 1 KiB each, connections
    # included
    assert 0 < counters["budget_peak_bytes"] <= 2 * nconns * depth * KIB, counters
