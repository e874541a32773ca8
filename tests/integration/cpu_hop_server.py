"""An HTTP/1.1 server that reads each request on the last CPU and writes its response on
CPU 0 (it moves itself in between), so the two events land in different per-CPU rings, the
later one in the ring the agent reads first. Usage: cpu_hop_server.py PORT"""
import os
import socket
import sys

BODY = b"hop\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
            % len(BODY)) + BODY
READ_CPU = max(os.sched_getaffinity(0))
WRITE_CPU = min(os.sched_getaffinity(0))


def serve(conn):
    buf = b""
    while True:
        os.sched_setaffinity(0, {READ_CPU})
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(4096)
            if not chunk:
                return
            buf += chunk
        buf = buf[buf.index(b"\r\n\r\n") + 4:]
        os.sched_setaffinity(0, {WRITE_CPU})
        conn.sendall(RESPONSE)


def main():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", int(sys.argv[1])))
    ls.listen(16)
    while True:
        conn, _ = ls.accept()
        with conn:
            serve(conn)


main()
