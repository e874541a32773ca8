"""Correlation truth on real runtimes under concurrent load (issue 15).

Each test runs one runtime as the middle service between a test client and a leaf (see
truth.py for the protocol and the ground truth): 300 concurrent requests (8 connections,
half forwarding the incoming traceparent, half dropping it), then one long request of each
mode alone in flight, while the runtime's own background timer (or a proxy's health check)
calls the leaf every 75 ms without context.

Asserted for every runtime: every request answered, zero false parents (a client span
whose parent is not the server span of the request that made the call), zero false audit
findings (a verdict on a background call, on a call with a false parent, or a verdict that
is not the true one), and, unless listed in COMPLETENESS_PENDING, a server span for every
request and a client span for every call. The share of calls that get a sound parent is
measured, not asserted; each test prints a "truth <runtime>: ..." line and writes
BUILD/runtime-truth/<runtime>.json.

A missing runtime skips the test outside CI and fails it under CI=true (build.sh test
installs them all).

  python3 tests/integration/run.py --agent build/san/hoptrace --build build -k runtime_truth
  python3 tests/integration/truth_table.py build      # the results as one markdown table

BUILD/runtime-truth/ also keeps each run's span file (<runtime>.spans.jsonl) and the
services' output (logs/).
"""
import os
import shutil
import subprocess

from lib import require, unavailable
import truth
from truth import APPS, SYSTEM_PYTHON, TIMER_MS, run_runtime, service_env, start_logged

# Completeness (a server span for every request, a client span for every call) is not
# asserted for these runtimes yet: each has a capture bug being fixed in parallel. Their
# false parents and audit findings ARE asserted, and the summary line says "completeness
# NOT ASSERTED". Remove an entry once its fix is on main.
# Runtimes whose completeness is not asserted, with the reason. Empty since the capture
# keeps split start lines (Go's read-ahead byte) and copies every iovec (mod_proxy_http).
COMPLETENESS_PENDING: dict = {}


def finish(res):
    note = COMPLETENESS_PENDING.get(res["runtime"])
    line = truth.summary_line(res, note)
    print(line, flush=True)
    truth.write_result(res, line)
    truth.assert_truth(res, complete=note is None)


def need_module(python, module, package):
    r = subprocess.run([python, "-c", f"import {module}"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    if r.returncode != 0:
        unavailable(f"{python} cannot import {module} (Debian package {package})")


# ---- 1. Go net/http -----------------------------------------------------------------------

def start_go(port, leaf, service, work):
    require("go")
    shutil.copy(os.path.join(APPS, "go_mid.go"), os.path.join(work, "main.go"))
    env = dict(os.environ, GOCACHE=os.path.join(work, "gocache"),
               GOPATH=os.path.join(work, "gopath"), GOFLAGS="", GO111MODULE="off",
               CGO_ENABLED="0")
    r = subprocess.run(["go", "build", "-o", "mid", "main.go"], cwd=work, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert r.returncode == 0, f"go build failed:\n{r.stdout.decode()[-3000:]}"
    return start_logged([os.path.join(work, "mid"), str(port), str(leaf), str(TIMER_MS)], port,
                        "go", env=service_env(service), work=work)


def test_truth_go_net_http():
    finish(run_runtime("go", start_go))


# ---- 2. JVM: com.sun.net.httpserver, HttpURLConnection and java.net.http.HttpClient -----------

def start_jvm(port, leaf, service, work):
    require("java")
    require("javac")
    d = os.path.join(work, "classes")
    r = subprocess.run(["javac", "-d", d, os.path.join(APPS, "Mid.java")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert r.returncode == 0, f"javac failed:\n{r.stdout.decode()[-3000:]}"
    return start_logged(["java", "-cp", d, "Mid", str(port), str(leaf), str(TIMER_MS)], port,
                        "jvm", env=service_env(service), work=work)


def test_truth_jvm_httpserver():
    finish(run_runtime("jvm", start_jvm, variants=("huc", "jhc")))


# ---- 3. Python asyncio: aiohttp server and client -------------------------------------------

def start_aiohttp(port, leaf, service, work):
    require(SYSTEM_PYTHON)
    need_module(SYSTEM_PYTHON, "aiohttp", "python3-aiohttp")
    return start_logged([SYSTEM_PYTHON, os.path.join(APPS, "aiohttp_mid.py"), str(port),
                         str(leaf), str(TIMER_MS)], port, "aiohttp",
                        env=service_env(service), work=work)


def test_truth_python_aiohttp():
    finish(run_runtime("aiohttp", start_aiohttp))


# ---- 4. a pre-fork Python server ----------------------------------------------------------

PREFORK_WORKERS = 4


def start_prefork(port, leaf, service, work):
    require(SYSTEM_PYTHON)
    return start_logged([SYSTEM_PYTHON, os.path.join(APPS, "prefork_mid.py"), str(port),
                         str(leaf), str(TIMER_MS), str(PREFORK_WORKERS)], port, "prefork",
                        env=service_env(service), work=work)


def test_truth_python_prefork():
    finish(run_runtime("prefork", start_prefork))


# ---- 5. Ruby: WEBrick and Net::HTTP -------------------------------------------------------

def start_ruby(port, leaf, service, work):
    require("ruby")
    r = subprocess.run(["ruby", "-rwebrick", "-e", "1"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    if r.returncode != 0:
        unavailable("ruby cannot load webrick (Debian package ruby-webrick)")
    return start_logged(["ruby", os.path.join(APPS, "webrick_mid.rb"), str(port), str(leaf),
                         str(TIMER_MS)], port, "ruby", env=service_env(service), work=work)


def test_truth_ruby_webrick():
    finish(run_runtime("ruby", start_ruby))


# ---- 6. PHP: php -S (pre-forked workers) and the http:// stream wrapper -----------------------

PHP_WORKERS = 4


def start_php(port, leaf, service, work):
    require("php")
    return start_logged(["php", "-S", f"127.0.0.1:{port}", os.path.join(APPS, "php_router.php")],
                        port, "php", env=service_env(service, TRUTH_LEAF_PORT=str(leaf),
                                                     PHP_CLI_SERVER_WORKERS=str(PHP_WORKERS)),
                        work=work)


def test_truth_php_builtin_server():
    finish(run_runtime("php", start_php))


# ---- 7. HAProxy: a proxy with health checks -------------------------------------------------

def start_haproxy(port, leaf, service, work):
    require("haproxy")
    conf = os.path.join(work, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(f"""
global
  maxconn 256
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:{port}
  http-request del-header traceparent if {{ path_beg /work/drop/ }}
  default_backend be
backend be
  option httpchk
  http-check send meth GET uri /timer/hc ver HTTP/1.1 hdr Host leaf
  server leaf 127.0.0.1:{leaf} check inter {TIMER_MS}
""")
    return start_logged(["haproxy", "-db", "-f", conf], port, "haproxy",
                        env=service_env(service), work=work)


def test_truth_haproxy():
    finish(run_runtime("haproxy", start_haproxy, proxy=True))


# ---- 8. Apache httpd: mod_proxy_http, event MPM, mod_proxy_hcheck ----------------------------

APACHE_MODULES = ("mpm_event", "authz_core", "headers", "proxy", "proxy_http", "proxy_balancer",
                  "slotmem_shm", "lbmethod_byrequests", "proxy_hcheck")


def start_apache(port, leaf, service, work):
    require("apache2")
    d = work
    mods = "\n".join(f"LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so"
                     for m in APACHE_MODULES)
    conf = os.path.join(d, "httpd.conf")
    with open(conf, "w") as f:
        f.write(f"""
ServerRoot {d}
{mods}
User www-data
Group www-data
ServerName localhost
Listen 127.0.0.1:{port}
PidFile {d}/httpd.pid
DefaultRuntimeDir {d}
ErrorLog {d}/error.log
LogLevel warn
StartServers 2
ServerLimit 2
ThreadsPerChild 16
MaxRequestWorkers 32
MinSpareThreads 8
MaxSpareThreads 32
KeepAlive On
WatchdogInterval 100ms
<Proxy balancer://leaf>
  BalancerMember http://127.0.0.1:{leaf} hcmethod=GET hcuri=/timer/hc hcinterval=100ms
</Proxy>
ProxyPass /work/ balancer://leaf/work/
<Location /work/drop/>
  RequestHeader unset traceparent
</Location>
""")
    return start_logged(["apache2", "-f", conf, "-DFOREGROUND"], port, "apache",
                        env=service_env(service), work=work)


def test_truth_apache_mod_proxy():
    finish(run_runtime("apache", start_apache, proxy=True))


# ---- 9. Node.js: http server and client, setInterval -----------------------------------------

def start_node(port, leaf, service, work):
    require("node")
    return start_logged(["node", os.path.join(APPS, "node_mid.js"), str(port), str(leaf),
                         str(TIMER_MS)], port, "node", env=service_env(service), work=work)


def test_truth_node():
    finish(run_runtime("node", start_node))
