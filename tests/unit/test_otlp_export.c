// SPDX-License-Identifier: BSD-2-Clause
/*
 * The OTLP sink end to end against real receivers started by the test: hoptrace-collect
 * for OTLP/HTTP (gzip on and off, 503 + Retry-After, 400, down at start, slow) and
 * tests/integration/otlp_grpc_receiver.js (node's http2, no gRPC library) for OTLP/gRPC.
 * The export workers: 1 vs 4 against a late receiver, one partial batch at a time, the
 * schedule delay, idle workers asleep and woken one at a time, pressure on the oldest only.
 *
 * Where the programs are: HOPTRACE_COLLECT (else build/hoptrace-collect or
 * build/san/hoptrace-collect), NODE (else node on PATH) and OTLP_GRPC_RECEIVER (else
 * tests/integration/otlp_grpc_receiver.js). A missing one skips the tests that need it,
 * except under CI=true, where it fails them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "export/otlp_config.h"
#include "export/otlp_encode.h"
#include "export/otlp_gzip.h"
#include "export/sink_otlp.h"
#include "log.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "resource.h"
#include "span.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest Request;

static char tmpdir[64];
/* receivers still running: a failed assertion leaves the test early, teardown ends them */
static pid_t children[8];
static char collect_bin[512];
static char node_bin[512];
static char grpc_script[512];

/* ---- helpers --------------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool in_ci(void)
{
	const char *ci = getenv("CI");

	return ci && !strcmp(ci, "true");
}

static void need(const char *what, const char *path)
{
	if (path[0])
		return;
	if (in_ci())
		fail_msg("%s not found: build it (make all) or set its variable", what);
	print_message("skipped: %s not found\n", what);
	skip();
}

static bool find_exe(char *out, size_t len, const char *var, const char *const *cands)
{
	const char *v = getenv(var);

	if (v && *v) {
		snprintf(out, len, "%s", v);
		return access(out, R_OK) == 0;
	}
	for (; *cands; cands++) {
		if (access(*cands, X_OK) == 0 || (strstr(*cands, ".js") && !access(*cands, R_OK))) {
			snprintf(out, len, "%s", *cands);
			return true;
		}
	}
	out[0] = '\0';
	return false;
}

static void path_in(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", tmpdir, name);
}

/* Start argv with stdout and stderr to log; return its pid. */
static pid_t spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd < 0)
			_exit(126);
		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++) {
		if (!children[i]) {
			children[i] = pid;
			break;
		}
	}
	return pid;
}

static void forget(pid_t pid)
{
	for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++)
		if (children[i] == pid)
			children[i] = 0;
}

/* Wait for "port N" in the child's log (it listens by then). */
static int wait_port(pid_t pid, const char *log)
{
	uint64_t until = now_ms() + 10000;

	while (now_ms() < until) {
		char buf[4096] = "";
		FILE *f = fopen(log, "r");
		const char *p;
		int status;

		if (f) {
			size_t n = fread(buf, 1, sizeof(buf) - 1, f);

			buf[n] = '\0';
			fclose(f);
		}
		p = strstr(buf, "port ");
		if (p && atoi(p + 5) > 0)
			return atoi(p + 5);
		if (waitpid(pid, &status, WNOHANG) == pid) {
			forget(pid); /* reaped: its pid may be reused */
			fail_msg("receiver exited early; its output: %s", buf);
		}
		usleep(20000);
	}
	fail_msg("receiver did not start listening within 10 s");
	return -1;
}

/* SIGTERM the receiver; it must exit cleanly (under ASan: without leaks or errors). */
static void stop(pid_t pid)
{
	int status;

	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	forget(pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("receiver %d ended with status 0x%x: see its log in %s", pid, status,
			 tmpdir);
}

static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* hoptrace-collect with extra arguments (NULL-terminated); JSON to out.jsonl. */
static pid_t start_collect(int port, int *bound, ...)
{
	char portstr[16], out[128], log[128];
	char *argv[24] = {collect_bin, "--port", portstr, "--output", out};
	int argc = 5;
	va_list ap;
	pid_t pid;

	snprintf(portstr, sizeof(portstr), "%d", port);
	path_in(out, sizeof(out), "out.jsonl");
	path_in(log, sizeof(log), "collect.log");
	va_start(ap, bound);
	for (char *a; argc < 22 && (a = va_arg(ap, char *));)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	/* a second receiver in one test: wait_port must not read the first one's port */
	unlink(log);
	pid = spawn(argv, log);
	*bound = wait_port(pid, log);
	return pid;
}

static pid_t start_grpc(int *bound, ...)
{
	char out[128], log[128];
	char *argv[24] = {node_bin, grpc_script, "--out", out};
	int argc = 4;
	va_list ap;
	pid_t pid;

	path_in(out, sizeof(out), "grpc");
	path_in(log, sizeof(log), "grpc.log");
	va_start(ap, bound);
	for (char *a; argc < 22 && (a = va_arg(ap, char *));)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	pid = spawn(argv, log);
	*bound = wait_port(pid, log);
	return pid;
}

/* A sink for url; ap holds "name=value" flag settings, NULL-terminated. */
static struct sink *vmake_sink(const char *url, const char *protocol, va_list ap)
{
	struct otlp_config cfg;
	char msg[256];
	struct sink *sk;

	otlp_config_init(&cfg);
	assert_int_equal(otlp_config_set(&cfg, "otlp-endpoint", url, msg, sizeof(msg)), 0);
	assert_int_equal(otlp_config_set(&cfg, "otlp-protocol", protocol, msg, sizeof(msg)), 0);
	assert_int_equal(otlp_config_set(&cfg, "otlp-schedule-delay", "50", msg, sizeof(msg)), 0);
	assert_int_equal(otlp_config_set(&cfg, "otlp-timeout", "5000", msg, sizeof(msg)), 0);
	for (const char *o; (o = va_arg(ap, const char *));) {
		char name[64];
		const char *eq = strchr(o, '=');

		snprintf(name, sizeof(name), "%.*s", (int)(eq - o), o);
		if (otlp_config_set(&cfg, name, eq + 1, msg, sizeof(msg)))
			fail_msg("%s", msg);
	}
	if (otlp_config_finish(&cfg, msg, sizeof(msg)))
		fail_msg("%s", msg);
	sk = sink_otlp_new(&cfg);
	otlp_config_free(&cfg);
	assert_non_null(sk);
	return sk;
}

/* A sink for http://127.0.0.1:port, then "name=value" flag settings, NULL-terminated. */
static struct sink *make_sink(int port, const char *protocol, ...)
{
	struct sink *sk;
	char url[64];
	va_list ap;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	va_start(ap, protocol);
	sk = vmake_sink(url, protocol, ap);
	va_end(ap);
	return sk;
}

static struct sink *make_sink_url(const char *url, const char *protocol, ...)
{
	struct sink *sk;
	va_list ap;

	va_start(ap, protocol);
	sk = vmake_sink(url, protocol, ap);
	va_end(ap);
	return sk;
}

static struct resource *users;

static struct span *make_span(unsigned i)
{
	struct span *s = span_new();

	assert_non_null(s);
	span_random_id(s->trace_id, 16);
	s->span_id[0] = 0x5a;
	s->span_id[4] = (uint8_t)(i >> 24);
	s->span_id[5] = (uint8_t)(i >> 16);
	s->span_id[6] = (uint8_t)(i >> 8);
	s->span_id[7] = (uint8_t)i;
	s->trace_flags = 1;
	s->kind = SPAN_KIND_SERVER;
	s->start_unix_ns = 1700000000000000000ull + i;
	s->end_unix_ns = s->start_unix_ns + 1000;
	s->resource = resource_get(users);
	snprintf(s->name, sizeof(s->name), "GET /item/%u", i);
	span_set_str(s, "http.request.method", "GET", 3);
	span_set_int(s, "http.response.status_code", 200);
	return s;
}

static void emit_n(struct sink *sk, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		sk->emit(sk, make_span(i));
}

static struct sink_otlp_stats stats_of(struct sink *sk)
{
	struct sink_otlp_stats st;

	sink_otlp_get_stats(sk, &st);
	return st;
}

static size_t count_lines(const char *file, const char *needle)
{
	char path[128], *line = NULL;
	size_t cap = 0, n = 0;
	FILE *f;

	path_in(path, sizeof(path), file);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (getline(&line, &cap, f) > 0)
		n += !needle || strstr(line, needle);
	free(line);
	fclose(f);
	return n;
}

static bool file_has(const char *file, const char *needle)
{
	char path[128], *line = NULL;
	size_t cap = 0;
	bool found = false;
	FILE *f;

	path_in(path, sizeof(path), file);
	f = fopen(path, "r");
	if (!f)
		return false;
	while (!found && getline(&line, &cap, f) > 0)
		found = strstr(line, needle) != NULL;
	free(line);
	fclose(f);
	return found;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/hoptrace-otlp-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	users = resource_new(4242, 1);
	users->service_name = strdup("users");
	users->exe_name = strdup("users-svc");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++) {
		if (children[i]) {
			kill(children[i], SIGKILL);
			waitpid(children[i], NULL, 0);
			children[i] = 0;
		}
	}
	resource_put(users);
	nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* ---- OTLP/HTTP ------------------------------------------------------------------------- */

/* The receiver's exit line: "exit: N connections, N requests, N spans, ...". */
static void collect_totals(unsigned *conns, unsigned *reqs, unsigned *spans)
{
	char path[128], *line = NULL;
	size_t cap = 0;
	bool found = false;
	FILE *f;

	path_in(path, sizeof(path), "collect.log");
	f = fopen(path, "r");
	assert_non_null(f);
	while (!found && getline(&line, &cap, f) > 0) {
		const char *p = strstr(line, "exit: ");

		found = p && sscanf(p, "exit: %u connections, %u requests, %u spans", conns, reqs,
				    spans) == 3;
	}
	free(line);
	fclose(f);
	assert_true(found);
}

static void roundtrip_http(const char *compression, const char *exporters, unsigned max_conns)
{
	struct sink_otlp_stats st;
	unsigned conns, reqs, spans;
	struct sink *sk;
	int port;
	pid_t pid;

	need("hoptrace-collect", collect_bin);
	pid = start_collect(0, &port, NULL);
	/* batches go by size only (flush sends what is left), so the request count is exact */
	sk = make_sink(port, "http/protobuf", compression, exporters, "otlp-batch-size=200",
		       "otlp-schedule-delay=60000", "otlp-headers=x-test=1", NULL);
	emit_n(sk, 1000);
	sk->flush(sk, 10000);
	st = stats_of(sk);
	assert_int_equal(st.exported, 1000);
	assert_int_equal(st.failed + st.retried + st.dropped_queue_full + st.dropped_shutdown, 0);
	assert_int_equal(st.requests, 5);
	assert_true(st.bytes_sent > 0);
	sk->print_stats(sk, stderr);
	sk->destroy(sk);
	stop(pid);
	assert_int_equal(count_lines("out.jsonl", NULL), 1000);
	assert_int_equal(count_lines("out.jsonl", "\"service.name\":\"users\""), 1000);
	assert_int_equal(count_lines("out.jsonl", "\"kind\":\"SERVER\""), 1000);
	assert_true(file_has("out.jsonl", "\"span_id\":\"5a000000000003e7\""));
	assert_true(file_has("out.jsonl", "\"http.response.status_code\":200"));
	assert_true(file_has("out.jsonl", "\"process.pid\":4242"));
	assert_true(file_has("out.jsonl", "\"telemetry.sdk.name\":\"hoptrace\""));
	/* keep-alive: each worker opened one connection and sent every export over it */
	collect_totals(&conns, &reqs, &spans);
	assert_int_equal(reqs, 5);
	assert_int_equal(spans, 1000);
	assert_in_range(conns, 1, max_conns);
}

static void test_http_plain(void **state)
{
	(void)state;
	roundtrip_http("otlp-compression=none", "otlp-exporters=1", 1);
	assert_false(file_has("collect.log", "gzip"));
}

static void test_http_gzip(void **state)
{
	(void)state;
	/* the default 4 workers: 5 batches at once take 4 connections, then reuse one */
	roundtrip_http("otlp-compression=gzip", "otlp-exporters=4", 4);
	assert_true(file_has("collect.log", "gzip"));
}

/* 503 with Retry-After twice, then OK: nothing lost, and the hint was obeyed. */
static void test_http_retry_after(void **state)
{
	struct sink_otlp_stats st;
	struct sink *sk;
	uint64_t t0;
	int port;
	pid_t pid;

	(void)state;
	need("hoptrace-collect", collect_bin);
	pid = start_collect(0, &port, "--fail-first", "2", "--retry-after", "1", NULL);
	sk = make_sink(port, "http/protobuf", "otlp-compression=gzip", NULL);
	t0 = now_ms();
	emit_n(sk, 10);
	sk->flush(sk, 15000);
	st = stats_of(sk);
	assert_int_equal(st.exported, 10);
	assert_int_equal(st.retried, 2);
	assert_int_equal(st.failed, 0);
	assert_int_equal(st.requests, 3);
	/* the backoff alone would be under 1.5 s */
	assert_true(now_ms() - t0 >= 1900);
	sk->destroy(sk);
	stop(pid);
	assert_int_equal(count_lines("out.jsonl", NULL), 10);
}

/* 400: counted as failed, never retried. */
static void test_http_permanent(void **state)
{
	struct sink_otlp_stats st;
	struct sink *sk;
	int port;
	pid_t pid;

	(void)state;
	need("hoptrace-collect", collect_bin);
	pid = start_collect(0, &port, "--fail-status", "400", NULL);
	sk = make_sink(port, "http/protobuf", "otlp-batch-size=10", "otlp-schedule-delay=60000",
		       NULL);
	emit_n(sk, 20);
	sk->flush(sk, 10000);
	st = stats_of(sk);
	assert_int_equal(st.failed, 20);
	assert_int_equal(st.exported + st.retried, 0);
	assert_int_equal(st.requests, 2);
	sk->destroy(sk);
	stop(pid);
}

/* Nobody listening at first: the spans wait in the queue and go out once it listens. */
static void test_http_down_then_up(void **state)
{
	struct sink_otlp_stats st;
	struct sink *sk;
	int port = free_port(), bound;
	pid_t pid;

	(void)state;
	need("hoptrace-collect", collect_bin);
	sk = make_sink(port, "http/protobuf", NULL);
	emit_n(sk, 50);
	usleep(1200 * 1000);
	st = stats_of(sk);
	assert_true(st.retried >= 1);
	assert_int_equal(st.exported, 0);
	pid = start_collect(port, &bound, NULL);
	assert_int_equal(bound, port);
	sk->flush(sk, 15000);
	st = stats_of(sk);
	assert_int_equal(st.exported, 50);
	assert_int_equal(st.failed + st.dropped_queue_full + st.dropped_shutdown, 0);
	sk->destroy(sk);
	stop(pid);
	assert_int_equal(count_lines("out.jsonl", NULL), 50);
}

/*
 * Beyond the queue budget the oldest spans go, counted; emit never waits. Each of the 4
 * workers may hold a batch besides the queue: 10 + 4 * 5 spans at most survive.
 */
static void test_queue_overflow(void **state)
{
	struct sink_otlp_stats st;
	struct sink *sk;
	int port = free_port(), bound;
	uint64_t t0;
	pid_t pid;

	(void)state;
	need("hoptrace-collect", collect_bin);
	sk = make_sink(port, "http/protobuf", "otlp-queue-size=10", "otlp-batch-size=5",
		       "otlp-export-timeout=60000", "otlp-exporters=4", NULL);
	t0 = now_ms();
	emit_n(sk, 100);
	assert_true(now_ms() - t0 < 500);
	st = stats_of(sk);
	assert_true(st.dropped_queue_full >= 100 - 10 - 4 * 5);
	pid = start_collect(port, &bound, NULL);
	sk->flush(sk, 15000);
	st = stats_of(sk);
	assert_true(st.exported >= 10);
	assert_int_equal(st.exported + st.dropped_queue_full + st.failed + st.dropped_shutdown,
			 100);
	sk->destroy(sk);
	stop(pid);
	assert_int_equal(count_lines("out.jsonl", NULL), st.exported);
}

/*
 * Nobody listening; each of the 4 workers retries a batch of 5 (spans 0-19) when 30 more
 * spans (20-49) flood a queue of 10, evicting 20-39. With OTEL_BSP_EXPORT_TIMEOUT at 300 ms
 * the four old batches give way, one by one, and the first two workers to let go take the
 * newest spans (40-49), which nothing presses any more: the later give-ups must not count
 * as pressure on them. Once the receiver is up, exactly 40-49 arrive.
 */
static void test_pressure_drops_only_the_oldest(void **state)
{
	struct sink_otlp_stats st;
	struct sink *sk;
	int port = free_port(), bound;
	char id[64];
	pid_t pid;

	(void)state;
	need("hoptrace-collect", collect_bin);
	sk = make_sink(port, "http/protobuf", "otlp-queue-size=10", "otlp-batch-size=5",
		       "otlp-export-timeout=300", "otlp-exporters=4", NULL);
	for (unsigned i = 0; i < 20; i++) {
		sk->emit(sk, make_span(i));
		if (i % 5 == 4)
			usleep(20 * 1000); /* a worker takes each batch */
	}
	usleep(100 * 1000);
	assert_int_equal(stats_of(sk).queued, 0);
	for (unsigned i = 20; i < 50; i++)
		sk->emit(sk, make_span(i));
	/* first backoffs 250-500 ms, second 500-1000 ms: every old batch is given up by then */
	usleep(2000 * 1000);
	pid = start_collect(port, &bound, NULL);
	sk->flush(sk, 15000);
	st = stats_of(sk);
	assert_int_equal(st.exported, 10);
	assert_int_equal(st.dropped_queue_full, 40);
	sk->destroy(sk);
	stop(pid);
	assert_int_equal(count_lines("out.jsonl", NULL), 10);
	for (unsigned i = 40; i < 50; i++) {
		snprintf(id, sizeof(id), "\"span_id\":\"5a000000000000%02x\"", i);
		assert_true(file_has("out.jsonl", id));
	}
}

/* A receiver slower than the flush deadline: flush returns on time, the rest is counted. */
static void test_flush_deadline(void **state)
{
	struct sink_otlp_stats st;
	struct sink *sk;
	uint64_t t0;
	int port;
	pid_t pid;

	(void)state;
	need("hoptrace-collect", collect_bin);
	pid = start_collect(0, &port, "--delay-ms", "3000", NULL);
	sk = make_sink(port, "http/protobuf", "otlp-batch-size=10", NULL);
	emit_n(sk, 30);
	usleep(200 * 1000); /* the first batch is in flight */
	t0 = now_ms();
	sk->flush(sk, 300);
	assert_true(now_ms() - t0 < 1500);
	st = stats_of(sk);
	assert_int_equal(st.dropped_shutdown, 30);
	assert_int_equal(st.queued, 0);
	sk->destroy(sk);
	stop(pid);
}

/* ---- concurrent export workers -------------------------------------------------------- */

static void test_config_exporters(void **state)
{
	char *eight[] = {"HOPTRACE_OTLP_EXPORTERS=8", NULL};
	char *zero[] = {"HOPTRACE_OTLP_EXPORTERS=0", NULL};
	char *many[] = {"HOPTRACE_OTLP_EXPORTERS=65", NULL};
	struct otlp_config cfg;
	char msg[256] = "";

	(void)state;
	otlp_config_init(&cfg);
	assert_int_equal(cfg.exporters, 4);
	assert_int_equal(otlp_config_from_env(&cfg, eight, msg, sizeof(msg)), 0);
	assert_int_equal(cfg.exporters, 8);
	/* the flag wins over the variable */
	assert_int_equal(otlp_config_set(&cfg, "otlp-exporters", "64", msg, sizeof(msg)), 0);
	assert_int_equal(cfg.exporters, 64);
	assert_int_equal(otlp_config_from_env(&cfg, zero, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "HOPTRACE_OTLP_EXPORTERS=0: expected"));
	assert_int_equal(otlp_config_from_env(&cfg, many, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "from 1 to 64"));
	assert_int_equal(otlp_config_set(&cfg, "otlp-exporters", "two", msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "--otlp-exporters=two"));
	assert_int_equal(cfg.exporters, 64);
	otlp_config_free(&cfg);
}

/*
 * 8 full batches to a receiver answering each request 200 ms late; ms until flush returns
 * with all of them accepted. *conns: connections the receiver saw.
 */
static uint64_t burst_ms(const char *exporters, unsigned *conns)
{
	struct sink_otlp_stats st;
	unsigned reqs, spans;
	struct sink *sk;
	uint64_t t0, ms;
	int port;
	pid_t pid;

	pid = start_collect(0, &port, "--delay-ms", "200", NULL);
	sk = make_sink(port, "http/protobuf", exporters, "otlp-batch-size=10",
		       "otlp-schedule-delay=60000", NULL);
	t0 = now_ms();
	emit_n(sk, 80);
	sk->flush(sk, 10000);
	ms = now_ms() - t0;
	st = stats_of(sk);
	assert_int_equal(st.exported, 80);
	assert_int_equal(st.requests, 8);
	assert_int_equal(st.failed + st.retried + st.dropped_queue_full + st.dropped_shutdown, 0);
	sk->destroy(sk);
	stop(pid);
	collect_totals(conns, &reqs, &spans);
	assert_int_equal(reqs, 8);
	assert_int_equal(spans, 80);
	return ms;
}

/*
 * Throughput is workers x batch / round trip: one worker needs 8 round trips, four need 2.
 * The ratio asserted (< 1/2, ideally 1/4) leaves room for a loaded machine.
 */
static void test_concurrent_exports(void **state)
{
	unsigned conns1, conns4;
	uint64_t one, four;

	(void)state;
	need("hoptrace-collect", collect_bin);
	one = burst_ms("otlp-exporters=1", &conns1);
	four = burst_ms("otlp-exporters=4", &conns4);
	print_message("8 batches, 200 ms round trip: 1 worker %" PRIu64 " ms, 4 workers %" PRIu64
		      " ms\n",
		      one, four);
	assert_true(one >= 8 * 200);
	assert_true(four * 2 < one);
	assert_int_equal(conns1, 1);
	assert_in_range(conns4, 2, 4);
}

/*
 * A trickle of spans (one per 20 ms for 800 ms) to a receiver answering 400 ms late, with 4
 * idle workers and a 50 ms schedule delay: one partial batch in flight at a time, so about
 * three requests (at 50 ms, when the first returns, at the flush), not one per worker per
 * schedule delay (10 or more).
 */
static void test_one_partial_batch_at_a_time(void **state)
{
	struct sink_otlp_stats st;
	unsigned i = 0;
	struct sink *sk;
	uint64_t t0;
	int port;
	pid_t pid;

	(void)state;
	need("hoptrace-collect", collect_bin);
	pid = start_collect(0, &port, "--delay-ms", "400", NULL);
	sk = make_sink(port, "http/protobuf", "otlp-exporters=4", "otlp-schedule-delay=50", NULL);
	t0 = now_ms();
	while (now_ms() - t0 < 800) {
		sk->emit(sk, make_span(i++));
		usleep(20000);
	}
	sk->flush(sk, 10000);
	st = stats_of(sk);
	assert_int_equal(st.exported, i);
	assert_in_range(st.requests, 2, 4);
	sk->destroy(sk);
	stop(pid);
}

/* A partial batch goes once its oldest span has waited the schedule delay, not before. */
static void test_schedule_delay(void **state)
{
	struct sink *sk;
	uint64_t t0, waited;
	int port;
	pid_t pid;

	(void)state;
	need("hoptrace-collect", collect_bin);
	pid = start_collect(0, &port, NULL);
	sk = make_sink(port, "http/protobuf", "otlp-exporters=4", "otlp-schedule-delay=300", NULL);
	t0 = now_ms();
	emit_n(sk, 3);
	while (stats_of(sk).exported < 3 && now_ms() - t0 < 5000)
		usleep(5000);
	waited = now_ms() - t0;
	assert_int_equal(stats_of(sk).exported, 3);
	assert_in_range(waited, 300, 3000);
	assert_int_equal(stats_of(sk).requests, 1);
	sk->destroy(sk);
	stop(pid);
}

struct worker_switches {
	int tid;
	unsigned long n; /* voluntary context switches: each sleep of the thread */
};

/*
 * The export workers of this process (threads named otlp-export-N) and their switches,
 * leaving out those in skip (workers of a sink an earlier failed test left behind).
 */
static size_t worker_switches(struct worker_switches *w, size_t max,
			      const struct worker_switches *skip, size_t nskip)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	size_t n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) && n < max) {
		char path[300], buf[4096];
		const char *p;
		size_t len;
		FILE *f;

		bool old = false;

		if (e->d_name[0] == '.')
			continue;
		for (size_t i = 0; i < nskip; i++)
			old = old || skip[i].tid == atoi(e->d_name);
		if (old)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		if (strncmp(buf, "otlp-export-", 12))
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		p = strstr(buf, "\nvoluntary_ctxt_switches:");
		assert_non_null(p);
		w[n].tid = atoi(e->d_name);
		w[n].n = strtoul(p + 25, NULL, 10);
		n++;
	}
	closedir(d);
	return n;
}

/* How many workers of a ran (slept and woke) by the time of b. */
static unsigned workers_woken(const struct worker_switches *a, size_t na,
			      const struct worker_switches *b, size_t nb)
{
	unsigned woken = 0;

	for (size_t i = 0; i < na; i++)
		for (size_t j = 0; j < nb; j++)
			woken += a[i].tid == b[j].tid && a[i].n != b[j].n;
	return woken;
}

/*
 * Idle workers sleep without a timeout: none wakes in half a second. One span wakes one
 * worker (signal, not broadcast): it waits out the schedule delay and sends; the other
 * three sleep on.
 */
static void test_idle_workers_sleep(void **state)
{
	struct worker_switches before[64], a[8], b[8], c[8];
	size_t nbefore, na, nb, nc;
	struct sink *sk;
	uint64_t t0;
	int port;
	pid_t pid;

	(void)state;
	need("hoptrace-collect", collect_bin);
	nbefore = worker_switches(before, 64, NULL, 0);
	pid = start_collect(0, &port, NULL);
	sk = make_sink(port, "http/protobuf", "otlp-exporters=4", "otlp-batch-size=10",
		       "otlp-schedule-delay=100", NULL);
	emit_n(sk, 40); /* every worker sends one batch: connections up */
	sk->flush(sk, 10000);
	assert_int_equal(stats_of(sk).exported, 40);
	usleep(300 * 1000);
	na = worker_switches(a, 8, before, nbefore);
	assert_int_equal(na, 4);
	usleep(500 * 1000);
	nb = worker_switches(b, 8, before, nbefore);
	assert_int_equal(workers_woken(a, na, b, nb), 0);

	sk->emit(sk, make_span(1000));
	t0 = now_ms();
	while (stats_of(sk).exported < 41 && now_ms() - t0 < 5000)
		usleep(5000);
	assert_int_equal(stats_of(sk).exported, 41);
	usleep(100 * 1000);
	nc = worker_switches(c, 8, before, nbefore);
	assert_int_equal(workers_woken(b, nb, c, nc), 1);
	sk->destroy(sk);
	stop(pid);
}

/* Send raw bytes on conn (opened if < 0) and read one answer; returns its HTTP status. */
static int raw_exchange(int *conn, int port, const void *req, size_t len)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons((uint16_t)port)};
	struct timeval tv = {.tv_sec = 5};
	char buf[8192];
	size_t got = 0;
	const char *hend, *cl;
	long body;

	if (*conn < 0) {
		*conn = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(*conn >= 0);
		setsockopt(*conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		assert_int_equal(connect(*conn, (struct sockaddr *)&sa, sizeof(sa)), 0);
	}
	assert_int_equal(send(*conn, req, len, MSG_NOSIGNAL), (ssize_t)len);
	for (;;) {
		ssize_t n = recv(*conn, buf + got, sizeof(buf) - 1 - got, 0);

		assert_true(n > 0);
		got += (size_t)n;
		buf[got] = '\0';
		hend = strstr(buf, "\r\n\r\n");
		if (!hend)
			continue;
		cl = strcasestr(buf, "content-length:");
		body = cl ? atol(cl + 15) : 0;
		if ((long)(got - (size_t)(hend + 4 - buf)) >= body)
			break;
	}
	assert_true(!strncmp(buf, "HTTP/1.1 ", 9));
	return atoi(buf + 9);
}

static int raw_once(int port, const char *req)
{
	int conn = -1, status = raw_exchange(&conn, port, req, strlen(req));

	close(conn);
	return status;
}

/* A valid request body: one span, protobuf. */
static void one_span_payload(struct otlp_buf *out)
{
	struct otlp_encoder *enc = otlp_encoder_new(NULL, 0);
	struct span *s = make_span(77);

	assert_non_null(enc);
	assert_int_equal(otlp_encoder__encode(enc, &s, 1, out), 0);
	span_free(s);
	otlp_encoder_free(enc);
}

/* Malformed input gets a 4xx, and the receiver keeps serving. */
static void test_collect_malformed(void **state)
{
	static const char bad_gzip[] = "POST /v1/traces HTTP/1.1\r\nHost: x\r\n"
				       "Content-Type: application/x-protobuf\r\n"
				       "Content-Encoding: gzip\r\nContent-Length: 7\r\n\r\ngarbage";
	struct otlp_buf pb = {0}, gz = {0};
	struct otlp_gzip *z = otlp_gzip_new(1);
	char req[4096];
	int port, conn = -1, n;
	pid_t pid;

	(void)state;
	need("hoptrace-collect", collect_bin);
	pid = start_collect(0, &port, "--max-body", "100000", NULL);
	assert_int_equal(raw_once(port, "GET /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n"), 405);
	assert_int_equal(raw_once(port, "POST /v1/logs HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
			 404);
	assert_int_equal(raw_once(port, "HELLO\r\n\r\n"), 400);
	assert_int_equal(raw_once(port, "POST /v1/traces HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
			 400);
	assert_int_equal(raw_once(port, "POST /v1/traces HTTP/1.1\r\n"
					"Content-Length: 999999999\r\n\r\n"),
			 413);
	assert_int_equal(raw_once(port, "POST /v1/traces HTTP/1.1\r\nContent-Type: "
					"application/json\r\nContent-Length: 2\r\n\r\n{}"),
			 415);
	assert_int_equal(
	    raw_once(port, "POST /v1/traces HTTP/1.1\r\nContent-Type: "
			   "application/x-protobuf\r\nContent-Length: 3\r\n\r\n\xff\xff\xff"),
	    400);
	assert_int_equal(raw_once(port, "POST /v1/traces HTTP/1.1\r\nTransfer-Encoding: "
					"chunked\r\n\r\nzz\r\n"),
			 400);

	/* on one kept-alive connection: bad gzip, then good gzip, then chunked */
	one_span_payload(&pb);
	assert_int_equal(raw_exchange(&conn, port, bad_gzip, sizeof(bad_gzip) - 1), 400);
	assert_int_equal(otlp_gzip__compress(z, otlp_buf_payload(&pb), pb.len, &gz), 0);
	n = snprintf(req, sizeof(req),
		     "POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf\r\n"
		     "Content-Encoding: gzip\r\nContent-Length: %zu\r\n\r\n",
		     gz.len);
	memcpy(req + n, otlp_buf_payload(&gz), gz.len);
	assert_int_equal(raw_exchange(&conn, port, req, (size_t)n + gz.len), 200);
	n = snprintf(req, sizeof(req),
		     "POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf\r\n"
		     "Transfer-Encoding: chunked\r\n\r\n%zx\r\n",
		     pb.len - 10);
	memcpy(req + n, otlp_buf_payload(&pb), pb.len - 10);
	n += (int)pb.len - 10;
	n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\na\r\n");
	memcpy(req + n, otlp_buf_payload(&pb) + pb.len - 10, 10);
	n += 10;
	n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n0\r\n\r\n");
	assert_int_equal(raw_exchange(&conn, port, req, (size_t)n), 200);
	close(conn);
	stop(pid);
	assert_int_equal(count_lines("out.jsonl", "\"span_id\":\"5a0000000000004d\""), 2);
	assert_true(file_has("collect.log", "9 bad requests"));
	otlp_buf_free(&pb);
	otlp_buf_free(&gz);
	otlp_gzip_free(z);
}

/* ---- OTLP/gRPC ------------------------------------------------------------------------- */

static size_t grpc_spans_received(void)
{
	char pattern[128];
	size_t spans = 0;
	glob_t g;

	path_in(pattern, sizeof(pattern), "grpc/request-*.bin");
	if (glob(pattern, 0, NULL, &g))
		return 0;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		static uint8_t buf[1 << 20];
		FILE *f = fopen(g.gl_pathv[i], "r");
		size_t n;
		Request *req;

		assert_non_null(f);
		n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		req =
		    opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
			NULL, n, buf);
		assert_non_null(req);
		for (size_t r = 0; r < req->n_resource_spans; r++)
			for (size_t s = 0; s < req->resource_spans[r]->n_scope_spans; s++)
				spans += req->resource_spans[r]->scope_spans[s]->n_spans;
		opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
		    req, NULL);
	}
	globfree(&g);
	return spans;
}

static void test_grpc_gzip(void **state)
{
	struct sink_otlp_stats st;
	struct sink *sk;
	int port;
	pid_t pid;

	(void)state;
	need("node", node_bin);
	need("otlp_grpc_receiver.js", grpc_script);
	pid = start_grpc(&port, NULL);
	sk = make_sink(port, "grpc", "otlp-compression=gzip", "otlp-batch-size=100",
		       "otlp-headers=Authorization=Bearer%20t0k", NULL);
	emit_n(sk, 300);
	sk->flush(sk, 10000);
	st = stats_of(sk);
	assert_int_equal(st.exported, 300);
	assert_int_equal(st.failed + st.retried, 0);
	sk->destroy(sk);
	stop(pid);
	assert_int_equal(grpc_spans_received(), 300);
	assert_true(file_has("grpc/request-1.json", "\"te\":\"trailers\""));
	assert_true(file_has("grpc/request-1.json", "\"grpc-encoding\":\"gzip\""));
	assert_true(file_has("grpc/request-1.json", "\"content-type\":\"application/grpc\""));
	assert_true(file_has("grpc/request-1.json", "\"authorization\":\"Bearer t0k\""));
	assert_true(file_has("grpc/request-1.json", "\"compressed\":true"));
}

/* UNAVAILABLE once (retried), then a partial success rejecting 3 spans. */
static void test_grpc_retry_partial(void **state)
{
	struct sink_otlp_stats st;
	struct sink *sk;
	int port;
	pid_t pid;

	(void)state;
	need("node", node_bin);
	need("otlp_grpc_receiver.js", grpc_script);
	pid = start_grpc(&port, "--fail-first", "1", "--reject", "3", NULL);
	sk = make_sink(port, "grpc", "otlp-compression=none", NULL);
	emit_n(sk, 40);
	sk->flush(sk, 10000);
	st = stats_of(sk);
	assert_int_equal(st.retried, 1);
	assert_int_equal(st.rejected, 3);
	assert_int_equal(st.exported, 37);
	sk->destroy(sk);
	stop(pid);
	assert_int_equal(grpc_spans_received(), 40);
	assert_true(file_has("grpc/request-2.json", "\"compressed\":false"));
}

/* INVALID_ARGUMENT: permanent. */
static void test_grpc_permanent(void **state)
{
	struct sink_otlp_stats st;
	struct sink *sk;
	int port;
	pid_t pid;

	(void)state;
	need("node", node_bin);
	need("otlp_grpc_receiver.js", grpc_script);
	pid = start_grpc(&port, "--fail-first", "100", "--fail-status", "3", NULL);
	sk = make_sink(port, "grpc", NULL);
	emit_n(sk, 5);
	sk->flush(sk, 10000);
	st = stats_of(sk);
	assert_int_equal(st.failed, 5);
	assert_int_equal(st.retried + st.exported, 0);
	sk->destroy(sk);
	stop(pid);
}

/* A test CA, a server certificate for 127.0.0.1 and a client certificate, in tmpdir/tls. */
static bool make_certs(void)
{
	char cmd[2048];

	snprintf(
	    cmd, sizeof(cmd),
	    "set -e; exec >/dev/null 2>&1; mkdir -p %1$s/tls; cd %1$s/tls; "
	    "K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'; "
	    "openssl req -x509 $K -keyout ca.key -out ca.pem -days 2 -subj /CN=hoptrace-test-ca; "
	    "openssl req $K -keyout server.key -out server.csr -subj /CN=localhost; "
	    "echo subjectAltName=DNS:localhost,IP:127.0.0.1 > ext; "
	    "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
	    "-out server.pem -days 2 -extfile ext; "
	    "openssl req $K -keyout client.key -out client.csr -subj /CN=hoptrace-client; "
	    "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
	    "-out client.pem -days 2",
	    tmpdir);
	return system(cmd) == 0;
}

/* gRPC over TLS (ALPN h2) with the given CA and a client certificate: mutual TLS. */
static void test_grpc_mtls(void **state)
{
	char url[64], ca[256], cert[256], key[256], tls[128];
	struct sink_otlp_stats st;
	struct sink *sk;
	int port;
	pid_t pid;

	(void)state;
	need("node", node_bin);
	need("otlp_grpc_receiver.js", grpc_script);
	need("openssl", access("/usr/bin/openssl", X_OK) ? "" : "/usr/bin/openssl");
	assert_true(make_certs());
	path_in(tls, sizeof(tls), "tls");
	snprintf(ca, sizeof(ca), "otlp-certificate=%s/ca.pem", tls);
	snprintf(cert, sizeof(cert), "otlp-client-certificate=%s/client.pem", tls);
	snprintf(key, sizeof(key), "otlp-client-key=%s/client.key", tls);
	pid = start_grpc(&port, "--tls", tls, "--mtls", NULL);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", port);
	/* one worker, so that the three exports share one connection */
	sk = make_sink_url(url, "grpc", ca, cert, key, "otlp-compression=gzip",
			   "otlp-batch-size=10", "otlp-exporters=1", NULL);
	emit_n(sk, 30);
	sk->flush(sk, 10000);
	st = stats_of(sk);
	assert_int_equal(st.exported, 30);
	assert_int_equal(st.failed + st.retried, 0);
	sk->destroy(sk);
	assert_int_equal(grpc_spans_received(), 30);
	assert_true(file_has("grpc/request-1.json", "\"client_cn\":\"hoptrace-client\""));
	/* the connection is kept across exports over TLS */
	assert_true(file_has("grpc/request-3.json", "\"session\":1,"));

	/* without the test CA, verification fails: permanent, not retried */
	sk = make_sink_url(url, "grpc", NULL);
	emit_n(sk, 5);
	sk->flush(sk, 10000);
	st = stats_of(sk);
	assert_int_equal(st.failed, 5);
	assert_int_equal(st.retried + st.exported, 0);
	sk->destroy(sk);
	stop(pid);
}

int main(void)
{
	/* the ASan build first: the malformed-input test then checks the receiver's memory */
	static const char *const collect[] = {"build/san/hoptrace-collect",
					      "build/hoptrace-collect", NULL};
	static const char *const node[] = {"/usr/bin/node", "/usr/local/bin/node", NULL};
	static const char *const script[] = {"tests/integration/otlp_grpc_receiver.js", NULL};
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	    T(test_http_plain),
	    T(test_http_gzip),
	    T(test_http_retry_after),
	    T(test_http_permanent),
	    T(test_http_down_then_up),
	    T(test_queue_overflow),
	    T(test_flush_deadline),
	    T(test_grpc_gzip),
	    T(test_grpc_retry_partial),
	    T(test_grpc_permanent),
	    T(test_grpc_mtls),
	    T(test_collect_malformed),
	    T(test_config_exporters),
	    T(test_concurrent_exports),
	    T(test_one_partial_batch_at_a_time),
	    T(test_schedule_delay),
	    T(test_idle_workers_sleep),
	    T(test_pressure_drops_only_the_oldest),
#undef T
	};

	find_exe(collect_bin, sizeof(collect_bin), "HOPTRACE_COLLECT", collect);
	find_exe(node_bin, sizeof(node_bin), "NODE", node);
	find_exe(grpc_script, sizeof(grpc_script), "OTLP_GRPC_RECEIVER", script);
	signal(SIGPIPE, SIG_IGN);
	if (!getenv("HOPTRACE_TEST_VERBOSE"))
		log_set_level(LOG_ERROR);
	return cmocka_run_group_tests_name("otlp_export", tests, NULL, NULL);
}
