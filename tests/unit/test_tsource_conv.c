// SPDX-License-Identifier: BSD-2-Clause
/*
 * Unit tests for the converting span sources: OTLP JSON (otlp:FILE, and Tempo's answers) and
 * Jaeger's JSON model into span lines. Every line handed over must parse with the strict
 * reader the offline commands use; hostile documents are skipped and counted, never crash.
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

#include <unistd.h>

#include "json_read.h"
#include "tsource.h"
#include "tsource_otlp.h"
#include "tsource_remote.h"

#define MAX_LINES 16

/* The lines a conversion handed over, each checked to be strict JSON. */
struct collected {
	char *lines[MAX_LINES];
	int n;
};

static int collect(void *ctx, const char *line, size_t len)
{
	struct collected *c = ctx;
	struct json_doc d;

	json_doc__init(&d);
	assert_int_equal(json_doc__parse(&d, line, len), 0);
	json_doc__free(&d);
	assert_true(c->n < MAX_LINES);
	c->lines[c->n] = strndup(line, len);
	assert_non_null(c->lines[c->n]);
	c->n++;
	return 0;
}

static void collected_free(struct collected *c)
{
	for (int i = 0; i < c->n; i++)
		free(c->lines[i]);
	c->n = 0;
}

/* Convert one OTLP document; returns the malformed count. */
static uint64_t otlp(const char *text, struct collected *out, uint64_t *dropped)
{
	struct tsource_stats st = {0};
	struct tconv c = {.prog = "test", .where = "test", .fn = collect, .ctx = out, .st = &st};
	struct json_doc d;
	uint64_t drop = 0;

	json_doc__init(&d);
	if (json_doc__parse_max(&d, text, strlen(text), OTLP_DOC_MAX_LEN, OTLP_DOC_MAX_VALUES))
		st.malformed++;
	else
		tsource_otlp_doc(&c, &d, json_doc__root(&d), &drop);
	json_doc__free(&d);
	tconv_free(&c);
	assert_int_equal(st.spans, (uint64_t)out->n);
	if (dropped)
		*dropped = drop;
	return st.malformed;
}

/* The value of member key of the line as a C string ("" when absent), for assertions. */
static char *field(const char *line, const char *path1, const char *path2)
{
	static char buf[512];
	const struct json_value *v;
	struct json_doc d;

	json_doc__init(&d);
	assert_int_equal(json_doc__parse(&d, line, strlen(line)), 0);
	v = json_doc__member(&d, json_doc__root(&d), path1);
	if (path2)
		v = json_doc__member(&d, v, path2);
	snprintf(buf, sizeof(buf), "%s",
		 v ? v->type == JSON_TRUE ? "true"
		     : v->str		  ? v->str
					  : "{}"
		   : "");
	json_doc__free(&d);
	return buf;
}

static const char OTLP_CAMEL[] =
    "{\"resourceSpans\":[{\"resource\":{\"attributes\":["
    "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"front\"}},"
    "{\"key\":\"process.pid\",\"value\":{\"intValue\":\"42\"}},"
    "{\"key\":\"host.name\",\"value\":{\"stringValue\":\"h1\"}}]},"
    "\"scopeSpans\":[{\"scope\":{\"name\":\"s\"},\"spans\":[{"
    "\"traceId\":\"5B8EFFF798038103D269B633813FC60C\",\"spanId\":\"EEE19B7EC3C1B174\","
    "\"parentSpanId\":\"\",\"name\":\"GET /\",\"kind\":2,"
    "\"startTimeUnixNano\":\"1544712660000000000\",\"endTimeUnixNano\":1544712661000000000,"
    "\"attributes\":[{\"key\":\"http.request.method\",\"value\":{\"stringValue\":\"GET\"}},"
    "{\"key\":\"n\",\"value\":{\"intValue\":\"-5\"}},"
    "{\"key\":\"ok\",\"value\":{\"boolValue\":true}},"
    "{\"key\":\"d\",\"value\":{\"doubleValue\":1.5}},"
    "{\"key\":\"arr\",\"value\":{\"arrayValue\":{\"values\":[{\"stringValue\":\"a\\\"\"},"
    "{\"intValue\":3}]}}},"
    "{\"key\":\"n\",\"value\":{\"intValue\":\"7\"}}],"
    "\"links\":[{\"traceId\":\"00000000000000000000000000000001\",\"spanId\":"
    "\"0000000000000002\"}],"
    "\"status\":{\"code\":2,\"message\":\"boom\"}}]}]}]}";

static void test_otlp_camel(void **state)
{
	struct collected out = {0};
	uint64_t dropped;
	const char *l;

	(void)state;
	assert_int_equal(otlp(OTLP_CAMEL, &out, &dropped), 0);
	assert_int_equal(out.n, 1);
	assert_int_equal(dropped, 1); /* the second "n": the first is kept */
	l = out.lines[0];
	assert_string_equal(field(l, "trace_id", NULL), "5b8efff798038103d269b633813fc60c");
	assert_string_equal(field(l, "span_id", NULL), "eee19b7ec3c1b174");
	assert_string_equal(field(l, "parent_span_id", NULL), "");
	assert_string_equal(field(l, "kind", NULL), "SERVER");
	assert_string_equal(field(l, "status", NULL), "ERROR");
	assert_string_equal(field(l, "status_message", NULL), "boom");
	assert_string_equal(field(l, "service.name", NULL), "front");
	assert_string_equal(field(l, "pid", NULL), "42");
	assert_string_equal(field(l, "start_unix_ns", NULL), "1544712660000000000");
	assert_string_equal(field(l, "duration_ns", NULL), "1000000000");
	assert_string_equal(field(l, "trace_flags", NULL), "1");
	assert_string_equal(field(l, "attributes", "n"), "-5");
	assert_string_equal(field(l, "attributes", "ok"), "true");
	assert_string_equal(field(l, "attributes", "d"), "1.5");
	assert_string_equal(field(l, "attributes", "arr"), "[\"a\\\"\",3]");
	assert_string_equal(field(l, "resource", "host.name"), "h1");
	assert_string_equal(field(l, "resource", "process.pid"), "42");
	assert_string_equal(field(l, "resource", "service.name"), ""); /* top level only */
	assert_non_null(strstr(l, "\"links\":[{\"trace_id\":\"00000000000000000000000000000001\""));
	collected_free(&out);
}

/* The .proto's field names, enum names, numbers for times, base64 ids (Tempo), and the
 * older instrumentationLibrarySpans and Tempo's "batches". */
static void test_otlp_proto_names(void **state)
{
	struct collected out = {0};

	(void)state;
	assert_int_equal(
	    otlp("{\"batches\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":"
		 "{\"string_value\":\"b\"}}]},\"instrumentation_library_spans\":[{\"spans\":[{"
		 "\"trace_id\":\"W47/95gDgQPSabYzgT/GDA==\",\"span_id\":\"7uGbfsPBsXQ=\","
		 "\"parent_span_id\":\"aaaaaaaaaaaaaaaa\",\"kind\":\"SPAN_KIND_CLIENT\","
		 "\"start_time_unix_nano\":5,\"end_time_unix_nano\":\"9\",\"flags\":769,"
		 "\"status\":{\"code\":\"STATUS_CODE_OK\"}}]}]}]}",
		 &out, NULL),
	    0);
	assert_int_equal(out.n, 1);
	assert_string_equal(field(out.lines[0], "trace_id", NULL),
			    "5b8efff798038103d269b633813fc60c");
	assert_string_equal(field(out.lines[0], "span_id", NULL), "eee19b7ec3c1b174");
	assert_string_equal(field(out.lines[0], "parent_span_id", NULL), "aaaaaaaaaaaaaaaa");
	assert_string_equal(field(out.lines[0], "kind", NULL), "CLIENT");
	assert_string_equal(field(out.lines[0], "status", NULL), "OK");
	assert_string_equal(field(out.lines[0], "trace_flags", NULL), "1");
	assert_string_equal(field(out.lines[0], "service.name", NULL), "b");
	collected_free(&out);
	/* Tempo's v2 wrapping, and an empty export */
	assert_int_equal(otlp("{\"trace\":{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{"
			      "\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":"
			      "\"eee19b7ec3c1b174\"}]}]}]}}",
			      &out, NULL),
			 0);
	assert_int_equal(out.n, 1);
	assert_string_equal(field(out.lines[0], "service.name", NULL), "unknown_service");
	assert_string_equal(field(out.lines[0], "kind", NULL), "UNSPECIFIED");
	collected_free(&out);
	assert_int_equal(otlp("{}", &out, NULL), 0);
	assert_int_equal(out.n, 0);
}

#define SPAN_WITH(extra)                                                                           \
	"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":"                           \
	"\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"eee19b7ec3c1b174\"" extra "}]}]}]}"

/* Hostile documents: each bad span is skipped and counted, the good one beside it kept. */
static void test_otlp_hostile(void **state)
{
	static const char *const bad_spans[] = {
	    "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"spanId\":\"eee19b7ec3c1b174\"}]}]}"
	    "]}",
	    "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":\"zz\",\"spanId\":"
	    "\"eee19b7ec3c1b174\"}]}]}]}",
	    "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":"
	    "\"00000000000000000000000000000000\",\"spanId\":\"eee19b7ec3c1b174\"}]}]}]}",
	    SPAN_WITH(",\"startTimeUnixNano\":\"18446744073709551616\""),
	    SPAN_WITH(",\"startTimeUnixNano\":-1"),
	    SPAN_WITH(",\"startTimeUnixNano\":1.5e9"),
	    SPAN_WITH(",\"kind\":99"),
	    SPAN_WITH(",\"kind\":\"SERVER\\u0000\""),
	    SPAN_WITH(",\"name\":{}"),
	    SPAN_WITH(",\"status\":[]"),
	    SPAN_WITH(",\"parentSpanId\":\"eee19b7ec3c1b17\""),
	    SPAN_WITH(",\"flags\":\"x\""),
	    "{\"resourceSpans\":{}}",
	    "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":7}]}]}",
	    "{\"resourceSpans\":[7]}",
	    "[]",
	    "{\"other\":1}",
	};
	struct collected out = {0};
	char deep[4096];
	uint64_t dropped;
	size_t o = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(bad_spans) / sizeof(bad_spans[0]); i++) {
		assert_int_equal(otlp(bad_spans[i], &out, NULL), 1);
		assert_int_equal(out.n, 0);
	}
	/* attributes of the wrong types are left out, the span kept */
	assert_int_equal(
	    otlp(SPAN_WITH(",\"attributes\":[{\"key\":\"a\",\"value\":{\"intValue\":"
			   "\"99999999999999999999\"}},{\"key\":1,\"value\":{}},"
			   "{\"key\":\"b\",\"value\":{\"boolValue\":\"yes\"}},"
			   "{\"key\":\"c\",\"value\":{\"nope\":1}},{\"key\":\"d\"},"
			   "{\"key\":\"e\",\"value\":{\"stringValue\":\"\\u0000\\u001b[\"}}]"),
		 &out, &dropped),
	    0);
	assert_int_equal(out.n, 1);
	assert_int_equal(dropped, 5);
	assert_non_null(strstr(out.lines[0], "\"e\":\"\\u0000\\u001b[\""));
	collected_free(&out);
	/* nesting past the reader's depth: the document is refused and counted */
	o += (size_t)snprintf(deep, sizeof(deep),
			      SPAN_WITH(",\"attributes\":[{\"key\":\"k\",\"value\":"));
	o -= strlen("}]}]}]}");
	for (int i = 0; i < 70; i++)
		o += (size_t)snprintf(deep + o, sizeof(deep) - o, "{\"arrayValue\":{\"values\":[");
	assert_int_equal(otlp(deep, &out, NULL), 1);
	assert_int_equal(out.n, 0);
}

/* A huge string value is cut, the line stays under TSOURCE_MAX_LINE and parses. */
static void test_otlp_huge_values(void **state)
{
	size_t big = 3u << 20, o = 0;
	char *doc = malloc(big + 4096);
	struct collected out = {0};

	(void)state;
	assert_non_null(doc);
	o += (size_t)sprintf(doc, SPAN_WITH(",\"name\":\""));
	o -= strlen("}]}]}]}");
	memset(doc + o, 'x', big);
	o += big;
	strcpy(doc + o, "\"}]}]}]}");
	assert_int_equal(otlp(doc, &out, NULL), 0);
	assert_int_equal(out.n, 1);
	assert_true(strlen(out.lines[0]) < TSOURCE_MAX_LINE);
	assert_int_equal(strlen(field(out.lines[0], "name", NULL)), 511); /* field()'s buffer */
	collected_free(&out);
	free(doc);
}

static void test_parse_id(void **state)
{
	uint8_t id[16];

	(void)state;
	assert_true(tconv_parse_id("0123456789abcdefABCDEF0123456789", 32, id, 16, false));
	assert_int_equal(id[0], 0x01);
	assert_int_equal(id[15], 0x89);
	assert_false(tconv_parse_id("123", 3, id, 16, false));
	assert_true(tconv_parse_id("123", 3, id, 16, true));
	assert_int_equal(id[14], 0x01);
	assert_int_equal(id[15], 0x23);
	assert_false(tconv_parse_id("0123456789abcdef0123456789abcdef0", 33, id, 16, true));
	assert_false(tconv_parse_id("0000000000000000", 16, id, 8, false));
	assert_false(tconv_parse_id("7uGbfsPBsXR=", 12, id, 8, false)); /* non-canonical */
	assert_false(tconv_parse_id("7uGbfs!BsXQ=", 12, id, 8, false));
	assert_false(tconv_parse_id("", 0, id, 8, true));
	assert_true(tconv_parse_id("7uGbfsPBsXQ", 11, id, 8, false));
	assert_int_equal(id[0], 0xee);
}

static const char JAEGER[] =
    "{\"data\":[{\"traceID\":\"d269b633813fc60c\",\"spans\":["
    "{\"traceID\":\"d269b633813fc60c\",\"spanID\":\"1\",\"operationName\":\"GET /a\","
    "\"references\":[],\"startTime\":1700000000000000,\"duration\":2000,\"flags\":1,"
    "\"tags\":[{\"key\":\"span.kind\",\"type\":\"string\",\"value\":\"server\"},"
    "{\"key\":\"http.status_code\",\"type\":\"int64\",\"value\":500},"
    "{\"key\":\"error\",\"type\":\"bool\",\"value\":true},"
    "{\"key\":\"otel.status_description\",\"type\":\"string\",\"value\":\"bad\"}],"
    "\"logs\":[],\"processID\":\"p1\",\"warnings\":null},"
    "{\"traceID\":\"d269b633813fc60c\",\"spanID\":\"00000000000000a2\",\"operationName\":"
    "\"GET\",\"references\":[{\"refType\":\"CHILD_OF\",\"traceID\":\"d269b633813fc60c\","
    "\"spanID\":\"0000000000000001\"},{\"refType\":\"FOLLOWS_FROM\",\"traceID\":"
    "\"d269b633813fc60c\",\"spanID\":\"0000000000000003\"}],\"startTime\":1700000000000100,"
    "\"duration\":1000,\"tags\":[{\"key\":\"span.kind\",\"type\":\"string\",\"value\":"
    "\"client\"},{\"key\":\"x\",\"type\":\"float64\",\"value\":0.25}],\"processID\":\"p2\"},"
    "{\"traceID\":\"d269b633813fc60c\",\"spanID\":\"zz\",\"startTime\":1,\"duration\":1},"
    "{\"traceID\":\"d269b633813fc60c\",\"spanID\":\"5\",\"startTime\":-1,\"duration\":1},"
    "{\"traceID\":\"d269b633813fc60c\",\"spanID\":\"6\",\"startTime\":1,\"duration\":"
    "18446744073709551615}],"
    "\"processes\":{\"p1\":{\"serviceName\":\"front\",\"tags\":[{\"key\":\"hostname\","
    "\"type\":\"string\",\"value\":\"h1\"},{\"key\":\"ip\",\"type\":\"int64\",\"value\":7}]},"
    "\"p2\":{\"serviceName\":\"front\",\"tags\":[]}}}],"
    "\"total\":0,\"limit\":0,\"offset\":0,\"errors\":null}";

static void test_jaeger(void **state)
{
	struct tsource_stats st = {0};
	struct collected out = {0};
	struct tconv c = {.prog = "test", .where = "test", .fn = collect, .ctx = &out, .st = &st};
	struct json_doc d;
	struct u64map seen;
	uint64_t dropped = 0;
	const char *l;

	(void)state;
	assert_int_equal(u64map_init(&seen, 100), 0);
	json_doc__init(&d);
	assert_int_equal(json_doc__parse(&d, JAEGER, strlen(JAEGER)), 0);
	tsource_jaeger_doc(&c, &d, json_doc__root(&d), &seen, 100, &dropped);
	assert_int_equal(out.n, 2);
	assert_int_equal(st.malformed, 3);
	l = out.lines[0];
	assert_string_equal(field(l, "trace_id", NULL), "0000000000000000d269b633813fc60c");
	assert_string_equal(field(l, "span_id", NULL), "0000000000000001");
	assert_string_equal(field(l, "kind", NULL), "SERVER");
	assert_string_equal(field(l, "status", NULL), "ERROR");
	assert_string_equal(field(l, "status_message", NULL), "bad");
	assert_string_equal(field(l, "start_unix_ns", NULL), "1700000000000000000");
	assert_string_equal(field(l, "duration_ns", NULL), "2000000");
	assert_string_equal(field(l, "service.name", NULL), "front");
	assert_string_equal(field(l, "attributes", "http.status_code"), "500");
	assert_string_equal(field(l, "attributes", "span.kind"), "");
	assert_string_equal(field(l, "resource", "hostname"), "h1");
	assert_string_equal(field(l, "resource", "ip"), "7");
	l = out.lines[1];
	assert_string_equal(field(l, "parent_span_id", NULL), "0000000000000001");
	assert_string_equal(field(l, "kind", NULL), "CLIENT");
	assert_string_equal(field(l, "attributes", "x"), "0.25");
	assert_non_null(strstr(l, "\"reason\":\"follows_from\""));
	/* the same trace again (another service's query): not handed over twice */
	tsource_jaeger_doc(&c, &d, json_doc__root(&d), &seen, 100, &dropped);
	assert_int_equal(out.n, 2);
	collected_free(&out);
	json_doc__free(&d);
	u64map_free(&seen);
	tconv_free(&c);
}

/* The caller's bounds: bytes and values; json_doc__parse keeps its 1 MiB. */
static void test_parse_max(void **state)
{
	struct json_doc d;

	(void)state;
	json_doc__init(&d);
	assert_int_equal(json_doc__parse_max(&d, "[1,2,3]", 7, 100, 4), 0);
	assert_int_equal(json_doc__parse_max(&d, "[1,2,3]", 7, 100, 3), -E2BIG);
	assert_string_equal(d.err, "too many values");
	assert_int_equal(json_doc__parse_max(&d, "[1,2,3]", 7, 6, 100), -E2BIG);
	json_doc__free(&d);
}

static int count_spans(void *ctx, const char *line, size_t len)
{
	(void)line;
	(void)len;
	(*(uint64_t *)ctx)++;
	return 0;
}

/* otlp:FILE takes lines far past the 1 MiB of a span line (a Collector batch), skips one past
 * OTLP_DOC_MAX_LEN whole, and goes on with the next line. */
static void test_otlp_file_long_lines(void **state)
{
	static const char span[] = "{\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":"
				   "\"eee19b7ec3c1b174\",\"name\":\"%05d\"}";
	char path[] = "/tmp/hoptrace-otlp-XXXXXX", spec[64];
	int fd = mkstemp(path);
	struct tsource_stats st = {0};
	uint64_t n = 0;
	FILE *f;

	(void)state;
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	/* 30000 spans, about 3 MiB, on one line */
	fputs("{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[", f);
	for (int i = 0; i < 30000; i++) {
		fputs(i ? "," : "", f);
		fprintf(f, span, i);
	}
	fputs("]}]}]}\n", f);
	/* a line past the bound: skipped whole */
	fputs("{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"name\":\"", f);
	for (unsigned i = 0; i < (OTLP_DOC_MAX_LEN >> 16) + 1; i++)
		fprintf(f, "%065535d", 0);
	fputs("\"}]}]}]}\n", f);
	fputs("{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[", f);
	fprintf(f, span, 1);
	fputs("]}]}]}", f); /* no newline at the end */
	fclose(f);
	snprintf(spec, sizeof(spec), "otlp:%s", path);
	assert_int_equal(tsource_read("test", spec, NULL, count_spans, &n, &st), 0);
	assert_int_equal(n, 30001);
	assert_int_equal(st.spans, 30001);
	assert_int_equal(st.lines, 30001); /* spans seen */
	assert_int_equal(st.malformed, 1);
	unlink(path);
	/* a file that cannot be opened: -errno */
	assert_int_equal(tsource_read("test", "otlp:/nonexistent/x", NULL, count_spans, &n, &st),
			 -ENOENT);
	assert_true(tsource_spec_converted("otlp:x"));
	assert_true(tsource_spec_converted("jaeger:http://x"));
	assert_false(tsource_spec_converted("spans.jsonl"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_otlp_camel),	 cmocka_unit_test(test_otlp_proto_names),
	    cmocka_unit_test(test_otlp_hostile), cmocka_unit_test(test_otlp_huge_values),
	    cmocka_unit_test(test_parse_id),	 cmocka_unit_test(test_jaeger),
	    cmocka_unit_test(test_parse_max),	 cmocka_unit_test(test_otlp_file_long_lines),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
