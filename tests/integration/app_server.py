#!/usr/bin/env python3
"""A small real HTTP/1.1 application server for the integration tests.

  GET /hop?to=PORT&propagate=MODE[&path=P][&calls=N][&status=S]
                                   calls http://127.0.0.1:PORT/P (default /leaf) while
                                   serving, then answers S (default 200); MODE:
                                   none (send no traceparent), child (same trace, new
                                   parent id: what an instrumented app does), forward
                                   (copy the incoming header), invalid (send garbage)
  GET /leaf                        200 "leaf"
  GET /slow?ms=N                   answers after N ms
  GET /chunked?n=N                 chunked response with N chunks
  GET /big?bytes=N                 Content-Length response of N bytes
  GET /status?code=N               empty response with that status
  POST /echo                       reads the body, answers its length
Keep-alive (HTTP/1.1), one thread per connection.
"""
import http.client
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_body(self, code, body, ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code not in (204, 304):
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        if u.path == "/hop":
            return self.hop(int(q["to"]), q.get("propagate", "none"), int(q.get("calls", "1")),
                            q.get("path", "/leaf?token=secret"), int(q.get("status", "200")))
        if u.path == "/slow":
            time.sleep(int(q.get("ms", "100")) / 1000)
            return self.send_body(200, b"slow")
        if u.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(q.get("n", "3"))):
                data = (b"chunk %d " % i) * 50
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        if u.path == "/big":
            n = int(q.get("bytes", "1000000"))
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            block = b"x" * 65536
            while n > 0:
                self.wfile.write(block[: min(n, len(block))])
                n -= len(block)
            return
        if u.path == "/status":
            return self.send_body(int(q.get("code", "200")), b"")
        return self.send_body(200, b"leaf")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self.send_body(200, str(len(body)).encode())

    def hop(self, port, mode, calls, path, status):
        incoming = self.headers.get("traceparent")
        statuses = []
        for _ in range(calls):
            headers = {}
            if mode == "child" and incoming:
                parts = incoming.split("-")
                headers["traceparent"] = "-".join([parts[0], parts[1], os.urandom(8).hex(), parts[3]])
            elif mode == "forward" and incoming:
                headers["traceparent"] = incoming
            elif mode == "invalid":
                headers["traceparent"] = "00-zzzz-not-valid"
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            r.read()
            statuses.append(r.status)
            conn.close()
        self.send_body(status, (" ".join(map(str, statuses))).encode())


if __name__ == "__main__":
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
