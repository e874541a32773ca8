"""An HTTP server that logs while it serves, for test_capture_logs: per request a line to
stdout, one to stderr (besides http.server's access log) and one to a log file; /flood logs
a huge line and many lines; a background thread logs while serving nothing.

usage: log_server.py PORT LOGFILE [TAG]   (TAG begins every line this server writes)"""
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
LOG = open(sys.argv[2], "a", buffering=1)
TAG = sys.argv[3] if len(sys.argv) > 3 else "app"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        n = self.path.rsplit("/", 1)[-1].split("?")[0]
        if self.path.startswith("/flood"):
            print(f"{TAG} HUGE " + "x" * 20000, flush=True)
            for i in range(100):
                print(f"{TAG} flood line {i} of request {n}", flush=True)
        elif self.path.startswith("/req"):
            print(f"{TAG} stdout line for request {n}: fetching "
                  f"https://alice:pw-SECRET{n}@backend.example/api?token=SECRET{n}&x=1 "
                  f"Authorization: Bearer SECRET{n}b", flush=True)
            # several arguments: Python may write each, and the newline, on its own
            print(f"{TAG} db", "password=", f"SECRET{n}e", "for request", n, flush=True)
            sys.stderr.write(f"{TAG} stderr line for request {n} password=SECRET{n}c\n")
            sys.stderr.flush()
            LOG.write(f"{TAG} file line for request {n} api_key=SECRET{n}d\n")
        time.sleep(0.01)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def background():
    while True:
        print(f"{TAG} background tick, serving nothing", flush=True)
        time.sleep(0.02)


threading.Thread(target=background, daemon=True).start()
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
