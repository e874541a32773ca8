// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for the metrics registry on the Prometheus page (agent/metrics_prom.c): names
 * as the OpenTelemetry conversion gives them, one series per label set across processes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "metrics_prom.h"
#include "prom.h"
#include "resource.h"

static struct resource *service(uint32_t pid, const char *name)
{
	struct resource *r = resource_new(pid, 1000 + pid);

	assert_non_null(r);
	r->service_name = strdup(name);
	return r;
}

static char *render(struct metrics *m)
{
	struct prom_writer w;
	size_t len;
	char *t, *s;

	prom_writer__init(&w, 1 << 20);
	assert_int_equal(metrics_render_prom(m, &w), 0);
	t = prom_writer__take(&w, &len);
	s = calloc(1, len + 1);
	assert_non_null(s);
	if (len)
		memcpy(s, t, len);
	free(t);
	prom_writer__free(&w);
	return s;
}

static void test_processes_of_one_service_are_one_series(void **state)
{
	struct metrics *m = metrics_new(0);
	struct resource *a = service(10, "web"), *b = service(11, "web"), *c = service(12, "db");
	struct metrics_attr get = {
	    .key = "http.request.method", .type = METRICS_ATTR_STR, .str = "GET"};
	char *s;

	(void)state;
	assert_non_null(m);
	metrics__record(m, MF_HTTP_SERVER_DURATION, a, &get, 1, 3000000);   /* 3 ms */
	metrics__record(m, MF_HTTP_SERVER_DURATION, b, &get, 1, 3000000);   /* 3 ms */
	metrics__record(m, MF_HTTP_SERVER_DURATION, c, &get, 1, 200000000); /* 200 ms */
	s = render(m);
	assert_non_null(strstr(s, "# TYPE http_server_request_duration_seconds histogram\n"));
	assert_non_null(strstr(s, "http_server_request_duration_seconds_count{service_name=\"web\","
				  "http_request_method=\"GET\"} 2\n"));
	assert_non_null(strstr(s,
			       "http_server_request_duration_seconds_bucket{service_name=\"web\","
			       "http_request_method=\"GET\",le=\"0.005\"} 2\n"));
	assert_non_null(strstr(s, "http_server_request_duration_seconds_bucket{service_name=\"db\","
				  "http_request_method=\"GET\",le=\"0.1\"} 0\n"));
	assert_non_null(strstr(s, "http_server_request_duration_seconds_bucket{service_name=\"db\","
				  "http_request_method=\"GET\",le=\"0.25\"} 1\n"));
	/* no family without series */
	assert_null(strstr(s, "http_client_request_duration"));
	free(s);
	metrics_free(m);
	resource_put(a);
	resource_put(b);
	resource_put(c);
}

static void test_counters_get_total_once(void **state)
{
	struct metrics *m = metrics_new(0);
	struct metrics_attr edge[2] = {
	    {.key = "client", .type = METRICS_ATTR_STR, .str = "curl"},
	    {.key = "server", .type = METRICS_ATTR_STR, .str = "web"},
	};
	char *s;

	(void)state;
	assert_non_null(m);
	metrics__record(m, MF_GRAPH_REQUESTS, NULL, edge, 2, 0);
	metrics__record(m, MF_GRAPH_REQUESTS, NULL, edge, 2, 0);
	s = render(m);
	assert_non_null(
	    strstr(s, "traces_service_graph_request_total{client=\"curl\",server=\"web\"} 2\n"));
	assert_null(strstr(s, "_total_total"));
	free(s);
	metrics_free(m);
}

/* Integer labels (status code, port) are formatted into the series' own label set; sorting
 * the sets must not leave one series' labels pointing at another's digits. Services are
 * recorded in reverse order so that the sort moves them. */
static void test_integer_labels_stay_with_their_series(void **state)
{
	struct metrics *m = metrics_new(0);
	const char *names[] = {"svc-e", "svc-d", "svc-c", "svc-b", "svc-a"};
	struct resource *r[5];
	char *s, want[256];

	(void)state;
	assert_non_null(m);
	for (int i = 0; i < 5; i++) {
		struct metrics_attr attrs[] = {
		    {.key = "http.response.status_code", .type = METRICS_ATTR_INT, .ival = 200 + i},
		    {.key = "server.port", .type = METRICS_ATTR_INT, .ival = 18000 + i}};

		r[i] = service(20 + i, names[i]);
		for (int k = 0; k <= i; k++)
			metrics__record(m, MF_HTTP_CLIENT_DURATION, r[i], attrs, 2, 1000000);
	}
	s = render(m);
	for (int i = 0; i < 5; i++) {
		snprintf(want, sizeof(want),
			 "http_client_request_duration_seconds_count{service_name=\"%s\","
			 "http_response_status_code=\"%d\",server_port=\"%d\"} %d\n",
			 names[i], 200 + i, 18000 + i, i + 1);
		if (!strstr(s, want))
			fail_msg("missing %s in:\n%s", want, s);
	}
	free(s);
	metrics_free(m);
	for (int i = 0; i < 5; i++)
		resource_put(r[i]);
}

static void test_empty_registry_renders_nothing(void **state)
{
	struct metrics *m = metrics_new(0);
	char *s;

	(void)state;
	s = render(m);
	assert_string_equal(s, "");
	free(s);
	metrics_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_processes_of_one_service_are_one_series),
	    cmocka_unit_test(test_counters_get_total_once),
	    cmocka_unit_test(test_integer_labels_stay_with_their_series),
	    cmocka_unit_test(test_empty_registry_renders_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
