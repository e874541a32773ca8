// SPDX-License-Identifier: BSD-2-Clause
/*
 * Unit tests for the propagation audit: the classification of one outgoing call (every
 * result, tracestate included), the per-edge report in both forms, and the offline path
 * (`hoptrace audit FILE`) against the live one on the same spans.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "json_read.h"
#include "resource.h"
#include "sink.h"
#include "span.h"
#include "traceparent.h"

static const uint8_t TRACE[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
				  0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
static const uint8_t OTHER_TRACE[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t PARENT[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
static const uint8_t CHILD[8] = {0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31};
#define TRACE_HEX "4bf92f3577b34da6a3ce929d0e0e4736"

/* ---- classification ---------------------------------------------------------------- */

struct classify_case {
	const char *what;
	bool served_valid, served_tracestate;
	unsigned sent_count;
	bool sent_valid, sent_tracestate;
	const uint8_t *sent_trace, *sent_parent;
	enum propagation_result want;
	bool want_ts_dropped;
};

static void test_classify_table(void **state)
{
	static const struct classify_case cases[] = {
	    /* the request served had no valid context: nothing to pass on, no finding */
	    {"served invalid, sent nothing", false, false, 0, false, false, NULL, NULL, PROP_NONE,
	     false},
	    {"served invalid, sent one", false, true, 1, true, true, TRACE, CHILD, PROP_NONE,
	     false},
	    {"no traceparent", true, false, 0, false, false, NULL, NULL, PROP_DROPPED, false},
	    /* dropped covers the tracestate: it is not reported on its own */
	    {"no traceparent, tracestate came in", true, true, 0, false, false, NULL, NULL,
	     PROP_DROPPED, false},
	    {"malformed traceparent", true, false, 1, false, false, NULL, NULL, PROP_INVALID,
	     false},
	    /* two headers make both invalid (W3C trace-context 3.2), even if each is valid */
	    {"two traceparents", true, false, 2, false, false, NULL, NULL, PROP_INVALID, false},
	    {"two traceparents, first valid", true, false, 2, true, false, TRACE, CHILD,
	     PROP_INVALID, false},
	    {"another trace id", true, false, 1, true, false, OTHER_TRACE, CHILD, PROP_RESTARTED,
	     false},
	    {"another trace id, tracestate lost", true, true, 1, true, false, OTHER_TRACE, CHILD,
	     PROP_RESTARTED, false},
	    {"another trace id, our parent id", true, false, 1, true, false, OTHER_TRACE, PARENT,
	     PROP_RESTARTED, false},
	    {"same trace, same parent", true, false, 1, true, false, TRACE, PARENT, PROP_FORWARDED,
	     false},
	    {"same trace, same parent, tracestate lost", true, true, 1, true, false, TRACE, PARENT,
	     PROP_FORWARDED, true},
	    {"same trace, same parent, tracestate kept", true, true, 1, true, true, TRACE, PARENT,
	     PROP_FORWARDED, false},
	    {"same trace, new parent", true, false, 1, true, false, TRACE, CHILD, PROP_OK, false},
	    {"same trace, new parent, tracestate lost", true, true, 1, true, false, TRACE, CHILD,
	     PROP_OK, true},
	    {"same trace, new parent, tracestate kept", true, true, 1, true, true, TRACE, CHILD,
	     PROP_OK, false},
	    /* a tracestate that did not come in is no loss; one added on the way is fine */
	    {"same trace, new parent, tracestate added", true, false, 1, true, true, TRACE, CHILD,
	     PROP_OK, false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct classify_case *c = &cases[i];
		struct trace_context sent = {0};
		struct audit_input in = {
		    .served_valid = c->served_valid,
		    .served_trace_id = TRACE,
		    .served_parent_id = PARENT,
		    .served_tracestate = c->served_tracestate,
		    .sent_count = c->sent_count,
		    .sent_valid = c->sent_valid,
		    .sent = c->sent_valid ? &sent : NULL,
		    .sent_tracestate = c->sent_tracestate,
		};
		bool ts = !c->want_ts_dropped;
		enum propagation_result r;

		if (c->sent_valid) {
			memcpy(sent.trace_id, c->sent_trace, 16);
			memcpy(sent.parent_id, c->sent_parent, 8);
			sent.flags = 1;
		}
		r = audit_classify(&in, &ts);
		if (r != c->want || ts != c->want_ts_dropped)
			fail_msg("%s: got %s%s, want %s%s", c->what, propagation_result_name(r),
				 ts ? " (tracestate dropped)" : "",
				 propagation_result_name(c->want),
				 c->want_ts_dropped ? " (tracestate dropped)" : "");
	}
}

static void test_result_names(void **state)
{
	(void)state;
	for (int r = PROP_OK; r < PROP__COUNT; r++)
		assert_int_equal(propagation_result_parse(propagation_result_name(r)), r);
	assert_string_equal(propagation_result_name(PROP_NONE), "unclassified");
	/* "unclassified" is a report word, never a value of hoptrace.propagation */
	assert_int_equal(propagation_result_parse("unclassified"), PROP_NONE);
	assert_int_equal(propagation_result_parse("OK"), PROP_NONE);
	assert_int_equal(propagation_result_parse(""), PROP_NONE);
	assert_string_equal(propagation_result_name(PROP__COUNT), "?");
}

/* ---- report -------------------------------------------------------------------------- */

struct capture {
	FILE *f;
	char *buf;
	size_t len;
};

static const char *capture(struct capture *c, const struct audit *a, bool json)
{
	c->buf = NULL;
	c->len = 0;
	c->f = open_memstream(&c->buf, &c->len);
	assert_non_null(c->f);
	audit__print(a, c->f, json);
	fclose(c->f);
	return c->buf;
}

/* Record a few calls: svc-a -> svc-b fine, svc-a -> 10.0.0.9:80 dropped once in four. */
static void record_sample(struct audit *a)
{
	audit__record(a, "svc-a", "svc-b", PROP_OK, true, TRACE_HEX, "exact");
	audit__record(a, "svc-a", "svc-b", PROP_OK, false, "11111111111111111111111111111111",
		      "thread");
	audit__record(a, "svc-a", "10.0.0.9:80", PROP_OK, false, "22222222222222222222222222222222",
		      "exact");
	audit__record(a, "svc-a", "10.0.0.9:80", PROP_DROPPED, false,
		      "33333333333333333333333333333333", "thread");
	audit__record(a, "svc-a", "10.0.0.9:80", PROP_OK, false, "44444444444444444444444444444444",
		      "exact");
	audit__record(a, "svc-a", "10.0.0.9:80", PROP_DROPPED, false,
		      "55555555555555555555555555555555", "ancestor");
	audit__record(a, "gw", "svc-a", PROP_FORWARDED, false, TRACE_HEX, "exact");
	audit__record(a, "gw", "svc-a", PROP_NONE, false, TRACE_HEX, NULL);
}

static void test_report_table(void **state)
{
	struct audit a;
	struct capture c;
	const char *t, *row;

	(void)state;
	assert_int_equal(audit__init(&a), 0);
	record_sample(&a);
	t = capture(&c, &a, false);
	assert_non_null(strstr(t, "propagation audit: 8 outgoing calls; not classified: 0 made "
				  "outside any request seen, 1 serving a request without a valid "
				  "traceparent, 0 whose request is not known by sound evidence\n"
				  "not classified, by reason: request_without_context 1\n"));
	/* sorted by caller, then callee: gw first, then svc-a's two edges */
	row = strstr(t, "gw ");
	assert_non_null(row);
	assert_true(row < strstr(t, "svc-a                10.0.0.9:80"));
	assert_true(strstr(t, "svc-a                10.0.0.9:80") < strstr(t, "svc-a    "
									      "            svc-b"));
	/* any broken call outranks ok: the edge's verdict, with the first dropped call */
	row = strstr(t, "10.0.0.9:80");
	assert_non_null(strstr(row, "dropped    ok 50%, dropped 50%"));
	assert_non_null(strstr(row, "33333333333333333333333333333333 (thread)"));
	row = strstr(t, "svc-b");
	assert_non_null(strstr(row, "ok         ok 100%"));
	assert_non_null(strstr(row, TRACE_HEX " (exact)\n"));
	assert_non_null(strstr(row, "tracestate dropped on 1 call(s)"));
	assert_non_null(strstr(t, "forwarded  forwarded 100%"));
	free(c.buf);
	audit__free(&a);

	/* nothing classified */
	assert_int_equal(audit__init(&a), 0);
	audit__record(&a, "x", "y", PROP_NONE, false, TRACE_HEX, NULL);
	t = capture(&c, &a, false);
	assert_non_null(strstr(t, "1 outgoing calls; not classified: 0 made outside any request "
				  "seen, 1 serving"));
	assert_non_null(strstr(t, "no classified calls\n"));
	free(c.buf);
	audit__free(&a);
}

static const struct json_value *edge_of(const struct json_doc *d, const char *caller,
					const char *callee)
{
	const struct json_value *edges = json_doc__member(d, json_doc__root(d), "edges");

	for (const struct json_value *e = json_doc__first(d, edges); e; e = json_doc__next(d, e))
		if (strcmp(json_value_cstr(json_doc__member(d, e, "caller")), caller) == 0 &&
		    strcmp(json_value_cstr(json_doc__member(d, e, "callee")), callee) == 0)
			return e;
	return NULL;
}

static int64_t int_at(const struct json_doc *d, const struct json_value *obj, const char *key)
{
	int64_t v = -1;

	assert_true(json_value_int(json_doc__member(d, obj, key), &v));
	return v;
}

static void test_report_json(void **state)
{
	struct json_doc d;
	struct audit a;
	struct capture c;
	const struct json_value *root, *e, *res;
	const char *t;

	(void)state;
	assert_int_equal(audit__init(&a), 0);
	record_sample(&a);
	/* names from process environments: quotes, backslashes and control characters */
	audit__record(&a, "we\"ird\\", "tab\there\x01", PROP_INVALID, false, TRACE_HEX, "thread");
	t = capture(&c, &a, true);
	json_doc__init(&d);
	/* one line, strict JSON */
	assert_non_null(strchr(t, '\n'));
	assert_int_equal(strchr(t, '\n') - t, (long)c.len - 1);
	if (json_doc__parse(&d, t, c.len))
		fail_msg("audit JSON does not parse: %s at %zu: %s", d.err, d.err_off, t);
	root = json_doc__root(&d);
	assert_int_equal(int_at(&d, root, "calls"), 9);
	assert_int_equal(int_at(&d, root, "unclassified"), 1);
	assert_int_equal(json_doc__member(&d, root, "edges")->count, 4);
	e = edge_of(&d, "svc-a", "10.0.0.9:80");
	assert_non_null(e);
	assert_string_equal(json_value_cstr(json_doc__member(&d, e, "verdict")), "dropped");
	assert_int_equal(int_at(&d, e, "calls"), 4);
	res = json_doc__member(&d, json_doc__member(&d, e, "results"), "dropped");
	assert_int_equal(int_at(&d, res, "calls"), 2);
	assert_string_equal(json_value_cstr(json_doc__member(&d, res, "example_trace_id")),
			    "33333333333333333333333333333333");
	assert_string_equal(json_value_cstr(json_doc__member(&d, res, "confidence")), "thread");
	e = edge_of(&d, "svc-a", "svc-b");
	assert_int_equal(int_at(&d, e, "tracestate_dropped"), 1);
	assert_null(json_doc__member(&d, json_doc__member(&d, e, "results"), "dropped"));
	e = edge_of(&d, "we\"ird\\", "tab\there\x01");
	assert_non_null(e);
	assert_string_equal(json_value_cstr(json_doc__member(&d, e, "verdict")), "invalid");
	json_doc__free(&d);
	free(c.buf);
	audit__free(&a);
}

/* ---- live and offline agree ---------------------------------------------------------- */

static struct span *client_span(struct resource *r, const uint8_t trace[16], const char *result,
				const char *conf, bool ts_dropped, const char *callee,
				const char *host, int64_t port)
{
	struct span *s = span_new();

	assert_non_null(s);
	s->kind = SPAN_KIND_CLIENT;
	memcpy(s->trace_id, trace, 16);
	memcpy(s->span_id, CHILD, 8);
	memcpy(s->parent_span_id, PARENT, 8);
	s->start_unix_ns = 1700000000000000000ull;
	s->end_unix_ns = s->start_unix_ns + 1000;
	snprintf(s->name, sizeof(s->name), "GET /x");
	if (r)
		s->resource = resource_get(r);
	if (host)
		span_set_str(s, "server.address", host, strlen(host));
	if (port >= 0)
		span_set_int(s, "server.port", port);
	if (result)
		span_set_str(s, "hoptrace.propagation", result, strlen(result));
	if (conf)
		span_set_str(s, "hoptrace.propagation.confidence", conf, strlen(conf));
	if (ts_dropped)
		span_set_str(s, "hoptrace.propagation.tracestate", "dropped", 7);
	if (callee)
		span_set_str(s, "hoptrace.callee.service", callee, strlen(callee));
	return s;
}

static struct resource *service(const char *name)
{
	struct resource *r = resource_new(42, 1);

	assert_non_null(r);
	r->service_name = strdup(name);
	r->exe_name = strdup(name);
	return r;
}

static char *slurp_and_remove(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text = NULL;
	size_t len = 0;

	assert_non_null(f);
	if (getdelim(&text, &len, '\0', f) < 0) {
		assert_true(feof(f));
		free(text);
		text = strdup("");
	}
	fclose(f);
	unlink(path);
	return text;
}

/* Run audit_cli_main with stdout and stderr into memory; returns its exit status. */
static int run_cli_err(char **argv, int argc, char **out, char **err)
{
	char out_path[] = "/tmp/hoptrace-audit-out-XXXXXX";
	char err_path[] = "/tmp/hoptrace-audit-err-XXXXXX";
	int out_fd = mkstemp(out_path), err_fd = mkstemp(err_path);
	int saved_out, saved_err, rc;

	assert_true(out_fd >= 0 && err_fd >= 0);
	fflush(stdout);
	fflush(stderr);
	saved_out = dup(STDOUT_FILENO);
	saved_err = dup(STDERR_FILENO);
	dup2(out_fd, STDOUT_FILENO);
	dup2(err_fd, STDERR_FILENO);
	rc = audit_cli_main(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, STDOUT_FILENO);
	dup2(saved_err, STDERR_FILENO);
	close(saved_out);
	close(saved_err);
	close(out_fd);
	close(err_fd);
	*out = slurp_and_remove(out_path);
	*err = slurp_and_remove(err_path);
	return rc;
}

static int run_cli(char **argv, int argc, char **out)
{
	char *err;
	int rc = run_cli_err(argv, argc, out, &err);

	free(err);
	return rc;
}

static void test_offline_equals_live(void **state)
{
	char path[] = "/tmp/hoptrace-audit-spans-XXXXXX";
	struct resource *a = service("svc-a"), *b = service("svc-b");
	struct audit live;
	struct sink *sk;
	struct capture want_json, want_table;
	char *got = NULL;
	char arg0[] = "audit", arg_json[] = "--json";
	int fd = mkstemp(path);
	FILE *f;

	(void)state;
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	assert_int_equal(audit__init(&live), 0);
	/* the live configuration: the audit sink in front of the JSON sink */
	sk = sink_audit_new(sink_json_new(f), &live);
	assert_non_null(sk);
	sk->emit(sk, client_span(a, TRACE, "ok", "exact", true, "svc-b", "127.0.0.1", 8081));
	sk->emit(sk, client_span(a, TRACE, "dropped", "thread", false, NULL, "10.1.2.3", 80));
	sk->emit(sk, client_span(b, OTHER_TRACE, "forwarded", "exact", false, NULL, "db", 5432));
	sk->emit(sk, client_span(b, OTHER_TRACE, "restarted", "thread", false, NULL, "db", 5432));
	sk->emit(sk, client_span(b, TRACE, "invalid", "ancestor", false, NULL, NULL, -1));
	sk->emit(sk, client_span(a, TRACE, NULL, NULL, false, "svc-b", "127.0.0.1", 8081));
	/* a non-ASCII callee address survives the JSON round trip */
	sk->emit(sk, client_span(a, TRACE, "dropped", "thread", false, NULL, "h\xc3\xa9", 1));
	/* server spans are not counted */
	{
		struct span *s = client_span(a, TRACE, NULL, NULL, false, NULL, "x", 1);

		s->kind = SPAN_KIND_SERVER;
		sk->emit(sk, s);
	}
	sk->flush(sk, 0);
	sk->destroy(sk);
	fclose(f);
	capture(&want_json, &live, true);
	capture(&want_table, &live, false);

	{
		char *argv[] = {arg0, arg_json, path, NULL};

		assert_int_equal(run_cli(argv, 3, &got), 0);
		assert_string_equal(got, want_json.buf);
		free(got);
	}
	{
		char *argv[] = {arg0, path, NULL};

		assert_int_equal(run_cli(argv, 2, &got), 0);
		assert_string_equal(got, want_table.buf);
		free(got);
	}
	free(want_json.buf);
	free(want_table.buf);
	audit__free(&live);
	resource_put(a);
	resource_put(b);
	unlink(path);
}

/* Malformed lines are skipped and counted; the spans around them still count. */
static void test_offline_malformed_lines(void **state)
{
	static const char *const lines[] = {
	    "{\"trace_id\":\"" TRACE_HEX "\",\"kind\":\"CLIENT\",\"service.name\":\"a\","
	    "\"attributes\":{\"hoptrace.propagation\":\"dropped\",\"server.address\":\"b\","
	    "\"server.port\":1}}",
	    "",
	    "garbage",
	    "{\"trace_id\":\"" TRACE_HEX "\",\"kind\":\"CLIENT\",\"service.name\":\"a\"",
	    "[1,2,3]",
	    "{\"trace_id\":\"XYZ\",\"kind\":\"CLIENT\",\"service.name\":\"a\",\"attributes\":{}}",
	    "{\"trace_id\":\"" TRACE_HEX "\",\"kind\":\"CLIENT\",\"service.name\":\"a\","
	    "\"attributes\":{\"hoptrace.propagation\":\"sideways\"}}",
	    "{\"trace_id\":\"" TRACE_HEX "\",\"kind\":\"CLIENT\",\"service.name\":\"a\","
	    "\"attributes\":{\"server.port\":\"80\"}}",
	    "{\"trace_id\":\"" TRACE_HEX "\",\"kind\":\"CLIENT\",\"service.name\":\"a\\u0000\","
	    "\"attributes\":{}}",
	    "\xff\xfe",
	    "{\"trace_id\":\"" TRACE_HEX "\",\"kind\":\"CLIENT\",\"service.name\":\"a\","
	    "\"attributes\":{\"hoptrace.propagation\":\"dropped\",\"server.address\":\"b\","
	    "\"server.port\":1}}\r",
	};
	char path[] = "/tmp/hoptrace-audit-bad-XXXXXX";
	char arg0[] = "audit", arg_json[] = "--json";
	char *argv[] = {arg0, arg_json, path, NULL};
	int fd = mkstemp(path);
	struct json_doc d;
	const struct json_value *e;
	FILE *f;
	char *got, *err;

	(void)state;
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		fprintf(f, "%s\n", lines[i]);
	fprintf(f, "{\"no newline at the end\":1}");
	fclose(f);
	assert_int_equal(run_cli_err(argv, 3, &got, &err), 0);
	/* the first few are described, all are counted */
	assert_non_null(strstr(err, ":3: unexpected character (at byte 1)\n"));
	assert_non_null(strstr(err, ":4: unterminated object"));
	assert_non_null(strstr(err, ":5: not a JSON object\n"));
	assert_null(strstr(err, ":6:"));
	assert_non_null(strstr(err, "skipped 9 malformed line(s) of 12"));
	free(err);
	json_doc__init(&d);
	assert_int_equal(json_doc__parse(&d, got, strlen(got)), 0);
	assert_int_equal(int_at(&d, json_doc__root(&d), "calls"), 2);
	e = edge_of(&d, "a", "b:1");
	assert_non_null(e);
	assert_int_equal(int_at(&d, e, "calls"), 2);
	json_doc__free(&d);
	free(got);
	unlink(path);
}

static void test_offline_errors(void **state)
{
	char arg0[] = "audit", missing[] = "/nonexistent/spans.jsonl";
	char *argv[] = {arg0, missing, NULL};
	char *got, *err;

	(void)state;
	/* a file that cannot be read fails the run, with no report */
	assert_int_equal(run_cli_err(argv, 2, &got, &err), 1);
	assert_string_equal(got, "");
	assert_non_null(strstr(err, "cannot open /nonexistent/spans.jsonl: No such file"));
	free(got);
	free(err);
}

/* A resourceSpans entry of service svc holding the spans given (OTLP JSON). */
#define OTLP_RS(svc, spans)                                                                        \
	"{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":"     \
	"\"" svc "\"}}]},\"scopeSpans\":[{\"spans\":[" spans "]}]}"
#define OTLP_SPAN(trace, id, parent, kind, attrs)                                                  \
	"{\"traceId\":\"" trace "\",\"spanId\":\"" id "\",\"parentSpanId\":\"" parent              \
	"\",\"kind\":" kind ",\"attributes\":[" attrs "]}"
#define T1 "11111111111111111111111111111111"
#define T2 "22222222222222222222222222222222"

/*
 * Hops between hosts: a client span's callee is the service of the server span whose parent
 * it is, wherever that span was read (here: another file). An SDK's client span (no hoptrace
 * evidence) with such a child is a hop that passed the context on; one without is counted as
 * not joined, never guessed.
 */
static void test_offline_cross_host(void **state)
{
	static const char host_a[] = "{\"resourceSpans\":[" OTLP_RS(
	    "front",
	    OTLP_SPAN(T1, "a000000000000001", "", "2", "") "," OTLP_SPAN(
		T1, "a000000000000002", "a000000000000001", "3",
		"{\"key\":\"server.address\",\"value\":{\"stringValue\":\"10.0.0.2\"}},"
		"{\"key\":\"server.port\",\"value\":{\"intValue\":\"80\"}}") "," /* unmatched */
	    OTLP_SPAN(T2, "a000000000000003", "", "3", "") "," /* hoptrace's, classified */
	    OTLP_SPAN(T1, "a000000000000004", "a000000000000001", "3",
		      "{\"key\":\"hoptrace.propagation\",\"value\":{\"stringValue\":\"dropped\"}},"
		      "{\"key\":\"hoptrace.propagation.confidence\",\"value\":{\"stringValue\":"
		      "\"exact\"}},{\"key\":\"hoptrace.parent.confidence\",\"value\":{"
		      "\"stringValue\":\"exact\"}}")) "]}\n";
	static const char host_b[] = "{\"resourceSpans\":[" OTLP_RS(
	    "back", OTLP_SPAN(T1, "b000000000000001", "a000000000000002", "2", "") "," OTLP_SPAN(
			T1, "b000000000000002", "a000000000000004", "2", "")) "]}\n";
	char pa[] = "/tmp/hoptrace-audit-a-XXXXXX", pb[] = "/tmp/hoptrace-audit-b-XXXXXX";
	char sa[64], sb[64], arg0[] = "audit", arg_json[] = "--json";
	char *argv[] = {arg0, arg_json, sa, sb, NULL};
	int fa = mkstemp(pa), fb = mkstemp(pb);
	const struct json_value *e;
	struct json_doc d;
	char *got, *err;

	(void)state;
	assert_true(fa >= 0 && fb >= 0);
	assert_int_equal(write(fa, host_a, strlen(host_a)), (ssize_t)strlen(host_a));
	assert_int_equal(write(fb, host_b, strlen(host_b)), (ssize_t)strlen(host_b));
	close(fa);
	close(fb);
	snprintf(sa, sizeof(sa), "otlp:%s", pa);
	snprintf(sb, sizeof(sb), "otlp:%s", pb);
	assert_int_equal(run_cli_err(argv, 4, &got, &err), 0);
	json_doc__init(&d);
	assert_int_equal(json_doc__parse(&d, got, strlen(got)), 0);
	assert_int_equal(int_at(&d, json_doc__root(&d), "calls"), 2);
	assert_int_equal(int_at(&d, json_doc__root(&d), "unmatched_client_calls"), 1);
	e = edge_of(&d, "front", "back");
	assert_non_null(e);
	assert_int_equal(int_at(&d, e, "calls"), 2);
	assert_non_null(strstr(got, "\"ok\":{\"calls\":1,\"example_trace_id\":\"" T1
				    "\",\"confidence\":\"server_span\"}"));
	assert_non_null(strstr(got, "\"dropped\":{\"calls\":1,\"example_trace_id\":\"" T1
				    "\",\"confidence\":\"exact\"}"));
	json_doc__free(&d);
	free(got);
	free(err);
	/* the table says what could not be joined */
	{
		char *targv[] = {arg0, sa, sb, NULL};

		assert_int_equal(run_cli_err(targv, 3, &got, &err), 0);
		assert_non_null(strstr(got, "not joined: 1 client call(s)"));
		free(got);
		free(err);
	}
	/* one host alone: the hoptrace call keeps its address, the SDK's calls are unmatched */
	{
		char *oargv[] = {arg0, arg_json, sa, NULL};

		assert_int_equal(run_cli_err(oargv, 3, &got, &err), 0);
		assert_non_null(strstr(got, "\"callee\":\"?:0\""));
		assert_non_null(strstr(got, "\"unmatched_client_calls\":2"));
		free(got);
		free(err);
	}
	unlink(pa);
	unlink(pb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_classify_table),
	    cmocka_unit_test(test_result_names),
	    cmocka_unit_test(test_report_table),
	    cmocka_unit_test(test_report_json),
	    cmocka_unit_test(test_offline_equals_live),
	    cmocka_unit_test(test_offline_malformed_lines),
	    cmocka_unit_test(test_offline_errors),
	    cmocka_unit_test(test_offline_cross_host),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
