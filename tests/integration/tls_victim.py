#!/usr/bin/env python3
"""Processes that do to their own files what an unprivileged user can, for the TLS hardening
tests (test_hardening_tls.py). Each prints one line starting with "ready" once set up.

  tls_victim.py low-server PORT CERT KEY LIB [fifo]
      Fills the address space above 0x10000000 with PROT_NONE reservations, so that the
      dynamic loader maps libssl (LD_LIBRARY_PATH names LIB's directory) below it, where
      /proc/PID/maps prints addresses with leading zeros. With "fifo", LIB is then unlinked
      and a FIFO left at its path. Serves app_server.py's endpoints over TLS.
  tls_victim.py map-chroot LIB ROOT
      Maps LIB, then chroot()s into ROOT (a container's view: its maps paths are not paths
      inside its root), and sleeps.
  tls_victim.py map-truncate LIB DELAY_MS PID
      Maps LIB, then truncates it to 4 KiB DELAY_MS after process PID opened it, and prints
      "truncated". fanotify tells who opens it (other processes, other tracers on this
      host, are let through and ignored).
  tls_victim.py map-truncated LIB
      Maps LIB, then truncates it to 4 KiB at once.
  tls_victim.py map LIB
      Maps LIB and sleeps.
"""
import ctypes
import mmap
import os
import struct
import sys
import time

LOW = 0x10000000
TOP = 0x7ffffffff000


def libc():
    c = ctypes.CDLL(None, use_errno=True)
    c.mmap.restype = ctypes.c_void_p
    c.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
    return c


def free_ranges_above_low():
    spans = []
    with open("/proc/self/maps") as f:
        for line in f:
            a, b = line.split()[0].split("-")
            spans.append((int(a, 16), int(b, 16)))
    prev = LOW
    for a, b in sorted(spans):
        if b <= LOW:
            continue
        if a > prev:
            yield prev, a
        prev = max(prev, b)
    if prev < TOP:
        yield prev, TOP


def reserve_high_address_space():
    c = libc()
    prot_none, map_private, map_anon, map_noreserve, map_fixed_noreplace = 0, 2, 0x20, 0x4000, 0x100000
    for _ in range(3):  # what the reservations themselves allocate can open new gaps
        for a, b in list(free_ranges_above_low()):
            c.mmap(a, b - a, prot_none, map_private | map_anon | map_noreserve | map_fixed_noreplace,
                   -1, 0)


def mapping_of(path):
    with open("/proc/self/maps") as f:
        for line in f:
            if line.rstrip("\n").endswith(path) or line.rstrip("\n").endswith(path + " (deleted)"):
                return line.split()[0]
    raise SystemExit(f"{path} is not mapped")


def low_server(port, cert, key, lib, replace):
    reserve_high_address_space()
    import importlib
    ssl = importlib.import_module("ssl")
    where = mapping_of(lib)
    if replace == "fifo":
        os.unlink(lib)
        os.mkfifo(lib)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import app_server
    from http.server import ThreadingHTTPServer
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", port), app_server.Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("ready", where, flush=True)
    srv.serve_forever()


def map_file(lib):
    fd = os.open(lib, os.O_RDONLY)
    m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    return fd, m


FAN_CLASS_CONTENT, FAN_MARK_ADD, FAN_OPEN_PERM, FAN_ALLOW = 0x04, 0x01, 0x00010000, 0x01
EVENT = struct.Struct("<IBBHQii")


def truncate_after_open_by(lib, delay_ms, pid):
    c = libc()
    c.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int,
                                ctypes.c_char_p]
    wfd = os.open(lib, os.O_WRONLY)  # before the mark: the listener's own open would wait on itself
    fan = c.fanotify_init(FAN_CLASS_CONTENT, os.O_RDONLY)
    if fan < 0 or c.fanotify_mark(fan, FAN_MARK_ADD, FAN_OPEN_PERM, -100, lib.encode()) < 0:
        raise SystemExit("fanotify failed: %s" % os.strerror(ctypes.get_errno()))
    print("ready", flush=True)
    while True:
        buf = os.read(fan, 4096)
        hit = False
        for off in range(0, len(buf), EVENT.size):
            _, _, _, _, _, fd, who = EVENT.unpack_from(buf, off)
            os.write(fan, struct.pack("<iI", fd, FAN_ALLOW))
            os.close(fd)
            hit = hit or who == pid
        if hit:
            break
    time.sleep(delay_ms / 1000)
    os.ftruncate(wfd, 4096)
    print("truncated", flush=True)
    os.close(fan)
    time.sleep(3600)


def main():
    mode = sys.argv[1]
    if mode == "low-server":
        low_server(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5],
                   sys.argv[6] if len(sys.argv) > 6 else "")
        return
    fd, m = map_file(sys.argv[2])
    if mode == "map-chroot":
        os.chroot(sys.argv[3])
        os.chdir("/")
    elif mode == "map-truncate":
        truncate_after_open_by(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "map-truncated":
        os.ftruncate(os.open(sys.argv[2], os.O_WRONLY), 4096)
    print("ready", flush=True)
    time.sleep(3600)
    del m
    os.close(fd)


if __name__ == "__main__":
    main()
