"""Secrets and identity (issue 11): what a traced process sends or sets must not leak through
the agent's spans, logs or terminal output, nor pass for what the agent observes itself."""
import json
import os
import signal
import sys
import tempfile

from lib import Agent, Proc, free_port, python_server, run, wait_port, HERE

SECRET = "SECRETx9"  # every secret below contains it: no span may


def hostile_heads(port):
    """Request heads whose targets (or Host) carry secrets, as a client or proxy sends them."""
    host = f"127.0.0.1:{port}"
    heads = [
        f"GET /login;jsessionid={SECRET}1?token={SECRET}2 HTTP/1.1\r\nHost: {host}\r\n",
        f"GET /a;sid={SECRET}3/b;x={SECRET}4/c HTTP/1.1\r\nHost: {host}\r\n",
        f"GET HTTP://user:{SECRET}5@{host}/abs;jsessionid={SECRET}6?q={SECRET}7 HTTP/1.1\r\n"
        f"Host: {host}\r\n",
        f"GET ftp://ftpuser:{SECRET}8@files.example/pub/f.txt HTTP/1.1\r\nHost: {host}\r\n",
        f"GET HtTpS://tok{SECRET}9@h.example:8443/p HTTP/1.1\r\nHost: {host}\r\n",
        f"GET //user:{SECRET}10@evil.example/net HTTP/1.1\r\nHost: {host}\r\n",
        f"GET /hosted HTTP/1.1\r\nHost: user:{SECRET}11@{host}\r\n",
        f"OPTIONS * HTTP/1.1\r\nHost: {host}\r\n",
        f"CONNECT user:{SECRET}12@example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n",
        f"GET /keep;lang=en;jsessionid={SECRET}13 HTTP/1.1\r\nHost: {host}\r\n",
    ]
    return [h + "Connection: close\r\n\r\n" for h in heads]


def keepalive_server(port, directory):
    """python3 -m http.server speaking HTTP/1.1 (keep-alive after a 200)."""
    p = Proc([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
              "-p", "HTTP/1.1", "--directory", directory])
    wait_port(port)
    return p


def test_url_secrets_never_exported():
    """Userinfo (any scheme, any case, Host too), path parameters and queries sent by a real
    client to a real server: none reaches a span; odd forms give sane spans."""
    port = free_port()
    d = tempfile.mkdtemp(prefix="hoptrace-hostile-")
    srv = keepalive_server(port, d)
    heads = os.path.join(d, "heads.json")
    with open(heads, "w") as f:
        json.dump(hostile_heads(port), f)
    agent = Agent("--port", str(port), "--keep-path-params", "lang")
    try:
        run([sys.executable, os.path.join(HERE, "hostile_client.py"), str(port), heads])
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    text = json.dumps(spans)
    assert SECRET not in text, [s for s in spans if SECRET in json.dumps(s)]
    assert "user" not in text.replace("user_agent", "")
    spans = [s for s in spans if s["name"] != "GET /"]  # the warm-up requests
    servers = {s["attributes"].get("url.path"): s for s in spans if s["kind"] == "SERVER"}
    clients = [s for s in spans if s["kind"] == "CLIENT"]
    assert sum(1 for s in spans if s["kind"] == "SERVER") == 10, text
    assert len(clients) == 10, text
    assert servers["/login"]["name"] == "GET /login"
    assert "/a/b/c" in servers
    assert servers["/abs"]["name"] == "GET /abs"
    assert "/pub/f.txt" in servers and "/p" in servers
    assert "//evil.example/net" in servers
    assert servers["/hosted"]["attributes"]["server.address"] == "127.0.0.1"
    assert servers["/keep;lang=en"]["name"] == "GET /keep;lang=en"
    # OPTIONS * and CONNECT: no path at all, the method alone names the span
    opts = [s for s in spans if s["attributes"]["http.request.method"] == "OPTIONS"]
    conn = [s for s in spans if s["attributes"]["http.request.method"] == "CONNECT"]
    assert len(opts) == 2 and len(conn) == 2, text
    for s in opts + conn:
        assert s["name"] in ("OPTIONS", "CONNECT"), s
        assert "url.path" not in s["attributes"] and "url.full" not in s["attributes"], s
    # a client's url.full: the proxy form names the resource with its own scheme
    fulls = sorted(c["attributes"].get("url.full", "") for c in clients)
    assert "ftp://files.example/pub/f.txt" in fulls, fulls
    assert "https://h.example:8443/p" in fulls, fulls
    assert f"http://127.0.0.1:{port}/abs" in fulls, fulls
    assert f"http://127.0.0.1:{port}/login" in fulls, fulls


def test_process_cannot_override_observed_resource():
    """A real traced process whose environment claims another host, node and pid, and
    carries a 120 KiB attribute (execve allows 128 KiB per string): what the agent observes
    wins, the huge value is dropped and counted, the rest is kept."""
    port = free_port()
    huge = "h" * (120 * 1024)
    env = dict(os.environ, OTEL_RESOURCE_ATTRIBUTES=(
        f"host.name=evil,k8s.node.name=evil-node,process.pid=1,process.executable.name=evil,"
        f"team=core,big={huge}"))
    env.pop("OTEL_SERVICE_NAME", None)
    srv = Proc([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], env=env)
    wait_port(port)
    agent = Agent("--port", str(port))
    try:
        run(["curl", "-sS", "-o", "/dev/null", f"http://127.0.0.1:{port}/"])
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    server = [s for s in spans if s["kind"] == "SERVER"]
    assert len(server) == 1, spans
    res = server[0]["resource"]
    assert res.get("team") == "core", res
    for key in ("host.name", "k8s.node.name", "process.pid", "big"):
        assert key not in res, res
    assert res["process.executable.name"].startswith("python"), res
    assert server[0]["pid"] == srv.pid
    assert len(json.dumps(server[0])) < 8192
    assert agent.counters.get("resource_attrs_dropped", 0) >= 5, agent.counters


def take_pid(pid, argv, env, tries=200):
    """Start argv as process `pid` (just freed), through /proc/sys/kernel/ns_last_pid: the
    kernel gives the next fork the pid after it. Other processes of the host may fork in
    between: retry."""
    for _ in range(tries):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        p = Proc(argv, env=env)
        if p.pid == pid:
            return p
        p.stop()
    raise AssertionError(f"could not start a process as pid {pid} in {tries} tries")


CLIENT = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /reused HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
while s.recv(65536):
    pass
"""


def test_reused_pid_does_not_take_the_identity():
    """A client makes a request and exits while the agent is stopped (its ring holds the
    records); its pid goes to an impostor with another environment before the agent reads
    /proc. The client's span must not carry the impostor's identity."""
    port = free_port()
    srv = python_server(port)
    agent = Agent("--port", str(port))
    impostor = None
    try:
        agent.p.send_signal(signal.SIGSTOP)
        try:
            env = dict(os.environ, OTEL_SERVICE_NAME="real-client")
            c = Proc([sys.executable, "-c", CLIENT, str(port)], env=env)
            c.p.wait(timeout=10)
            pid = c.pid
            impostor = take_pid(pid, ["sleep", "30"],
                                dict(os.environ, OTEL_SERVICE_NAME="impostor",
                                     OTEL_RESOURCE_ATTRIBUTES="team=impostor"))
        finally:
            agent.p.send_signal(signal.SIGCONT)
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
        if impostor:
            impostor.stop()
    mine = [s for s in spans if s["kind"] == "CLIENT" and s["pid"] == pid]
    assert len(mine) == 1, spans
    text = json.dumps(mine[0])
    assert "impostor" not in text and "sleep" not in text, mine[0]
    assert mine[0]["service.name"].startswith("python"), mine[0]
    assert agent.counters.get("proc_identity_mismatch", 0) >= 1, agent.counters
