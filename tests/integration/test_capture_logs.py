"""Log lines as span events (--capture-logs, issue 14): what a real Python server writes to
stdout, stderr and a log file while it serves a request lands, redacted and bounded, on that
request's SERVER span, with a time inside the span; nothing without the option, nothing from
a process the agent does not trace, nothing from a thread that serves no request.

stdout is a pipe in one test and a unix stream socket in another: the latter is what a
systemd service's stdout is (a stream to journald). systemd is not PID 1 on the test hosts,
so the socket is made here (socketpair), the same kind of file as journald's."""
import os
import pty
import socket
import subprocess
import sys
import tempfile
import threading
import time

from lib import Agent, Proc, curl, free_port, slow, wait_port, HERE

SERVER = os.path.join(HERE, "log_server.py")


def drain(f):
    """Read f (a file object or socket) to its end in a thread, so the server never blocks on
    a full pipe; returns the list the chunks go into."""
    got = []

    def run():
        while True:
            try:
                b = f.recv(65536) if isinstance(f, socket.socket) else os.read(f, 65536)
            except OSError:
                return
            if not b:
                return
            got.append(b)

    threading.Thread(target=run, daemon=True).start()
    return got


def start_server(port, logfile, tag, stdout_kind, stderr_kind):
    """log_server.py with stdout a 'pipe' or a unix stream 'socket', and stderr a 'pty' or a
    'file'. Returns (Proc, what was read from its stdout)."""
    child_ends = []
    if stdout_kind == "pipe":
        r, w = os.pipe()
        stdout, out = w, drain(r)
        child_ends.append(w)
    else:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        stdout, out = theirs.fileno(), drain(ours)
        child_ends.append(theirs)
    if stderr_kind == "pty":
        master, slave = pty.openpty()
        stderr = slave
        drain(master)
        child_ends.append(slave)
    else:
        stderr = open(os.path.join(os.path.dirname(logfile), f"{tag}.err"), "w")
        child_ends.append(stderr)
    # unbuffered: print() then makes a write per argument and one for the newline, the
    # pieces the agent must join into one line before redacting it
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = Proc([sys.executable, SERVER, str(port), logfile, tag], stdout=stdout, stderr=stderr,
             env=env)
    for f in child_ends:  # the server holds them now; the readers see its end
        f.close() if hasattr(f, "close") else os.close(f)
    wait_port(port)
    return p, out


def events_of(span):
    return span.get("events", [])


def texts(span):
    return [e["attributes"]["log.record.original"] for e in events_of(span)]


def check_request_span(span, n, tag, logfile):
    """The lines of request n on its own span: stdout, stderr (ours and http.server's access
    log), the log file; times inside the span, secrets gone."""
    evs = events_of(span)
    by_text = {e["attributes"]["log.record.original"]: e for e in evs}
    want_out = (f"{tag} stdout line for request {n}: fetching https://backend.example/api "
                "Authorization: ***")
    want_err = f"{tag} stderr line for request {n} password=***"
    want_file = f"{tag} file line for request {n} api_key=***"
    want_pieces = f"{tag} db password= *** for request {n}"
    assert want_pieces in by_text, (n, texts(span))
    assert by_text[want_pieces]["attributes"]["log.iostream"] == "stdout"
    assert want_out in by_text, (n, texts(span))
    assert want_err in by_text, (n, texts(span))
    assert want_file in by_text, (n, texts(span))
    assert by_text[want_out]["attributes"]["log.iostream"] == "stdout"
    assert by_text[want_err]["attributes"]["log.iostream"] == "stderr"
    assert by_text[want_file]["attributes"]["log.file.path"] == logfile
    assert "log.iostream" not in by_text[want_file]["attributes"]
    access = [t for t in by_text if f'"GET /req/{n} HTTP/1.1" 200' in t]
    assert len(access) == 1, texts(span)  # the query (token=...) is gone
    for e in evs:
        assert e["name"] == "log"
        assert span["start_unix_ns"] <= e["time_unix_ns"] <= span["end_unix_ns"], (e, span)
        # every line of this span is this request's
        t = e["attributes"]["log.record.original"]
        assert f"request {n}" in t or f"/req/{n} " in t, (n, t)


def overlay_dir(d):
    """An overlayfs mount under d whose upper layer is a tmpfs (another file system than the
    lower, as in a container): stat(2) on a file there gives the tmpfs's device, the writer's
    file is the overlay's. Returns its path; unmount_overlay(d) undoes it."""
    for sub in ("lower", "up", "mnt"):
        os.makedirs(os.path.join(d, sub))
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", os.path.join(d, "up")], check=True)
    for sub in ("u", "w"):
        os.makedirs(os.path.join(d, "up", sub))
    subprocess.run(["mount", "-t", "overlay", "-o",
                    f"lowerdir={d}/lower,upperdir={d}/up/u,workdir={d}/up/w", "overlay",
                    os.path.join(d, "mnt")], check=True)
    return os.path.join(d, "mnt")


def unmount_overlay(d):
    for sub in ("mnt", "up"):
        subprocess.run(["umount", os.path.join(d, sub)], check=False)


def run_scenario(stdout_kind, stderr_kind, overlay=False):
    port, other_port = free_port(), free_port()
    d = tempfile.mkdtemp(prefix="hoptrace-logs-")
    logdir = overlay_dir(d) if overlay else d
    try:
        return run_in(d, logdir, port, other_port, stdout_kind, stderr_kind)
    finally:
        if overlay:
            unmount_overlay(d)


def run_in(d, logdir, port, other_port, stdout_kind, stderr_kind):
    logfile = os.path.join(logdir, "app.log")
    open(logfile, "w").close()
    other_log = os.path.join(d, "other.log")
    open(other_log, "w").close()
    srv, out = start_server(port, logfile, "traced", stdout_kind, stderr_kind)
    # a server the agent does not trace (--port): its lines must appear nowhere
    other, other_out = start_server(other_port, other_log, "untraced", "pipe", "file")
    agent = Agent("--port", str(port), "--capture-logs", "--capture-log-file", logfile)
    try:
        # the first request tells the agent this process serves: its later writes are seen
        assert curl(f"http://127.0.0.1:{port}/warmup").stdout == b"200"
        time.sleep(slow(0.5))
        for n in range(1, 6):
            assert curl(f"http://127.0.0.1:{port}/req/{n}?token=SECRETq{n}").stdout == b"200"
            assert curl(f"http://127.0.0.1:{other_port}/req/{n}?token=SECRETo{n}").stdout == b"200"
        assert curl(f"http://127.0.0.1:{port}/flood/7").stdout == b"200"
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
        other.stop()
    text = "\n".join(map(str, spans))
    # redacted everywhere: userinfo, query, bearer token, password, api key
    assert "SECRET" not in text and "alice" not in text, text[:3000]
    assert "untraced" not in text, text[:3000]
    assert b"untraced stdout line for request 5" in b"".join(other_out), "it did log"

    # the background thread (serving nothing) logged all along: never on a span
    assert "background tick" not in text
    assert "background tick" in b"".join(out).decode(), "the server did not log"
    servers = [s for s in spans if s["kind"] == "SERVER"]
    for n in range(1, 6):
        [span] = [s for s in servers if s["attributes"].get("url.path") == f"/req/{n}"]
        check_request_span(span, n, "traced", logfile)
    # client spans (curl) and the other server's spans: no events
    for s in spans:
        if s["kind"] != "SERVER" or s["attributes"].get("server.port") != port:
            assert "events" not in s, s
    # bounded: a huge line is cut, many lines fill the span's room and the rest are counted
    [flood] = [s for s in servers if s["attributes"].get("url.path") == "/flood/7"]
    evs = events_of(flood)
    assert len(evs) == 32, len(evs)
    huge = evs[0]
    assert huge["attributes"]["log.record.original"].startswith("traced HUGE xxx")
    assert len(huge["attributes"]["log.record.original"]) <= 256
    assert huge["attributes"]["hoptrace.log.truncated"] is True
    assert flood["dropped_events_count"] >= 100 + 1 - 32, flood["dropped_events_count"]
    c = agent.counters
    assert c["span_events_dropped"] >= flood["dropped_events_count"], c
    assert c["drop_log_no_request"] > 0, c
    assert c["log_lines"] >= 5 * 5 + 32, c
    assert c["bpf_log_writes"] > 0, c
    return c


def test_logs_stdout_pipe_stderr_pty():
    run_scenario("pipe", "pty")


def test_logs_stdout_unix_stream_stderr_file():
    """A systemd service's stdout: a unix stream socket (journald's), here a socketpair. The
    log file on overlayfs, as in a container: matched by the overlay's identity."""
    run_scenario("socket", "file", overlay=True)


def test_no_log_capture_without_the_option():
    """Off by default: no log programs attached, no events, no counters moving."""
    port = free_port()
    d = tempfile.mkdtemp(prefix="hoptrace-logs-")
    logfile = os.path.join(d, "app.log")
    open(logfile, "w").close()
    srv, _ = start_server(port, logfile, "traced", "pipe", "file")
    agent = Agent("--port", str(port))
    try:
        for n in range(1, 4):
            assert curl(f"http://127.0.0.1:{port}/req/{n}").stdout == b"200"
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    servers = [s for s in spans if s["kind"] == "SERVER"]
    assert len(servers) == 3, spans
    assert all("events" not in s for s in spans), spans
    assert agent.counters.get("bpf_log_writes", 0) == 0, agent.counters
    assert agent.counters.get("events_log", 0) == 0, agent.counters
    assert "log lines captured" not in agent.stderr()
