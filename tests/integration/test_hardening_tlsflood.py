"""Issue 11, HTTPS coverage: one local process must not blind the agent to the HTTPS of the
others by flooding the OpenSSL session table (tls_states, an LRU shared by every process).

The flood is real: processes make thousands of SSL sessions (memory BIOs) and do one SSL
call on each, which gives each a state. The agent runs with a smaller table
(HOPTRACE_TEST_TLS_SESSIONS, tests only) so that a few thousand sessions are a flood.
"""
import subprocess
import sys
import time

from lib import Agent, Proc, free_port, spans_where
from test_tls import make_cert, tls_server

TABLE = 1024  # tls_states entries the agent is given
SHARE = TABLE // 2  # what one process may hold of them

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

# Many SSL sessions, each with one SSL call (a handshake started on a memory BIO), all kept,
# made by PROCS processes of SESSIONS each. They move between CPUs: the kernel's LRU serves
# a CPU from that CPU's own recent entries first, so a flood from a single CPU mostly
# recycles its own sessions (a real attacker runs on every CPU).
FLOODER = r"""
import os, ssl, sys
procs, sessions = int(sys.argv[1]), int(sys.argv[2])
cpus = sorted(os.sched_getaffinity(0))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
done_r, done_w = os.pipe()
for p in range(procs):
    if os.fork():
        continue
    keep = []
    for i in range(sessions):
        if i % 32 == 0:
            os.sched_setaffinity(0, {cpus[(p + i // 32) % len(cpus)]})
        o = ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
        try:
            o.read(1)
        except ssl.SSLWantReadError:
            pass
        keep.append(o)
    os.write(done_w, b'.')
    sys.stdin.read()  # kept until the test kills the group
    os._exit(0)
got = 0
while got < procs:
    got += len(os.read(done_r, procs))
print('flooded', flush=True)
sys.stdin.read()
"""


def flood(procs, sessions):
    """A process group holding procs x sessions SSL sessions, each with a state."""
    p = Proc([sys.executable, "-c", FLOODER, str(procs), str(sessions)], stdin=subprocess.PIPE,
             stdout=subprocess.PIPE)
    assert p.p.stdout.readline().strip() == b"flooded"
    return p


def request(client, path):
    client.p.stdin.write(path.encode() + b"\n")
    client.p.stdin.flush()
    return client.p.stdout.readline().strip()


def victim_under_flood(procs, sessions):
    """A victim keep-alive HTTPS connection (Python client and server) does a request, then
    a flood of procs x sessions SSL sessions, then two more requests on the same
    connection. Returns (spans, counters, client port, server port)."""
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
        flooder = flood(procs, sessions)
        time.sleep(0.2)
        assert request(client, "/leaf?after1") == b"200"
        assert request(client, "/status?code=503") == b"503"
        spans = agent.stop()
    finally:
        agent.kill()
        for p in (client, flooder, srv):
            if p:
                p.stop()
    return spans, agent.counters, cport, port


def assert_victim_traced(spans, counters, cport, port):
    """All three requests, both sides, with the connection's endpoints."""
    for path, status in (("/leaf", 200), ("/status", 503)):
        srv_spans = spans_where(spans, kind="SERVER", attr_url__path=path)
        cli_spans = spans_where(spans, kind="CLIENT", attr_url__path=path)
        want = 2 if path == "/leaf" else 1
        assert len(srv_spans) == want and len(cli_spans) == want, (path, spans, counters)
        for s in srv_spans:
            assert s["attributes"]["network.peer.address"] == "127.0.0.1", s
            assert s["attributes"]["network.peer.port"] == cport, s
            assert s["attributes"]["http.response.status_code"] == status, s
        for c in cli_spans:
            assert c["attributes"]["network.peer.port"] == port, c
    assert counters.get("bpf_tls_port_unknown", 0) == 0, counters
    assert counters.get("drop_out_of_order", 0) == 0, counters


def test_evicted_session_relearns_its_socket():
    """Many processes, each within its share, together make 4.7x the table in sessions:
    they evict the victim's two session states (the server's thread waits inside SSL_read
    meanwhile). The victim's next requests on the same connection must still be traced,
    with its endpoints. Before the fix a session whose state was evicted never matched its
    socket again (the socket was already marked TLS): under --port nothing more of it was
    traced."""
    spans, counters, cport, port = victim_under_flood(12, 400)
    assert_victim_traced(spans, counters, cport, port)
    # both sessions lost their state to the flood and relearned their socket
    assert counters.get("bpf_tls_state_recreated", 0) >= 2, counters
    assert counters.get("bpf_tls_sockets_relearned", 0) >= 2, counters


def test_one_process_cannot_take_the_session_table():
    """One process makes 4x the table in sessions: past its share (half the table) its
    sessions get no state (bpf_tls_share_full), so the victim's states are never evicted
    (nothing to relearn). Before, the flood evicted them."""
    spans, counters, cport, port = victim_under_flood(1, 4 * TABLE)
    assert_victim_traced(spans, counters, cport, port)
    assert counters.get("bpf_tls_share_full", 0) >= 4 * TABLE - SHARE, counters
    assert counters.get("bpf_tls_sockets_relearned", 0) == 0, counters
