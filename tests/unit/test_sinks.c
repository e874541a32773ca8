// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for the JSON and waterfall sinks, output captured with open_memstream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "resource.h"
#include "sink.h"
#include "span.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#define MS 1000000ull
#define T0 1700000000000000000ull /* unix ns of the test traces' first span */

/* ---- helpers ------------------------------------------------------------------------- */

struct capture {
	FILE *f;
	char *buf;
	size_t len;
};

static void capture_open(struct capture *c)
{
	c->buf = NULL;
	c->len = 0;
	c->f = open_memstream(&c->buf, &c->len);
	assert_non_null(c->f);
}

/* The text written so far; sinks flush, so no fflush is needed to see it. */
static const char *capture_text(struct capture *c)
{
	/* what a reader of the stream sees: sinks flush on their tick, not per span */
	fflush(c->f);
	return c->buf ? c->buf : "";
}

static void capture_close(struct capture *c)
{
	fclose(c->f);
	free(c->buf);
}

static struct resource *make_resource(const char *service)
{
	struct resource *r = resource_new(42, 1);

	assert_non_null(r);
	r->service_name = strdup(service);
	r->exe_name = strdup(service);
	return r;
}

static void fill_id(uint8_t *id, size_t n, unsigned value)
{
	memset(id, 0, n);
	for (size_t i = 0; i < 4 && i < n; i++)
		id[n - 1 - i] = (uint8_t)(value >> (8 * i));
}

/*
 * A span of trace trace_no, with span id span_no and parent parent_no (0: root), starting
 * start_ms after T0. The resource reference is the span's own.
 */
static struct span *make_span(unsigned trace_no, unsigned span_no, unsigned parent_no,
			      uint64_t start_ms, uint64_t dur_ms, const char *name,
			      struct resource *r)
{
	struct span *s = span_new();

	assert_non_null(s);
	fill_id(s->trace_id, sizeof(s->trace_id), trace_no);
	fill_id(s->span_id, sizeof(s->span_id), span_no);
	if (parent_no)
		fill_id(s->parent_span_id, sizeof(s->parent_span_id), parent_no);
	s->kind = parent_no ? SPAN_KIND_CLIENT : SPAN_KIND_SERVER;
	s->status = SPAN_STATUS_UNSET;
	s->pid = 42;
	s->tid = 43;
	s->trace_flags = 1;
	s->start_unix_ns = T0 + start_ms * MS;
	s->end_unix_ns = s->start_unix_ns + dur_ms * MS;
	snprintf(s->name, sizeof(s->name), "%s", name);
	if (r)
		s->resource = resource_get(r);
	span_set_int(s, "http.response.status_code", 200);
	return s;
}

static uint64_t stat_value(struct sink *sk, const char *name)
{
	struct capture c;
	const char *line;
	uint64_t v = UINT64_MAX;

	capture_open(&c);
	sk->print_stats(sk, c.f);
	fflush(c.f);
	line = strstr(capture_text(&c), name);
	assert_non_null(line);
	assert_int_equal(sscanf(line + strlen(name), " %" SCNu64, &v), 1);
	capture_close(&c);
	return v;
}

static unsigned count_substr(const char *hay, const char *needle)
{
	unsigned n = 0;

	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* Line number (0-based) of the first line containing needle, -1 if none. */
static int line_of(const char *text, const char *needle)
{
	const char *hit = strstr(text, needle);
	int line = 0;

	if (!hit)
		return -1;
	for (const char *p = text; p < hit; p++)
		if (*p == '\n')
			line++;
	return line;
}

/* Leading spaces of the line containing needle. */
static int indent_of(const char *text, const char *needle)
{
	const char *hit = strstr(text, needle);
	const char *bol;
	int n = 0;

	assert_non_null(hit);
	bol = hit;
	while (bol > text && bol[-1] != '\n')
		bol--;
	while (bol[n] == ' ')
		n++;
	return n;
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Waterfall tests compare ASCII output unless they ask for UTF-8. */
static int ascii_locale(void **state)
{
	(void)state;
	setenv("LC_ALL", "C", 1);
	return 0;
}

/* ---- JSON sink ----------------------------------------------------------------------- */

static void test_json_schema(void **state)
{
	struct resource *r = make_resource("checkout");
	struct capture c;
	struct sink *sk;
	struct span *s;
	uint8_t link_trace[16], link_span[8];

	(void)state;
	r->exe_path = strdup("/usr/bin/checkout");
	r->container_id = strdup("abc123");
	r->extra[0].key = strdup("deployment.environment");
	r->extra[0].value = strdup("prod");
	r->extra[1].key = strdup("container.id"); /* detected value wins */
	r->extra[1].value = strdup("spoofed");
	r->nextra = 2;
	s = make_span(0x0a0b0c0d, 0x11, 0x22, 0, 5, "GET /cart", r);
	resource_put(r);
	s->kind = SPAN_KIND_SERVER;
	s->status = SPAN_STATUS_ERROR;
	snprintf(s->status_message, sizeof(s->status_message), "boom");
	snprintf(s->tracestate, sizeof(s->tracestate), "vendor=x");
	span_set_str(s, "http.request.method", "GET", 3);
	span_set_bool(s, "hoptrace.incomplete", true);
	span_set_int(s, "http.response.status_code", 500); /* duplicate key: first wins */
	fill_id(link_trace, sizeof(link_trace), 7);
	fill_id(link_span, sizeof(link_span), 8);
	span_add_link(s, link_trace, link_span, "ambiguous_parent");

	capture_open(&c);
	sk = sink_json_new(c.f);
	assert_non_null(sk);
	sk->emit(sk, s);
	sk->tick(sk, 0); /* output is flushed on the loop's tick */
	assert_string_equal(
	    capture_text(&c),
	    "{\"trace_id\":\"0000000000000000000000000a0b0c0d\",\"span_id\":\"0000000000000011\","
	    "\"parent_span_id\":\"0000000000000022\",\"name\":\"GET /cart\",\"kind\":\"SERVER\","
	    "\"start_unix_ns\":1700000000000000000,\"end_unix_ns\":1700000000005000000,"
	    "\"duration_ns\":5000000,\"status\":\"ERROR\",\"status_message\":\"boom\","
	    "\"service.name\":\"checkout\",\"pid\":42,\"tid\":43,\"trace_flags\":1,"
	    "\"tracestate\":\"vendor=x\",\"attributes\":{\"http.response.status_code\":200,"
	    "\"http.request.method\":\"GET\",\"hoptrace.incomplete\":true},"
	    "\"links\":[{\"trace_id\":\"00000000000000000000000000000007\","
	    "\"span_id\":\"0000000000000008\",\"reason\":\"ambiguous_parent\"}],"
	    "\"resource\":{\"process.executable.name\":\"checkout\","
	    "\"process.executable.path\":\"/usr/bin/checkout\",\"container.id\":\"abc123\","
	    "\"deployment.environment\":\"prod\"}}\n");
	assert_int_equal(stat_value(sk, "json_spans_written"), 1);
	assert_int_equal(stat_value(sk, "json_write_errors"), 0);
	sk->destroy(sk);
	capture_close(&c);
}

/* sink_json_render (the store's lines) writes what the JSON sink writes, without the '\n',
 * into a buffer it grows. */
static void test_json_render_is_the_sink_line(void **state)
{
	struct span *s = make_span(1, 2, 3, 0, 1, "GET /render", NULL);
	struct capture c;
	struct sink *sk;
	char *buf = NULL;
	size_t cap = 0, len;

	(void)state;
	span_set_str(s, "url.path", "/render", 7);
	len = sink_json_render(s, &buf, &cap);
	assert_true(len > 0 && cap >= len && buf[len] == '\n');
	capture_open(&c);
	sk = sink_json_new(c.f);
	sk->emit(sk, s);
	sk->tick(sk, 0);
	assert_int_equal(strlen(capture_text(&c)), len + 1);
	assert_memory_equal(capture_text(&c), buf, len);
	sk->destroy(sk);
	capture_close(&c);
	free(buf);
}

static void test_json_root_without_resource(void **state)
{
	struct capture c;
	struct sink *sk;

	(void)state;
	capture_open(&c);
	sk = sink_json_new(c.f);
	sk->emit(sk, make_span(1, 2, 0, 0, 1, "GET /", NULL));
	sk->tick(sk, 0);
	assert_non_null(strstr(capture_text(&c), "\"parent_span_id\":\"\","));
	assert_non_null(strstr(capture_text(&c), "\"service.name\":\"unknown_service\","));
	assert_non_null(strstr(capture_text(&c), "\"links\":[],\"resource\":{}}\n"));
	sk->destroy(sk);
	capture_close(&c);
}

/* --capture-logs: "events" after "links", escaped like every other string; a span without
 * log lines has no "events" member at all. */
static void test_json_events(void **state)
{
	struct capture c;
	struct sink *sk;
	struct span *s = make_span(1, 2, 0, 0, 1, "GET /", NULL);

	(void)state;
	span_events_add(&s->events, &s->dropped_events, 1700000000000000100ull, SPAN_LOG_STDERR,
			NULL, "say \"hi\"\x1b", 9, false);
	span_events_add(&s->events, &s->dropped_events, 1700000000000000200ull, SPAN_LOG_FILE,
			"/var/log/a.log", "cut", 3, true);
	s->dropped_events = 2;
	capture_open(&c);
	sk = sink_json_new(c.f);
	sk->emit(sk, s);
	sk->emit(sk, make_span(1, 3, 0, 0, 1, "GET /", NULL));
	sk->tick(sk, 0);
	assert_non_null(strstr(
	    capture_text(&c),
	    "\"links\":[],\"events\":[{\"time_unix_ns\":1700000000000000100,\"name\":\"log\","
	    "\"attributes\":{\"log.record.original\":\"say \\\"hi\\\"\\u001b\","
	    "\"log.iostream\":\"stderr\"}},{\"time_unix_ns\":1700000000000000200,\"name\":"
	    "\"log\",\"attributes\":{\"log.record.original\":\"cut\",\"log.file.path\":"
	    "\"/var/log/a.log\",\"hoptrace.log.truncated\":true}}],\"dropped_events_count\":2,"
	    "\"resource\":{}}\n"));
	/* the second span: no events member */
	assert_non_null(strstr(capture_text(&c), "\"span_id\":\"0000000000000003\""));
	assert_null(
	    strstr(strstr(capture_text(&c), "\"span_id\":\"0000000000000003\""), "\"events\""));
	sk->destroy(sk);
	capture_close(&c);
}

static void test_json_escapes(void **state)
{
	/* quote, backslash, short escapes, C0, DEL, valid UTF-8, C1, then broken UTF-8 */
	static const char hostile[] = "a\"b\\c\n\r\t\b\f\x01\x1b\x7f"
				      "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xc2\x85"
				      "\xff\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82";
	static const char expect[] = "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001b\\u007f"
				     "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\\u0085"
				     "\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\uff"
				     "fd\\ufffd\\ufffd\\ufffd\"";
	struct capture c;
	struct sink *sk;
	struct span *s = make_span(1, 2, 0, 0, 1, "", NULL);

	(void)state;
	memcpy(s->name, hostile, sizeof(hostile));
	/* a NUL inside a header value must not end the string */
	span_set_str(s, "http.request.header.x", "x\0y", 3);
	capture_open(&c);
	sk = sink_json_new(c.f);
	sk->emit(sk, s);
	sk->tick(sk, 0);
	assert_non_null(strstr(capture_text(&c), expect));
	assert_non_null(strstr(capture_text(&c), "\"http.request.header.x\":\"x\\u0000y\""));
	sk->destroy(sk);
	capture_close(&c);
}

static void test_json_integers_and_duplicate_keys(void **state)
{
	char *same_key = strdup("http.response.status_code"); /* equal text, other pointer */
	struct capture c;
	struct sink *sk;
	struct span *s = make_span(1, 2, 0, 0, 1, "GET /", NULL); /* status code 200 */

	(void)state;
	span_set_int(s, same_key, 500);
	span_set_int(s, "a", INT64_MIN);
	span_set_int(s, "b", INT64_MAX);
	span_set_int(s, "c", -1);
	span_set_int(s, "d", 0);
	span_set_bool(s, "e", false);
	span_set_str(s, "a", "second", 6);
	capture_open(&c);
	sk = sink_json_new(c.f);
	sk->emit(sk, s);
	sk->tick(sk, 0);
	assert_non_null(strstr(capture_text(&c),
			       "\"attributes\":{\"http.response.status_code\":200,"
			       "\"a\":-9223372036854775808,\"b\":9223372036854775807,\"c\":-1,"
			       "\"d\":0,\"e\":false},"));
	sk->destroy(sk);
	capture_close(&c);
	free(same_key);
}

/* Lines are handed to stdio in blocks: none is lost or reordered at a block boundary, and
 * what is buffered reaches the stream when the sink is destroyed without a flush. */
static void test_json_blocks_keep_every_line(void **state)
{
	struct capture c;
	struct sink *sk;
	const char *p;
	char want[96];

	(void)state;
	capture_open(&c);
	sk = sink_json_new(c.f);
	for (unsigned i = 1; i <= 1000; i++)
		sk->emit(sk,
			 make_span(1, i, 0, 0, 1, "GET /a-path-long-enough-to-fill-blocks", NULL));
	sk->tick(sk, 0);
	assert_true(c.len > 3 * 64 * 1024);
	p = capture_text(&c);
	for (unsigned i = 1; i <= 1000; i++) {
		snprintf(want, sizeof(want), "{\"trace_id\":\"%032x\",\"span_id\":\"%016x\",", 1,
			 i);
		assert_memory_equal(p, want, strlen(want));
		p = strchr(p, '\n');
		assert_non_null(p);
		p++;
	}
	assert_string_equal(p, "");
	sk->emit(sk, make_span(1, 1001, 0, 0, 1, "GET /last", NULL));
	sk->destroy(sk);
	assert_non_null(strstr(capture_text(&c), "\"name\":\"GET /last\""));
	capture_close(&c);
}

/* xorshift: reproducible garbage */
static uint32_t next_random(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static void random_bytes(uint32_t *seed, char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		buf[i] = (char)next_random(seed);
		if (buf[i] == 0)
			buf[i] = (char)0xc3; /* keep C strings long: more bytes tested */
	}
	buf[n - 1] = '\0';
}

static struct span *make_hostile_span(uint32_t *seed, unsigned i)
{
	struct resource *r = resource_new(1, 1);
	struct span *s = make_span(i, i + 1, i, 0, 1, "", NULL);
	char junk[200];

	r->extra[0].key = malloc(20);
	r->extra[0].value = malloc(40);
	random_bytes(seed, r->extra[0].key, 20);
	random_bytes(seed, r->extra[0].value, 40);
	r->nextra = 1;
	r->service_name = malloc(30);
	random_bytes(seed, r->service_name, 30);
	s->resource = r;
	random_bytes(seed, s->name, sizeof(s->name));
	random_bytes(seed, s->status_message, sizeof(s->status_message));
	random_bytes(seed, s->tracestate, 100);
	random_bytes(seed, junk, sizeof(junk));
	span_set_str(s, "url.path", junk, sizeof(junk));
	span_add_link(s, s->trace_id, s->span_id, "retry");
	return s;
}

/* The real test of "always valid JSON": a strict parser reads every line. */
static void test_json_python_parses_hostile_output(void **state)
{
	static const char check[] =
	    "python3 -c 'import json,sys\n"
	    "n = 0\n"
	    "for l in sys.stdin.buffer:\n"
	    "    o = json.loads(l.decode(\"utf-8\"))\n"
	    "    assert list(o)[0] == \"trace_id\" and list(o)[-1] == \"resource\", list(o)\n"
	    "    assert o[\"duration_ns\"] == o[\"end_unix_ns\"] - o[\"start_unix_ns\"]\n"
	    "    n += 1\n"
	    "sys.exit(0 if n == 200 else 1)'";
	uint32_t seed = 2463534242u;
	struct capture c;
	struct sink *sk;
	FILE *py;
	int status;

	(void)state;
	signal(SIGPIPE, SIG_IGN); /* if python fails early, report it rather than die */
	capture_open(&c);
	sk = sink_json_new(c.f);
	for (unsigned i = 0; i < 200; i++)
		sk->emit(sk, make_hostile_span(&seed, i));
	sk->tick(sk, 0);
	assert_int_equal(count_substr(capture_text(&c), "\n"), 200);
	py = popen(check, "w");
	assert_non_null(py);
	fwrite(c.buf, 1, c.len, py);
	status = pclose(py);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	sk->destroy(sk);
	capture_close(&c);
}

static void test_json_counts_write_errors(void **state)
{
	FILE *full = fopen("/dev/full", "w");
	struct sink *sk;

	(void)state;
	assert_non_null(full);
	sk = sink_json_new(full);
	sk->emit(sk, make_span(1, 2, 0, 0, 1, "GET /", NULL));
	sk->emit(sk, make_span(1, 3, 0, 0, 1, "GET /", NULL));
	sk->tick(sk, 0); /* output is flushed on the loop's tick */
	assert_int_equal(stat_value(sk, "json_write_errors"), 2);
	assert_int_equal(stat_value(sk, "json_spans_written"), 0);
	sk->destroy(sk);
	fclose(full);
}

/* ---- waterfall sink ------------------------------------------------------------------ */

/*
 * frontend GET /checkout [0, 100 ms]
 *   frontend CLIENT GET /cart [10, 60]
 *     cart SERVER GET /cart [12, 52]
 *   frontend CLIENT POST /pay [70, 90]
 * emitted inside out, as they finish.
 */
static void emit_checkout_trace(struct sink *sk, unsigned trace_no)
{
	struct resource *frontend = make_resource("frontend");
	struct resource *cart = make_resource("cart");
	struct span *cart_server = make_span(trace_no, 3, 2, 12, 40, "GET /cart", cart);

	cart_server->kind = SPAN_KIND_SERVER;
	sk->emit(sk, cart_server);
	sk->emit(sk, make_span(trace_no, 2, 1, 10, 50, "GET /cart", frontend));
	sk->emit(sk, make_span(trace_no, 4, 1, 70, 20, "POST /pay", frontend));
	sk->emit(sk, make_span(trace_no, 1, 0, 0, 100, "GET /checkout", frontend));
	resource_put(frontend);
	resource_put(cart);
}

static void test_waterfall_tree_order_and_indent(void **state)
{
	struct capture c;
	struct sink *sk;
	const char *out;

	(void)state;
	capture_open(&c);
	sk = sink_waterfall_new(c.f, 1000, 0);
	emit_checkout_trace(sk, 0xabc);
	assert_string_equal(capture_text(&c), ""); /* held until quiet or flush */
	sk->flush(sk, 100);
	out = capture_text(&c);
	assert_int_equal(line_of(out, "trace 00000000000000000000000000000abc  4 spans  100.00 ms  "
				      "frontend\n"),
			 0);
	assert_int_equal(line_of(out, "frontend SERVER GET /checkout"), 1);
	assert_int_equal(line_of(out, "frontend CLIENT GET /cart"), 2);
	assert_int_equal(line_of(out, "cart SERVER GET /cart"), 3);
	assert_int_equal(line_of(out, "frontend CLIENT POST /pay"), 4);
	assert_int_equal(indent_of(out, "GET /checkout"), 2);
	assert_int_equal(indent_of(out, "frontend CLIENT GET /cart"), 4);
	assert_int_equal(indent_of(out, "cart SERVER"), 6);
	assert_int_equal(indent_of(out, "POST /pay"), 4);
	/* bars: 40 columns over 100 ms, so 2.5 ms a column */
	assert_non_null(strstr(out, "200    100.00 ms ========================================\n"));
	assert_non_null(strstr(out, "200     50.00 ms ----====================----------------\n"));
	assert_non_null(strstr(out, "200     20.00 ms ----------------------------========----\n"));
	assert_null(strstr(out, "not seen"));
	assert_int_equal(stat_value(sk, "waterfall_traces_printed"), 1);
	assert_int_equal(stat_value(sk, "waterfall_spans_printed"), 4);
	sk->destroy(sk);
	capture_close(&c);
}

/* --capture-logs: a span's log lines under it, escaped, one terminal line each. */
static void test_waterfall_log_lines(void **state)
{
	struct capture c;
	struct sink *sk;
	struct span *s = make_span(5, 6, 0, 0, 10, "GET /a", NULL);
	const char *out;

	(void)state;
	setenv("LC_ALL", "C", 1);
	span_events_add(&s->events, &s->dropped_events, T0 + 2500000, SPAN_LOG_STDERR, NULL,
			"boom\x1b[31m", 9, false);
	span_events_add(&s->events, &s->dropped_events, T0 + 3000000, SPAN_LOG_FILE,
			"/var/log/a.log", "ok", 2, false);
	s->dropped_events = 4;
	capture_open(&c);
	sk = sink_waterfall_new(c.f, 1000, 0);
	sk->emit(sk, s);
	sk->flush(sk, 100);
	out = capture_text(&c);
	assert_int_equal(line_of(out, "unknown_service SERVER GET /a"), 1);
	assert_int_equal(line_of(out, "| +2.50 ms stderr: boom\\x1b[31m\n"), 2);
	assert_int_equal(line_of(out, "| +3.00 ms /var/log/a.log: ok\n"), 3);
	assert_int_equal(line_of(out, "| (4 more log lines dropped)\n"), 4);
	assert_int_equal(indent_of(out, "| +2.50"), 4);
	assert_null(strchr(out, '\x1b'));
	sk->destroy(sk);
	capture_close(&c);
}

static void test_waterfall_orphans_at_top_level(void **state)
{
	struct resource *r = make_resource("api");
	struct capture c;
	struct sink *sk;
	const char *out;

	(void)state;
	capture_open(&c);
	sk = sink_waterfall_new(c.f, 1000, 0);
	/* parent 0xee never arrives; 0x30's child still nests under it */
	sk->emit(sk, make_span(5, 0x31, 0x30, 20, 5, "GET /child", r));
	sk->emit(sk, make_span(5, 0x30, 0xee, 10, 30, "GET /orphan", r));
	sk->emit(sk, make_span(5, 0x10, 0, 0, 50, "GET /root", r));
	/* two spans naming each other as parent: still printed, once each */
	sk->emit(sk, make_span(5, 0x41, 0x42, 1, 1, "GET /loop-a", r));
	sk->emit(sk, make_span(5, 0x42, 0x41, 2, 1, "GET /loop-b", r));
	resource_put(r);
	sk->flush(sk, 100);
	out = capture_text(&c);
	assert_int_equal(indent_of(out, "GET /root"), 2);
	assert_int_equal(indent_of(out, "GET /orphan"), 2);
	assert_int_equal(indent_of(out, "GET /child"), 4);
	assert_true(line_of(out, "GET /orphan") < line_of(out, "GET /child"));
	assert_int_equal(line_of(out, "GET /orphan"),
			 line_of(out, "^ parent 00000000000000ee not seen"));
	assert_int_equal(count_substr(out, "GET /loop-"), 2);
	assert_int_equal(count_substr(out, "in a cycle"), 1);
	assert_int_equal(stat_value(sk, "waterfall_spans_printed"), 5);
	sk->destroy(sk);
	capture_close(&c);
}

static void test_waterfall_quiet_time(void **state)
{
	const uint64_t quiet = 200 * MS;
	struct capture c;
	struct sink *sk;
	uint64_t a_before, a_after;
	struct timespec pause = {.tv_nsec = 20 * MS};

	(void)state;
	capture_open(&c);
	sk = sink_waterfall_new(c.f, 200, 0);
	a_before = monotonic_ns();
	sk->emit(sk, make_span(0xa, 1, 0, 0, 10, "GET /a", NULL));
	a_after = monotonic_ns();
	nanosleep(&pause, NULL);
	sk->emit(sk, make_span(0xb, 1, 0, 0, 10, "GET /b", NULL));

	sk->tick(sk, a_before); /* not quiet yet, and a clock behind arrival is no underflow */
	sk->tick(sk, a_after + quiet / 2);
	assert_string_equal(capture_text(&c), "");

	sk->tick(sk, a_after + quiet); /* a is quiet, b arrived later */
	assert_non_null(strstr(capture_text(&c), "GET /a"));
	assert_null(strstr(capture_text(&c), "GET /b"));

	sk->tick(sk, monotonic_ns() + quiet);
	assert_non_null(strstr(capture_text(&c), "GET /b"));
	assert_int_equal(stat_value(sk, "waterfall_traces_printed"), 2);
	assert_int_equal(stat_value(sk, "waterfall_traces_early"), 0);
	sk->destroy(sk);
	capture_close(&c);
}

static void test_waterfall_new_span_restarts_quiet_time(void **state)
{
	const uint64_t quiet = 200 * MS;
	struct capture c;
	struct sink *sk;
	uint64_t first_after;
	struct timespec pause = {.tv_nsec = 20 * MS};

	(void)state;
	capture_open(&c);
	sk = sink_waterfall_new(c.f, 200, 0);
	sk->emit(sk, make_span(0xa, 2, 1, 1, 5, "GET /late-child", NULL));
	first_after = monotonic_ns();
	nanosleep(&pause, NULL);
	sk->emit(sk, make_span(0xa, 1, 0, 0, 10, "GET /root", NULL));
	sk->tick(sk, first_after + quiet);
	assert_string_equal(capture_text(&c), "");
	sk->tick(sk, monotonic_ns() + quiet);
	assert_non_null(strstr(capture_text(&c), "2 spans"));
	sk->destroy(sk);
	capture_close(&c);
}

static void test_waterfall_per_trace_limit(void **state)
{
	struct capture c;
	struct sink *sk;

	(void)state;
	capture_open(&c);
	sk = sink_waterfall_new(c.f, 1000, 0);
	for (unsigned i = 1; i <= 511; i++)
		sk->emit(sk, make_span(7, i, 0, i, 1, "GET /many", NULL));
	assert_string_equal(capture_text(&c), "");
	sk->emit(sk, make_span(7, 512, 0, 512, 1, "GET /many", NULL));
	assert_non_null(strstr(capture_text(&c), "512 spans"));
	assert_non_null(strstr(capture_text(&c), "[partial: buffer limit]"));
	sk->emit(sk, make_span(7, 513, 0, 513, 1, "GET /many", NULL));
	sk->flush(sk, 100);
	assert_non_null(strstr(capture_text(&c), "  1 span  "));
	assert_int_equal(stat_value(sk, "waterfall_traces_printed"), 2);
	assert_int_equal(stat_value(sk, "waterfall_traces_early"), 1);
	assert_int_equal(stat_value(sk, "waterfall_spans_printed"), 513);
	sk->destroy(sk);
	capture_close(&c);
}

static void test_waterfall_total_limit_prints_oldest(void **state)
{
	struct capture c;
	struct sink *sk;

	(void)state;
	capture_open(&c);
	sk = sink_waterfall_new(c.f, 60000, 0);
	for (unsigned i = 1; i <= 10000; i++)
		sk->emit(sk, make_span(i, 1, 0, 0, 1, "GET /", NULL));
	assert_string_equal(capture_text(&c), "");
	sk->emit(sk, make_span(10001, 1, 0, 0, 1, "GET /", NULL));
	assert_int_equal(count_substr(capture_text(&c), "trace "), 1);
	assert_non_null(strstr(capture_text(&c), "trace 00000000000000000000000000000001  1 span"));
	assert_int_equal(stat_value(sk, "waterfall_traces_early"), 1);
	/* what is left is not printed by destroy, only freed (LeakSanitizer checks) */
	sk->destroy(sk);
	capture_close(&c);
}

static void test_waterfall_color_and_sanitizing(void **state)
{
	struct capture c;
	struct sink *sk;
	struct span *bad = make_span(9, 1, 0, 0, 3, "GET /\x1b[2Jevil\xc3\xa9", NULL);

	(void)state;
	bad->status = SPAN_STATUS_ERROR;
	capture_open(&c);
	sk = sink_waterfall_new(c.f, 1000, 1);
	sk->emit(sk, bad);
	sk->flush(sk, 100);
	assert_non_null(
	    strstr(capture_text(&c), "\033[31m  unknown_service SERVER GET /\\x1b[2Jevil\\xc3"));
	assert_null(strstr(capture_text(&c), "\033[2J"));
	sk->destroy(sk);
	capture_close(&c);

	capture_open(&c);
	sk = sink_waterfall_new(c.f, 1000, 0);
	sk->emit(sk, make_span(9, 1, 0, 0, 3, "GET /x", NULL));
	sk->flush(sk, 100);
	assert_null(strchr(capture_text(&c), '\033'));
	sk->destroy(sk);
	capture_close(&c);
}

static void test_waterfall_utf8_bar(void **state)
{
	struct capture c;
	struct sink *sk;

	(void)state;
	setenv("LC_ALL", "C.UTF-8", 1);
	capture_open(&c);
	sk = sink_waterfall_new(c.f, 1000, 0);
	sk->emit(sk, make_span(3, 1, 0, 0, 10, "GET /root", NULL));
	sk->emit(sk, make_span(3, 2, 0x99, 0, 1, "GET /orphan", NULL));
	sk->flush(sk, 100);
	assert_non_null(strstr(capture_text(&c), "\u2588\u2588\u2588\u2588\u2500"));
	assert_non_null(strstr(capture_text(&c), "\u21b3 parent 0000000000000099 not seen"));
	sk->destroy(sk);
	capture_close(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_json_schema),
	    cmocka_unit_test(test_json_render_is_the_sink_line),
	    cmocka_unit_test(test_json_root_without_resource),
	    cmocka_unit_test(test_json_escapes),
	    cmocka_unit_test(test_json_events),
	    cmocka_unit_test(test_waterfall_log_lines),
	    cmocka_unit_test(test_json_integers_and_duplicate_keys),
	    cmocka_unit_test(test_json_blocks_keep_every_line),
	    cmocka_unit_test(test_json_python_parses_hostile_output),
	    cmocka_unit_test(test_json_counts_write_errors),
	    cmocka_unit_test_setup(test_waterfall_tree_order_and_indent, ascii_locale),
	    cmocka_unit_test_setup(test_waterfall_orphans_at_top_level, ascii_locale),
	    cmocka_unit_test_setup(test_waterfall_quiet_time, ascii_locale),
	    cmocka_unit_test_setup(test_waterfall_new_span_restarts_quiet_time, ascii_locale),
	    cmocka_unit_test_setup(test_waterfall_per_trace_limit, ascii_locale),
	    cmocka_unit_test_setup(test_waterfall_total_limit_prints_oldest, ascii_locale),
	    cmocka_unit_test_setup(test_waterfall_color_and_sanitizing, ascii_locale),
	    cmocka_unit_test(test_waterfall_utf8_bar),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
