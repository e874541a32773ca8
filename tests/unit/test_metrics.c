// SPDX-License-Identifier: BSD-2-Clause
/*
 * Unit tests for the metrics registry: bucket placement at and around every semantic-
 * convention boundary (upper-inclusive), the attributes taken from server and client spans,
 * service-graph and propagation series, and the series cap with its overflow series.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "resource.h"
#include "span.h"
#include "stats.h"

static struct resource *make_resource(uint32_t pid, const char *svc)
{
	struct resource *r = resource_new(pid, 1000 + pid);

	assert_non_null(r);
	r->service_name = strdup(svc);
	return r;
}

static struct span *make_span(struct resource *r, int kind, uint64_t dur_ns, int status)
{
	struct span *s = span_new();

	assert_non_null(s);
	s->kind = (uint8_t)kind;
	s->start_unix_ns = 1700000000000000000ULL;
	s->end_unix_ns = s->start_unix_ns + dur_ns;
	s->resource = resource_get(r);
	span_set_str(s, "http.request.method", "GET", 3);
	span_set_str(s, "url.scheme", "http", 4);
	span_set_str(s, "network.protocol.version", "1.1", 3);
	if (status)
		span_set_int(s, "http.response.status_code", status);
	return s;
}

static const struct metrics_series *find(const struct metrics *m, enum metric_family f,
					 const char *key, const char *val)
{
	for (size_t i = 0; i < metrics__nseries(m); i++) {
		const struct metrics_series *ser = metrics__series_at(m, i);
		const struct metrics_attr *a = metrics_series_attr(ser, key);

		if (ser->family == f && a && a->type == METRICS_ATTR_STR && !strcmp(a->str, val))
			return ser;
	}
	return NULL;
}

static void test_bucket_boundaries(void **state)
{
	(void)state;
	for (unsigned i = 0; i < METRICS_NBOUNDS; i++) {
		uint64_t b = (uint64_t)(metrics_bounds_s[i] * 1e9 + 0.5);

		/* upper-inclusive: exactly the bound is in bucket i, one ns more in i + 1 */
		assert_int_equal(metrics_bucket_of(b), i);
		assert_int_equal(metrics_bucket_of(b + 1), i + 1);
		assert_int_equal(metrics_bucket_of(b - 1), i);
	}
	assert_int_equal(metrics_bucket_of(0), 0);
	assert_int_equal(metrics_bucket_of(UINT64_MAX), METRICS_NBOUNDS);
	assert_true(metrics_bounds_s[0] == 0.005 && metrics_bounds_s[METRICS_NBOUNDS - 1] == 10);
}

static void test_server_histogram(void **state)
{
	struct metrics *m = metrics_new(0);
	struct resource *r = make_resource(10, "front");
	static const uint64_t durs[] = {5000000, 5000001, 120000000, 120000000, 11000000000ULL};
	const struct metrics_series *ok, *err;
	const struct metrics_attr *a;

	(void)state;
	for (size_t i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
		struct span *s = make_span(r, SPAN_KIND_SERVER, durs[i], 200);

		span_set_str(s, "http.route", "/users/{id}", 11);
		metrics__observe_span(m, s);
		span_free(s);
	}
	{
		struct span *s = make_span(r, SPAN_KIND_SERVER, 300000000, 503);

		span_set_str(s, "error.type", "503", 3);
		metrics__observe_span(m, s);
		span_free(s);
	}
	ok = find(m, MF_HTTP_SERVER_DURATION, "http.route", "/users/{id}");
	assert_non_null(ok);
	assert_ptr_equal(ok->resource, r);
	assert_int_equal(ok->count, 5);
	assert_int_equal(ok->buckets[0], 1);  /* exactly 5 ms */
	assert_int_equal(ok->buckets[1], 1);  /* 5 ms + 1 ns */
	assert_int_equal(ok->buckets[6], 2);  /* 120 ms: (0.1, 0.25] */
	assert_int_equal(ok->buckets[14], 1); /* 11 s: above every bound */
	assert_true(ok->sum > 11.25 - 1e-9 && ok->sum < 11.25 + 1e-6);
	a = metrics_series_attr(ok, "http.response.status_code");
	assert_non_null(a);
	assert_int_equal(a->type, METRICS_ATTR_INT);
	assert_int_equal(a->ival, 200);
	assert_non_null(metrics_series_attr(ok, "url.scheme"));
	assert_null(metrics_series_attr(ok, "server.address"));
	err = find(m, MF_HTTP_SERVER_DURATION, "error.type", "503");
	assert_non_null(err);
	assert_int_equal(err->count, 1);
	assert_int_equal(err->buckets[7], 1);
	assert_int_equal(metrics__nseries(m), 2);
	metrics_free(m);
	resource_put(r);
}

static void test_graph_and_propagation(void **state)
{
	struct metrics *m = metrics_new(0);
	struct resource *front = make_resource(10, "front"), *back = make_resource(11, "back");
	const struct metrics_series *ser;
	const struct metrics_attr *a;

	(void)state;
	for (int i = 0; i < 3; i++) {
		struct span *c = make_span(front, SPAN_KIND_CLIENT, 20000000, i == 2 ? 500 : 200);
		struct span *sv = make_span(back, SPAN_KIND_SERVER, 10000000, i == 2 ? 500 : 200);

		span_set_str(c, "server.address", "127.0.0.1", 9);
		span_set_int(c, "server.port", 8080);
		span_set_str(c, "hoptrace.callee.service", "back", 4);
		span_set_str(c, "hoptrace.propagation", i ? "ok" : "dropped", i ? 2 : 7);
		if (i == 2)
			c->status = SPAN_STATUS_ERROR;
		span_set_str(sv, "hoptrace.caller.service", "front", 5);
		metrics__observe_span(m, c);
		metrics__observe_span(m, sv);
		span_free(c);
		span_free(sv);
	}
	{
		/* a callee off this host is named by address and port; no verdict: no count */
		struct span *c = make_span(front, SPAN_KIND_CLIENT, 1000000, 200);

		span_set_str(c, "server.address", "example.org", 11);
		span_set_int(c, "server.port", 443);
		metrics__observe_span(m, c);
		span_free(c);
	}
	ser = find(m, MF_GRAPH_REQUESTS, "server", "back");
	assert_non_null(ser);
	assert_null(ser->resource);
	assert_string_equal(metrics_series_attr(ser, "client")->str, "front");
	assert_int_equal(ser->count, 3);
	assert_int_equal(find(m, MF_GRAPH_FAILED, "server", "back")->count, 1);
	ser = find(m, MF_GRAPH_CLIENT_SECONDS, "server", "back");
	assert_int_equal(ser->count, 3);
	assert_int_equal(ser->buckets[2], 3); /* 20 ms: (0.01, 0.025] */
	ser = find(m, MF_GRAPH_SERVER_SECONDS, "client", "front");
	assert_int_equal(ser->count, 3);
	assert_int_equal(ser->buckets[1], 3); /* 10 ms: (0.005, 0.01] */
	assert_int_equal(find(m, MF_PROPAGATION_CALLS, "result", "ok")->count, 2);
	assert_int_equal(find(m, MF_PROPAGATION_CALLS, "result", "dropped")->count, 1);
	assert_int_equal(find(m, MF_GRAPH_REQUESTS, "server", "example.org:443")->count, 1);
	assert_null(find(m, MF_GRAPH_FAILED, "server", "example.org:443"));
	ser = find(m, MF_HTTP_CLIENT_DURATION, "server.address", "127.0.0.1");
	assert_int_equal(ser->count, 2);
	a = metrics_series_attr(ser, "server.port");
	assert_int_equal(a->ival, 8080);
	assert_null(metrics_series_attr(ser, "http.route"));
	metrics_free(m);
	resource_put(front);
	resource_put(back);
}

/* Past the cap, new series go to the metric's overflow series; existing ones keep counting. */
static void test_cardinality_cap(void **state)
{
	struct metrics *m = metrics_new(4);
	struct resource *r = make_resource(10, "front");
	uint64_t before = g_stats.metrics_overflow;
	const struct metrics_series *ovf = NULL;
	char route[32];

	(void)state;
	for (int i = 0; i < 10; i++) {
		struct span *s = make_span(r, SPAN_KIND_SERVER, 1000000, 200);

		snprintf(route, sizeof(route), "/r%d", i);
		span_set_str(s, "http.route", route, strlen(route));
		metrics__observe_span(m, s);
		metrics__observe_span(m, s); /* the same series twice */
		span_free(s);
	}
	assert_int_equal(metrics__nseries(m), 5); /* 4 + the overflow series */
	for (size_t i = 0; i < metrics__nseries(m); i++)
		if (metrics_series_attr(metrics__series_at(m, i), METRICS_OVERFLOW_ATTR))
			ovf = metrics__series_at(m, i);
	assert_non_null(ovf);
	assert_null(ovf->resource);
	assert_int_equal(ovf->nattrs, 1);
	assert_int_equal(ovf->count, 12);
	assert_int_equal(find(m, MF_HTTP_SERVER_DURATION, "http.route", "/r3")->count, 2);
	assert_null(find(m, MF_HTTP_SERVER_DURATION, "http.route", "/r4"));
	assert_int_equal(g_stats.metrics_overflow - before, 12);
	metrics_free(m);
	resource_put(r);
}

/* A hostile value longer than the cap is cut, and two values equal once cut share a series. */
static void test_long_values_cut(void **state)
{
	struct metrics *m = metrics_new(0);
	struct resource *r = make_resource(10, "front");
	char big[1000];

	(void)state;
	memset(big, 'a', sizeof(big));
	for (int i = 0; i < 2; i++) {
		struct span *s = make_span(r, SPAN_KIND_CLIENT, 1000, 200);

		big[900] = (char)('a' + i); /* differs past the cut */
		span_set_str(s, "server.address", big, sizeof(big));
		span_set_int(s, "server.port", 80);
		metrics__observe_span(m, s);
		span_free(s);
	}
	for (size_t i = 0; i < metrics__nseries(m); i++) {
		const struct metrics_series *ser = metrics__series_at(m, i);

		for (unsigned j = 0; j < ser->nattrs; j++)
			if (ser->attrs[j].type == METRICS_ATTR_STR)
				assert_true(strlen(ser->attrs[j].str) < METRICS_VALUE_MAX);
		if (ser->family == MF_HTTP_CLIENT_DURATION)
			assert_int_equal(ser->count, 2);
	}
	metrics_free(m);
	resource_put(r);
}

/* A curl per request: a process per series. Once exported and idle for an interval, those
 * series make room when the table fills, and the live ones stay. */
static size_t series_of(const struct metrics *m, const struct resource *r, uint64_t *count)
{
	size_t n = 0;

	for (size_t i = 0; i < metrics__nseries(m); i++)
		if (metrics__series_at(m, i)->resource == r) {
			*count = metrics__series_at(m, i)->count;
			n++;
		}
	return n;
}

/* A curl per request: a process per series. Once exported and idle for an interval, those
 * series make room when the table fills; the live ones stay, and new ones find room. */
static void test_idle_series_expire(void **state)
{
	struct metrics *m = metrics_new(8);
	struct resource *live = make_resource(1, "live"), *fresh = make_resource(200, "fresh");
	struct resource *curls[7];
	uint64_t before = g_stats.metrics_series_expired, count = 0;

	(void)state;
	for (int i = 0; i < 7; i++) {
		curls[i] = make_resource(100 + (uint32_t)i, "curl");
		metrics__record(m, MF_HTTP_CLIENT_DURATION, curls[i], NULL, 0, 1000);
	}
	metrics__record(m, MF_HTTP_SERVER_DURATION, live, NULL, 0, 1000);
	assert_int_equal(metrics__nseries(m), 8);
	assert_int_equal(metrics__end_epoch(m), 0); /* all just exported: kept */
	metrics__record(m, MF_HTTP_SERVER_DURATION, live, NULL, 0, 1000);
	assert_int_equal(metrics__end_epoch(m), 7); /* the idle ones */
	assert_int_equal(g_stats.metrics_series_expired - before, 7);
	assert_int_equal(series_of(m, live, &count), 1);
	assert_int_equal(count, 2);
	metrics__record(m, MF_HTTP_SERVER_DURATION, fresh, NULL, 0, 1000);
	metrics__record(m, MF_HTTP_SERVER_DURATION, fresh, NULL, 0, 1000);
	metrics__record(m, MF_HTTP_SERVER_DURATION, live, NULL, 0, 1000);
	assert_int_equal(metrics__nseries(m), 2); /* found again through the rebuilt index */
	assert_int_equal(series_of(m, fresh, &count), 1);
	assert_int_equal(count, 2);
	assert_int_equal(series_of(m, live, &count), 1);
	assert_int_equal(count, 3);
	metrics_free(m);
	for (int i = 0; i < 7; i++)
		resource_put(curls[i]);
	resource_put(live);
	resource_put(fresh);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bucket_boundaries),	  cmocka_unit_test(test_server_histogram),
	    cmocka_unit_test(test_graph_and_propagation), cmocka_unit_test(test_cardinality_cap),
	    cmocka_unit_test(test_long_values_cut),	  cmocka_unit_test(test_idle_series_expire),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
