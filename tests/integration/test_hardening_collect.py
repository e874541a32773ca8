"""hoptrace-collect under attack (issue 11): it may listen on 0.0.0.0, so a client must not
be able to hold its connection slots, make it buffer or unpack without bound, or make it
parse a body again on every recv. Each test starts the real receiver, attacks it over real
sockets, and checks that a legitimate client is still served, that the receiver's memory
(VmHWM from /proc) stays under a bound, and that the attack got its HTTP status and was
counted (the exit line's counters).

The memory tests run the release build (ASan's shadow memory and quarantine would swamp
the numbers) under an address-space limit, so that a receiver without the bounds fails the
test instead of taking the machine's memory.
"""
import os
import re
import resource
import signal
import socket
import subprocess
import tempfile
import threading
import time
import zlib

from lib import BUILD, read_lines

MiB = 1 << 20


# ---- OTLP requests, encoded by hand (field numbers from proto/opentelemetry) ---------------

def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def field(num, payload):
    """A length-delimited field."""
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def span(name=b"legit", attrs=b""):
    return (field(1, b"\x11" * 16) + field(2, b"\x22" * 8) + field(5, name)
            + varint(6 << 3) + b"\x02"  # kind SERVER
            + varint(7 << 3 | 1) + (1000).to_bytes(8, "little")
            + varint(8 << 3 | 1) + (2000).to_bytes(8, "little") + attrs)


def request_around(span_bytes_len):
    """The bytes before a span's own bytes in Request{ResourceSpans{ScopeSpans{Span}}}, for
    a span of span_bytes_len bytes (so that a huge span can be streamed, not built)."""
    span_head = varint(2 << 3 | 2) + varint(span_bytes_len)
    scope_len = len(span_head) + span_bytes_len
    scope_head = varint(2 << 3 | 2) + varint(scope_len)
    rs_len = len(scope_head) + scope_len
    return varint(1 << 3 | 2) + varint(rs_len) + scope_head + span_head


def export_request(name=b"legit", attrs=b""):
    s = span(name, attrs)
    return request_around(len(s)) + s


def attr(key, value):
    """KeyValue{key, AnyValue{string_value}} as Span.attributes (field 9)."""
    return field(9, field(1, key) + field(2, field(1, value)))


# An empty KeyValue as a span attribute: 2 bytes on the wire, some 60 once unpacked.
EMPTY_ATTR = field(9, b"")


def gzip_bomb(n_empty_attrs):
    """A gzip body of a request whose one span has n empty attributes, compressed as it
    is generated (a bomb of hundreds of MiB is a few hundred KiB)."""
    head = span(b"bomb")
    total = len(head) + 2 * n_empty_attrs
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    out = [z.compress(request_around(total) + head)]
    block = EMPTY_ATTR * (MiB // 2)
    left = n_empty_attrs
    while left:
        n = min(left, MiB // 2)
        out.append(z.compress(block if n == MiB // 2 else EMPTY_ATTR * n))
        left -= n
    out.append(z.flush())
    return b"".join(out)


# ---- the receiver and its clients -------------------------------------------------------

EXIT_RE = re.compile(
    r"exit: (\d+) connections, (\d+) requests, (\d+) spans, (\d+) bad requests, (\d+) "
    r"injected failures, (\d+) timed out, (\d+) idle closed, (\d+) evicted, (\d+) too "
    r"large, (\d+) busy")
EXIT_KEYS = ("connections", "requests", "spans", "bad_requests", "faults", "timeouts",
             "idle_closed", "evicted", "too_large", "busy")


class Collector:
    """hoptrace-collect on a free port. release: the release build, under an address-space
    limit of as_limit bytes; else the ASan build."""

    def __init__(self, *args, release=False, as_limit=1 << 30):
        name = "hoptrace-collect"
        path = os.path.join(BUILD, name) if release else os.path.join(BUILD, "san", name)
        assert os.access(path, os.X_OK), f"{path} is not built (make all asan)"
        self.dir = tempfile.mkdtemp(prefix="hoptrace-hard-collect-")
        self.out_path = os.path.join(self.dir, "spans.jsonl")
        self.err_path = os.path.join(self.dir, "err")

        def limit():
            if release:
                resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))

        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
        with open(self.err_path, "w") as err:
            self.p = subprocess.Popen([path, "--port", "0", "-o", self.out_path, *args],
                                      stdout=subprocess.DEVNULL, stderr=err, env=env,
                                      start_new_session=True, preexec_fn=limit)
        deadline = time.time() + 10
        while time.time() < deadline:
            m = re.search(r"listening on \S+ port (\d+)", self.log())
            if m:
                self.port = int(m[1])
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"hoptrace-collect did not start:\n{self.log()[-2000:]}")

    def log(self):
        """Its log so far: whole lines only while it runs."""
        return read_lines(self.err_path, whole=self.p.poll() is not None)

    def status(self, key):
        """A /proc/PID/status value in bytes (VmRSS, VmHWM)."""
        with open(f"/proc/{self.p.pid}/status") as f:
            m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
        return int(m[1]) * 1024

    def cpu_seconds(self):
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def spans(self):
        try:
            with open(self.out_path) as f:
                return [line for line in f.read().split("\n") if line]
        except FileNotFoundError:
            return []

    def stop(self):
        """SIGTERM; the exit line's counters. It must exit clean (ASan: no leak, no error)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise AssertionError("hoptrace-collect did not exit on SIGTERM")
        text = self.log()
        assert rc == 0, f"hoptrace-collect exited with {rc}:\n{text[-3000:]}"
        assert "Sanitizer" not in text and "runtime error" not in text, text[-4000:]
        m = EXIT_RE.search(text)
        assert m, f"no exit counters in:\n{text[-2000:]}"
        return dict(zip(EXIT_KEYS, map(int, m.groups())))

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()  # a failed test leaves no receiver behind


def head(length=None, extra=b""):
    h = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
         + extra)
    if length is not None:
        h += b"Content-Length: %d\r\n" % length
    return h + b"\r\n"


def read_answer(s, timeout=5.0):
    """The status of the HTTP answer on s; None if the connection ended without one."""
    s.settimeout(timeout)
    buf = b""
    try:
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                return None
            buf += chunk
    except (ConnectionResetError, socket.timeout):
        return None
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", buf)
    assert m, buf[:200]
    return int(m[1])


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def post(port, body, extra=b"", timeout=5.0):
    """One request on a new connection: its answer's status (None: no answer)."""
    with connect(port, timeout) as s:
        s.sendall(head(len(body), extra) + body)
        return read_answer(s, timeout)


def assert_serves(col, n=1):
    """A legitimate client gets its span written, n times over."""
    before = len(col.spans())
    for i in range(n):
        t0 = time.time()
        status = post(col.port, export_request(b"legit-%d" % i))
        assert status == 200, f"a legitimate request got {status} " \
            f"after {time.time() - t0:.1f} s:\n{col.log()[-2000:]}"
    deadline = time.time() + 5
    while len(col.spans()) < before + n and time.time() < deadline:
        time.sleep(0.02)
    assert len(col.spans()) == before + n


def answered(socks, status, want=None, wait=3.0):
    """How many of the sockets were answered with status (then closed). With want, keep
    reading for up to wait seconds until that many were: an answer written by the
    receiver may still be on its way to the socket under load."""
    n, pending = 0, list(socks)
    for s in pending:
        s.setblocking(False)
    deadline = time.time() + wait
    while True:
        left = []
        for s in pending:
            try:
                data = s.recv(64)
            except BlockingIOError:
                left.append(s)
                continue
            except ConnectionResetError:
                continue
            n += data.startswith(b"HTTP/1.1 %d " % status)
        pending = left
        if want is None or n >= want or not pending or time.time() > deadline:
            return n
        time.sleep(0.05)


# ---- the tests -------------------------------------------------------------------------

def test_collect_slots_held_by_slow_and_idle_clients():
    """200 connections that send half a head, or nothing, and hold on: with 128 slots and
    no eviction the receiver closed every new connection at once, so no one else was served.
    Now a new connection evicts the one that has waited longest (a 408 if it had begun a
    request)."""
    with Collector() as col:
        partial, idle = [], []
        try:
            for _ in range(150):
                s = connect(col.port)
                s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
                partial.append(s)
            for _ in range(50):
                idle.append(connect(col.port))
            time.sleep(0.3)
            assert_serves(col, 3)
            time.sleep(0.2)
            got_408 = answered(partial, 408, want=150 + 50 - 128)
        finally:
            for s in partial + idle:
                s.close()
        c = col.stop()
        assert c["evicted"] >= 150 + 50 - 128, c
        # the connections beyond the 128th evicted the oldest partial heads, each with a 408
        assert got_408 >= 150 + 50 - 128, (got_408, c)
        assert c["spans"] == 3, c


def test_collect_request_and_idle_timeouts():
    """A head that never ends, one that trickles in a byte at a time, and a connection that
    sends nothing: the first two get a 408 once --request-timeout has passed since their
    first byte (trickling does not extend it), the idle one is closed after --idle-timeout."""
    with Collector("--request-timeout", "1", "--idle-timeout", "1.5") as col:
        try:
            stuck, drip, idle = connect(col.port), connect(col.port), connect(col.port)
            stuck.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
            slow_head = head(10)
            t0 = time.time()
            for i in range(12):  # 2.4 s of one byte every 0.2 s, never a whole head
                try:
                    drip.send(slow_head[i:i + 1])
                except (BrokenPipeError, ConnectionResetError):
                    break
                time.sleep(0.2)
            assert read_answer(stuck, 1) == 408
            assert read_answer(drip, 1) == 408
            idle.settimeout(2)
            assert idle.recv(64) == b"", "the idle connection was not closed"
            assert time.time() - t0 < 4
            assert_serves(col)
        finally:
            for s in (stuck, drip, idle):
                s.close()
        c = col.stop()
        assert c["timeouts"] == 2, c
        assert c["idle_closed"] >= 1, c


def test_collect_body_cap():
    """Bodies past --max-body (now 8 MiB by default, was 64) are a 413: a Content-Length
    one at once, before any of it is read; a chunked one as soon as it passes the cap."""
    with Collector() as col:
        with connect(col.port) as s:
            s.sendall(head(9 * MiB))
            status = read_answer(s)
            assert status == 413, status

        with connect(col.port) as s:
            s.sendall(head(extra=b"Transfer-Encoding: chunked\r\n"))

            def stream():
                try:
                    for _ in range(12):
                        s.sendall(b"100000\r\n" + b"\0" * MiB + b"\r\n")
                    s.sendall(b"0\r\n\r\n")
                except OSError:
                    pass  # refused part-way, as it should be
            t = threading.Thread(target=stream)
            t.start()
            status = read_answer(s, 10)
            t.join(10)
            assert status == 413, status
        assert_serves(col)
        c = col.stop()
        assert c["too_large"] == 2, c


def test_collect_buffers_bounded_over_connections():
    """24 clients each send 6 MiB of a 7 MiB body and stop: each within --max-body, but
    together 144 MiB of buffers. With --max-buffered (64 MiB) the connection holding the most
    is answered 503 and dropped when a buffer would pass it, so memory stays bounded and a
    small request still gets through."""
    with Collector(release=True) as col:
        socks = [connect(col.port, 15) for _ in range(24)]
        try:
            def attack(s):
                try:
                    s.sendall(head(7 * MiB) + b"\0" * (6 * MiB))
                except OSError:
                    pass  # shed part-way
            threads = [threading.Thread(target=attack, args=(s,)) for s in socks]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
            assert_serves(col)
            hwm = col.status("VmHWM")
            print(f"  receiver VmHWM {hwm / MiB:.0f} MiB")
            shed = answered(socks, 503)
        finally:
            for s in socks:
                s.close()
        assert hwm < 100 * MiB, f"VmHWM {hwm / MiB:.0f} MiB"
        c = col.stop()
        assert c["busy"] >= 24 - 64 // 8, c
        assert shed >= 1, c


def test_collect_gzip_bomb_stops_at_cap():
    """A 300 KiB gzip body that inflates to 128 MiB: inflating stops at --max-body (413),
    so the receiver never holds more than that of it."""
    with Collector(release=True) as col:
        bomb = gzip_bomb(64 * MiB)
        assert len(bomb) < MiB
        status = post(col.port, bomb, b"Content-Encoding: gzip\r\n", timeout=20)
        assert status == 413, status
        hwm = col.status("VmHWM")
        print(f"  receiver VmHWM {hwm / MiB:.0f} MiB")
        assert hwm < 40 * MiB, f"VmHWM {hwm / MiB:.0f} MiB"
        assert_serves(col)
        c = col.stop()
        assert c["too_large"] == 1, c


def test_collect_unpack_bomb_within_cap():
    """A gzip body that inflates to 7.5 MiB (within --max-body) of empty attributes: 4
    million KeyValues, some 300 MiB once protobuf-c has unpacked them one by one. The unpack
    has a byte budget (--max-unpack, 64 MiB): past it the request is a 413."""
    with Collector(release=True) as col:
        bomb = gzip_bomb(15 * MiB // 4)
        status = post(col.port, bomb, b"Content-Encoding: gzip\r\n", timeout=30)
        assert status == 413, status
        hwm = col.status("VmHWM")
        print(f"  receiver VmHWM {hwm / MiB:.0f} MiB")
        assert hwm < 120 * MiB, f"VmHWM {hwm / MiB:.0f} MiB"
        assert_serves(col)
        c = col.stop()
        assert c["too_large"] == 1, c


def test_collect_chunked_body_parsed_once():
    """A 3 MiB body in 393,216 chunks of 8 bytes, paced in 2 KiB writes so that the
    receiver gets it in over a thousand recvs. Each byte is decoded once now: before, every
    recv decoded the whole body again from its first chunk (quadratic in the body)."""
    with Collector(release=True) as col:
        body = export_request(b"chunked", attr(b"big", b"v" * (3 * MiB)))
        wire = b"".join(b"%x\r\n" % len(body[i:i + 8]) + body[i:i + 8] + b"\r\n"
                        for i in range(0, len(body), 8)) + b"0\r\n\r\n"
        cpu0 = col.cpu_seconds()
        t0 = time.time()
        with connect(col.port, 60) as s:
            s.sendall(head(extra=b"Transfer-Encoding: chunked\r\n"))
            for i in range(0, len(wire), 2048):
                s.sendall(wire[i:i + 2048])
                time.sleep(0.001)
            status = read_answer(s, 60)
        cpu = col.cpu_seconds() - cpu0
        print(f"  chunked 3 MiB in 8-byte chunks: {time.time() - t0:.2f} s, "
              f"receiver CPU {cpu:.2f} s")
        assert status == 200, status
        assert cpu < 0.8, f"the receiver spent {cpu:.1f} s of CPU on one 3 MiB body"
        assert_serves(col)
        c = col.stop()
        assert c["spans"] == 2, c
