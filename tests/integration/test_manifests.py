"""The Kubernetes manifests (deploy/k8s): rendered by kubectl kustomize, validated against the
Kubernetes API schemas, held to the DaemonSet's policy, and run by the real agent.

- Rendering: `kubectl kustomize` of the base and of every overlay (in CI Debian's
  kubernetes-client, whose kustomize is v2: the manifests keep to what v2 understands).
- Schemas: tests/k8s/validate.js, with kubernetes-models (generated from the Kubernetes
  OpenAPI spec) installed by `npm ci` from tests/k8s/package-lock.json into BUILD/npm-k8s:
  types, enums, required fields, and no field the API does not know. A test breaks the base
  on purpose to show that the validator fails.
- Policy: the capabilities are exactly README "Privileges", the mounts exactly README
  "Kubernetes (DaemonSet)", no privileged container, the probes on the agent's real paths and
  port, --memory-limit well below the container's memory limit, and so on.
- The real agent started with each rendering's arguments and environment (ConfigMap, downward
  API) becomes ready on the probes' port and paths and stops within the grace period.
"""
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from lib import AGENT, BUILD, ROOT, free_port, require, unavailable

K8S = os.path.join(ROOT, "deploy", "k8s")
RENDERINGS = ["base", "overlays/otlp-grpc", "overlays/metrics-only", "overlays/kernel-5.10"]
# capabilities an overlay adds to README "Privileges" (kernels before 5.11: RLIMIT_MEMLOCK)
EXTRA_CAPS = {"overlays/kernel-5.10": {"SYS_RESOURCE"}}
NAMESPACE = "hoptrace"
# what kubectl's kustomize may say on stderr: v5 deprecates what v2 needs
KUSTOMIZE_WARNINGS = re.compile(r"^# Warning: '(bases|patchesStrategicMerge|patchesJson6902)' is deprecated")
# Memory the agent holds besides the --memory-limit budget, measured with
# tests/bench/k8s_memory.py (58 MiB: VmHWM under load plus the BPF maps, 2 CPUs), plus the
# bounded buffers that measurement does not fill (OTLP queue 6 MiB, metrics pages 24 MiB).
MEASURED_FIXED_MIB = 58
BOUNDED_BUFFERS_MIB = 30


# ---- tools -------------------------------------------------------------------------------

def kubectl():
    require("kubectl")
    return shutil.which("kubectl")


def npm_k8s_modules():
    """node_modules from tests/k8s/package-lock.json (npm ci), kept in BUILD/npm-k8s and
    installed again when the lock file changes."""
    require("node")
    src = os.path.join(ROOT, "tests", "k8s")
    prefix = os.path.join(BUILD, "npm-k8s")
    with open(os.path.join(src, "package-lock.json"), "rb") as f:
        stamp = hashlib.sha256(f.read()).hexdigest()
    stamp_path = os.path.join(prefix, ".lock-sha256")
    modules = os.path.join(prefix, "node_modules")

    def current():
        try:
            with open(stamp_path) as f:
                return f.read() == stamp and os.path.isdir(modules)
        except OSError:
            return False

    if current():
        return modules
    if shutil.which("npm") is None:
        unavailable("npm is not installed: cannot install tests/k8s/package-lock.json")
    os.makedirs(prefix, exist_ok=True)
    with open(os.path.join(prefix, ".install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs must not install at once
        if current():
            return modules
        for name in ("package.json", "package-lock.json"):
            shutil.copy(os.path.join(src, name), os.path.join(prefix, name))
        argv = ["npm", "ci", "--no-audit", "--no-fund", "--prefix", prefix]
        try:
            r = subprocess.run(argv, cwd=prefix, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=300)
            out = r.stdout.decode(errors="replace")
        except subprocess.TimeoutExpired:
            r, out = None, "timed out after 300 s"
        if r is None or r.returncode != 0:
            unavailable(f"cannot install tests/k8s/package-lock.json with {' '.join(argv)}:\n"
                        f"{out[-2000:]}")
        with open(stamp_path, "w") as f:
            f.write(stamp)
    return modules


def render(rel):
    """`kubectl kustomize deploy/k8s/REL` (or an absolute directory): the YAML stream."""
    r = subprocess.run([kubectl(), "kustomize", os.path.join(K8S, rel)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, f"kubectl kustomize {rel} failed:\n{err}"
    unexpected = [ln for ln in err.splitlines() if ln.strip() and not KUSTOMIZE_WARNINGS.match(ln)]
    assert not unexpected, f"kubectl kustomize {rel} complained:\n{err}"
    return r.stdout.decode()


def validate(yaml_text):
    """(ok, objects or the validator's errors) from tests/k8s/validate.js."""
    env = dict(os.environ, NODE_PATH=npm_k8s_modules())
    r = subprocess.run(["node", os.path.join(ROOT, "tests", "k8s", "validate.js")],
                       input=yaml_text.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=60)
    if r.returncode == 0:
        return True, json.loads(r.stdout)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1 and err.strip(), f"validate.js crashed ({r.returncode}):\n{err}"
    return False, err


_rendered = {}


def rendered(rel):
    """The validated objects of deploy/k8s/REL (rendered and validated once per run)."""
    if rel not in _rendered:
        ok, objects = validate(render(rel))
        assert ok, f"deploy/k8s/{rel} does not validate against the Kubernetes API schemas:\n{objects}"
        _rendered[rel] = objects
    return json.loads(json.dumps(_rendered[rel]))


def the(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(objects):
    ds = the(objects, "DaemonSet")
    containers = ds["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "the DaemonSet runs one container, the agent"
    return ds, ds["spec"]["template"]["spec"], containers[0]


def arg(c, flag):
    """The value of --flag=VALUE or --flag VALUE in the container's args."""
    args = c.get("args", [])
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
        if a == flag and i + 1 < len(args):
            return args[i + 1]
    return None


def readme_section(title):
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f'README.md has no section "{title}"'
    return m.group(1)


def readme_capabilities():
    """The capabilities of README "Privileges"'s table, without CAP_."""
    caps = set()
    for line in readme_section("Privileges").splitlines():
        if line.startswith("| `CAP_"):
            caps |= set(re.findall(r"`CAP_([A-Z_]+)`", line.split("|")[1]))
    assert caps, 'no capability table in README "Privileges"'
    return caps


def readme_mounts():
    """The host paths of README "Kubernetes (DaemonSet)"'s mount table."""
    mounts = set()
    for line in readme_section("Kubernetes (DaemonSet)").splitlines():
        m = re.match(r"^\| `(/[^`]+)` \|", line)
        if m:
            mounts.add(m.group(1))
    assert mounts, 'no mount table in README "Kubernetes (DaemonSet)"'
    return mounts


def mib(quantity):
    """A Kubernetes memory quantity (Mi, Gi, M, ...) or an agent size (K, M, G: binary) in MiB."""
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|K|M|G)?", quantity)
    assert m, f"unexpected size {quantity!r}"
    scale = {"Ki": 1 / 1024, "K": 1 / 1024, "Mi": 1, "M": 1, "Gi": 1024, "G": 1024,
             None: 1 / (1024 * 1024)}[m.group(2)]
    return int(m.group(1)) * scale


# ---- rendering and schemas ---------------------------------------------------------------

def test_manifests_render_and_validate():
    """Base and overlays render and every object passes the Kubernetes API schemas; every
    namespaced object lands in the hoptrace namespace and every reference resolves."""
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for rel in RENDERINGS:
        objects = rendered(rel)
        kinds = sorted(o["kind"] for o in objects)
        assert kinds == sorted(["Namespace", "ServiceAccount", "ClusterRole",
                                "ClusterRoleBinding", "ConfigMap", "DaemonSet"]), (rel, kinds)
        for o in objects:
            ns = o["metadata"].get("namespace")
            if o["kind"] in cluster_scoped:
                assert ns is None, (rel, o["kind"], ns)
            else:
                # kustomize v2 drops the namespace of a ConfigMap an overlay merges into
                assert ns == NAMESPACE, f"{rel}: {o['kind']}/{o['metadata']['name']} in {ns!r}"
        assert the(objects, "Namespace")["metadata"]["name"] == NAMESPACE
        ds, spec, c = container(objects)
        cm = the(objects, "ConfigMap")
        assert [e["configMapRef"]["name"] for e in c["envFrom"]] == [cm["metadata"]["name"]], rel
        assert spec["serviceAccountName"] == the(objects, "ServiceAccount")["metadata"]["name"]


def test_manifests_validator_rejects_broken_manifests():
    """The validator fails, naming the place, on each kind of mistake made on purpose."""
    base = render("base")
    ok, _ = validate(base)
    assert ok
    breakages = {
        # a misspelled field the API would drop (kubectl apply --validate=strict refuses it)
        "hostPID: true": ("hostPid: true", "/spec/template/spec/hostPid: unknown field"),
        # wrong type
        "periodSeconds: 10": ('periodSeconds: "10"', "/livenessProbe/periodSeconds: must be integer"),
        # not one of the enum's values
        "type: RuntimeDefault": ("type: Runtimedefault", "/seccompProfile/type: must be equal to one of"),
    }
    for good, (bad, expected) in breakages.items():
        assert good in base, good
        ok, errors = validate(base.replace(good, bad, 1))
        assert not ok, f"the validator accepted {bad!r}"
        assert expected in errors, f"{bad!r}: expected {expected!r} in:\n{errors}"
    # a container without its required name
    broken = re.sub(r"(\n +)name: hoptrace\n( +)ports:", r"\n\2ports:", base, count=1)
    assert broken != base
    ok, errors = validate(broken)
    assert not ok and "containers/0: must have required property" in errors, errors
    ok, errors = validate("apiVersion: apps/v1\nkind: DaemonSett\nmetadata: {name: x}\n")
    assert not ok and "unknown apiVersion/kind" in errors, errors


def test_manifests_readme_overlay_example():
    """README's example of an overlay of one's own renders, validates, and sets the image and
    the endpoint it says, in the hoptrace namespace."""
    section = readme_section("Kubernetes (DaemonSet)")
    m = re.search(r"```yaml\n(# my-cluster/kustomization.yaml.*?)```", section, re.S)
    assert m, 'no example overlay in README "Kubernetes (DaemonSet)"'
    d = tempfile.mkdtemp(prefix="hoptrace-overlay-")
    os.symlink(ROOT, os.path.join(d, "hoptrace"))
    os.mkdir(os.path.join(d, "my-cluster"))
    with open(os.path.join(d, "my-cluster", "kustomization.yaml"), "w") as f:
        f.write(m.group(1))
    try:
        text = render(os.path.join(d, "my-cluster"))
    finally:
        shutil.rmtree(d)
    ok, objects = validate(text)
    assert ok, objects
    ds, spec, c = container(objects)
    assert c["image"] == "registry.example/hoptrace:0.1.0", c["image"]
    cm = the(objects, "ConfigMap")
    assert cm["metadata"]["namespace"] == NAMESPACE
    assert cm["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://collector.example:4317"
    assert cm["data"]["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert c["envFrom"][0]["configMapRef"]["name"] == cm["metadata"]["name"]


# ---- policy ------------------------------------------------------------------------------

def test_manifests_daemonset_policy():
    caps = readme_capabilities()
    mounts = readme_mounts()
    with open(os.path.join(ROOT, "VERSION")) as f:
        version = f.read().strip()
    for rel in RENDERINGS:
        objects = rendered(rel)
        ds, spec, c = container(objects)
        sc = c["securityContext"]
        where = f"deploy/k8s/{rel}"
        # privileges: exactly README "Privileges", no privileged container, no escalation
        assert sc["privileged"] is False, where
        assert sc["allowPrivilegeEscalation"] is False, where
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["runAsUser"] == 0, where
        assert sc["capabilities"]["drop"] == ["ALL"], where
        want = caps | EXTRA_CAPS.get(rel, set())
        assert len(sc["capabilities"]["add"]) == len(want), (where, sc["capabilities"])
        assert set(sc["capabilities"]["add"]) == want, (where, sc["capabilities"], want)
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        annotations = spec_annotations(ds)
        assert annotations.get(f"container.apparmor.security.beta.kubernetes.io/{c['name']}") \
            == "unconfined", where
        assert "securityContext" not in spec or not spec["securityContext"].get("privileged"), where
        # host namespaces: the PID one only
        assert spec["hostPID"] is True, where
        assert not spec.get("hostNetwork") and not spec.get("hostIPC"), where
        # mounts: exactly README's list, read-only, each the same path as on the host
        volumes = {v["name"]: v for v in spec["volumes"]}
        seen = set()
        for m in c["volumeMounts"]:
            v = volumes[m["name"]]
            assert set(v) == {"name", "hostPath"}, (where, v)
            assert m.get("readOnly") is True, (where, m)
            assert v["hostPath"]["path"] == m["mountPath"], (where, m, v)
            assert v["hostPath"].get("type") == "Directory", (where, v)
            seen.add(m["mountPath"])
        assert seen == mounts, (where, seen, mounts)
        assert len(c["volumeMounts"]) == len(volumes) == len(mounts), where
        # probes on the endpoint --metrics-listen serves, on an address the kubelet reaches
        listen = arg(c, "--metrics-listen")
        assert listen, where
        addr, _, port = listen.rpartition(":")
        assert addr in ("0.0.0.0", "[::]"), f"{where}: the kubelet probes the pod IP, not {addr}"
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c[probe]["httpGet"]
            assert get["path"] == path, (where, probe, get)
            assert ports.get(get["port"], get["port"]) == int(port), (where, probe, get, ports)
        # memory: the budget plus what the agent holds besides it fit under the limit
        limit = mib(c["resources"]["limits"]["memory"])
        budget = mib(arg(c, "--memory-limit"))
        assert 0 < budget < limit, (where, budget, limit)
        assert budget + MEASURED_FIXED_MIB + BOUNDED_BUFFERS_MIB <= limit, (where, budget, limit)
        assert mib(c["resources"]["requests"]["memory"]) >= MEASURED_FIXED_MIB, where
        assert "cpu" not in c["resources"]["limits"], f"{where}: a throttled agent drops events"
        # placement, identity, configuration
        assert {"operator": "Exists"} in spec["tolerations"], where
        env = {e["name"]: e for e in c["env"]}
        assert env["K8S_NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
        names = [e["name"] for e in c["env"]]
        assert names.index("K8S_NODE_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES"), where
        assert "k8s.node.name=$(K8S_NODE_NAME)" in env["OTEL_RESOURCE_ATTRIBUTES"]["value"], where
        headers = env["OTEL_EXPORTER_OTLP_HEADERS"]["valueFrom"]["secretKeyRef"]
        assert headers["optional"] is True, where
        assert c["image"] == f"hoptrace:{version}", (where, c["image"])
        assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate", where
        assert spec["terminationGracePeriodSeconds"] >= 10, where
        # RBAC: read-only pods, bound to the agent's service account, whose token the pod
        # metadata client reads
        assert spec["automountServiceAccountToken"] is True, where
        role = the(objects, "ClusterRole")
        assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"],
                                  "verbs": ["get", "list", "watch"]}], (where, role["rules"])
        binding = the(objects, "ClusterRoleBinding")
        assert binding["roleRef"]["name"] == role["metadata"]["name"], where
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": spec["serviceAccountName"],
                                        "namespace": NAMESPACE}], where


def spec_annotations(ds):
    return ds["spec"]["template"]["metadata"].get("annotations", {})


# ---- the real agent with each rendering's settings ---------------------------------------

def agent_environment(objects, c, node):
    """The environment the kubelet would give the container: the ConfigMap (envFrom), then
    env with the downward API and $(VAR) references resolved."""
    cm = the(objects, "ConfigMap", c["envFrom"][0]["configMapRef"]["name"])
    env = dict(cm["data"])
    for e in c["env"]:
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)),
                                    e["value"])
        elif "fieldRef" in e.get("valueFrom", {}):
            assert e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
            env[e["name"]] = node
        # secretKeyRef: the Secret is optional and absent here
    return env


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def test_manifests_run_the_real_agent():
    """Each rendering's args and environment start the agent: ready on the probes' port and
    paths, the output the rendering asks for, and a stop within the grace period."""
    expected_output = {"base": "output otlp", "overlays/otlp-grpc": "output otlp",
                       "overlays/metrics-only": "output none (metrics only)",
                       "overlays/kernel-5.10": "output otlp"}
    for rel in RENDERINGS:
        objects = rendered(rel)
        ds, spec, c = container(objects)
        port = free_port()
        listen = arg(c, "--metrics-listen")
        args = [a.replace(listen, f"{listen.rpartition(':')[0]}:{port}") for a in c["args"]]
        env = agent_environment(objects, c, node="node-under-test")
        env.update(PATH=os.environ.get("PATH", "/usr/bin:/bin"),
                   ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        probes = {probe: f"http://127.0.0.1:{port}{c[probe]['httpGet']['path']}"
                  for probe in ("livenessProbe", "readinessProbe")}
        d = tempfile.mkdtemp(prefix="hoptrace-manifest-")
        with open(os.path.join(d, "err"), "w+") as err:
            p = subprocess.Popen([AGENT, *args], env=env, stdout=subprocess.DEVNULL, stderr=err)
            try:
                deadline = time.time() + 60
                while http_status(probes["readinessProbe"]) != 200:
                    assert p.poll() is None, f"{rel}: the agent exited:\n{read(err)}"
                    assert time.time() < deadline, f"{rel}: not ready in 60 s:\n{read(err)}"
                    time.sleep(0.2)
                assert http_status(probes["livenessProbe"]) == 200, rel
                log = read(err)
                assert expected_output[rel] in log, f"{rel}: {expected_output[rel]!r} not in:\n{log}"
                t0 = time.time()
                p.send_signal(signal.SIGTERM)  # what the kubelet sends first
                rc = p.wait(timeout=spec["terminationGracePeriodSeconds"])
                assert rc == 0, f"{rel}: exit {rc}:\n{read(err)}"
                assert time.time() - t0 < spec["terminationGracePeriodSeconds"], rel
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            log = read(err)
        for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert bad not in log, f"{rel}: sanitizer report from the agent:\n{log}"


def read(f):
    f.flush()
    f.seek(0)
    return f.read()[-4000:]
