"""Runs the container image's root file system the way the Kubernetes DaemonSet runs it,
without a container runtime (podman cannot run containers on this host's hybrid cgroups).

What a runtime (runc/crun under containerd or CRI-O) and kubelet do for the DaemonSet's pod,
and what is done here instead:
- a new mount namespace (unshare -m, private propagation): nothing leaks to the host;
- the image's root file system (build/image/rootfs, the tree `make image` copies into the
  image) copied onto a tmpfs, like the container's writable layer, then remounted read-only
  when the manifest says readOnlyRootFilesystem;
- the runtime's own mounts: /proc (a new procfs; in the host's PID namespace, as hostPID
  asks: no PID namespace is made), /dev (a tmpfs with null, zero, full, random, urandom and
  tty, and a /dev/shm), /sys (a new read-only sysfs), and kubelet's /etc/hosts and
  /etc/resolv.conf (the host's);
- the DaemonSet container's volumeMounts: a hostPath volume is bind-mounted recursively
  from the host (read-only when readOnly), an emptyDir is a tmpfs; other volumes
  (configMap, secret, projected) get what the caller passes in volume_dirs, else an empty
  read-only tmpfs;
- a network namespace with only loopback unless hostNetwork;
- allowPrivilegeEscalation: false sets no_new_privs (setpriv), as the runtime does;
- chroot into the root, then exactly the container's capabilities: bounding set = the
  runtime's default set minus securityContext.capabilities.drop plus add (drop ALL: only
  add), no inheritable and no ambient capabilities, uid 0 (the container runs as root);
  execve then gives the agent exactly that set (capsh --chroot --drop --inh= --noamb);
- the environment: the image's PATH, HOSTNAME, the manifest's env (literal values, the
  downward API's fieldRef (spec.nodeName: the host name, others made up or the caller's)
  and resourceFieldRef; $(VAR) references expanded as Kubernetes does; references to
  ConfigMaps and Secrets left out), then the caller's env;
- the image's ENTRYPOINT with the caller's arguments in place of the manifest's args.
Not emulated: the runtime's cgroup mount at /sys/fs/cgroup (the DaemonSet mounts the
host's), its masked /proc paths, /dev/pts, seccomp profiles and resource limits.
Every command is exec'd in turn (unshare, sh, env, capsh, the agent): the process the
caller starts becomes the agent, so signals reach it as kubelet's would.
"""
import math
import os
import re
import shlex
import shutil
import socket
import tempfile

from lib import BUILD, IN_CI, ROOT, Agent, SkipTest

ROOTFS = os.path.join(BUILD, "image", "rootfs")
OCI_ARCHIVE = os.path.join(BUILD, "image", "hoptrace.oci.tar")
ENTRYPOINT = "/usr/local/bin/hoptrace"
IMAGE_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Where the DaemonSet is: the Kustomize base, else the single-file manifest.
MANIFESTS = [os.path.join(ROOT, "deploy", "k8s", "base", "daemonset.yaml"),
             os.path.join(ROOT, "deploy", "daemonset.yaml")]
# The capabilities containerd and CRI-O give a container by default (before drop/add).
RUNTIME_DEFAULT_CAPS = {"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW",
                        "SETGID", "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE",
                        "SYS_CHROOT", "KILL", "AUDIT_WRITE"}
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
TOOLS = ("unshare", "nsenter", "capsh", "setpriv", "mount", "env", "ip", "cp")


def fail_or_skip(why):
    if IN_CI:
        raise AssertionError(why)
    raise SkipTest(why)


def manifest_path():
    for path in MANIFESTS:
        if os.path.exists(path):
            return path
    raise AssertionError(f"no DaemonSet manifest at {' or '.join(MANIFESTS)}")


def daemonset(path=None):
    """The DaemonSet object of the manifest (the first DaemonSet among its documents)."""
    try:
        import yaml
    except ImportError:
        fail_or_skip("python3-yaml is not installed (build.sh test installs it)")
    with open(path or manifest_path()) as f:
        for doc in yaml.safe_load_all(f):
            if doc and doc.get("kind") == "DaemonSet":
                return doc
    raise AssertionError(f"no DaemonSet in {path or manifest_path()}")


def agent_container(ds):
    containers = ds["spec"]["template"]["spec"]["containers"]
    for c in containers:
        if c.get("name") == "hoptrace":
            return c
    return containers[0]


def container_caps(container):
    """The container's capability names (no CAP_ prefix) as the runtime computes them."""
    caps = (container.get("securityContext") or {}).get("capabilities") or {}
    drop = {c.upper().removeprefix("CAP_") for c in caps.get("drop") or []}
    add = {c.upper().removeprefix("CAP_") for c in caps.get("add") or []}
    base = set() if "ALL" in drop else RUNTIME_DEFAULT_CAPS - drop
    return base | add


def all_cap_names():
    """Every capability this kernel knows, lower-case as capsh names them."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    import ctypes
    import ctypes.util
    libcap = ctypes.CDLL(ctypes.util.find_library("cap") or "libcap.so.2")
    libcap.cap_to_name.restype = ctypes.c_void_p
    libcap.cap_free.argtypes = [ctypes.c_void_p]
    names = []
    for n in range(last + 1):
        p = libcap.cap_to_name(n)
        names.append(ctypes.string_at(p).decode().lower())
        libcap.cap_free(p)
    return names


QUANTITY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3,
                     "M": 10**6, "G": 10**9, "T": 10**12, "m": 10**-3, "": 1}


def quantity(text):
    """A Kubernetes resource quantity ("256Mi", "50m", "1") as a number."""
    m = re.fullmatch(r"([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|T|m|)", str(text))
    assert m, f"quantity {text!r} not understood here"
    return float(m[1]) * QUANTITY_SUFFIXES[m[2]]


def resource_field(container, ref):
    """A resourceFieldRef's value as kubelet writes it: the quantity divided by the divisor,
    rounded up."""
    kind, _, name = ref["resource"].partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(name)
    assert value is not None, f"resourceFieldRef {ref['resource']}: not set in the manifest"
    return str(math.ceil(quantity(value) / quantity(ref.get("divisor", "1"))))


def container_env(container, fields):
    """The manifest's env as kubelet sets it, as far as it can be known here. fields: the
    downward API's fieldRef values by fieldPath."""
    env = {}
    for e in container.get("env") or []:
        source = e.get("valueFrom") or {}
        if "value" in e:
            # $(VAR) refers to a variable defined before it; $$(VAR) is a literal $(VAR)
            env[e["name"]] = re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                    lambda m: "$" if m.group(0) == "$$"
                                    else env.get(m.group(1), m.group(0)), str(e["value"]))
        elif "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            assert path in fields, f"env {e['name']}: fieldRef {path} unknown here (fields=)"
            env[e["name"]] = fields[path]
        elif "resourceFieldRef" in source:
            env[e["name"]] = resource_field(container, source["resourceFieldRef"])
    return env


def plan_mounts(ds, container, volume_dirs, omit):
    """(kind, source, target, readonly) for each of the container's volumeMounts."""
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"].get("volumes") or []}
    out = []
    for m in container.get("volumeMounts") or []:
        if m["name"] in omit or m["mountPath"] in omit:
            continue
        v = volumes.get(m["name"])
        assert v is not None, f"volumeMount {m['name']} has no volume"
        ro = bool(m.get("readOnly"))
        if "hostPath" in v:
            src = v["hostPath"]["path"]
            if m.get("subPath"):
                src = os.path.join(src, m["subPath"])
            out.append(("bind", src, m["mountPath"], ro))
        elif "emptyDir" in v:
            out.append(("tmpfs", None, m["mountPath"], ro))
        elif m["name"] in volume_dirs:
            out.append(("bind", volume_dirs[m["name"]], m["mountPath"], ro))
        else:
            out.append(("tmpfs", None, m["mountPath"], True))
    return out


def setup_script(newroot, rootfs, mounts, readonly_root, host_network, drop_caps, env,
                 no_new_privs):
    """The shell script run in the new namespaces: build the root, then exec the agent
    through env -i (exactly env) and capsh (chroot, then the capabilities)."""
    q = shlex.quote
    r = q(newroot)
    lines = ["set -eu",
             # the container's writable layer: a copy of the image on a tmpfs
             f"mount -t tmpfs -o mode=0755 hoptrace-root {r}",
             f"cp -a {q(rootfs)}/. {r}/",
             f"mount -t proc -o nosuid,nodev,noexec proc {r}/proc",
             f"mount -t tmpfs -o nosuid,mode=0755,size=64k tmpfs {r}/dev"]
    for node in DEV_NODES:
        lines += [f": > {r}/dev/{node}", f"mount --bind /dev/{node} {r}/dev/{node}"]
    lines += [f"mkdir {r}/dev/shm",
              f"mount -t tmpfs -o nosuid,nodev,noexec,size=64m shm {r}/dev/shm",
              f"mount -t sysfs -o ro,nosuid,nodev,noexec sysfs {r}/sys"]
    for f in ("/etc/hosts", "/etc/resolv.conf"):
        if os.path.exists(f):
            lines += [f": > {r}{f}", f"mount --bind {f} {r}{f}", f"mount -o remount,bind,ro {r}{f}"]
    for kind, src, target, ro in mounts:
        t = q(newroot + target)
        if kind == "tmpfs":
            lines += [f"mkdir -p {t} 2>/dev/null || test -d {t}",
                      f"mount -t tmpfs -o {'ro,' if ro else ''}nosuid,nodev,size=1m tmpfs {t}"]
            continue
        make = f"mkdir -p {t}" if os.path.isdir(src) else f"mkdir -p $(dirname {t}) && : > {t}"
        # a target under the read-only sysfs (/sys/kernel) exists already
        lines += [f"test -e {t} || {{ {make}; }}", f"mount --rbind {q(src)} {t}"]
        if ro:
            lines.append(f"mount -o remount,bind,ro {t}")
    if readonly_root:
        lines.append(f"mount -o remount,ro {r}")
    if not host_network:
        lines.append("ip link set lo up")
    # $1 is the host's agent path lib.Agent puts first: the image has its own
    lines.append("shift")
    assign = " ".join(q(f"{k}={v}") for k, v in env.items())
    nnp = "setpriv --no-new-privs " if no_new_privs else ""
    lines.append(f"exec env -i {assign} {nnp}capsh --chroot={r} --drop={','.join(drop_caps)} "
                 f'--inh= --noamb --shell={ENTRYPOINT} -- "$@"')
    return "\n".join(lines)


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def in_cluster(api_host, api_port, service_account_dir, env=None, extra_mounts=()):
    """ImageRun keyword arguments for the in-cluster configuration kubelet gives a pod:
    KUBERNETES_SERVICE_HOST/PORT and the service account's token, ca.crt and namespace
    (a host directory, mounted read-only where kubelet projects them). The API server
    (a replay of recorded responses) listens on the host: the host's network.
        plan = ImageRun(**in_cluster("127.0.0.1", port, token_dir), node_name="node-1")"""
    return {"env": {"KUBERNETES_SERVICE_HOST": api_host,
                    "KUBERNETES_SERVICE_PORT": str(api_port), **(env or {})},
            "extra_mounts": [(service_account_dir, SERVICE_ACCOUNT_DIR, True),
                             *extra_mounts],
            "network": "host"}


def require_tools():
    for tool in TOOLS:
        if shutil.which(tool) is None:
            fail_or_skip(f"{tool} is not installed (build.sh test installs it)")
    if not os.path.exists(os.path.join(ROOTFS, ENTRYPOINT.lstrip("/"))):
        fail_or_skip(f"no image root file system at {ROOTFS}: make image-rootfs")


class ImageRun:
    """The plan for one run: the manifest's container and what the caller changes."""

    def __init__(self, manifest=None, env=None, volume_dirs=None, omit_mounts=(),
                 extra_mounts=(), mask=(), network=None, node_name=None, fields=None,
                 rootfs=ROOTFS):
        """env: variables set after the manifest's (KUBERNETES_SERVICE_HOST, ...).
        volume_dirs: {volume name: host dir} for volumes that are not hostPath (a
        projected service-account token, a ConfigMap). omit_mounts: volume names or mount
        paths of the manifest left out. extra_mounts: (host path, container path, readonly)
        bind mounts added after the manifest's. mask: container paths hidden under an empty
        read-only tmpfs after every mount (a node without BTF: /sys/kernel/btf). network:
        "host" or "pod" (own namespace, loopback only); default: the manifest's
        hostNetwork. node_name: the downward API's spec.nodeName (default: the host
        name); fields: other fieldRef values by fieldPath (metadata.namespace, ...)."""
        self.manifest = manifest or manifest_path()
        self.ds = daemonset(self.manifest)
        self.pod = self.ds["spec"]["template"]["spec"]
        self.container = agent_container(self.ds)
        self.security = self.container.get("securityContext") or {}
        self.caps = container_caps(self.container)
        # the manifest's arguments (the tests pass their own instead; see args)
        self.args = [str(a) for a in self.container.get("args") or []]
        command = self.container.get("command")
        assert command in (None, [ENTRYPOINT]), f"command {command} is not the image's"
        # the container runs as the image's user, root: another user is not emulated
        user = self.security.get("runAsUser",
                                 (self.pod.get("securityContext") or {}).get("runAsUser", 0))
        assert user == 0, f"runAsUser {user}: only root is emulated here"
        self.host_network = (self.pod.get("hostNetwork", False) if network is None
                             else network == "host")
        self.mounts = plan_mounts(self.ds, self.container, volume_dirs or {}, set(omit_mounts))
        self.mounts += [("bind", src, dst, ro) for src, dst, ro in extra_mounts]
        self.mounts += [("tmpfs", None, path, True) for path in mask]
        meta = self.ds.get("metadata") or {}
        self.fields = {"spec.nodeName": node_name or socket.gethostname(),
                       "metadata.name": f"{meta.get('name', 'hoptrace')}-image-test",
                       "metadata.namespace": meta.get("namespace", "default"),
                       "metadata.uid": "00000000-0000-4000-8000-000000000013",
                       "spec.serviceAccountName": self.pod.get("serviceAccountName",
                                                               "default"),
                       "status.hostIP": "127.0.0.1", "status.podIP": "127.0.0.1",
                       **(fields or {})}
        self.env = {"PATH": IMAGE_PATH_ENV, "HOSTNAME": socket.gethostname()}
        self.env.update(container_env(self.container, self.fields))
        self.env.update(env or {})
        self.rootfs = rootfs

    def wrap(self, newroot):
        """The command the agent's arguments are appended to."""
        known = all_cap_names()
        unknown = {c for c in self.caps if f"cap_{c.lower()}" not in known}
        assert not unknown, f"capabilities this kernel does not know: {unknown}"
        drop = [n for n in known if n.removeprefix("cap_").upper() not in self.caps]
        script = setup_script(newroot, self.rootfs, self.mounts,
                              bool(self.security.get("readOnlyRootFilesystem")),
                              self.host_network, drop, self.env,
                              self.security.get("allowPrivilegeEscalation") is False)
        unshare = ["unshare", "--mount", "--propagation", "private"]
        if not self.host_network:
            unshare.append("--net")
        return [*unshare, "sh", "-c", script, "hoptrace-image"]


def image_agent(*args, plan=None, **agent_kw):
    """lib.Agent running the image's ENTRYPOINT with args as the DaemonSet would (see the
    module doc); stdout JSON unless args say otherwise. plan: an ImageRun (default: the
    manifest as it is). The returned Agent's newroot is the (host-side, empty) mount point
    of the container's root; remove it with cleanup()."""
    require_tools()
    plan = plan or ImageRun()
    newroot = tempfile.mkdtemp(prefix="hoptrace-image-root-")
    agent_kw.setdefault("out_file", False)
    try:
        agent = Agent(*args, wrap=plan.wrap(newroot), **agent_kw)
    except BaseException:
        os.rmdir(newroot)
        raise
    agent.newroot = newroot
    agent.plan = plan
    return agent


def cleanup(agent):
    """After the agent has exited: its mount namespace is gone, the mount point is empty."""
    try:
        os.rmdir(agent.newroot)
    except OSError:
        pass


def run_image_once(*args, plan=None, timeout=30):
    """Runs the image to its end (an agent expected to refuse to start): the completed
    process, stdout and stderr as text."""
    import subprocess
    require_tools()
    plan = plan or ImageRun()
    newroot = tempfile.mkdtemp(prefix="hoptrace-image-root-")
    try:
        return subprocess.run([*plan.wrap(newroot), ENTRYPOINT, *args], capture_output=True,
                              text=True, errors="replace", timeout=timeout)
    finally:
        os.rmdir(newroot)
