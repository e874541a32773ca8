// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for the agent's bounded tables: each loss when a table is full has a counter,
 * and a full table costs no unbounded work per request. Tables are made small through
 * struct tracker_limits so the limits are reached with a few records. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "export/otlp_encode.h"
#include "proc.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "resource.h"
#include "sink.h"
#include "span.h"
#include "stats.h"
#include "tracker.h"

#define MAX_SPANS 16

/* A sink that keeps "KIND service" of each span. */
struct record_sink {
	struct sink base;
	unsigned n;
	char got[MAX_SPANS][80];
};

static void record_emit(struct sink *sk, struct span *s)
{
	struct record_sink *rs = (struct record_sink *)sk;

	if (rs->n < MAX_SPANS)
		snprintf(rs->got[rs->n++], sizeof(rs->got[0]), "%s %s",
			 s->kind == SPAN_KIND_SERVER ? "SERVER" : "CLIENT",
			 s->resource && s->resource->service_name ? s->resource->service_name
								  : "(none)");
	span_free(s);
}

struct fixture {
	struct record_sink sink;
	struct tracker t;
	char proc_root[64];
	uint64_t ts;
};

/* A fake /proc/PID with an environ naming the service. */
static void fake_proc(struct fixture *f, uint32_t tgid, const char *service)
{
	char path[128], env[96];
	int fd, n;

	snprintf(path, sizeof(path), "%s/%u", f->proc_root, tgid);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/%u/environ", f->proc_root, tgid);
	n = snprintf(env, sizeof(env), "OTEL_SERVICE_NAME=%s", service);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, env, (size_t)n + 1), n + 1);
	close(fd);
	/* starttime (field 22) 0 ticks: the process the records name (proc_start_ns 77) */
	snprintf(path, sizeof(path), "%s/%u/stat", f->proc_root, tgid);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	n = snprintf(env, sizeof(env), "%u (svc) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 0 0\n",
		     tgid);
	assert_int_equal(write(fd, env, (size_t)n), n);
	close(fd);
}

static struct fixture *start_budget(const struct tracker_limits *limits, size_t memory_limit)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct tracker_options opt = {
	    .idle_timeout_ns = 60e9, .request_timeout_ns = 60e9, .memory_limit = memory_limit};

	assert_non_null(f);
	strcpy(f->proc_root, "/tmp/hoptrace-limits-XXXXXX");
	assert_non_null(mkdtemp(f->proc_root));
	opt.proc_root = f->proc_root;
	opt.limits = *limits;
	f->sink.base.name = "record";
	f->sink.base.emit = record_emit;
	f->ts = 1000;
	memset(&g_stats, 0, sizeof(g_stats));
	assert_int_equal(tracker__init(&f->t, &f->sink.base, &opt), 0);
	return f;
}

static struct fixture *start(const struct tracker_limits *limits)
{
	return start_budget(limits, 0);
}

static void stop(struct fixture *f)
{
	char cmd[128];

	tracker__shutdown(&f->t);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->proc_root);
	assert_int_equal(system(cmd), 0);
	free(f);
}

/* One I/O on the server side (port 8080) of connection cookie, by process tgid, at the
 * stream position pos. */
static void io_at(struct fixture *f, uint64_t cookie, uint32_t tgid, uint16_t rport, uint8_t dir,
		  uint64_t pos, const char *data)
{
	size_t n = strlen(data);
	uint8_t *buf = malloc(sizeof(struct ht_data_event) + n);
	struct ht_data_event *ev = (struct ht_data_event *)buf;

	assert_non_null(buf);
	memset(ev, 0, sizeof(*ev));
	ev->kind = HT_EV_DATA;
	ev->tgid = tgid;
	ev->tid = tgid;
	ev->ts_ns = f->ts += 1000;
	ev->proc_start_ns = 77;
	ev->cookie = cookie;
	ev->pos = pos;
	ev->len = ev->cap_len = (uint32_t)n;
	ev->dir = dir;
	ev->fd = 3;
	ev->tuple.family = 2;
	ev->tuple.lport = 8080;
	ev->tuple.rport = rport;
	snprintf(ev->comm, sizeof(ev->comm), "comm%u", tgid);
	memcpy(ev + 1, data, n);
	tracker__handle_record(&f->t, buf, sizeof(*ev) + n);
	free(buf);
}

/* A request received on connection cookie by process tgid (server side, port 8080). */
static void request_in(struct fixture *f, uint64_t cookie, uint32_t tgid, uint16_t rport)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	uint8_t buf[sizeof(struct ht_data_event) + sizeof(req)];
	struct ht_data_event *ev = (struct ht_data_event *)buf;

	memset(ev, 0, sizeof(*ev));
	ev->kind = HT_EV_DATA;
	ev->tgid = tgid;
	ev->tid = tgid;
	ev->ts_ns = f->ts += 1000;
	ev->proc_start_ns = 77;
	ev->cookie = cookie;
	ev->len = ev->cap_len = sizeof(req) - 1;
	ev->dir = HT_DIR_INGRESS;
	ev->fd = 3;
	ev->tuple.family = 2;
	ev->tuple.lport = 8080;
	ev->tuple.rport = rport;
	snprintf(ev->comm, sizeof(ev->comm), "comm%u", tgid);
	memcpy(ev + 1, req, sizeof(req) - 1);
	tracker__handle_record(&f->t, buf, sizeof(*ev) + ev->cap_len);
}

static void close_conn(struct fixture *f, uint64_t cookie)
{
	struct ht_close_event ev = {.kind = HT_EV_CLOSE, .ts_ns = f->ts += 1000, .cookie = cookie};

	tracker__handle_record(&f->t, &ev, sizeof(ev));
}

static void process_exit(struct fixture *f, uint32_t tgid)
{
	struct ht_task_event ev = {
	    .kind = HT_EV_EXIT, .tgid = tgid, .tid = tgid, .ts_ns = f->ts += 1000, .group_dead = 1};

	tracker__handle_record(&f->t, &ev, sizeof(ev));
}

/* A second process with a request in flight finds no room among the requests in flight: its
 * span has no children, and the loss is counted. */
static void test_correlate_full_counted(void **state)
{
	struct tracker_limits lim = {.inflight_procs = 1};
	struct fixture *f = start(&lim);

	(void)state;
	request_in(f, 1, 100, 40001);
	assert_int_equal(g_stats.drop_correlate_full, 0);
	request_in(f, 2, 200, 40002);
	assert_int_equal(g_stats.drop_correlate_full, 1);
	stop(f);
}

/* A connection the address index has no room for is counted (its same-host hop is lost). */
static void test_tuple_index_full_counted(void **state)
{
	struct tracker_limits lim = {.tuple_index = 1};
	struct fixture *f = start(&lim);

	(void)state;
	request_in(f, 1, 100, 40001);
	request_in(f, 2, 100, 40002);
	assert_int_equal(g_stats.drop_conns_by_tuple_full, 1);
	stop(f);
}

/* With the process table full, another process's requests read nothing from /proc (its
 * environ may be 256 KiB, and every request would read it again): they get a resource named
 * after the command, counted. A process that exits makes room. */
static void test_proc_table_full(void **state)
{
	struct tracker_limits lim = {.procs = 1};
	struct fixture *f = start(&lim);

	(void)state;
	fake_proc(f, 100, "svc-a");
	fake_proc(f, 200, "svc-b");
	request_in(f, 1, 100, 40001);
	close_conn(f, 1);
	request_in(f, 2, 200, 40002);
	close_conn(f, 2);
	request_in(f, 3, 200, 40003);
	close_conn(f, 3);
	assert_int_equal(f->sink.n, 3);
	assert_string_equal(f->sink.got[0], "SERVER svc-a");
	assert_string_equal(f->sink.got[1], "SERVER comm200");
	assert_string_equal(f->sink.got[2], "SERVER comm200");
	assert_int_equal(g_stats.drop_proc_table_full, 2);

	process_exit(f, 100);
	request_in(f, 4, 200, 40004);
	close_conn(f, 4);
	assert_string_equal(f->sink.got[3], "SERVER svc-b");
	assert_int_equal(g_stats.drop_proc_table_full, 2);
	stop(f);
}

static double cpu_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A process the full table has no room for costs little per request: no walk over the
 * table each time (to look for exited processes), no /proc read. */
static void test_proc_table_full_is_cheap(void **state)
{
	struct proc_table pt;
	double t0;

	(void)state;
	memset(&g_stats, 0, sizeof(g_stats));
	assert_int_equal(proc_table__init_sized(&pt, "/nonexistent-proc", 8192), 0);
	for (uint32_t tgid = 1; tgid <= 8192; tgid++)
		assert_non_null(proc_table__resource(&pt, tgid, 1, "filler"));
	t0 = cpu_seconds();
	for (int i = 0; i < 20000; i++)
		assert_non_null(proc_table__resource(&pt, 9000, 1, "late"));
	/* a walk per request: 20,000 x 16,384 slots, seconds under the sanitizers */
	assert_true(cpu_seconds() - t0 < 0.2);
	assert_int_equal(g_stats.drop_proc_table_full, 20000);
	proc_table__free(&pt);
}

/* One caller with many callees (Host values it picks) takes its share of edges, then its new
 * callees are counted under one "other" edge; other callers keep theirs. A full table counts
 * the calls it could not place. */
static void test_audit_edges_bounded(void **state)
{
	struct audit a;
	char callee[32];

	(void)state;
	assert_int_equal(audit__init_sized(&a, 6, 3), 0);
	for (int i = 0; i < 10; i++) {
		snprintf(callee, sizeof(callee), "host-%d:80", i);
		audit__record(&a, "flooder", callee, PROP_OK, false, "00", "exact");
	}
	assert_int_equal(a.edges.count, 4); /* 3 callees and the "other" edge */
	assert_int_equal(a.calls_merged, 7);
	audit__record(&a, "good", "db:5432", PROP_OK, false, "00", "exact");
	audit__record(&a, "good2", "db:5432", PROP_OK, false, "00", "exact");
	assert_int_equal(a.edges.count, 6);
	assert_int_equal(a.calls_lost, 0);
	audit__record(&a, "good3", "db:5432", PROP_OK, false, "00", "exact");
	assert_int_equal(a.calls_lost, 1);

	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	assert_non_null(out);
	audit__print(&a, out, true);
	fclose(out);
	assert_non_null(strstr(text, "\"merged_into_other_callees\":7"));
	assert_non_null(strstr(text, "\"lost_edge_table_full\":1"));
	free(text);
	audit__free(&a);
}

/* Attributes that find no room are counted on the span, exported as OTLP's
 * dropped_attributes_count, and in the agent's counter. */
static void test_span_attrs_dropped(void **state)
{
	struct otlp_encoder *enc = otlp_encoder_new(NULL, 0);
	struct resource *r = resource_new(7, 1);
	struct span *s = span_new();
	struct otlp_buf out = {0};
	char big[SPAN_STRBUF];
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;

	(void)state;
	memset(&g_stats, 0, sizeof(g_stats));
	assert_non_null(enc);
	r->service_name = strdup("svc");
	s->resource = r;
	s->span_id[0] = s->trace_id[0] = 1;
	memset(big, 'v', sizeof(big));
	assert_int_equal(span_set_str(s, "big", big, sizeof(big)), 0); /* truncated to fit */
	assert_int_equal(span_set_str(s, "lost", "x", 1), -ENOSPC);
	assert_int_equal(s->dropped_attrs, 1);
	while (s->nattrs < SPAN_MAX_ATTRS)
		span_set_int(s, "k", 1);
	assert_int_equal(span_set_int(s, "lost2", 1), -ENOSPC);
	assert_int_equal(span_set_bool(s, "lost3", true), -ENOSPC);
	assert_int_equal(s->dropped_attrs, 3);
	assert_int_equal(g_stats.span_attrs_dropped, 3);

	assert_int_equal(otlp_encoder__encode(enc, &s, 1, &out), 0);
	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
	    NULL, out.len, otlp_buf_payload(&out));
	assert_non_null(req);
	assert_int_equal(req->resource_spans[0]->scope_spans[0]->spans[0]->dropped_attributes_count,
			 3);
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
	    req, NULL);
	span_free(s);
	otlp_buf_free(&out);
	otlp_encoder_free(enc);
}

/* Connections that pipeline requests nobody answers take what the budget allows and no
 * more; the rest is refused and counted, a connection refused a request ends its requests
 * (their responses could no longer be paired), and the budget comes back whole when the
 * connections go: a request afterwards is traced. */
static void test_budget_bounds_pending_requests(void **state)
{
	const size_t limit = 256 * 1024;
	struct tracker_limits lim = {0};
	struct fixture *f = start_budget(&lim, limit);
	char pipelined[32 * 40] = "";
	size_t peak = 0;

	(void)state;
	for (int i = 0; i < 32; i++)
		strcat(pipelined, "GET /p HTTP/1.1\r\nHost: a\r\n\r\n");
	for (uint64_t cookie = 1; cookie <= 100; cookie++) {
		io_at(f, cookie, 100, (uint16_t)(40000 + cookie), HT_DIR_INGRESS, 0, pipelined);
		if (tracker__budget_used(&f->t) > peak)
			peak = tracker__budget_used(&f->t);
	}
	assert_true(peak <= limit);
	assert_true(peak > limit / 2);
	assert_true(g_stats.budget_drops > 0);
	assert_true(g_stats.budget_peak_bytes >= peak && g_stats.budget_peak_bytes <= limit);
	/* abandoned connections ended their requests, as errors */
	assert_true(f->sink.n > 0);

	/* a head split over reads is charged while it waits for its end */
	for (uint64_t cookie = 1; cookie <= 100; cookie++)
		close_conn(f, cookie);
	assert_int_equal(tracker__budget_used(&f->t), 0);
	io_at(f, 500, 100, 50000, HT_DIR_INGRESS, 0, "GET /split HTTP/1.1\r\nHost: a\r\n");
	size_t held = tracker__budget_used(&f->t);
	io_at(f, 500, 100, 50000, HT_DIR_INGRESS, 32, "\r\n");
	assert_true(tracker__budget_used(&f->t) < held); /* the buffer went with the head */
	io_at(f, 500, 100, 50000, HT_DIR_EGRESS, 0, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	assert_string_equal(f->sink.got[f->sink.n - 1], "SERVER comm100");
	close_conn(f, 500);
	assert_int_equal(tracker__budget_used(&f->t), 0);
	stop(f);
}

/* Near the memory limit, requests unanswered for 30 s end (counted, with the reason) and
 * give their share back; below it, they keep the usual timeout. */
static void test_budget_pressure_shortens_timeout(void **state)
{
	struct tracker_limits lim = {0};
	struct fixture *f = start_budget(&lim, 64 * 1024);
	uint64_t cookie = 1;

	(void)state;
	/* a quarter of the budget: no pressure */
	while (tracker__budget_used(&f->t) < 16 * 1024) {
		request_in(f, cookie, 100, (uint16_t)(40000 + cookie));
		cookie++;
	}
	tracker__tick(&f->t, f->ts + 31 * 1000000000ULL);
	assert_int_equal(f->sink.n, 0);
	/* past three quarters */
	while (tracker__budget_used(&f->t) <= 48 * 1024) {
		request_in(f, cookie, 100, (uint16_t)(40000 + cookie));
		cookie++;
	}
	tracker__tick(&f->t, f->ts + 10 * 1000000000ULL);
	assert_int_equal(f->sink.n, 0); /* not yet 30 s */
	tracker__tick(&f->t, f->ts + 31 * 1000000000ULL);
	assert_true(f->sink.n > 0);
	assert_int_equal(g_stats.budget_expired, cookie - 1);
	assert_int_equal(g_stats.budget_drops, 0);
	assert_true(tracker__budget_used(&f->t) < 48 * 1024);
	stop(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_correlate_full_counted),
	    cmocka_unit_test(test_tuple_index_full_counted),
	    cmocka_unit_test(test_proc_table_full),
	    cmocka_unit_test(test_proc_table_full_is_cheap),
	    cmocka_unit_test(test_audit_edges_bounded),
	    cmocka_unit_test(test_span_attrs_dropped),
	    cmocka_unit_test(test_budget_bounds_pending_requests),
	    cmocka_unit_test(test_budget_pressure_shortens_timeout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
