"""--repair=inject: traceparent injection by sock_ops + sk_msg (issue 4, "Injection").

The downstream services here are raw sinks (raw_sink.py) the agent does not trace: they
record, byte for byte, what arrived, which is compared with what the client wrote plus
exactly one header line.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from lib import HERE, Agent, Proc, curl, free_port, one, python_server, run, wait_port

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TP = f"00-{TRACE}-{PARENT}-01"
TP_LINE = re.compile(rb"traceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\r\n")
def cgroup2_root():
    """Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup/unified on hybrid hosts,
    /sys/fs/cgroup on pure v2 ones (the agent attaches its sock_ops program there)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if " - cgroup2 " in line]
    for p in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if p in points:
            return p
    raise AssertionError(f"no cgroup2 mount: {points}")


CGROUP = cgroup2_root()


def sink(comm="rawsink"):
    port = free_port()
    d = tempfile.mkdtemp(prefix="hoptrace-sink-")
    p = Proc([sys.executable, os.path.join(HERE, "raw_sink.py"), str(port), d, comm])
    wait_port(port)
    return p, port, d


def received(d, settle=0.3):
    time.sleep(settle)
    out = []
    for path in sorted(glob.glob(os.path.join(d, "*.bin")),
                       key=lambda p: int(os.path.basename(p)[:-4])):
        with open(path, "rb") as f:
            data = f.read()
        if data:  # wait_port's probe connection sends nothing
            out.append(data)
    return out


def injected(write):
    """Would the agent inject into this write? (whole header block, no traceparent)"""
    end = write.find(b"\r\n\r\n")
    if not re.match(rb"[A-Z]{3,7} \S+ HTTP/1\.[01]\r\n", write) or end < 0:
        return False
    return b"traceparent:" not in write[:end + 4].lower()


def match_writes(writes, got):
    """got must be the writes, in order, with one traceparent line after the request line of
    each write that qualifies. Returns the (trace, span, flags) of each injected line."""
    pattern = b""
    for w in writes:
        if injected(w):
            eol = w.index(b"\r\n") + 2
            pattern += re.escape(w[:eol]) + TP_LINE.pattern + re.escape(w[eol:])
        else:
            pattern += re.escape(w)
    m = re.fullmatch(pattern, got, re.S)
    assert m, f"received bytes differ from sent + one header:\nsent {writes!r:.2000}\ngot {got!r:.2000}"
    g = m.groups()
    return [tuple(x.decode() for x in g[i:i + 3]) for i in range(0, len(g), 3)]


def agent_with(*args):
    a = Agent(*args)
    if "traceparent injection on" not in a.stderr():
        a.kill()  # never leave an agent behind: the next tests would see its programs
        raise AssertionError(a.stderr()[-2000:])
    return a


def kernel_has_helper(name):
    """Whether the running kernel has a BPF helper, from its own BTF: an oracle apart from
    the agent's own probe."""
    return f"'{name}'".encode() in run(["bpftool", "btf", "dump", "file",
                                       "/sys/kernel/btf/vmlinux"], timeout=120).stdout


def test_inject_where_the_kernel_allows_it():
    """The kernel matrix's injection test. Injection needs bpf_loop (5.17) and a capture
    backend with BPF socket pointers (tp_btf, fexit). Where the kernel has them, the
    incoming trace continues into the downstream request: the bpf_loop scans found the
    request line and the incoming traceparent (6.1's verifier pruned both until their state
    left the stack). Where it does not, the agent says why in one line, injection stays off
    and tracing goes on."""
    has_loop = kernel_has_helper("BPF_FUNC_loop")
    app_port = free_port()
    app = python_server(app_port, script="app_server.py", service="app")
    sk, sport, d = sink()
    agent = Agent("--pid", str(app.pid), "--repair=inject")
    try:
        assert curl("-H", f"traceparent: {TP}",
                    f"http://127.0.0.1:{app_port}/hop?to={sport}&propagate=none").stdout == b"200"
        got = received(d)
        spans = agent.stop()
    finally:
        agent.kill()
        app.stop()
        sk.stop()
    err = agent.stderr()
    backend = re.search(r"capture backend: (\w+)", err).group(1)
    server = one(spans, kind="SERVER", attr_url__path="/hop")
    client = one(spans, kind="CLIENT", attr_server__port=sport)
    assert server["trace_id"] == TRACE and client["parent_span_id"] == server["span_id"]
    if has_loop and backend in ("tp_btf", "fexit"):
        assert "traceparent injection on" in err, err[-2000:]
        assert len(got) == 1 and len(TP_LINE.findall(got[0])) == 1, got
        trace, parent, _ = TP_LINE.search(got[0]).groups()
        assert trace.decode() == TRACE and parent.decode() == client["span_id"]
    else:
        whys = ([] if has_loop else ["no bpf_loop helper"]) + (
            [] if backend in ("tp_btf", "fexit") else ["needs the tp_btf or fexit capture backend"])
        assert any(f"header injection is off: {w}" in err for w in whys), err[-2000:]
        assert b"traceparent" not in got[0], got


def test_inject_downstream_joins_the_trace():
    """curl -> app (traced, drops the context) -> untraced downstream: the downstream gets the
    incoming trace id and the agent's client span id as parent."""
    app_port = free_port()
    app = python_server(app_port, script="app_server.py", service="app")
    sk, sport, d = sink()
    agent = agent_with("--pid", str(app.pid), "--repair=inject")
    try:
        assert curl("-H", f"traceparent: {TP}",
                    f"http://127.0.0.1:{app_port}/hop?to={sport}&propagate=none").stdout == b"200"
        got = received(d)
        spans = agent.stop()
    finally:
        agent.kill()
        app.stop()
        sk.stop()
    assert len(got) == 1 and len(TP_LINE.findall(got[0])) == 1, got
    trace, parent, flags = TP_LINE.search(got[0]).groups()
    server = one(spans, kind="SERVER", attr_url__path="/hop")
    client = one(spans, kind="CLIENT", attr_server__port=sport)
    assert server["trace_id"] == TRACE and server["parent_span_id"] == PARENT
    assert trace.decode() == TRACE
    assert client["trace_id"] == TRACE
    assert parent.decode() == client["span_id"]
    assert client["parent_span_id"] == server["span_id"]
    assert client["attributes"]["hoptrace.traceparent.sent"] == "injected"
    # the request line comes first, the added header right after it, nothing else changed
    assert got[0].startswith(b"GET /leaf?token=secret HTTP/1.1\r\ntraceparent: ")
    assert agent.counters["bpf_injected"] == 1


def test_inject_root_context_without_incoming_traceparent():
    app_port = free_port()
    app = python_server(app_port, script="app_server.py", service="app")
    sk, sport, d = sink()
    agent = agent_with("--pid", str(app.pid), "--repair=stitch,inject")
    try:
        assert curl(f"http://127.0.0.1:{app_port}/hop?to={sport}&propagate=none").stdout == b"200"
        got = received(d)
        spans = agent.stop()
    finally:
        agent.kill()
        app.stop()
        sk.stop()
    trace, parent, _ = TP_LINE.search(got[0]).groups()
    server = one(spans, kind="SERVER", attr_url__path="/hop")
    client = one(spans, kind="CLIENT", attr_server__port=sport)
    assert server["trace_id"] == trace.decode() == client["trace_id"]
    assert client["span_id"] == parent.decode()
    assert client["parent_span_id"] == server["span_id"]


def test_inject_byte_for_byte_keepalive_pipelined_untouched():
    sk, sport, d = sink()
    out = os.path.join(tempfile.mkdtemp(prefix="hoptrace-client-"), "sent.json")
    agent = agent_with("--comm", "injclient", "--repair=inject")
    try:
        run([sys.executable, os.path.join(HERE, "raw_client.py"), str(sport), out], timeout=30)
        got = received(d)
        spans = agent.stop()
    finally:
        agent.kill()
        sk.stop()
    with open(out) as f:
        sent = [[bytes.fromhex(w) for w in c] for c in json.load(f)]
    assert len(got) == len(sent) == 4
    ids = [match_writes(w, g) for w, g in zip(sent, got)]
    assert [len(i) for i in ids] == [3, 3, 0, 0]
    # every injected request got its own client span id, and the client spans use them
    clients = {s["span_id"]: s for s in spans if s["kind"] == "CLIENT"}
    for trace, span, _ in ids[0] + ids[1]:
        assert span in clients, (span, list(clients))
        assert clients[span]["trace_id"] == trace
    assert len({span for _, span, _ in ids[0] + ids[1]}) == 6
    assert agent.counters["bpf_injected"] == 6
    assert agent.counters["bpf_inject_skip_has_tp"] == 1
    assert agent.counters["bpf_inject_skip_partial"] == 1


def check_client_requests(got, spans, n):
    count = 0
    for g in got:
        for m in TP_LINE.finditer(g):
            count += 1
            c = [s for s in spans if s["kind"] == "CLIENT" and s["span_id"] == m.group(2).decode()]
            assert len(c) == 1 and c[0]["trace_id"] == m.group(1).decode(), (m.group(0), spans)
        # each request: the request line, then the one added header
        reqs = re.findall(rb"(?:GET|POST) [^\r]* HTTP/1\.1\r\n(traceparent: [^\r]*\r\n)?", g)
        assert all(reqs), g[:600]
    assert count == n, [x[:600] for x in got]


def test_inject_curl_keepalive():
    sk, sport, d = sink()
    agent = agent_with("--comm", "curl", "--repair=inject")
    try:
        url = f"http://127.0.0.1:{sport}/c"
        r = run(["curl", "-sS", "--http1.1", url + "1", url + "2", "-d", "a=1&b=2", url + "3"])
        assert r.stdout == b"okokok"
        got = received(d)
        spans = agent.stop()
    finally:
        agent.kill()
        sk.stop()
    assert len(got) == 1  # one connection, reused
    check_client_requests(got, spans, 3)
    # a request that already has a traceparent is not touched
    sk, sport, d = sink()
    agent = agent_with("--comm", "curl", "--repair=inject")
    try:
        assert curl("-H", f"traceparent: {TP}", f"http://127.0.0.1:{sport}/x").stdout == b"200"
        got = received(d)
        agent.stop()
    finally:
        agent.kill()
        sk.stop()
    assert got[0].count(b"traceparent") == 1 and TP.encode() in got[0]


def test_inject_python_http_client():
    sk, sport, d = sink()
    script = ("import http.client,ctypes,sys\n"
              "ctypes.CDLL(None).prctl(15,b'injclient',0,0,0)\n"
              "c=http.client.HTTPConnection('127.0.0.1',int(sys.argv[1]))\n"
              "for i in range(5):\n"
              "  c.request('GET','/p%d'%i); assert c.getresponse().read()==b'ok'\n"
              "c.request('POST','/post',body=b'x'*100000); assert c.getresponse().read()==b'ok'\n")
    agent = agent_with("--comm", "injclient", "--repair=inject")
    try:
        run([sys.executable, "-c", script, str(sport)])
        got = received(d)
        spans = agent.stop()
    finally:
        agent.kill()
        sk.stop()
    assert len(got) == 1
    check_client_requests(got, spans, 6)
    assert got[0].endswith(b"x" * 100000)


def test_inject_node_client():
    if not shutil.which("node"):
        raise AssertionError("node is not installed")
    sk, sport, d = sink()
    script = ("const http=require('http');const a=new http.Agent({keepAlive:true,maxSockets:1});"
              "let n=0;function go(){http.get({host:'127.0.0.1',port:+process.argv[1],path:'/n'+n,"
              "agent:a},r=>{r.resume();r.on('end',()=>{if(++n<4)go();else a.destroy();});});}go();")
    agent = agent_with("--comm", "node", "--repair=inject")
    try:
        run(["node", "-e", script, str(sport)])
        got = received(d)
        spans = agent.stop()
    finally:
        agent.kill()
        sk.stop()
    check_client_requests(got, spans, 4)


def test_inject_off_by_default_and_detached_at_exit():
    sk, sport, d = sink()
    agent = Agent("--comm", "curl")
    try:
        progs = run(["bpftool", "prog", "show"]).stdout
        cg = run(["bpftool", "cgroup", "show", CGROUP]).stdout
        assert curl(f"http://127.0.0.1:{sport}/x").stdout == b"200"
        got = received(d)
        agent.stop()
    finally:
        agent.kill()
        sk.stop()
    assert b"ht_inject" not in progs and b"ht_inject" not in cg
    assert b"traceparent" not in got[0]
    assert agent.counters["bpf_injected"] == 0
    # with injection: attached while running, nothing left after exit
    agent = agent_with("--comm", "curl", "--repair=inject")
    try:
        assert b"ht_inject_sockops" in run(["bpftool", "cgroup", "show", CGROUP]).stdout
        agent.stop()
    finally:
        agent.kill()
    assert b"ht_inject" not in run(["bpftool", "cgroup", "show", CGROUP]).stdout
    assert b"ht_inject" not in run(["bpftool", "prog", "show"]).stdout


def test_inject_self_test_refuses_without_the_fionread_fix():
    """Without the no-op sk_skb verdict the kernel's sockhash FIONREAD regression shows: the
    self-test must catch it, say so, leave injection off and keep tracing."""
    sk, sport, d = sink()
    agent = Agent("--comm", "curl", "--repair=inject", env={"HOPTRACE_INJECT_TEST_NO_SKB": "1"})
    try:
        err = agent.stderr()
        assert "injection stays off" in err and "FIONREAD" in err, err[-2000:]
        assert b"ht_inject" not in run(["bpftool", "cgroup", "show", CGROUP]).stdout
        assert curl(f"http://127.0.0.1:{sport}/x").stdout == b"200"
        got = received(d)
        spans = agent.stop()
    finally:
        agent.kill()
        sk.stop()
    assert b"traceparent" not in got[0]
    one(spans, kind="CLIENT", attr_server__port=sport)  # tracing goes on


EVLOOP = r"""
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, b"evloop", 0, 0, 0)
port, down = int(sys.argv[1]), int(sys.argv[2])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port)); ls.listen(8)
while True:
    conns = []
    for _ in range(2):  # one thread holds two requests before it calls downstream
        c, _ = ls.accept(); buf = b""
        while b"\r\n\r\n" not in buf:
            buf += c.recv(4096)
        conns.append(c)
    d = socket.create_connection(("127.0.0.1", down))
    d.sendall(b"GET /down HTTP/1.1\r\nHost: sink\r\n\r\n")
    got = b""
    while not got.endswith(b"ok"):
        got += d.recv(4096)
    d.close()
    for c in conns:
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"); c.close()
"""


def test_inject_event_loop_with_two_requests_injects_a_fresh_root():
    """More than one request in flight on the calling thread: no guess, a new root."""
    sk, sport, d = sink()
    port = free_port()
    srv = Proc([sys.executable, "-c", EVLOOP, str(port), str(sport)])
    wait_port(port)
    # wait_port's probe was accepted as a request-less connection: replace the server
    srv.stop()
    srv = Proc([sys.executable, "-c", EVLOOP, str(port), str(sport)])
    time.sleep(0.5)
    agent = agent_with("--comm", "evloop", "--repair=inject")
    try:
        url = f"http://127.0.0.1:{port}/front"
        curls = [subprocess.Popen(["curl", "-sS", "-H", f"traceparent: {TP}", url],
                                  stdout=subprocess.PIPE) for _ in range(2)]
        assert [c.communicate(timeout=20)[0] for c in curls] == [b"ok", b"ok"]
        got = received(d)
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
        sk.stop()
    assert len(got) == 1 and len(TP_LINE.findall(got[0])) == 1, got
    trace, span, _ = TP_LINE.search(got[0]).groups()
    assert trace.decode() != TRACE
    client = one(spans, kind="CLIENT", attr_server__port=sport)
    assert client["span_id"] == span.decode() and client["trace_id"] == trace.decode()
