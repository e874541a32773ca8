// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for --metrics-listen parsing and the agent's own metrics page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "httpd.h"
#include "prom.h"
#include "selfmetrics.h"
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void expect_addr(const char *in, const char *want)
{
	struct sockaddr_storage a;
	socklen_t len;
	char out[HTTPD_ADDR_LEN];

	assert_int_equal(httpd_parse_listen(in, &a, &len), 0);
	httpd_format_addr(&a, out);
	assert_string_equal(out, want);
}

static void test_listen_forms(void **state)
{
	(void)state;
	expect_addr("9464", "127.0.0.1:9464"); /* a bare port binds loopback */
	expect_addr(":9464", "127.0.0.1:9464");
	expect_addr("0.0.0.0:80", "0.0.0.0:80");
	expect_addr("10.1.2.3:0", "10.1.2.3:0");
	expect_addr("[::]:9464", "[::]:9464");
	expect_addr("[::1]:1", "[::1]:1");
}

static void test_listen_refused(void **state)
{
	const char *bad[] = {
	    "",		":",	  "65536",   "-1",	    "localhost:80", "1.2.3:80",
	    "::1:80",	"[::1]",  "[::1]80", "[nope]:80",   "9464 ",	    "0x10",
	    "1.2.3.4:", "123456", "[::1]:",  "1.2.3.4:80:1"};
	struct sockaddr_storage a;
	socklen_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(httpd_parse_listen(bad[i], &a, &len), -22);
}

/* Every family of the page has a valid name, counters end in _total, losses are one family. */
static void test_page_names(void **state)
{
	struct agent_stats st = {0};
	uint64_t bpf[HT_STAT__COUNT] = {0}, ring_used[2] = {5, 0};
	struct selfmetrics_input in = {.version = "1",
				       .capture = "tp_btf",
				       .stats = &st,
				       .bpf = bpf,
				       .ring_used = ring_used,
				       .nrings = 2,
				       .ring_bytes = 4096};
	struct prom_writer w;
	size_t len;
	char *text, *line, *save = NULL;
	int drops_families = 0;

	(void)state;
	st.drop_parse_error = 7;
	st.budget_peak_bytes = 100;
	prom_writer__init(&w, 1 << 20);
	assert_int_equal(selfmetrics_render(&w, &in), 0);
	text = prom_writer__take(&w, &len);
	text = realloc(text, len + 1);
	text[len] = '\0';
	assert_non_null(strstr(text, "hoptrace_drops_total{reason=\"parse_error\"} 7\n"));
	assert_non_null(strstr(text, "hoptrace_drops_total{reason=\"budget\"} 0\n"));
	assert_non_null(strstr(text, "hoptrace_drops_total{reason=\"bpf_ringbuf_full\"} 0\n"));
	assert_non_null(strstr(text, "# TYPE hoptrace_budget_peak_bytes gauge\n"));
	assert_non_null(strstr(text, "hoptrace_captured_bytes_total 0\n"));
	assert_non_null(strstr(text, "hoptrace_ring_used_bytes{ring=\"0\"} 5\n"));
	assert_null(strstr(text, "hoptrace_drop_parse_error"));
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[256];

		if (strncmp(line, "# TYPE ", 7) != 0)
			continue;
		assert_int_equal(sscanf(line + 7, "%255s", name), 1);
		drops_families += strcmp(name, "hoptrace_drops_total") == 0;
		if (strstr(line, " counter"))
			assert_non_null(strstr(name, "_total"));
		for (char *p = name; *p; p++)
			assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
				    *p == '_');
	}
	assert_int_equal(drops_families, 1);
	free(text);
	prom_writer__free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_listen_forms),
	    cmocka_unit_test(test_listen_refused),
	    cmocka_unit_test(test_page_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
