#!/usr/bin/env python3
"""A small Kubernetes API server that replays pod objects, for hoptrace's metadata tests.

It serves what hoptrace's pod client asks for, shaped as a real API server answers:
  GET /api/v1/pods?fieldSelector=spec.nodeName=NODE&limit=N[&continue=T]
      a PodList page (kind, apiVersion, metadata.resourceVersion and .continue, items);
  GET /api/v1/pods?...&watch=1&resourceVersion=RV&timeoutSeconds=S
      a chunked stream of JSON events, one per line (ADDED, MODIFIED, DELETED, BOOKMARK),
      every event after RV, then new ones as they happen, until S seconds;
      RV older than the retained history: 410 Gone (as an HTTP status, or as an ERROR event
      with a Status of code 410, as real servers do once the watch is established).
Controls for tests: add/modify/delete pods (pod churn), compact() (forget the history: the
next watch from an old resourceVersion gets 410), down()/up() (connection refused while
down; open watches are cut), and the requests seen (path, query, Authorization).

As a module: ApiServer(port=0, node=...). Standalone, from a fixture directory:
    python3 tests/integration/k8s_apiserver.py --port P --fixture DIR
where DIR/pods.json is a PodList (as `kubectl get pods -o json` prints) and optional
DIR/events.jsonl holds watch events replayed after the list, one JSON object a line.
"""
import argparse
import copy
import json
import os
import socket
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def make_pod(name, namespace, uid, node, containers, owner=None, labels=None,
             created="2024-05-01T00:00:00Z", runtime="containerd"):
    """A pod object as the API server serves it. containers: [(name, container_id or None)];
    owner: (kind, name) of the controller ownerReference."""
    meta = {
        "name": name,
        "generateName": name.rsplit("-", 1)[0] + "-",
        "namespace": namespace,
        "uid": uid,
        "resourceVersion": "0",
        "creationTimestamp": created,
        "labels": dict(labels or {}),
        "annotations": {"kubectl.kubernetes.io/restartedAt": created},
        "managedFields": [{
            "manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
            "time": created, "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}}],
    }
    if owner:
        meta["ownerReferences"] = [{
            "apiVersion": "batch/v1" if owner[0] == "Job" else "apps/v1",
            "kind": owner[0], "name": owner[1], "uid": str(uuid.uuid4()),
            "controller": True, "blockOwnerDeletion": True}]
    spec_containers = [{
        "name": c, "image": f"registry.example/{c}:1.0", "imagePullPolicy": "IfNotPresent",
        "resources": {}, "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File"} for c, _ in containers]
    statuses = []
    for c, cid in containers:
        st = {"name": c, "image": f"registry.example/{c}:1.0",
              "imageID": f"registry.example/{c}@sha256:" + "0" * 64,
              "ready": cid is not None, "restartCount": 0, "started": cid is not None,
              "state": {"running": {"startedAt": created}} if cid else
              {"waiting": {"reason": "ContainerCreating"}}}
        if cid:
            st["containerID"] = f"{runtime}://{cid}"
        statuses.append(st)
    return {
        "kind": "Pod", "apiVersion": "v1", "metadata": meta,
        "spec": {"containers": spec_containers, "restartPolicy": "Always",
                 "dnsPolicy": "ClusterFirst", "serviceAccountName": "default",
                 "nodeName": node, "schedulerName": "default-scheduler",
                 "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                  "effect": "NoExecute", "tolerationSeconds": 300}]},
        "status": {"phase": "Running", "hostIP": "10.0.0.5", "podIP": "10.244.1.7",
                   "qosClass": "BestEffort", "startTime": created,
                   "containerStatuses": statuses},
    }


class ApiServer:
    """The replaying API server, on 127.0.0.1:port (0: any free port)."""

    def __init__(self, port=0, gone_as_event=False, start=True, tls=None):
        """tls: (certificate file, key file) to serve HTTPS, as a real API server does."""
        self.tls = tls
        self.lock = threading.Condition()
        self.rv = 1000
        self.pods = {}     # uid -> pod
        self.history = []  # (rv, type, pod)
        self.oldest_rv = self.rv  # a watch from before this gets 410
        self.generation = 0  # compactions so far
        self.requests = []  # (path, query dict, authorization header)
        self.gone_as_event = gone_as_event
        self.server = None
        self.conns = set()
        self.port = port or self._free_port()
        if start:
            self.up()

    @staticmethod
    def _free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    # ---- pods ------------------------------------------------------------------------------
    def _event(self, kind, pod):
        self.rv += 1
        pod = copy.deepcopy(pod)
        pod["metadata"]["resourceVersion"] = str(self.rv)
        self.history.append((self.rv, kind, pod))
        self.lock.notify_all()
        return pod

    def add(self, pod):
        with self.lock:
            kind = "MODIFIED" if pod["metadata"]["uid"] in self.pods else "ADDED"
            self.pods[pod["metadata"]["uid"]] = self._event(kind, pod)

    def delete(self, uid):
        with self.lock:
            pod = self.pods.pop(uid)
            self._event("DELETED", pod)

    def compact(self):
        """Forget the history (etcd compaction): watches from an older resourceVersion get
        410 Gone; open watches are closed so that clients watch again."""
        with self.lock:
            self.rv += 1
            self.oldest_rv = self.rv
            self.history = []
            self.generation += 1
            self.lock.notify_all()

    # ---- availability ----------------------------------------------------------------------
    def up(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                with outer.lock:
                    outer.conns.add(self.connection)

            def finish(self):
                with outer.lock:
                    outer.conns.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def do_GET(self):
                outer._get(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self):
        """Stop listening (connection refused) and cut every open connection."""
        if not self.server:
            return
        self.server.shutdown()
        self.server.server_close()
        self.server = None
        with self.lock:
            for c in list(self.conns):
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.lock.notify_all()

    def stop(self):
        self.down()

    # ---- requests --------------------------------------------------------------------------
    def count(self, watch=None):
        with self.lock:
            return sum(1 for _, q, _ in self.requests
                       if watch is None or ("watch" in q) == watch)

    def _send_json(self, h, code, obj):
        body = json.dumps(obj).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    @staticmethod
    def _status(code, reason, message):
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}

    def _get(self, h):
        u = urlsplit(h.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        with self.lock:
            self.requests.append((u.path, q, h.headers.get("Authorization")))
        if u.path != "/api/v1/pods":
            return self._send_json(h, 404, self._status(404, "NotFound", "not found"))
        node = None
        sel = q.get("fieldSelector", "")
        if sel.startswith("spec.nodeName="):
            node = sel[len("spec.nodeName="):]
        if q.get("watch") in ("1", "true"):
            return self._watch(h, q, node)
        return self._list(h, q, node)

    def _on_node(self, pod, node):
        return node is None or pod["spec"].get("nodeName") == node

    def _list(self, h, q, node):
        with self.lock:
            pods = [p for p in self.pods.values() if self._on_node(p, node)]
            rv = self.rv
        start = 0
        if q.get("continue"):
            start, crv = (int(x) for x in q["continue"].split(":"))
            if crv < self.oldest_rv:
                return self._send_json(h, 410, self._status(
                    410, "Expired", "The provided continue parameter is too old"))
            rv = crv
        limit = int(q.get("limit", "0") or 0) or len(pods) or 1
        page = pods[start:start + limit]
        meta = {"resourceVersion": str(rv)}
        if start + limit < len(pods):
            meta["continue"] = f"{start + limit}:{rv}"
        self._send_json(h, 200, {"kind": "PodList", "apiVersion": "v1", "metadata": meta,
                                 "items": page})

    def _watch(self, h, q, node):
        try:
            since = int(q.get("resourceVersion") or "0")
        except ValueError:
            since = 0
        timeout = float(q.get("timeoutSeconds", "300"))
        with self.lock:
            gone = since < self.oldest_rv
            gen = self.generation
        if gone and not self.gone_as_event:
            return self._send_json(h, 410, self._status(
                410, "Expired", f"too old resource version: {since} ({self.oldest_rv})"))
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def chunk(obj):
            data = (json.dumps(obj) + "\n").encode()
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()

        try:
            if gone:
                chunk({"type": "ERROR", "object": self._status(
                    410, "Expired", f"too old resource version: {since}")})
                h.wfile.write(b"0\r\n\r\n")
                return
            deadline = time.time() + timeout
            sent = since
            while time.time() < deadline and self.server is not None:
                with self.lock:
                    if self.generation != gen:
                        break  # compacted: end the watch, the client watches again
                    events = [(rv, t, p) for rv, t, p in self.history
                              if rv > sent and self._on_node(p, node)]
                    if not events:
                        self.lock.wait(timeout=0.2)
                        continue
                for rv, t, p in events:
                    chunk({"type": t, "object": p})
                    sent = rv
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass


def load_fixture(server, directory):
    """DIR/pods.json (a PodList) into the server; DIR/events.jsonl replayed in a thread, one
    event every half second, after the first watch request."""
    with open(os.path.join(directory, "pods.json")) as f:
        for pod in json.load(f)["items"]:
            server.add(pod)
    events = os.path.join(directory, "events.jsonl")
    if not os.path.exists(events):
        return
    with open(events) as f:
        lines = [json.loads(line) for line in f if line.strip()]

    def replay():
        while server.count(watch=True) == 0:
            time.sleep(0.1)
        for ev in lines:
            time.sleep(0.5)
            if ev["type"] == "DELETED":
                server.delete(ev["object"]["metadata"]["uid"])
            else:
                server.add(ev["object"])

    threading.Thread(target=replay, daemon=True).start()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fixture", required=True, help="directory with pods.json, events.jsonl")
    ap.add_argument("--gone-as-event", action="store_true",
                    help="answer an expired resourceVersion with an ERROR event, not HTTP 410")
    a = ap.parse_args()
    server = ApiServer(port=a.port, gone_as_event=a.gone_as_event)
    load_fixture(server, a.fixture)
    print(f"serving the pods of {a.fixture} on {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
