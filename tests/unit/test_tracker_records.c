// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for the tracker fed with records as the BPF side writes them: start lines cut
 * between I/Os, the bytes a record replays from earlier I/Os, and the role of a connection. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tracker.h"
#include "sink.h"
#include "span.h"
#include "stats.h"

#define MAX_SPANS 16

/* A sink that keeps "KIND name status" of each span. */
struct record_sink {
	struct sink base;
	unsigned n;
	char got[MAX_SPANS][160];
};

static void record_emit(struct sink *sk, struct span *s)
{
	struct record_sink *rs = (struct record_sink *)sk;
	const struct span_attr *a = span_find_attr(s, "http.response.status_code");

	if (rs->n < MAX_SPANS)
		snprintf(rs->got[rs->n++], sizeof(rs->got[0]), "%s %s %lld",
			 s->kind == SPAN_KIND_SERVER ? "SERVER" : "CLIENT", s->name,
			 a ? (long long)a->ival : 0LL);
	span_free(s);
}

struct fixture {
	struct record_sink sink;
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
	f->sink.base.name = "record";
	f->sink.base.emit = record_emit;
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
	free(f);
	return 0;
}

/* One data record of the server side of connection 7: len bytes of I/O at the stream's
 * position, minus replay bytes before it; cap bytes of data copied (the I/O's own bytes
 * follow the replayed ones). */
static void record(struct fixture *f, uint8_t dir, const char *data, uint32_t replay, uint32_t len,
		   uint32_t cap)
{
	uint8_t buf[sizeof(struct ht_data_event) + 4096];
	struct ht_data_event *ev = (struct ht_data_event *)buf;

	assert_true(cap <= 4096 && strlen(data) >= cap);
	memset(ev, 0, sizeof(*ev));
	ev->kind = HT_EV_DATA;
	ev->tgid = (uint32_t)getpid();
	ev->tid = ev->tgid;
	ev->ts_ns = f->ts += 1000;
	ev->cookie = 7;
	ev->pos = f->pos[dir] - replay;
	ev->len = len + replay;
	ev->cap_len = cap;
	ev->replay_len = (uint8_t)replay;
	ev->dir = dir;
	ev->fd = 3;
	ev->tuple.family = 2;
	ev->tuple.lport = 8080;
	ev->tuple.rport = 40000;
	if (cap < ev->len)
		ev->flags = HT_DATA_TRUNCATED;
	memcpy(ev + 1, data, cap);
	f->pos[dir] += len;
	tracker__handle_record(&f->t, buf, sizeof(*ev) + cap);
}

/* A whole I/O, copied whole. */
static void io(struct fixture *f, uint8_t dir, const char *data)
{
	record(f, dir, data, 0, (uint32_t)strlen(data), (uint32_t)strlen(data));
}

/* The I/O after a kept prefix: the record replays the prefix. */
static void io_replaying(struct fixture *f, uint8_t dir, const char *prefix, const char *rest)
{
	char joined[4096];

	snprintf(joined, sizeof(joined), "%s%s", prefix, rest);
	record(f, dir, joined, (uint32_t)strlen(prefix), (uint32_t)strlen(rest),
	       (uint32_t)strlen(joined));
}

#define RESPONSE "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

static void expect(struct fixture *f, unsigned n, const char *const *want)
{
	assert_int_equal(f->sink.n, n);
	for (unsigned i = 0; i < n; i++)
		assert_string_equal(f->sink.got[i], want[i]);
}

/* Go's server: "G" read ahead, then the rest, whose record replays the "G". */
static void test_byte_read_ahead_then_replay(void **state)
{
	struct fixture *f = *state;
	static const char *const want[] = {"SERVER GET /a 200", "SERVER GET /b 200"};

	io(f, HT_DIR_INGRESS, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
	io(f, HT_DIR_EGRESS, RESPONSE);
	io(f, HT_DIR_INGRESS, "G");
	io_replaying(f, HT_DIR_INGRESS, "G", "ET /b HTTP/1.1\r\nHost: x\r\n\r\n");
	io(f, HT_DIR_EGRESS, RESPONSE);
	expect(f, 2, want);
	assert_int_equal(g_stats.drop_out_of_order, 0);
	assert_int_equal(g_stats.drop_gap_in_headers, 0);
}

/* A new connection: its short first I/Os were not reported (the kernel side could not tell
 * them from another protocol); the record that completes the start line carries them. */
static void test_new_connection_from_replay(void **state)
{
	struct fixture *f = *state;
	static const char *const want[] = {"SERVER DELETE /c 200"};

	f->pos[HT_DIR_INGRESS] = 5; /* "DELET" went by unreported */
	io_replaying(f, HT_DIR_INGRESS, "DELET", "E /c HTTP/1.1\r\n\r\n");
	io(f, HT_DIR_EGRESS, RESPONSE);
	expect(f, 1, want);
}

/* "H" alone may begin a response or HEAD: no role from it. */
static void test_role_only_from_whole_start_line(void **state)
{
	struct fixture *f = *state;
	static const char *const want[] = {"SERVER HEAD /d 200"};

	io(f, HT_DIR_INGRESS, "H");
	io(f, HT_DIR_INGRESS, "E");
	io_replaying(f, HT_DIR_INGRESS, "HE", "AD /d HTTP/1.1\r\n\r\n");
	io(f, HT_DIR_EGRESS, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n");
	expect(f, 1, want);
}

/* A parser that lost track (a gap in a header block) dropped the prefix: it gets the
 * replayed start line whole, not "ET /e" from the I/O's own bytes. */
static void test_resync_on_replayed_start_line(void **state)
{
	struct fixture *f = *state;
	static const char *const want[] = {"SERVER GET /a 200", "SERVER GET /e 200"};

	io(f, HT_DIR_INGRESS, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
	io(f, HT_DIR_EGRESS, RESPONSE);
	/* a request whose headers were not all captured */
	record(f, HT_DIR_INGRESS, "GET /lost HTTP/1.1\r\n", 0, 3000, 20);
	io(f, HT_DIR_INGRESS, "G");
	io_replaying(f, HT_DIR_INGRESS, "G", "ET /e HTTP/1.1\r\n\r\n");
	io(f, HT_DIR_EGRESS, RESPONSE);
	assert_int_equal(g_stats.drop_gap_in_headers, 1);
	expect(f, 2, want);
}

/* Only replayed bytes may go back: anything else before the position is out of order. */
static void test_position_going_back(void **state)
{
	struct fixture *f = *state;

	io(f, HT_DIR_INGRESS, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
	f->pos[HT_DIR_INGRESS] -= 4;
	io(f, HT_DIR_INGRESS, "x\r\n\r");
	assert_int_equal(g_stats.drop_out_of_order, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_byte_read_ahead_then_replay, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_new_connection_from_replay, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_role_only_from_whole_start_line, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_resync_on_replayed_start_line, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_position_going_back, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
