#!/usr/bin/env python3
"""An OTLP/HTTP JSON receiver that writes each request body as one line of a file, exactly as
the OpenTelemetry Collector's file exporter writes what it receives (one JSON-encoded
ExportTraceServiceRequest a line), for test_sources.py.

    python3 otlp_file_receiver.py PORT FILE

POST /v1/traces with Content-Type application/json: the body (which must hold no newline:
JSON encoders write none outside strings, where it is escaped) is appended with a '\n', and
the answer is an empty ExportTraceServiceResponse ({}). Anything else: 404 or 415.
"""
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()  # one line a request, never two interleaved


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b""
        while True:  # RFC 9112 section 7.1: size line, data, CRLF; a zero size ends it
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                return body
            body += self.rfile.read(size)
            self.rfile.readline()

    def do_POST(self):
        body = self.read_body()
        if self.path != "/v1/traces":
            return self.answer(404, b"{}")
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            return self.answer(415, b"{}")
        if b"\n" in body:
            return self.answer(400, b'{"message":"a newline in the body"}')
        with LOCK, open(sys.argv[2], "ab") as f:
            f.write(body + b"\n")
        self.answer(200, b"{}")


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
server.daemon_threads = True
server.serve_forever()
