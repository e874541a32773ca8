// SPDX-License-Identifier: BSD-2-Clause
/*
 * Unit tests for the tail-sampling sink (agent/sink_tail.c): which local traces it keeps,
 * and what happens at each bound of its buffer. Every span given to it must come out of it
 * (to the inner sink) or be counted in tail_spans_dropped; ASan reports any span it leaks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "resource.h"
#include "sampler.h"
#include "sink.h"
#include "span.h"
#include "stats.h"
#include "tail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS 1000000ull
#define T0 1700000000000000000ull
#define MAX_SEEN 4096

/* ---- an inner sink that records the trace ids it is given -------------------------- */

struct recorder {
	struct sink base;
	size_t n;
	uint8_t trace[MAX_SEEN][16];
	uint8_t span[MAX_SEEN][8];
};

static void rec_emit(struct sink *sk, struct span *s)
{
	struct recorder *r = (struct recorder *)sk;

	if (r->n < MAX_SEEN) {
		memcpy(r->trace[r->n], s->trace_id, 16);
		memcpy(r->span[r->n], s->span_id, 8);
	}
	r->n++;
	span_free(s);
}

static void rec_tick(struct sink *sk, uint64_t now)
{
	(void)sk;
	(void)now;
}

static void rec_flush(struct sink *sk, int deadline_ms)
{
	(void)sk;
	(void)deadline_ms;
}

static void rec_print_stats(struct sink *sk, FILE *out)
{
	(void)sk;
	(void)out;
}

static void rec_destroy(struct sink *sk)
{
	(void)sk; /* static storage: the test reads it after the tail sink is gone */
}

static struct recorder g_rec;

static struct sink *recorder_reset(void)
{
	memset(&g_rec, 0, sizeof(g_rec));
	g_rec.base = (struct sink){.name = "recorder",
				   .emit = rec_emit,
				   .tick = rec_tick,
				   .flush = rec_flush,
				   .print_stats = rec_print_stats,
				   .destroy = rec_destroy};
	return &g_rec.base;
}

/* How many spans of trace id went through to the inner sink. */
static unsigned passed(const uint8_t id[16])
{
	unsigned n = 0;

	for (size_t i = 0; i < g_rec.n && i < MAX_SEEN; i++)
		n += memcmp(g_rec.trace[i], id, 16) == 0;
	return n;
}

/* ---- spans ------------------------------------------------------------------------- */

/* A trace id whose 56 ratio bits are all `fill` (0x00: dropped by any ratio < 1; 0xff:
 * kept by any ratio > 0), told apart by `tag` in its first byte. */
static void make_id(uint8_t id[16], uint8_t tag, uint8_t fill)
{
	memset(id, fill, 16);
	memset(id, 0, 9);
	id[1] = tag; /* not id[0]: its low bit does not reach the internal key */
}

struct span_spec {
	const uint8_t *trace;
	unsigned span_no, parent_no; /* parent 0: a root */
	int kind;
	uint64_t dur_ms;
	bool error;
	const char *name;
	struct resource *res;
};

static struct span *make(const struct span_spec *p)
{
	struct span *s = span_new();

	assert_non_null(s);
	memcpy(s->trace_id, p->trace, 16);
	s->span_id[7] = (uint8_t)p->span_no;
	s->span_id[6] = (uint8_t)(p->span_no >> 8);
	if (p->parent_no)
		s->parent_span_id[7] = (uint8_t)p->parent_no;
	s->kind = p->kind ? p->kind : SPAN_KIND_SERVER;
	s->status = p->error ? SPAN_STATUS_ERROR : SPAN_STATUS_UNSET;
	s->trace_flags = 1;
	s->start_unix_ns = T0;
	s->end_unix_ns = T0 + p->dur_ms * MS;
	snprintf(s->name, sizeof(s->name), "%s", p->name ? p->name : "GET /x");
	if (p->res)
		s->resource = resource_get(p->res);
	return s;
}

/* A finished one-span trace: a server root. */
static void emit_root(struct sink *sk, const uint8_t *id, uint64_t dur_ms, bool error)
{
	struct span_spec p = {.trace = id, .span_no = 1, .dur_ms = dur_ms, .error = error};

	sk->emit(sk, make(&p));
}

/* quiet 0: a trace with a server span is complete at the next tick */
static struct tail_config config(double ratio, uint64_t slow_ms)
{
	struct tail_config c;

	tail_config_init(&c);
	c.enabled = true;
	c.ratio = ratio;
	c.threshold = sampler_ratio_threshold(ratio);
	c.slow_ns = slow_ms * MS;
	c.quiet_ns = 0;
	return c;
}

static int reset(void **state)
{
	(void)state;
	memset(&g_stats, 0, sizeof(g_stats));
	return 0;
}

/* ---- decisions --------------------------------------------------------------------- */

static void test_errors_and_slow_are_kept_the_rest_by_ratio(void **state)
{
	struct tail_config c = config(0.5, 100);
	struct sink *sk = sink_tail_new(recorder_reset(), &c);
	uint8_t err[16], slow[16], low[16], high[16];

	(void)state;
	make_id(err, 1, 0x00);
	make_id(slow, 2, 0x00);
	make_id(low, 3, 0x00);
	make_id(high, 4, 0xff);
	emit_root(sk, err, 1, true);
	emit_root(sk, slow, 100, false); /* at the threshold counts as slow */
	emit_root(sk, low, 99, false);
	emit_root(sk, high, 1, false);
	assert_int_equal(g_rec.n, 0); /* held until the tick */
	sk->tick(sk, 0);
	assert_int_equal(passed(err), 1);
	assert_int_equal(passed(slow), 1);
	assert_int_equal(passed(low), 0);
	assert_int_equal(passed(high), 1);
	assert_int_equal(g_stats.tail_traces_kept_error, 1);
	assert_int_equal(g_stats.tail_traces_kept_slow, 1);
	assert_int_equal(g_stats.tail_traces_kept_ratio, 1);
	assert_int_equal(g_stats.tail_traces_dropped, 1);
	assert_int_equal(g_stats.tail_spans_dropped, 1);
	sk->destroy(sk);
}

static void test_ratio_one_keeps_all_and_zero_keeps_none(void **state)
{
	uint8_t id[16];

	(void)state;
	for (int keep_all = 0; keep_all <= 1; keep_all++) {
		struct tail_config c = config(keep_all ? 1.0 : 0.0, 0);
		struct sink *sk = sink_tail_new(recorder_reset(), &c);

		for (unsigned i = 0; i < 32; i++) {
			make_id(id, (uint8_t)i, (uint8_t)(i * 8));
			emit_root(sk, id, 10000, false); /* slow_ns 0: no latency rule */
		}
		sk->flush(sk, 0);
		assert_int_equal(g_rec.n, keep_all ? 32 : 0);
		sk->destroy(sk);
	}
}

static void test_service_and_route_rules_override_the_global_threshold(void **state)
{
	struct tail_config c = config(0.0, 1000);
	struct resource *checkout = resource_new(7, 1), *other = resource_new(8, 1);
	uint8_t a[16], b[16], d[16], e[16];
	struct sink *sk;

	(void)state;
	assert_non_null(checkout);
	assert_non_null(other);
	checkout->service_name = strdup("checkout");
	other->service_name = strdup("other");
	assert_int_equal(tail_config_add_slow(&c, "service=checkout:50"), 0);
	assert_int_equal(tail_config_add_slow(&c, "route=/api/pay:5000"), 0);
	sk = sink_tail_new(recorder_reset(), &c);
	make_id(a, 1, 0);
	make_id(b, 2, 0);
	make_id(d, 3, 0);
	make_id(e, 4, 0);
	sk->emit(
	    sk,
	    make(&(struct span_spec){
		.trace = a, .span_no = 1, .dur_ms = 60, .res = checkout})); /* slow for checkout */
	sk->emit(sk, make(&(struct span_spec){.trace = b,
					      .span_no = 1,
					      .dur_ms = 60,
					      .res = other})); /* not for the global 1 s */
	sk->emit(sk, make(&(struct span_spec){.trace = d,
					      .span_no = 1,
					      .dur_ms = 2000,
					      .name = "POST /api/pay"})); /* route allows 5 s */
	sk->emit(sk, make(&(struct span_spec){
			 .trace = e, .span_no = 1, .dur_ms = 2000, .name = "POST /api/cart"}));
	sk->tick(sk, 0);
	assert_int_equal(passed(a), 1);
	assert_int_equal(passed(b), 0);
	assert_int_equal(passed(d), 0);
	assert_int_equal(passed(e), 1);
	sk->destroy(sk);
	resource_put(checkout);
	resource_put(other);
}

static void test_bad_slow_rules_are_refused(void **state)
{
	const char *bad[] = {"",	  "-5",		"12x",	       "service=",
			     "service=a", "service=a:", "route=/a:-1", "route=/a:99999999999",
			     "host=a:5",  "service=:5"};
	struct tail_config c;

	(void)state;
	tail_config_init(&c);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(tail_config_add_slow(&c, bad[i]), -22);
	assert_int_equal(c.nrules, 0);
	assert_int_equal(c.slow_ns, 0);
}

/* ---- completeness ------------------------------------------------------------------ */

static void test_a_trace_without_its_server_span_waits_for_max_delay(void **state)
{
	struct tail_config c = config(1.0, 0);
	uint8_t id[16];
	struct sink *sk;

	(void)state;
	c.max_delay_ns = 3600ull * 1000 * MS; /* never within the test */
	sk = sink_tail_new(recorder_reset(), &c);
	make_id(id, 1, 0xff);
	/* a client call whose local server span has not finished yet */
	sk->emit(sk, make(&(struct span_spec){
			 .trace = id, .span_no = 2, .parent_no = 1, .kind = SPAN_KIND_CLIENT}));
	sk->tick(sk, 0);
	assert_int_equal(g_rec.n, 0);
	sk->emit(sk, make(&(struct span_spec){.trace = id, .span_no = 1}));
	sk->tick(sk, 0);
	assert_int_equal(passed(id), 2); /* decided together */
	sk->destroy(sk);
}

static void test_max_delay_decides_an_incomplete_trace(void **state)
{
	struct tail_config c = config(1.0, 0);
	uint8_t id[16];
	struct sink *sk;

	(void)state;
	c.max_delay_ns = 0;
	sk = sink_tail_new(recorder_reset(), &c);
	make_id(id, 1, 0xff);
	sk->emit(sk, make(&(struct span_spec){
			 .trace = id, .span_no = 2, .parent_no = 1, .kind = SPAN_KIND_CLIENT}));
	sk->tick(sk, 0);
	assert_int_equal(passed(id), 1);
	sk->destroy(sk);
}

static void test_shutdown_decides_what_is_held(void **state)
{
	struct tail_config c = config(0.0, 0);
	uint8_t kept[16], dropped[16];
	struct sink *sk;

	(void)state;
	c.quiet_ns = 3600ull * 1000 * MS;
	sk = sink_tail_new(recorder_reset(), &c);
	make_id(kept, 1, 0);
	make_id(dropped, 2, 0);
	emit_root(sk, kept, 1, true);
	emit_root(sk, dropped, 1, false);
	sk->tick(sk, 0);
	assert_int_equal(g_rec.n, 0);
	sk->flush(sk, 0);
	assert_int_equal(passed(kept), 1);
	assert_int_equal(passed(dropped), 0);
	assert_int_equal(g_stats.tail_spans_dropped, 1);
	sk->destroy(sk);
}

/* ---- bounds and late spans --------------------------------------------------------- */

static void test_late_spans_follow_the_decision(void **state)
{
	struct tail_config c = config(0.0, 0);
	uint8_t kept[16], dropped[16];
	struct sink *sk = sink_tail_new(recorder_reset(), &c);

	(void)state;
	make_id(kept, 1, 0);
	make_id(dropped, 2, 0);
	emit_root(sk, kept, 1, true);
	emit_root(sk, dropped, 1, false);
	sk->tick(sk, 0);
	/* a span that comes after the decision, not slow or failed itself */
	sk->emit(sk, make(&(struct span_spec){.trace = kept, .span_no = 5, .parent_no = 1}));
	sk->emit(sk, make(&(struct span_spec){.trace = dropped, .span_no = 5, .parent_no = 1}));
	assert_int_equal(passed(kept), 2); /* at once: nothing left to wait for */
	assert_int_equal(passed(dropped), 0);
	assert_int_equal(g_stats.tail_late_spans, 2);
	assert_int_equal(g_stats.tail_spans_dropped, 2);
	sk->destroy(sk);
}

static void test_a_trace_past_its_span_cap_is_decided_early(void **state)
{
	struct tail_config c = config(0.0, 0);
	uint8_t id[16];
	struct sink *sk;

	(void)state;
	c.max_trace_spans = 3;
	sk = sink_tail_new(recorder_reset(), &c);
	make_id(id, 1, 0);
	/* the error is in the first part: that part is kept, and the rest follows it */
	sk->emit(sk, make(&(struct span_spec){.trace = id, .span_no = 1, .error = true}));
	for (unsigned i = 2; i <= 5; i++)
		sk->emit(sk,
			 make(&(struct span_spec){
			     .trace = id, .span_no = i, .parent_no = 1, .kind = SPAN_KIND_CLIENT}));
	assert_int_equal(g_stats.tail_overflow_early, 1);
	assert_int_equal(passed(id), 5);
	assert_int_equal(g_stats.tail_late_spans, 2);
	sk->flush(sk, 0);
	assert_int_equal(passed(id), 5);
	sk->destroy(sk);
}

static void test_after_an_early_drop_a_later_error_still_keeps_the_rest(void **state)
{
	struct tail_config c = config(0.0, 0);
	uint8_t id[16];
	struct sink *sk;

	(void)state;
	c.max_trace_spans = 3;
	sk = sink_tail_new(recorder_reset(), &c);
	make_id(id, 1, 0);
	for (unsigned i = 2; i <= 4; i++)
		sk->emit(sk,
			 make(&(struct span_spec){
			     .trace = id, .span_no = i, .parent_no = 1, .kind = SPAN_KIND_CLIENT}));
	/* the 4th span finds the trace full: its first 3 spans are dropped (nothing wrong yet) */
	sk->emit(sk, make(&(struct span_spec){.trace = id,
					      .span_no = 5,
					      .parent_no = 1,
					      .kind = SPAN_KIND_CLIENT,
					      .error = true}));
	assert_int_equal(g_stats.tail_overflow_early, 1);
	assert_int_equal(g_stats.tail_spans_dropped, 3);
	sk->emit(sk, make(&(struct span_spec){.trace = id, .span_no = 1}));
	sk->flush(sk, 0);
	assert_int_equal(passed(id), 2); /* the failed call and the server span */
	assert_int_equal(g_stats.tail_traces_kept_error, 1);
	sk->destroy(sk);
}

static void test_a_full_buffer_decides_new_traces_alone(void **state)
{
	struct tail_config c = config(0.0, 0);
	uint8_t a[16], b[16], d[16];
	struct sink *sk;

	(void)state;
	c.max_traces = 2;
	c.quiet_ns = 3600ull * 1000 * MS;
	sk = sink_tail_new(recorder_reset(), &c);
	make_id(a, 1, 0);
	make_id(b, 2, 0);
	make_id(d, 3, 0);
	emit_root(sk, a, 1, false);
	emit_root(sk, b, 1, false);
	emit_root(sk, d, 1, true); /* no room: decided now, still by its own error */
	assert_int_equal(g_stats.tail_overflow_early, 1);
	assert_int_equal(passed(d), 1);
	assert_int_equal(g_rec.n, 1);
	sk->flush(sk, 0);
	assert_int_equal(g_stats.tail_traces_dropped, 2);
	sk->destroy(sk);
}

static void test_the_total_span_bound_holds(void **state)
{
	struct tail_config c = config(1.0, 0);
	uint8_t id[16];
	struct sink *sk;

	(void)state;
	c.max_spans = 8;
	c.quiet_ns = 3600ull * 1000 * MS;
	sk = sink_tail_new(recorder_reset(), &c);
	for (unsigned i = 0; i < 100; i++) {
		make_id(id, (uint8_t)(i % 4), 0xff);
		id[2] = (uint8_t)(i / 4); /* 100 traces */
		sk->emit(sk, make(&(struct span_spec){.trace = id, .span_no = i + 1}));
		/* never more than max_spans held: the rest went through at once */
		assert_true(i + 1 - g_rec.n <= 8);
	}
	sk->flush(sk, 0);
	assert_int_equal(g_rec.n, 100);
	assert_int_equal(g_stats.tail_overflow_early, 100 - 8);
	sk->destroy(sk);
}

/* Two trace ids with the same internal key (its hash is not keyed: any sender of a
 * traceparent can pick such ids). They must not be merged into one trace. */
static void test_colliding_trace_ids_are_not_merged(void **state)
{
	const uint64_t mult = 0x9e3779b97f4a7c15ULL;
	struct tail_config c = config(0.0, 0);
	uint8_t victim[16] = {0}, attacker[16] = {0};
	uint64_t x = 0x1122334455667788ULL, xa = x ^ mult, one = 1;
	struct sink *sk;

	(void)state;
	c.quiet_ns = 3600ull * 1000 * MS;
	memcpy(victim, &x, 8); /* low part 0 */
	memcpy(attacker, &xa, 8);
	memcpy(attacker + 8, &one, 8);
	sk = sink_tail_new(recorder_reset(), &c);
	emit_root(sk, victim, 1, false);
	emit_root(sk, attacker, 1, true);
	assert_int_equal(passed(attacker), 1); /* decided alone, kept for its own error */
	assert_int_equal(passed(victim), 0);
	assert_int_equal(g_stats.tail_overflow_early, 1);
	sk->flush(sk, 0);
	assert_int_equal(passed(victim), 0); /* the attacker's error did not keep it */
	assert_int_equal(g_stats.tail_traces_dropped, 1);
	sk->destroy(sk);
}

/* Random traffic against small bounds: every span comes out or is counted as dropped. */
static void test_no_span_is_lost_under_random_traffic(void **state)
{
	struct tail_config c = config(0.3, 50);
	unsigned seed = 12345, given = 0;
	uint8_t id[16];
	struct sink *sk;

	(void)state;
	c.max_traces = 16;
	c.max_spans = 40;
	c.max_trace_spans = 6;
	c.quiet_ns = 3600ull * 1000 * MS;
	c.max_delay_ns = 3600ull * 1000 * MS;
	sk = sink_tail_new(recorder_reset(), &c);
	for (unsigned i = 0; i < 20000; i++) {
		unsigned r = (unsigned)rand_r(&seed);
		struct span_spec p = {.trace = id,
				      .span_no = i + 1,
				      .parent_no = r & 1,
				      .kind = (r & 2) ? SPAN_KIND_CLIENT : SPAN_KIND_SERVER,
				      .dur_ms = (r >> 4) % 60,
				      .error = (r >> 12) % 50 == 0};

		memset(id, (int)((r >> 16) & 0xff), 16);
		id[0] = (uint8_t)((r >> 8) % 48); /* 48 traces in play */
		sk->emit(sk, make(&p));
		given++;
		if (r % 97 == 0)
			sk->tick(sk, 0);
		if (r % 1009 == 0)
			sk->flush(sk, 0);
	}
	sk->flush(sk, 0);
	assert_int_equal(g_rec.n + g_stats.tail_spans_dropped, given);
	sk->destroy(sk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_errors_and_slow_are_kept_the_rest_by_ratio, reset),
	    cmocka_unit_test_setup(test_ratio_one_keeps_all_and_zero_keeps_none, reset),
	    cmocka_unit_test_setup(test_service_and_route_rules_override_the_global_threshold,
				   reset),
	    cmocka_unit_test_setup(test_bad_slow_rules_are_refused, reset),
	    cmocka_unit_test_setup(test_a_trace_without_its_server_span_waits_for_max_delay, reset),
	    cmocka_unit_test_setup(test_max_delay_decides_an_incomplete_trace, reset),
	    cmocka_unit_test_setup(test_shutdown_decides_what_is_held, reset),
	    cmocka_unit_test_setup(test_late_spans_follow_the_decision, reset),
	    cmocka_unit_test_setup(test_a_trace_past_its_span_cap_is_decided_early, reset),
	    cmocka_unit_test_setup(test_after_an_early_drop_a_later_error_still_keeps_the_rest,
				   reset),
	    cmocka_unit_test_setup(test_a_full_buffer_decides_new_traces_alone, reset),
	    cmocka_unit_test_setup(test_the_total_span_bound_holds, reset),
	    cmocka_unit_test_setup(test_colliding_trace_ids_are_not_merged, reset),
	    cmocka_unit_test_setup(test_no_span_is_lost_under_random_traffic, reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
