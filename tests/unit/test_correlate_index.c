// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for the indexes of agent/correlate.c (requests in flight by thread, answered
 * apart, and by trace id): what a call finds is what a walk over every request in flight of
 * its process would find, with many of them in flight. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "correlate.h"
#include "span.h"

#define SEC 1000000000ULL
#define N 40

struct fixture {
	struct correlate c;
	struct span spans[N];
	struct inflight in[N];
};

static struct fixture f;

static void add(unsigned i, uint32_t tid, uint64_t conn, uint8_t trace, uint64_t start_s)
{
	memset(f.spans[i].trace_id, trace, 16);
	memset(f.spans[i].span_id, (int)i + 1, 8);
	f.in[i] = (struct inflight){
	    .tgid = 10, .tid = tid, .conn = conn, .start_ns = start_s * SEC, .span = &f.spans[i]};
	assert_int_equal(correlate__add(&f.c, &f.in[i]), 0);
}

static void find(uint32_t tid, const uint8_t *trace, uint64_t at_s, struct parent_match *m)
{
	struct call_query q = {.tgid = 10, .tid = tid, .ts_ns = at_s * SEC, .out_trace_id = trace};

	correlate__find_parent(&f.c, &q, m);
}

/* Many requests pipelined on one connection of a blocking thread: several, with the newest
 * eight named and all counted; as they answer, the last one left is the parent. */
static void test_many_on_one_thread(void **state)
{
	struct parent_match m;

	(void)state;
	assert_int_equal(correlate__init(&f.c), 0);
	for (unsigned i = 0; i < N; i++)
		add(i, 7, 1, (uint8_t)(i + 1), 1);
	find(7, NULL, 2, &m);
	assert_int_equal(m.conf, PARENT_AMBIGUOUS);
	assert_int_equal(m.reason, REASON_SEVERAL);
	assert_int_equal(m.ncandidates, PARENT_MAX_CANDIDATES);
	assert_int_equal(m.ntotal, N);
	for (unsigned k = 0; k < PARENT_MAX_CANDIDATES; k++)
		assert_ptr_equal(m.candidates[k], &f.in[N - 1 - k]); /* newest first */

	for (unsigned i = 0; i < N - 1; i++)
		correlate__answered(&f.c, &f.in[i], 7);
	find(7, NULL, 2, &m);
	assert_int_equal(m.conf, PARENT_THREAD);
	assert_ptr_equal(m.parent, &f.in[N - 1]);

	correlate__answered(&f.c, &f.in[N - 1], 7);
	find(7, NULL, 2, &m);
	assert_int_equal(m.conf, PARENT_NONE);
	assert_int_equal(m.reason, REASON_AFTER_RESPONSE);
	for (unsigned i = 0; i < N; i++)
		correlate__remove(&f.c, &f.in[i]);
	find(7, NULL, 2, &m);
	assert_int_equal(m.reason, REASON_NO_REQUEST);
	correlate__free(&f.c);
}

/* By trace id: only requests of the call's trace are looked at, answered ones included; a
 * request stitched into another trace is found under its new trace id, not its old one. */
static void test_trace_index(void **state)
{
	uint8_t a[16], b[16], z[16];
	struct parent_match m;

	(void)state;
	memset(a, 0xa, 16);
	memset(b, 0xb, 16);
	memset(z, 0x7, 16);
	assert_int_equal(correlate__init(&f.c), 0);
	for (unsigned i = 0; i < N - 2; i++)
		add(i, 100 + i, 100 + i, 0x7, 1); /* others, all of trace z */
	add(N - 2, 7, 1, 0xa, 1);
	find(8, a, 2, &m);
	assert_int_equal(m.conf, PARENT_EXACT);
	assert_ptr_equal(m.parent, &f.in[N - 2]);
	correlate__answered(&f.c, &f.in[N - 2], 7);
	find(8, a, 2, &m);
	assert_int_equal(m.conf, PARENT_EXACT); /* answered: still the only one of its trace */

	find(8, z, 2, &m);
	assert_int_equal(m.conf, PARENT_AMBIGUOUS);
	assert_int_equal(m.reason, REASON_SEVERAL_OF_TRACE);
	assert_int_equal(m.ntotal, N - 2);

	memset(f.spans[N - 2].trace_id, 0xb, 16); /* stitched */
	correlate__trace_changed(&f.c, &f.in[N - 2]);
	find(8, b, 2, &m);
	assert_int_equal(m.conf, PARENT_EXACT);
	assert_ptr_equal(m.parent, &f.in[N - 2]);
	find(8, a, 2, &m);
	assert_int_equal(m.reason, REASON_TRACE_NOT_IN_FLIGHT);

	/* a request stitched into a trace with others in flight keeps its registration order */
	memset(f.spans[N - 2].trace_id, 0x7, 16);
	correlate__trace_changed(&f.c, &f.in[N - 2]);
	find(8, z, 2, &m);
	assert_int_equal(m.ntotal, N - 1);
	assert_ptr_equal(m.candidates[0], &f.in[N - 2]);
	assert_ptr_equal(m.candidates[1], &f.in[N - 3]);
	for (unsigned i = 0; i < N - 1; i++)
		correlate__remove(&f.c, &f.in[i]);
	find(8, z, 2, &m);
	assert_int_equal(m.reason, REASON_TRACE_NOT_IN_FLIGHT);
	correlate__free(&f.c);
}

/* An ancestor's requests count only if they were being served when the caller was born. */
static void test_ancestor_born_before(void **state)
{
	struct parent_match m;

	(void)state;
	assert_int_equal(correlate__init(&f.c), 0);
	add(0, 7, 1, 1, 10);
	correlate__thread_created(&f.c, 7, 20, true, 11 * SEC); /* a CGI child */
	add(1, 7, 1, 2, 12);					/* pipelined, read later */
	find(20, NULL, 13, &m);
	assert_int_equal(m.conf, PARENT_ANCESTOR);
	assert_ptr_equal(m.parent, &f.in[0]);
	correlate__answered(&f.c, &f.in[0], 7);
	find(20, NULL, 13, &m);
	assert_int_equal(m.conf, PARENT_NONE);
	assert_int_equal(m.reason, REASON_AFTER_RESPONSE);
	correlate__remove(&f.c, &f.in[0]);
	correlate__remove(&f.c, &f.in[1]);
	correlate__free(&f.c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_many_on_one_thread),
	    cmocka_unit_test(test_trace_index),
	    cmocka_unit_test(test_ancestor_born_before),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
