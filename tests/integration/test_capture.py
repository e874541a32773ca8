"""Capture of HTTP/1.x spans from unmodified processes (issue 2)."""
import os
import socket
import subprocess
import sys
import tempfile
import time

from lib import (Agent, Proc, SkipTest, curl, free_port, one, python_server, run, slow,
                 spans_where, wait_port, HERE)

TP_TRACE = "0af7651916cd43dd8448eb211c80319c"
TP_PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{TP_TRACE}-{TP_PARENT}-01"


def test_python_http_server_with_curl_traceparent():
    port = free_port()
    srv = python_server(port)
    agent = Agent("--port", str(port))
    try:
        assert curl("-H", f"traceparent: {TRACEPARENT}", "-H", "tracestate: vendor=abc",
                    f"http://127.0.0.1:{port}/?password=hunter2").stdout == b"200"
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    server = one(spans, kind="SERVER")
    client = one(spans, kind="CLIENT")
    # the server joins the caller's trace, as a child of the span id in the header
    assert server["trace_id"] == TP_TRACE
    assert server["parent_span_id"] == TP_PARENT
    assert server["tracestate"] == "vendor=abc"
    # curl sent its own traceparent: its span takes those ids, so the two link
    assert client["trace_id"] == TP_TRACE and client["span_id"] == TP_PARENT
    assert server["name"] == "GET /" and client["name"] == "GET /"
    a = server["attributes"]
    assert a["http.request.method"] == "GET"
    assert a["url.path"] == "/"
    assert a["http.response.status_code"] == 200
    assert a["server.port"] == port
    assert a["network.peer.address"] == "127.0.0.1"
    assert a["user_agent.original"].startswith("curl/")
    assert a["network.protocol.version"] in ("1.0", "1.1")
    assert server["service.name"].startswith("python")
    assert client["service.name"] == "curl"
    assert client["attributes"]["server.port"] == port
    assert client["attributes"]["url.full"] == f"http://127.0.0.1:{port}/"
    # timing: the client's span encloses the server's
    assert client["start_unix_ns"] <= server["start_unix_ns"] <= server["end_unix_ns"] <= client["end_unix_ns"]
    # never a secret: no query string anywhere in the output
    for s in spans:
        assert "hunter2" not in str(s) and "password" not in str(s)


def test_without_traceparent_starts_a_new_trace():
    port = free_port()
    srv = python_server(port)
    agent = Agent("--port", str(port))
    try:
        assert curl(f"http://127.0.0.1:{port}/missing").stdout == b"404"
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    server = one(spans, kind="SERVER")
    client = one(spans, kind="CLIENT")
    assert server["parent_span_id"] == ""
    assert len(server["trace_id"]) == 32 and server["trace_id"] != "0" * 32
    assert server["status"] == "UNSET"  # 4xx is not a server error
    assert client["status"] == "ERROR"  # ... but is one for the client
    assert server["attributes"]["http.response.status_code"] == 404


def test_invalid_traceparent_is_rejected():
    port = free_port()
    srv = python_server(port)
    agent = Agent("--port", str(port))
    try:
        curl("-H", "traceparent: 00-00000000000000000000000000000000-b7ad6b7169203331-01",
             f"http://127.0.0.1:{port}/")
        curl("-H", f"traceparent: {TRACEPARENT.upper()}", f"http://127.0.0.1:{port}/")
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    servers = spans_where(spans, kind="SERVER")
    assert len(servers) == 2
    for s in servers:
        assert s["parent_span_id"] == "" and s["trace_id"] not in ("0" * 32, TP_TRACE)
    assert agent.counters["traceparent_invalid"] == 2


def two_hop(mode, calls=1):
    front, back = free_port(), free_port()
    a = python_server(front, script="app_server.py")
    b = python_server(back, script="app_server.py")
    agent = Agent("--port", str(front), "--port", str(back))
    try:
        assert curl("-H", f"traceparent: {TRACEPARENT}",
                    f"http://127.0.0.1:{front}/hop?to={back}&propagate={mode}&calls={calls}").stdout == b"200"
        spans = agent.stop()
    finally:
        agent.kill()
        a.stop()
        b.stop()
    return spans, front, back


def test_two_hop_chain_app_propagates():
    spans, front, back = two_hop("child")
    assert len(spans) == 4, spans
    entry = one(spans, kind="SERVER", attr_url__path="/hop")
    call = one(spans, kind="CLIENT", attr_url__path="/leaf")
    leaf = one(spans, kind="SERVER", attr_url__path="/leaf")
    assert entry["trace_id"] == call["trace_id"] == leaf["trace_id"] == TP_TRACE
    assert entry["parent_span_id"] == TP_PARENT
    # the outgoing call is a child of the request being served (matched by trace id)
    assert call["parent_span_id"] == entry["span_id"]
    assert call["attributes"]["hoptrace.parent.confidence"] == "exact"
    # the downstream server's parent is the client span (the id the app sent)
    assert leaf["parent_span_id"] == call["span_id"]
    assert call["pid"] == entry["pid"] and call["service.name"] == entry["service.name"]
    assert call["attributes"]["server.port"] == back
    assert leaf["attributes"]["server.port"] == back
    assert entry["start_unix_ns"] <= call["start_unix_ns"] <= leaf["start_unix_ns"]
    assert leaf["end_unix_ns"] <= call["end_unix_ns"] <= entry["end_unix_ns"]
    assert "secret" not in str(spans)


def test_two_hop_chain_app_does_not_propagate():
    spans, front, back = two_hop("none")
    entry = one(spans, kind="SERVER", attr_url__path="/hop")
    call = one(spans, kind="CLIENT", attr_url__path="/leaf")
    leaf = one(spans, kind="SERVER", attr_url__path="/leaf")
    # the call is made on the thread serving the request: it is that request's child
    assert call["attributes"]["hoptrace.parent.confidence"] == "thread"
    assert call["parent_span_id"] == entry["span_id"]
    assert call["trace_id"] == entry["trace_id"] == TP_TRACE
    # the app sent no header: the downstream server starts its own trace
    assert leaf["trace_id"] != TP_TRACE and leaf["parent_span_id"] == ""


def test_two_hop_forwarded_header_keeps_ids_distinct():
    spans, front, back = two_hop("forward")
    entry = one(spans, kind="SERVER", attr_url__path="/hop")
    call = one(spans, kind="CLIENT", attr_url__path="/leaf")
    assert call["parent_span_id"] == entry["span_id"]
    # a pass-through header must not give the client span the upstream span's id
    assert call["span_id"] != TP_PARENT


def test_two_hop_several_calls():
    spans, front, back = two_hop("child", calls=3)
    entry = one(spans, kind="SERVER", attr_url__path="/hop")
    calls = spans_where(spans, kind="CLIENT", attr_url__path="/leaf")
    leaves = spans_where(spans, kind="SERVER", attr_url__path="/leaf")
    assert len(calls) == 3 and len(leaves) == 3
    assert len({c["span_id"] for c in calls}) == 3
    for c in calls:
        assert c["parent_span_id"] == entry["span_id"]
    assert {l["parent_span_id"] for l in leaves} == {c["span_id"] for c in calls}


def test_keepalive_several_requests_one_connection():
    port = free_port()
    srv = python_server(port, script="app_server.py")
    agent = Agent("--port", str(port))
    try:
        urls = [f"http://127.0.0.1:{port}/leaf?i={i}" for i in range(5)]
        r = run(["curl", "-sS", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null", "-o",
                 "/dev/null", "-o", "/dev/null", "-w", "%{num_connects} ", *urls])
        assert r.stdout.split()[0] == b"1"  # first transfer connects, the rest reuse
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    servers = spans_where(spans, kind="SERVER")
    clients = spans_where(spans, kind="CLIENT")
    assert len(servers) == 5 and len(clients) == 5
    assert len({s["attributes"]["network.peer.port"] for s in servers}) == 1
    assert all(s["attributes"]["http.response.status_code"] == 200 for s in spans)
    starts = sorted(s["start_unix_ns"] for s in servers)
    ends = sorted(s["end_unix_ns"] for s in servers)
    assert all(e <= s for e, s in zip(ends, starts[1:]))  # sequential, no overlap


def test_request_and_response_written_on_different_cpus():
    """The BPF side writes to one ring buffer per CPU. A server that reads a request on one
    CPU and answers on another puts the answer in a ring the agent drains before the
    request's: the agent must merge the rings by time, or every response is unmatched."""
    if len(os.sched_getaffinity(0)) < 2:
        raise SkipTest("needs 2 CPUs")
    port = free_port()
    srv = python_server(port, script="cpu_hop_server.py")
    agent = Agent("--port", str(port))
    try:
        n = 40
        with socket.create_connection(("127.0.0.1", port)) as c:
            for i in range(n):
                c.sendall(b"GET /hop?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
                got = b""
                while not got.endswith(b"hop\n"):
                    got += c.recv(4096)
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    servers = spans_where(spans, kind="SERVER", name="GET /hop")
    assert len(servers) == n, agent.stderr()[-3000:]
    assert all(s["attributes"]["http.response.status_code"] == 200 for s in servers)
    assert agent.counters.get("drop_response_unmatched", 0) == 0
    assert agent.counters.get("drop_out_of_order", 0) == 0


def test_pipelined_requests_in_one_write():
    port = free_port()
    srv = python_server(port, script="app_server.py")
    agent = Agent("--port", str(port))
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            req = b"GET /leaf?n=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /status?code=201 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /leaf HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            s.sendall(req)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        assert data.count(b"HTTP/1.1 ") == 3
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    servers = sorted(spans_where(spans, kind="SERVER"), key=lambda s: s["start_unix_ns"])
    assert [s["name"] for s in servers] == ["GET /leaf", "GET /status", "HEAD /leaf"], servers
    assert [s["attributes"]["http.response.status_code"] for s in servers] == [200, 201, 200]
    clients = sorted(spans_where(spans, kind="CLIENT"), key=lambda s: s["start_unix_ns"])
    assert [s["attributes"]["http.response.status_code"] for s in clients] == [200, 201, 200]


def test_chunked_and_large_responses():
    port = free_port()
    srv = python_server(port, script="app_server.py")
    agent = Agent("--port", str(port))
    try:
        assert curl(f"http://127.0.0.1:{port}/chunked?n=50").stdout == b"200"
        assert curl(f"http://127.0.0.1:{port}/big?bytes=5000000").stdout == b"200"
        assert curl(f"http://127.0.0.1:{port}/leaf").stdout == b"200"
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    for path in ("/chunked", "/big", "/leaf"):
        s = one(spans, kind="SERVER", attr_url__path=path)
        c = one(spans, kind="CLIENT", attr_url__path=path)
        assert s["status"] == "UNSET" and c["status"] == "UNSET", (s, c)
        assert s["attributes"]["http.response.status_code"] == 200
        assert c["end_unix_ns"] >= s["end_unix_ns"]
    assert agent.counters["spans_error_incomplete"] == 0
    assert agent.counters["drop_parse_error"] == 0


def test_client_dies_mid_request():
    port = free_port()
    srv = python_server(port, script="app_server.py")
    agent = Agent("--port", str(port))
    try:
        code = ("import socket,time;s=socket.create_connection(('127.0.0.1',%d));"
                "s.sendall(b'GET /slow?ms=%d HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n');time.sleep(30)"
                % (port, slow(1500)))
        victim = Proc([sys.executable, "-c", code])
        time.sleep(slow(0.5))
        victim.stop()  # SIGKILL while waiting for the answer
        time.sleep(slow(2.0))  # the server answers into a dead connection (after 1.5 s)
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    client = one(spans, kind="CLIENT")
    assert client["status"] == "ERROR"
    assert "exited" in client["status_message"] or "closed" in client["status_message"], (
        client, agent.counters)
    assert client["attributes"].get("error.type") == "incomplete"
    server = one(spans, kind="SERVER")
    assert server["attributes"]["url.path"] == "/slow"
    assert agent.counters["spans_error_incomplete"] >= 1


def test_malformed_http_is_counted_and_agent_keeps_going():
    port = free_port()
    srv = python_server(port, script="app_server.py")
    agent = Agent("--port", str(port))
    try:
        for junk in (b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n",
                     b"GET /x HTTP/1.1\r\n" + b"X-Big: " + b"a" * 40000 + b"\r\n\r\n",
                     b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(junk)
                s.settimeout(2)
                try:
                    s.recv(65536)
                except OSError:
                    pass
        assert curl(f"http://127.0.0.1:{port}/leaf").stdout == b"200"
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    # the well-formed request after the junk is traced normally
    one(spans, kind="CLIENT", attr_url__path="/leaf")
    one(spans, kind="SERVER", attr_url__path="/leaf")
    c = agent.counters
    assert c["drop_parse_error"] + c["drop_header_too_large"] + c["drop_gap_in_headers"] >= 2, c


def test_connection_opened_before_the_agent():
    port = free_port()
    srv = python_server(port, script="app_server.py")
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /leaf?before HTTP/1.1\r\nHost: x\r\n\r\n")
        seen = b""
        while not seen.endswith(b"leaf"):  # headers and body may come in two reads
            seen += s.recv(65536)
        agent = Agent("--port", str(port))
        try:
            s.sendall(b"GET /status?code=202 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"202" in s.recv(65536)
            s.close()
            spans = agent.stop()
        finally:
            agent.kill()
    finally:
        srv.stop()
    server = one(spans, kind="SERVER")
    assert server["attributes"]["http.response.status_code"] == 202
    client = one(spans, kind="CLIENT")
    assert client["attributes"].get("http.response.status_code") == 202, (client, agent.counters)


def test_output_file_alone_is_waterfall():
    """-O FILE without -o: waterfalls into the file (the default without a collector and
    without -O is the store: test_store.py)."""
    port = free_port()
    srv = python_server(port, script="app_server.py")
    agent = Agent("--port", str(port), "--quiet-ms", "100", output=None)
    try:
        curl(f"http://127.0.0.1:{port}/leaf")
        agent.stop(settle=1.0)
    finally:
        agent.kill()
        srv.stop()
    text = agent.text
    assert "trace " in text and "SERVER" in text and "CLIENT" in text and "GET /leaf" in text, text


def test_expect_continue_no_body_statuses_and_http10():
    port = free_port()
    srv = python_server(port, script="app_server.py")
    agent = Agent("--port", str(port))
    body = os.path.join(tempfile.mkdtemp(), "body")
    with open(body, "wb") as f:
        f.write(b"a" * 300000)
    try:
        r = run(["curl", "-sS", "-H", "Expect: 100-continue", "--data-binary", f"@{body}",
                 f"http://127.0.0.1:{port}/echo"])
        assert r.stdout == b"300000"
        assert curl(f"http://127.0.0.1:{port}/status?code=204").stdout == b"204"
        assert curl(f"http://127.0.0.1:{port}/status?code=304").stdout == b"304"
        assert curl("--http1.0", f"http://127.0.0.1:{port}/leaf").stdout == b"200"
        assert curl("-I", f"http://127.0.0.1:{port}/big?bytes=100000").stdout == b"200"
        assert curl(f"http://127.0.0.1:{port}/leaf").stdout == b"200"
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    servers = sorted(spans_where(spans, kind="SERVER"), key=lambda s: s["start_unix_ns"])
    got = [(s["name"], s["attributes"]["http.response.status_code"]) for s in servers]
    assert got == [("POST /echo", 200), ("GET /status", 204), ("GET /status", 304),
                   ("GET /leaf", 200), ("HEAD /big", 200), ("GET /leaf", 200)], got
    assert [s["attributes"]["network.protocol.version"] for s in servers][3] == "1.0"
    clients = spans_where(spans, kind="CLIENT")
    assert len(clients) == 6 and all("error.type" not in c["attributes"] or
                                     c["attributes"]["http.response.status_code"] >= 400
                                     for c in clients)
    assert agent.counters["spans_error_incomplete"] == 0
    assert agent.counters["drop_parse_error"] == 0


def test_traceparent_after_large_headers():
    """A traceparent behind 7 KB of cookies is still found (header block copied whole)."""
    port = free_port()
    srv = python_server(port, script="app_server.py")
    agent = Agent("--port", str(port))
    try:
        cookie = "session=" + "c" * 7000
        assert curl("-H", f"Cookie: {cookie}", "-H", f"traceparent: {TRACEPARENT}",
                    f"http://127.0.0.1:{port}/leaf").stdout == b"200"
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    server = one(spans, kind="SERVER")
    client = one(spans, kind="CLIENT")
    assert server["trace_id"] == TP_TRACE and server["parent_span_id"] == TP_PARENT
    assert client["span_id"] == TP_PARENT
    assert "ccccc" not in str(spans)  # cookie values never leave the agent
