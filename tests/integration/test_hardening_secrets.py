"""Secrets and identity (issue 11): what a traced process sends or sets must not leak through
the agent's spans, logs or terminal output, nor pass for what the agent observes itself."""
import json
import os
import signal
import sys
import tempfile
import time

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


def test_absolute_form_first_on_its_connection_is_traced():
    """A proxy's client opens each connection with an absolute-form target, in any case and
    with any scheme a proxy takes: BPF must classify that first request as HTTP (it used to
    want a lowercase 'h'), and the spans carry no userinfo."""
    port = free_port()
    d = tempfile.mkdtemp(prefix="hoptrace-absform-")
    srv = keepalive_server(port, d)
    host = f"127.0.0.1:{port}"
    heads = [f"GET HTTP://user:{SECRET}1@{host}/upper HTTP/1.1\r\nHost: {host}\r\n",
             f"GET ftp://ftpuser:{SECRET}2@files.example/pub/f.txt HTTP/1.1\r\nHost: {host}\r\n",
             f"HEAD HtTpS://h.example:8443/mixed HTTP/1.1\r\nHost: {host}\r\n",
             f"DELETE FTP://files.example/old HTTP/1.1\r\nHost: {host}\r\n"]
    path = os.path.join(d, "heads.json")
    with open(path, "w") as f:
        json.dump([h + "Connection: close\r\n\r\n" for h in heads], f)
    agent = Agent("--port", str(port))
    try:
        run([sys.executable, os.path.join(HERE, "hostile_client.py"), "--first", str(port), path])
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    assert SECRET not in json.dumps(spans)
    got = sorted((s["kind"], s["attributes"].get("url.path")) for s in spans)
    want = sorted((k, p) for k in ("CLIENT", "SERVER")
                  for p in ("/upper", "/pub/f.txt", "/mixed", "/old"))
    assert got == want, got


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


def run_agent_briefly(args, env=None, timeout=30):
    """The agent with args; its exit code and stderr (it exits by itself: -d, or an error)."""
    from lib import AGENT
    e = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
    e.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    e.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
    e.update(env or {})
    r = run([AGENT, *args], env=e, timeout=timeout, check=False)
    return r.returncode, r.stderr.decode("utf-8", "replace")


def test_logged_urls_and_header_errors_hide_credentials():
    """The OTLP endpoint's user:token@ and query never reach the log, whether the export
    fails or the URL is refused; a malformed OTEL_EXPORTER_OTLP_HEADERS names its key, not
    its value."""
    dead = free_port()  # nothing listens: every export fails and is logged
    rc, err = run_agent_briefly(
        ["-v", "-d", "2", "--port", str(free_port()), "--otlp-endpoint",
         f"http://user:TOKx9@127.0.0.1:{dead}/base?key=QRYx9"],
        env={"OTEL_BSP_SCHEDULE_DELAY": "100"})
    assert f"127.0.0.1:{dead}" in err, err  # the URL is there, without its secrets
    assert "TOKx9" not in err and "QRYx9" not in err, err
    rc, err = run_agent_briefly(["--otlp-endpoint", "ftp://user:TOKx9@collector:21/"])
    assert rc != 0 and "ftp://collector:21/" in err and "TOKx9" not in err, err
    rc, err = run_agent_briefly(["-o", "otlp"], env={
        "OTEL_EXPORTER_OTLP_HEADERS": "x-ok=1,Authorization=Bearer%zzTOKx9"})
    assert rc != 0 and "Authorization" in err and "TOKx9" not in err, err
    rc, err = run_agent_briefly(["-o", "otlp"], env={
        "OTEL_EXPORTER_OTLP_HEADERS": "Bearer TOKx9"})
    assert rc != 0 and "member 1" in err and "TOKx9" not in err, err


def test_escape_sequences_never_reach_the_log():
    """A process maps an OpenSSL library from a directory whose name holds terminal escape
    sequences; the agent logs that it traces HTTPS through it: shown escaped, no raw ESC,
    CR or C1 byte in the log."""
    d = tempfile.mkdtemp(prefix="hoptrace-esc-").encode()
    evil = os.path.join(d, b"x\x1b[2J\x1b]0;pwned\x07\r\xc2\x9b31m")
    os.makedirs(evil)
    lib = os.path.join(evil, b"libssl.so.3")
    with open("/usr/lib/x86_64-linux-gnu/libssl.so.3", "rb") as src, open(lib, "wb") as dst:
        dst.write(src.read())
    agent = Agent("-v", "--comm", "sleep")  # libbpf's lines too, which name attach paths
    try:
        env = dict(os.environb)
        env[b"LD_PRELOAD"] = lib
        p = Proc(["sleep", "30"], env=env)
        deadline = time.time() + 10
        while "x\\x1b[2J" not in agent.stderr() and time.time() < deadline:
            time.sleep(0.1)
        p.stop()
        agent.stop()
    finally:
        agent.kill()
    err = open(agent.err_path, "rb").read()
    assert b"x\\x1b[2J\\x1b]0;pwned\\x07\\x0d\\xc2\\x9b31m" in err, err
    assert b"\x1b" not in err and b"\r" not in err and b"\x9b" not in err, err


def test_keep_path_params_from_the_environment():
    """HOPTRACE_KEEP_PATH_PARAMS allows parameters as the flag does; an invalid list is a
    one-line error naming the variable, before anything is attached."""
    rc, err = run_agent_briefly([], env={"HOPTRACE_KEEP_PATH_PARAMS": "a,,b"})
    assert rc == 2 and "HOPTRACE_KEEP_PATH_PARAMS" in err and len(err.splitlines()) == 1, err
    port = free_port()
    d = tempfile.mkdtemp(prefix="hoptrace-keep-")
    srv = keepalive_server(port, d)
    heads = os.path.join(d, "heads.json")
    with open(heads, "w") as f:
        json.dump([f"GET /k;v=2;lang=fr;sid={SECRET} HTTP/1.1\r\nHost: x\r\n\r\n"], f)
    agent = Agent("--port", str(port), env={"HOPTRACE_KEEP_PATH_PARAMS": "v,lang"})
    try:
        run([sys.executable, os.path.join(HERE, "hostile_client.py"), str(port), heads])
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    paths = sorted(s["attributes"].get("url.path") for s in spans if s["name"] != "GET /")
    assert paths == ["/k;v=2;lang=fr", "/k;v=2;lang=fr"], spans
