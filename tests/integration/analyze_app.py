#!/usr/bin/env python3
"""A real HTTP/1.1 service for the trace analysis test (test_analyze.py): each route shows
one pattern `hoptrace analyze` must find. It sends no traceparent (the agent's
--repair=stitch joins the callee's span to the call), one connection per call.

  GET /nplus1?to=PORT&n=N          N calls, one after another, to /item/1 .. /item/N
  GET /fanout?to=P1,P2,P3          one call to /work on each port, one after another
  GET /chain?to=PORT&fail=CODE     calls /chain or /fail downstream (path=), answers CODE
                                   when that call failed, else 200
  GET /work?ms=N                   answers after N ms (default 0)
  GET /fail                        500
  GET /item/ID                     200
"""
import http.client
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, code, body=b"ok"):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        if u.path == "/nplus1":
            statuses = [get(int(q["to"]), f"/item/{i}") for i in range(1, int(q.get("n", "6")) + 1)]
            return self.answer(200, " ".join(map(str, statuses)).encode())
        if u.path == "/fanout":
            statuses = []
            for spec in q["to"].split(","):
                port, _, ms = spec.partition(":")
                statuses.append(get(int(port), f"/work?ms={ms or 0}"))
            return self.answer(200, " ".join(map(str, statuses)).encode())
        if u.path == "/chain":
            status = get(int(q["to"]), q.get("path", "/fail"))
            return self.answer(int(q.get("fail", "502")) if status >= 500 else 200)
        if u.path == "/work":
            time.sleep(int(q.get("ms", "0")) / 1000)
            return self.answer(200)
        if u.path == "/fail":
            return self.answer(500, b"failed")
        if u.path.startswith("/item/"):
            return self.answer(200)
        return self.answer(404, b"no such route")


if __name__ == "__main__":
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
