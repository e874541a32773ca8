#!/usr/bin/env python3
"""A raw HTTP/1.1 sink for the injection tests: records every byte each connection
received, byte for byte, in OUT_DIR/<n>.bin, and answers each request with 200 "ok".

  raw_sink.py PORT OUT_DIR [COMM]

COMM (default rawsink) becomes the process's name, so an agent selecting by --comm does
not trace it: it stands for a downstream service the agent does not see.
"""
import ctypes
import os
import socket
import sys
import threading

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


def set_comm(name):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def serve(conn, path):
    buf = b""
    with conn, open(path, "wb") as rec:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            rec.write(data)
            rec.flush()
            buf += data
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buf[:end].decode("latin-1").lower()
                clen = 0
                for line in head.split("\r\n")[1:]:
                    if line.startswith("content-length:"):
                        clen = int(line.split(":", 1)[1])
                if len(buf) < end + 4 + clen:
                    break
                buf = buf[end + 4 + clen:]
                conn.sendall(RESPONSE)


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    set_comm(sys.argv[3] if len(sys.argv) > 3 else "rawsink")
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(64)
    n = 0
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve, args=(conn, os.path.join(out, "%d.bin" % n)),
                         daemon=True).start()
        n += 1


if __name__ == "__main__":
    main()
