"""The Debian package (issue 13, host install): built by `make deb` with Debian's tooling,
installed with apt into a fresh Debian root made by debootstrap, run from there.

- test_deb_0_make_install: make install DESTDIR=... prefix=..., then make uninstall.
- test_deb_1_package: the .deb itself: Depends computed by dpkg-shlibdeps, the files and
  where they go, /etc/default/hoptrace a root-only conffile, the unit's ExecStart, the
  maintainer scripts of dh_installsystemd, the man page.
- test_deb_2_fresh_root: `apt-get install ./hoptrace_*.deb` in a chroot of a minbase root of
  this host's Debian release and mirror (so apt resolves the Depends from the mirror), then
  `hoptrace --self-test` from /usr/bin inside it loads and attaches the BPF programs; the
  installed unit passes `systemd-analyze verify` and `security --offline`.

The root is cached as build/deb-test/root-CODENAME-KEY.tar.zst, KEY a hash of what made it
(debootstrap's version, the release, the mirror, the architecture, ROOT_FORMAT): a rerun
unpacks it in seconds. The first run makes it while the package compiles. Everything that
is mounted for the chroot is mounted in a private mount namespace (unshare -m), so it
disappears with the namespace whatever happens to the test.
"""
import atexit
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time

from lib import BUILD, IN_CI, ROOT, SkipTest, require

WORK = os.path.join(BUILD, "deb-test")
# bump when _make_root changes what goes into the cached root
ROOT_FORMAT = 1
TOOLS = ("dpkg-buildpackage", "dh", "dpkg-deb", "debootstrap", "unshare", "chroot", "zstd",
         "systemd-analyze")
# how long each step may take on a 2-core CI machine that has nothing cached
BUILD_TIMEOUT_S = 600
DEBOOTSTRAP_TIMEOUT_S = 600
CHROOT_TIMEOUT_S = 300

_deb_path = None
_deb_error = None
_root_job = None
# a debootstrap still running when the runner exits (a failed test) is stopped
_children = []


@atexit.register
def _stop_children():
    for p in list(_children):
        if p.poll() is None:
            os.killpg(p.pid, 9)


def _require_root_tools():
    if os.geteuid() != 0:
        if IN_CI:
            raise AssertionError("the package test needs root (debootstrap, chroot)")
        raise SkipTest("needs root")
    for tool in TOOLS:
        require(tool)


def _run(argv, timeout, **kw):
    """Run argv; its output, or an AssertionError with the output's end."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         errors="replace", start_new_session=True, **kw)
    _children.append(p)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        out, _ = p.communicate()
        raise AssertionError(f"{argv[0]} took more than {timeout} s:\n{out[-3000:]}")
    except BaseException:  # the runner's per-test timeout: leave nothing running
        os.killpg(p.pid, 9)
        p.wait()
        raise
    finally:
        _children.remove(p)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}:\n{out[-6000:]}")
    return out


# ---- the host's Debian release and mirror ------------------------------------------------

def _codename():
    with open("/etc/os-release") as f:
        fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    name = fields.get("VERSION_CODENAME", "").strip('"')
    if fields.get("ID", "").strip('"') != "debian" or not name:
        raise AssertionError("the package test needs a Debian host (/etc/os-release)")
    return name


def _apt_entries():
    """(uri, suite, components) of every enabled `deb` source of the host's apt, one-line
    (*.list) and deb822 (*.sources) formats."""
    entries = []
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in files:
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    entries.append((words[1], words[2], words[3:]))
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            text = f.read()
        for block in re.split(r"\n\s*\n", text):
            fields = {}
            for line in block.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.split()
            if "deb" not in fields.get("types", []) or fields.get("enabled") == ["no"]:
                continue
            for uri in fields.get("uris", []):
                for suite in fields.get("suites", []):
                    entries.append((uri, suite, fields.get("components", [])))
    return entries


def _debian_sources(codename):
    """The mirror debootstrap uses (the host's source of CODENAME main) and the sources.list
    lines of the new root: the host's main, -updates and -security sources of CODENAME."""
    wanted = (codename, f"{codename}-updates", f"{codename}-security")
    lines = []
    mirror = None
    for uri, suite, components in _apt_entries():
        if suite in wanted and "main" in components:
            lines.append(f"deb {uri} {suite} main")
            if suite == codename and mirror is None:
                mirror = uri
    if mirror is None:
        raise AssertionError(f"no apt source of {codename} main on this host")
    return mirror, list(dict.fromkeys(lines))


# ---- the cached root -----------------------------------------------------------------

def _root_key(codename, mirror, lines):
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "debootstrap"],
                             capture_output=True, text=True).stdout
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                          text=True).stdout.strip()
    inputs = json.dumps([ROOT_FORMAT, version, codename, arch, mirror, lines])
    return arch, hashlib.sha256(inputs.encode()).hexdigest()[:16]


def _rm_tree(path):
    """Remove a root tree, never across a file system boundary nor with a mount inside."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if point == real or point.startswith(real + "/"):
                raise AssertionError(f"{point} is still mounted: not removing {real}")
    subprocess.run(["rm", "-rf", "--one-file-system", real], check=True)


def _remove_stale():
    """Trees a killed run left behind (named after its pid, which is gone)."""
    for path in glob.glob(os.path.join(WORK, "*-[0-9]*")):
        pid = path.rsplit("-", 1)[1]
        if os.path.isdir(path) and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            _rm_tree(path)


def _make_root():
    """The cached minbase root's tarball: (path, seconds it took, "cached" or "made")."""
    t0 = time.time()
    codename = _codename()
    mirror, lines = _debian_sources(codename)
    arch, key = _root_key(codename, mirror, lines)
    tarball = os.path.join(WORK, f"root-{codename}-{key}.tar.zst")
    if os.path.exists(tarball):
        return tarball, time.time() - t0, "cached"
    os.makedirs(WORK, exist_ok=True)
    _remove_stale()
    tree = os.path.join(WORK, f"root-making-{os.getpid()}")
    if os.path.exists(tree):
        _rm_tree(tree)
    # .debs kept between makes of the root (a new KEY downloads only what changed)
    cache = os.path.join(WORK, "debootstrap-cache")
    os.makedirs(cache, exist_ok=True)
    try:
        _run(["debootstrap", "--variant=minbase", f"--arch={arch}", f"--cache-dir={cache}",
              codename, tree, mirror], DEBOOTSTRAP_TIMEOUT_S)
        with open(os.path.join(tree, "etc/apt/sources.list"), "w") as f:
            f.write("\n".join(lines) + "\n")
        # nothing installed in the chroot starts a service
        policy = os.path.join(tree, "usr/sbin/policy-rc.d")
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
        _run(["tar", "-C", tree, "--zstd", "-cf", tarball + ".tmp", "."], 300)
        os.replace(tarball + ".tmp", tarball)
    finally:
        _rm_tree(tree)
    # roots of other keys are stale
    for old in glob.glob(os.path.join(WORK, f"root-*.tar.zst")):
        if old != tarball:
            os.unlink(old)
    return tarball, time.time() - t0, "made"


class _Job:
    """_make_root on a daemon thread: a runner that exits on a failure does not wait for it
    (atexit kills its debootstrap)."""

    def __init__(self, fn):
        self.value = self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.value = fn()
        except BaseException as e:  # handed to result()
            self.error = e

    def result(self, timeout):
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"the Debian root was not made within {timeout} s")
        if self.error:
            raise self.error
        return self.value


def _start_root():
    global _root_job
    if _root_job is None:
        _root_job = _Job(_make_root)
    return _root_job


# ---- the package ---------------------------------------------------------------------

def _deb():
    """build/deb/hoptrace_VERSION_ARCH.deb, made once per run by `make deb`."""
    global _deb_path, _deb_error
    if _deb_error:  # failed once in this run: not again (minutes)
        raise AssertionError(f"make deb failed earlier in this run:\n{_deb_error}")
    if _deb_path is None:
        t0 = time.time()
        try:
            _run(["make", "-C", ROOT, f"OUT={BUILD}", "deb"], BUILD_TIMEOUT_S)
        except AssertionError as e:
            _deb_error = str(e)[-3000:]
            raise
        with open(os.path.join(ROOT, "VERSION")) as f:
            version = f.read().strip()
        found = glob.glob(os.path.join(BUILD, "deb", f"hoptrace_{version}_*.deb"))
        assert len(found) == 1, f"make deb made {found}"
        _deb_path = found[0]
        print(f"  make deb: {time.time() - t0:.0f} s, {os.path.getsize(_deb_path)} bytes, "
              f"{os.path.basename(_deb_path)}", flush=True)
    return _deb_path


def _deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "-f", deb, field], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_deb_0_make_install():
    """make install into a staging DESTDIR with another prefix: every file under it, the
    unit's ExecStart naming the installed binary; make uninstall removes them again."""
    require("make")
    if os.geteuid() == 0 and shutil.which("debootstrap"):
        _start_root()  # for test_deb_2: debootstrap downloads meanwhile
    stage = os.path.join(WORK, f"stage-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    prefix = "/opt/hoptrace"
    args = ["make", "-C", ROOT, f"OUT={BUILD}", f"DESTDIR={stage}", f"prefix={prefix}"]
    try:
        _run(args + ["install"], BUILD_TIMEOUT_S)
        top = stage + prefix
        for path, mode in {"bin/hoptrace": 0o755, "bin/hoptrace-collect": 0o755,
                           "share/man/man8/hoptrace.8": 0o644,
                           "share/man/man1/hoptrace-collect.1": 0o644,
                           "share/doc/hoptrace/README.md": 0o644,
                           "share/doc/hoptrace/hoptrace.default": 0o644,
                           "lib/systemd/system/hoptrace.service": 0o644}.items():
            st = os.stat(os.path.join(top, path))
            assert st.st_mode & 0o7777 == mode, f"{path}: mode {st.st_mode & 0o7777:o}"
        with open(os.path.join(top, "lib/systemd/system/hoptrace.service")) as f:
            unit = f.read()
        assert f"\nExecStart={prefix}/bin/hoptrace $HOPTRACE_ARGS\n" in unit, unit
        assert "\nStateDirectory=hoptrace\n" in unit, unit  # the store's /var/lib/hoptrace
        assert "/usr/local" not in unit, "the installed unit names another prefix"
        assert f"\nDocumentation=man:hoptrace(8) file://{prefix}/share/doc/hoptrace/README.md\n" \
            in unit, unit
        # nothing outside the prefix (the admin's /etc is not written)
        outside = [os.path.join(d, f) for d, _, fs in os.walk(stage) for f in fs
                   if not os.path.join(d, f).startswith(top + "/")]
        assert not outside, outside
        with open(os.path.join(top, "bin/hoptrace"), "rb") as f, \
             open(os.path.join(BUILD, "hoptrace"), "rb") as g:
            assert f.read() == g.read(), "bin/hoptrace is not the release build"
        _run(args + ["uninstall"], 60)
        left = [os.path.join(d, f) for d, _, fs in os.walk(stage) for f in fs]
        assert not left, f"make uninstall left {left}"
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def test_deb_1_package():
    _require_root_tools()
    _start_root()  # debootstrap downloads while the package compiles
    deb = _deb()

    depends = _deb_field(deb, "Depends")
    print(f"  Depends: {depends}", flush=True)
    # (libelf1 comes through libbpf1: the agent calls no libelf function itself)
    for lib in ("libbpf1", "libcurl4", "libprotobuf-c1", "libseccomp2", "libmicrohttpd12",
                "libsqlite3-0", "zlib1g", "libc6"):
        assert re.search(rf"(^|, ){re.escape(lib)}( |,|$)", depends), \
            f"dpkg-shlibdeps left {lib} out of Depends: {depends}"

    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True,
                             check=True).stdout
    files = {}
    for line in listing.splitlines():
        mode, path = line.split()[0], line.split()[-1]
        files[path.lstrip(".")] = mode
    for path, mode in {"/usr/bin/hoptrace": "-rwxr-xr-x",
                       "/usr/bin/hoptrace-collect": "-rwxr-xr-x",
                       "/usr/share/man/man8/hoptrace.8.gz": "-rw-r--r--",
                       "/usr/share/man/man1/hoptrace-collect.1.gz": "-rw-r--r--",
                       "/lib/systemd/system/hoptrace.service": "-rw-r--r--",
                       "/usr/share/doc/hoptrace/README.md": "-rw-r--r--",
                       "/usr/share/doc/hoptrace/copyright": "-rw-r--r--",
                       "/etc/default/hoptrace": "-rw-------"}.items():
        assert files.get(path) == mode, f"{path}: {files.get(path)} in the package, not {mode}"

    os.makedirs(WORK, exist_ok=True)
    with_control = os.path.join(WORK, "control")
    shutil.rmtree(with_control, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-e", deb, with_control], check=True)
    with open(os.path.join(with_control, "conffiles")) as f:
        assert "/etc/default/hoptrace" in f.read().split()
    # dh_installsystemd: the unit's state kept by deb-systemd-helper, stopped on removal
    # (test_deb_2 checks that installing does not enable it)
    with open(os.path.join(with_control, "postinst")) as f:
        postinst = f.read()
    assert "deb-systemd-helper update-state 'hoptrace.service'" in postinst, postinst
    with open(os.path.join(with_control, "prerm")) as f:
        assert "hoptrace.service" in f.read()
    shutil.rmtree(with_control)

    unit = subprocess.run(f"dpkg-deb --fsys-tarfile {deb} | tar -xOf - ./lib/systemd/system/hoptrace.service",
                          shell=True, capture_output=True, text=True, check=True).stdout
    assert re.search(r"^ExecStart=/usr/bin/hoptrace \$HOPTRACE_ARGS$", unit, re.M), unit
    assert "EnvironmentFile=-/etc/default/hoptrace" in unit
    # the hardening of issue 11 is the same as in deploy/hoptrace.service
    with open(os.path.join(ROOT, "deploy", "hoptrace.service")) as f:
        source = f.read()
    for line in source.splitlines():
        if line.startswith(("Capability", "Ambient", "Protect", "Restrict", "NoNewPrivileges",
                            "Limit", "MemoryDeny", "Private", "StateDirectory")):
            assert line in unit.splitlines(), f"the packaged unit lost {line!r}"


ROOT_SCRIPT = r"""
set -eu
R=$1 DEB=$2 ARCHIVES=$3
mount -t proc proc "$R/proc"
# BTF (/sys/kernel/btf/vmlinux), tracefs and bpffs as the host has them
mount --rbind /sys "$R/sys"
# a pty for apt's terminal log (a new devpts instance: the host's ptys stay out)
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts"
mount --bind "$ARCHIVES" "$R/var/cache/apt/archives"
cp /etc/resolv.conf "$R/etc/resolv.conf"
cp "$DEB" "$R/tmp/"
in_root() { chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
t0=$(date +%s)
in_root apt-get update -qq
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	"/tmp/$(basename "$DEB")"
echo "@@ apt-seconds $(( $(date +%s) - t0 ))"
echo "@@ self-test"
in_root /usr/bin/hoptrace --self-test
echo "@@ status"
in_root dpkg -s hoptrace
echo "@@ conffiles"
in_root dpkg-query -W -f='${Conffiles}\n' hoptrace
echo "@@ files"
in_root dpkg -L hoptrace
echo "@@ default"
in_root stat -c '%a %U' /etc/default/hoptrace
echo "@@ wants"
find "$R/etc/systemd/system" -name 'hoptrace*' 2>/dev/null || true
echo "@@ man"
in_root zcat /usr/share/man/man8/hoptrace.8.gz | head -5
echo "@@ end"
"""


def _sections(out):
    parts = {}
    name = None
    for line in out.splitlines():
        if line.startswith("@@ "):
            name = line[3:].split()[0]
            parts[name] = [line[3 + len(name):].strip()]
        elif name:
            parts[name].append(line)
    return {k: "\n".join(v) for k, v in parts.items()}


def _verify_unit(tree):
    """systemd-analyze on the installed unit. The minbase root has no systemd (no
    sysinit.target for --root=), so the host's systemd reads a copy whose ExecStart names
    the binary apt installed in the root: every directive known and valid, the binary
    executable, the man page there. Then its offline exposure score: the hardening of issue 11 keeps it at most
    5.0 (it is 4.4)."""
    unit_path = "/lib/systemd/system/hoptrace.service"
    with open(tree + unit_path) as f:
        unit = f.read()
    assert re.search(r"^ExecStart=/usr/bin/hoptrace ", unit, re.M), unit
    assert os.access(tree + "/usr/bin/hoptrace", os.X_OK)
    check_dir = os.path.join(WORK, f"unit-{os.getpid()}")
    os.makedirs(check_dir, exist_ok=True)
    try:
        copy = os.path.join(check_dir, "hoptrace.service")
        with open(copy, "w") as f:
            f.write(unit.replace("ExecStart=/usr/bin/hoptrace ", f"ExecStart={tree}/usr/bin/hoptrace "))
        # Documentation=man:hoptrace(8) is looked up (by man) in the root's pages
        env = dict(os.environ, MANPATH=f"{tree}/usr/share/man")
        for argv in (["systemd-analyze", "verify", copy],
                     ["systemd-analyze", "security", "--offline=true", "--threshold=50",
                      "--no-pager", copy]):
            r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
            assert r.returncode == 0 and "Failed" not in r.stderr, \
                f"{' '.join(argv[:2])}:\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
    finally:
        shutil.rmtree(check_dir)


def test_deb_2_fresh_root():
    _require_root_tools()
    job = _start_root()
    deb = _deb()
    t0 = time.time()
    tarball, root_s, how = job.result(timeout=DEBOOTSTRAP_TIMEOUT_S + 300)
    print(f"  root: {how} in {root_s:.0f} s, {os.path.getsize(tarball)} bytes", flush=True)
    archives = os.path.join(WORK, "apt-archives")
    os.makedirs(os.path.join(archives, "partial"), exist_ok=True)
    _remove_stale()
    tree = os.path.join(WORK, f"root-{os.getpid()}")
    if os.path.exists(tree):
        _rm_tree(tree)
    os.makedirs(tree)
    try:
        _run(["tar", "-C", tree, "--zstd", "-xf", tarball], 300)
        # the mounts live in this namespace only: they go when the script ends, however
        out = _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", ROOT_SCRIPT,
                    "sh", tree, os.path.abspath(deb), archives], CHROOT_TIMEOUT_S)
        parts = _sections(out)
        assert "end" in parts, out[-4000:]
        assert parts["self-test"].rstrip().endswith("hoptrace self-test: ok"), parts["self-test"]
        print("  in the root: " + " | ".join(parts["self-test"].strip().split("\n")[:3]), flush=True)
        status = parts["status"]
        assert "Status: install ok installed" in status, status
        depends = re.search(r"^Depends: (.*)$", status, re.M).group(1)
        assert "libbpf1" in depends, depends
        assert "/etc/default/hoptrace" in parts["conffiles"], parts["conffiles"]
        installed = parts["files"].split("\n")
        for path in ("/usr/bin/hoptrace", "/usr/bin/hoptrace-collect",
                     "/usr/share/man/man8/hoptrace.8.gz", "/lib/systemd/system/hoptrace.service"):
            assert path in installed, f"{path} not installed:\n{parts['files']}"
            assert os.path.exists(tree + path), path
        assert parts["default"].split() == ["600", "root"], parts["default"]
        # installed disabled: it starts once the admin has configured and enabled it
        assert parts["wants"].strip() == "", f"the unit was enabled:\n{parts['wants']}"
        assert parts["man"].lstrip().startswith(".\\\"") and ".TH HOPTRACE 8" in parts["man"]
        _verify_unit(tree)
        print(f"  apt-get install + self-test: {parts['apt-seconds']} s of apt; "
              f"whole step {time.time() - t0:.0f} s; Depends: {depends}", flush=True)
    finally:
        _rm_tree(tree)
