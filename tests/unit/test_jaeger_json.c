// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for the span lines -> Jaeger JSON model conversion (jaeger_json.h): field names
 * and types as Jaeger's query service writes them, CHILD_OF references, one process per
 * service and pid, microsecond times, error and span.kind tags, hostile text inert. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jaeger_json.h"
#include "json_read.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"

static const char *const trace_lines[] = {
    /* frontend's server span: the root */
    "{\"trace_id\":\"" TID "\",\"span_id\":\"00f067aa0ba902b7\",\"parent_span_id\":\"\","
    "\"name\":\"GET /checkout\",\"kind\":\"SERVER\",\"start_unix_ns\":1700000000000000000,"
    "\"end_unix_ns\":1700000000250000000,\"duration_ns\":250000000,\"status\":\"UNSET\","
    "\"status_message\":\"\",\"service.name\":\"frontend\",\"pid\":100,\"tid\":100,"
    "\"trace_flags\":1,\"tracestate\":\"\",\"attributes\":{\"http.request.method\":\"GET\","
    "\"http.response.status_code\":200,\"url.path\":\"/checkout\"},\"links\":[],"
    "\"resource\":{\"process.executable.name\":\"python3\",\"deployment.environment\":\"test\"}}",
    /* frontend's client call to cart */
    "{\"trace_id\":\"" TID "\",\"span_id\":\"1111111111111111\",\"parent_span_id\":"
    "\"00f067aa0ba902b7\",\"name\":\"GET /cart\",\"kind\":\"CLIENT\",\"start_unix_ns\":"
    "1700000000010000000,\"end_unix_ns\":1700000000210000000,\"duration_ns\":200000000,"
    "\"status\":\"ERROR\",\"status_message\":\"\",\"service.name\":\"frontend\",\"pid\":100,"
    "\"tid\":101,\"trace_flags\":1,\"tracestate\":\"\",\"attributes\":{"
    "\"http.response.status_code\":500,\"hoptrace.propagation\":\"ok\","
    "\"hoptrace.traceparent.sent\":true},\"links\":[],\"resource\":{}}",
    /* cart's server span, failed, named by hostile traffic, with an event and a link */
    "{\"trace_id\":\"" TID "\",\"span_id\":\"2222222222222222\",\"parent_span_id\":"
    "\"1111111111111111\",\"name\":\"GET /<script>alert(1)</script>\",\"kind\":\"SERVER\","
    "\"start_unix_ns\":1700000000020000500,\"end_unix_ns\":1700000000200000000,"
    "\"duration_ns\":179999500,\"status\":\"ERROR\",\"status_message\":\"connection reset\","
    "\"service.name\":\"cart\",\"pid\":200,\"tid\":200,\"trace_flags\":1,\"tracestate\":\"k=v\","
    "\"attributes\":{\"http.response.status_code\":500,\"x.ratio\":0.5,"
    "\"x.html\":\"<img src=x onerror=alert(1)>\"},"
    "\"links\":[{\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\",\"span_id\":"
    "\"b7ad6b7169203331\",\"reason\":\"stitched\"}],"
    "\"events\":[{\"time_unix_ns\":1700000000100000000,\"name\":\"log\",\"attributes\":{"
    "\"log.message\":\"boom\"}}],\"dropped_events_count\":3,"
    "\"resource\":{\"container.id\":\"abc\"}}",
    /* not a span */
    "{\"trace_id\":\"nothex\",\"span_id\":\"x\"}",
    /* a span of another trace */
    "{\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\",\"span_id\":\"3333333333333333\","
    "\"parent_span_id\":\"\",\"name\":\"GET /\",\"kind\":\"SERVER\",\"start_unix_ns\":1,"
    "\"duration_ns\":1,\"status\":\"UNSET\",\"service.name\":\"x\",\"pid\":1,\"attributes\":{}}",
};
#define NLINES (sizeof(trace_lines) / sizeof(trace_lines[0]))

struct conv {
	struct jbuf b;
	struct json_doc d;
	const struct json_value *trace;
	struct jaeger_stats st;
};

static void convert(struct conv *c)
{
	size_t lens[NLINES];

	for (size_t i = 0; i < NLINES; i++)
		lens[i] = strlen(trace_lines[i]);
	memset(c, 0, sizeof(*c));
	jbuf_init(&c->b, 1u << 20);
	assert_int_equal(jaeger_trace_json(&c->b, trace_lines, lens, NLINES, &c->st), 0);
	json_doc__init(&c->d);
	if (json_doc__parse(&c->d, c->b.p, c->b.len))
		fail_msg("not JSON (%s at %zu): %s", c->d.err, c->d.err_off, c->b.p);
	c->trace = json_doc__root(&c->d);
	assert_int_equal(c->trace->type, JSON_OBJECT);
}

static void conv_free(struct conv *c)
{
	json_doc__free(&c->d);
	jbuf_free(&c->b);
}

static const struct json_value *m(const struct conv *c, const struct json_value *o, const char *k)
{
	const struct json_value *v = json_doc__member(&c->d, o, k);

	if (!v)
		fail_msg("no member %s", k);
	return v;
}

static const char *s(const struct conv *c, const struct json_value *o, const char *k)
{
	const struct json_value *v = m(c, o, k);

	assert_int_equal(v->type, JSON_STRING);
	return v->str;
}

static int64_t n(const struct conv *c, const struct json_value *o, const char *k)
{
	int64_t v;

	assert_true(json_value_int(m(c, o, k), &v));
	return v;
}

static const struct json_value *nth(const struct conv *c, const struct json_value *arr, unsigned i)
{
	const struct json_value *v = json_doc__first(&c->d, arr);

	while (v && i--)
		v = json_doc__next(&c->d, v);
	assert_non_null(v);
	return v;
}

/* The tag key of span's tags, NULL when absent; its type in *type. */
static const struct json_value *tag(const struct conv *c, const struct json_value *tags,
				    const char *key, const char **type)
{
	for (const struct json_value *t = json_doc__first(&c->d, tags); t;
	     t = json_doc__next(&c->d, t)) {
		assert_int_equal(t->type, JSON_OBJECT);
		assert_int_equal(t->count, 3); /* key, type, value: nothing else */
		if (!strcmp(s(c, t, "key"), key)) {
			*type = s(c, t, "type");
			return m(c, t, "value");
		}
	}
	return NULL;
}

static void test_model_fields(void **unused)
{
	static const char *const span_fields[] = {
	    "traceID",	"spanID", "flags", "operationName", "references", "startTime",
	    "duration", "tags",	  "logs",  "processID",	    "warnings"};
	struct conv c;
	const struct json_value *spans, *sp, *procs;

	(void)unused;
	convert(&c);
	assert_int_equal(c.st.spans, 3);
	assert_int_equal(c.st.malformed, 1);
	assert_int_equal(c.st.other_trace, 1);
	assert_string_equal(s(&c, c.trace, "traceID"), TID);
	assert_int_equal(m(&c, c.trace, "warnings")->type, JSON_NULL);
	spans = m(&c, c.trace, "spans");
	assert_int_equal(spans->type, JSON_ARRAY);
	assert_int_equal(spans->count, 3);
	for (unsigned i = 0; i < 3; i++) {
		sp = nth(&c, spans, i);
		assert_int_equal(sp->count, sizeof(span_fields) / sizeof(span_fields[0]));
		for (size_t k = 0; k < sizeof(span_fields) / sizeof(span_fields[0]); k++)
			m(&c, sp, span_fields[k]);
		assert_string_equal(s(&c, sp, "traceID"), TID);
		assert_int_equal(strlen(s(&c, sp, "spanID")), 16);
		assert_int_equal(m(&c, sp, "references")->type, JSON_ARRAY);
		assert_int_equal(m(&c, sp, "tags")->type, JSON_ARRAY);
		assert_int_equal(m(&c, sp, "logs")->type, JSON_ARRAY);
	}
	/* microseconds, truncated */
	sp = nth(&c, spans, 0);
	assert_int_equal(n(&c, sp, "startTime"), 1700000000000000);
	assert_int_equal(n(&c, sp, "duration"), 250000);
	assert_int_equal(n(&c, sp, "flags"), 1);
	assert_string_equal(s(&c, sp, "operationName"), "GET /checkout");
	assert_int_equal(m(&c, sp, "references")->count, 0);
	sp = nth(&c, spans, 2);
	assert_int_equal(n(&c, sp, "startTime"), 1700000000020000);
	assert_int_equal(n(&c, sp, "duration"), 179999);
	/* processes: frontend (pid 100) once for both of its spans, cart */
	procs = m(&c, c.trace, "processes");
	assert_int_equal(procs->type, JSON_OBJECT);
	assert_int_equal(procs->count, 2);
	assert_string_equal(s(&c, nth(&c, spans, 0), "processID"), "p1");
	assert_string_equal(s(&c, nth(&c, spans, 1), "processID"), "p1");
	assert_string_equal(s(&c, nth(&c, spans, 2), "processID"), "p2");
	assert_string_equal(s(&c, m(&c, procs, "p1"), "serviceName"), "frontend");
	assert_string_equal(s(&c, m(&c, procs, "p2"), "serviceName"), "cart");
	conv_free(&c);
}

static void test_references_match_parents(void **unused)
{
	struct conv c;
	const struct json_value *spans, *refs, *r;

	(void)unused;
	convert(&c);
	spans = m(&c, c.trace, "spans");
	refs = m(&c, nth(&c, spans, 1), "references");
	assert_int_equal(refs->count, 1);
	r = nth(&c, refs, 0);
	assert_string_equal(s(&c, r, "refType"), "CHILD_OF");
	assert_string_equal(s(&c, r, "traceID"), TID);
	assert_string_equal(s(&c, r, "spanID"), s(&c, nth(&c, spans, 0), "spanID"));
	/* the parent, then the link as FOLLOWS_FROM */
	refs = m(&c, nth(&c, spans, 2), "references");
	assert_int_equal(refs->count, 2);
	assert_string_equal(s(&c, nth(&c, refs, 0), "refType"), "CHILD_OF");
	assert_string_equal(s(&c, nth(&c, refs, 0), "spanID"), "1111111111111111");
	assert_string_equal(s(&c, nth(&c, refs, 1), "refType"), "FOLLOWS_FROM");
	assert_string_equal(s(&c, nth(&c, refs, 1), "traceID"), "0af7651916cd43dd8448eb211c80319c");
	assert_string_equal(s(&c, nth(&c, refs, 1), "spanID"), "b7ad6b7169203331");
	conv_free(&c);
}

static void test_tags(void **unused)
{
	struct conv c;
	const struct json_value *spans, *tags, *v, *procs, *logs, *log;
	const char *type = NULL;
	int64_t i;

	(void)unused;
	convert(&c);
	spans = m(&c, c.trace, "spans");
	/* the root: server, no error tag, no status code */
	tags = m(&c, nth(&c, spans, 0), "tags");
	v = tag(&c, tags, "span.kind", &type);
	assert_non_null(v);
	assert_string_equal(type, "string");
	assert_string_equal(v->str, "server");
	assert_null(tag(&c, tags, "error", &type));
	assert_null(tag(&c, tags, "otel.status_code", &type));
	v = tag(&c, tags, "http.response.status_code", &type);
	assert_string_equal(type, "int64");
	assert_true(json_value_int(v, &i) && i == 200);
	assert_string_equal(tag(&c, tags, "http.request.method", &type)->str, "GET");
	/* the client call: error as Jaeger shows it, bool attribute */
	tags = m(&c, nth(&c, spans, 1), "tags");
	assert_string_equal(tag(&c, tags, "span.kind", &type)->str, "client");
	v = tag(&c, tags, "error", &type);
	assert_string_equal(type, "bool");
	assert_int_equal(v->type, JSON_TRUE);
	assert_string_equal(tag(&c, tags, "otel.status_code", &type)->str, "ERROR");
	assert_string_equal(tag(&c, tags, "hoptrace.propagation", &type)->str, "ok");
	v = tag(&c, tags, "hoptrace.traceparent.sent", &type);
	assert_string_equal(type, "bool");
	assert_int_equal(v->type, JSON_TRUE);
	/* the failed server span: its message, a float, the tracestate */
	tags = m(&c, nth(&c, spans, 2), "tags");
	assert_string_equal(tag(&c, tags, "otel.status_description", &type)->str,
			    "connection reset");
	tag(&c, tags, "x.ratio", &type);
	assert_string_equal(type, "float64");
	assert_string_equal(tag(&c, tags, "w3c.tracestate", &type)->str, "k=v");
	assert_string_equal(tag(&c, tags, "x.html", &type)->str, "<img src=x onerror=alert(1)>");
	/* events as logs */
	logs = m(&c, nth(&c, spans, 2), "logs");
	assert_int_equal(logs->count, 1);
	log = nth(&c, logs, 0);
	assert_int_equal(n(&c, log, "timestamp"), 1700000000100000);
	assert_string_equal(tag(&c, m(&c, log, "fields"), "event", &type)->str, "log");
	assert_string_equal(tag(&c, m(&c, log, "fields"), "log.message", &type)->str, "boom");
	v = tag(&c, tags, "otel.dropped_events_count", &type);
	assert_string_equal(type, "int64");
	assert_true(json_value_int(v, &i) && i == 3);
	/* the resource as process tags, and the pid */
	procs = m(&c, c.trace, "processes");
	tags = m(&c, m(&c, procs, "p1"), "tags");
	assert_string_equal(tag(&c, tags, "deployment.environment", &type)->str, "test");
	v = tag(&c, tags, "process.pid", &type);
	assert_string_equal(type, "int64");
	assert_true(json_value_int(v, &i) && i == 100);
	assert_string_equal(tag(&c, m(&c, m(&c, procs, "p2"), "tags"), "container.id", &type)->str,
			    "abc");
	conv_free(&c);
}

/* Text from traffic decodes to itself, but the bytes on the wire hold no markup. */
static void test_hostile_text_inert(void **unused)
{
	struct conv c;

	(void)unused;
	convert(&c);
	assert_string_equal(s(&c, nth(&c, m(&c, c.trace, "spans"), 2), "operationName"),
			    "GET /<script>alert(1)</script>");
	assert_null(memchr(c.b.p, '<', c.b.len));
	assert_null(memchr(c.b.p, '>', c.b.len));
	assert_non_null(strstr(c.b.p, "\\u003cscript\\u003e"));
	conv_free(&c);
}

static void test_no_span_and_bounds(void **unused)
{
	const char *bad[] = {"not json", "{}"};
	size_t lens[] = {8, 2};
	struct jaeger_stats st = {0};
	struct jbuf b;
	size_t one = strlen(trace_lines[0]);

	(void)unused;
	jbuf_init(&b, 1024);
	assert_int_equal(jaeger_trace_json(&b, bad, lens, 2, &st), -ENOENT);
	assert_int_equal(st.malformed, 2);
	assert_int_equal(b.len, 0);
	jbuf_free(&b);
	/* past the ceiling: an error, never a cut document */
	jbuf_init(&b, 100);
	assert_int_equal(jaeger_trace_json(&b, trace_lines, &one, 1, NULL), -E2BIG);
	jbuf_free(&b);
	/* strings: control bytes, U+2028, invalid UTF-8 */
	jbuf_init(&b, 1024);
	jbuf_str(&b, "a\x01\"\\\xe2\x80\xa8\xff&", 9);
	assert_string_equal(b.p, "\"a\\u0001\\\"\\\\\\u2028\\ufffd\\u0026\"");
	jbuf_free(&b);
}

static void test_durations(void **unused)
{
	uint64_t ns;

	(void)unused;
	assert_int_equal(jaeger_parse_duration("100ms", &ns), 0);
	assert_int_equal(ns, 100000000);
	assert_int_equal(jaeger_parse_duration("1.5s", &ns), 0);
	assert_int_equal(ns, 1500000000);
	assert_int_equal(jaeger_parse_duration("250us", &ns), 0);
	assert_int_equal(ns, 250000);
	assert_int_equal(jaeger_parse_duration("250\xc2\xb5s", &ns), 0);
	assert_int_equal(ns, 250000);
	assert_int_equal(jaeger_parse_duration("1h30m", &ns), 0);
	assert_int_equal(ns, 5400000000000ULL);
	assert_int_equal(jaeger_parse_duration("0", &ns), 0);
	assert_int_equal(ns, 0);
	assert_int_equal(jaeger_parse_duration("", &ns), -EINVAL);
	assert_int_equal(jaeger_parse_duration("10", &ns), -EINVAL);
	assert_int_equal(jaeger_parse_duration("ms", &ns), -EINVAL);
	assert_int_equal(jaeger_parse_duration("1x", &ns), -EINVAL);
	assert_int_equal(jaeger_parse_duration("-1s", &ns), -EINVAL);
	assert_int_equal(jaeger_parse_duration("99999999999999h", &ns), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_model_fields),
	    cmocka_unit_test(test_references_match_parents),
	    cmocka_unit_test(test_tags),
	    cmocka_unit_test(test_hostile_text_inert),
	    cmocka_unit_test(test_no_span_and_bounds),
	    cmocka_unit_test(test_durations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
