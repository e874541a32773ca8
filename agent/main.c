// SPDX-License-Identifier: BSD-2-Clause
/*
 * hoptrace: zero-instrumentation distributed tracing of HTTP/1.x with eBPF.
 * Start-up: CLI (flags > OTEL_* environment > defaults), load and attach the BPF programs,
 * run the event loop, then flush and print the counters.
 */
#include <argp.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "analyze.h"
#include "audit.h"
#include "tracker.h"
#include "export/otlp_config.h"
#include "export/sink_otlp.h"
#include "export/metrics_otlp.h"
#include "metrics.h"
#include "metrics_prom.h"
#include "hoptrace.skel.h"
#include "httpd.h"
#include "k8s.h"
#include "loader.h"
#include "log.h"
#include "loop.h"
#include "outbuf.h"
#include "privilege.h"
#include "sampler.h"
#include "sandbox.h"
#include "selfmetrics.h"
#include "route.h"
#include "sink.h"
#include "stats.h"
#include "stopsig.h"
#include "tail.h"
#include "target.h"
#include "text.h"
#include "tls.h"
#include "status.h"
#include "store.h"
#include "health.h"
#include "ui_api.h"

/* How long the OTLP sink may take to deliver what it holds at exit (README: 5 s). */
#define SHUTDOWN_FLUSH_MS 5000
/* How long stdout or -O may take to take the spans still buffered at exit: a reader that
 * does not read within it does not hold the shutdown up (the lines are counted as dropped). */
#define OUTPUT_FLUSH_MS 1000

enum output_kind {
	OUTPUT_DEFAULT = 0,
	OUTPUT_WATERFALL,
	OUTPUT_JSON,
	OUTPUT_OTLP,
	OUTPUT_NONE,  /* no spans written (-o none, OTEL_TRACES_EXPORTER=none): metrics only */
	OUTPUT_STORE, /* the embedded store (store.h): the default without a collector */
};

/* The embedded store's bounds unless --store-max-bytes/--store-max-age say otherwise. */
#define STORE_DEFAULT_MAX_BYTES (512ull << 20)
#define STORE_DEFAULT_MAX_AGE_NS (7ull * 86400 * 1000000000)

struct options {
	struct loader_config bpf;
	enum output_kind output;
	const char *output_file;
	size_t output_buffer_bytes;
	uint64_t duration_s;
	int verbose;
	int no_color;
	int quiet_ms;
	int self_test;
	const char *otlp_endpoint;
	const char *otlp_protocol;
	const char *otlp_exporters;
	int audit;  /* 1: table at exit, 2: JSON at exit */
	int stitch; /* --repair=stitch */
	/* --keep-path-params, else HOPTRACE_KEEP_PATH_PARAMS: every other ";name=value" in a
	 * path is dropped before export (session ids travel there) */
	struct path_param_allow keep_path_params;
	bool keep_path_params_set;
	size_t memory_limit;	/* --memory-limit: bytes, 0: none */
	size_t max_connections; /* --max-connections: connections followed at once */
	/* head sampling: --sampler/--sampler-arg, else OTEL_TRACES_SAMPLER(_ARG) */
	const char *sampler_name;
	const char *sampler_arg;
	struct sampler_config sampler;
	struct tail_config tail; /* --tail-* */
	int no_seccomp;		 /* --no-seccomp: no system call filter after start-up */
	/* --metrics-listen: the Prometheus endpoint's address; NULL: no endpoint */
	const char *metrics_listen;
	struct sockaddr_storage metrics_addr;
	socklen_t metrics_addr_len;
	/* --ui-listen: the web UI and Jaeger API (ui_api.h); NULL: none */
	const char *ui_listen;
	struct sockaddr_storage ui_addr;
	socklen_t ui_addr_len;
	/* --route, else HOPTRACE_ROUTES: patterns naming spans before templating (route.h) */
	struct route_patterns routes;
	bool routes_set;
	unsigned max_routes_per_service; /* --max-routes-per-service, 0: the default */
	/* --log-level, else -v (debug), else HOPTRACE_LOG_LEVEL, else info */
	enum log_level log_level, env_log_level;
	bool log_level_set, env_log_level_set;
	/* --health-loop-timeout, --health-export-timeout: seconds, 0: the default (health.h) */
	unsigned health_loop_s;
	unsigned health_export_s;
	struct k8s_config k8s; /* --k8s-*: pod metadata (k8s.h) */
	/* -o store: --store, else HOPTRACE_STORE, else STORE_DEFAULT_PATH; its bounds */
	const char *store_path;
	uint64_t store_max_bytes, store_max_age_ns;
	struct logcap_files log_files; /* --capture-log-file paths, by BPF map index */
};

enum {
	OPT_CAPTURE = 1000,
	OPT_CAPTURE_BACKEND,
	OPT_RINGBUF,
	OPT_SELF_TEST,
	OPT_NO_TLS,
	OPT_CAPTURE_LOGS,
	OPT_CAPTURE_LOG_FILE,
	OPT_NO_COLOR,
	OPT_QUIET_MS,
	OPT_OTLP_ENDPOINT,
	OPT_OTLP_PROTOCOL,
	OPT_OTLP_EXPORTERS,
	OPT_AUDIT,
	OPT_AUDIT_JSON,
	OPT_REPAIR,
	OPT_KEEP_PATH_PARAMS,
	OPT_OUTPUT_BUFFER,
	OPT_MEMORY_LIMIT,
	OPT_MAX_CONNECTIONS,
	OPT_SAMPLER,
	OPT_SAMPLER_ARG,
	OPT_TAIL,
	OPT_TAIL_SLOW,
	OPT_TAIL_RATIO,
	OPT_TAIL_QUIET,
	OPT_TAIL_MAX_DELAY,
	OPT_TAIL_MAX_TRACES,
	OPT_NO_SECCOMP,
	OPT_METRICS_LISTEN,
	OPT_UI_LISTEN,
	OPT_ROUTE,
	OPT_MAX_ROUTES,
	OPT_LOG_FORMAT,
	OPT_LOG_LEVEL,
	OPT_HEALTH_LOOP,
	OPT_HEALTH_EXPORT,
	OPT_STORE,
	OPT_STORE_MAX_BYTES,
	OPT_STORE_MAX_AGE,
};

static const char doc[] =
    "hoptrace: trace HTTP/1.x requests of unmodified processes with eBPF.\n"
    "\n"
    "Every process on the host is traced unless --pid, --comm or --port narrow it.\n"
    "Spans go to a local store (the default; see `hoptrace query`), to the terminal\n"
    "as waterfalls, as JSON lines, or over OTLP to an OpenTelemetry collector (the\n"
    "default when OTEL_EXPORTER_OTLP_ENDPOINT is set).\n"
    "\n"
    "EXAMPLES:\n"
    "  hoptrace                          # trace everything into the local store\n"
    "  hoptrace query --service api --min-duration 250ms   # then look\n"
    "  hoptrace -o waterfall             # print waterfalls on the terminal\n"
    "  hoptrace -p 1234 -p 5678          # only these processes (and their children)\n"
    "  hoptrace --comm nginx --port 8080 # nginx processes, connections on port 8080\n"
    "  hoptrace -o json -d 60 > spans.jsonl\n"
    "  OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 hoptrace\n"
    "  hoptrace --otlp-endpoint http://localhost:4317 --otlp-protocol grpc\n"
    "  hoptrace --audit --repair=stitch -d 60   # who drops the trace context?\n"
    "  hoptrace audit spans.jsonl              # the same audit from a JSON span file\n"
    "  hoptrace analyze spans.jsonl            # critical paths, N+1, error origins\n"
    "  hoptrace status                         # a running agent's counters and processes\n"
    "  hoptrace query --error --since 1h       # traces with an error, from the store\n"
    "  hoptrace ui                             # the store in a browser (127.0.0.1:16686)\n";

static const struct argp_option argp_opts[] = {
    {"pid", 'p', "PID", 0, "Trace this process and its children (repeatable)", 0},
    {"comm", 'c', "NAME", 0, "Trace processes with this command name (repeatable)", 0},
    {"port", 'P', "PORT", 0, "Trace connections with this local or remote port (repeatable)", 0},
    {"output", 'o', "KIND", 0,
     "store, waterfall, json, otlp or none (metrics only) (default: otlp when an endpoint "
     "is configured, else waterfall with -O, else store)",
     1},
    {"store", OPT_STORE, "PATH", 0,
     "The store's database file (default " STORE_DEFAULT_PATH
     "; overrides HOPTRACE_STORE); created 0600, its directory 0700",
     1},
    {"store-max-bytes", OPT_STORE_MAX_BYTES, "BYTES", 0,
     "The store's size bound, with a K, M or G suffix (default 512M; 0: none); the oldest "
     "traces are deleted first",
     1},
    {"store-max-age", OPT_STORE_MAX_AGE, "DURATION", 0,
     "Traces older than this are deleted from the store, e.g. 12h, 7d (default 7d; 0: "
     "none)",
     1},
    {"output-file", 'O', "FILE", 0, "Write waterfall/json output to FILE instead of stdout", 1},
    {"output-buffer-bytes", OPT_OUTPUT_BUFFER, "N", 0,
     "Bytes of output held for a slow reader of stdout or -O, 4096..1 GiB (default 4 MiB); "
     "beyond that, whole lines are dropped and counted (output_drops)",
     1},
    {"duration", 'd', "SECONDS", 0, "Run for SECONDS, flush, print counters and exit", 1},
    {"otlp-endpoint", OPT_OTLP_ENDPOINT, "URL", 0,
     "OTLP endpoint (overrides OTEL_EXPORTER_OTLP_ENDPOINT)", 2},
    {"otlp-protocol", OPT_OTLP_PROTOCOL, "PROTO", 0,
     "http/protobuf or grpc (overrides OTEL_EXPORTER_OTLP_PROTOCOL)", 2},
    {"otlp-exporters", OPT_OTLP_EXPORTERS, "N", 0,
     "Concurrent OTLP requests, 1..64 (default 4; overrides HOPTRACE_OTLP_EXPORTERS)", 2},
    {"audit", OPT_AUDIT, NULL, 0,
     "At exit, print the propagation audit: per caller -> callee edge, how the trace "
     "context was passed on (ok, forwarded, restarted, dropped, invalid)",
     2},
    {"audit-json", OPT_AUDIT_JSON, NULL, 0, "Same, as one JSON document", 2},
    {"repair", OPT_REPAIR, "MODE", 0,
     "stitch: a request that lost its context between two processes of this host joins "
     "the caller's trace; inject: add a traceparent header to outgoing HTTP/1.x requests "
     "that lack one (sock_ops + sk_msg, after a start-up self-test); combine with a comma, "
     "e.g. stitch,inject (none: default)",
     2},
    {"keep-path-params", OPT_KEEP_PATH_PARAMS, "NAME,...", 0,
     "Path parameters (;NAME=value in a URL path) exported as they are; all others are "
     "dropped from span names, url.path and url.full, since they carry session ids "
     "(default: none; overrides HOPTRACE_KEEP_PATH_PARAMS)",
     2},
    {"route", OPT_ROUTE, "PATTERN", 0,
     "A route naming the spans of matching paths, e.g. /users/{id}/orders ({name}: one "
     "segment; a last {name...}: the rest); repeatable or comma-separated, tried in order "
     "before the automatic templating (overrides HOPTRACE_ROUTES)",
     2},
    {"max-routes-per-service", OPT_MAX_ROUTES, "N", 0,
     "Distinct routes per service (and as many client URL templates), 1..65536 (default "
     "500); past it requests are named /{overflow} (routes_overflow)",
     2},
    {"capture", OPT_CAPTURE_BACKEND, "BACKEND", 0,
     "How socket I/O is captured: auto (default: the cheapest this kernel runs), tp_btf "
     "(socket tracepoints, 6.3+), fexit (socket functions, 5.15+) or syscalls (syscall "
     "tracepoints, any kernel; costs more); overrides HOPTRACE_CAPTURE",
     3},
    {"capture-bytes", OPT_CAPTURE, "N", 0,
     "Bytes of a header block copied per socket read/write, power of two, 64..16384 "
     "(default 8192)",
     3},
    {"ringbuf-bytes", OPT_RINGBUF, "N", 0,
     "Ring buffer bytes, all CPUs together (one ring per CPU, each at least 512 KiB), power of two "
     "(default 8 MiB)",
     3},
    {"memory-limit", OPT_MEMORY_LIMIT, "BYTES", 0,
     "Bytes of connection and request state kept, with a K, M or G suffix (default 128M; "
     "0: no limit). Past it new connections and requests are not followed (budget_drops)",
     3},
    {"max-connections", OPT_MAX_CONNECTIONS, "N", 0,
     "Connections followed at once, 1..1048576 (default 65536). Records of connections past it are "
     "dropped and counted (drop_conn_table_full)",
     3},
    {"metrics-listen", OPT_METRICS_LISTEN, "ADDR:PORT", 0,
     "Serve /metrics (Prometheus), /healthz and /readyz over HTTP at ADDR:PORT; a bare PORT "
     "or :PORT binds 127.0.0.1, [::]:PORT every address (default: no endpoint)",
     2},
    {"ui-listen", OPT_UI_LISTEN, "ADDR:PORT", 0,
     "Serve the web UI and a Jaeger-compatible query API (/api/traces, ...) over the store at "
     "ADDR:PORT (loopback for a bare PORT; the same address as --metrics-listen: one server)",
     2},
    {"capture-logs", OPT_CAPTURE_LOGS, NULL, 0,
     "Attach what a server thread writes to stdout/stderr (a tty, pipe, file or journald's "
     "stream) while serving a request to that request's server span, as events named \"log\", "
     "one a line, redacted (off by default)",
     3},
    {"capture-log-file", OPT_CAPTURE_LOG_FILE, "PATH", 0,
     "Also a log file, matched by identity (device and inode) at start-up; repeatable (at most "
     "16); implies --capture-logs",
     3},
    {"no-tls", OPT_NO_TLS, NULL, 0,
     "Do not trace HTTPS (no uprobes on OpenSSL libraries and binaries)", 3},
    {"no-color", OPT_NO_COLOR, NULL, 0, "No colors in the waterfall", 3},
    {"no-seccomp", OPT_NO_SECCOMP, NULL, 0,
     "No seccomp filter after start-up (by default execve, ptrace, mount, module loading, "
     "namespaces and other calls the agent never makes are refused)",
     3},
    {"quiet-ms", OPT_QUIET_MS, "MS", 0,
     "Print a trace after MS milliseconds without new spans (default 500)", 3},
    {"self-test", OPT_SELF_TEST, NULL, 0,
     "Load and attach the BPF programs, print the kernel, the programs chosen for it and "
     "their verifier figures, detach and exit",
     3},
    {"sampler", OPT_SAMPLER, "NAME", 0,
     "Head sampler: always_on, always_off, traceidratio, parentbased_always_on (default), "
     "parentbased_always_off or parentbased_traceidratio (overrides OTEL_TRACES_SAMPLER). "
     "Unsampled requests are still counted by metrics and the audit",
     2},
    {"sampler-arg", OPT_SAMPLER_ARG, "RATIO", 0,
     "Ratio 0..1 of the traceidratio samplers (overrides OTEL_TRACES_SAMPLER_ARG)", 2},
    {"tail-sampling", OPT_TAIL, NULL, 0,
     "Buffer each trace's local spans and keep the traces with an error, with a slow span "
     "(--tail-slow) or in --tail-ratio",
     2},
    {"tail-slow", OPT_TAIL_SLOW, "MS|service=NAME:MS|route=/PATH:MS", 0,
     "Tail sampling keeps traces with a span at least this slow (repeatable)", 2},
    {"tail-ratio", OPT_TAIL_RATIO, "RATIO", 0,
     "Tail sampling keeps this ratio of the other traces, by trace id (default 0.1)", 2},
    {"tail-quiet-ms", OPT_TAIL_QUIET, "MS", 0,
     "A trace's local part is complete this long after its last span (default 1000)", 2},
    {"tail-max-delay-ms", OPT_TAIL_MAX_DELAY, "MS", 0,
     "... or this long after its first (default 10000)", 2},
    {"tail-max-traces", OPT_TAIL_MAX_TRACES, "N", 0,
     "Traces buffered at once (default 4096; 16384 spans in all)", 2},
    {"verbose", 'v', NULL, 0, "Debug logging (libbpf and verifier output too)", 4},
    {"log-format", OPT_LOG_FORMAT, "FORMAT", 0,
     "text (default) or json: one JSON object a line on stderr, with ts, level and msg "
     "(overrides HOPTRACE_LOG_FORMAT)",
     4},
    {"log-level", OPT_LOG_LEVEL, "LEVEL", 0,
     "error, warn, info (default) or debug (as -v); overrides HOPTRACE_LOG_LEVEL", 4},
    {"health-loop-timeout", OPT_HEALTH_LOOP, "SECONDS", 0,
     "/healthz fails when the event loop or a ring buffer has not made progress for this "
     "long (default 10)",
     2},
    {"health-export-timeout", OPT_HEALTH_EXPORT, "SECONDS", 0,
     "/healthz fails when spans wait and no OTLP export attempt has finished for this long "
     "(a request hangs; a collector that is down or failing does not count) (default: twice "
     "the OTLP request timeout plus 5, at least 30)",
     2},
    {0},
};

/* A configuration error before start: "hoptrace: MSG" in text, an error line in JSON
 * (--log-format json: every line of stderr is JSON). Values quoted from the command line
 * are escaped in both. */
static void __attribute__((format(printf, 1, 2))) config_error(const char *fmt, ...)
{
	char msg[1024], shown[sizeof(msg) * TEXT_ESC_MAX_PER_BYTE];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_get_format() == LOG_FORMAT_JSON) {
		log_error("%s", msg);
		return;
	}
	text_escape_terminal(shown, sizeof(shown), msg, strlen(msg), 0);
	fprintf(stderr, "hoptrace: %s\n", shown);
}

/* A bad value on the command line: one line that names the setting, then exit before
 * anything is loaded (argp_error would add a second line pointing to --help). */
static void __attribute__((noreturn, format(printf, 2, 3)))
bad_setting(struct argp_state *state, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	(void)state;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	config_error("%s; see hoptrace --help", msg);
	exit(argp_err_exit_status);
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 0);
	if (errno || end == s || *end || *out > max || s[0] == '-')
		return -EINVAL;
	return 0;
}

/* A byte count with an optional K, M or G suffix (powers of 1024). */
static int parse_bytes(const char *s, unsigned long long *out)
{
	char num[32], *end;
	size_t n = strlen(s);
	unsigned shift = 0;

	if (!n || n >= sizeof(num))
		return -EINVAL;
	memcpy(num, s, n + 1);
	end = num + n - 1;
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M' || *end == 'm')
		shift = 20;
	else if (*end == 'G' || *end == 'g')
		shift = 30;
	if (shift)
		*end = '\0';
	if (parse_uint(num, 1ULL << (40 - shift), out))
		return -EINVAL;
	*out <<= shift;
	return 0;
}

static int parse_output(const char *arg, enum output_kind *out)
{
	if (strcmp(arg, "waterfall") == 0)
		*out = OUTPUT_WATERFALL;
	else if (strcmp(arg, "store") == 0)
		*out = OUTPUT_STORE;
	else if (strcmp(arg, "json") == 0)
		*out = OUTPUT_JSON;
	else if (strcmp(arg, "otlp") == 0)
		*out = OUTPUT_OTLP;
	else if (strcmp(arg, "none") == 0)
		*out = OUTPUT_NONE;
	else
		return -EINVAL;
	return 0;
}

static error_t parse_selection(struct options *o, int key, char *arg, struct argp_state *state)
{
	struct loader_config *b = &o->bpf;
	unsigned long long v;

	switch (key) {
	case 'p':
		if (parse_uint(arg, UINT32_MAX, &v) || !v || b->npids == LOADER_MAX_FILTERS)
			bad_setting(state, "invalid --pid '%s' (a process id; at most %d)", arg,
				    LOADER_MAX_FILTERS);
		b->pids[b->npids++] = (uint32_t)v;
		return 0;
	case 'c':
		if (!*arg || strlen(arg) >= HT_COMM_LEN || b->ncomms == LOADER_MAX_FILTERS)
			bad_setting(state,
				    "invalid --comm '%s' (1 to %d characters, as in "
				    "/proc/PID/comm)",
				    arg, HT_COMM_LEN - 1);
		strcpy(b->comms[b->ncomms++], arg);
		return 0;
	case 'P':
		if (parse_uint(arg, 65535, &v) || !v || b->nports == LOADER_MAX_FILTERS)
			bad_setting(state, "invalid --port '%s' (1..65535)", arg);
		b->ports[b->nports++] = (uint16_t)v;
		return 0;
	}
	return ARGP_ERR_UNKNOWN;
}

/* --repair=MODE[,MODE]: none, stitch, inject */
static error_t parse_repair(struct options *o, const char *arg, struct argp_state *state)
{
	char buf[64], *save = NULL, *tok;

	if (strlen(arg) >= sizeof(buf))
		bad_setting(state, "invalid --repair '%s' (stitch, inject or none)", arg);
	strcpy(buf, arg);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "stitch") == 0)
			o->stitch = 1;
		else if (strcmp(tok, "inject") == 0)
			o->bpf.inject = true;
		else if (strcmp(tok, "none") != 0)
			bad_setting(state, "invalid --repair '%s' (stitch, inject or none)", arg);
	}
	return 0;
}

/* The embedded store's options. */
static error_t parse_store(struct options *o, int key, char *arg, struct argp_state *state)
{
	unsigned long long v;

	switch (key) {
	case OPT_STORE:
		if (!*arg)
			bad_setting(state, "invalid --store '' (a file name)");
		o->store_path = arg;
		return 0;
	case OPT_STORE_MAX_BYTES:
		if (parse_bytes(arg, &v) || (v && v < (1u << 20)))
			bad_setting(state, "invalid --store-max-bytes '%s' (1M..1024G, or 0)", arg);
		o->store_max_bytes = v;
		return 0;
	case OPT_STORE_MAX_AGE:
		if (strcmp(arg, "0") == 0)
			o->store_max_age_ns = 0;
		else if (text_parse_duration_ns(arg, &o->store_max_age_ns) ||
			 o->store_max_age_ns < 1000000000ull)
			bad_setting(state, "invalid --store-max-age '%s' (e.g. 12h, 7d; 0: none)",
				    arg);
		return 0;
	}
	return parse_selection(o, key, arg, state);
}

/* The device of the mount that holds path (its superblock's, as /proc/self/mountinfo
 * names it), or 0 when unknown. */
static uint64_t mount_dev_of(const char *path)
{
	struct statx stx;
	char line[4096];
	uint64_t dev = 0;
	FILE *f;

	if (statx(AT_FDCWD, path, 0, STATX_MNT_ID, &stx) || !(stx.stx_mask & STATX_MNT_ID))
		return 0;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long id;
		unsigned maj, min;

		if (sscanf(line, "%llu %*u %u:%u", &id, &maj, &min) == 3 && id == stx.stx_mnt_id) {
			dev = ((uint64_t)maj << 20) | min;
			break;
		}
	}
	fclose(f);
	return dev;
}

/*
 * --capture-log-file PATH: the file's identities as the kernel may see them, the kernel's
 * dev_t (MAJOR << 20 | MINOR; stat(2) encodes it otherwise) and the inode. Two: on
 * overlayfs (containers, and the kernel matrix's guests) stat(2) gives the device of the
 * layer that holds the file, while the writer's file is the overlay's, whose device is the
 * mount's. A file replaced later (rotated) is another inode and is not followed.
 */
static void add_log_file(struct options *o, const char *path, struct argp_state *state)
{
	struct loader_config *b = &o->bpf;
	unsigned idx = o->log_files.n;
	struct stat st;
	uint64_t devs[2];

	if (idx == HT_MAX_LOG_FILES)
		bad_setting(state, "too many --capture-log-file (at most %d)", HT_MAX_LOG_FILES);
	if (stat(path, &st))
		bad_setting(state, "invalid --capture-log-file '%s' (%s)", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		bad_setting(state, "invalid --capture-log-file '%s' (not a regular file)", path);
	devs[0] = ((uint64_t)major(st.st_dev) << 20) | minor(st.st_dev);
	devs[1] = mount_dev_of(path);
	for (int i = 0; i < 2; i++) {
		if (i && (!devs[1] || devs[1] == devs[0]))
			break;
		b->log_keys[b->nlog_keys] =
		    (struct ht_log_file_key){.dev = devs[i], .ino = st.st_ino};
		b->log_key_file[b->nlog_keys++] = idx;
	}
	o->log_files.paths[idx] = path;
	o->log_files.n = idx + 1;
	b->capture_logs = true;
}

/* Options added for operations (logs, health): the rest of parse_opt. */
static error_t parse_more(struct options *o, int key, char *arg, struct argp_state *state)
{
	unsigned long long v;
	enum log_format fmt;

	switch (key) {
	case OPT_LOG_FORMAT:
		if (log_parse_format(arg, &fmt))
			bad_setting(state, "invalid --log-format '%s' (text or json)", arg);
		log_set_format(fmt); /* now: the errors of later options are in it */
		return 0;
	case OPT_LOG_LEVEL:
		if (log_parse_level(arg, &o->log_level))
			bad_setting(state, "invalid --log-level '%s' (error, warn, info or debug)",
				    arg);
		o->log_level_set = true;
		return 0;
	case OPT_CAPTURE_LOGS:
		o->bpf.capture_logs = true;
		return 0;
	case OPT_CAPTURE_LOG_FILE:
		add_log_file(o, arg, state);
		return 0;
	case OPT_HEALTH_LOOP:
	case OPT_HEALTH_EXPORT:
		if (parse_uint(arg, 86400, &v) || !v)
			bad_setting(state, "invalid --%s '%s' (seconds, 1..86400)",
				    key == OPT_HEALTH_LOOP ? "health-loop-timeout"
							   : "health-export-timeout",
				    arg);
		*(key == OPT_HEALTH_LOOP ? &o->health_loop_s : &o->health_export_s) = (unsigned)v;
		return 0;
	}
	return parse_store(o, key, arg, state);
}

static error_t parse_opt(int key, char *arg, struct argp_state *state)
{
	struct options *o = state->input;
	unsigned long long v;

	switch (key) {
	case 'o':
		if (parse_output(arg, &o->output))
			bad_setting(state,
				    "invalid --output '%s' (store, waterfall, json, otlp or none)",
				    arg);
		return 0;
	case 'O':
		o->output_file = arg;
		return 0;
	case 'd':
		if (parse_uint(arg, 365ULL * 86400, &v) || !v)
			bad_setting(state, "invalid --duration '%s' (seconds, > 0)", arg);
		o->duration_s = v;
		return 0;
	case 'v':
		o->verbose = 1;
		return 0;
	case OPT_CAPTURE:
		if (parse_uint(arg, HT_MAX_CAPTURE, &v))
			bad_setting(state, "invalid --capture-bytes '%s'", arg);
		o->bpf.capture_bytes = (uint32_t)v;
		return 0;
	case OPT_CAPTURE_BACKEND:
		if (loader__parse_capture(arg, &o->bpf.capture))
			bad_setting(
			    state, "invalid --capture '%s' (auto, tp_btf, fexit or syscalls)", arg);
		return 0;
	case OPT_RINGBUF:
		if (parse_uint(arg, 1ULL << 30, &v))
			bad_setting(state, "invalid --ringbuf-bytes '%s'", arg);
		o->bpf.ringbuf_bytes = (uint32_t)v;
		return 0;
	case OPT_OUTPUT_BUFFER:
		if (parse_uint(arg, OUTBUF_MAX_BYTES, &v) || v < OUTBUF_MIN_BYTES)
			bad_setting(state, "invalid --output-buffer-bytes '%s' (4096..%u)", arg,
				    OUTBUF_MAX_BYTES);
		o->output_buffer_bytes = (size_t)v;
		return 0;
	case OPT_NO_COLOR:
		o->no_color = 1;
		return 0;
	case OPT_QUIET_MS:
		if (parse_uint(arg, 3600000, &v))
			bad_setting(state, "invalid --quiet-ms '%s'", arg);
		o->quiet_ms = (int)v;
		return 0;
	case OPT_SELF_TEST:
		o->self_test = 1;
		return 0;
	case OPT_NO_TLS:
		o->bpf.no_tls = true;
		return 0;
	case OPT_NO_SECCOMP:
		o->no_seccomp = 1;
		return 0;
	case OPT_OTLP_ENDPOINT:
		o->otlp_endpoint = arg;
		return 0;
	case OPT_OTLP_PROTOCOL:
		o->otlp_protocol = arg;
		return 0;
	case OPT_OTLP_EXPORTERS:
		o->otlp_exporters = arg;
		return 0;
	case OPT_AUDIT:
		o->audit = 1;
		return 0;
	case OPT_AUDIT_JSON:
		o->audit = 2;
		return 0;
	case OPT_REPAIR:
		return parse_repair(o, arg, state);
	case OPT_KEEP_PATH_PARAMS:
		if (!o->keep_path_params_set)
			o->keep_path_params.n = 0; /* the flag replaces the environment's list */
		o->keep_path_params_set = true;
		if (path_param_allow_parse(&o->keep_path_params, arg))
			bad_setting(state,
				    "invalid --keep-path-params (comma-separated names, each 1..%d "
				    "bytes, at most %d)",
				    TARGET_PARAM_NAME_MAX, TARGET_KEEP_PARAMS_MAX);
		return 0;
	case OPT_MEMORY_LIMIT:
		if (parse_bytes(arg, &v))
			bad_setting(state, "invalid --memory-limit '%s' (bytes, e.g. 64M; 0: none)",
				    arg);
		o->memory_limit = (size_t)v;
		return 0;
	case OPT_SAMPLER:
		o->sampler_name = arg;
		return 0;
	case OPT_SAMPLER_ARG:
		o->sampler_arg = arg;
		return 0;
	case OPT_TAIL:
		o->tail.enabled = true;
		return 0;
	case OPT_TAIL_SLOW:
		if (tail_config_add_slow(&o->tail, arg))
			bad_setting(
			    state,
			    "invalid --tail-slow '%s' (MS, service=NAME:MS or route=/PATH:MS; "
			    "at most %d rules)",
			    arg, TAIL_MAX_RULES);
		o->tail.enabled = true;
		return 0;
	case OPT_TAIL_RATIO: {
		char *end;
		double r = strtod(arg, &end);

		if (end == arg || *end || !(r >= 0 && r <= 1))
			bad_setting(state, "invalid --tail-ratio '%s' (0..1)", arg);
		o->tail.ratio = r;
		o->tail.threshold = sampler_ratio_threshold(r);
		o->tail.enabled = true;
		return 0;
	}
	case OPT_TAIL_QUIET:
	case OPT_TAIL_MAX_DELAY:
		if (parse_uint(arg, 3600000, &v) || !v)
			bad_setting(state, "invalid --%s '%s' (1..3600000 ms)",
				    key == OPT_TAIL_QUIET ? "tail-quiet-ms" : "tail-max-delay-ms",
				    arg);
		*(key == OPT_TAIL_QUIET ? &o->tail.quiet_ns : &o->tail.max_delay_ns) =
		    v * 1000000ULL;
		o->tail.enabled = true;
		return 0;
	case OPT_TAIL_MAX_TRACES:
		if (parse_uint(arg, 1 << 20, &v) || !v)
			bad_setting(state, "invalid --tail-max-traces '%s' (1..1048576)", arg);
		o->tail.max_traces = v;
		o->tail.max_spans = v * 4;
		o->tail.enabled = true;
		return 0;
	case OPT_ROUTE:
		if (!o->routes_set)
			o->routes.n = 0; /* the flag replaces the environment's list */
		o->routes_set = true;
		if (route_patterns_parse(&o->routes, arg))
			bad_setting(state,
				    "invalid --route (a path starting with '/', {name} segments, a "
				    "last {name...}; no ',?#;' or spaces; at most %d of %d bytes)",
				    ROUTE_PATTERNS_MAX, ROUTE_PATTERN_MAX);
		return 0;
	case OPT_MAX_ROUTES:
		if (parse_uint(arg, ROUTE_PER_SERVICE_MAX, &v) || v < 1)
			bad_setting(state, "invalid --max-routes-per-service '%s' (1..%d)", arg,
				    ROUTE_PER_SERVICE_MAX);
		o->max_routes_per_service = (unsigned)v;
		return 0;
	case OPT_MAX_CONNECTIONS:
		if (parse_uint(arg, 1u << 20, &v) || v < 1)
			bad_setting(state, "invalid --max-connections '%s' (1..1048576)", arg);
		o->max_connections = (size_t)v;
		return 0;
	case OPT_UI_LISTEN:
		if (httpd_parse_listen(arg, &o->ui_addr, &o->ui_addr_len))
			bad_setting(state,
				    "invalid --ui-listen '%s' (PORT, :PORT, IPV4:PORT or "
				    "[IPV6]:PORT, numeric)",
				    arg);
		o->ui_listen = arg;
		return 0;
	case OPT_METRICS_LISTEN:
		if (httpd_parse_listen(arg, &o->metrics_addr, &o->metrics_addr_len))
			bad_setting(state,
				    "invalid --metrics-listen '%s' (PORT, :PORT, IPV4:PORT or "
				    "[IPV6]:PORT, numeric)",
				    arg);
		o->metrics_listen = arg;
		return 0;
	case ARGP_KEY_ARG:
		bad_setting(state, "unexpected argument '%s'", arg);
		return 0;
	case ARGP_KEY_INIT:
		state->child_inputs[0] = &o->k8s;
		return 0;
	}
	return parse_more(o, key, arg, state);
}

/* Head sampler: flags win over OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (each on
 * its own), then the OpenTelemetry default parentbased_always_on. A bad value is one line,
 * and no start. */
static int resolve_sampler(struct options *o)
{
	const char *name = o->sampler_name, *arg = o->sampler_arg;
	char msg[200];

	if (!name && getenv("OTEL_TRACES_SAMPLER") && *getenv("OTEL_TRACES_SAMPLER"))
		name = getenv("OTEL_TRACES_SAMPLER");
	if (!arg && getenv("OTEL_TRACES_SAMPLER_ARG") && *getenv("OTEL_TRACES_SAMPLER_ARG"))
		arg = getenv("OTEL_TRACES_SAMPLER_ARG");
	if (!name)
		name = "parentbased_always_on";
	if (sampler_config_set(&o->sampler, name, arg, msg, sizeof(msg))) {
		config_error("invalid %s: %s; see hoptrace --help",
			     o->sampler_name ? "--sampler/--sampler-arg"
					     : "OTEL_TRACES_SAMPLER/OTEL_TRACES_SAMPLER_ARG",
			     msg);
		return -EINVAL;
	}
	return 0;
}

const char *argp_program_version = "hoptrace " HOPTRACE_VERSION;
const char *argp_program_bug_address = "the hoptrace issue tracker";

/* ---- self-test: the verifier regression check -------------------------------------- */

static int report_programs(const struct loader *ld)
{
	struct bpf_program *prog;

	bpf_object__for_each_program(prog, ld->skel->obj)
	{
		struct bpf_prog_info info = {0};
		__u32 len = sizeof(info);
		int fd = bpf_program__fd(prog);

		if (!bpf_program__autoload(prog)) {
			printf("  %-16s disabled\n", bpf_program__name(prog));
			continue;
		}
		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len)) {
			log_error("program %s is not loaded", bpf_program__name(prog));
			return -ENOENT;
		}
		if (info.verified_insns) /* reported from 5.16 */
			printf("  %-16s loaded, %u instructions verified\n",
			       bpf_program__name(prog), info.verified_insns);
		else
			printf("  %-16s loaded\n", bpf_program__name(prog));
	}
	return 0;
}

static int run_self_test(const struct options *o)
{
	struct loader ld;
	int err = loader__start(&ld, &o->bpf);

	if (err) {
		printf("hoptrace self-test: FAILED\n");
		return err;
	}
	printf("hoptrace self-test: BPF object loaded and attached\n");
	loader__describe(&ld, stdout);
	err = report_programs(&ld);
	if (o->bpf.inject) {
		/* inject__start ran its own test (FIONREAD, epoll, bytes, latency) */
		printf("hoptrace self-test: injection %s\n", ld.inject ? "ok" : "FAILED");
		if (!ld.inject)
			err = -EIO;
	}
	loader__destroy(&ld);
	printf("hoptrace self-test: %s\n", err ? "FAILED" : "ok");
	return err;
}

/* ---- sinks and summary ------------------------------------------------------------- */

/* Where the agent writes, each behind an outbuf (outbuf.h): the loop never blocks on them. */
struct outputs {
	struct outbuf *std;  /* stdout: the spans without -O, the --audit report with it or OTLP */
	struct outbuf *file; /* -O FILE; NULL without */
};

/* The outbuf the spans go to (waterfall and json). */
static struct outbuf *spans_output(const struct outputs *outs)
{
	return outs->file ? outs->file : outs->std;
}

/* An existing -O file is written only if this user owns it and it has no other name: in a
 * shared directory another user could have planted it (to read the spans) or hard-linked a
 * file of ours to it (to have it truncated). Devices and FIFOs are taken (-O /dev/null). */
static int check_output_file(const char *path, int fd)
{
	struct stat st;

	if (fstat(fd, &st))
		return -errno;
	if (S_ISREG(st.st_mode)) {
		if (st.st_uid != geteuid() || st.st_nlink != 1) {
			log_error("-O %s: refused: the file exists and %s", path,
				  st.st_uid != geteuid() ? "belongs to another user"
							 : "has other hard links");
			return -EPERM;
		}
		return ftruncate(fd, 0) ? -errno : 0;
	}
	if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) {
		log_error("-O %s: refused: not a regular file, a FIFO or a character device", path);
		return -EINVAL;
	}
	return 0;
}

/*
 * Open -O FILE for the spans: never through a symbolic link (O_NOFOLLOW; as root, a link
 * planted at the path would otherwise truncate any file), created 0600 (spans hold URLs and
 * headers), truncated only after check_output_file. Non-blocking for the open only, so that
 * a FIFO without a reader fails (ENXIO) instead of holding the start-up. The fd, or -errno
 * (logged).
 */
static int open_output_file(const char *path)
{
	int fd =
	    open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC | O_NONBLOCK, 0600);
	int err, flags;

	if (fd < 0) {
		err = -errno;
		if (err == -ELOOP)
			log_error("-O %s: refused: it is a symbolic link", path);
		else
			log_error("-O %s: cannot open: %s", path, strerror(-err));
		return err;
	}
	err = check_output_file(path, fd);
	if (!err) {
		flags = fcntl(fd, F_GETFL);
		if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK))
			err = -errno;
		if (err)
			log_error("-O %s: %s", path, strerror(-err));
	} else if (err != -EPERM && err != -EINVAL) {
		log_error("-O %s: %s", path, strerror(-err));
	}
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

static void close_outputs(struct outputs *outs, int *err)
{
	if (outs->file && outbuf__close(outs->file, OUTPUT_FLUSH_MS))
		*err = -EIO;
	if (outs->std && outbuf__close(outs->std, OUTPUT_FLUSH_MS))
		*err = -EIO;
	outs->file = outs->std = NULL;
}

/* stdout, and the -O file, behind their outbufs. 0 or -errno (logged). */
static int open_outputs(const struct options *o, struct outputs *outs)
{
	size_t cap = o->output_buffer_bytes;
	int fd, err = 0;

	outs->std = outbuf__new(STDOUT_FILENO, 0, cap, "the standard output");
	if (!outs->std) {
		err = -errno;
		log_error("cannot set up the output: %s", strerror(-err));
		return err;
	}
	if (!o->output_file || o->output == OUTPUT_OTLP)
		return 0;
	fd = open_output_file(o->output_file);
	if (fd < 0) {
		err = fd;
	} else if (!(outs->file = outbuf__new(fd, 1, cap, o->output_file))) {
		err = -errno;
		close(fd);
		log_error("cannot set up the output: %s", strerror(-err));
	}
	if (err)
		close_outputs(outs, &(int){0});
	return err;
}

static struct sink *make_sink(struct options *o, struct otlp_config *otlp,
			      const struct outputs *outs)
{
	struct outbuf *ob = spans_output(outs);
	int fd = outs->file ? -1 : STDOUT_FILENO;
	FILE *out;

	if (o->output == OUTPUT_OTLP)
		return sink_otlp_new(otlp);
	if (o->output == OUTPUT_NONE)
		return sink_null_new();
	if (o->output == OUTPUT_STORE)
		return sink_store_new(
		    &(struct sink_store_config){.path = o->store_path,
						.max_bytes = o->store_max_bytes,
						.max_age_ns = o->store_max_age_ns});
	out = outbuf__stream(ob);
	if (o->output == OUTPUT_JSON) {
		/* the sink buffers whole lines itself: unbuffered, each of its drains is one
		 * hand-over of whole lines to the outbuf */
		setvbuf(out, NULL, _IONBF, 0);
		return sink_json_new(out);
	}
	return sink_waterfall_new(out, o->quiet_ms, !o->no_color && fd >= 0 && isatty(fd));
}

static void print_summary(const uint64_t bpf[HT_STAT__COUNT], struct sink *sink,
			  enum capture_backend capture, struct outbuf *output)
{
	bool json = log_get_format() == LOG_FORMAT_JSON;
	char *text = NULL;
	size_t len = 0;
	FILE *out = json ? open_memstream(&text, &len) : stderr;

	if (!out)
		out = stderr;
	fprintf(out, "hoptrace: counters (capture backend: %s)\n", loader__capture_name(capture));
	for (int i = 0; i < HT_STAT__COUNT; i++)
		fprintf(out, "  %-28s %12" PRIu64 "\n", loader__stat_name(i), bpf[i]);
	stats_print(out, 1);
	sink->print_stats(sink, out);
	outbuf__print_stats(output, out);
	if (out == stderr)
		return;
	/* --log-format json: the table as one line, a field a counter */
	fclose(out);
	log_counters(LOG_INFO, "counters",
		     &LOG_STR("capture_backend", loader__capture_name(capture)), 1, text);
	free(text);
}

/* Where the spans go and how to look at them: the store is silent otherwise. */
static void announce_store(const struct options *o)
{
	bool default_path = strcmp(o->store_path, STORE_DEFAULT_PATH) == 0;
	char size[48] = "no size bound", age[48] = "no age bound";

	if (o->store_max_bytes)
		snprintf(size, sizeof(size), "up to %" PRIu64 " MiB",
			 (uint64_t)(o->store_max_bytes >> 20));
	if (o->store_max_age_ns)
		snprintf(age, sizeof(age), "kept %" PRIu64 " h",
			 (uint64_t)(o->store_max_age_ns / 3600000000000ull));
	log_info("spans go to the store %s (%s, %s); look with `hoptrace query%s%s` or "
		 "`hoptrace ui%s%s`",
		 o->store_path, size, age, default_path ? "" : " --store ",
		 default_path ? "" : o->store_path, default_path ? "" : " --store ",
		 default_path ? "" : o->store_path);
}

static void announce_ready(void *ctx)
{
	const struct options *o = ctx;

	log_info("tracing HTTP/1.x (%s%s%s); output %s; Ctrl-C to stop",
		 o->bpf.npids ? "selected pids" : "all processes",
		 o->bpf.ncomms ? ", selected commands" : "",
		 o->bpf.nports ? ", selected ports" : "",
		 o->output == OUTPUT_JSON    ? "json"
		 : o->output == OUTPUT_OTLP  ? "otlp"
		 : o->output == OUTPUT_NONE  ? "none (metrics only)"
		 : o->output == OUTPUT_STORE ? "store"
					     : "waterfall");
	if (o->output == OUTPUT_STORE)
		announce_store(o);
}

/* OTEL_TRACES_EXPORTER (OpenTelemetry SDK configuration): otlp, or console (the terminal
 * waterfall); -o wins. Any other value is an error, not silently ignored: it would send
 * spans somewhere the operator did not ask for. */
static int traces_exporter_from_env(struct options *o)
{
	const char *v = getenv("OTEL_TRACES_EXPORTER");
	enum output_kind kind;

	if (!v || !*v)
		return 0;
	if (strcmp(v, "otlp") == 0) {
		kind = OUTPUT_OTLP;
	} else if (strcmp(v, "console") == 0) {
		kind = OUTPUT_WATERFALL;
	} else if (strcmp(v, "none") == 0) {
		kind = OUTPUT_NONE;
	} else {
		log_error("invalid OTEL_TRACES_EXPORTER (otlp, console or none; or -o)");
		return -EINVAL;
	}
	if (o->output == OUTPUT_DEFAULT)
		o->output = kind;
	return 0;
}

/* Output: flags win, then OTEL_* (an endpoint means OTLP), then the terminal waterfall. */
static int resolve_output(struct options *o, struct otlp_config *otlp)
{
	char msg[256] = "";
	int err;

	otlp_config_init(otlp);
	err = otlp_config_from_env(otlp, NULL, msg, sizeof(msg));
	if (!err && o->otlp_endpoint)
		err = otlp_config_set(otlp, "otlp-endpoint", o->otlp_endpoint, msg, sizeof(msg));
	if (!err && o->otlp_protocol)
		err = otlp_config_set(otlp, "otlp-protocol", o->otlp_protocol, msg, sizeof(msg));
	if (!err && o->otlp_exporters)
		err = otlp_config_set(otlp, "otlp-exporters", o->otlp_exporters, msg, sizeof(msg));
	if (!err)
		err = otlp_config_finish(otlp, msg, sizeof(msg));
	if (err) {
		log_error("OTLP configuration: %s", msg[0] ? msg : strerror(-err));
		return err;
	}
	err = traces_exporter_from_env(o);
	if (err)
		return err;
	/* -O FILE alone asks for a file of waterfalls, as before the store */
	if (o->output == OUTPUT_DEFAULT)
		o->output = otlp->endpoint_set ? OUTPUT_OTLP
			    : o->output_file   ? OUTPUT_WATERFALL
					       : OUTPUT_STORE;
	if (!o->store_path)
		o->store_path = getenv("HOPTRACE_STORE") && *getenv("HOPTRACE_STORE")
				    ? getenv("HOPTRACE_STORE")
				    : STORE_DEFAULT_PATH;
	return 0;
}

/* Exec records reach the TLS tracer through the tracker, in record order. Their stamps are
 * CLOCK_MONOTONIC, the clock the TLS tracer schedules its scans on. */
static void tls_exec_hook(void *ctx, uint32_t tgid, uint64_t ts_ns)
{
	tls__on_exec(ctx, tgid, ts_ns);
}

/* What a run leaves for the exit summary. */
struct run_result {
	bool ran; /* the loop ran: the counters and the audit report are printed */
	uint64_t bpf_stats[HT_STAT__COUNT];
	enum capture_backend capture;
};

/* Everything is attached and every file is open: keep only what tracing needs from now on
 * (privilege.h). A failure is logged, not fatal: the agent works as it did before. */
static void drop_privileges(const struct loader *ld)
{
	capmask_t keep = privilege__runtime_set(ld->tls != NULL, ld->inject != NULL);
	char names[256];

	/* --capture-logs: servers seen are added to a BPF map; before Linux 6.5 every bpf(2)
	 * command needs bpf_capable() under kernel.unprivileged_bpf_disabled */
	if (ld->logs_on)
		keep |= CAPMASK(CAP_BPF) | CAPMASK(CAP_SYS_ADMIN);
	int err = privilege__restrict(keep);

	if (err)
		log_warn("cannot drop the capabilities not needed after start-up: %s",
			 strerror(-err));
	else
		log_debug("capabilities kept after start-up: %s; no_new_privs set",
			  privilege__names(privilege__effective(), names, sizeof(names)));
}

/* After the capabilities: the system calls the agent never makes from now on are refused
 * in every thread (sandbox.h). A failure is logged, not fatal, as for the capabilities. */
static void install_sandbox(const struct options *o)
{
	int err;

	if (o->no_seccomp) {
		log_debug("no seccomp filter (--no-seccomp)");
		return;
	}
	err = sandbox__install();
	if (err)
		log_warn("cannot install the seccomp filter: %s; the agent runs without it",
			 strerror(-err));
	else
		log_debug("seccomp filter installed in every thread");
}

/* Load and attach, run the loop until a stop signal or the duration, detach. */
static int trace(struct options *o, struct tracker *tracker, struct sink *sink,
		 struct stop_signals *stop, struct metrics_page *page, struct run_result *res)
{
	struct loader ld = {0};
	struct loop loop;
	int err;

	err = loader__start(&ld, &o->bpf);
	if (err)
		return err;
	log_info("capture backend: %s", loader__capture_name(ld.plan.capture));
	if (ld.tls)
		tracker__on_exec(tracker, tls_exec_hook, ld.tls);
	if (ld.logs_on) {
		log_info("log lines captured (--capture-logs)");
		logcap__set_map(&tracker->logs, loader__log_procs_fd(&ld));
	}
	err = stop_signals__open(stop);
	if (err) {
		log_error("cannot set up the stop signals: %s", strerror(-err));
		loader__destroy(&ld);
		return err;
	}
	drop_privileges(&ld);
	install_sandbox(o);
	loop = (struct loop){.ringbuf_fds = ld.ring_fds,
			     .nrings = ld.nrings,
			     .ring_bytes = ld.ring_bytes,
			     .tracker = tracker,
			     .sink = sink,
			     .tls = ld.tls,
			     .stop = stop,
			     .duration_s = o->duration_s,
			     .on_ready = announce_ready,
			     .ready_ctx = o};
	if (page) {
		page->ld = &ld;
		loop.on_second = metrics_page__on_second;
		loop.second_ctx = page;
		httpd__set_health_source(page->httpd, metrics_page__health_sample, page);
	}
	err = loop_run(&loop);
	if (page) {
		/* the exporter goes next: /healthz stops reading it (and the rings) first */
		httpd__set_health_source(page->httpd, NULL, NULL);
		httpd__set_ready(page->httpd, false); /* the loop no longer drains the rings */
		page->ld = NULL;
	}
	/* detach first so nothing new arrives; the caller ends what is open and flushes */
	loader__read_stats(&ld, res->bpf_stats);
	res->capture = ld.plan.capture;
	res->ran = true;
	logcap__set_map(&tracker->logs, -1);
	loader__destroy(&ld);
	return err;
}

/*
 * Every way out once the sink exists, error exits included: the sink writes what it holds
 * (OTLP within its deadline), then come the counters and the audit report when the loop
 * ran, and stdout and the output file are flushed here, not left to exit(), so that a
 * failed write is reported. Output that the reader does not take within OUTPUT_FLUSH_MS is
 * dropped (counted): a stopped reader does not hold the exit. 0 or -EIO.
 */
static int finish_output(const struct options *o, struct sink *sink, const struct audit *audit,
			 struct outputs *outs, const struct run_result *res)
{
	int err = 0;

	sink->flush(sink, SHUTDOWN_FLUSH_MS);
	outbuf__drain(spans_output(outs), OUTPUT_FLUSH_MS);
	if (res->ran)
		print_summary(res->bpf_stats, sink, res->capture, spans_output(outs));
	sink->destroy(sink);
	if (res->ran && o->audit)
		/* stdout may carry the spans themselves: keep the report off it then */
		audit__print(audit,
			     !outs->file && o->output != OUTPUT_OTLP ? stderr
								     : outbuf__stream(outs->std),
			     o->audit == 2);
	close_outputs(outs, &err);
	return err;
}

/* The head sampler's drop, then tail sampling when asked, in front of the output sink. */
static struct sink *wrap_samplers(const struct options *o, struct sink *sink)
{
	struct sink *wrapped;
	char desc[128];

	if (sink && o->tail.enabled) {
		wrapped = sink_tail_new(sink, &o->tail);
		if (!wrapped)
			sink->destroy(sink);
		sink = wrapped;
	}
	if (!sink)
		return NULL;
	wrapped = sink_sampler_new(sink);
	if (!wrapped)
		sink->destroy(sink);
	sampler_describe(&o->sampler, desc, sizeof(desc));
	log_debug("head sampler: %s%s", desc, o->tail.enabled ? "; tail sampling on" : "");
	return wrapped;
}

/* --metrics-listen: bind before anything is loaded (a port in use is a start-up error of
 * one line). The page's sources are set once they exist. 0 or -errno (logged). */
static int metrics_start(const struct options *o, const struct otlp_config *otlp,
			 struct metrics_page *page)
{
	struct health_config hc = {
	    .loop_stall_ns = o->health_loop_s ? o->health_loop_s * HEALTH_NS_PER_S
					      : HEALTH_LOOP_STALL_DEFAULT_NS,
	    .startup_ns = HEALTH_STARTUP_NS,
	    .export_stall_ns = o->health_export_s ? o->health_export_s * HEALTH_NS_PER_S
						  : health_export_stall_default(
							(uint64_t)otlp->timeout_ms * 1000000),
	};
	struct httpd *h;
	int err;

	if (!o->metrics_listen)
		return 0;
	err = httpd__start(&h, &o->metrics_addr, o->metrics_addr_len);
	if (err)
		return err;
	httpd__set_health(h, &hc);
	err = metrics_page__init(page, h);
	if (err) {
		httpd__stop(h);
		log_error("--metrics-listen: %s", strerror(-err));
		return err;
	}
	log_fields(LOG_INFO, &LOG_STR("endpoint", httpd__address(h)), 1,
		   "metrics endpoint on http://%s/metrics", httpd__address(h));
	return 0;
}

static void metrics_stop(struct metrics_page *page)
{
	httpd__stop(page->httpd);
	metrics_page__free(page);
	page->httpd = NULL;
}

/*
 * OTLP metrics (README "Metrics"): exported when asked, by OTEL_METRICS_EXPORTER=otlp or by
 * OTEL_EXPORTER_OTLP_METRICS_ENDPOINT; none: never. Not by a traces endpoint alone: an agent
 * upgraded in place must not start posting metrics to a collector that takes only traces.
 * Returns the exporter in *exp (NULL when off), 0 or -EINVAL.
 */
static int metrics_exporter_from_env(const struct otlp_config *otlp, struct metrics_exporter **exp)
{
	const char *which = getenv("OTEL_METRICS_EXPORTER");
	const char *ep = getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
	const char *iv = getenv("OTEL_METRIC_EXPORT_INTERVAL");
	long interval = METRICS_DEFAULT_INTERVAL_MS;
	char msg[256] = "", *url = NULL, *end;
	bool asked = which && !strcmp(which, "otlp");
	int err;

	*exp = NULL;
	if (which && *which && strcmp(which, "otlp") && strcmp(which, "none")) {
		log_error("invalid OTEL_METRICS_EXPORTER (otlp or none)");
		return -EINVAL;
	}
	if ((which && !strcmp(which, "none")) || !(asked || (ep && *ep)))
		return 0;
	if (iv && *iv) {
		errno = 0;
		interval = strtol(iv, &end, 10);
		if (errno || *end || interval <= 0 || interval > 86400000) {
			log_error(
			    "invalid OTEL_METRIC_EXPORT_INTERVAL (milliseconds, 1..86400000)");
			return -EINVAL;
		}
	}
	err = metrics_otlp_url(otlp, ep, &url, msg, sizeof(msg));
	if (err) {
		log_error("OTLP metrics configuration: %s", msg[0] ? msg : strerror(-err));
		return err;
	}
	*exp = metrics_exporter_new(otlp, url, (int)interval);
	free(url);
	return *exp ? 0 : -EINVAL;
}

/* Put the metrics sink in front of sink when metrics are exported. */
static struct sink *wrap_metrics(struct sink *sink, struct metrics *m, struct metrics_exporter *exp)
{
	struct sink *wrapped;

	if (!sink || !m)
		return sink;
	wrapped = sink_metrics_new(sink, m);
	if (!wrapped) {
		sink->destroy(sink);
		metrics_exporter_free(exp);
		return NULL;
	}
	if (exp)
		sink_metrics_set_exporter(wrapped, exp);
	return wrapped;
}

/* The metrics registry on the Prometheus page. Without an OTLP metrics exporter, each
 * rendering ends an epoch, so that series idle once the table is 3/4 full still expire
 * (metrics__end_epoch); with one, the exporter ends them after each export. */
struct page_metrics {
	struct metrics *m;
	bool exporter;
};

static int render_page_metrics(void *ctx, struct prom_writer *w)
{
	struct page_metrics *pm = ctx;
	int err = metrics_render_prom(pm->m, w);

	if (!pm->exporter)
		metrics__end_epoch(pm->m);
	return err;
}

/* proc.c asks k8s.c through these (proc.h: struct proc_meta_source). */
static bool meta_enrich(void *ctx, struct resource *r)
{
	return k8s__enrich(ctx, r);
}

static uint64_t meta_generation(void *ctx)
{
	return k8s__generation(ctx);
}

static int run_agent(struct options *o)
{
	struct tracker_options topt = {
	    .idle_timeout_ns = 300ULL * 1000000000ULL,
	    .request_timeout_ns = 900ULL * 1000000000ULL,
	    .stitch = o->stitch,
	    .keep_path_params = &o->keep_path_params,
	    .routes = &o->routes,
	    .max_routes_per_service = o->max_routes_per_service,
	    .memory_limit = o->memory_limit,
	    .limits = {.conns = o->max_connections},
	    .sampler = &o->sampler,
	    .capture_logs = o->bpf.capture_logs,
	    .log_files = &o->log_files,
	};
	struct stop_signals stop = {.fd = -1};
	struct run_result res = {0};
	struct otlp_config otlp;
	struct tracker tracker;
	struct audit audit;
	struct outputs outs = {0};
	struct metrics_page page = {0};
	struct ui_agent ui = {0};
	struct metrics_exporter *mexp = NULL;
	struct metrics *metrics = NULL;
	struct page_metrics pmetrics;
	struct k8s *k8s = NULL;
	struct sink *sink;
	int err, werr;

	err = resolve_output(o, &otlp);
	if (err)
		goto out_config;
	err = metrics_exporter_from_env(&otlp, &mexp);
	if (err)
		goto out_config;
	/* the registry feeds OTLP metrics, the Prometheus page, or both */
	metrics = mexp || o->metrics_listen ? metrics_new(0) : NULL;
	if ((mexp || o->metrics_listen) && !metrics) {
		metrics_exporter_free(mexp);
		err = -ENOMEM;
		goto out_config;
	}
	err = metrics_start(o, &otlp, &page);
	if (err) {
		metrics_exporter_free(mexp);
		goto out_config;
	}
	/* the UI reads the store the agent writes (-o store, --store) */
	if (o->ui_listen && o->output != OUTPUT_STORE)
		log_warn("--ui-listen: spans do not go to the store (-o store): the UI shows only "
			 "what %s holds already",
			 o->store_path);
	err = o->ui_listen ? ui_agent_start(&ui, &o->ui_addr, o->ui_addr_len, page.httpd,
					    &o->metrics_addr, o->store_path)
			   : 0;
	if (err) {
		metrics_exporter_free(mexp);
		goto out_metrics;
	}
	pmetrics = (struct page_metrics){.m = metrics, .exporter = mexp != NULL};
	if (page.httpd) {
		page.render_more = render_page_metrics;
		page.render_more_ctx = &pmetrics;
	}
	err = audit__init(&audit);
	if (err) {
		metrics_exporter_free(mexp);
		goto out_metrics;
	}
	err = open_outputs(o, &outs);
	if (err) {
		metrics_exporter_free(mexp);
		goto out_audit;
	}
	sink = make_sink(o, &otlp, &outs);
	page.otlp = o->output == OUTPUT_OTLP ? sink : NULL;
	page.output = o->output == OUTPUT_OTLP ? NULL : spans_output(&outs);
	/* spans go tracker -> metrics -> audit -> head sampler -> tail sampler -> output:
	 * metrics and the audit count every request, sampled or not */
	sink = wrap_samplers(o, sink);
	if (sink && o->audit) {
		struct sink *wrapped = sink_audit_new(sink, &audit);

		if (!wrapped)
			sink->destroy(sink);
		sink = wrapped;
	}
	if (!sink)
		metrics_exporter_free(mexp);
	sink = wrap_metrics(sink, metrics, mexp);
	if (!sink) {
		err = -EINVAL;
		close_outputs(&outs, &err);
		goto out_audit;
	}
	err = tracker__init(&tracker, sink, &topt);
	if (!err) {
		err = k8s__start(&o->k8s, &k8s);
		if (k8s)
			proc_table__set_meta(
			    &tracker.procs,
			    &(struct proc_meta_source){meta_enrich, meta_generation, k8s});
		page.tracker = &tracker;
		if (!err)
			err = trace(o, &tracker, sink, &stop, page.httpd ? &page : NULL, &res);
		page.tracker = NULL;
		/* open requests end here, as errors: spans the sink has yet to write */
		tracker__shutdown(&tracker);
	}
	k8s__stop(k8s);
	werr = finish_output(o, sink, &audit, &outs, &res);
	err = err ?: werr;
	stop_signals__close(&stop);
out_audit:
	audit__free(&audit);
out_metrics:
	if (page.httpd)
		metrics_stop(&page);
	ui_agent_stop(&ui); /* after: it may be mounted on the metrics endpoint */
out_config:
	metrics_free(metrics);
	otlp_config_free(&otlp);
	return err;
}

/* HOPTRACE_LOG_FORMAT and HOPTRACE_LOG_LEVEL, before anything is logged; the flags win.
 * 0 or -EINVAL (said). */
static int log_config_from_env(struct options *o)
{
	const char *fmt = getenv("HOPTRACE_LOG_FORMAT"), *lvl = getenv("HOPTRACE_LOG_LEVEL");
	enum log_format f;

	if (fmt && *fmt) {
		if (log_parse_format(fmt, &f)) {
			config_error("invalid HOPTRACE_LOG_FORMAT (text or json)");
			return -EINVAL;
		}
		log_set_format(f);
	}
	if (lvl && *lvl) {
		if (log_parse_level(lvl, &o->env_log_level)) {
			config_error("invalid HOPTRACE_LOG_LEVEL (error, warn, info or debug)");
			return -EINVAL;
		}
		o->env_log_level_set = true;
	}
	return 0;
}

/* The k8s.h flags, in their own section of --help. */
static const struct argp_child argp_children[] = {
    {&k8s_argp, 0, "Kubernetes pod metadata:", 10},
    {0},
};

int main(int argc, char **argv)
{
	struct options o = {
	    .bpf = {.capture_bytes = HT_DEFAULT_CAPTURE,
		    .ringbuf_bytes = HT_DEFAULT_RINGBUF_BYTES,
		    .wakeup_bytes = 256 * 1024},
	    .quiet_ms = 500,
	    .output_buffer_bytes = OUTBUF_DEFAULT_BYTES,
	    .memory_limit = MEM_BUDGET_DEFAULT,
	    .store_max_bytes = STORE_DEFAULT_MAX_BYTES,
	    .store_max_age_ns = STORE_DEFAULT_MAX_AGE_NS,
	};
	struct argp argp = {argp_opts, parse_opt, NULL, doc, argp_children, NULL, NULL};
	int err;

	/* no core dump, and no ptrace or /proc/PID/mem of the agent by its own user: its memory
	 * holds the plaintext of other processes' requests */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (argc > 1 && strcmp(argv[1], "audit") == 0)
		return audit_cli_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "ui") == 0)
		return ui_cli_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "analyze") == 0)
		return analyze_cli_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "status") == 0)
		return status_cli_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "query") == 0)
		return query_cli_main(argc - 1, argv + 1);
	if (log_config_from_env(&o))
		return 2;
	if (getenv("HOPTRACE_CAPTURE") && *getenv("HOPTRACE_CAPTURE") &&
	    loader__parse_capture(getenv("HOPTRACE_CAPTURE"), &o.bpf.capture)) {
		char shown[128];

		text_escape_terminal(shown, sizeof(shown), getenv("HOPTRACE_CAPTURE"),
				     strlen(getenv("HOPTRACE_CAPTURE")), 0);
		config_error("invalid HOPTRACE_CAPTURE '%s' (auto, tp_btf, fexit or syscalls)",
			     shown);
		return 2;
	}
	if (getenv("HOPTRACE_KEEP_PATH_PARAMS") &&
	    path_param_allow_parse(&o.keep_path_params, getenv("HOPTRACE_KEEP_PATH_PARAMS"))) {
		config_error("invalid HOPTRACE_KEEP_PATH_PARAMS (comma-separated names, each "
			     "1..%d bytes, at most %d)",
			     TARGET_PARAM_NAME_MAX, TARGET_KEEP_PARAMS_MAX);
		return 2;
	}
	sampler_config_init(&o.sampler);
	tail_config_init(&o.tail);
	if (getenv("HOPTRACE_ROUTES") && *getenv("HOPTRACE_ROUTES") &&
	    route_patterns_parse(&o.routes, getenv("HOPTRACE_ROUTES"))) {
		config_error("invalid HOPTRACE_ROUTES (comma-separated patterns, see --route)");
		return 2;
	}
	k8s_config_init(&o.k8s);
	err = argp_parse(&argp, argc, argv, 0, NULL, &o);
	if (err)
		return 2;
	if (resolve_sampler(&o))
		return 2;
	o.bpf.sampler = &o.sampler;
	log_set_level(o.log_level_set	    ? o.log_level
		      : o.verbose	    ? LOG_DEBUG
		      : o.env_log_level_set ? o.env_log_level
					    : LOG_INFO);
	if (!(privilege__effective() & (CAPMASK(CAP_BPF) | CAPMASK(CAP_SYS_ADMIN))))
		log_warn("no CAP_BPF: loading BPF programs will fail (run as root, or grant "
			 "CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, CAP_SYS_PTRACE and "
			 "CAP_DAC_READ_SEARCH; README \"Privileges\")");
	err = o.self_test ? run_self_test(&o) : run_agent(&o);
	return err ? 1 : 0;
}
