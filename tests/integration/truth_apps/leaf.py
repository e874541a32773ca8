#!/usr/bin/env python3
"""The leaf service of the runtime ground-truth tests (test_runtime_truth.py).

  GET <any path>[?sleep=MS]   200 "leaf <path>", after MS milliseconds when asked

HTTP/1.1 keep-alive, one thread per connection: the middle services and proxies call it
at /leaf/<id>, /timer/<k>, /timer/hc (health checks) and, behind a proxy,
/work/<mode>/<id>.
"""
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        if "sleep" in q:
            time.sleep(int(q["sleep"][0]) / 1000)
        body = f"leaf {u.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET
    do_OPTIONS = do_GET


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
