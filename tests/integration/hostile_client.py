#!/usr/bin/env python3
"""Sends raw HTTP/1.1 requests, one per connection, to 127.0.0.1:PORT and reads each
response: request-targets (and Host values) that a client or a proxy may send and that carry
secrets. The request heads are read from FILE as JSON: a list of strings. Each goes second on
its connection, after a plain "GET /" answered in full: BPF only copies the first I/O of a
connection when its target starts as usual, later ones go whole to the agent's parser. With
--first, each head goes first on its connection, to test that BPF classification.

  hostile_client.py [--first] PORT FILE
"""
import json
import socket
import sys


def read_response(s):
    got = b""
    while b"\r\n\r\n" not in got:
        data = s.recv(65536)
        if not data:
            return got
        got += data
    head, _, body = got.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
            while len(body) < n:
                data = s.recv(65536)
                if not data:
                    break
                body += data
    return got


def main():
    first = sys.argv[1] == "--first"
    if first:
        del sys.argv[1]
    port, path = int(sys.argv[1]), sys.argv[2]
    with open(path) as f:
        heads = json.load(f)
    for head in heads:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            if not first:
                s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                read_response(s)
            s.sendall(head.encode("latin-1"))
            read_response(s)


if __name__ == "__main__":
    main()
