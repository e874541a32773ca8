"""Issue 11, HTTPS coverage: files and processes that an unprivileged user controls must not
hang, crash or blind the agent's OpenSSL discovery (agent/tls.c).

Every test uses real processes doing to their own files what a user can: mapping libssl at
a low address, replacing it by a FIFO, a chroot whose paths lead elsewhere, crafted ELF
files with huge symbol tables or truncated while the agent reads them, exec storms.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import elf_craft
from lib import Agent, Proc, curl, free_port, one, run, spans_where, wait_port, HERE, slow
from test_tls import SYSTEM_LIBSSL, make_cert

VICTIM = os.path.join(HERE, "tls_victim.py")
# map_files needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE: without them the agent opens
# mapped files by path, inside the process's root (uprobes cannot be attached then either)
NO_MAP_FILES = ["capsh", "--drop=cap_sys_admin,cap_checkpoint_restore", "--", "-c",
                'exec "$0" "$@"']


def victim(*args, env=None):
    p = Proc([sys.executable, VICTIM, *args], stdout=subprocess.PIPE, env=env)
    line = p.p.stdout.readline().decode()
    assert line.startswith("ready"), line
    return p, line.split()[1:]


def fifo_writer(path):
    """A process blocked opening the FIFO at path for writing: it wakes up (and exits) as
    soon as anyone opens the FIFO for reading."""
    os.mkfifo(path)
    return Proc([sys.executable, "-c", "import os,sys;os.open(sys.argv[1],os.O_WRONLY)", path])


def release_fifo(path):
    """Other tracers on this host (older builds) may be blocked opening the FIFO for
    reading: a writer's open and close lets them go on. Then the FIFO goes."""
    for _ in range(20):
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            break  # ENXIO: no reader left
    os.unlink(path)


def stop_promptly(agent, sig=signal.SIGTERM, timeout=10):
    """The agent exits within timeout s of sig (its event thread was never stuck), then its
    spans (stop() checks the exit code and sanitizers)."""
    agent.p.send_signal(sig)
    try:
        agent.p.wait(timeout=slow(timeout))
    except subprocess.TimeoutExpired:
        raise AssertionError(f"agent still running {timeout} s after {sig!r}:\n"
                             + agent.stderr()[-2000:])
    return agent.stop(settle=0)


def private_libssl(d):
    os.makedirs(d, exist_ok=True)
    lib = os.path.join(d, "libssl.so.3")
    shutil.copy(SYSTEM_LIBSSL, lib)
    return os.path.realpath(lib)


def test_low_mapped_replaced_libssl_is_probed_through_map_files():
    """libssl mapped below 0x10000000 (maps prints 0fe15000-...), then unlinked with a FIFO
    at its path: the agent must find the mapped inode through map_files (named without
    leading zeros) and trace HTTPS through it. Opening the path instead blocked the event
    thread for good (the FIFO has no writer), before the agent was even ready. (No writer
    sentinel here: other tracers on a shared host open that FIFO too.)"""
    certs = make_cert()
    libdir = tempfile.mkdtemp(prefix="hoptrace-lowssl-")
    lib = private_libssl(libdir)
    port = free_port()
    srv, where = victim("low-server", str(port), f"{certs}/cert.pem", f"{certs}/key.pem", lib,
                        "fifo", env=dict(os.environ, LD_LIBRARY_PATH=libdir))
    wait_port(port)
    assert where[0].startswith("0"), where  # really below 0x10000000, leading zeros
    agent = None
    try:
        agent = Agent("--port", str(port))
        assert f"tracing HTTPS through {lib}" in agent.stderr(), agent.stderr()
        assert curl("-k", f"https://127.0.0.1:{port}/leaf").stdout == b"200"
        spans = stop_promptly(agent)
    finally:
        if agent:
            agent.kill()
        srv.stop()
        release_fifo(lib)
    server = one(spans, kind="SERVER", pid=srv.pid)
    assert server["attributes"]["url.scheme"] == "https" and server["attributes"]["url.path"] == "/leaf"


def test_paths_inside_a_root_never_block_or_escape():
    """Without map_files the agent opens a mapped library by its path inside the process's
    root. A chrooted process's maps paths are host paths: inside its root the user decides
    what they name. A FIFO there must not block the agent; a symlink to a FIFO outside the
    root must not be followed (each FIFO has a writer waiting: any open for reading frees
    it). The agent keeps tracing HTTP and stops promptly."""
    t = tempfile.mkdtemp(prefix="hoptrace-root-")
    lib_a = private_libssl(os.path.join(t, "a"))
    lib_b = private_libssl(os.path.join(t, "b"))
    root_a, root_b = os.path.join(t, "root-a"), os.path.join(t, "root-b")
    os.makedirs(root_a + os.path.dirname(lib_a))
    os.makedirs(root_b + os.path.dirname(lib_b))
    writer_in_root = fifo_writer(root_a + lib_a)
    outside = os.path.join(t, "outside.fifo")
    writer_outside = fifo_writer(outside)
    os.symlink(outside, root_b + lib_b)
    procs = [writer_in_root, writer_outside]
    agent = None
    try:
        procs.append(victim("map-chroot", lib_a, root_a)[0])
        procs.append(victim("map-chroot", lib_b, root_b)[0])
        port = free_port()
        procs.append(Proc([sys.executable, os.path.join(HERE, "app_server.py"), str(port)]))
        wait_port(port)
        agent = Agent("--port", str(port), wrap=NO_MAP_FILES)
        assert curl(f"http://127.0.0.1:{port}/leaf").stdout == b"200"
        deadline = time.time() + slow(10)
        while "GET /leaf" not in open(agent.out_path).read():
            assert time.time() < deadline, "the agent stopped draining"
            time.sleep(0.1)
        stop_promptly(agent)
        assert writer_in_root.p.poll() is None, "the agent opened the FIFO inside the root"
        assert writer_outside.p.poll() is None, "the agent followed a symlink out of the root"
    finally:
        if agent:
            agent.kill()
        for p in procs:
            p.stop()
        release_fifo(root_a + lib_a)
        release_fifo(outside)
    assert agent.counters["tls_open_refused"] >= 2, agent.counters


def test_huge_symbol_table_is_refused_within_budget():
    """A "libssl" with 1.5 million symbols is refused by its size, not parsed symbol by
    symbol on the event thread."""
    d = tempfile.mkdtemp(prefix="hoptrace-elf-")
    lib = os.path.join(d, "libssl.so.3")
    elf_craft.write_elf(lib, 1_500_000)
    holder, _ = victim("map", lib)
    port = free_port()
    try:
        t0 = time.time()
        agent = Agent("--port", str(port))
        started = time.time() - t0
        stop_promptly(agent)
    finally:
        agent.kill()
        holder.stop()
    assert agent.counters["tls_elf_over_budget"] >= 1, agent.counters
    assert [l for l in agent.stderr().splitlines() if lib in l and "budget" in l], agent.stderr()
    print(f"    agent ready {started:.2f} s after start with a 1.5M-symbol libssl mapped")


def test_library_truncated_by_its_owner_is_a_clean_failure():
    """Two processes truncate the "libssl" they map: one before the agent looks at it, one
    2 ms after the agent opened it (while libelf's mmap of it was walked: SIGBUS, which
    killed the agent and left a core dump with plaintext in it). Reading must fail cleanly
    and be counted."""
    d = tempfile.mkdtemp(prefix="hoptrace-elf-")
    before, during = os.path.join(d, "a", "libssl.so.3"), os.path.join(d, "b", "libssl.so.3")
    for lib in (before, during):
        os.makedirs(os.path.dirname(lib))
        elf_craft.write_elf(lib, 1_000_000)
    holders = [victim("map-truncated", before)[0]]
    port = free_port()
    agent = None
    try:
        agent = Agent("--port", str(port))
        # started after the agent: found by its exec rescans, 100 ms and more after exec
        holders.append(victim("map-truncate", during, "2", str(agent.p.pid))[0])
        line = holders[1].p.stdout.readline().strip()
        assert line == b"truncated", line
        time.sleep(slow(0.5))
        assert agent.running(), agent.stderr()[-3000:]
        stop_promptly(agent)
    finally:
        if agent:
            agent.kill()
        for h in holders:
            h.stop()
    assert os.path.getsize(before) == os.path.getsize(during) == 4096
    assert agent.counters["tls_elf_read_failed"] >= 1, agent.counters


STORM = r"""
import os, signal, struct, sys, time
# a minimal static x86-64 program: pause(), so it lives until killed (no loader, no libc)
code = bytes.fromhex("b8220000000f05b83c00000031ff0f05")
ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 2, 62, 1,
                   0x400078, 64, 0, 0, 64, 56, 1, 0, 0, 0)
phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 120 + len(code), 120 + len(code), 0x1000)
binary = ehdr + phdr + code
n = int(sys.argv[1])
live = []
for i in range(n):
    fd = os.memfd_create("storm")  # a new inode each time: a distinct executable
    os.write(fd, binary)
    live.append(os.posix_spawn(f"/proc/self/fd/{fd}", ["storm"], {}))
    os.close(fd)
print("spawned", flush=True)
sys.stdin.read()  # all stay until the test is done with them
for pid in live:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
"""


def test_exec_storm_of_distinct_binaries():
    """4,500 processes, each exec'ing its own copy of a tiny program (memfd: a new inode
    each; x86-64 code, as SYSTEM_LIBSSL's path), all alive at once: the agent keeps
    draining another process's HTTP meanwhile, and a libssl that appears after the storm
    is still probed (files without OpenSSL filled the 4,096-entry files table, and the
    library's probes were dropped for want of a place)."""
    certs = make_cert()
    port, tls_port = free_port(), free_port()
    app = Proc([sys.executable, os.path.join(HERE, "app_server.py"), str(port)])
    wait_port(port)
    libdir = tempfile.mkdtemp(prefix="hoptrace-libssl-")
    private_libssl(libdir)
    agent = srv = None
    storm = None
    try:
        agent = Agent("--port", str(port), "--port", str(tls_port))
        storm = subprocess.Popen([sys.executable, "-c", STORM, "4500"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE)
        n = 0
        t0 = time.time()
        os.set_blocking(storm.stdout.fileno(), False)
        while not storm.stdout.readline():
            assert storm.poll() is None, storm.returncode
            assert curl(f"http://127.0.0.1:{port}/leaf?n={n}").stdout == b"200"
            n += 1
            time.sleep(0.1)
        storm_s = time.time() - t0
        srv, _ = victim("low-server", str(tls_port), f"{certs}/cert.pem", f"{certs}/key.pem",
                        os.path.join(libdir, "libssl.so.3"),
                        env=dict(os.environ, LD_LIBRARY_PATH=libdir))
        wait_port(tls_port)
        deadline = time.time() + slow(20)
        while f"tracing HTTPS through {libdir}" not in agent.stderr():
            assert time.time() < deadline, agent.stderr()[-3000:]
            time.sleep(0.1)
        assert curl("-k", f"https://127.0.0.1:{tls_port}/leaf").stdout == b"200"
        spans = stop_promptly(agent)
    finally:
        if storm:
            storm.stdin.close()
            storm.wait(timeout=60)
        for p in (app, srv):
            if p:
                p.stop()
        if agent:
            agent.kill()
    c = agent.counters
    assert one(spans, kind="SERVER", pid=srv.pid)["attributes"]["url.scheme"] == "https"
    assert len(spans_where(spans, kind="SERVER", pid=app.pid)) == n, (n, c)
    for k, v in c.items():
        if "drop" in k and not k.startswith("tls_"):
            assert v == 0, (k, c)
    # each exec was queued, or counted as dropped
    assert c["tls_scans"] + c.get("tls_scans_dropped", 0) >= 4500, c
    print(f"    {n} requests traced during a {storm_s:.1f} s storm; tls_scans={c['tls_scans']} "
          f"deferred={c.get('tls_scans_deferred', 0)} dropped={c.get('tls_scans_dropped', 0)} "
          f"seen_resets={c.get('tls_seen_cache_resets', 0)}")
