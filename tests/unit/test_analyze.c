// SPDX-License-Identifier: BSD-2-Clause
/*
 * Unit tests for the trace analysis (analyze.c): hand-built span lines for each pattern
 * (critical path and slowest hop, self and child time with overlapping children, sequential
 * calls, N+1, error origins) and the edge cases (a missing parent, a child outside its
 * parent's interval, a parent cycle, duplicate span ids, malformed lines, the limits). The
 * JSON report is read back with the strict reader, so every document is also checked to be
 * valid JSON.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "json_read.h"

#define MS 1000000ull
#define TRACE_A "4bf92f3577b34da6a3ce929d0e0e4736"
#define TRACE_B "0af7651916cd43dd8448eb211c80319c"

/* ---- building span lines -------------------------------------------------------------- */

struct lines {
	char *v[64];
	size_t len[64];
	size_t n;
};

static void lines_free(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	l->n = 0;
}

/* One span of trace, ids given as small numbers (0: no parent), times in ms; attrs is the
 * inside of the attributes object. */
static void add_span(struct lines *l, const char *trace, unsigned id, unsigned parent,
		     const char *kind, const char *service, const char *name, uint64_t start_ms,
		     uint64_t end_ms, bool error, const char *attrs)
{
	char pid[17] = "";
	char buf[2048];
	int n;

	if (parent)
		snprintf(pid, sizeof(pid), "%016x", parent);
	n = snprintf(buf, sizeof(buf),
		     "{\"trace_id\":\"%s\",\"span_id\":\"%016x\",\"parent_span_id\":\"%s\","
		     "\"name\":\"%s\",\"kind\":\"%s\",\"start_unix_ns\":%llu,\"end_unix_ns\":%llu,"
		     "\"duration_ns\":%llu,\"status\":\"%s\",\"status_message\":\"\","
		     "\"service.name\":\"%s\",\"pid\":1,\"tid\":1,\"trace_flags\":1,"
		     "\"tracestate\":\"\",\"attributes\":{%s},\"links\":[],\"resource\":{}}",
		     trace, id, pid, name, kind, (unsigned long long)(1000 * MS + start_ms * MS),
		     (unsigned long long)(1000 * MS + end_ms * MS),
		     (unsigned long long)((end_ms - start_ms) * MS), error ? "ERROR" : "UNSET",
		     service, attrs ? attrs : "");
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	assert_true(l->n < 64);
	l->v[l->n] = strdup(buf);
	l->len[l->n++] = (size_t)n;
}

/* A client call of service from parent to 127.0.0.1:port route, and the callee's server
 * span (id + 1) inside it, 1 ms shorter at each end. */
static void add_call(struct lines *l, const char *trace, unsigned id, unsigned parent,
		     const char *caller, const char *callee, unsigned port, const char *route,
		     uint64_t start_ms, uint64_t end_ms, int status)
{
	char attrs[512], name[128];

	snprintf(attrs, sizeof(attrs),
		 "\"http.request.method\":\"GET\",\"server.address\":\"127.0.0.1\","
		 "\"server.port\":%u,\"url.template\":\"%s\",\"http.response.status_code\":%d",
		 port, route, status);
	add_span(l, trace, id, parent, "CLIENT", caller, "GET", start_ms, end_ms, status >= 400,
		 attrs);
	if (!callee)
		return;
	snprintf(name, sizeof(name), "GET %s", route);
	snprintf(attrs, sizeof(attrs), "\"http.response.status_code\":%d", status);
	add_span(l, trace, id + 1, id, "SERVER", callee, name, start_ms + 1, end_ms - 1,
		 status >= 500, attrs);
}

/* ---- reading the report back ------------------------------------------------------------ */

struct report {
	char *text;
	size_t len;
	struct json_doc doc;
};

static void analyse(struct report *r, const struct lines *l, const struct analyze_opts *o)
{
	FILE *f = open_memstream(&r->text, &r->len);

	assert_non_null(f);
	assert_int_equal(analyze_trace_json((const char *const *)l->v, l->len, l->n, o, f), 0);
	assert_int_equal(fclose(f), 0);
	json_doc__init(&r->doc);
	if (json_doc__parse(&r->doc, r->text, r->len))
		fail_msg("report is not JSON (%s at %zu): %s", r->doc.err, r->doc.err_off, r->text);
}

static void report_free(struct report *r)
{
	json_doc__free(&r->doc);
	free(r->text);
}

/* The value at a dotted path: object members by name, array elements by number. */
static const struct json_value *at(const struct report *r, const char *path)
{
	const struct json_value *v = json_doc__root(&r->doc);
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = strtok_r(buf, ".", &save); p && v; p = strtok_r(NULL, ".", &save)) {
		if (v->type == JSON_ARRAY) {
			long idx = strtol(p, NULL, 10);

			v = json_doc__first(&r->doc, v);
			while (v && idx-- > 0)
				v = json_doc__next(&r->doc, v);
		} else {
			v = json_doc__member(&r->doc, v, p);
		}
	}
	return v;
}

static int64_t num(const struct report *r, const char *path)
{
	const struct json_value *v = at(r, path);
	int64_t x;

	if (!v || !json_value_int(v, &x))
		fail_msg("no integer at %s in %s", path, r->text);
	return x;
}

static const char *str(const struct report *r, const char *path)
{
	const struct json_value *v = at(r, path);

	if (!v || !json_value_cstr(v))
		fail_msg("no string at %s in %s", path, r->text);
	return json_value_cstr(v);
}

static uint32_t count(const struct report *r, const char *path)
{
	const struct json_value *v = at(r, path);

	if (!v || (v->type != JSON_ARRAY && v->type != JSON_OBJECT))
		fail_msg("no array at %s in %s", path, r->text);
	return v->count;
}

static bool truth(const struct report *r, const char *path)
{
	const struct json_value *v = at(r, path);

	if (!v || (v->type != JSON_TRUE && v->type != JSON_FALSE))
		fail_msg("no boolean at %s in %s", path, r->text);
	return v->type == JSON_TRUE;
}

/* The span_times entry of span id (as %016x). */
static int span_entry(const struct report *r, unsigned id)
{
	char want[17], path[64];

	snprintf(want, sizeof(want), "%016x", id);
	for (uint32_t i = 0; i < count(r, "traces.0.span_times"); i++) {
		snprintf(path, sizeof(path), "traces.0.span_times.%u.span_id", i);
		if (strcmp(str(r, path), want) == 0)
			return (int)i;
	}
	fail_msg("span %s not in span_times: %s", want, r->text);
	return -1;
}

static int64_t span_num(const struct report *r, unsigned id, const char *field)
{
	char path[96];

	snprintf(path, sizeof(path), "traces.0.span_times.%d.%s", span_entry(r, id), field);
	return num(r, path);
}

/* ---- patterns ------------------------------------------------------------------------- */

/* front (0..400 ms) calls three backends one after another: 50, 300 and 30 ms. The slow
 * backend is the slowest hop; the three calls could run in parallel and save 80 ms. */
static void test_sequential_calls_and_critical_path(void **state)
{
	struct lines l = {0};
	struct report r;

	(void)state;
	add_span(&l, TRACE_A, 1, 0, "SERVER", "front", "GET /seq", 0, 400, false, NULL);
	add_call(&l, TRACE_A, 0x10, 1, "front", "users", 8001, "/u", 5, 55, 200);
	add_call(&l, TRACE_A, 0x20, 1, "front", "slow", 8002, "/s", 60, 360, 200);
	add_call(&l, TRACE_A, 0x30, 1, "front", "stock", 8003, "/k", 365, 395, 200);
	analyse(&r, &l, NULL);
	assert_true(truth(&r, "traces.0.complete"));
	assert_int_equal(num(&r, "traces.0.duration_ns"), 400 * MS);
	assert_string_equal(str(&r, "traces.0.slowest_hop.service"), "slow");
	assert_int_equal(num(&r, "traces.0.slowest_hop.self_on_path_ns"), 298 * MS);
	/* the path gives every ms of the root to one span: root, 3 calls, 3 callees */
	assert_int_equal(count(&r, "traces.0.critical_path"), 7);
	{
		int64_t sum = 0;
		char path[64];

		for (int i = 0; i < 7; i++) {
			snprintf(path, sizeof(path), "traces.0.critical_path.%d.self_on_path_ns",
				 i);
			sum += num(&r, path);
		}
		assert_int_equal(sum, 400 * MS);
	}
	assert_string_equal(str(&r, "traces.0.critical_path.0.service"), "front");
	assert_int_equal(num(&r, "traces.0.critical_path.0.self_on_path_ns"), 20 * MS);
	assert_int_equal(count(&r, "traces.0.sequential_calls"), 1);
	assert_int_equal(num(&r, "traces.0.sequential_calls.0.calls"), 3);
	assert_int_equal(num(&r, "traces.0.sequential_calls.0.endpoints"), 3);
	assert_int_equal(num(&r, "traces.0.sequential_calls.0.saved_ns"), 80 * MS);
	assert_int_equal(num(&r, "traces.0.sequential_calls.0.parallel_ns"), 300 * MS);
	assert_string_equal(str(&r, "traces.0.sequential_calls.0.spans.1.endpoint"),
			    "GET 127.0.0.1:8002 /s");
	assert_int_equal(count(&r, "traces.0.n_plus_one"), 0);
	assert_int_equal(count(&r, "traces.0.errors.origins"), 0);
	/* self = total - children */
	assert_int_equal(span_num(&r, 1, "self_ns"), 20 * MS);
	assert_int_equal(span_num(&r, 1, "child_ns"), 380 * MS);
	assert_int_equal(span_num(&r, 0x21, "self_ns"), 298 * MS);
	assert_int_equal(num(&r, "aggregate.patterns.sequential_calls"), 1);
	assert_string_equal(str(&r, "aggregate.slowest_hops.0.service"), "slow");
	report_free(&r);
	lines_free(&l);
}

/* Calls that overlap are counted once in the parent's child time, and are no sequential
 * finding (they already run in parallel). The critical path follows the one that ended
 * last, then what ended before it started. */
static void test_overlapping_children(void **state)
{
	struct lines l = {0};
	struct report r;

	(void)state;
	add_span(&l, TRACE_A, 1, 0, "SERVER", "front", "GET /par", 0, 100, false, NULL);
	add_call(&l, TRACE_A, 0x10, 1, "front", "a", 8001, "/a", 10, 60, 200);
	add_call(&l, TRACE_A, 0x20, 1, "front", "b", 8002, "/b", 20, 90, 200);
	add_call(&l, TRACE_A, 0x30, 1, "front", "c", 8003, "/c", 30, 40, 200);
	analyse(&r, &l, NULL);
	/* union of [10,60], [20,90], [30,40] is [10,90]: 80 ms, not 130 */
	assert_int_equal(span_num(&r, 1, "child_ns"), 80 * MS);
	assert_int_equal(span_num(&r, 1, "self_ns"), 20 * MS);
	assert_int_equal(count(&r, "traces.0.sequential_calls"), 0);
	/* walking back from 100: front 90..100, b's call 20..90, then a (running before b
	 * started) 10..20, front 0..10; c ran while b did and is not on the path */
	assert_string_equal(str(&r, "traces.0.slowest_hop.service"), "b");
	assert_int_equal(num(&r, "traces.0.critical_path.0.self_on_path_ns"), 20 * MS);
	assert_int_equal(count(&r, "traces.0.critical_path"), 5);
	report_free(&r);
	lines_free(&l);
}

/* Six calls to one endpoint from one request: N+1 (default 5); four to another: not. The
 * N+1 calls are not reported again as sequential calls. */
static void test_n_plus_one(void **state)
{
	struct lines l = {0};
	struct report r;
	struct analyze_opts o;

	(void)state;
	add_span(&l, TRACE_A, 1, 0, "SERVER", "front", "GET /list", 0, 200, false, NULL);
	for (unsigned i = 0; i < 6; i++)
		add_call(&l, TRACE_A, 0x10 + 2 * i, 1, "front", "items", 9000, "/item/{id}",
			 10 + 10 * i, 18 + 10 * i, 200);
	for (unsigned i = 0; i < 4; i++)
		add_call(&l, TRACE_A, 0x40 + 2 * i, 1, "front", "prices", 9001, "/price/{id}",
			 100 + 10 * i, 108 + 10 * i, 200);
	analyse(&r, &l, NULL);
	assert_int_equal(count(&r, "traces.0.n_plus_one"), 1);
	assert_int_equal(num(&r, "traces.0.n_plus_one.0.calls"), 6);
	assert_string_equal(str(&r, "traces.0.n_plus_one.0.endpoint"),
			    "GET 127.0.0.1:9000 /item/{id}");
	assert_string_equal(str(&r, "traces.0.n_plus_one.0.parent.name"), "GET /list");
	assert_int_equal(num(&r, "traces.0.n_plus_one.0.duration_ns"), 48 * MS);
	/* the four price calls go to one endpoint: no sequential finding either */
	assert_int_equal(count(&r, "traces.0.sequential_calls"), 0);
	assert_int_equal(num(&r, "aggregate.n_plus_one.0.calls"), 6);
	assert_string_equal(str(&r, "aggregate.n_plus_one.0.service"), "front");
	report_free(&r);

	analyze_opts__default(&o);
	o.n_plus_one = 4;
	analyse(&r, &l, &o);
	assert_int_equal(count(&r, "traces.0.n_plus_one"), 2);
	report_free(&r);
	lines_free(&l);
}

/* leaf answers 500, middle 502, front 500: the origin is the leaf's server span; the
 * client spans and the two servers above only propagated it. */
static void test_error_origin(void **state)
{
	struct lines l = {0};
	struct report r;

	(void)state;
	add_span(&l, TRACE_A, 1, 0, "SERVER", "front", "GET /chain", 0, 50, true,
		 "\"http.response.status_code\":500");
	add_call(&l, TRACE_A, 0x10, 1, "front", "middle", 8001, "/chain", 5, 45, 502);
	add_call(&l, TRACE_A, 0x20, 0x11, "middle", "leaf", 8002, "/fail", 10, 40, 500);
	/* a sibling call that succeeded does not change the verdict */
	add_call(&l, TRACE_A, 0x30, 0x11, "middle", "ok", 8003, "/ok", 6, 9, 200);
	analyse(&r, &l, NULL);
	assert_int_equal(count(&r, "traces.0.errors.origins"), 1);
	assert_string_equal(str(&r, "traces.0.errors.origins.0.service"), "leaf");
	assert_string_equal(str(&r, "traces.0.errors.origins.0.kind"), "SERVER");
	assert_int_equal(num(&r, "traces.0.errors.origins.0.status_code"), 500);
	assert_false(truth(&r, "traces.0.errors.origins.0.callee_not_seen"));
	assert_int_equal(num(&r, "traces.0.errors.propagated"), 4);
	assert_int_equal(count(&r, "traces.0.errors.origins.0.propagated_by"), 4);
	assert_string_equal(str(&r, "traces.0.errors.origins.0.propagated_by.1.service"), "middle");
	assert_int_equal(num(&r, "traces.0.errors.origins.0.propagated_by.1.status_code"), 502);
	assert_string_equal(str(&r, "traces.0.errors.origins.0.propagated_by.3.service"), "front");
	assert_string_equal(str(&r, "aggregate.error_origins.0.service"), "leaf");
	report_free(&r);
	lines_free(&l);
}

/* A client call that failed with no callee span (another host, connection refused): the
 * origin as far as the trace shows, flagged so. */
static void test_error_callee_not_seen(void **state)
{
	struct lines l = {0};
	struct report r;

	(void)state;
	add_span(&l, TRACE_A, 1, 0, "SERVER", "front", "GET /x", 0, 50, true, NULL);
	add_call(&l, TRACE_A, 0x10, 1, "front", NULL, 8001, "/y", 5, 45, 503);
	analyse(&r, &l, NULL);
	assert_int_equal(count(&r, "traces.0.errors.origins"), 1);
	assert_string_equal(str(&r, "traces.0.errors.origins.0.kind"), "CLIENT");
	assert_true(truth(&r, "traces.0.errors.origins.0.callee_not_seen"));
	report_free(&r);
	lines_free(&l);
}

/* ---- edge cases ------------------------------------------------------------------------ */

/* A span whose parent is not among the spans: no parent is invented; the trace says it is
 * incomplete and names the missing id; the true root stays the main root. */
static void test_missing_parent(void **state)
{
	struct lines l = {0};
	struct report r;

	(void)state;
	add_span(&l, TRACE_A, 1, 0, "SERVER", "front", "GET /a", 0, 10, false, NULL);
	add_span(&l, TRACE_A, 2, 0x99, "SERVER", "remote", "GET /b", 0, 500, false, NULL);
	add_span(&l, TRACE_A, 3, 2, "CLIENT", "remote", "GET", 10, 20, false, NULL);
	analyse(&r, &l, NULL);
	assert_false(truth(&r, "traces.0.complete"));
	assert_int_equal(count(&r, "traces.0.missing_parents"), 1);
	assert_string_equal(str(&r, "traces.0.missing_parents.0"), "0000000000000099");
	assert_int_equal(num(&r, "traces.0.roots"), 2);
	/* the longer orphan does not displace the true root */
	assert_string_equal(str(&r, "traces.0.root.span_id"), "0000000000000001");
	assert_int_equal(span_num(&r, 2, "depth"), 0);
	assert_int_equal(span_num(&r, 3, "depth"), 1);
	assert_int_equal(num(&r, "aggregate.incomplete_traces"), 1);
	report_free(&r);
	lines_free(&l);
}

/* Only spans whose parents are all missing: the longest heads the analysis. */
static void test_only_orphans(void **state)
{
	struct lines l = {0};
	struct report r;

	(void)state;
	add_span(&l, TRACE_A, 2, 0x98, "SERVER", "x", "GET /short", 0, 5, false, NULL);
	add_span(&l, TRACE_A, 3, 0x99, "SERVER", "y", "GET /long", 0, 50, false, NULL);
	analyse(&r, &l, NULL);
	assert_false(truth(&r, "traces.0.complete"));
	assert_string_equal(str(&r, "traces.0.root.span_id"), "0000000000000003");
	assert_int_equal(count(&r, "traces.0.missing_parents"), 2);
	report_free(&r);
	lines_free(&l);
}

/* Clock skew: a child that starts before its parent and ends after it is clamped into
 * the parent (no negative self time, no crash), and flagged. */
static void test_clock_skew_clamped(void **state)
{
	struct lines l = {0};
	struct report r;

	(void)state;
	add_span(&l, TRACE_A, 1, 0, "SERVER", "front", "GET /x", 100, 200, false, NULL);
	add_span(&l, TRACE_A, 2, 1, "CLIENT", "front", "GET", 90, 150, false, NULL);
	add_span(&l, TRACE_A, 3, 2, "SERVER", "back", "GET /y", 80, 260, false, NULL);
	/* a child entirely before its parent: clamped to an instant at the parent's start */
	add_span(&l, TRACE_A, 4, 1, "CLIENT", "front", "GET", 10, 20, false, NULL);
	analyse(&r, &l, NULL);
	assert_int_equal(num(&r, "traces.0.clamped_spans"), 3);
	assert_int_equal(span_num(&r, 2, "duration_ns"), 50 * MS);
	assert_int_equal(span_num(&r, 3, "duration_ns"), 50 * MS);
	assert_int_equal(span_num(&r, 4, "duration_ns"), 0);
	assert_int_equal(span_num(&r, 1, "self_ns"), 50 * MS);
	assert_int_equal(span_num(&r, 2, "self_ns"), 0);
	assert_true(truth(&r, "traces.0.span_times.1.clamped"));
	assert_int_equal(num(&r, "traces.0.duration_ns"), 100 * MS);
	report_free(&r);
	lines_free(&l);
}

/* A parent cycle (hostile input) is cut, never followed forever; a span that names
 * itself as its parent has no parent. */
static void test_parent_cycle(void **state)
{
	struct lines l = {0};
	struct report r;

	(void)state;
	add_span(&l, TRACE_A, 1, 2, "SERVER", "a", "GET /a", 0, 10, false, NULL);
	add_span(&l, TRACE_A, 2, 3, "SERVER", "b", "GET /b", 0, 10, false, NULL);
	add_span(&l, TRACE_A, 3, 1, "SERVER", "c", "GET /c", 0, 10, false, NULL);
	add_span(&l, TRACE_A, 4, 4, "SERVER", "d", "GET /d", 0, 10, false, NULL);
	analyse(&r, &l, NULL);
	assert_int_equal(num(&r, "traces.0.cycles_cut"), 1);
	assert_false(truth(&r, "traces.0.complete"));
	assert_int_equal(num(&r, "traces.0.roots"), 2);
	assert_int_equal(count(&r, "traces.0.span_times"), 4);
	report_free(&r);
	lines_free(&l);
}

/* The same span id twice: the first one read is kept, the other counted. */
static void test_duplicate_span(void **state)
{
	struct lines l = {0};
	struct report r;

	(void)state;
	add_span(&l, TRACE_A, 1, 0, "SERVER", "front", "GET /first", 0, 10, false, NULL);
	add_span(&l, TRACE_A, 1, 0, "SERVER", "front", "GET /second", 0, 90, false, NULL);
	analyse(&r, &l, NULL);
	assert_int_equal(num(&r, "traces.0.spans"), 1);
	assert_string_equal(str(&r, "traces.0.root.name"), "GET /first");
	assert_int_equal(num(&r, "input.duplicate_spans"), 1);
	report_free(&r);
	lines_free(&l);
}

/* Lines that are not spans of the schema are refused with a reason and counted. */
static void test_malformed_lines(void **state)
{
	static const char *const bad[] = {
	    "not json",
	    "[1,2]",
	    "{\"trace_id\":\"XYZ\",\"span_id\":\"0000000000000001\"}",
	    "{\"trace_id\":\"" TRACE_A "\",\"span_id\":\"0000000000000001\",\"parent_span_id\":"
	    "\"\",\"name\":\"a\",\"kind\":\"SERVER\",\"service.name\":\"s\",\"start_unix_ns\":"
	    "-5,\"end_unix_ns\":1}",
	    "{\"trace_id\":\"" TRACE_A "\",\"span_id\":\"0000000000000001\",\"parent_span_id\":"
	    "\"\",\"name\":\"a\",\"kind\":\"SERVER\",\"service.name\":\"s\",\"start_unix_ns\":"
	    "1,\"end_unix_ns\":2,\"attributes\":[]}",
	};
	struct analyze a;
	const char *why;

	(void)state;
	assert_int_equal(analyze__init(&a, NULL), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(analyze__add_line(&a, bad[i], strlen(bad[i]), &why), -EINVAL);
		assert_non_null(why);
	}
	assert_int_equal(a.malformed, 5);
	assert_int_equal(a.spans, 0);
	analyze__free(&a);
	assert_int_equal(
	    analyze_trace_json((const char *const *)bad, (size_t[]){8}, 1, NULL, stdout), -EINVAL);
}

/* Spans past the limits are counted, never held: a trace past max_spans_per_trace is
 * reported incomplete, a trace past max_traces not at all. */
static void test_limits(void **state)
{
	struct lines l = {0};
	struct analyze_opts o;
	struct report r;

	(void)state;
	analyze_opts__default(&o);
	o.max_traces = 1;
	o.max_spans_per_trace = 2;
	add_span(&l, TRACE_A, 1, 0, "SERVER", "front", "GET /a", 0, 10, false, NULL);
	add_span(&l, TRACE_A, 2, 1, "CLIENT", "front", "GET", 1, 9, false, NULL);
	add_span(&l, TRACE_A, 3, 1, "CLIENT", "front", "GET", 1, 9, false, NULL);
	add_span(&l, TRACE_B, 1, 0, "SERVER", "other", "GET /b", 0, 10, false, NULL);
	analyse(&r, &l, &o);
	assert_int_equal(count(&r, "traces"), 1);
	assert_int_equal(num(&r, "traces.0.spans"), 2);
	assert_int_equal(num(&r, "traces.0.skipped_spans"), 1);
	assert_false(truth(&r, "traces.0.complete"));
	assert_int_equal(num(&r, "input.skipped_spans"), 1);
	assert_int_equal(num(&r, "input.skipped_traces"), 1);
	report_free(&r);

	/* every span slot taken: a new trace is not started, its span is counted */
	analyze_opts__default(&o);
	o.max_spans = 2;
	analyse(&r, &l, &o);
	assert_int_equal(count(&r, "traces"), 1);
	assert_int_equal(num(&r, "traces.0.skipped_spans"), 1);
	assert_int_equal(num(&r, "input.skipped_spans"), 2);
	assert_int_equal(num(&r, "input.skipped_traces"), 0);
	report_free(&r);
	lines_free(&l);
}

/* A chain 10,000 spans deep (the per-trace limit) is walked without recursion: the
 * critical path is the whole chain, the deepest span the slowest hop. */
static void test_deep_chain(void **state)
{
	enum { DEPTH = 10000 };
	struct analyze a;
	const char *why;
	char line[512], *text = NULL;
	size_t len = 0, on_path = 0;
	FILE *f;

	(void)state;
	assert_int_equal(analyze__init(&a, NULL), 0);
	for (unsigned i = 1; i <= DEPTH; i++) {
		char parent[17] = "";
		int n;

		if (i > 1)
			snprintf(parent, sizeof(parent), "%016x", i - 1);
		/* each span 1 us inside its parent at both ends; the deepest lasts 1 s */
		n = snprintf(line, sizeof(line),
			     "{\"trace_id\":\"" TRACE_A
			     "\",\"span_id\":\"%016x\",\"parent_span_id\":"
			     "\"%s\",\"name\":\"n\",\"kind\":\"SERVER\",\"service.name\":\"s%u\","
			     "\"start_unix_ns\":%u,\"end_unix_ns\":%u}",
			     i, parent, i, i * 1000, 2000000000u - i * 1000);
		assert_int_equal(analyze__add_line(&a, line, (size_t)n, &why), 0);
	}
	f = open_memstream(&text, &len);
	assert_int_equal(analyze__report(&a, f, true), 0);
	fclose(f);
	/* (not strstr in a loop: ASan's strstr measures the whole rest each call) */
	for (size_t i = 0; i + 17 <= len; i++)
		on_path += memcmp(text + i, "\"self_on_path_ns\"", 17) == 0;
	/* each span of the path, and the slowest hop once more */
	assert_int_equal(on_path, DEPTH + 1);
	assert_non_null(strstr(text, "\"slowest_hop\":{\"span_id\":\"0000000000002710\""));
	assert_non_null(strstr(text, "\"complete\":true"));
	free(text);
	analyze__free(&a);
}

/* --trace-id and the time range filter at reading; several traces come in start order. */
static void test_filters_and_order(void **state)
{
	struct lines l = {0};
	struct analyze_opts o;
	struct report r;

	(void)state;
	add_span(&l, TRACE_A, 1, 0, "SERVER", "a", "GET /a", 50, 60, false, NULL);
	add_span(&l, TRACE_B, 1, 0, "SERVER", "b", "GET /b", 0, 10, false, NULL);
	analyse(&r, &l, NULL);
	assert_int_equal(count(&r, "traces"), 2);
	assert_string_equal(str(&r, "traces.0.trace_id"), TRACE_B);
	assert_int_equal(num(&r, "aggregate.traces"), 2);
	report_free(&r);

	analyze_opts__default(&o);
	o.trace_id = TRACE_A;
	analyse(&r, &l, &o);
	assert_int_equal(count(&r, "traces"), 1);
	assert_string_equal(str(&r, "traces.0.trace_id"), TRACE_A);
	assert_int_equal(num(&r, "input.filtered"), 1);
	report_free(&r);

	analyze_opts__default(&o);
	o.from_unix_ns = 1000 * MS + 20 * MS;
	analyse(&r, &l, &o);
	assert_int_equal(count(&r, "traces"), 1);
	assert_string_equal(str(&r, "traces.0.trace_id"), TRACE_A);
	report_free(&r);
	lines_free(&l);
}

/* Names from traffic are escaped in JSON and in the text report (no raw control bytes). */
static void test_hostile_names_escaped(void **state)
{
	struct lines l = {0};
	struct analyze a;
	const char *why;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	add_span(&l, TRACE_A, 1, 0, "SERVER", "evil\\u001b[31m", "GET /\\\"q\\\\", 0, 10, true,
		 NULL);
	assert_int_equal(analyze__init(&a, NULL), 0);
	assert_int_equal(analyze__add_line(&a, l.v[0], l.len[0], &why), 0);
	f = open_memstream(&text, &len);
	assert_int_equal(analyze__report(&a, f, false), 0);
	fclose(f);
	assert_null(memchr(text, 0x1b, len));
	assert_non_null(strstr(text, "evil\\x1b[31m"));
	analyze__free(&a);
	free(text);
	{
		struct report r;

		analyse(&r, &l, NULL);
		assert_string_equal(str(&r, "traces.0.root.service"), "evil\x1b[31m");
		assert_string_equal(str(&r, "traces.0.root.name"), "GET /\"q\\");
		report_free(&r);
	}
	lines_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sequential_calls_and_critical_path),
	    cmocka_unit_test(test_overlapping_children),
	    cmocka_unit_test(test_n_plus_one),
	    cmocka_unit_test(test_error_origin),
	    cmocka_unit_test(test_error_callee_not_seen),
	    cmocka_unit_test(test_missing_parent),
	    cmocka_unit_test(test_only_orphans),
	    cmocka_unit_test(test_clock_skew_clamped),
	    cmocka_unit_test(test_parent_cycle),
	    cmocka_unit_test(test_duplicate_span),
	    cmocka_unit_test(test_malformed_lines),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_deep_chain),
	    cmocka_unit_test(test_filters_and_order),
	    cmocka_unit_test(test_hostile_names_escaped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
