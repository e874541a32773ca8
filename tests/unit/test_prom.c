// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for the Prometheus text writer: escaping, naming, histograms, the size limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "prom.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The writer's text as a NUL-terminated string (freed by the caller). */
static char *text_of(struct prom_writer *w)
{
	size_t len;
	char *t = prom_writer__take(w, &len);
	char *s = malloc(len + 1);

	assert_non_null(s);
	if (len)
		memcpy(s, t, len);
	s[len] = '\0';
	free(t);
	return s;
}

static void test_counter_gets_total_and_help(void **state)
{
	struct prom_writer w;
	char *s;

	(void)state;
	prom_writer__init(&w, 1 << 20);
	assert_int_equal(prom__family(&w, "hoptrace_spans_server", PROM_COUNTER, "server spans"),
			 0);
	assert_int_equal(prom__sample_u64(&w, NULL, 0, 18446744073709551615ULL), 0);
	/* a name that already ends in _total keeps one */
	assert_int_equal(prom__family(&w, "x_total", PROM_COUNTER, NULL), 0);
	assert_int_equal(prom__sample_u64(&w, NULL, 0, 0), 0);
	assert_int_equal(prom__family(&w, "depth", PROM_GAUGE, "queued"), 0);
	assert_int_equal(prom__sample(&w, NULL, 0, 0.25), 0);
	s = text_of(&w);
	assert_string_equal(s, "# HELP hoptrace_spans_server_total server spans\n"
			       "# TYPE hoptrace_spans_server_total counter\n"
			       "hoptrace_spans_server_total 18446744073709551615\n"
			       "# HELP x_total \n"
			       "# TYPE x_total counter\n"
			       "x_total 0\n"
			       "# HELP depth queued\n"
			       "# TYPE depth gauge\n"
			       "depth 0.25\n");
	free(s);
	prom_writer__free(&w);
}

static void test_label_values_are_escaped(void **state)
{
	struct prom_labels_case {
		const char *in, *out;
	} cases[] = {
	    {"plain", "plain"},
	    {"a\\b", "a\\\\b"},
	    {"say \"hi\"", "say \\\"hi\\\""},
	    {"two\nlines", "two\\nlines"},
	    {"caf\xc3\xa9", "caf\xc3\xa9"},			      /* UTF-8 kept */
	    {"bad\xff\xc3", "bad\xef\xbf\xbd\xef\xbf\xbd"},	      /* not UTF-8: U+FFFD a byte */
	    {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a surrogate */
	    {"", ""},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct prom_writer w;
		struct prom_label l = {"route", cases[i].in};
		char want[256], *s;

		prom_writer__init(&w, 4096);
		assert_int_equal(prom__family(&w, "m", PROM_GAUGE, NULL), 0);
		assert_int_equal(prom__sample_u64(&w, &l, 1, 1), 0);
		s = text_of(&w);
		snprintf(want, sizeof(want), "# HELP m \n# TYPE m gauge\nm{route=\"%s\"} 1\n",
			 cases[i].out);
		assert_string_equal(s, want);
		free(s);
		prom_writer__free(&w);
	}
}

static void test_help_is_escaped_but_keeps_quotes(void **state)
{
	struct prom_writer w;
	char *s;

	(void)state;
	prom_writer__init(&w, 4096);
	assert_int_equal(prom__family(&w, "g", PROM_GAUGE, "a \"q\" \\ b\nc"), 0);
	s = text_of(&w);
	assert_string_equal(s, "# HELP g a \"q\" \\\\ b\\nc\n# TYPE g gauge\n");
	free(s);
	prom_writer__free(&w);
}

static void test_names_are_sanitised(void **state)
{
	char out[32];
	struct prom_writer w;
	struct prom_label l[] = {{"http.route", "/"}, {"9bad", "x"}, {"ok:no", "y"}};
	char *s;

	(void)state;
	assert_int_equal(
	    prom_sanitize_name(out, sizeof(out), "http.server.request.duration", false), 28);
	assert_string_equal(out, "http_server_request_duration");
	prom_sanitize_name(out, sizeof(out), "2xx", false);
	assert_string_equal(out, "_2xx");
	prom_sanitize_name(out, sizeof(out), "", false);
	assert_string_equal(out, "_");
	prom_sanitize_name(out, sizeof(out), "a:b-c", false);
	assert_string_equal(out, "a:b_c");
	prom_sanitize_name(out, sizeof(out), "a:b", true);
	assert_string_equal(out, "a_b");
	prom_sanitize_name(out, 5, "abcdefgh", false);
	assert_string_equal(out, "abcd");

	prom_writer__init(&w, 4096);
	assert_int_equal(prom__family(&w, "svc.calls", PROM_COUNTER, NULL), 0);
	assert_int_equal(prom__sample_u64(&w, l, 3, 7), 0);
	s = text_of(&w);
	assert_string_equal(s, "# HELP svc_calls_total \n# TYPE svc_calls_total counter\n"
			       "svc_calls_total{http_route=\"/\",_9bad=\"x\",ok_no=\"y\"} 7\n");
	free(s);
	prom_writer__free(&w);
}

static void test_histogram_is_cumulative(void **state)
{
	const double bounds[] = {0.005, 0.1, 2.5};
	const uint64_t counts[] = {1, 0, 3, 2}; /* per bucket; 2 above 2.5 */
	struct prom_label l = {"method", "GET"};
	struct prom_writer w;
	char *s;

	(void)state;
	prom_writer__init(&w, 4096);
	assert_int_equal(prom__family(&w, "http_server_request_duration_seconds", PROM_HISTOGRAM,
				      "Duration of HTTP server requests."),
			 0);
	assert_int_equal(prom__histogram(&w, &l, 1, bounds, 3, counts, 12.5), 0);
	/* a sample of the wrong kind is refused */
	assert_int_equal(prom__sample_u64(&w, NULL, 0, 1), -EINVAL);
	s = text_of(&w);
	assert_string_equal(
	    s, "# HELP http_server_request_duration_seconds Duration of HTTP server requests.\n"
	       "# TYPE http_server_request_duration_seconds histogram\n"
	       "http_server_request_duration_seconds_bucket{method=\"GET\",le=\"0.005\"} 1\n"
	       "http_server_request_duration_seconds_bucket{method=\"GET\",le=\"0.1\"} 1\n"
	       "http_server_request_duration_seconds_bucket{method=\"GET\",le=\"2.5\"} 4\n"
	       "http_server_request_duration_seconds_bucket{method=\"GET\",le=\"+Inf\"} 6\n"
	       "http_server_request_duration_seconds_sum{method=\"GET\"} 12.5\n"
	       "http_server_request_duration_seconds_count{method=\"GET\"} 6\n");
	free(s);
	prom_writer__free(&w);
}

static void test_histogram_without_labels_or_bounds(void **state)
{
	const uint64_t counts[] = {4};
	struct prom_writer w;
	char *s;

	(void)state;
	prom_writer__init(&w, 4096);
	assert_int_equal(prom__family(&w, "h", PROM_HISTOGRAM, NULL), 0);
	assert_int_equal(prom__histogram(&w, NULL, 0, NULL, 0, counts, 0), 0);
	s = text_of(&w);
	assert_string_equal(s, "# HELP h \n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 4\n"
			       "h_sum 0\nh_count 4\n");
	free(s);
	prom_writer__free(&w);
}

static void test_doubles(void **state)
{
	char out[32];

	(void)state;
	prom_format_double(out, INFINITY);
	assert_string_equal(out, "+Inf");
	prom_format_double(out, -INFINITY);
	assert_string_equal(out, "-Inf");
	prom_format_double(out, NAN);
	assert_string_equal(out, "NaN");
	prom_format_double(out, 0.005);
	assert_string_equal(out, "0.005");
	prom_format_double(out, 1e-9);
	assert_string_equal(out, "1e-09");
	prom_format_double(out, 0.1 + 0.2); /* needs 17 digits to read back */
	assert_true(strtod(out, NULL) == 0.1 + 0.2);
}

/* Over the limit, the family being written disappears whole, and nothing follows it. */
static void test_limit_cuts_whole_families(void **state)
{
	const double bounds[] = {1, 2, 3, 4, 5, 6, 7, 8};
	const uint64_t counts[9] = {0};
	const char *first = "# HELP a \n# TYPE a gauge\na 1\n";
	struct prom_writer w;
	char *s;

	(void)state;
	prom_writer__init(&w, 120);
	assert_int_equal(prom__family(&w, "a", PROM_GAUGE, NULL), 0);
	assert_int_equal(prom__sample_u64(&w, NULL, 0, 1), 0);
	assert_int_equal(prom__family(&w, "h", PROM_HISTOGRAM, NULL), 0);
	assert_int_equal(prom__histogram(&w, NULL, 0, bounds, 8, counts, 0), -ENOSPC);
	assert_true(w.truncated);
	assert_int_equal(prom__family(&w, "b", PROM_GAUGE, NULL), -ENOSPC);
	assert_int_equal(prom__sample_u64(&w, NULL, 0, 1), -ENOSPC);
	assert_int_equal(w.len, strlen(first));
	s = text_of(&w);
	assert_string_equal(s, first);
	free(s);
	assert_false(w.truncated); /* take() starts afresh */
	prom_writer__free(&w);
}

/* reset() keeps the buffer: a renderer reuses it every second. */
static void test_reset_reuses(void **state)
{
	struct prom_writer w;
	char *buf;

	(void)state;
	prom_writer__init(&w, 4096);
	prom__family(&w, "a", PROM_GAUGE, NULL);
	buf = w.buf;
	prom_writer__reset(&w);
	assert_int_equal(w.len, 0);
	prom__family(&w, "a", PROM_GAUGE, NULL);
	assert_ptr_equal(w.buf, buf);
	assert_int_equal(prom__sample_u64(&w, NULL, 0, 3), 0);
	prom_writer__free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counter_gets_total_and_help),
	    cmocka_unit_test(test_label_values_are_escaped),
	    cmocka_unit_test(test_help_is_escaped_but_keeps_quotes),
	    cmocka_unit_test(test_names_are_sanitised),
	    cmocka_unit_test(test_histogram_is_cumulative),
	    cmocka_unit_test(test_histogram_without_labels_or_bounds),
	    cmocka_unit_test(test_doubles),
	    cmocka_unit_test(test_limit_cuts_whole_families),
	    cmocka_unit_test(test_reset_reuses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
