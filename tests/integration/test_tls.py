"""HTTPS of unmodified processes through OpenSSL uprobes (issue 5).

Every test runs real TLS stacks: nginx and curl (libssl.so.3, SSL_read/SSL_write), Python's
ssl module (libssl.so.3, SSL_read_ex/SSL_write_ex) and Node.js (OpenSSL linked into the
node binary, memory BIOs: no socket is known for its sessions).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

from lib import (Agent, Proc, curl, free_port, nginx, one, require, run, spans_where, wait_port,
                 HERE)

TP_TRACE = "0af7651916cd43dd8448eb211c80319c"
TP_PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{TP_TRACE}-{TP_PARENT}-01"
SYSTEM_LIBSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3"


def make_cert():
    """A self-signed certificate in a directory unprivileged workers can read."""
    require("openssl")
    d = tempfile.mkdtemp(prefix="hoptrace-tls-")
    os.chmod(d, 0o755)  # nginx workers run as an unprivileged user
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-days", "1", "-keyout", os.path.join(d, "key.pem"), "-out", os.path.join(d, "cert.pem")])
    os.chmod(os.path.join(d, "key.pem"), 0o644)
    return d


def start_nginx_tls(port, certdir):
    return nginx(port, f"ssl_certificate {certdir}/cert.pem;\n"
                 f"    ssl_certificate_key {certdir}/key.pem;\n    root {{root}};",
                 listen_extra=" ssl")


def tls_server(port, certdir, *extra, env=None):
    argv = [sys.executable, os.path.join(HERE, "tls_server.py"), str(port),
            os.path.join(certdir, "cert.pem"), os.path.join(certdir, "key.pem"), *extra]
    p = Proc(argv, env=env)
    wait_port(port)
    return p


def assert_https(spans):
    for s in spans:
        assert s["attributes"]["url.scheme"] == "https", s
        if s["kind"] == "CLIENT" and "url.full" in s["attributes"]:
            assert s["attributes"]["url.full"].startswith("https://"), s


def assert_no_drops(counters):
    for k in ("drop_parse_error", "drop_gap_in_headers", "drop_out_of_order",
              "drop_response_unmatched", "bpf_drop_ringbuf_full", "bpf_drop_map_full"):
        assert counters.get(k, 0) == 0, (k, counters)


def test_nginx_https_with_curl():
    certs = make_cert()
    port = free_port()
    ngx = start_nginx_tls(port, certs)
    agent = Agent("--port", str(port))
    try:
        assert curl("-k", "-H", f"traceparent: {TRACEPARENT}",
                    f"https://127.0.0.1:{port}/index.html?secret=hunter2").stdout == b"200"
        # keep-alive, a 3 MiB body (non-blocking SSL_write retries) and a 404 on one connection
        r = run(["curl", "-sSk", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null", "-w",
                 "%{num_connects} ", f"https://127.0.0.1:{port}/big.bin",
                 f"https://127.0.0.1:{port}/index.html", f"https://127.0.0.1:{port}/nope"])
        assert r.stdout.split()[0] == b"1"
        spans = agent.stop()
    finally:
        agent.kill()
        ngx.stop()
    assert len(spans) == 8, spans
    assert_https(spans)
    first_server = spans_where(spans, kind="SERVER", attr_url__path="/index.html")
    first_server = min(first_server, key=lambda s: s["start_unix_ns"])
    first_client = one(spans, kind="CLIENT", span_id=TP_PARENT)
    # the traceparent sent inside TLS joins both sides, as in plaintext
    assert first_server["trace_id"] == TP_TRACE and first_server["parent_span_id"] == TP_PARENT
    assert first_client["trace_id"] == TP_TRACE
    assert first_server["service.name"] == "nginx" and first_client["service.name"] == "curl"
    a = first_client["attributes"]
    assert a["url.full"] == f"https://127.0.0.1:{port}/index.html"
    assert a["server.port"] == port and a["network.peer.port"] == port
    # the session was matched to its socket: real endpoints on both sides
    assert first_server["attributes"]["server.port"] == port
    assert first_server["attributes"]["network.peer.address"] == "127.0.0.1"
    assert first_client["start_unix_ns"] <= first_server["start_unix_ns"]
    assert first_server["end_unix_ns"] <= first_client["end_unix_ns"]
    servers = sorted(spans_where(spans, kind="SERVER"), key=lambda s: s["start_unix_ns"])[1:]
    assert [s["name"] for s in servers] == ["GET /big.bin", "GET /index.html", "GET /nope"]
    assert [s["attributes"]["http.response.status_code"] for s in servers] == [200, 200, 404]
    assert all(s["status"] == "UNSET" for s in servers)
    big_client = one(spans, kind="CLIENT", attr_url__path="/big.bin")
    assert big_client["attributes"]["http.response.status_code"] == 200
    # the response ends with its last byte, not at the next request
    nxt = one(spans, kind="CLIENT", attr_url__path="/nope")
    assert big_client["end_unix_ns"] <= nxt["start_unix_ns"]
    assert "hunter2" not in str(spans)
    c = agent.counters
    assert c["bpf_tls_sockets"] >= 4, c  # both ends of both connections
    assert c["bpf_tls_without_socket"] == 0, c
    assert c["spans_error_incomplete"] == 0, c
    assert_no_drops(c)


def test_https_load_no_drops():
    require("ab")
    certs = make_cert()
    port = free_port()
    ngx = start_nginx_tls(port, certs)
    # As in test_ten_thousand_requests_no_drops: the sanitizer build falls behind ab for a
    # moment when the machine is busy (CI's kernel matrix runs qemu beside it); larger
    # rings absorb that. The default-ring figures are the benchmark's to give.
    agent = Agent("--port", str(port), "--ringbuf-bytes", str(32 << 20))
    try:
        url = f"https://127.0.0.1:{port}/index.html"
        for args in (["-n", "1000", "-c", "8"], ["-k", "-n", "2000", "-c", "8"]):
            r = run(["ab", "-q", *args, url], timeout=300)
            assert b"Failed requests:        0" in r.stdout, r.stdout
        spans = agent.stop(settle=1.0)
    finally:
        agent.kill()
        ngx.stop()
    c = agent.counters
    assert len(spans_where(spans, kind="SERVER", attr_url__scheme="https")) == 3000, c
    assert len(spans_where(spans, kind="CLIENT", attr_url__scheme="https")) == 3000, c
    for k, v in c.items():
        if "drop" in k:
            assert v == 0, (k, c)
    assert c["spans_error_incomplete"] == 0 and c["bpf_tls_without_socket"] == 0, c


def test_python_ssl_server_and_http_client():
    certs = make_cert()
    port = free_port()
    srv = tls_server(port, certs)
    agent = Agent("--port", str(port))
    code = (
        "import http.client,ssl,sys\n"
        "c=http.client.HTTPSConnection('127.0.0.1',%d,context=ssl._create_unverified_context())\n"
        "for p in ('/leaf','/status?code=503','/chunked?n=20'):\n"
        "    c.request('GET',p,headers={'traceparent':'%s'});r=c.getresponse();r.read()\n"
        "    print(r.status)\n" % (port, TRACEPARENT))
    try:
        out = run([sys.executable, "-c", code]).stdout.split()
        assert out == [b"200", b"503", b"200"], out
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    assert len(spans) == 6, spans
    assert_https(spans)
    for path, status in (("/leaf", 200), ("/status", 503), ("/chunked", 200)):
        s = one(spans, kind="SERVER", attr_url__path=path)
        c = one(spans, kind="CLIENT", attr_url__path=path)
        assert s["attributes"]["http.response.status_code"] == status
        assert c["attributes"]["http.response.status_code"] == status
        assert s["trace_id"] == c["trace_id"] == TP_TRACE
        assert s["parent_span_id"] == TP_PARENT == c["span_id"]
        assert s["service.name"].startswith("python") and c["service.name"].startswith("python")
        assert c["attributes"]["url.full"] == f"https://127.0.0.1:{port}{path}"
        assert s["attributes"]["network.peer.address"] == "127.0.0.1"
    assert one(spans, kind="SERVER", attr_url__path="/status")["status"] == "ERROR"
    assert agent.counters["bpf_tls_without_socket"] == 0
    assert_no_drops(agent.counters)


def two_hop_tls(mode, downstream_tls=True):
    certs = make_cert()
    front, back = free_port(), free_port()
    a = tls_server(front, certs, *(["--downstream-tls"] if downstream_tls else []))
    if downstream_tls:
        b = tls_server(back, certs)
    else:
        b = Proc([sys.executable, os.path.join(HERE, "app_server.py"), str(back)])
        wait_port(back)
    agent = Agent("--port", str(front), "--port", str(back))
    try:
        assert curl("-k", "-H", f"traceparent: {TRACEPARENT}",
                    f"https://127.0.0.1:{front}/hop?to={back}&propagate={mode}").stdout == b"200"
        spans = agent.stop()
    finally:
        agent.kill()
        a.stop()
        b.stop()
    return spans, front, back


def test_https_hop_in_two_hop_chain():
    spans, front, back = two_hop_tls("child")
    assert len(spans) == 4, spans
    assert_https(spans)
    edge = one(spans, kind="CLIENT", attr_url__path="/hop")
    entry = one(spans, kind="SERVER", attr_url__path="/hop")
    call = one(spans, kind="CLIENT", attr_url__path="/leaf")
    leaf = one(spans, kind="SERVER", attr_url__path="/leaf")
    assert edge["span_id"] == TP_PARENT and edge["service.name"] == "curl"
    assert entry["trace_id"] == call["trace_id"] == leaf["trace_id"] == TP_TRACE
    assert entry["parent_span_id"] == TP_PARENT
    # the HTTPS call made while serving is the served request's child (trace-id match)
    assert call["parent_span_id"] == entry["span_id"]
    assert call["attributes"]["hoptrace.parent.confidence"] == "exact"
    assert leaf["parent_span_id"] == call["span_id"]
    assert call["pid"] == entry["pid"]
    assert call["attributes"]["url.full"] == f"https://127.0.0.1:{back}/leaf"
    assert leaf["attributes"]["server.port"] == back
    assert entry["start_unix_ns"] <= call["start_unix_ns"] <= leaf["start_unix_ns"]
    assert leaf["end_unix_ns"] <= call["end_unix_ns"] <= entry["end_unix_ns"]
    assert "secret" not in str(spans)


def test_https_hop_without_propagation_then_plaintext_downstream():
    spans, front, back = two_hop_tls("none", downstream_tls=False)
    entry = one(spans, kind="SERVER", attr_url__path="/hop")
    call = one(spans, kind="CLIENT", attr_url__path="/leaf")
    leaf = one(spans, kind="SERVER", attr_url__path="/leaf")
    assert entry["attributes"]["url.scheme"] == "https"
    assert call["attributes"]["url.scheme"] == "http" and leaf["attributes"]["url.scheme"] == "http"
    # HTTPS in, HTTP out on the same thread: the call is still the request's child
    assert call["attributes"]["hoptrace.parent.confidence"] == "thread"
    assert call["parent_span_id"] == entry["span_id"] and call["trace_id"] == TP_TRACE
    assert leaf["trace_id"] != TP_TRACE and leaf["parent_span_id"] == ""


NODE_HTTPS = r"""
const https = require('https'), fs = require('fs');
const port = +process.argv[2], backend = +process.argv[3], dir = process.argv[4];
const tls = {key: fs.readFileSync(dir + '/key.pem'), cert: fs.readFileSync(dir + '/cert.pem')};
https.createServer(tls, (req, res) => {
  if (req.url.startsWith('/call') && backend) {
    const headers = {};
    const tp = req.headers['traceparent'];
    if (tp) { const p = tp.split('-'); headers['traceparent'] = [p[0], p[1], '00f067aa0ba902b7', p[3]].join('-'); }
    https.get({host: '127.0.0.1', port: backend, path: '/leaf', headers, rejectUnauthorized: false}, (r) => {
      r.resume(); r.on('end', () => { res.end('called ' + r.statusCode); });
    });
    return;
  }
  res.statusCode = req.url.startsWith('/missing') ? 404 : 200;
  res.write('part one ');            // no Content-Length: chunked encoding
  setTimeout(() => res.end('part two'), 5);
}).listen(port, '127.0.0.1');
"""


def start_node_pair(certs):
    require("node")
    front, back = free_port(), free_port()
    script = os.path.join(tempfile.mkdtemp(), "https_server.js")
    with open(script, "w") as f:
        f.write(NODE_HTTPS)
    n1 = Proc(["node", script, str(front), str(back), certs])
    n2 = Proc(["node", script, str(back), "0", certs])
    wait_port(front)
    wait_port(back)
    return n1, n2, front, back


def test_node_https_server_and_client():
    certs = make_cert()
    n1, n2, front, back = start_node_pair(certs)
    # Node's TLS runs on memory BIOs: its sessions have no known socket, so --port cannot
    # select them; select the processes instead
    agent = Agent("--comm", "node", "--comm", "curl")
    try:
        assert curl("-k", "-H", f"traceparent: {TRACEPARENT}",
                    f"https://127.0.0.1:{front}/call").stdout == b"200"
        assert curl("-k", f"https://127.0.0.1:{back}/missing").stdout == b"404"
        spans = agent.stop()
    finally:
        agent.kill()
        n1.stop()
        n2.stop()
    # --comm also selects other node and curl processes on this host: keep ours
    mine = [s for s in spans if s["pid"] in (n1.pid, n2.pid) or
            (s["service.name"] == "curl" and s["attributes"].get("server.port") in (front, back))]
    assert_https(mine)
    entry = one(mine, kind="SERVER", pid=n1.pid, attr_url__path="/call")
    call = one(mine, kind="CLIENT", pid=n1.pid, attr_url__path="/leaf")
    leaf = one(mine, kind="SERVER", pid=n2.pid, attr_url__path="/leaf")
    edge = one([s for s in mine if s["service.name"] == "curl"], kind="CLIENT",
               attr_url__path="/call")
    assert entry["service.name"] == "node" and call["service.name"] == "node"
    assert entry["trace_id"] == TP_TRACE and entry["parent_span_id"] == TP_PARENT
    assert edge["span_id"] == TP_PARENT
    # the app propagated: the call is the request's child, the leaf the call's child
    assert call["parent_span_id"] == entry["span_id"] and call["trace_id"] == TP_TRACE
    assert call["span_id"] == "00f067aa0ba902b7" and leaf["parent_span_id"] == call["span_id"]
    assert leaf["attributes"]["http.response.status_code"] == 200
    assert call["attributes"]["url.full"] == f"https://127.0.0.1:{back}/leaf"
    # no socket known for Node's sessions: no peer address rather than a wrong one
    assert "network.peer.address" not in entry["attributes"]
    assert entry["attributes"]["server.port"] == front  # from the Host header
    missing = one(mine, kind="SERVER", pid=n2.pid, attr_url__path="/missing")
    assert missing["attributes"]["http.response.status_code"] == 404
    # the chunked response ends with the last chunk, written 5 ms after the first
    assert missing["end_unix_ns"] - missing["start_unix_ns"] >= 4_000_000
    assert agent.counters["bpf_tls_without_socket"] >= 3


def test_node_sessions_are_not_selected_by_port():
    certs = make_cert()
    n1, n2, front, back = start_node_pair(certs)
    agent = Agent("--port", str(back))
    try:
        assert curl("-k", f"https://127.0.0.1:{back}/leaf").stdout == b"200"
        spans = agent.stop()
    finally:
        agent.kill()
        n1.stop()
        n2.stop()
    # curl's session has a socket on the selected port; Node's cannot be placed
    client = one(spans, kind="CLIENT")
    assert client["service.name"] == "curl" and client["attributes"]["url.scheme"] == "https"
    assert not spans_where(spans, kind="SERVER")
    assert agent.counters["bpf_tls_port_unknown"] >= 1


def test_server_started_after_the_agent_with_its_own_libssl():
    """A process that starts after the agent, with a libssl no running process maps (a
    private copy: a new inode), is found through its exec and probed."""
    certs = make_cert()
    libdir = tempfile.mkdtemp(prefix="hoptrace-libssl-")
    shutil.copy(SYSTEM_LIBSSL, os.path.join(libdir, "libssl.so.3"))
    env = dict(os.environ, LD_LIBRARY_PATH=libdir)
    port = free_port()
    agent = Agent("--port", str(port))
    srv = None
    try:
        srv = tls_server(port, certs, env=env)
        deadline = time.time() + 15
        while f"tracing HTTPS through {libdir}/libssl.so.3" not in agent.stderr():
            assert time.time() < deadline, agent.stderr()
            time.sleep(0.1)
        code = ("import http.client,ssl;c=http.client.HTTPSConnection('127.0.0.1',%d,"
                "context=ssl._create_unverified_context());"
                "c.request('GET','/leaf',headers={'traceparent':'%s'});"
                "print(c.getresponse().status)" % (port, TRACEPARENT))
        assert run([sys.executable, "-c", code], env=env).stdout.strip() == b"200"
        spans = agent.stop()
    finally:
        agent.kill()
        if srv:
            srv.stop()
    server = one(spans, kind="SERVER")
    client = one(spans, kind="CLIENT")
    assert server["attributes"]["url.scheme"] == "https" and client["attributes"]["url.scheme"] == "https"
    assert server["trace_id"] == client["trace_id"] == TP_TRACE
    assert server["parent_span_id"] == client["span_id"] == TP_PARENT
    assert server["attributes"]["http.response.status_code"] == 200


def test_unprobeable_library_is_reported_and_the_rest_works():
    """A library that looks like libssl but has no OpenSSL entry points gets one clear log
    line; HTTPS through the real libssl is still traced."""
    certs = make_cert()
    libdir = tempfile.mkdtemp(prefix="hoptrace-fake-")
    fake = os.path.join(libdir, "libssl.so.77")
    shutil.copy("/usr/lib/x86_64-linux-gnu/libz.so.1", fake)
    holder = Proc([sys.executable, "-c",
                   "import ctypes,sys,time;ctypes.CDLL(sys.argv[1]);print('ok',flush=True);"
                   "time.sleep(60)", fake], stdout=subprocess.PIPE)
    assert holder.p.stdout.readline().strip() == b"ok"
    port = free_port()
    srv = tls_server(port, certs)
    agent = Agent("--port", str(port))
    try:
        assert curl("-k", f"https://127.0.0.1:{port}/leaf").stdout == b"200"
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
        holder.stop()
    lines = [l for l in agent.stderr().splitlines() if fake in l]
    assert len(lines) == 1, agent.stderr()
    assert "cannot probe" in lines[0] and "SSL_read not found" in lines[0], lines
    one(spans, kind="SERVER", attr_url__path="/leaf")
    one(spans, kind="CLIENT", attr_url__path="/leaf")


def test_no_tls_flag():
    certs = make_cert()
    port, plain = free_port(), free_port()
    srv = tls_server(port, certs)
    psrv = Proc([sys.executable, os.path.join(HERE, "app_server.py"), str(plain)])
    wait_port(plain)
    agent = Agent("--port", str(port), "--port", str(plain), "--no-tls")
    try:
        assert curl("-k", f"https://127.0.0.1:{port}/leaf").stdout == b"200"
        assert curl(f"http://127.0.0.1:{plain}/leaf").stdout == b"200"
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
        psrv.stop()
    # ciphertext is never parsed; plaintext HTTP is traced as before
    assert len(spans) == 2, spans
    assert all(s["attributes"]["url.scheme"] == "http" for s in spans)
    assert "tracing HTTPS" not in agent.stderr()
    assert agent.counters["bpf_tls_calls"] == 0
