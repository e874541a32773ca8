"""--repair=inject hardening (issue 11, "Header injection").

- A server thread's trace context ends with its request: once the request is answered (by
  any thread) or its connection closed, a call the thread makes later on its own (a timer)
  starts a new trace instead of carrying the old one.
- Injection follows each connection's HTTP/1 framing: a request body is never touched, even
  when it looks like a request head and is written on its own after the headers.

Everything runs with real processes: the traced server or client, a real downstream server
the agent does not trace, and the agent's BPF programs. On a kernel where injection is not
possible the agent must say so with its reason, and nothing may be changed on the wire.
"""
import socket
import subprocess
import sys
import time

from lib import Agent, Proc, curl, free_port, slow, wait_port
from test_inject import TP, TP_LINE, TRACE, received, sink

STALE_SERVER = r"""
import ctypes, socket, sys, threading, time
ctypes.CDLL(None).prctl(15, b"staleserver", 0, 0, 0)
port, down, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

def call(path):
    d = socket.create_connection(("127.0.0.1", down))
    d.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: sink\r\n\r\n")
    got = b""
    while not got.endswith(b"ok"):
        got += d.recv(4096)
    d.close()

ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port)); ls.listen(8)
keep = []
while True:
    c, _ = ls.accept()  # blocking: one request per thread, the case the context serves
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = c.recv(4096)
        if not data:
            break
        buf += data
    if not buf:  # wait_port's probe
        c.close()
        continue
    call(b"/during")  # while serving: continues the incoming trace
    if mode == "other-thread":
        # a worker answers; the connection stays open (keep-alive), so only the answer can
        # end the reading thread's context
        t = threading.Thread(target=c.sendall, args=(RESP,))
        t.start(); t.join()
        keep.append(c)
    else:
        # the client went away before any answer: the handler gives up and closes
        while c.recv(4096):
            pass
        c.close()
    time.sleep(0.3)
    call(b"/timer")  # later, on its own
"""


def agent_or_off(*args):
    """The agent with --repair=inject. Returns (agent, on); off only where the agent says
    why in its one line (a kernel without bpf_loop, or without a BPF-socket backend)."""
    a = Agent(*args, "--repair=inject")
    err = a.stderr()
    on = "traceparent injection on" in err
    if not on and "header injection is off: " not in err:
        a.kill()
        raise AssertionError(f"injection neither on nor off with a reason:\n{err[-2000:]}")
    return a, on


def run_stale(mode, client):
    sk, sport, d = sink()
    port = free_port()
    srv = Proc([sys.executable, "-c", STALE_SERVER, str(port), str(sport), mode])
    wait_port(port)
    agent, on = agent_or_off("--comm", "staleserver")
    try:
        client(port)
        deadline = time.time() + slow(10)
        while len(received(d, settle=0.1)) < 2 and time.time() < deadline:
            pass
        got = received(d)
        agent.stop()
    finally:
        agent.kill()
        srv.stop()
        sk.stop()
    assert len(got) == 2, got
    during, timer = got
    assert during.startswith(b"GET /during ") and timer.startswith(b"GET /timer "), got
    if not on:
        assert b"traceparent" not in during + timer, got
        return
    m_during, m_timer = TP_LINE.search(during), TP_LINE.search(timer)
    assert m_during and m_timer, got
    assert m_during.group(1).decode() == TRACE  # the context works while the request runs
    assert m_timer.group(1).decode() != TRACE, timer  # ... and not after it


def curl_keepalive_then_wait(port):
    """curl gets its answer and closes; the server keeps its end open (CLOSE_WAIT)."""
    assert curl("-H", f"traceparent: {TP}", f"http://127.0.0.1:{port}/front").stdout == b"200"


def client_gone(port):
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(f"GET /front HTTP/1.1\r\nHost: app\r\ntraceparent: {TP}\r\n\r\n".encode())
        time.sleep(0.1)


def test_inject_no_stale_context_after_answer_by_another_thread():
    """Before: the context of the thread that read the request was cleared only when that
    same thread wrote a response; a worker's answer left it, and the reader's timer call
    carried the old trace id (forever, on every host downstream)."""
    run_stale("other-thread", curl_keepalive_then_wait)


def test_inject_no_stale_context_after_client_gone():
    """Before: a request never answered (the client closed, the handler gave up) left its
    context in place for good."""
    run_stale("client-gone", client_gone)


ECHO_SERVER = r"""
import ctypes, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
ctypes.CDLL(None).prctl(15, b"echosrv", 0, 0, 0)

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):  # what trace context the request came with
        self.reply((self.headers.get("traceparent") or "none").encode())
    def do_POST(self):  # the body, exactly as framed
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if not size:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        self.reply(body)

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

# a body that is, byte for byte, a request head with its blank line
EVIL = b"GET /evil HTTP/1.1\r\nHost: inside-the-body\r\nX-Pad: 1\r\n\r\n"

BODY_CLIENT = r"""
import ctypes, socket, sys, time
ctypes.CDLL(None).prctl(15, b"injclient", 0, 0, 0)
port = int(sys.argv[1]); evil = bytes.fromhex(sys.argv[2])

def response(s):
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(65536)
    head, _, body = got.partition(b"\r\n\r\n")
    n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0][15:])
    while len(body) < n:
        body += s.recv(65536)
    return body

def writes(s, *parts):
    for p in parts:
        s.sendall(p)
        time.sleep(0.05)  # each its own message

s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

def step(*parts):  # each answer is printed as it comes: a test failure shows how far it got
    writes(s, *parts)
    print(response(s).hex(), flush=True)

# headers, then the body on its own
step(b"POST /a HTTP/1.1\r\nHost: e\r\nContent-Length: %d\r\n\r\n" % len(evil), evil)
# headers with the body's first bytes, then the rest (which looks like a request)
body = b"abcde" + evil
step(b"POST /b HTTP/1.1\r\nHost: e\r\ncontent-length:%d\r\n\r\nabcde" % len(body), evil)
# keep-alive: the next request starts at a boundary again
step(b"GET /second HTTP/1.1\r\nHost: e\r\n\r\n")
# chunked: a chunk that looks like a request; the framing is lost from here on
step(b"POST /c HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(evil),
     evil, b"\r\n0\r\n\r\n")
step(b"GET /after-chunked HTTP/1.1\r\nHost: e\r\n\r\n")
s.close()
"""


def test_inject_never_rewrites_a_body():
    """Before: any message that looked like a request head got 70 bytes inserted, a body
    written after its headers included, so the server read a body that was not sent and the
    connection's framing broke. Now the body arrives byte for byte; the next keep-alive
    request is still injected; after a chunked body (framing not followed) nothing more is
    injected on that connection, and the skipped requests are counted."""
    port = free_port()
    srv = Proc([sys.executable, "-c", ECHO_SERVER, str(port)])
    wait_port(port)
    agent, on = agent_or_off("--comm", "injclient")
    try:
        r = Proc([sys.executable, "-c", BODY_CLIENT, str(port), EVIL.hex()],
                 stdout=subprocess.PIPE)
        out, _ = r.p.communicate(timeout=slow(20))
        agent.stop()
    finally:
        agent.kill()
        srv.stop()
    got = [bytes.fromhex(x) for x in out.decode().split()]
    # the server read each body exactly as sent (a body with 70 more bytes: the first
    # answer differs, or the server misreads what follows and the client gets no answer)
    assert got[:1] == [EVIL], got
    assert got[1:2] == [b"abcde" + EVIL], got
    assert len(got) == 5 and got[3] == EVIL, got
    second, after = got[2], got[4]
    if not on:
        assert second == after == b"none", got
        return
    # injected where the framing says a request starts, with a fresh root
    assert TP_LINE.match(b"traceparent: " + second + b"\r\n"), second
    assert after == b"none", after
    assert agent.counters["bpf_injected"] == 4  # the heads of /a, /b, /second and /c
    assert agent.counters["bpf_inject_skip_unframed"] == 2  # /c's chunk, /after-chunked
