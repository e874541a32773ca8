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

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

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

#define BIG_ANSWER (32u << 20)

/* An application whose every answer is BIG_ANSWER bytes, malloc'd. */
static void big_app(void *ctx, const struct httpd_request *rq, struct httpd_reply *r)
{
	char *body = malloc(BIG_ANSWER);

	(void)ctx;
	(void)rq;
	if (!body)
		return;
	memset(body, 'x', BIG_ANSWER);
	*r = (struct httpd_reply){.status = 200,
				  .content_type = "text/plain",
				  .body = body,
				  .len = BIG_ANSWER,
				  .owned = true};
}

/* A connection that asked for / and read the status line of the answer, nothing more. */
static int ask(int port, char *status, size_t cap)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct timeval tv = {.tv_sec = 5};
	const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ssize_t n;

	assert_true(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	n = read(fd, status, cap - 1);
	assert_true(n >= 12);
	status[n] = '\0';
	return fd;
}

/* Clients that ask for large answers and do not read them hold at most the reply budget
 * between them: past it, 503; once they go, answers are given again. */
static void test_reply_budget(void **state)
{
	struct sockaddr_storage addr;
	struct httpd_app app = {.fn = big_app};
	struct httpd *h = NULL;
	socklen_t len;
	char status[64];
	int port, slow, fd;
	bool again = false;

	(void)state;
	assert_int_equal(httpd_parse_listen("127.0.0.1:0", &addr, &len), 0);
	assert_int_equal(httpd__start_for(&h, &addr, len, "--ui-listen", &app), 0);
	httpd__set_reply_budget(h, BIG_ANSWER + BIG_ANSWER / 2);
	port = atoi(strrchr(httpd__address(h), ':') + 1);
	slow = ask(port, status, sizeof(status));
	assert_memory_equal(status, "HTTP/1.1 200", 12);
	fd = ask(port, status, sizeof(status));
	assert_memory_equal(status, "HTTP/1.1 503", 12);
	close(fd);
	close(slow);
	for (int i = 0; i < 50 && !again; i++) {
		usleep(100 * 1000);
		fd = ask(port, status, sizeof(status));
		again = !memcmp(status, "HTTP/1.1 200", 12);
		close(fd);
	}
	assert_true(again);
	httpd__stop(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_listen_forms),
	    cmocka_unit_test(test_listen_refused),
	    cmocka_unit_test(test_page_names),
	    cmocka_unit_test(test_reply_budget),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
