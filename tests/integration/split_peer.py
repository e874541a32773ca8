#!/usr/bin/env python3
"""Both ends of an HTTP/1.1 conversation whose every read and write is chosen: each request
and response is moved by a planned list of syscalls (send, sendmsg or writev of planned
pieces; recv, recvmsg or readv of planned sizes), so a test knows exactly how the bytes were
cut on both sides of the socket, whatever the timing.

  split_peer.py server PORT PLAN [CERTDIR]      serve the plan's connections, one after the other
  split_peer.py client PORT PLAN OUT [CERTDIR]  run them; write the exchanges done to OUT (JSON)
  split_peer.py count PLAN                      print how many exchanges the plan has

With CERTDIR (cert.pem, key.pem) the connections are TLS (Python's ssl, the system's
libssl): each send is one SSL_write, each recv one SSL_read or more (plans of send and
recv only).

Plans (both ends compute the same one):
  splits   every request split in two at every byte of its request line (each method), and
           at every byte of a whole 1.5 KB header block; the response split at the same
           place; both ends read in the pieces the other end wrote (Go's net/http server
           reads 1 byte ahead, then the rest)
  pieces   the request line written byte by byte, then each header line on its own, the
           empty line split in two, a body after it; read in the same pieces
  iovecs   requests and responses written with sendmsg/writev of 1..40 segments (and the
           1024 a syscall may have) of varied sizes, some empty, or one per header line as
           Apache's mod_proxy_http does; read with recvmsg/readv into other sizes
"""
import json
import os
import random
import socket
import sys

PAD = b"X-Pad: " + b"p" * 1500 + b"\r\n"  # header blocks larger than one small read
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"]
EXCHANGES_PER_CONN = 400


class Exchange:
    """One request and its response, each with the syscalls that write and read it."""

    def __init__(self, i, method, body=b"", extra_lines=()):
        self.i = i
        self.method = method
        self.path = "/x/%d" % i
        self.trace_id = "%032x" % (0x5eed0000000000000000000000000000 + i)
        self.parent_id = "%016x" % (0x1000000000000000 + i)
        self.status = (200, 201, 404, 503)[i % 4]
        head_lines = [
            b"Host: split.test\r\n", b"User-Agent: split-peer/1\r\n",
            b"traceparent: 00-%s-%s-01\r\n" % (self.trace_id.encode(), self.parent_id.encode()),
            *extra_lines, PAD]
        if body:
            head_lines.append(b"Content-Length: %d\r\n" % len(body))
        self.request_line = b"%s %s HTTP/1.1\r\n" % (method.encode(), self.path.encode())
        self.req = self.request_line + b"".join(head_lines) + b"\r\n" + body
        self.req_lines = [self.request_line, *head_lines, b"\r\n"]
        resp_body = b"" if method == "HEAD" else b"answer %d" % i
        self.resp = (b"HTTP/1.1 %d Planned\r\nContent-Length: %d\r\nX-Pad: %s\r\n\r\n"
                     % (self.status, len(b"answer %d" % i), b"r" * 1200)) + resp_body
        self.req_write = [("send", [self.req])]
        self.req_read = [("recv", [len(self.req)])]
        self.resp_write = [("send", [self.resp])]
        self.resp_read = [("recv", [len(self.resp)])]

    def summary(self):
        return {"method": self.method, "path": self.path, "status": self.status,
                "trace_id": self.trace_id, "parent_id": self.parent_id}


def cut(data, sizes):
    out, at = [], 0
    for n in sizes:
        out.append(data[at:at + n])
        at += n
    assert at == len(data), (at, len(data))
    return out


def in_two(data, p):
    """One send per piece, one recv per piece: data cut at p (clamped inside it)."""
    p = max(1, min(p, len(data) - 1))
    return [("send", [data[:p]]), ("send", [data[p:]])], [("recv", [p]), ("recv", [len(data) - p])]


def random_sizes(rng, total, k, empty):
    """k sizes adding up to total, varied; some empty when empty."""
    cuts = sorted(rng.sample(range(1, total), k - 1)) if k > 1 else []
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, total])]
    if empty and k > 2:
        sizes[rng.randrange(1, k - 1)] = 0
        sizes[-1] = total - sum(sizes[:-1])
    return sizes


def plan_splits():
    out = []
    for method in METHODS:
        line_len = len(Exchange(len(out), method).request_line)
        for p in range(1, line_len + 1):
            ex = Exchange(len(out), method,
                          body=b"body" if method in ("POST", "PUT", "PATCH") else b"")
            ex.req_write, ex.req_read = in_two(ex.req, p)
            ex.resp_write, ex.resp_read = in_two(ex.resp, p)
            out.append(ex)
    head_len = len(Exchange(0, "GET").req)
    for p in range(1, head_len):
        ex = Exchange(len(out), "GET")
        ex.req_write, ex.req_read = in_two(ex.req, p)
        ex.resp_write, ex.resp_read = in_two(ex.resp, p % len(ex.resp))
        out.append(ex)
    return out


def plan_pieces():
    out = []
    for n in range(40):
        body = b"b" * 30000 if n % 2 else b""
        ex = Exchange(n, METHODS[n % len(METHODS)] if not body else "POST", body=body)
        pieces = [bytes([c]) for c in ex.request_line]
        pieces += ex.req_lines[1:-1]
        pieces += [b"\r", b"\n"] if n % 3 else [b"\r\n"]
        if body:
            pieces.append(body)
        assert b"".join(pieces) == ex.req
        ex.req_write = [("send", [p]) for p in pieces]
        ex.req_read = [("recv", [len(p)]) for p in pieces]
        out.append(ex)
    return out


def plan_iovecs():
    out = []
    for k in [*range(1, 41), 1024]:
        for variant in ("cuts", "lines"):
            rng = random.Random(k * 2 + (variant == "lines"))
            if variant == "lines":
                if k < 6 or k > 40:
                    continue
                # one segment per line, as mod_proxy_http writes: k - 2 header lines
                extra = [b"X-H%d: %s\r\n" % (j, b"v" * (j * 7 % 50)) for j in range(k - 6)]
                ex = Exchange(len(out), "GET", extra_lines=extra)
                req_segs = ex.req_lines
            else:
                ex = Exchange(len(out), "POST" if k % 3 == 0 else "GET",
                              body=b"q" * 100 if k % 3 == 0 else b"")
                req_segs = cut(ex.req, random_sizes(rng, len(ex.req), k, empty=k % 5 == 0))
            assert len(req_segs) == k and b"".join(req_segs) == ex.req
            style = "sendmsg" if k % 2 == 0 else "writev"
            ex.req_write = [(style, req_segs)]
            read_k = min(k + 3, 1024)
            ex.req_read = [("recvmsg" if k % 2 else "readv",
                            random_sizes(rng, len(ex.req), read_k, empty=False))]
            resp_k = min(k, len(ex.resp) - 1)
            ex.resp_write = [(style, cut(ex.resp, random_sizes(rng, len(ex.resp), resp_k,
                                                               empty=k % 4 == 0)))]
            ex.resp_read = [("recvmsg" if k % 2 == 0 else "readv",
                             random_sizes(rng, len(ex.resp), min(k + 1, 1024), empty=False))]
            out.append(ex)
    return out


PLANS = {"splits": plan_splits, "pieces": plan_pieces, "iovecs": plan_iovecs}


def do_write(s, ops):
    for style, bufs in ops:
        if style == "send":
            assert len(bufs) == 1
            s.sendall(bufs[0])
            continue
        total = sum(len(b) for b in bufs)
        n = s.sendmsg(bufs) if style == "sendmsg" else os.writev(s.fileno(), bufs)
        assert n == total, f"{style} moved {n} of {total} bytes"


def recv_exactly(s, n):
    """n bytes in one recv, or (TLS, which takes no MSG_WAITALL) as few as they come in."""
    if not hasattr(s, "version"):
        return s.recv(n, socket.MSG_WAITALL)
    data = b""
    while len(data) < n:
        more = s.recv(n - len(data))
        if not more:
            break
        data += more
    return data


def do_read(s, ops):
    got = b""
    for style, sizes in ops:
        if style == "recv":
            data = recv_exactly(s, sizes[0])
            assert len(data) == sizes[0], (len(data), sizes[0])
            got += data
            continue
        bufs = [bytearray(n) for n in sizes]
        if style == "recvmsg":
            n = s.recvmsg_into(bufs, 0, socket.MSG_WAITALL)[0]
            assert n == sum(sizes), (n, sum(sizes))
            got += b"".join(bufs)
        else:  # readv returns what has come: again into what is left of the buffers
            data, want = b"", sum(sizes)
            while len(data) < want:
                left, at = [], 0
                for n in sizes:
                    if at + n > len(data):
                        left.append(at + n - max(at, len(data)))
                    at += n
                bufs = [bytearray(n) for n in left]
                n = os.readv(s.fileno(), bufs)
                if n == 0:
                    raise SystemExit("connection closed early")
                data += b"".join(bufs)[:n]
            got += data
    return got


def connections(plan):
    return [plan[i:i + EXCHANGES_PER_CONN] for i in range(0, len(plan), EXCHANGES_PER_CONN)]


def tls_context(certdir, server):
    import ssl
    if not server:
        return ssl._create_unverified_context()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(certdir, "cert.pem"), os.path.join(certdir, "key.pem"))
    return ctx


def serve(port, plan, certdir):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(4)
    ctx = tls_context(certdir, True) if certdir else None
    for conn in connections(plan):
        s, _ = ls.accept()
        # a connection closed unused is someone waiting for the port to open
        while not s.recv(1, socket.MSG_PEEK):
            s.close()
            s, _ = ls.accept()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ctx:
            s = ctx.wrap_socket(s, server_side=True)
        for ex in conn:
            req = do_read(s, ex.req_read)
            assert req == ex.req, f"exchange {ex.i}: request differs"
            do_write(s, ex.resp_write)
        assert s.recv(1) == b""
        s.close()


def run_client(port, plan, out, certdir):
    done = []
    ctx = tls_context(certdir, False) if certdir else None
    for conn in connections(plan):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ctx:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        for ex in conn:
            do_write(s, ex.req_write)
            assert do_read(s, ex.resp_read) == ex.resp, f"exchange {ex.i}: response differs"
            done.append(ex.summary())
        s.close()
    with open(out, "w") as f:
        json.dump(done, f)


def main():
    mode = sys.argv[1]
    if mode == "count":
        print(len(PLANS[sys.argv[2]]()))
        return
    port, plan = int(sys.argv[2]), PLANS[sys.argv[3]]()
    if mode == "server":
        serve(port, plan, sys.argv[4] if len(sys.argv) > 4 else None)
    else:
        run_client(port, plan, sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else None)


if __name__ == "__main__":
    main()
