"""The web UI and its Jaeger-compatible query API (issue 14), on a real multi-service run.

curl -> frontend -> backend -> store, three Python app servers (app_server.py) traced by
the real agent: frontend passes the context on (ok), backend drops it (dropped), store
answers 500; --repair=stitch joins the broken hop, so each request is one six-span trace
(curl's own client span, which sent the traceparent, is its root).
One request is slow (for minDuration), one carries markup in its path and User-Agent (XSS).

Checked: the API's answers against Jaeger's documented JSON model (field names and types,
CHILD_OF references matching the parents, processes, microsecond times, the tags and
minDuration filters, dependencies with hoptrace's propagation verdicts), then a real
browser (Debian's chromium, headless, driven by Debian's python3-selenium through
chromium-driver): search, the trace list, a trace's waterfall (one bar per span, children
deeper than their parents, error marks), the service map's edges and verdicts, and that
markup from traffic shows as text and runs nothing. A screenshot goes into the build dir.
"""
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from urllib.parse import quote, urlencode

from lib import (AGENT, BUILD, IN_CI, Agent, Proc, free_port, python_server, require, run, slow,
                 unavailable, wait_port)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
MAIN_TRACES = (TRACE, "4bf92f3577b34da6a3ce929d0e0e4740", "4bf92f3577b34da6a3ce929d0e0e4741")
PARENT = "00f067aa0ba902b7"
SLOW_TRACE = "5bf92f3577b34da6a3ce929d0e0e4737"
XSS_TRACE = "6bf92f3577b34da6a3ce929d0e0e4738"
XSS_PATH = "/<img/src=x/onerror=window.__xss=1>/<script>window.__xss=2</script>"
XSS_UA = "<img src=x onerror=window.__xss=3>"
SERVICES = ("frontend", "backend", "store")
REQUESTS = len(MAIN_TRACES)

SPAN_KEYS = {"traceID", "spanID", "flags", "operationName", "references", "startTime",
             "duration", "tags", "logs", "processID", "warnings"}
TAG_TYPES = {"string": str, "bool": bool, "int64": int, "float64": (int, float)}


# ---- the run -----------------------------------------------------------------------------------

class Topology:
    def __init__(self):
        self.ports = {n: free_port() for n in SERVICES}
        p = self.ports
        self.procs = []
        try:
            for name in reversed(SERVICES):
                self.procs.append(python_server(p[name], script="app_server.py", service=name))
        except BaseException:
            self.stop()
            raise
        self.port_args = [a for port in p.values() for a in ("--port", str(port))]

    def url(self, leaf_path, backend_status=500):
        """frontend -> backend (context passed on) -> store (context dropped) at leaf_path."""
        p = self.ports
        backend = f"/hop?to={p['store']}&propagate=none&path={quote(leaf_path, safe='')}" \
                  f"&status={backend_status}"
        return f"http://127.0.0.1:{p['frontend']}/hop?to={p['backend']}&propagate=child" \
               f"&path={quote(backend, safe='')}"

    def traffic(self):
        for tid in MAIN_TRACES:
            run(["curl", "-sS", "-o", "/dev/null", "-H", f"traceparent: 00-{tid}-{PARENT}-01",
                 self.url("/status?code=500")])
        run(["curl", "-sS", "-o", "/dev/null", "-H", f"traceparent: 00-{SLOW_TRACE}-{PARENT}-01",
             self.url("/slow?ms=400", backend_status=200)])
        # markup in the path and the User-Agent: it becomes span names and attributes
        run(["curl", "-sS", "-o", "/dev/null", "--path-as-is", "-A", XSS_UA, "-H",
             f"traceparent: 00-{XSS_TRACE}-{PARENT}-01",
             f"http://127.0.0.1:{self.ports['frontend']}{XSS_PATH}"])

    def stop(self):
        for proc in self.procs:
            proc.stop()


class _NoAgent:
    def kill(self):
        pass


# ---- the API -------------------------------------------------------------------------------------

def get(base, path, params=None, status=200):
    url = base + path + ("?" + urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=slow(20)) as r:
            code, body, headers = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        code, body, headers = e.code, e.read(), e.headers
    assert code == status, f"{url}: {code} (wanted {status}): {body[:2000]!r}"
    assert headers["X-Content-Type-Options"] == "nosniff", dict(headers)
    assert "Access-Control-Allow-Origin" not in headers, dict(headers)
    return json.loads(body) if path.startswith("/api/") else body


def structured(doc):
    """Jaeger's structuredResponse: {data, total, limit, offset, errors}."""
    assert set(doc) == {"data", "total", "limit", "offset", "errors"}, doc
    assert isinstance(doc["total"], int) and isinstance(doc["limit"], int)
    assert isinstance(doc["offset"], int)
    assert doc["errors"] is None, doc["errors"]
    return doc["data"]


def is_hex(s, n):
    return isinstance(s, str) and len(s) == n and all(c in "0123456789abcdef" for c in s)


def check_tags(tags):
    assert isinstance(tags, list)
    for t in tags:
        assert set(t) == {"key", "type", "value"}, t
        assert isinstance(t["key"], str) and t["type"] in TAG_TYPES, t
        assert isinstance(t["value"], TAG_TYPES[t["type"]]), t
        if t["type"] == "int64":
            assert not isinstance(t["value"], bool), t


def tags_of(span):
    return {t["key"]: t["value"] for t in span["tags"]}


def check_trace(t, agent_spans=None):
    """One trace in Jaeger's JSON model (model/json): every field, with its type."""
    assert set(t) == {"traceID", "spans", "processes", "warnings"}, set(t)
    assert is_hex(t["traceID"], 32)
    assert isinstance(t["processes"], dict) and t["processes"]
    for pid, proc in t["processes"].items():
        assert set(proc) == {"serviceName", "tags"}, proc
        assert isinstance(proc["serviceName"], str)
        check_tags(proc["tags"])
    ids = {s["spanID"] for s in t["spans"]}
    for s in t["spans"]:
        assert set(s) == SPAN_KEYS, set(s) ^ SPAN_KEYS
        assert s["traceID"] == t["traceID"] and is_hex(s["spanID"], 16)
        assert isinstance(s["flags"], int) and isinstance(s["operationName"], str)
        assert isinstance(s["startTime"], int) and isinstance(s["duration"], int)
        assert s["processID"] in t["processes"]
        assert s["warnings"] is None or isinstance(s["warnings"], list)
        check_tags(s["tags"])
        for log in s["logs"]:
            assert set(log) == {"timestamp", "fields"} and isinstance(log["timestamp"], int)
            check_tags(log["fields"])
        for r in s["references"]:
            assert set(r) == {"refType", "traceID", "spanID"}, r
            assert r["refType"] in ("CHILD_OF", "FOLLOWS_FROM") and is_hex(r["spanID"], 16)
        kind = tags_of(s).get("span.kind")
        assert kind in ("server", "client"), s["tags"]
    if agent_spans is not None:
        # microseconds, the agent's own ids, CHILD_OF = the agent's parent ids
        by_id = {a["span_id"]: a for a in agent_spans if a["trace_id"] == t["traceID"]}
        assert ids == set(by_id), (ids, set(by_id))
        for s in t["spans"]:
            a = by_id[s["spanID"]]
            assert s["startTime"] == a["start_unix_ns"] // 1000, (s, a)
            assert s["duration"] == a["duration_ns"] // 1000, (s, a)
            parents = [r["spanID"] for r in s["references"] if r["refType"] == "CHILD_OF"]
            assert parents == ([a["parent_span_id"]] if a["parent_span_id"] else []), (s, a)
            assert t["processes"][s["processID"]]["serviceName"] == a["service.name"]
            assert (tags_of(s).get("error") is True) == (a["status"] == "ERROR"), (s, a)
            for k, v in a["attributes"].items():
                assert tags_of(s)[k] == v, (k, s["tags"])
    return ids


def check_api(base, agent_spans=None):
    """The Jaeger API over the run; returns the stitched traces."""
    services = structured(get(base, "/api/services"))
    assert set(SERVICES) <= set(services), services
    ops = structured(get(base, "/api/services/backend/operations"))
    assert "GET /hop" in ops and all(isinstance(o, str) for o in ops), ops
    ops = structured(get(base, "/api/operations", {"service": "backend", "spanKind": "server"}))
    assert ops and all(set(o) == {"name", "spanKind"} and o["spanKind"] == "server" for o in ops)

    traces = structured(get(base, "/api/traces", {"lookback": "1h", "limit": 50}))
    assert {t["traceID"] for t in traces} >= {TRACE, SLOW_TRACE, XSS_TRACE}, \
        [t["traceID"] for t in traces]
    for t in traces:
        check_trace(t, agent_spans)
    main = [t for t in traces if t["traceID"] == TRACE]
    assert len(main) == 1
    t = main[0]
    # curl, frontend (server, client), backend (server, client), store: stitched across the
    # dropped hop into one tree
    assert len(t["spans"]) == 6, [(s["operationName"], s["spanID"]) for s in t["spans"]]
    ids = {s["spanID"] for s in t["spans"]}
    roots = []
    for s in t["spans"]:
        parents = [r["spanID"] for r in s["references"] if r["refType"] == "CHILD_OF"]
        if not parents:
            roots.append(s)
        else:
            assert len(parents) == 1 and parents[0] in ids, s
    assert len(roots) == 1 and roots[0]["spanID"] == PARENT, roots
    assert t["processes"][roots[0]["processID"]]["serviceName"] == "curl"
    errors = [s for s in t["spans"] if tags_of(s).get("error") is True]
    assert errors and all(tags_of(s)["otel.status_code"] == "ERROR" for s in errors)
    store_servers = [s for s in t["spans"] if t["processes"][s["processID"]]["serviceName"] ==
                     "store" and tags_of(s)["span.kind"] == "server"]
    assert len(store_servers) == 1 and store_servers[0] in errors

    one = structured(get(base, f"/api/traces/{TRACE}"))
    assert len(one) == 1 and {s["spanID"] for s in one[0]["spans"]} == ids
    get(base, "/api/traces/" + "0" * 31 + "1", status=404)
    bad = get(base, "/api/traces", {"minDuration": "soon"}, status=400)
    assert bad["data"] is None and bad["errors"][0]["code"] == 400, bad

    # tags as the Jaeger UI sends them: a JSON object
    hits = structured(get(base, "/api/traces", {
        "lookback": "1h", "tags": json.dumps({"http.response.status_code": "500"})}))
    assert {h["traceID"] for h in hits} == set(MAIN_TRACES), [h["traceID"] for h in hits]
    hits = structured(get(base, "/api/traces", {
        "service": "store", "lookback": "1h", "tags": json.dumps({"error": "true"})}))
    assert {h["traceID"] for h in hits} == set(MAIN_TRACES)
    # minDuration: only the slow request's root lasts 400 ms
    hits = structured(get(base, "/api/traces", {"lookback": "1h", "minDuration": "300ms"}))
    assert [h["traceID"] for h in hits] == [SLOW_TRACE], [h["traceID"] for h in hits]
    hits = structured(get(base, "/api/traces", {"lookback": "1h", "maxDuration": "300ms"}))
    assert SLOW_TRACE not in {h["traceID"] for h in hits} and TRACE in {h["traceID"] for h in hits}
    # the limit is bounded
    doc = get(base, "/api/traces", {"lookback": "1h", "limit": 10 ** 9})
    assert doc["limit"] == 1000

    end = int(time.time() * 1000)
    deps = structured(get(base, "/api/dependencies", {"endTs": end, "lookback": 3600000}))
    edges = {(d["parent"], d["child"]): d for d in deps}
    for d in deps:
        assert set(d) == {"parent", "child", "callCount"}, d
    assert ("frontend", "backend") in edges and ("backend", "store") in edges, deps
    ext = structured(get(base, "/api/hoptrace/dependencies", {"endTs": end, "lookback": 3600000}))
    verdicts = {(d["parent"], d["child"]): d["propagation"] for d in ext}
    assert verdicts[("frontend", "backend")]["ok"] >= REQUESTS + 1, ext
    assert verdicts[("backend", "store")]["dropped"] >= REQUESTS + 1, ext
    assert verdicts[("backend", "store")]["ok"] == 0, ext
    # hoptrace's analysis of the trace (hoptrace analyze): the error began at store
    an = structured(get(base, f"/api/hoptrace/analyze/{TRACE}"))
    (at,) = an["traces"]
    assert at["trace_id"] == TRACE and at["spans"] == 6 and at["complete"] is True, at
    origins = at["errors"]["origins"]
    assert [(o["service"], o["kind"]) for o in origins] == [("store", "SERVER")], origins
    assert at["critical_path"] and at["slowest_hop"], at
    get(base, "/api/hoptrace/analyze/" + "0" * 31 + "1", status=404)
    return t


# ---- the browser ---------------------------------------------------------------------------------

def webdriver_module():
    """Debian's python3-selenium (also when the tests run under another python3)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        unavailable(f"python3-selenium is not installed (build.sh test installs it): {e}")
    return webdriver, Options, Service


def chromium(profile):
    require("chromium")
    require("chromedriver")
    webdriver, Options, Service = webdriver_module()
    o = Options()
    o.binary_location = shutil.which("chromium")
    # as root in CI: no sandbox; no GPU; a private profile; /dev/shm may be tiny in containers
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--user-data-dir={profile}", "--window-size=1400,1300", "--no-first-run",
              "--disable-extensions", "--disable-background-networking"):
        o.add_argument(a)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=o)


def wait(d, fn, what, timeout=15):
    deadline = time.time() + slow(timeout)
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception:  # an element replaced while read: try again
            pass
        time.sleep(0.1)
    raise AssertionError(f"browser: {what} after {timeout}s; console: {console(d)}")


def console(d):
    try:
        return d.get_log("browser")
    except Exception:
        return "?"


def check_browser(base, trace, shot_name):
    profile = tempfile.mkdtemp(prefix="hoptrace-chromium-")
    d = chromium(profile)
    from selenium.webdriver.common.by import By  # found by chromium() (webdriver_module)
    from selenium.webdriver.support.ui import Select

    def listed_after_search():
        status = d.find_element(By.ID, "search-status")
        before = status.get_attribute("data-searches")
        d.find_element(By.ID, "f-submit").click()
        wait(d, lambda: status.get_attribute("data-searches") != before, "no search answered")
        assert "failed" not in status.text, status.text
        return {r.get_attribute("data-trace-id") for r in
                d.find_elements(By.CSS_SELECTOR, "#trace-list tbody tr")}
    try:
        d.get(base + "/")
        wait(d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#f-service option")) > len(SERVICES),
             "no services listed")
        # the form's fields reach the API: service + operation + errors only, then min duration
        Select(d.find_element(By.ID, "f-service")).select_by_value("store")
        wait(d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#f-operation option")) > 1,
             "no operations listed for store")
        Select(d.find_element(By.ID, "f-operation")).select_by_value("GET /status")
        d.find_element(By.ID, "f-errors").click()
        assert listed_after_search() == set(MAIN_TRACES)
        Select(d.find_element(By.ID, "f-service")).select_by_value("")
        d.find_element(By.ID, "f-errors").click()
        d.find_element(By.ID, "f-min").send_keys("300ms")
        assert listed_after_search() == {SLOW_TRACE}
        d.find_element(By.ID, "f-min").clear()
        d.find_element(By.ID, "f-tags").send_keys("http.response.status_code=500")
        assert listed_after_search() == set(MAIN_TRACES)
        d.find_element(By.ID, "f-tags").clear()
        listed = listed_after_search()
        assert {TRACE, SLOW_TRACE, XSS_TRACE} <= listed, listed
        # sortable by duration and by errors
        d.find_element(By.ID, "sort-duration").click()
        durs = [float(r.get_attribute("data-duration")) for r in
                d.find_elements(By.CSS_SELECTOR, "#trace-list tbody tr")]
        assert durs == sorted(durs, reverse=True) and durs[0] >= 400000, durs
        d.find_element(By.ID, "sort-errors").click()
        errs = [int(r.get_attribute("data-errors")) for r in
                d.find_elements(By.CSS_SELECTOR, "#trace-list tbody tr")]
        assert errs == sorted(errs, reverse=True) and errs[0] > 0, errs

        # the stitched trace's waterfall
        d.find_element(By.CSS_SELECTOR, f'#trace-list tr[data-trace-id="{TRACE}"]').click()
        nspans = len(trace["spans"])
        wait(d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#waterfall .wf-bar")) == nspans,
             f"not {nspans} bars")
        rows = d.find_elements(By.CSS_SELECTOR, "#waterfall .wf-row")
        depth = {r.get_attribute("data-span-id"): int(r.get_attribute("data-depth")) for r in rows}
        assert set(depth) == {s["spanID"] for s in trace["spans"]}
        for s in trace["spans"]:
            for r in s["references"]:
                if r["refType"] == "CHILD_OF" and r["spanID"] in depth:
                    assert depth[s["spanID"]] > depth[r["spanID"]], (s["spanID"], depth)
        assert max(depth.values()) == 5, depth  # curl, frontend x2, backend x2, store
        bars = {b.get_attribute("data-span-id"): int(b.get_attribute("data-depth"))
                for b in d.find_elements(By.CSS_SELECTOR, "#waterfall .wf-bar")}
        assert bars == depth
        # error marks exactly on the failed spans
        failed = {s["spanID"] for s in trace["spans"] if tags_of(s).get("error") is True}
        marked = {r.get_attribute("data-span-id") for r in rows
                  if r.find_elements(By.CSS_SELECTOR, ".err-mark")}
        assert marked == failed and failed, (marked, failed)
        # one colour per service
        colours = {}
        for r in rows:
            bar = r.find_element(By.CSS_SELECTOR, ".wf-bar")
            colours.setdefault(r.get_attribute("data-service"), set()).add(
                bar.value_of_css_property("background-color"))
        assert set(colours) == {*SERVICES, "curl"} and all(len(c) == 1 for c in colours.values())
        assert len({next(iter(c)) for c in colours.values()}) == len(colours), colours
        # the detail panel of a failed store span
        store_err = next(r for r in rows if r.get_attribute("data-service") == "store"
                         and r.get_attribute("data-span-id") in failed)
        store_err.click()
        detail = wait(d, lambda: d.find_element(By.ID, "span-detail").text, "no detail")
        for want in ("Attributes", "Resource", "Events", "Links", "http.response.status_code",
                     "500", "otel.status_code"):
            assert want in detail, detail
        # the analysis panel: where the error began, the critical path marked
        origin = wait(d, lambda: d.find_element(By.ID, "error-origins").text, "no analysis")
        assert "origin: store GET /status (SERVER)" in origin, origin
        assert "propagated by backend" in origin, origin
        assert d.find_elements(By.CSS_SELECTOR, "#critical-path li")
        assert d.find_elements(By.CSS_SELECTOR, "#waterfall .wf-row.on-path")
        assert "Slowest hop:" in d.find_element(By.ID, "slowest-hop").text
        shot = os.path.join(BUILD, shot_name)
        assert d.save_screenshot(shot), shot
        print(f"\nscreenshot of the UI on a real multi-service trace: {shot}")

        # the service map: edges with their verdicts
        d.get(base + "/#/map")
        edges = wait(d, lambda: d.find_elements(By.CSS_SELECTOR, "#map svg g.edge"), "no edges")
        labels = {(e.get_attribute("data-parent"), e.get_attribute("data-child")): e.text
                  for e in edges}
        assert "ok" in labels[("frontend", "backend")], labels
        assert "dropped" in labels[("backend", "store")], labels
        assert "ok" not in labels[("backend", "store")], labels
        assert "v-bad" in next(e for e in edges if e.get_attribute("data-child") == "store"
                               ).get_attribute("class")
        assert d.save_screenshot(os.path.join(BUILD, shot_name.replace("trace", "map")))

        # markup from traffic: shown as text, runs nothing
        d.get(base + "/#/trace/" + XSS_TRACE)
        wait(d, lambda: d.find_elements(By.CSS_SELECTOR, "#waterfall .wf-row"), "no XSS trace")
        label = d.find_element(By.CSS_SELECTOR, "#waterfall .wf-row .wf-label").get_attribute("textContent")
        assert "<img/src=x/onerror=" in label or "<script>" in label, label
        d.find_element(By.CSS_SELECTOR, "#waterfall .wf-row").click()
        detail = wait(d, lambda: d.find_element(By.ID, "span-detail").text, "no detail")
        assert XSS_UA in detail, detail
        time.sleep(0.3)
        assert d.execute_script("return window.__xss === undefined"), "injected script ran"
        assert d.execute_script("return document.images.length") == 0
        assert d.execute_script("return document.scripts.length") == 1  # app.js only
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


# ---- the tests -------------------------------------------------------------------------------------

def wait_stored(base, want_spans=6):
    """The store's writer commits in batches off the loop: poll until the run is in it."""
    deadline = time.time() + slow(20)
    while True:
        try:
            traces = structured(get(base, "/api/traces", {"lookback": "1h", "limit": 50}))
            ids = {t["traceID"]: len(t["spans"]) for t in traces}
            if all(ids.get(t, 0) >= want_spans for t in MAIN_TRACES) and SLOW_TRACE in ids \
                    and XSS_TRACE in ids:
                return
        except AssertionError:
            if time.time() > deadline:
                raise
        if time.time() > deadline:
            raise AssertionError(f"the run is not in the store after 20 s: {ids}")
        time.sleep(0.2)


def test_ui_agent_live_store():
    """The agent itself: -o store --store TMP --ui-listen on the --metrics-listen address (one
    server for both). The API reads the store while the agent writes it; then the browser."""
    require("curl")
    topo = Topology()
    agent = _NoAgent()
    db_dir = tempfile.mkdtemp(prefix="hoptrace-ui-store-")
    port = free_port()
    try:
        agent = Agent(*topo.port_args, "--repair=stitch", "--store", os.path.join(db_dir, "t.db"),
                      "--ui-listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{port}",
                      output="store", out_file=False)
        assert f"web UI on http://127.0.0.1:{port}/" in agent.stderr(), agent.stderr()[-2000:]
        base = f"http://127.0.0.1:{port}"
        topo.traffic()
        wait_stored(base)
        trace = check_api(base)
        # the same endpoint still answers Prometheus and the health checks
        with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
            assert b"hoptrace_" in r.read()
        with urllib.request.urlopen(base + "/healthz", timeout=10) as r:
            assert r.status == 200
        check_browser(base, trace, "ui-trace.png")
        agent.stop()
        # `hoptrace ui --store` over the file the agent left: the same traces, read-only
        ui_port = free_port()
        server = Proc([AGENT, "ui", "--store", os.path.join(db_dir, "t.db"), "--listen",
                       f"127.0.0.1:{ui_port}"])
        try:
            wait_port(ui_port)
            again = structured(get(f"http://127.0.0.1:{ui_port}", f"/api/traces/{TRACE}"))
            assert {s["spanID"] for s in again[0]["spans"]} == {s["spanID"] for s in trace["spans"]}
        finally:
            server.stop()
    finally:
        agent.kill()
        topo.stop()
        shutil.rmtree(db_dir, ignore_errors=True)


def test_ui_standalone_over_agent_spans():
    """`hoptrace ui --source FILE` over the JSON spans of a real run: API and browser."""
    require("curl")
    topo = Topology()
    agent = _NoAgent()
    server = None
    try:
        agent = Agent(*topo.port_args, "--repair=stitch")
        topo.traffic()
        spans = agent.stop()
        port = free_port()
        errlog = open(os.path.join(agent.dir, "ui.err"), "w")
        server = Proc([AGENT, "ui", "--source", agent.out_path, "--listen", f"127.0.0.1:{port}"],
                      stderr=errlog)
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        trace = check_api(base, spans)
        page = get(base, "/")
        assert b'<script src="/app.js"' in page
        check_browser(base, trace, "ui-trace-standalone.png")
        # a clean stop on SIGINT, with nothing for the sanitizers to report
        server.p.send_signal(signal.SIGINT)
        assert server.p.wait(timeout=slow(20)) == 0
        errlog.close()
        with open(errlog.name) as f:
            text = f.read()
        for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert bad not in text, text[-4000:]
        assert "spans read from" in text and "0 malformed" in text, text
    finally:
        if server:
            server.stop()
        agent.kill()
        topo.stop()


def test_ui_security_headers_and_methods():
    """CSP without inline script, nosniff, no CORS, GET only, loopback names only."""
    path = tempfile.mkdtemp(prefix="hoptrace-ui-")
    spans = os.path.join(path, "spans.jsonl")
    with open(spans, "w") as f:
        f.write(json.dumps({
            "trace_id": TRACE, "span_id": PARENT, "parent_span_id": "", "name": "GET /",
            "kind": "SERVER", "start_unix_ns": time.time_ns(), "end_unix_ns": time.time_ns(),
            "duration_ns": 0, "status": "UNSET", "status_message": "", "service.name": "a",
            "pid": 1, "tid": 1, "trace_flags": 1, "tracestate": "", "attributes": {},
            "links": [], "resource": {}}) + "\n")
    port = free_port()
    server = Proc([AGENT, "ui", "--source", spans, "--listen", f"127.0.0.1:{port}"])
    try:
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        for p in ("/", "/app.js", "/app.css", "/api/services"):
            with urllib.request.urlopen(base + p, timeout=10) as r:
                h = r.headers
                csp = h["Content-Security-Policy"]
                assert "default-src 'self'" in csp and "'unsafe-inline'" not in csp, csp
                assert "script-src 'self'" in csp
                assert h["X-Content-Type-Options"] == "nosniff"
                assert "Access-Control-Allow-Origin" not in h
        page = get(base, "/").decode()
        assert "<script>" not in page and "onclick" not in page and "style=" not in page
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            req = urllib.request.Request(base + "/api/services", method=method, data=b"")
            try:
                urllib.request.urlopen(req, timeout=10)
                raise AssertionError(f"{method} answered")
            except urllib.error.HTTPError as e:
                assert e.code == 405, (method, e.code)
        # a page elsewhere rebinding its name to 127.0.0.1 is refused
        req = urllib.request.Request(base + "/api/services", headers={"Host": "evil.example"})
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("a foreign Host was answered")
        except urllib.error.HTTPError as e:
            assert e.code == 403
        req = urllib.request.Request(base + "/api/services", headers={"Host": f"localhost:{port}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())["data"] == ["a"]
    finally:
        server.stop()
        shutil.rmtree(path, ignore_errors=True)
