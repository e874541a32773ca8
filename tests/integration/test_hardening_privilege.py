"""Hardening (issue 11): least privilege, the output path, faults and configuration errors.

Each test runs the real agent against real processes and shows one attack or fault:
- a stdout that nobody reads must not stop the event loop (bounded buffer, counted drops);
- -O must not follow a symbolic link nor create a world-readable file, and the agent must
  not dump core (its memory holds other processes' plaintext);
- after start-up the agent keeps only the capabilities it needs at run time, and it works
  with exactly the set that README and deploy/hoptrace.service document.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

from lib import (AGENT, HERE, ROOT, Agent, Proc, curl, free_port, parse_counters,
                 python_server, require, run, slow, wait_port)

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
UNIT = os.path.join(ROOT, "deploy", "hoptrace.service")

# linux/capability.h
CAP_NUMBERS = {"CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_NET_ADMIN": 12,
               "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21, "CAP_SYS_RESOURCE": 24,
               "CAP_PERFMON": 38, "CAP_BPF": 39}
RUNTIME_TLS = {"CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE", "CAP_SYS_ADMIN", "CAP_PERFMON",
               "CAP_BPF"}
RUNTIME_NO_TLS = {"CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"}


def mask(names):
    return sum(1 << CAP_NUMBERS[n] for n in names)


def proc_status(pid, tid=None):
    path = f"/proc/{pid}/task/{tid}/status" if tid else f"/proc/{pid}/status"
    with open(path) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def sigterm_and_wait(agent, limit):
    """SIGTERM; the seconds until the agent exited, and its counters. Fails when it takes
    longer than limit (the agent is killed then)."""
    t0 = time.time()
    agent.p.send_signal(signal.SIGTERM)
    try:
        rc = agent.p.wait(timeout=slow(limit))
    except subprocess.TimeoutExpired:
        agent.kill()
        raise AssertionError(f"the agent did not exit within {limit} s of SIGTERM:\n"
                             f"{agent.stderr()[-3000:]}")
    took = time.time() - t0
    agent.err.close()
    text = agent.stderr()
    assert rc == 0, f"exit status {rc}:\n{text[-3000:]}"
    for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert bad not in text, f"sanitizer report from the agent:\n{text[-6000:]}"
    return took, parse_counters(text)


def many_requests(port, n):
    """n GET requests, one connection each (python's http.server answers HTTP/1.0)."""
    code = ("import http.client,sys\n"
            "for i in range(%d):\n"
            "    c=http.client.HTTPConnection('127.0.0.1',%d);c.request('GET','/?i=%%d'%%i)\n"
            "    r=c.getresponse();r.read();c.close()\n" % (n, port))
    run([sys.executable, "-c", code], timeout=120)


# ---- writes that block -----------------------------------------------------------------

def test_stdout_that_nobody_reads_does_not_stop_the_loop():
    """hoptrace -o json | sleep 1000: the pipe fills (64 KiB) and nobody empties it. The
    agent goes on draining the rings (every request is still counted), the lines that do
    not fit in its 64 KiB output buffer are dropped whole and counted, and SIGTERM ends it
    within about a second. Every span is accounted for: in the pipe or in output_drops.
    Before, the loop blocked in write(2) at the first full pipe: no drain, no SIGTERM."""
    port = free_port()
    srv = python_server(port)
    rfd, wfd = os.pipe()
    agent = None
    try:
        agent = Agent("--port", str(port), "--no-tls", "--output-buffer-bytes", "65536",
                      out_file=False,
                      stdout=wfd)
        os.close(wfd)
        wfd = -1
        n = 400  # 800 spans of ~1 KB: several times the pipe and the buffer
        many_requests(port, n)
        time.sleep(slow(0.5))
        took, c = sigterm_and_wait(agent, 10)
    finally:
        if agent:
            agent.kill()
        srv.stop()
        if wfd >= 0:
            os.close(wfd)
    os.set_blocking(rfd, False)
    data = b""
    try:
        while chunk := os.read(rfd, 1 << 16):
            data += chunk
    except BlockingIOError:
        pass
    os.close(rfd)
    assert took < 5, f"SIGTERM took {took:.1f} s"
    assert c["spans_server"] == n and c["spans_client"] == n, c
    assert c["output_drops"] > 0, c
    lines = data.decode().split("\n")
    assert lines[-1] == "", "a line was cut"
    spans = [json.loads(line) for line in lines[:-1]]  # whole lines only
    assert len(spans) + c["output_drops"] == c["json_spans_written"] == 2 * n, (len(spans), c)


# ---- -O and core dumps -----------------------------------------------------------------

def agent_fails_at_once(*args, limit=1.0):
    """Run the agent expecting a start-up refusal: its stderr, after checking that it
    exited non-zero within limit seconds (nothing loaded) with one error line."""
    t0 = time.time()
    r = subprocess.run([AGENT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    took = time.time() - t0
    err = r.stderr.decode(errors="replace")
    assert r.returncode not in (0, None), f"exit status {r.returncode}:\n{err}"
    assert took < limit, f"took {took:.2f} s: it loaded BPF before refusing?\n{err}"
    lines = [line for line in err.split("\n") if line and "not running as root" not in line]
    assert len(lines) == 1, f"expected one error line:\n{err}"
    return lines[0]


def test_output_file_symlink_is_refused():
    """A user plants a symbolic link at the path the agent writes to (-O in a shared
    directory): as root, the agent would truncate and overwrite whatever it points to.
    It is refused with one error line, before anything is loaded, and the target keeps
    its content."""
    d = tempfile.mkdtemp(prefix="hoptrace-o-")
    victim = os.path.join(d, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    link = os.path.join(d, "spans.jsonl")
    os.symlink(victim, link)
    line = agent_fails_at_once("-o", "json", "-O", link, "--port", "1")
    assert "-O" in line and link in line and "symbolic link" in line, line
    with open(victim) as f:
        assert f.read() == "precious\n"


def test_output_file_of_another_user_is_refused():
    """A file planted at the -O path by another user (who could read the spans through
    it), or a second name of a file of root's (a hard link: truncated through it)."""
    d = tempfile.mkdtemp(prefix="hoptrace-o-")
    planted = os.path.join(d, "planted")
    with open(planted, "w") as f:
        f.write("")
    os.chown(planted, NOBODY, NOBODY)
    line = agent_fails_at_once("-o", "json", "-O", planted, "--port", "1")
    assert "-O" in line and "another user" in line, line
    precious = os.path.join(d, "precious")
    with open(precious, "w") as f:
        f.write("precious\n")
    os.link(precious, os.path.join(d, "spans.jsonl"))
    line = agent_fails_at_once("-o", "json", "-O", os.path.join(d, "spans.jsonl"), "--port", "1")
    assert "hard links" in line, line
    with open(precious) as f:
        assert f.read() == "precious\n"


def test_output_file_is_private():
    """The spans file holds URLs and headers of every process: created 0600, whatever the
    umask (was 0644 with the usual umask: readable by every local user)."""
    old = os.umask(0o022)
    try:
        agent = Agent("--port", "1", "--no-tls")
    finally:
        os.umask(old)
    try:
        mode = os.stat(agent.out_path).st_mode & 0o777
        agent.stop()
    finally:
        agent.kill()
    assert mode == 0o600, oct(mode)


def test_no_core_dump():
    """The agent's memory holds the plaintext of other processes' requests: a crash must
    not write it to a core file. With core dumps enabled (RLIMIT_CORE, core_pattern
    'core' in the working directory here), SIGQUIT kills the agent without a dump. Before,
    it dumped core."""
    with open("/proc/sys/kernel/core_pattern") as f:
        pattern = f.read().strip()
    if pattern.startswith("|"):
        require("a core_pattern that writes a file (not a pipe)")
    d = tempfile.mkdtemp(prefix="hoptrace-core-")
    err_path = os.path.join(d, "err")
    env = dict(os.environ, ASAN_OPTIONS="disable_coredump=0:detect_leaks=0")

    def unlimited_core():
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)

    with open(err_path, "w") as err:
        p = subprocess.Popen([AGENT, "-o", "json", "-O", os.devnull, "--port", "1", "--no-tls"],
                             stdout=subprocess.DEVNULL, stderr=err, cwd=d, env=env,
                             preexec_fn=unlimited_core)
    try:
        deadline = time.time() + slow(30)
        while "tracing HTTP/1.x" not in open(err_path).read():
            assert p.poll() is None and time.time() < deadline, open(err_path).read()
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGQUIT)
        _, status = os.waitpid(p.pid, 0)
        p.returncode = -signal.SIGQUIT  # reaped here: Popen must not wait for it again
    finally:
        if p.returncode is None:
            p.kill()
            p.wait()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGQUIT, status
    cores = [f for f in os.listdir(d) if f.startswith("core")]
    assert not os.WCOREDUMP(status) and not cores, (status, cores)


# ---- least privilege -------------------------------------------------------------------

def unit_capabilities():
    """CapabilityBoundingSet and AmbientCapabilities of deploy/hoptrace.service."""
    sets = {}
    with open(UNIT) as f:
        for line in f:
            m = re.match(r"(CapabilityBoundingSet|AmbientCapabilities)=(.*)", line.strip())
            if m:
                sets[m[1]] = set(m[2].split())
    assert sets.get("CapabilityBoundingSet") == sets.get("AmbientCapabilities"), sets
    return sets["CapabilityBoundingSet"]


def setpriv_exactly(caps):
    """setpriv running its command as root with exactly caps (bounding set, hence
    permitted and effective), and no_new_privs: what the unit does."""
    spec = ",".join("+" + c[4:].lower() for c in sorted(caps))
    return ["setpriv", f"--bounding-set=-all,{spec}", f"--inh-caps=-all,{spec}",
            f"--ambient-caps=-all,{spec}", "--no-new-privs", "--"]


def make_cert():
    require("openssl")
    d = tempfile.mkdtemp(prefix="hoptrace-priv-tls-")
    os.chmod(d, 0o755)
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-days", "1", "-keyout", os.path.join(d, "key.pem"), "-out", os.path.join(d, "cert.pem")])
    os.chmod(os.path.join(d, "key.pem"), 0o644)
    return d


def traced_as_nobody(agent_args, wrap=(), tls=True):
    """An HTTP server and (tls) an HTTPS one, both started as an unprivileged user after the
    agent (so the agent reads their /proc files and attaches its uprobes at run time, with
    its run-time capabilities), each with OTEL_SERVICE_NAME in its environment (0400,
    owned by that user: read only with CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE). One request
    to each with curl. Returns the spans, the agent's /proc status while it ran, and the
    statuses of its other threads."""
    port, tport = free_port(), free_port()
    agent = Agent("--port", str(port), "--port", str(tport), *agent_args, wrap=wrap)
    procs = []
    try:
        env = dict(os.environ, OTEL_SERVICE_NAME="priv-plain")
        procs.append(Proc([*AS_NOBODY, sys.executable, "-m", "http.server", str(port),
                           "--bind", "127.0.0.1"], env=env, cwd="/"))
        wait_port(port)
        if tls:
            certs = make_cert()
            env = dict(os.environ, OTEL_SERVICE_NAME="priv-tls")
            procs.append(Proc([*AS_NOBODY, sys.executable, os.path.join(HERE, "tls_server.py"),
                               str(tport), os.path.join(certs, "cert.pem"),
                               os.path.join(certs, "key.pem")], env=env, cwd="/"))
            wait_port(tport)
        time.sleep(slow(1.0))  # the exec was seen and the new process's libssl probed
        assert curl(f"http://127.0.0.1:{port}/").stdout == b"200"
        if tls:
            assert curl("-k", f"https://127.0.0.1:{tport}/leaf").stdout == b"200"
        status = proc_status(agent.p.pid)
        threads = [proc_status(agent.p.pid, t) for t in os.listdir(f"/proc/{agent.p.pid}/task")
                   if int(t) != agent.p.pid]
        spans = agent.stop()
    finally:
        agent.kill()
        for p in procs:
            p.stop()
    return spans, status, threads


def check_traced(spans, tls):
    got = sorted((s["kind"], s["service.name"], s["attributes"]["url.scheme"]) for s in spans)
    want = [("CLIENT", "curl", "http"), ("SERVER", "priv-plain", "http")]
    if tls:
        want += [("CLIENT", "curl", "https"), ("SERVER", "priv-tls", "https")]
    assert got == sorted(want), json.dumps(spans, indent=1)


def test_capabilities_dropped_after_start_up():
    """Started as root with every capability: once attached, the loop thread keeps only
    the run-time set (TLS: uprobes on new processes; /proc reads), the other threads
    (output writer, ...) keep none, and no thread can regain any (no_new_privs). It still
    traces, HTTPS of a process started later included. Before, it kept all of them."""
    spans, status, threads = traced_as_nobody(())
    check_traced(spans, tls=True)
    assert int(status["CapEff"], 16) == mask(RUNTIME_TLS), status["CapEff"]
    assert int(status["CapPrm"], 16) == mask(RUNTIME_TLS), status["CapPrm"]
    assert int(status["CapBnd"], 16) == mask(RUNTIME_TLS), status["CapBnd"]
    assert status["NoNewPrivs"] == "1", status
    assert threads, "no worker thread to check"
    for t in threads:
        assert int(t["CapEff"], 16) == 0 and int(t["CapPrm"], 16) == 0, t
        assert t["NoNewPrivs"] == "1", t


def test_capabilities_without_tls():
    """--no-tls: only the /proc readers stay."""
    spans, status, _ = traced_as_nobody(("--no-tls",), tls=False)
    check_traced(spans, tls=False)
    assert int(status["CapEff"], 16) == mask(RUNTIME_NO_TLS), status["CapEff"]


def test_runs_with_exactly_the_unit_capabilities():
    """deploy/hoptrace.service's capability set, and nothing else (setpriv: bounding set,
    ambient set, no_new_privs, as the unit does), is enough: HTTP and HTTPS of processes of
    another user, started after the agent, are traced with their service names."""
    caps = unit_capabilities()
    assert caps <= set(CAP_NUMBERS), caps
    spans, status, _ = traced_as_nobody((), wrap=setpriv_exactly(caps))
    check_traced(spans, tls=True)
    assert int(status["CapEff"], 16) == mask(RUNTIME_TLS & caps), status["CapEff"]
    assert status["NoNewPrivs"] == "1", status


def test_unit_verifies():
    """systemd-analyze verify accepts the unit (its ExecStart pointed at this build)."""
    require("systemd-analyze")
    d = tempfile.mkdtemp(prefix="hoptrace-unit-")
    with open(UNIT) as f:
        text = f.read().replace("/usr/local/bin/hoptrace", os.path.abspath(AGENT))
    path = os.path.join(d, "hoptrace.service")
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run(["systemd-analyze", "verify", path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    out = r.stdout.decode(errors="replace")
    # outside a systemd-booted host it may say so; it must find nothing wrong in the unit
    problems = [line for line in out.split("\n") if "hoptrace.service" in line]
    assert r.returncode == 0 and not problems, out


# ---- faults ----------------------------------------------------------------------------

def padded_requests(port, n, name, pad=7000):
    """n requests to /NAME-I with a pad-byte header: each fills a ring buffer record of
    its own."""
    code = ("import http.client\n"
            "for i in range(%d):\n"
            "    c=http.client.HTTPConnection('127.0.0.1',%d)\n"
            "    c.request('GET','/%s-%%d'%%i,headers={'X-Pad':'p'*%d})\n"
            "    r=c.getresponse();r.read();c.close()\n" % (n, port, name, pad))
    run([sys.executable, "-c", code], timeout=120)


def test_ring_buffer_too_small_is_counted():
    """The smallest rings (--ringbuf-bytes: 512 KiB per CPU) and an agent that falls
    behind (stopped for the burst): the kernel side cannot reserve records and counts each
    (bpf_drop_ringbuf_full); the requests that lost a record are missing from the spans,
    and the agent goes on once it runs again."""
    port = free_port()
    srv = python_server(port)
    ncpu = os.sysconf("SC_NPROCESSORS_ONLN")
    agent = Agent("--port", str(port), "--no-tls", "--ringbuf-bytes", str(512 * 1024 * ncpu))
    n = 300  # 300 x 2 x 7 KB records: several times the rings
    try:
        os.kill(agent.p.pid, signal.SIGSTOP)
        try:
            padded_requests(port, n, "burst")
        finally:
            os.kill(agent.p.pid, signal.SIGCONT)
        padded_requests(port, 5, "after")  # after the burst: traced again
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    c = agent.counters
    assert c["bpf_drop_ringbuf_full"] > 0, c
    assert c["spans_server"] < n, c  # a loss, and a counter that names it
    paths = {s["attributes"].get("url.path") for s in spans if s["kind"] == "SERVER"}
    assert {f"/after-{i}" for i in range(5)} <= paths, sorted(p for p in paths if p)[-20:]


def test_sigterm_under_load():
    """SIGTERM while a client sends requests as fast as it can: the agent exits within its
    flush deadline with status 0, the counters printed, and its output file holds whole
    JSON lines, as many as it counts written."""
    import threading
    port = free_port()
    srv = python_server(port)
    agent = Agent("--port", str(port), "--no-tls")
    stop = threading.Event()

    def load():
        import http.client
        while not stop.is_set():
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/")
                c.getresponse().read()
                c.close()
            except OSError:
                pass

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(slow(2))
        took, c = sigterm_and_wait(agent, 15)
    finally:
        stop.set()
        for t in threads:
            t.join()
        agent.kill()
        srv.stop()
    assert took < 6, f"SIGTERM under load took {took:.1f} s"
    with open(agent.out_path, "rb") as f:
        data = f.read()
    assert data.endswith(b"\n"), data[-200:]
    lines = data.decode().split("\n")[:-1]
    for line in lines:
        json.loads(line)
    assert c["spans_server"] > 0 and len(lines) == c["json_spans_written"], (len(lines), c)


def bpf_objects_held(pid):
    """IDs of the BPF programs and links that process pid holds open (from fdinfo: this
    bpftool lists no owning pids)."""
    progs, links = set(), set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if "link_id" in info:
            links.add(int(info["link_id"]))
        elif "prog_id" in info:
            progs.add(int(info["prog_id"]))
    return progs, links


def test_sigkill_leaves_no_programs_or_links():
    """SIGKILL gives no chance to detach: nothing is pinned, so the kernel frees every
    program and link of the agent once its file descriptors close (other agents on the
    host keep theirs: only the ones this agent held are checked)."""
    require("bpftool")
    agent = Agent("--port", "1", "--no-tls")
    try:
        progs, links = bpf_objects_held(agent.p.pid)
        assert progs and links, (progs, links)
        agent.p.send_signal(signal.SIGKILL)
        agent.p.wait(timeout=10)
    finally:
        agent.kill()
    deadline = time.time() + slow(10)  # programs are freed after an RCU grace period
    while True:
        r = run(["bpftool", "-j", "prog", "show"])
        left_progs = progs & {o["id"] for o in json.loads(r.stdout or b"[]")}
        r = run(["bpftool", "-j", "link", "show"])
        left_links = links & {o["id"] for o in json.loads(r.stdout or b"[]")}
        if not left_progs and not left_links:
            break
        assert time.time() < deadline, (left_progs, left_links)
        time.sleep(0.1)
    assert not [f for f in os.listdir("/sys/fs/bpf") if "ht" in f or "hoptrace" in f]


def in_mount_namespace(script, *args, limit=30):
    """Run AGENT with args in a private mount namespace after script (sh) changed it; the
    completed process (the host's mounts are untouched)."""
    require("unshare")
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-ec",
            script + '\nexec "$@"', "sh", AGENT, *args]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=limit)


def test_btf_missing():
    """No /sys/kernel/btf/vmlinux (an empty file mounted over it): one error line that
    says what the kernel lacks, exit status non-zero, nothing left running."""
    empty = tempfile.NamedTemporaryFile(prefix="hoptrace-nobtf-", delete=False)
    empty.close()
    r = in_mount_namespace(f"mount --bind {empty.name} /sys/kernel/btf/vmlinux",
                           "--port", "1", "-d", "1")
    err = r.stderr.decode(errors="replace")
    lines = [line for line in err.split("\n") if line]
    assert r.returncode != 0, err
    assert len(lines) == 1 and "no BTF" in lines[0] and "CONFIG_DEBUG_INFO_BTF" in lines[0], err


UNMOUNT_TRACEFS = ("umount -l /sys/kernel/tracing 2>/dev/null || true\n"
                   "umount -l /sys/kernel/debug 2>/dev/null || true\n"
                   "! ls /sys/kernel/tracing/events >/dev/null 2>&1")


def test_tracefs_missing_is_mounted():
    """tracefs not mounted and the syscall backend asked for (the only one older kernels
    run; it needs tracefs): the agent mounts it and traces."""
    port = free_port()
    srv = python_server(port)
    script = UNMOUNT_TRACEFS
    d = tempfile.mkdtemp(prefix="hoptrace-notracefs-")
    out = os.path.join(d, "out")
    code = ("import http.client,time\ntime.sleep(%f)\n"
            "c=http.client.HTTPConnection('127.0.0.1',%d);c.request('GET','/x')\n"
            "c.getresponse().read()\n" % (slow(3), port))
    client = Proc([sys.executable, "-c", code])
    try:
        r = in_mount_namespace(script, "--capture", "syscalls", "--no-tls", "-o", "json",
                               "-O", out, "--port", str(port), "-d", str(int(slow(5))))
    finally:
        client.stop()
        srv.stop()
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, err
    assert "mounted tracefs" in err, err
    with open(out) as f:
        spans = [json.loads(line) for line in f]
    assert [s["kind"] for s in spans if s["attributes"].get("url.path") == "/x"] \
        in (["SERVER", "CLIENT"], ["CLIENT", "SERVER"]), spans


def test_tracefs_missing_and_not_mountable():
    """tracefs not mounted and no CAP_SYS_ADMIN to mount it: the error says what is needed
    (not libbpf's "No such file or directory" about a tracepoint), exit status non-zero."""
    script = UNMOUNT_TRACEFS + "\nexec setpriv --bounding-set=-all,+bpf,+perfmon -- \"$@\""
    r = in_mount_namespace(script, "--capture", "syscalls", "--no-tls", "--port", "1",
                           "-d", "1")
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0, err
    assert "mount tracefs at /sys/kernel/tracing" in err and "libbpf" not in err, err


# ---- configuration errors --------------------------------------------------------------

def test_configuration_errors_are_one_line_and_fast():
    """Each bad setting: one stderr line that names it, a non-zero exit, well under a
    second (nothing loaded: loading takes longer, and a bad setting must not leave the host
    traced)."""
    ca_dir = tempfile.mkdtemp(prefix="hoptrace-ca-")
    unreadable = os.path.join(ca_dir, "ca.pem")
    with open(unreadable, "w") as f:
        f.write("not a certificate\n")
    os.chmod(unreadable, 0)
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    cases = [
        ({}, ["-o", "bogus"], "--output"),
        ({}, ["--capture", "bogus"], "--capture"),
        ({}, ["--ringbuf-bytes", "lots"], "--ringbuf-bytes"),
        ({}, ["--output-buffer-bytes", "12"], "--output-buffer-bytes"),
        ({}, ["--otlp-endpoint", "ftp://collector:4318"], "--otlp-endpoint"),
        ({}, ["--otlp-endpoint", "http://[::1"], "--otlp-endpoint"),
        ({}, ["--otlp-endpoint", "http://"], "--otlp-endpoint"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, [], "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_TRACES_EXPORTER": "bogus"}, [], "OTEL_TRACES_EXPORTER"),
        ({"HOPTRACE_CAPTURE": "bogus"}, [], "HOPTRACE_CAPTURE"),
        ({**endpoint, "OTEL_EXPORTER_OTLP_CERTIFICATE": os.path.join(ca_dir, "missing.pem")},
         [], "OTEL_EXPORTER_OTLP_CERTIFICATE"),
        # unreadable even to root: run without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH below
        ({**endpoint, "OTEL_EXPORTER_OTLP_CERTIFICATE": unreadable}, [],
         "OTEL_EXPORTER_OTLP_CERTIFICATE"),
    ]
    failures = []
    for env, args, name in cases:
        e = dict(os.environ)
        for k in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                  "OTEL_TRACES_EXPORTER", "HOPTRACE_CAPTURE"):
            e.pop(k, None)
        e.update(env, ASAN_OPTIONS="detect_leaks=0")
        wrap = []
        if env.get("OTEL_EXPORTER_OTLP_CERTIFICATE") == unreadable:
            os.chown(unreadable, NOBODY, NOBODY)  # root reads it only with DAC caps
            wrap = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
        t0 = time.time()
        r = subprocess.run([*wrap, AGENT, "--port", "1", "-d", "1", "--no-tls", *args], env=e,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        took = time.time() - t0
        err = r.stderr.decode(errors="replace")
        lines = [line for line in err.split("\n") if line]
        if r.returncode == 0 or len(lines) != 1 or name not in lines[0] or took > 1.0:
            failures.append(f"{env} {args}: rc={r.returncode} {took:.2f}s {err!r}")
    assert not failures, "\n".join(failures)


# Answers every request on a connection and keeps it open (HTTP/1.1 keep-alive).
KEEPALIVE_SERVER = r"""
import selectors, socket, sys
port = int(sys.argv[1])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port)); ls.listen(256); ls.setblocking(False)
sel = selectors.DefaultSelector(); sel.register(ls, selectors.EVENT_READ)
ans = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is ls:
            c, _ = ls.accept(); c.setblocking(False); sel.register(c, selectors.EVENT_READ)
            continue
        try:
            data = s.recv(65536)
        except (BlockingIOError, ConnectionError):
            continue
        if not data:
            sel.unregister(s); s.close()
        elif data.endswith(b"\r\n\r\n"):
            s.sendall(ans)
"""


def keepalive_requests(port, n, path):
    """n connections at once, one request each, all kept open until every answer came."""
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    try:
        for i, c in enumerate(conns):
            c.sendall(f"GET /{path}-{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        for c in conns:
            assert c.recv(4096).startswith(b"HTTP/1.1 200"), "no answer"
    finally:
        for c in conns:
            c.close()


def test_connection_table_full_is_counted():
    """--max-connections 4 and 12 keep-alive connections open at once (24 ends traced):
    the connections past the table's room lose their records, counted
    (drop_conn_table_full), and the requests of those it follows are traced. Once they
    close, the table has room again."""
    port = free_port()
    srv = Proc([sys.executable, "-c", KEEPALIVE_SERVER, str(port)])
    wait_port(port)
    agent = Agent("--port", str(port), "--no-tls", "--max-connections", "4")
    try:
        keepalive_requests(port, 12, "crowd")
        time.sleep(slow(1))
        keepalive_requests(port, 1, "after")
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    c = agent.counters
    assert c["drop_conn_table_full"] > 0, c
    # the table fills with whichever ends speak first (here the clients' ends)
    crowd = [s for s in spans if (s["attributes"].get("url.path") or "").startswith("/crowd-")]
    assert 0 < len(crowd) <= 4, [(s["kind"], s["name"]) for s in crowd]
    after = {s["kind"] for s in spans if s["attributes"].get("url.path") == "/after-0"}
    assert after == {"SERVER", "CLIENT"}, after
