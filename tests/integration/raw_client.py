#!/usr/bin/env python3
"""Raw-socket HTTP/1.1 client for the injection tests. Each connection's writes, exactly as
passed to send(), go to OUT as JSON: [[hex of write, ...] per connection].

  raw_client.py PORT OUT

Runs as comm "injclient" so the agent can select it alone (--comm injclient).
"""
import ctypes
import json
import socket
import sys


def set_comm(name):
    ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)


def read_responses(s, n):
    got = b""
    while got.count(b"\r\n\r\nok") < n:
        data = s.recv(65536)
        if not data:
            raise SystemExit("connection closed early")
        got += data


def req(path, extra=b"", body=b""):
    head = b"GET " if not body else b"POST "
    h = head + path + b" HTTP/1.1\r\nHost: sink\r\nUser-Agent: raw/1\r\n" + extra
    if body:
        h += b"Content-Length: %d\r\n" % len(body)
    return h + b"\r\n" + body


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    set_comm("injclient")
    conns = []

    def conn(writes_then_reads):
        s = socket.create_connection(("127.0.0.1", port))
        sent = []
        for writes, nresp in writes_then_reads:
            for w in writes:
                s.sendall(w)
                sent.append(w.hex())
            read_responses(s, nresp)
        s.close()
        conns.append(sent)

    # keep-alive: three requests one after the other, a POST with a body among them
    conn([([req(b"/ka/1")], 1), ([req(b"/ka/2", body=b"a=1&b=2")], 1),
          ([req(b"/ka/3")], 1)])
    # pipelined: three requests written before any response is read
    conn([([req(b"/pipe/1"), req(b"/pipe/2"), req(b"/pipe/3", body=b"x" * 300)], 3)])
    # already carries a traceparent (any case): left untouched
    conn([([req(b"/has-tp",
                b"TraceParent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n")], 1)])
    # header block split across two writes: left untouched
    r = req(b"/split", b"X-Pad: 1\r\n")
    conn([([r[:30], r[30:]], 1)])
    with open(out, "w") as f:
        json.dump(conns, f)


if __name__ == "__main__":
    main()
