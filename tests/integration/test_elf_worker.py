"""Issue 11, symbol parsing off the event thread (agent/elfwork.c): a user's crafted
"libssl" files cost the agent's OpenSSL discovery up to its time budget each, but never the
event loop. While a process maps dozens of files that each take the whole 100 ms budget,
another process's plain HTTP keeps being traced within moments, SIGTERM is acted upon at
once, and files that do not fit in the parse queue are counted and parsed later.

Before the worker, one scan of that process parsed every file in turn on the event thread:
seconds without a ring drain, a span, or a look at the stop signals.
"""
import http.client
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

from lib import Agent, Proc, free_port, spans_where, wait_port, slow, HERE

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
SHDR = struct.Struct("<IIQQQQIIQQ")
SYM = struct.Struct("<IBBHQQ")
STRTAB_BYTES = 4 << 20  # read whole for every table (small: the read overshoots the budget)
NTABLES = 4000           # symbol tables sharing that string table: >100 ms of reads


def write_slow_elf(path):
    """A valid 64-bit shared object whose NTABLES one-symbol tables all name the same 4 MiB
    string table (sparse: no disk used): every table costs a 32 MiB read, so the parse runs
    into the agent's 100 ms time budget whatever the machine."""
    text = b"\xc3" * 16
    shstrtab = b"\0.text\0.strtab\0.symtab\0.shstrtab\0"
    name = {n: shstrtab.index(n.encode() + b"\0") for n in (".text", ".strtab", ".symtab",
                                                          ".shstrtab")}
    text_off, symtab_off, strtab_off = 0x1000, 0x1010, 0x2000
    symtab = SYM.pack(0, 0, 0, 0, 0, 0) + SYM.pack(1, 0x12, 0, 1, 0x1000, 16)
    shstr_off = strtab_off + STRTAB_BYTES
    sh_off = (shstr_off + len(shstrtab) + 7) & ~7
    shdrs = [
        SHDR.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        SHDR.pack(name[".text"], 1, 6, 0x1000, text_off, len(text), 0, 0, 16, 0),
        SHDR.pack(name[".strtab"], 3, 0, 0, strtab_off, STRTAB_BYTES, 0, 0, 1, 0),
        SHDR.pack(name[".shstrtab"], 3, 0, 0, shstr_off, len(shstrtab), 0, 0, 1, 0),
    ] + [SHDR.pack(name[".symtab"], 2, 0, 0, symtab_off, len(symtab), 2, 1, 8, SYM.size)] * NTABLES
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    ehdr = EHDR.pack(ident, 3, 62, 1, 0x1000, 0, sh_off, 0, EHDR.size, 0, 0, SHDR.size,
                     len(shdrs), 3)
    with open(path, "wb") as f:
        f.write(ehdr)
        f.seek(text_off)
        f.write(text)
        f.seek(symtab_off)
        f.write(symtab)
        f.seek(strtab_off)
        f.write(b"\0x\0")
        f.seek(shstr_off)
        f.write(shstrtab)
        f.seek(sh_off)
        f.write(b"".join(shdrs))


MAPPER = r"""
import mmap, sys, time
maps = []
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        maps.append(mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ))
print("ready", flush=True)
time.sleep(3600)
"""


def slow_libs(n):
    d = tempfile.mkdtemp(prefix="hoptrace-elfwork-")
    paths = [os.path.join(d, f"libssl.so.{i}") for i in range(n)]
    for p in paths:
        write_slow_elf(p)
    return paths


def mapper(paths):
    """A process that maps every path (its maps lists each: each is a libssl to look at)."""
    p = Proc([sys.executable, "-c", MAPPER, *paths], stdout=subprocess.PIPE)
    assert p.p.stdout.readline() == b"ready\n"
    return p


def budget_lines(agent, paths):
    return {p for p in paths for l in agent.stderr().splitlines()
            if f"cannot probe {p}:" in l and "budget" in l}


def span_count(agent):
    """Spans the agent has written so far (one JSON line each, flushed every 5 ms)."""
    try:
        with open(agent.out_path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def test_http_is_traced_while_crafted_libraries_are_parsed():
    """24 crafted libssl files, each worth the whole 100 ms parse budget, mapped by one
    process: meanwhile every request of another process shows up as a span within 0.6 s
    (on the event thread, the scan of that process stalled the loop for ~2.4 s: no drain,
    no span). 16 fit in the parse queue; the rest are counted (tls_elf_queue_full) and
    parsed on a later exec rescan, each refused by the budget as before."""
    port = free_port()
    app = Proc([sys.executable, os.path.join(HERE, "app_server.py"), str(port)])
    wait_port(port)
    paths = slow_libs(24)
    agent = hostile = None
    try:
        agent = Agent("--port", str(port))
        hostile = mapper(paths)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        lags, t0 = [], time.time()
        while time.time() - t0 < 3:  # on the event thread, the stall came at once
            before = span_count(agent)
            conn.request("GET", "/leaf")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == b"leaf"
            answered = time.time()
            while span_count(agent) == before:
                assert time.time() - answered < 30, "span never written"
                time.sleep(0.002)
            lags.append(time.time() - answered)
            time.sleep(0.02)
        conn.close()
        # the files left out of the full queue are parsed on a later exec rescan (8 s)
        deadline = time.time() + slow(20)
        while len(budget_lines(agent, paths)) < len(paths):
            assert time.time() < deadline, (len(budget_lines(agent, paths)),
                                            agent.stderr()[-3000:])
            time.sleep(0.1)
        spans = agent.stop()
    finally:
        for p in (hostile, app):
            if p:
                p.stop()
        if agent:
            agent.kill()
        shutil.rmtree(os.path.dirname(paths[0]))
    c = agent.counters
    print(f"    {len(lags)} requests; span lag max {max(lags) * 1000:.0f} ms, "
          f"median {sorted(lags)[len(lags) // 2] * 1000:.0f} ms; "
          f"over_budget={c.get('tls_elf_over_budget')} queue_full={c.get('tls_elf_queue_full')}")
    assert len(spans_where(spans, kind="SERVER", pid=app.pid)) == len(lags), len(spans)
    assert max(lags) < slow(0.6), sorted(lags)[-5:]
    # (>=: other tests on this host may map crafted files too; ours were each logged)
    assert c["tls_elf_over_budget"] >= len(paths), c
    assert c["tls_elf_queue_full"] >= len(paths) - 16, c


def test_sigterm_during_crafted_parses_stops_at_once():
    """SIGTERM while 64 crafted files (100 ms each) wait to be parsed: the agent exits
    within 2 s, as fast as without them (~0.8 s here: detaching, flushing): the parse under
    way ends within its budget, the queued ones are dropped. On the event thread, the
    signal waited for the whole scan (~6.4 s)."""
    port = free_port()
    paths = slow_libs(64)
    agent = hostile = None
    try:
        agent = Agent("--port", str(port))
        hostile = mapper(paths)
        deadline = time.time() + slow(10)
        while not budget_lines(agent, paths):
            assert time.time() < deadline, agent.stderr()[-3000:]
            time.sleep(0.01)
        t0 = time.time()
        agent.p.send_signal(signal.SIGTERM)
        try:
            agent.p.wait(timeout=slow(10))
        except subprocess.TimeoutExpired:
            raise AssertionError("agent still running 10 s after SIGTERM")
        took = time.time() - t0
        agent.stop(settle=0)
    finally:
        if hostile:
            hostile.stop()
        if agent:
            agent.kill()
        shutil.rmtree(os.path.dirname(paths[0]))
    print(f"    exited {took * 1000:.0f} ms after SIGTERM, "
          f"{len(budget_lines(agent, paths))} of {len(paths)} files parsed")
    assert took < slow(2.0), took
    assert len(budget_lines(agent, paths)) < len(paths)
