// SPDX-License-Identifier: BSD-2-Clause
/*
 * --capture-logs, the parts without a kernel: what a log line keeps after redaction, how
 * writes are cut and joined into lines, the span's bound on events, and a tracker fed with the
 * records BPF writes (a request, log writes of its thread and of others, the response) putting the
 * lines on the right span.
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

#include "logcap.h"
#include "sink.h"
#include "span.h"
#include "stats.h"
#include "tracker.h"

static const char *redact(const char *in)
{
	static char out[LOG_REDACT_CAP(LOGCAP_LINE_MAX)];

	log_redact(in, strlen(in), out, sizeof(out));
	return out;
}

static void test_redact_urls(void **state)
{
	(void)state;
	assert_string_equal(
	    redact("GET https://alice:s3cret@api.example:8443/v1/x?token=abc#frag ok"),
	    "GET https://api.example:8443/v1/x ok");
	/* an access log's request target: the query goes, the path stays */
	assert_string_equal(redact("127.0.0.1 - - \"GET /login?user=bob&pw=x HTTP/1.1\" 200 -"),
			    "127.0.0.1 - - \"GET /login HTTP/1.1\" 200 -");
	assert_string_equal(redact("see postgres://u:p@db/app and ftp://h/f"),
			    "see postgres://db/app and ftp://h/f");
	/* no URL: untouched, '?' and '@' included */
	assert_string_equal(redact("who? me@example.com said hi"), "who? me@example.com said hi");
}

static void test_redact_credentials(void **state)
{
	(void)state;
	assert_string_equal(redact("login password=hunter2 user=bob"),
			    "login password=*** user=bob");
	assert_string_equal(redact("DB_PASSWORD: hunter2, next"), "DB_PASSWORD: ***, next");
	assert_string_equal(redact("{\"access_token\": \"abc.def\", \"n\": 1}"),
			    "{\"access_token\": \"***\", \"n\": 1}");
	assert_string_equal(redact("client_secret=xyz&api_key=k1;apikey=k2 Api-Key: k3"),
			    "client_secret=***&api_key=***;apikey=*** Api-Key: ***");
	assert_string_equal(redact("sending Authorization: Basic dXNlcjpwYXNz"),
			    "sending Authorization: ***");
	assert_string_equal(redact("hdr Cookie: sid=1; theme=dark"), "hdr Cookie: ***");
	assert_string_equal(redact("got Bearer eyJhbGciOi.x.y from client"),
			    "got Bearer *** from client");
	/* a one-byte secret grows to "***": the output room allows for it */
	assert_string_equal(redact("token=a token=b"), "token=*** token=***");
	/* nothing assigned: nothing masked */
	assert_string_equal(redact("the token expired"), "the token expired");
}

static void test_redact_bounded(void **state)
{
	char in[LOGCAP_LINE_MAX * 2], out[16];
	size_t n;

	(void)state;
	memset(in, 'a', sizeof(in));
	memcpy(in, "token=", 6);
	n = log_redact(in, sizeof(in), out, sizeof(out));
	assert_int_equal(n, strlen(out));
	assert_string_equal(out, "token=***");
	/* a long input is cut to the line bound, never copied past the output */
	n = log_redact(in + 6, sizeof(in) - 6, out, sizeof(out));
	assert_int_equal(n, sizeof(out) - 1);
}

static void test_span_events_bound(void **state)
{
	struct span *s = span_new();
	char line[200];
	unsigned ok = 0;

	(void)state;
	assert_non_null(s);
	memset(&g_stats, 0, sizeof(g_stats));
	memset(line, 'x', sizeof(line));
	for (int i = 0; i < 100; i++)
		ok += span_events_add(&s->events, &s->dropped_events, 1000 + (uint64_t)i,
				      SPAN_LOG_FILE, "/var/log/app.log", line, sizeof(line),
				      false) == 0;
	/* text room: 4096 bytes of path + line, 216 each; the last that fits in part is cut */
	assert_int_equal(ok, SPAN_EVENT_BYTES / (sizeof(line) + 16) + 1);
	assert_true(s->events->ev[ok - 1].truncated);
	assert_false(s->events->ev[ok - 2].truncated);
	assert_int_equal(s->events->n, ok);
	assert_int_equal(s->dropped_events, 100 - ok);
	assert_int_equal(g_stats.span_events_dropped, 100 - ok);
	assert_true(s->events->used <= SPAN_EVENT_BYTES);
	assert_memory_equal(s->events->text + s->events->ev[0].path_off, "/var/log/app.log", 16);
	span_free(s);

	s = span_new();
	assert_non_null(s);
	for (int i = 0; i < 40; i++)
		span_events_add(&s->events, &s->dropped_events, 1, SPAN_LOG_STDOUT, NULL, "a", 1,
				false);
	assert_int_equal(s->events->n, SPAN_MAX_EVENTS);
	assert_int_equal(s->dropped_events, 40 - SPAN_MAX_EVENTS);
	span_free(s);
}

/* ---- a tracker fed with records ---- */

#define MAX_SPANS 8

struct keep_sink {
	struct sink base;
	unsigned n;
	struct span *spans[MAX_SPANS];
};

static void keep_emit(struct sink *sk, struct span *s)
{
	struct keep_sink *ks = (struct keep_sink *)sk;

	if (ks->n < MAX_SPANS)
		ks->spans[ks->n++] = s;
	else
		span_free(s);
}

struct fixture {
	struct keep_sink sink;
	struct logcap_files files;
	struct tracker t;
	uint64_t ts;
	uint64_t pos[2];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct tracker_options opt = {.idle_timeout_ns = 60e9, .request_timeout_ns = 60e9};

	if (!f)
		return -1;
	f->sink.base.name = "keep";
	f->sink.base.emit = keep_emit;
	f->files.n = 1;
	f->files.paths[0] = "/var/log/app.log";
	opt.capture_logs = true;
	opt.log_files = &f->files;
	f->ts = 1000;
	memset(&g_stats, 0, sizeof(g_stats));
	if (tracker__init(&f->t, &f->sink.base, &opt)) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	tracker__shutdown(&f->t);
	for (unsigned i = 0; i < f->sink.n; i++)
		span_free(f->sink.spans[i]);
	free(f);
	return 0;
}

#define SERVER_TID 4242

/* One data record of the server side of connection 7, by thread SERVER_TID. */
static void io(struct fixture *f, uint8_t dir, const char *data)
{
	uint8_t buf[sizeof(struct ht_data_event) + 512];
	struct ht_data_event *ev = (struct ht_data_event *)buf;
	uint32_t len = (uint32_t)strlen(data);

	memset(ev, 0, sizeof(*ev));
	ev->kind = HT_EV_DATA;
	ev->tgid = (uint32_t)getpid();
	ev->tid = SERVER_TID;
	ev->ts_ns = f->ts += 1000;
	ev->cookie = 7;
	ev->pos = f->pos[dir];
	ev->len = ev->cap_len = len;
	ev->dir = dir;
	ev->fd = 3;
	ev->tuple.family = 2;
	ev->tuple.lport = 8080;
	ev->tuple.rport = 40000;
	memcpy(ev + 1, data, len);
	f->pos[dir] += len;
	tracker__handle_record(&f->t, buf, sizeof(*ev) + len);
}

static void log_write(struct fixture *f, uint32_t tid, uint8_t stream, const char *text,
		      uint32_t len)
{
	struct ht_log_event ev;
	size_t n = strlen(text);

	memset(&ev, 0, sizeof(ev));
	ev.kind = HT_EV_LOG;
	ev.tgid = (uint32_t)getpid();
	ev.tid = tid;
	ev.ts_ns = f->ts += 1000;
	ev.fd = stream == HT_LOG_FILE ? 5 : stream;
	ev.stream = stream;
	ev.len = len;
	ev.cap_len = (uint16_t)(n < HT_LOG_CAPTURE ? n : HT_LOG_CAPTURE);
	ev.flags = len > ev.cap_len ? HT_LOG_TRUNCATED : 0;
	memcpy(ev.data, text, ev.cap_len);
	tracker__handle_record(&f->t, &ev, sizeof(ev));
}

static const char *event_text(const struct span *s, unsigned i)
{
	static char buf[512];
	const struct span_event *ev = &s->events->ev[i];

	snprintf(buf, sizeof(buf), "%.*s", ev->len, s->events->text + ev->off);
	return buf;
}

#define RESPONSE "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

static void test_lines_on_the_serving_request(void **state)
{
	struct fixture *f = *state;
	const struct span *s;

	log_write(f, SERVER_TID, HT_LOG_STDOUT, "starting up\n", 12); /* no request yet */
	io(f, HT_DIR_INGRESS, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
	log_write(f, SERVER_TID, HT_LOG_STDOUT, "fetch https://u:p@h/x?token=1\nsecond\n", 37);
	log_write(f, SERVER_TID + 1, HT_LOG_STDERR, "another thread\n", 15);
	log_write(f, SERVER_TID, HT_LOG_FILE, "password=hunter2 cut", 1000);
	io(f, HT_DIR_EGRESS, RESPONSE);
	log_write(f, SERVER_TID, HT_LOG_STDERR, "after the response\n", 19);

	assert_int_equal(f->sink.n, 1);
	s = f->sink.spans[0];
	assert_non_null(s->events);
	assert_int_equal(s->events->n, 3);
	assert_string_equal(event_text(s, 0), "fetch https://h/x");
	assert_int_equal(s->events->ev[0].source, SPAN_LOG_STDOUT);
	assert_string_equal(event_text(s, 1), "second");
	assert_string_equal(event_text(s, 2), "password=*** cut");
	assert_int_equal(s->events->ev[2].source, SPAN_LOG_FILE);
	assert_true(s->events->ev[2].truncated);
	assert_false(s->events->ev[0].truncated);
	assert_memory_equal(s->events->text + s->events->ev[2].path_off, "/var/log/app.log", 16);
	for (unsigned i = 0; i < s->events->n; i++) {
		assert_true(s->events->ev[i].time_unix_ns >= s->start_unix_ns);
		assert_true(s->events->ev[i].time_unix_ns <= s->end_unix_ns);
	}
	assert_int_equal(g_stats.log_lines, 3);
	/* before the request, another thread, after the span ended */
	assert_int_equal(g_stats.drop_log_no_request, 3);
}

/* A line written in pieces (Python's print("password=", pw): a write per argument, one for
 * the newline) is one event, redacted whole; a piece of another stream ends the pending
 * line; a line still pending when the response ends is a line too. */
static void test_line_in_pieces(void **state)
{
	struct fixture *f = *state;
	const struct span *s;

	io(f, HT_DIR_INGRESS, "GET /p HTTP/1.1\r\nHost: x\r\n\r\n");
	log_write(f, SERVER_TID, HT_LOG_STDOUT, "password=", 9);
	log_write(f, SERVER_TID, HT_LOG_STDOUT, " ", 1);
	log_write(f, SERVER_TID, HT_LOG_STDOUT, "hunter2", 7);
	log_write(f, SERVER_TID, HT_LOG_STDOUT, "\n", 1);
	log_write(f, SERVER_TID, HT_LOG_STDOUT, "half", 4);
	log_write(f, SERVER_TID, HT_LOG_STDERR, "other stream\r\n", 14);
	log_write(f, SERVER_TID, HT_LOG_STDOUT, "tail without newline", 20);
	io(f, HT_DIR_EGRESS, RESPONSE);
	assert_int_equal(f->sink.n, 1);
	s = f->sink.spans[0];
	assert_int_equal(s->events->n, 4);
	assert_string_equal(event_text(s, 0), "password= ***");
	assert_string_equal(event_text(s, 1), "half");
	assert_int_equal(s->events->ev[1].source, SPAN_LOG_STDOUT);
	assert_string_equal(event_text(s, 2), "other stream");
	assert_int_equal(s->events->ev[2].source, SPAN_LOG_STDERR);
	assert_string_equal(event_text(s, 3), "tail without newline");
	/* a line's time is its first piece's */
	assert_true(s->events->ev[0].time_unix_ns < s->events->ev[1].time_unix_ns);
}

/* A line longer than the bound is cut, marked, and its rest never shows. */
static void test_long_line_in_pieces(void **state)
{
	struct fixture *f = *state;
	char piece[200];
	const struct span *s;

	memset(piece, 'a', sizeof(piece) - 1);
	piece[sizeof(piece) - 1] = '\0';
	io(f, HT_DIR_INGRESS, "GET /l HTTP/1.1\r\nHost: x\r\n\r\n");
	log_write(f, SERVER_TID, HT_LOG_STDOUT, piece, 199);
	log_write(f, SERVER_TID, HT_LOG_STDOUT, piece, 199);
	log_write(f, SERVER_TID, HT_LOG_STDOUT, "token=zz\nnext\n", 15);
	io(f, HT_DIR_EGRESS, RESPONSE);
	s = f->sink.spans[0];
	assert_int_equal(s->events->n, 2);
	assert_int_equal(s->events->ev[0].len, LOGCAP_LINE_MAX);
	assert_true(s->events->ev[0].truncated);
	assert_string_equal(event_text(s, 1), "next");
	assert_null(strstr(s->events->text, "zz"));
}

static void test_many_lines_bounded(void **state)
{
	struct fixture *f = *state;
	char line[64];

	io(f, HT_DIR_INGRESS, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
	for (int i = 0; i < 50; i++) {
		int n = snprintf(line, sizeof(line), "line %d\n", i);

		log_write(f, SERVER_TID, HT_LOG_STDOUT, line, (uint32_t)n);
	}
	io(f, HT_DIR_EGRESS, RESPONSE);
	assert_int_equal(f->sink.n, 1);
	assert_int_equal(f->sink.spans[0]->events->n, SPAN_MAX_EVENTS);
	assert_int_equal(f->sink.spans[0]->dropped_events, 50 - SPAN_MAX_EVENTS);
	assert_int_equal(g_stats.span_events_dropped, 50 - SPAN_MAX_EVENTS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_redact_urls),
	    cmocka_unit_test(test_redact_credentials),
	    cmocka_unit_test(test_redact_bounded),
	    cmocka_unit_test(test_span_events_bound),
	    cmocka_unit_test_setup_teardown(test_lines_on_the_serving_request, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_lines_bounded, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_line_in_pieces, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_long_line_in_pieces, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
