// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for the merge of the per-CPU ring buffers (agent/reorder.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hoptrace/events.h"
#include "reorder.h"

/* A ring record as the BPF side writes it: kind, tgid (used here as the source), ts_ns,
 * then a sequence number within the source and some payload. */
struct rec {
	uint32_t kind;
	uint32_t src;
	uint64_t ts_ns;
	uint64_t seq;
	uint8_t payload[40];
};

struct collected {
	struct rec recs[20000];
	size_t n;
};

static void collect(void *ctx, const void *data, size_t len)
{
	struct collected *c = ctx;

	assert_int_equal(len, sizeof(struct rec));
	assert_true(((uintptr_t)data & 7) == 0); /* decoders may read fields in place */
	assert_true(c->n < 20000);
	memcpy(&c->recs[c->n++], data, len);
}

static void push(struct reorder *r, unsigned src, uint64_t ts, uint64_t seq)
{
	struct rec x = {.kind = HT_EV_DATA, .src = src, .ts_ns = ts, .seq = seq};

	memset(x.payload, (int)(seq & 0xff), sizeof(x.payload));
	assert_int_equal(reorder__push(r, src, &x, sizeof(x)), 0);
}

static void test_two_rings_interleave_by_time(void **state)
{
	struct collected *c = calloc(1, sizeof(*c));
	struct reorder *r = reorder__new(2, 1 << 20, collect, c);

	(void)state;
	assert_non_null(r);
	/* CPU 0 read a request at t=10 and wrote the response at t=30; CPU 1 saw the client's
	 * write at t=5 and its read at t=40. Ring order alone would be 10,30,5,40. */
	push(r, 0, 10, 0);
	push(r, 0, 30, 1);
	push(r, 1, 5, 0);
	push(r, 1, 40, 1);
	reorder__release(r, UINT64_MAX);
	assert_int_equal(c->n, 4);
	assert_int_equal(c->recs[0].ts_ns, 5);
	assert_int_equal(c->recs[1].ts_ns, 10);
	assert_int_equal(c->recs[2].ts_ns, 30);
	assert_int_equal(c->recs[3].ts_ns, 40);
	assert_int_equal(reorder__dropped(r), 0);
	reorder__free(r);
	free(c);
}

static void test_records_after_cutoff_wait(void **state)
{
	struct collected *c = calloc(1, sizeof(*c));
	struct reorder *r = reorder__new(2, 1 << 20, collect, c);

	(void)state;
	push(r, 0, 100, 0);
	push(r, 0, 300, 1);
	reorder__release(r, 200);
	assert_int_equal(c->n, 1);
	/* a record of the other CPU that was still being written at the first drain */
	push(r, 1, 250, 0);
	reorder__release(r, 1000);
	assert_int_equal(c->n, 3);
	assert_int_equal(c->recs[1].ts_ns, 250);
	assert_int_equal(c->recs[2].ts_ns, 300);
	reorder__free(r);
	free(c);
}

/* Within one ring the kernel's order is kept, even when a preempted writer left the times
 * out of order: only rings are interleaved. */
static void test_ring_order_is_kept(void **state)
{
	struct collected *c = calloc(1, sizeof(*c));
	struct reorder *r = reorder__new(2, 1 << 20, collect, c);

	(void)state;
	push(r, 0, 50, 0);
	push(r, 0, 20, 1);
	push(r, 0, 20, 2);
	push(r, 1, 30, 0);
	reorder__release(r, UINT64_MAX);
	assert_int_equal(c->n, 4);
	assert_int_equal(c->recs[0].src, 1); /* 30 < 50 */
	assert_int_equal(c->recs[1].seq, 0);
	assert_int_equal(c->recs[2].seq, 1);
	assert_int_equal(c->recs[3].seq, 2);
	reorder__free(r);
	free(c);
}

static void test_bound_drops_and_counts(void **state)
{
	struct collected *c = calloc(1, sizeof(*c));
	struct reorder *r = reorder__new(1, 4 * (sizeof(struct rec) + 16), collect, c);
	struct rec x = {.kind = HT_EV_DATA, .ts_ns = 1};
	int fails = 0;

	(void)state;
	for (int i = 0; i < 10; i++)
		if (reorder__push(r, 0, &x, sizeof(x)) == -ENOBUFS)
			fails++;
	assert_int_equal(fails, 6);
	assert_int_equal(reorder__dropped(r), 6);
	assert_int_equal(reorder__push(r, 7, &x, sizeof(x)), -ENOBUFS); /* no such source */
	reorder__release(r, UINT64_MAX);
	assert_int_equal(c->n, 4);
	/* delivered records free their room */
	assert_int_equal(reorder__push(r, 0, &x, sizeof(x)), 0);
	reorder__free(r);
	free(c);
}

static void short_record(void *ctx, const void *data, size_t len)
{
	int *seen = ctx;

	(void)data;
	*seen += (int)len;
}

static void test_short_record_is_not_held(void **state)
{
	struct reorder *r;
	uint8_t four[4] = {1, 2, 3, 4};
	int seen = 0;

	(void)state;
	r = reorder__new(2, 1 << 20, short_record, &seen);
	assert_int_equal(reorder__push(r, 1, four, sizeof(four)), 0);
	reorder__release(r, 0);
	assert_int_equal(seen, 4);
	reorder__free(r);
}

/* Many records over 4 rings, each ring in time order, drained in several steps with
 * growing and compacting buffers: the output is the time order of all of them. */
static void test_many_records_merge_sorted(void **state)
{
	struct collected *c = calloc(1, sizeof(*c));
	struct reorder *r = reorder__new(4, 64 << 20, collect, c);
	uint64_t clock[4] = {0}, seq[4] = {0}, cutoff;
	unsigned seed = 12345;
	size_t pushed = 0;

	(void)state;
	for (int round = 0; round < 20; round++) {
		for (int i = 0; i < 900; i++) {
			unsigned src = (unsigned)rand_r(&seed) % 4;

			clock[src] += 1 + (unsigned)rand_r(&seed) % 50;
			push(r, src, round * 100000ULL + clock[src], seq[src]++);
			pushed++;
		}
		cutoff = round * 100000ULL + 5000; /* holds most of the round back */
		reorder__release(r, cutoff);
		for (int s = 0; s < 4; s++)
			clock[s] = 0;
	}
	reorder__release(r, UINT64_MAX);
	assert_int_equal(c->n, pushed);
	for (size_t i = 1; i < c->n; i++)
		assert_true(c->recs[i].ts_ns >= c->recs[i - 1].ts_ns);
	reorder__free(r);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_two_rings_interleave_by_time),
	    cmocka_unit_test(test_records_after_cutoff_wait),
	    cmocka_unit_test(test_ring_order_is_kept),
	    cmocka_unit_test(test_bound_drops_and_counts),
	    cmocka_unit_test(test_short_record_is_not_held),
	    cmocka_unit_test(test_many_records_merge_sorted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
