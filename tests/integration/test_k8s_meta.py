"""Kubernetes pod metadata (README "Kubernetes pod metadata"): real processes in real
cgroups shaped as the kubelet makes them, a replaying API server (k8s_apiserver.py), and
the spans' resources.

Each server process is moved into a crafted cgroup before it execs: a cgroup v2 directory
named as the systemd driver names a containerd container
(.../kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope), or, on this hybrid host,
a cgroup v1 directory of the named systemd hierarchy in the cgroupfs driver's layout
(.../kubepods/besteffort/pod<uid>/<id>). The agent reads /proc/PID/cgroup as it does in a
cluster; the API server answers with pods whose containerStatuses name those ids.
"""
import os
import re
import sys
import time
import uuid

from k8s_apiserver import ApiServer, make_pod
from lib import Agent, Proc, curl, free_port, json_lines, slow, unavailable, wait_port
from test_metrics import HttpMetricsReceiver, attrs_of, decode, requests_in

NODE = "node-test-1"
TOKEN = "s3cr3t-token-" + uuid.uuid4().hex


def cgroup_mounts():
    """(cgroup v2 mount point, the v1 name=systemd hierarchy's) of this host, either None."""
    v2 = v1 = None
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, mnt, fstype, opts = line.split()[:4]
            if fstype == "cgroup2" and v2 is None:
                v2 = mnt
            elif fstype == "cgroup" and "name=systemd" in opts.split(","):
                v1 = mnt
    return v2, v1


class Cgroup:
    """A cgroup directory made for the test, where the kubelet makes them: at the root of
    the hierarchy (the agent takes ids only from the kubelet's and the runtimes' trees, not
    from one a user may name). The parents it made are removed with it when empty."""

    def __init__(self, root, rel):
        self.root = root
        self.path = os.path.join(root, rel)
        self.made = []
        d = self.path
        while not os.path.isdir(d):
            self.made.append(d)
            d = os.path.dirname(d)
        os.makedirs(self.path, exist_ok=True)

    def remove(self):
        # the processes were killed: the leaf goes once they are gone, then the parents this
        # test made, unless another test's cgroups are still in them
        for _ in range(50):
            try:
                os.rmdir(self.path)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
        for d in self.made[1:]:
            try:
                os.rmdir(d)
            except OSError:
                return


def server_in(cg, port, service=None):
    """python3 -m http.server on 127.0.0.1:port, moved into cgroup cg before it execs."""
    env = dict(os.environ)
    env.pop("OTEL_SERVICE_NAME", None)
    env.pop("OTEL_RESOURCE_ATTRIBUTES", None)
    if service:
        env["OTEL_SERVICE_NAME"] = service
    procs = os.path.join(cg.path, "cgroup.procs")
    p = Proc(["sh", "-c", f'echo $$ > "{procs}" && exec "{sys.executable}" -m http.server '
              f'{port} --bind 127.0.0.1'], env=env)
    wait_port(port)
    return p


def new_ids():
    return uuid.uuid4().hex + uuid.uuid4().hex, str(uuid.uuid4())


def systemd_cgroup(v2, tag, pod_uid, cid):
    """tag: unused, the pod uid makes the path unique."""
    return Cgroup(v2, f"kubepods.slice/kubepods-burstable.slice/"
                  f"kubepods-burstable-pod{pod_uid.replace('-', '_')}.slice/"
                  f"cri-containerd-{cid}.scope")


def cgroupfs_cgroup(v1, tag, pod_uid, cid):
    return Cgroup(v1, f"kubepods/besteffort/pod{pod_uid}/{cid}")


def mounts_or_fail():
    v2, v1 = cgroup_mounts()
    if not v2 or not os.access(v2, os.W_OK):
        unavailable("no writable cgroup v2 mount (root needed)")
    return v2, v1


def agent_for(api, token_file, *extra, port_args=(), env=None):
    return Agent(*port_args, "--k8s-meta", "on", "--k8s-api", api.url, "--k8s-node-name", NODE,
                 "--k8s-token-file", token_file, *extra, env=env)


def wait_until(cond, timeout, what):
    deadline = time.time() + slow(timeout)
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def server_span(spans, port):
    found = [s for s in spans if s["kind"] == "SERVER"
             and s["attributes"].get("server.port") == port]
    assert found, f"no server span on port {port}"
    return found[-1]


def token_file():
    d = os.path.join("/tmp", f"hoptrace-k8s-token-{uuid.uuid4().hex}")
    with open(d, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(d, 0o600)
    return d


def test_pod_metadata_on_spans_and_metrics():
    """Two real processes, one per cgroup driver layout: every k8s.* attribute from the
    replayed pods, the owners derived (Deployment from a ReplicaSet, CronJob from a Job),
    service.name from the owner unless the process set its own, the metrics named alike,
    this node's pods only, the token sent and never logged."""
    v2, v1 = mounts_or_fail()
    # a hybrid host (this one) has the v1 name=systemd hierarchy: the cgroupfs-layout
    # process goes there, and its /proc/PID/cgroup names it on a v1 line only; a host with
    # cgroup v2 alone (Debian 12's default) gets the same layout in v2
    if not v1 or not os.access(v1, os.W_OK):
        v1 = v2
    tag = uuid.uuid4().hex[:8]
    cid_a, uid_a = new_ids()
    cid_b, uid_b = new_ids()
    cid_x, uid_x = new_ids()
    # the CronJob controller names the Job <cronjob>-<scheduled minute>; the pod follows
    minute = int(time.time() // 60)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(minute * 60 + 2))
    api = ApiServer()
    api.add(make_pod("checkout-7d4b9c8f6d-x2x9q", "shop", uid_a, NODE,
                     [("istio-proxy", None), ("app", cid_a)],
                     owner=("ReplicaSet", "checkout-7d4b9c8f6d"),
                     labels={"pod-template-hash": "7d4b9c8f6d"}))
    api.add(make_pod(f"report-{minute}-abcde", "batch", uid_b, NODE, [("report", cid_b)],
                     owner=("Job", f"report-{minute}"), labels={"app.kubernetes.io/name": "x"},
                     created=created, runtime="cri-o"))
    # the same container id on another node: not this agent's to know
    api.add(make_pod("elsewhere-0", "shop", uid_x, "node-other", [("app", cid_x)],
                     owner=("StatefulSet", "elsewhere")))
    tok = token_file()
    cg_a = systemd_cgroup(v2, tag, uid_a, cid_a)
    cg_b = cgroupfs_cgroup(v1, tag, uid_b, cid_b)
    cg_x = systemd_cgroup(v2, tag + "x", uid_x, cid_x)
    # a local user's process in a cgroup it named after pod a's container (as systemd lets
    # a user name scopes in its own tree): it must not take on pod a's identity
    cg_s = Cgroup(v2, f"hoptrace-user-{tag}.slice/app.slice/cri-containerd-{cid_a}.scope")
    port_a, port_b, port_x, mport = free_port(), free_port(), free_port(), free_port()
    port_s = free_port()
    procs, agent = [], None
    recv = HttpMetricsReceiver()
    try:
        procs.append(server_in(cg_a, port_a))
        procs.append(server_in(cg_b, port_b, service="own-name"))
        procs.append(server_in(cg_x, port_x))
        procs.append(server_in(cg_s, port_s))
        agent = agent_for(api, tok, "--metrics-listen", f"127.0.0.1:{mport}",
                          port_args=("--port", str(port_a), "--port", str(port_b),
                                     "--port", str(port_x), "--port", str(port_s)),
                          env={"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT":
                               f"http://127.0.0.1:{recv.port}/v1/metrics",
                               "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                               "OTEL_METRIC_EXPORT_INTERVAL": "60000"})  # one, at exit
        wait_until(lambda: api.count(watch=True) >= 1, 10, "the agent's first WATCH")
        for port in (port_a, port_b, port_x, port_s):
            assert curl(f"http://127.0.0.1:{port}/").stdout == b"200"
        time.sleep(slow(1.2))  # the metrics page renders once a second
        page = curl_text(f"http://127.0.0.1:{mport}/metrics")
        spans = agent.stop()
        err = agent.stderr()
    finally:
        if agent:
            agent.kill()
        for p in procs:
            p.stop()
        api.stop()
        recv.stop()
        for cg in (cg_a, cg_b, cg_x, cg_s):
            cg.remove()
    a = server_span(spans, port_a)
    assert a["service.name"] == "checkout", a  # the Deployment: no label, no OTEL_SERVICE_NAME
    ra = a["resource"]
    assert ra["container.id"] == cid_a and ra["k8s.pod.uid"] == uid_a, ra
    assert ra["k8s.pod.name"] == "checkout-7d4b9c8f6d-x2x9q", ra
    assert ra["k8s.namespace.name"] == "shop", ra
    assert ra["k8s.container.name"] == "app", ra
    assert ra["k8s.node.name"] == NODE, ra
    assert ra["k8s.replicaset.name"] == "checkout-7d4b9c8f6d", ra
    assert ra["k8s.deployment.name"] == "checkout", ra
    b = server_span(spans, port_b)
    assert b["service.name"] == "own-name", b  # the process's own setting wins
    rb = b["resource"]
    assert rb["container.id"] == cid_b and rb["k8s.pod.uid"] == uid_b, rb
    assert rb["k8s.job.name"] == f"report-{minute}", rb
    assert rb["k8s.cronjob.name"] == "report", rb
    assert rb["k8s.container.name"] == "report", rb
    x = server_span(spans, port_x)
    assert not [k for k in x["resource"] if k.startswith("k8s.") and k != "k8s.pod.uid"], x
    assert x["resource"]["container.id"] == cid_x
    spoof = server_span(spans, port_s)
    assert not [k for k in spoof["resource"] if k.startswith("k8s.") or k == "container.id"], spoof
    assert spoof["service.name"] != "checkout", spoof
    # the RED metrics carry the same resource: OTLP (decoded by npm's schema) and the
    # service_name label on the Prometheus page
    reqs = decode(requests_in(recv.dir))
    res = [attrs_of(rm.get("resource", {}).get("attributes"))
           for r in reqs for rm in r.get("resourceMetrics", [])]
    mres = [r for r in res if r.get("service.name") == "checkout"]
    assert mres, res
    for key in ("k8s.pod.name", "k8s.namespace.name", "k8s.pod.uid", "k8s.container.name",
                "k8s.node.name", "k8s.deployment.name"):
        assert mres[0].get(key) == ra[key], (key, mres[0])
    assert re.search(r'http_server_request_duration_seconds_count\{service_name="checkout"',
                     page), page[-3000:]
    # only this node's pods were asked for, with the token; the token is in no output
    lists = [q for path, q, _ in api.requests if "watch" not in q]
    assert lists and all(q.get("fieldSelector") == f"spec.nodeName={NODE}" for q in lists)
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in api.requests), api.requests[:3]
    with open(agent.out_path) as f:
        assert TOKEN not in f.read()
    assert TOKEN not in err and TOKEN not in page
    assert agent.counters["k8s_lists"] >= 1
    assert agent.counters["k8s_lookup_hits"] >= 2
    assert agent.counters["k8s_pods_cached"] == 2, agent.counters
    os.unlink(tok)


def curl_text(url):
    from lib import run
    return run(["curl", "-sS", url], timeout=10).stdout.decode()


def span_on(agent, port, cond, timeout):
    """Wait for a server span on port (written while the agent runs) that satisfies cond."""
    found = []

    def ready():
        found[:] = [s for s in json_lines(agent.out_path, whole=False)
                    if s["kind"] == "SERVER" and s["attributes"].get("server.port") == port
                    and cond(s)]
        return bool(found)

    wait_until(ready, timeout, f"a span on port {port}")
    return found[-1]


def test_api_down_churn_and_410_relist():
    """The API server is down at start: spans still go out at once, without pod metadata,
    and the log says so once. When it comes up, the same process's next span carries its
    pod (its resource refreshed). A pod added later arrives by WATCH (churn); after a
    compaction the WATCH gets 410 Gone (as an ERROR event) and a new LIST brings the pods
    added meanwhile."""
    v2, _ = mounts_or_fail()
    tag = uuid.uuid4().hex[:8]
    ids = [new_ids() for _ in range(3)]
    cgs = [systemd_cgroup(v2, f"{tag}{i}", uid, cid) for i, (cid, uid) in enumerate(ids)]
    ports = [free_port() for _ in ids]
    pods = [make_pod(f"web-{i}", "prod", uid, NODE, [("web", cid)], owner=("StatefulSet", "web"),
                     labels={"app.kubernetes.io/name": f"web-app-{i}"})
            for i, (cid, uid) in enumerate(ids)]
    api = ApiServer(start=False, gone_as_event=True)  # refused connections first
    api.add(pods[0])
    tok = token_file()
    procs, agent = [], None
    try:
        procs.append(server_in(cgs[0], ports[0]))
        agent = agent_for(api, tok, "--k8s-backoff-max-ms", "400", "--k8s-watch-timeout", "30",
                          port_args=sum((("--port", str(p)) for p in ports), ()))
        wait_until(lambda: "kubernetes pod metadata unavailable" in agent.stderr(), 10,
                   "the unavailable log line")
        t0 = time.time()
        assert curl(f"http://127.0.0.1:{ports[0]}/").stdout == b"200"
        s = span_on(agent, ports[0], lambda s: True, 5)
        down_latency = time.time() - t0
        assert "k8s.pod.name" not in s["resource"], s
        assert s["resource"]["container.id"] == ids[0][0]
        time.sleep(slow(1.0))  # a few more refused retries: still one log line
        api.up()
        wait_until(lambda: api.count(watch=True) >= 1, 10, "the WATCH after the API came up")
        assert curl(f"http://127.0.0.1:{ports[0]}/").stdout == b"200"
        s = span_on(agent, ports[0], lambda s: "k8s.pod.name" in s["resource"], 5)
        assert s["resource"]["k8s.pod.name"] == "web-0", s
        assert s["resource"]["k8s.statefulset.name"] == "web", s
        assert s["service.name"] == "web-app-0", s
        # churn: a pod added while the agent watches, then its process
        api.add(pods[1])
        watches = api.count(watch=True)
        procs.append(server_in(cgs[1], ports[1]))
        assert curl(f"http://127.0.0.1:{ports[1]}/").stdout == b"200"
        s = span_on(agent, ports[1], lambda s: "k8s.pod.name" in s["resource"], 5)
        assert s["resource"]["k8s.pod.name"] == "web-1", s
        assert api.count(watch=False) == 1, "a pod added by WATCH needs no new LIST"
        api.delete(ids[0][1])
        # compaction: the open WATCH ends, the next one is answered 410, a LIST follows
        api.compact()
        api.add(pods[2])
        wait_until(lambda: api.count(watch=False) >= 2, 10, "the LIST after 410 Gone")
        assert api.count(watch=True) > watches
        procs.append(server_in(cgs[2], ports[2]))
        assert curl(f"http://127.0.0.1:{ports[2]}/").stdout == b"200"
        s = span_on(agent, ports[2], lambda s: "k8s.pod.name" in s["resource"], 5)
        assert s["resource"]["k8s.pod.name"] == "web-2", s
        spans = agent.stop()
        err = agent.stderr()
    finally:
        if agent:
            agent.kill()
        for p in procs:
            p.stop()
        api.stop()
        for cg in cgs:
            cg.remove()
        os.unlink(tok)
    assert down_latency < slow(3), f"a span took {down_latency:.1f}s while the API was down"
    assert err.count("kubernetes pod metadata unavailable") == 1, err
    assert "kubernetes pod metadata available again: 1 pods" in err, err
    assert TOKEN not in err
    c = agent.counters
    assert c["k8s_api_errors"] >= 2, c
    assert c["k8s_relists_gone"] >= 1, c
    assert c["k8s_lists"] >= 2, c
    assert c["k8s_watch_events"] >= 2, c  # ADDED web-1, DELETED web-0 (and the ERROR)
    assert c["k8s_meta_unavailable"] >= 1, c
    assert c["k8s_pods_cached"] == 2, c  # web-0 deleted
    assert c.get("k8s_api_unavailable", 0) == 0, c
    assert len(spans) >= 4


def test_standalone_fixture_paged_list():
    """k8s_apiserver.py run on its own from the committed fixture (a PodList recorded in the
    API server's shape, then an ADDED and a DELETED event): the agent reads the list in
    pages of one pod, only node-a's, and follows the events."""
    port = free_port()
    fixture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "k8s_fixtures", "basic")
    server = Proc([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                "k8s_apiserver.py"),
                   "--port", str(port), "--fixture", fixture])
    agent = None
    try:
        wait_port(port)
        agent = Agent("--port", str(free_port()), "--k8s-meta", "on", "--k8s-api",
                      f"http://127.0.0.1:{port}", "--k8s-node-name", "node-a",
                      "--k8s-token-file", "/nonexistent", "--k8s-list-page", "1")
        wait_until(lambda: "kubernetes pod metadata available: 2 pods" in agent.stderr(), 10,
                   "the paged LIST")
        time.sleep(slow(1.5))  # the fixture's two events, half a second apart
        agent.stop()
    finally:
        if agent:
            agent.kill()
        server.stop()
    c = agent.counters
    assert c["k8s_lists"] == 2, c  # node-a has two pods in the list: two pages of one
    assert c["k8s_watch_events"] == 2, c
    assert c["k8s_pods_cached"] == 2, c  # + report (ADDED) - checkout (DELETED)
    assert c.get("k8s_api_errors", 0) == 0, c


def test_a_server_that_expires_every_watch_is_not_hammered():
    """A server (or a proxy) that answers every WATCH with 410 Gone, right after each LIST:
    the agent pauses between such short rounds (doubling up to --k8s-backoff-max-ms), so
    it does not spin LIST after LIST against it (22 requests a second before the pause)."""
    api = ApiServer()
    api.oldest_rv = 10 ** 9  # every resourceVersion is too old for a WATCH
    tok = token_file()
    agent = None
    try:
        agent = agent_for(api, tok, "--k8s-backoff-max-ms", "1000", port_args=("--port", "1"))
        wait_until(lambda: api.count(watch=True) >= 1, 10, "the agent's first WATCH")
        n0, t0 = api.count(), time.time()
        time.sleep(3)
        rate = (api.count() - n0) / (time.time() - t0)
        agent.stop()
    finally:
        if agent:
            agent.kill()
        api.stop()
        os.unlink(tok)
    # 250, 500, then 1000 ms pauses: a few rounds of two requests a second at most
    assert rate < 6, f"{rate:.0f} requests a second"
    assert agent.counters["k8s_relists_gone"] >= 2, agent.counters
