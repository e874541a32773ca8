"""Issue 11, HTTPS coverage: one local process must not blind the agent to the HTTPS of the
others by flooding the OpenSSL session table (tls_states, an LRU shared by every process).

The flood is real: a process makes thousands of SSL sessions (memory BIOs) and does one
SSL call on each, which gives each a state. The agent runs with a smaller table
(HOPTRACE_TEST_TLS_SESSIONS, tests only) so that a few thousand sessions are a flood.
"""
import subprocess
import sys
import time

from lib import Agent, Proc, free_port, one, spans_where
from test_tls import make_cert, tls_server

TABLE = 256  # tls_states entries the agent is given
FLOOD = 8 * TABLE

# A keep-alive HTTPS client: one request per line of stdin (a path), prints its status;
# first prints its local port.
CLIENT = r"""
import http.client, ssl, sys
c = http.client.HTTPSConnection('127.0.0.1', int(sys.argv[1]),
                                context=ssl._create_unverified_context())
c.connect()
print(c.sock.getsockname()[1], flush=True)
for line in sys.stdin:
    c.request('GET', line.strip()); r = c.getresponse(); r.read()
    print(r.status, flush=True)
"""

# Many SSL sessions, each with one SSL call (a handshake started on a memory BIO), all kept.
# It moves between CPUs: the kernel's LRU serves a CPU from that CPU's own recent entries
# first, so a flood from a single CPU mostly recycles its own sessions (a real attacker
# runs on every CPU).
FLOODER = r"""
import os, ssl, sys
cpus = sorted(os.sched_getaffinity(0))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
keep = []
for i in range(int(sys.argv[1])):
    if i % 32 == 0:
        os.sched_setaffinity(0, {cpus[(i // 32) % len(cpus)]})
    o = ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
    try:
        o.read(1)
    except ssl.SSLWantReadError:
        pass
    keep.append(o)
print('flooded', flush=True)
sys.stdin.read()
"""


def request(client, path):
    client.p.stdin.write(path.encode() + b"\n")
    client.p.stdin.flush()
    return client.p.stdout.readline().strip()


def test_session_flood_does_not_blind_an_established_https_connection():
    """A victim keep-alive HTTPS connection (Python client and server) does a request, then
    another process floods tls_states with 8x its size in sessions, evicting the victim's
    two session states (the server's thread waits inside SSL_read meanwhile). The victim's
    next requests on the same connection must still be traced, both sides, with the
    connection's endpoints. Before the fix a session whose state was evicted never matched
    its socket again (the socket was already marked TLS): under --port nothing more of it
    was traced."""
    certs = make_cert()
    port = free_port()
    srv = tls_server(port, certs)
    agent = Agent("--port", str(port), env={"HOPTRACE_TEST_TLS_SESSIONS": str(TABLE)})
    client = flooder = None
    try:
        client = Proc([sys.executable, "-c", CLIENT, str(port)], stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE)
        cport = int(client.p.stdout.readline())
        assert request(client, "/leaf?before") == b"200"
        flooder = Proc([sys.executable, "-c", FLOODER, str(FLOOD)], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE)
        assert flooder.p.stdout.readline().strip() == b"flooded"
        time.sleep(0.2)
        assert request(client, "/leaf?after1") == b"200"
        assert request(client, "/status?code=503") == b"503"
        spans = agent.stop()
    finally:
        agent.kill()
        for p in (client, flooder, srv):
            if p:
                p.stop()
    counters = agent.counters
    for path, status in (("/leaf", 200), ("/status", 503)):
        srv_spans = spans_where(spans, kind="SERVER", attr_url__path=path)
        cli_spans = spans_where(spans, kind="CLIENT", attr_url__path=path)
        want = 2 if path == "/leaf" else 1
        assert len(srv_spans) == want and len(cli_spans) == want, (path, spans, counters)
        for s in srv_spans:
            assert s["attributes"]["network.peer.address"] == "127.0.0.1", s
            assert s["attributes"]["network.peer.port"] == cport, s
        for c in cli_spans:
            assert c["attributes"]["network.peer.port"] == port, c
    s = one(spans, kind="SERVER", attr_url__path="/status")
    assert s["attributes"]["http.response.status_code"] == 503
    # both sessions lost their state to the flood and relearned their socket
    assert counters.get("bpf_tls_state_recreated", 0) >= 2, counters
    assert counters.get("bpf_tls_sockets_relearned", 0) >= 2, counters
    assert counters.get("bpf_tls_port_unknown", 0) == 0, counters
    assert counters.get("drop_out_of_order", 0) == 0, counters
