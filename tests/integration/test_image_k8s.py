"""The container image in a cluster (issue 13): the agent run from the image's root file
system as the DaemonSet runs it (image_run.py), with the in-cluster configuration kubelet
gives a pod - KUBERNETES_SERVICE_HOST/PORT, the service account's token, ca.crt and
namespace where kubelet projects them, the node name from the downward API - and nothing
else: no --k8s-* flag, so the agent's own detection switches pod metadata on. The API
server is the replaying one (k8s_apiserver.py) over HTTPS with its own CA, as a real one
is; the traced server is a host process in a cgroup named as the kubelet's systemd driver
names a containerd container. Its span must carry the pod's metadata.

Needs `make image` (`make test` builds it).
"""
import json
import os
import shutil
import tempfile
import time

import image_run
from image_run import ImageRun, image_agent, in_cluster
from k8s_apiserver import ApiServer, make_pod
from lib import curl, free_port, one, require, run, slow
from test_k8s_meta import mounts_or_fail, new_ids, server_in, systemd_cgroup

NODE = "node-image-1"
TOKEN = "image-test-token-" + os.urandom(8).hex()


def service_account(d):
    """A service-account directory as kubelet projects it, and the API server's certificate
    and key (the CA is the certificate itself, for the API server's IP address)."""
    cert, key = os.path.join(d, "apiserver.pem"), os.path.join(d, "apiserver.key")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-subj", "/CN=kube-apiserver", "-addext", "subjectAltName=IP:127.0.0.1",
         "-days", "2", "-keyout", key, "-out", cert])
    sa = os.path.join(d, "serviceaccount")
    os.mkdir(sa)
    shutil.copy(cert, os.path.join(sa, "ca.crt"))
    for name, text in (("token", TOKEN), ("namespace", "hoptrace")):
        with open(os.path.join(sa, name), "w") as f:
            f.write(text)
    return sa, (cert, key)


def test_image_in_cluster_pod_metadata():
    """The image's agent, configured only as kubelet configures a pod, lists this node's
    pods over HTTPS (the CA from the projected ca.crt, the bearer token), and the span of a
    request to a host process in a pod's cgroup carries that pod: k8s.pod.name,
    k8s.namespace.name, k8s.pod.uid, k8s.container.name, k8s.node.name, the Deployment, and
    service.name from the app.kubernetes.io/name label."""
    require("openssl")
    v2, _ = mounts_or_fail()
    d = tempfile.mkdtemp(prefix="hoptrace-image-k8s-")
    sa, tls = service_account(d)
    cid, uid = new_ids()
    api = ApiServer(tls=tls)
    api.add(make_pod("cart-5f7c9d8b4-q7w2x", "shop", uid, NODE, [("cart", cid)],
                     owner=("ReplicaSet", "cart-5f7c9d8b4"),
                     labels={"pod-template-hash": "5f7c9d8b4",
                             "app.kubernetes.io/name": "cart-service"}))
    cg = systemd_cgroup(v2, os.urandom(4).hex(), uid, cid)
    port = free_port()
    srv = agent = None
    try:
        srv = server_in(cg, port)
        plan = ImageRun(**in_cluster("127.0.0.1", api.port, sa), node_name=NODE)
        agent = image_agent("-o", "json", "--port", str(port), output=None, plan=plan)
        deadline = time.time() + slow(15)
        while not api.count(watch=True) and time.time() < deadline:
            time.sleep(0.05)
        assert api.count(watch=True), f"the agent never watched: {agent.stderr()[-2000:]}"
        assert curl(f"http://127.0.0.1:{port}/cart/items").stdout == b"404"
        agent.stop()
    finally:
        if agent:
            agent.kill()
            image_run.cleanup(agent)
        if srv:
            srv.stop()
        api.stop()
        cg.remove()
        shutil.rmtree(d, ignore_errors=True)
    out = agent.stdout()
    spans = [json.loads(line) for line in out.split("\n") if line]
    server = one(spans, kind="SERVER", attr_server__port=port)
    r = server["resource"]
    want = {"k8s.pod.name": "cart-5f7c9d8b4-q7w2x", "k8s.namespace.name": "shop",
            "k8s.pod.uid": uid, "k8s.container.name": "cart", "k8s.node.name": NODE,
            "k8s.deployment.name": "cart", "container.id": cid}
    assert {k: r.get(k) for k in want} == want, server
    assert server["service.name"] == "cart-service", server
    print("span from the image with pod metadata:", json.dumps(server))
    # only this node's pods, with the projected token; the token is in no output
    assert all(q.get("fieldSelector") == f"spec.nodeName={NODE}"
               for _, q, _ in api.requests), api.requests
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in api.requests), api.requests[:3]
    assert TOKEN not in out and TOKEN not in agent.stderr()
    assert agent.counters.get("k8s_lists", 0) >= 1, agent.counters
