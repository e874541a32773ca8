"""Helpers for hoptrace integration tests: run the real agent, real servers, real clients.

Nothing here fakes the kernel: the agent loads its BPF programs and traces the processes
the tests start. Tests select their own ports (--port) so other traffic on the host does
not disturb them.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
AGENT = os.environ.get("HOPTRACE_AGENT", os.path.join(ROOT, "build", "san", "hoptrace"))
BUILD = os.environ.get("HOPTRACE_BUILD", os.path.join(ROOT, "build"))
IN_CI = os.environ.get("CI", "") == "true"
# Emulated kernels (tests/kernels/, qemu TCG) run everything several times slower: waits
# for something to happen are multiplied by this (never the durations a test measures).
SLOWDOWN = float(os.environ.get("HOPTRACE_TEST_SLOWDOWN", "1") or 1)
# Without a collector the agent writes its store (-o store); a test that runs it without -o
# must not write the host's /var/lib/hoptrace, nor share one store with the other tests' runs
# by accident: every agent the suite starts gets this private one unless the test says
# otherwise (tests/integration/test_store.py does).
if not os.environ.get("HOPTRACE_STORE"):
    os.environ["HOPTRACE_STORE"] = os.path.join(tempfile.mkdtemp(prefix="hoptrace-store-"),
                                                "traces.db")


def slow(seconds):
    """A wait for something to happen, scaled for slow (emulated) machines."""
    return seconds * SLOWDOWN


class SkipTest(Exception):
    pass


class BpfUnavailable(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, host="127.0.0.1"):
    timeout = slow(timeout)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {host}:{port} after {timeout}s")


def require(cmd):
    from shutil import which
    if which(cmd) is None:
        if IN_CI:
            raise AssertionError(f"{cmd} is not installed (build.sh test installs it)")
        raise SkipTest(f"{cmd} not installed")


def read_lines(path, whole, errors="replace"):
    """A file another process writes, as text: while the writer runs (whole=False) only up
    to its last newline, the rest being a line still being written. A reader of a regular
    file can see part of a write(2), however the writer writes; once the writer has exited
    (whole=True) nothing is in progress and a last line without a newline is real."""
    with open(path, "rb") as f:
        data = f.read()
    if not whole:
        data = data[:data.rfind(b"\n") + 1]
    return data.decode(errors=errors)


def json_lines(path, whole):
    """The JSON objects of a JSON-lines file (see read_lines for whole). Split on "\n"
    only: str.splitlines() also splits at U+2028 and U+0085, which JSON leaves raw."""
    return [json.loads(line) for line in read_lines(path, whole, errors="strict").split("\n")
            if line]


class Proc:
    """A background process killed at the end of the test."""

    def __init__(self, argv, **kw):
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        self.p = subprocess.Popen(argv, start_new_session=True, **kw)

    @property
    def pid(self):
        return self.p.pid

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(timeout=10)


class Agent:
    """Runs hoptrace with JSON output into a file; stop() returns the spans."""

    def __init__(self, *args, output="json", env=None, out_file=True, stdout=None, wrap=()):
        """out_file: spans to a file (-O), else to stdout, which is a file unless stdout
        says otherwise (subprocess.PIPE). wrap: a command the agent runs under (timeout),
        in its own process group."""
        self.dir = tempfile.mkdtemp(prefix="hoptrace-test-")
        self.out_path = os.path.join(self.dir, "out")
        self.err_path = os.path.join(self.dir, "err")
        argv = [AGENT, *(["-O", self.out_path] if out_file else []), *args]
        if output:
            argv[1:1] = ["-o", output]
        self.wrapped = bool(wrap)
        argv[0:0] = wrap
        e = dict(os.environ)
        # LeakSanitizer: the agent must free everything it allocated
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        if not output:
            e.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
            e.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
        if env:
            e.update(env)
        self.err = open(self.err_path, "w")
        self.stdout_path = os.path.join(self.dir, "stdout")
        self.outf = open(self.stdout_path, "w")
        self.p = subprocess.Popen(argv, stdout=self.outf if stdout is None else stdout,
                                  stderr=self.err, env=e, start_new_session=self.wrapped)
        self.spans = None
        self.counters = {}
        try:
            self._wait_ready()
        except BaseException:
            self.kill()  # an agent left running would trace (and break) the next tests
            raise

    def running(self):
        return self.p.poll() is None

    def stderr(self):
        """The log so far: complete lines only while the agent runs."""
        return read_lines(self.err_path, whole=not self.running())

    def stdout(self):
        return read_lines(self.stdout_path, whole=not self.running())

    def _wait_ready(self, timeout=30.0):
        deadline = time.time() + slow(timeout)
        while time.time() < deadline:
            text = self.stderr()
            if "tracing HTTP/1.x" in text:
                time.sleep(0.2)
                return
            if self.p.poll() is not None:
                text = self.stderr()  # whole, now that it has exited
                if any(m in text for m in ("cannot load", "cannot attach", "cannot open the BPF",
                                           "cannot create the BPF", "no capture backend")):
                    raise BpfUnavailable(text[-2000:])
                raise AssertionError(f"agent exited early (rc={self.p.returncode}):\n{text[-3000:]}")
            time.sleep(0.05)
        raise AssertionError("agent not ready after %ss:\n%s" % (timeout, self.stderr()[-3000:]))

    def stop(self, settle=0.5):
        """Stop with SIGINT (clean shutdown), return the list of spans."""
        if self.spans is not None:
            return self.spans
        time.sleep(slow(settle))
        self.p.send_signal(signal.SIGINT)
        try:
            rc = self.p.wait(timeout=slow(30))
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise AssertionError("agent did not stop within 30 s of SIGINT")
        self.err.close()
        self.outf.close()
        text = self.stderr()
        if rc != 0:
            raise AssertionError(f"agent exited with {rc}:\n{text[-4000:]}")
        for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if bad in text:
                raise AssertionError(f"sanitizer report from the agent:\n{text[-6000:]}")
        self.counters = parse_counters(text)
        self.spans = []
        if not os.path.exists(self.out_path):  # otlp output writes no file
            return self.spans
        with open(self.out_path, errors="strict") as f:
            if self.output_is_json():
                for line in f:
                    self.spans.append(json.loads(line))
            else:
                self.text = f.read()
        return self.spans

    def output_is_json(self):
        return "-o" in self.p.args and self.p.args[self.p.args.index("-o") + 1] == "json"

    def kill(self):
        if self.wrapped:
            # the agent is the wrapper's child: the whole group goes, or it would outlive
            # the test and trace the next ones
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def parse_counters(text):
    counters = {}
    started = False
    for line in text.splitlines():
        if line.startswith("hoptrace: counters"):
            started = True
            continue
        if started and line.startswith("  "):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                counters[parts[0]] = int(parts[1])
    return counters


def run(argv, timeout=60, check=True, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    r = subprocess.run(argv, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{argv} failed ({r.returncode}): {r.stderr[-2000:]!r}")
    return r


def curl(*args, timeout=30):
    require("curl")
    return run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *args], timeout=timeout)


def spans_where(spans, **kv):
    out = []
    for s in spans:
        ok = True
        for k, v in kv.items():
            if k.startswith("attr_"):
                key = k[5:].replace("__", ".")
                if s["attributes"].get(key) != v:
                    ok = False
            elif s.get(k) != v:
                ok = False
        if ok:
            out.append(s)
    return out


def one(spans, **kv):
    found = spans_where(spans, **kv)
    assert len(found) == 1, f"expected one span with {kv}, found {len(found)}:\n" + "\n".join(
        json.dumps(s) for s in spans)
    return found[0]


def python_server(port, directory=None, script=None, args=(), service=None):
    """python3 -m http.server, or one of the test scripts, on 127.0.0.1:port. service sets
    the process's OTEL_SERVICE_NAME (hoptrace reads it from the process environment)."""
    if script:
        argv = [sys.executable, os.path.join(HERE, script), str(port), *args]
    else:
        argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
        if directory:
            argv += ["--directory", directory]
    env = dict(os.environ)
    env.pop("OTEL_SERVICE_NAME", None)
    if service:
        env["OTEL_SERVICE_NAME"] = service
    p = Proc(argv, env=env)
    wait_port(port)
    return p


def nginx(port, server_body, http_extra="", static_files=True, listen_extra=""):
    """nginx in the foreground with one worker on 127.0.0.1:port, in a private temp dir.
    server_body goes inside server { }; {root} in it is replaced by the dir's html/ (which
    holds index.html and a 3 MiB big.bin when static_files)."""
    require("nginx")
    d = tempfile.mkdtemp(prefix="hoptrace-nginx-")
    os.chmod(d, 0o755)  # nginx workers run as an unprivileged user
    html = os.path.join(d, "html")
    os.makedirs(html)
    if static_files:
        with open(os.path.join(html, "index.html"), "w") as f:
            f.write("hello from nginx\n" * 120)
        with open(os.path.join(html, "big.bin"), "wb") as f:
            f.write(os.urandom(3 * 1024 * 1024))
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 100000;
  {http_extra}
  server {{
    listen 127.0.0.1:{port}{listen_extra};
    {server_body.replace("{root}", html)}
  }}
}}
""")
    p = Proc(["nginx", "-c", conf, "-e", f"{d}/error.log"])
    wait_port(port)
    return p


def unavailable(msg):
    """A test dependency could not be had: a failure in CI, a skip elsewhere."""
    if IN_CI:
        raise AssertionError(msg)
    raise SkipTest(msg)


def _npm_installed(modules, packages):
    for name, version in packages.items():
        try:
            with open(os.path.join(modules, name, "package.json")) as f:
                if json.load(f).get("version") != version:
                    return False
        except (OSError, ValueError):
            return False
    return True


def npm_modules(cache, packages):
    """node_modules holding the pinned npm packages, installed once into BUILD/cache and
    reused. In CI a failed install fails the test; elsewhere it skips."""
    import fcntl
    import shutil
    require("node")
    prefix = os.path.join(BUILD, cache)
    modules = os.path.join(prefix, "node_modules")
    if _npm_installed(modules, packages):
        return modules
    if shutil.which("npm") is None:
        unavailable(f"npm is not installed: cannot install {', '.join(packages)}")
    os.makedirs(prefix, exist_ok=True)
    with open(os.path.join(prefix, ".install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs must not install at once
        if _npm_installed(modules, packages):
            return modules
        argv = ["npm", "install", "--prefix", prefix, "--no-audit", "--no-fund", "--save-exact",
                *[f"{n}@{v}" for n, v in packages.items()]]
        try:
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
            out = r.stdout.decode(errors="replace")
        except subprocess.TimeoutExpired:
            r, out = None, "timed out after 300 s"
        if r is None or r.returncode != 0 or not _npm_installed(modules, packages):
            unavailable(f"cannot install npm packages with {' '.join(argv)}:\n{out[-2000:]}")
    return modules
