"""Route templating (issue 12): a real server hit with varied ids gets low-cardinality span
names and http.route (url.template on the client), explicit patterns win, credential-shaped
segments leave url.path, and the per-service cap holds with its counter."""
import json
import os
import sys

from lib import AGENT, Agent, free_port, python_server, run

HEX_SECRET = "5f4dcc3b5aa765d61d8327deb882cf99e3b0c44298fc1c149afbf4c8996fb924"

CLIENT = """
import http.client, sys
port, paths = int(sys.argv[1]), sys.argv[2:]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
for p in paths:
    c.request("GET", p)
    c.getresponse().read()
c.close()
"""


def hit(port, paths):
    """GET each path in order from one client process (service routes-client)."""
    env = dict(os.environ, OTEL_SERVICE_NAME="routes-client")
    run([sys.executable, "-c", CLIENT, str(port), *paths], env=env)


def traced(paths, *args, env=None):
    port = free_port()
    srv = python_server(port, service="routes-api")
    agent = Agent("--port", str(port), *args, env=env)
    try:
        hit(port, paths)
        spans = agent.stop()
    finally:
        agent.kill()
        srv.stop()
    return spans, agent.counters


def by_path(spans, kind):
    out = {}
    for s in spans:
        if s["kind"] == kind:
            out.setdefault(s["attributes"].get("url.path"), []).append(s)
    return out


def test_routes_template_ids_and_patterns():
    ids = [f"/users/{n}" for n in (1, 42, 1001)]
    uuids = ["/orders/123e4567-e89b-12d3-a456-426614174000",
             "/orders/550e8400-e29b-41d4-a716-446655440000"]
    kept = ["/static/app.3f9a1c.js", "/api/v2/users", "/v1/"]
    paths = ids + uuids + kept + [
        f"/reset/{HEX_SECRET}", "/users/jane.doe@example.com/settings",
        "/shops/acme/cart", "/files/a/b/c.txt", "/v1/customers/cus_9s6XKzkNRiz8i3?x=1"]
    spans, counters = traced(paths,
                             env={"HOPTRACE_ROUTES": "/shops/{shop}/cart,/files/{path...}"})
    text = json.dumps(spans)
    assert HEX_SECRET not in text and "jane.doe" not in text and "cus_9s6" not in text, text
    servers, clients = by_path(spans, "SERVER"), by_path(spans, "CLIENT")
    assert len(spans) == 2 * len(paths), [s["name"] for s in spans]
    want = {p: "/users/{id}" for p in ids}
    want.update({p: "/orders/{uuid}" for p in uuids})
    want.update({p: p for p in kept})
    want.update({"/reset/{hex}": "/reset/{hex}",
                 "/users/{email}/settings": "/users/{email}/settings",
                 "/shops/acme/cart": "/shops/{shop}/cart",
                 "/files/a/b/c.txt": "/files/{path...}",
                 "/v1/customers/{token}": "/v1/customers/{token}"})
    for path, route in want.items():
        (srv,), (cli,) = servers[path], clients[path]  # url.path: the real path, masked
        assert srv["name"] == f"GET {route}" and srv["attributes"]["http.route"] == route, srv
        assert "url.template" not in srv["attributes"], srv
        # semconv: a client has no http.route; its URL template names it
        assert cli["name"] == f"GET {route}" and cli["attributes"]["url.template"] == route, cli
        assert "http.route" not in cli["attributes"], cli
    # the server's ids are one route, the client's one template
    assert counters["routes_learned"] == 2 * len(set(want.values())), counters
    assert counters.get("routes_overflow", 0) == 0 and counters.get("routes_table_full", 0) == 0


def test_routes_cap_per_service():
    paths = ["/a", "/b", "/users/1", "/c", "/d", "/users/2", "/a", "/e/7"]
    spans, counters = traced(paths, "--max-routes-per-service", "3",
                             "--route", "/a", "--route", "/e/{n}")
    assert len(spans) == 2 * len(paths), [s["name"] for s in spans]
    for kind, key in (("SERVER", "http.route"), ("CLIENT", "url.template")):
        got = [(s["attributes"]["url.path"], s["attributes"][key], s["name"])
               for s in sorted(spans, key=lambda s: s["start_unix_ns"]) if s["kind"] == kind]
        # the first three distinct routes are kept; later new ones overflow, known ones stay
        assert got == [
            ("/a", "/a", "GET /a"),
            ("/b", "/b", "GET /b"),
            ("/users/1", "/users/{id}", "GET /users/{id}"),
            ("/c", "/{overflow}", "GET /{overflow}"),
            ("/d", "/{overflow}", "GET /{overflow}"),
            ("/users/2", "/users/{id}", "GET /users/{id}"),
            ("/a", "/a", "GET /a"),
            ("/e/7", "/{overflow}", "GET /{overflow}"),
        ], (kind, got)
    assert counters["routes_overflow"] == 2 * 3, counters
    assert counters["routes_learned"] == 2 * 3, counters


def test_routes_bad_settings_refused():
    for argv, env in ((["--route", "users/{id}"], {}),
                      (["--route", "/a/{rest...}/b"], {}),
                      (["--max-routes-per-service", "0"], {}),
                      ([], {"HOPTRACE_ROUTES": "/ok,/bad?q"})):
        r = run([AGENT, *argv, "-d", "1"], check=False, env=dict(os.environ, **env))
        assert r.returncode in (2, 64), (argv, env, r.returncode, r.stderr)  # argp: 64
        assert b"route" in r.stderr.lower(), r.stderr
