#!/usr/bin/python3
"""Middle service of the runtime ground-truth tests: a pre-fork server (protocol in
node_mid.js). The master binds the socket and forks WORKERS workers; each accept()s on the
shared socket and serves one connection at a time with blocking I/O (HTTP/1.0, one request
per connection), calling the leaf with http.client. Each worker also runs a timer thread,
started before it serves anything, that calls /timer/<k> every TIMER_MS * WORKERS."""
import http.client
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

PORT, LEAF, TIMER_MS, WORKERS = (int(a) for a in sys.argv[1:5])


def call_leaf(path, headers):
    c = http.client.HTTPConnection("127.0.0.1", LEAF, timeout=30)
    try:
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        u = urlparse(self.path)
        parts = u.path.split("/")
        if len(parts) != 4 or parts[1] != "work" or parts[2] not in ("fwd", "drop"):
            self.send_error(404)
            return
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        n, pause = int(q.get("n", "1")), int(q.get("sleep", "0"))
        headers = {}
        if parts[2] == "fwd" and self.headers.get("traceparent"):
            headers["traceparent"] = self.headers["traceparent"]
        for i in range(n):
            if pause and i == n - 1:
                time.sleep(pause / 1000)
            call_leaf(f"/leaf/{parts[3]}", headers)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def timer(period):
    k = 0
    while True:
        time.sleep(period)
        k += 1
        try:
            call_leaf(f"/timer/{os.getpid()}-{k}", {})
        except OSError:
            pass


def worker(lsock):
    threading.Thread(target=timer, args=(TIMER_MS * WORKERS / 1000,), daemon=True).start()
    while True:
        conn, addr = lsock.accept()
        try:
            Handler(conn, addr, None)
        except OSError:
            pass
        finally:
            conn.close()


def main():
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", PORT))
    lsock.listen(128)
    children = []
    for _ in range(WORKERS):
        pid = os.fork()
        if pid == 0:
            worker(lsock)
            os._exit(0)
        children.append(pid)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        while True:
            os.wait()
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    main()
