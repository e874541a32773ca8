#!/usr/bin/env python3
"""app_server.py's application behind TLS (Python's ssl module, the system's libssl).

  tls_server.py PORT CERT KEY [--downstream-tls]

Same endpoints as app_server.py. With --downstream-tls, /hop calls its downstream over
HTTPS too (certificate not verified: the tests use self-signed ones).
"""
import http.client
import os
import ssl
import sys
from http.server import ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import app_server  # noqa: E402


def main():
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    if "--downstream-tls" in sys.argv[4:]:
        client_ctx = ssl._create_unverified_context()

        class DownstreamHTTPS(http.client.HTTPSConnection):
            def __init__(self, host, port=None, **kw):
                super().__init__(host, port, context=client_ctx, **kw)

        # app_server's /hop opens its downstream connection through this name
        http.client.HTTPConnection = DownstreamHTTPS
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", port), app_server.Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
