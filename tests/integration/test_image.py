"""The container image (issue 13): its contents, and the agent run from its root file
system as the Kubernetes DaemonSet runs it (image_run.py: a new mount namespace, the
read-only root, the runtime's and the DaemonSet's mounts, the host's PID namespace, exactly
the container's capabilities), tracing a real request between two host processes.

Needs `make image` (build/image: the root file system and the OCI archive; `make test`
builds it).
"""
import gzip
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
import time

import image_run
from image_run import ENTRYPOINT, OCI_ARCHIVE, ROOTFS, ImageRun, image_agent
from lib import BUILD, HERE, ROOT, Proc, curl, free_port, nginx, one, python_server, require, run, slow
from test_otlp_export import Collector, assert_nothing_lost

RELEASE_AGENT = os.path.join(BUILD, "hoptrace")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# linux/capability.h: the numbers of the capabilities a DaemonSet may add
CAP_NUMBERS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4,
               "KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "NET_BIND_SERVICE": 10,
               "NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14, "SYS_CHROOT": 18,
               "SYS_PTRACE": 19, "SYS_ADMIN": 21, "SYS_RESOURCE": 24, "MKNOD": 27,
               "AUDIT_WRITE": 29, "SETFCAP": 31, "PERFMON": 38, "BPF": 39}


def cap_mask(names):
    return sum(1 << CAP_NUMBERS[n] for n in names)


def ldd_paths(binary):
    """{soname: path} of what ldd resolves, the loader included (by its path)."""
    out = run(["ldd", binary]).stdout.decode()
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "=>":
            assert parts[2].startswith("/"), f"ldd cannot resolve: {line}"
            found[parts[0]] = parts[2]
        elif parts and parts[0].startswith("/"):
            found[os.path.basename(parts[0])] = parts[0]
    return found


def owners(paths):
    """{path: Debian package (no architecture)} of libraries ldd names, in one dpkg-query
    call (each call reads every file list); dpkg knows a library by one of its names only
    (merged /usr)."""
    names = {p: (p, os.path.realpath(p), "/usr" + p) for p in paths}
    r = run(["dpkg-query", "-S", *{n for ns in names.values() for n in ns}], check=False)
    owner = {}
    for line in r.stdout.decode().splitlines():
        pkg, _, path = line.partition(": ")
        owner[path] = pkg.split(":")[0]
    found = {}
    for p, ns in names.items():
        pkgs = [owner[n] for n in ns if n in owner]
        assert pkgs, f"no Debian package owns {p}"
        found[p] = pkgs[0]
    return found


def rootfs_entries(root):
    """{path: (kind, link target or size)} of every entry under root."""
    entries = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            rel = "/" + os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = ("dir", None)
            else:
                entries[rel] = ("file", st.st_size)
    return entries


def in_rootfs(root, path, depth=0):
    """path resolved inside root as the image sees it (absolute links are the image's)."""
    assert depth < 20, f"symbolic link loop at {path}"
    cur = root
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        nxt = os.path.join(cur, part)
        if os.path.islink(nxt):
            target = os.readlink(nxt)
            rest = "/".join(parts[i + 1:])
            base = target if target.startswith("/") else os.path.join(
                "/" + os.path.relpath(cur, root), target)
            return in_rootfs(root, os.path.normpath(os.path.join(base, rest)), depth + 1)
        cur = nxt
    return cur


# ---- contents --------------------------------------------------------------------------

def test_image_holds_every_library_ldd_names_and_nothing_else():
    """Every library `ldd build/hoptrace` names is in the root file system at the path the
    loader finds (the image's own loader, run in a chroot of it, resolves them all to the
    same paths), with its package's copyright file and dpkg record; every other regular
    file is the agent, the CA bundle (and ca-certificates' records) or nsswitch.conf: no
    shell, no package manager, nothing big besides."""
    image_run.require_tools()
    host = ldd_paths(RELEASE_AGENT)
    assert "libc.so.6" in host and "libbpf.so.1" in host, host
    for soname, path in host.items():
        real = in_rootfs(ROOTFS, path)
        assert os.path.isfile(real), f"{soname} ({path}) is not in the image"
    # the image's loader, in the image: what a container start resolves
    r = run(["chroot", ROOTFS, "/lib64/ld-linux-x86-64.so.2", "--list", ENTRYPOINT])
    inside = {}
    for line in r.stdout.decode().splitlines():
        parts = line.split()
        assert "not found" not in line, line
        if len(parts) >= 3 and parts[1] == "=>":
            inside[parts[0]] = parts[2]
    assert {k: v for k, v in host.items() if not k.startswith("ld-")} == inside, (host, inside)

    # each library's Debian package: its licence and its dpkg record (for image scanners)
    packages = set(owners(host.values()).values()) | {"ca-certificates"}
    for pkg in packages:
        with open(os.path.join(ROOTFS, "var/lib/dpkg/status.d", pkg)) as f:
            record = f.read()
        assert f"Package: {pkg}\n" in record and "\nVersion: " in record, record[:300]

    wanted = {os.path.realpath(p) for p in host.values()}
    expected_files = {ENTRYPOINT, CA_BUNDLE, "/etc/nsswitch.conf"} | {
        "/" + os.path.relpath(in_rootfs(ROOTFS, p), ROOTFS) for p in wanted} | {
        f"/usr/share/doc/{pkg}/copyright" for pkg in packages} | {
        f"/var/lib/dpkg/status.d/{pkg}" for pkg in packages}
    entries = rootfs_entries(ROOTFS)
    files = {p for p, (kind, _) in entries.items() if kind == "file"}
    assert files == expected_files, (sorted(files - expected_files),
                                     sorted(expected_files - files))
    total = sum(size for kind, size in entries.values() if kind == "file")
    assert total < 40 << 20, f"root file system is {total >> 20} MiB"
    assert not os.path.exists(os.path.join(ROOTFS, "bin", "sh")), "a shell in the image"


def oci_image(archive):
    """(config, [layer tar members]) of the single image in an OCI archive."""
    with tarfile.open(archive) as outer:
        def blob(digest):
            return outer.extractfile("blobs/" + digest.replace(":", "/")).read()
        index = json.loads(outer.extractfile("index.json").read())
        assert len(index["manifests"]) == 1, index
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        layers = []
        for layer in manifest["layers"]:
            data = blob(layer["digest"])
            if layer["mediaType"].endswith("gzip"):
                data = gzip.decompress(data)
            with tarfile.open(fileobj=io.BytesIO(data)) as t:
                layers.append(t.getmembers())
    return config, layers


def test_image_archive_is_the_rootfs_from_scratch():
    """`make image` (buildah, FROM scratch): one layer, nothing pulled, whose entries
    are exactly the root file system's (paths, kinds, link targets, sizes), the agent as
    ENTRYPOINT; prints the image's size."""
    image_run.require_tools()
    if not os.path.exists(OCI_ARCHIVE):
        image_run.fail_or_skip(f"no {OCI_ARCHIVE}: make image")
    assert os.path.getmtime(OCI_ARCHIVE) >= os.path.getmtime(
        os.path.join(ROOTFS, ENTRYPOINT.lstrip("/"))), "the archive is older than the root file system: make image"
    config, layers = oci_image(OCI_ARCHIVE)
    assert config["config"]["Entrypoint"] == [ENTRYPOINT], config["config"]
    # the environment image_run gives the agent is the image's
    assert config["config"]["Env"] == ["PATH=" + image_run.IMAGE_PATH_ENV], config["config"]
    with open(os.path.join(ROOT, "VERSION")) as f:
        version = f.read().strip()
    assert config["config"]["Labels"]["org.opencontainers.image.version"] == version
    assert len(layers) == 1, f"{len(layers)} layers: FROM scratch + one COPY is one"
    in_layer = {}
    for m in layers[0]:
        name = m.name.removeprefix("./").rstrip("/")
        if name in ("", "."):
            continue
        path = "/" + name
        kind = "link" if m.issym() else "dir" if m.isdir() else "file" if m.isfile() else "?"
        in_layer[path] = (kind, m.linkname if m.issym() else m.size if m.isfile() else None)
    assert in_layer == rootfs_entries(ROOTFS), sorted(
        set(in_layer.items()) ^ set(rootfs_entries(ROOTFS).items()))
    layer_bytes = sum(m.size for m in layers[0] if m.isfile())
    print(f"  image: {layer_bytes / 1e6:.1f} MB uncompressed, "
          f"{os.path.getsize(OCI_ARCHIVE) / 1e6:.1f} MB as an OCI archive")


# ---- run as the DaemonSet runs it -------------------------------------------------------

def mount_options(pid, mount_point):
    """The per-mount options of the last mount at mount_point in pid's mount namespace."""
    opts = None
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == mount_point:
                opts = fields[5].split(",")
    return opts


def status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def probe_port(container, port):
    """An httpGet probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p["containerPort"]
    raise AssertionError(f"probe port {port!r} is none of the container's ports")


def check_probes(plan, pid, timeout=10.0):
    """The manifest's liveness and readiness probes (httpGet), as kubelet sends them to the
    pod's address: from the agent's network namespace, each must answer 2xx within
    timeout (kubelet retries every periodSeconds; readiness comes once attached)."""
    for kind in ("livenessProbe", "readinessProbe"):
        get = (plan.container.get(kind) or {}).get("httpGet")
        if not get:
            continue
        url = (f"http://127.0.0.1:{probe_port(plan.container, get['port'])}"
               f"{get.get('path', '/')}")
        deadline = time.time() + slow(timeout)
        while True:
            r = run(["nsenter", f"--net=/proc/{pid}/ns/net", "curl", "-s", "-o", "/dev/null",
                     "-w", "%{http_code}", "--max-time", "2", url], check=False)
            code = r.stdout.decode()
            if code.startswith("2"):
                break
            assert time.time() < deadline, f"{kind} {url}: {code or r.stderr}"
            time.sleep(0.2)


def test_image_traces_a_host_request_as_the_daemonset_runs_it():
    """The image's root file system run as deploy/'s DaemonSet says (read-only root, its
    hostPath mounts, hostPID, exactly its capabilities, its network): the agent inside
    traces a request from curl on the host to a python server on the host, both spans with
    the host's PIDs. The agent is really contained: its root is the image (no /bin/sh), read
    only, in another mount namespace but the host's PID namespace, with the manifest's
    capabilities as bounding set and none inheritable or ambient, and an environment of
    exactly the image's and the manifest's variables. It runs with the manifest's own
    arguments (JSON output to one port added), and its liveness and readiness probes
    answer in the pod's network namespace."""
    plan = ImageRun()
    assert not plan.security.get("privileged"), "the DaemonSet must not be privileged"
    assert plan.pod.get("hostPID") is True, "the DaemonSet must use hostPID"
    port = free_port()
    srv = python_server(port)
    agent = None
    try:
        # the manifest's own arguments, then JSON on stdout of this port's requests only
        agent = image_agent(*plan.args, "-o", "json", "--port", str(port), output=None,
                            plan=plan)
        pid = agent.p.pid
        s = status(pid)
        assert int(s["CapBnd"], 16) == cap_mask(plan.caps), (s["CapBnd"], plan.caps)
        assert int(s["CapInh"], 16) == 0 and int(s["CapAmb"], 16) == 0, s
        assert int(s["CapPrm"], 16) & ~cap_mask(plan.caps) == 0, s
        assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
        assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
        same_net = os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
        assert same_net == plan.host_network, "network namespace not the manifest's"
        with open(f"/proc/{pid}/environ") as f:
            environ = dict(v.split("=", 1) for v in f.read().split("\0") if v)
        assert environ == plan.env, (environ, plan.env)  # nothing of the host's
        root = f"/proc/{pid}/root"
        assert os.path.isfile(root + ENTRYPOINT) and not os.path.exists(root + "/bin/sh")
        if plan.security.get("readOnlyRootFilesystem"):
            assert "ro" in mount_options(pid, "/"), mount_options(pid, "/")
        for kind, _, target, ro in plan.mounts:
            opts = mount_options(pid, target)
            assert opts is not None, f"{target} is not mounted in the container"
            assert ("ro" in opts) == ro, (target, opts)

        check_probes(plan, pid)

        code = curl(f"http://127.0.0.1:{port}/from-the-host").stdout.decode()
        assert code == "404", code
        agent.stop()
    finally:
        if agent:
            agent.kill()
            image_run.cleanup(agent)
        srv.stop()
    spans = [json.loads(line) for line in agent.stdout().split("\n") if line]
    server = one(spans, kind="SERVER", attr_server__port=port)
    client = one(spans, kind="CLIENT", attr_server__port=port)
    assert server["name"] == "GET /from-the-host", server
    assert server["pid"] == srv.pid, (server["pid"], srv.pid)
    assert client["service.name"] == "curl", client
    assert agent.counters.get("json_spans_written") == 2, agent.counters


def test_image_without_btf_fails_clearly():
    """A node without BTF (here /sys/kernel/btf hidden under an empty tmpfs, as a
    runtime's masked path would): the agent in the image exits non-zero within seconds with
    one error line that names the missing file, and loads nothing."""
    t0 = time.time()
    r = image_run.run_image_once("-o", "json", "--port", "1",
                                 plan=ImageRun(mask=["/sys/kernel/btf"]))
    took = time.time() - t0
    assert r.returncode not in (0, None), (r.returncode, r.stderr)
    assert took < slow(10), f"took {took:.1f} s"
    errors = [line for line in r.stderr.splitlines() if " error: " in line]
    assert len(errors) == 1 and "/sys/kernel/btf/vmlinux" in errors[0], r.stderr
    assert "libbpf" not in r.stderr, r.stderr
    assert r.stdout == "", r.stdout


# A name only the test's DNS server knows, and that server's address (a loopback address
# of its own: port 53 of 127.0.0.1 may be taken).
COLLECTOR_NAME = "collector.hoptrace.test"
DNS_ADDRESS = "127.13.0.53"


def dns_server(log):
    """dns_stub.py answering COLLECTOR_NAME with 127.0.0.1 on DNS_ADDRESS:53."""
    p = Proc([sys.executable, os.path.join(HERE, "dns_stub.py"), DNS_ADDRESS, COLLECTOR_NAME,
              "127.0.0.1", log], stderr=subprocess.PIPE)
    deadline = time.time() + slow(5)
    while not (os.path.exists(log) and "ready" in open(log).read()):
        if p.p.poll() is not None:
            raise AssertionError(f"dns_stub.py exited: {p.p.stderr.read().decode()[-1000:]}")
        assert time.time() < deadline, "dns_stub.py not ready"
        time.sleep(0.05)
    return p


def test_image_exports_otlp_over_tls_to_a_dns_name():
    """What the image's libraries do at run time, not only at load: the agent in the image
    exports OTLP/HTTP over TLS (OpenSSL through libcurl, the certificate checked) to
    https://collector.hoptrace.test, a name resolved through DNS (the image's
    nsswitch.conf, glibc's built-in resolver, a resolv.conf naming the test's DNS server)
    - nginx terminating TLS in front of hoptrace-collect. The CA and the resolv.conf come
    from extra read-only mounts, the endpoint from an extra variable (the hooks a test of
    the in-cluster config uses); the host network here, since the collector is the host's."""
    require("openssl")
    d = tempfile.mkdtemp(prefix="hoptrace-image-tls-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-subj", f"/CN={COLLECTOR_NAME}", "-addext",
         f"subjectAltName=DNS:{COLLECTOR_NAME}", "-days", "2", "-keyout", key, "-out", cert])
    resolv = os.path.join(d, "resolv.conf")
    with open(resolv, "w") as f:
        f.write(f"nameserver {DNS_ADDRESS}\noptions timeout:1 attempts:3\n")
    dns_log = os.path.join(d, "dns.log")
    dns = dns_server(dns_log)
    collector = front = srv = agent = None
    try:
        collector = Collector()
        tls_port, app_port = free_port(), free_port()
        front = nginx(tls_port, f"""
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{ proxy_pass http://127.0.0.1:{collector.port}; }}""", static_files=False,
                      listen_extra=" ssl")
        srv = python_server(app_port)
        plan = ImageRun(network="host",
                        extra_mounts=[(d, "/etc/hoptrace-test", True),
                                      (resolv, "/etc/resolv.conf", True)],
                        env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"https://{COLLECTOR_NAME}:{tls_port}",
                             "OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/hoptrace-test/cert.pem"})
        agent = image_agent("--port", str(app_port), output="otlp", plan=plan)
        assert curl(f"http://127.0.0.1:{app_port}/over-tls").stdout == b"404"
        agent.stop()
        spans = collector.wait_spans(2)
    finally:
        if agent:
            agent.kill()
            image_run.cleanup(agent)
        for p in (srv, front, collector, dns):
            if p:
                p.kill() if p is collector else p.stop()
    assert_nothing_lost(agent.counters)
    assert agent.counters["otlp_exported"] == 2, agent.counters
    assert sorted(s["kind"] for s in spans if s["name"] == "GET /over-tls") == [
        "CLIENT", "SERVER"], spans
    with open(dns_log) as f:
        assert f"1 {COLLECTOR_NAME}\n" in f.read(), "the name was not resolved through DNS"


def test_image_accepts_the_daemonsets_arguments():
    """The DaemonSet's args, given to the image's agent, are all options it knows with
    values it takes: they are parsed before the --help put after them, which then exits 0
    (a wrong one exits 64 first, as the unknown option here shows)."""
    plan = ImageRun()
    bad = image_run.run_image_once(*plan.args, "--no-such-option", "--help", plan=plan)
    assert bad.returncode == 64 and "no-such-option" in bad.stderr, (bad.returncode, bad.stderr)
    r = image_run.run_image_once(*plan.args, "--help", plan=plan)
    assert r.returncode == 0 and "Usage: hoptrace" in r.stdout, (plan.args, r.returncode,
                                                                  r.stderr)
