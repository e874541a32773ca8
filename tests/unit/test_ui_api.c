// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for the UI's query API (ui_api.h) on the real endpoint (httpd.h, libmicrohttpd)
 * over an in-memory store: every parameter a client sends is checked (a 400 with Jaeger's
 * {"errors": [...]}, never a guess), the limit is bounded, a service name holding '/' is
 * found, markup in data stays escaped, and only loopback names are answered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpd.h"
#include "json_read.h"
#include "store.h"
#include "ui_api.h"

struct fixture {
	struct store *st;
	struct ui_api api;
	struct httpd *h;
	char base[HTTPD_ADDR_LEN + 8];
};

struct reply {
	long status;
	char *body;
	size_t len;
	char ctype[128];
};

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
	struct reply *r = ctx;
	char *b = realloc(r->body, r->len + size * n + 1);

	assert_non_null(b);
	memcpy(b + r->len, p, size * n);
	r->len += size * n;
	b[r->len] = '\0';
	r->body = b;
	return size * n;
}

/* GET base+path (with the Host header host, when given). */
static struct reply get(const struct fixture *f, const char *path, const char *host)
{
	struct reply r = {0};
	struct curl_slist *hdr = NULL;
	char url[1024], hosthdr[256];
	char *ct = NULL;
	CURL *c = curl_easy_init();

	assert_non_null(c);
	snprintf(url, sizeof(url), "%s%s", f->base, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	if (host) {
		snprintf(hosthdr, sizeof(hosthdr), "Host: %s", host);
		hdr = curl_slist_append(NULL, hosthdr);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	}
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
	snprintf(r.ctype, sizeof(r.ctype), "%s", ct ? ct : "");
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	if (!r.body)
		r.body = calloc(1, 1);
	return r;
}

static void span_line(char *out, size_t cap, const char *trace, const char *span,
		      const char *parent, const char *name, const char *service, uint64_t start,
		      uint64_t dur, const char *status, const char *attrs)
{
	snprintf(
	    out, cap,
	    "{\"trace_id\":\"%s\",\"span_id\":\"%s\",\"parent_span_id\":\"%s\",\"name\":\"%s\","
	    "\"kind\":\"%s\",\"start_unix_ns\":%llu,\"end_unix_ns\":%llu,\"duration_ns\":%llu,"
	    "\"status\":\"%s\",\"status_message\":\"\",\"service.name\":\"%s\",\"pid\":7,"
	    "\"tid\":7,\"trace_flags\":1,\"tracestate\":\"\",\"attributes\":{%s},\"links\":[],"
	    "\"resource\":{}}",
	    trace, span, parent, name, *parent ? "CLIENT" : "SERVER", (unsigned long long)start,
	    (unsigned long long)(start + dur), (unsigned long long)dur, status, service, attrs);
}

#define NTRACES 30

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct sockaddr_storage addr;
	socklen_t alen;
	char err[256], buf[NTRACES * 2][1024], trace[33];
	const char *lines[NTRACES * 2];
	size_t lens[NTRACES * 2];
	struct timespec ts;
	uint64_t now;

	assert_non_null(f);
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ULL - 60000000000ULL;
	f->st = store_open(":memory:", STORE_READ_WRITE, err, sizeof(err));
	assert_non_null(f->st);
	for (int i = 0; i < NTRACES; i++) {
		snprintf(trace, sizeof(trace), "%032x", i + 1);
		span_line(buf[2 * i], sizeof(buf[0]), trace, "00000000000000a1", "",
			  i == 0 ? "GET /\\u003cscript\\u003e" : "GET /x", "web/front",
			  now + (uint64_t)i * 1000, 1000000 * (uint64_t)(i + 1), "UNSET",
			  "\"http.response.status_code\":200");
		span_line(
		    buf[2 * i + 1], sizeof(buf[0]), trace, "00000000000000b2", "00000000000000a1",
		    "GET /y", "web/front", now + (uint64_t)i * 1000 + 10, 500,
		    i % 2 ? "ERROR" : "UNSET",
		    i % 2 ? "\"http.response.status_code\":500,\"hoptrace.callee.service\":"
			    "\"db\",\"hoptrace.propagation\":\"dropped\""
			  : "\"hoptrace.callee.service\":\"db\",\"hoptrace.propagation\":\"ok\"");
	}
	for (int i = 0; i < NTRACES * 2; i++) {
		lines[i] = buf[i];
		lens[i] = strlen(buf[i]);
	}
	assert_int_equal(store_add_lines(f->st, lines, lens, NTRACES * 2, NULL), NTRACES * 2);
	assert_int_equal(httpd_parse_listen("127.0.0.1:0", &addr, &alen), 0);
	assert_int_equal(ui_api_init(&f->api, NULL, f->st, &addr), 0);
	assert_int_equal(httpd__start_for(&f->h, &addr, alen, "test",
					  &(struct httpd_app){ui_api_handle, &f->api}),
			 0);
	snprintf(f->base, sizeof(f->base), "http://%s", httpd__address(f->h));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	httpd__stop(f->h);
	ui_api_free(&f->api);
	store_close(f->st);
	free(f);
	return 0;
}

/* A 400 with Jaeger's structured error. */
static void expect_bad(const struct fixture *f, const char *path, const char *why)
{
	struct reply r = get(f, path, NULL);

	if (r.status != 400 || !strstr(r.body, "\"errors\":[{\"code\":400,\"msg\":") ||
	    !strstr(r.body, why))
		fail_msg("%s: %ld %s (wanted 400 with %s)", path, r.status, r.body, why);
	assert_string_equal(r.ctype, "application/json");
	free(r.body);
}

static void test_bad_parameters(void **state)
{
	const struct fixture *f = *state;

	expect_bad(f, "/api/traces?minDuration=soon", "minDuration");
	expect_bad(f, "/api/traces?maxDuration=10", "maxDuration");
	expect_bad(f, "/api/traces?minDuration=2s&maxDuration=1s", "shorter");
	expect_bad(f, "/api/traces?limit=-1", "limit");
	expect_bad(f, "/api/traces?limit=99999999999999999999999", "limit");
	expect_bad(f, "/api/traces?start=abc", "start");
	expect_bad(f, "/api/traces?end=18446744073709551615", "end");
	expect_bad(f, "/api/traces?lookback=forever", "lookback");
	expect_bad(f, "/api/traces?traceID=xyz", "traceID");
	expect_bad(f, "/api/traces?tags=%5B1%5D", "tags");
	expect_bad(f, "/api/traces?tags=%7B%22a%22%3A1%7D", "strings");
	expect_bad(f, "/api/traces?tags=%7B%22error%22%3A%22maybe%22%7D", "error");
	expect_bad(
	    f,
	    "/api/traces?tags=%7B%22a%22%3A%221%22%2C%22b%22%3A%221%22%2C%22c%22%3A%221%22%2C"
	    "%22d%22%3A%221%22%2C%22e%22%3A%221%22%2C%22f%22%3A%221%22%2C%22g%22%3A%221%22%2C"
	    "%22h%22%3A%221%22%2C%22i%22%3A%221%22%7D",
	    "too many");
	expect_bad(f,
		   "/api/traces/"
		   "0123456789abcdef0123456789abcdef0",
		   "trace id");
	expect_bad(f, "/api/traces/zz", "trace id");
	expect_bad(f, "/api/operations", "service");
	expect_bad(f, "/api/operations?service=db&spanKind=weird", "spanKind");
	expect_bad(f, "/api/dependencies?endTs=x", "endTs");
	expect_bad(f, "/api/dependencies?lookback=-5", "lookback");
}

static void test_limit_and_filters(void **state)
{
	const struct fixture *f = *state;
	struct json_doc d;
	struct reply r;
	const struct json_value *data;
	int64_t v;

	json_doc__init(&d);
	/* the default limit is 20; 10^9 is bounded to UI_API_MAX_LIMIT, says so, finds all */
	r = get(f, "/api/traces?lookback=1h", NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_doc__parse(&d, r.body, r.len), 0);
	assert_int_equal(json_doc__member(&d, json_doc__root(&d), "data")->count, 20);
	free(r.body);
	r = get(f, "/api/traces?lookback=1h&limit=1000000000", NULL);
	assert_int_equal(json_doc__parse(&d, r.body, r.len), 0);
	assert_int_equal(json_doc__member(&d, json_doc__root(&d), "data")->count, NTRACES);
	assert_true(json_value_int(json_doc__member(&d, json_doc__root(&d), "limit"), &v));
	assert_int_equal(v, UI_API_MAX_LIMIT);
	free(r.body);
	/* error=true: the traces with a failed span, the odd ones */
	r = get(f, "/api/traces?lookback=1h&limit=100&tags=%7B%22error%22%3A%22true%22%7D", NULL);
	assert_int_equal(json_doc__parse(&d, r.body, r.len), 0);
	data = json_doc__member(&d, json_doc__root(&d), "data");
	assert_int_equal(data->count, NTRACES / 2);
	free(r.body);
	/* minDuration on the root: traces 25..30 last 25 ms or more */
	r = get(f, "/api/traces?lookback=1h&limit=100&minDuration=25ms", NULL);
	assert_int_equal(json_doc__parse(&d, r.body, r.len), 0);
	assert_int_equal(json_doc__member(&d, json_doc__root(&d), "data")->count, 6);
	free(r.body);
	/* Jaeger's short trace ids (no leading zeros) */
	r = get(f, "/api/traces/1e", NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"traceID\":\"0000000000000000000000000000001e\""));
	free(r.body);
	r = get(f, "/api/traces/ff", NULL);
	assert_int_equal(r.status, 404);
	assert_non_null(strstr(r.body, "trace not found"));
	free(r.body);
	json_doc__free(&d);
}

static void test_names_and_markup(void **state)
{
	const struct fixture *f = *state;
	struct reply r;

	/* a service name holding '/', sent as %2F */
	r = get(f, "/api/services/web%2Ffront/operations", NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(
	    strstr(r.body, "\"data\":[\"GET /\\u003cscript\\u003e\",\"GET /x\",\"GET /y\"]"));
	assert_null(strchr(r.body, '<'));
	free(r.body);
	r = get(f, "/api/services", NULL);
	assert_string_equal(r.body, "{\"data\":[\"web/front\"],\"total\":1,\"limit\":0,"
				    "\"offset\":0,\"errors\":null}");
	free(r.body);
	r = get(f, "/api/operations?service=web%2Ffront&spanKind=client", NULL);
	assert_string_equal(r.body, "{\"data\":[{\"name\":\"GET /y\",\"spanKind\":\"client\"}],"
				    "\"total\":1,\"limit\":0,\"offset\":0,\"errors\":null}");
	free(r.body);
	r = get(f, "/api/hoptrace/dependencies", NULL);
	assert_non_null(strstr(r.body,
			       "{\"parent\":\"web/front\",\"child\":\"db\",\"callCount\":30,"
			       "\"errorCount\":15,\"propagation\":{\"ok\":15,\"forwarded\":0,"
			       "\"restarted\":0,\"dropped\":15,\"invalid\":0}}"));
	free(r.body);
	r = get(f, "/api/nothing", NULL);
	assert_int_equal(r.status, 404);
	free(r.body);
	r = get(f, "/nothing.html", NULL);
	assert_int_equal(r.status, 404);
	free(r.body);
	r = get(f, "/", NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.ctype, "text/html; charset=utf-8");
	free(r.body);
}

static void test_host_names(void **state)
{
	const struct fixture *f = *state;
	static const char *const ok[] = {"localhost", "LOCALHOST:16686", "127.0.0.1:1", "127.9.9.9",
					 "[::1]:80"};
	static const char *const refused[] = {"evil.example", "evil.example:16686",
					      "10.0.0.1",     "localhost.evil.example",
					      "[::2]:80",     "127.0.0.1.evil"};
	struct reply r;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		r = get(f, "/api/services", ok[i]);
		if (r.status != 200)
			fail_msg("Host %s: %ld", ok[i], r.status);
		free(r.body);
	}
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		r = get(f, "/api/services", refused[i]);
		if (r.status != 403)
			fail_msg("Host %s: %ld", refused[i], r.status);
		free(r.body);
	}
}

/* Bound to every address, the endpoint is reached over loopback too: there a page's DNS
 * rebinding (its own name resolved to 127.0.0.1) is refused as on a loopback address,
 * while a loopback name is answered. */
static void test_host_names_wildcard(void **state)
{
	const struct fixture *f = *state;
	struct fixture any = {.st = f->st};
	struct sockaddr_storage addr;
	socklen_t alen;
	struct reply r;

	assert_int_equal(httpd_parse_listen("0.0.0.0:0", &addr, &alen), 0);
	assert_int_equal(ui_api_init(&any.api, NULL, f->st, &addr), 0);
	assert_int_equal(httpd__start_for(&any.h, &addr, alen, "test",
					  &(struct httpd_app){ui_api_handle, &any.api}),
			 0);
	snprintf(any.base, sizeof(any.base), "http://127.0.0.1:%s",
		 strrchr(httpd__address(any.h), ':') + 1);
	r = get(&any, "/api/services", "evil.example:16686");
	assert_int_equal(r.status, 403);
	free(r.body);
	r = get(&any, "/api/services", "localhost:16686");
	assert_int_equal(r.status, 200);
	free(r.body);
	httpd__stop(any.h);
	ui_api_free(&any.api);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_parameters),	cmocka_unit_test(test_limit_and_filters),
	    cmocka_unit_test(test_names_and_markup),	cmocka_unit_test(test_host_names),
	    cmocka_unit_test(test_host_names_wildcard),
	};
	int rc;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = cmocka_run_group_tests(tests, setup, teardown);
	curl_global_cleanup();
	return rc;
}
