// SPDX-License-Identifier: BSD-2-Clause
/*
 * Unit tests for the merge of the per-CPU ring buffers (agent/ringmerge.c), on memory laid
 * out as the kernel lays out a BPF ring buffer: 8-byte record headers (length with the busy
 * and discard bits), records padded to 8, the data area mapped twice in a row. The real
 * mapping is covered by every integration test (test_capture's CPU hop in particular).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <linux/bpf.h>

#include "hoptrace/events.h"
#include "ringmerge.h"

#define RING_SIZE 4096u

/* A ring in memory: data twice in a row, as the kernel maps it. */
struct fake_ring {
	uint64_t consumer_pos;
	uint64_t producer_pos;
	uint8_t data[2 * RING_SIZE];
};

/* A record: kind, tgid (here the ring), ts_ns, then a sequence number within the ring. */
struct rec {
	uint32_t kind;
	uint32_t ring;
	uint64_t ts_ns;
	uint64_t seq;
	uint8_t pad[20]; /* 44 bytes: not a multiple of 8 */
} __attribute__((packed));

struct collected {
	struct rec recs[4096];
	size_t n;
};

static void collect(void *ctx, const void *data, size_t len)
{
	struct collected *c = ctx;

	assert_int_equal(len, sizeof(struct rec));
	assert_true(c->n < 4096);
	memcpy(&c->recs[c->n++], data, len);
}

static void ring_write_bytes(struct fake_ring *r, uint64_t pos, const void *src, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		uint64_t at = (pos + k) & (RING_SIZE - 1);

		r->data[at] = ((const uint8_t *)src)[k];
		r->data[at + RING_SIZE] = r->data[at]; /* the second mapping */
	}
}

/* Append a record with the given header flags; returns its position. */
static uint64_t ring_put(struct fake_ring *r, uint32_t ring, uint64_t ts, uint64_t seq,
			 uint32_t flags)
{
	struct rec x = {.kind = HT_EV_DATA, .ring = ring, .ts_ns = ts, .seq = seq};
	uint32_t hdr[2] = {(uint32_t)sizeof(x) | flags, 0};
	uint64_t pos = r->producer_pos;

	ring_write_bytes(r, pos, hdr, sizeof(hdr));
	ring_write_bytes(r, pos + BPF_RINGBUF_HDR_SZ, &x, sizeof(x));
	r->producer_pos += (BPF_RINGBUF_HDR_SZ + sizeof(x) + 7) & ~7ULL;
	return pos;
}

static void ring_commit(struct fake_ring *r, uint64_t pos)
{
	uint32_t hdr = (uint32_t)sizeof(struct rec);

	ring_write_bytes(r, pos, &hdr, sizeof(hdr));
}

static struct ringmerge *merger(struct fake_ring *rings, unsigned n, struct collected *c)
{
	struct ringmerge *m = ringmerge__new(n, collect, c);

	assert_non_null(m);
	for (unsigned i = 0; i < n; i++) {
		struct ring_view v = {
		    .consumer_pos = &rings[i].consumer_pos,
		    .producer_pos = &rings[i].producer_pos,
		    .data = rings[i].data,
		    .mask = RING_SIZE - 1,
		};

		ringmerge__set_view(m, i, &v);
	}
	return m;
}

static void test_two_rings_interleave_by_time(void **state)
{
	struct fake_ring *r = calloc(2, sizeof(*r));
	struct collected *c = calloc(1, sizeof(*c));
	struct ringmerge *m = merger(r, 2, c);

	(void)state;
	/* CPU 0 read a request at t=10 and wrote the response at t=30; CPU 1 saw the client's
	 * write at t=5 and its read at t=40. Ring order alone would be 10,30,5,40. */
	ring_put(&r[0], 0, 10, 0, 0);
	ring_put(&r[0], 0, 30, 1, 0);
	ring_put(&r[1], 1, 5, 0, 0);
	ring_put(&r[1], 1, 40, 1, 0);
	ringmerge__drain(m, UINT64_MAX);
	assert_int_equal(c->n, 4);
	assert_int_equal(c->recs[0].ts_ns, 5);
	assert_int_equal(c->recs[1].ts_ns, 10);
	assert_int_equal(c->recs[2].ts_ns, 30);
	assert_int_equal(c->recs[3].ts_ns, 40);
	assert_int_equal(r[0].consumer_pos, r[0].producer_pos);
	assert_int_equal(r[1].consumer_pos, r[1].producer_pos);
	ringmerge__free(m);
	free(c);
	free(r);
}

static void test_records_after_cutoff_stay_in_the_ring(void **state)
{
	struct fake_ring *r = calloc(2, sizeof(*r));
	struct collected *c = calloc(1, sizeof(*c));
	struct ringmerge *m = merger(r, 2, c);
	uint64_t second;

	(void)state;
	ring_put(&r[0], 0, 100, 0, 0);
	second = ring_put(&r[0], 0, 300, 1, 0);
	ringmerge__drain(m, 200);
	assert_int_equal(c->n, 1);
	assert_int_equal(r[0].consumer_pos, second); /* only the delivered one is given back */
	/* a record of the other CPU that was still being written at the first drain */
	ring_put(&r[1], 1, 250, 0, 0);
	ringmerge__drain(m, 1000);
	assert_int_equal(c->n, 3);
	assert_int_equal(c->recs[1].ts_ns, 250);
	assert_int_equal(c->recs[2].ts_ns, 300);
	assert_int_equal(ringmerge__late(m), 0);
	/* committed only after a newer record went out: delivered, and counted as late */
	ring_put(&r[1], 1, 150, 1, 0);
	ringmerge__drain(m, 1000);
	assert_int_equal(c->n, 4);
	assert_int_equal(c->recs[3].ts_ns, 150);
	assert_int_equal(ringmerge__late(m), 1);
	ringmerge__free(m);
	free(c);
	free(r);
}

static void test_busy_record_blocks_its_ring_only(void **state)
{
	struct fake_ring *r = calloc(2, sizeof(*r));
	struct collected *c = calloc(1, sizeof(*c));
	struct ringmerge *m = merger(r, 2, c);
	uint64_t busy;

	(void)state;
	busy = ring_put(&r[0], 0, 10, 0, BPF_RINGBUF_BUSY_BIT);
	ring_put(&r[0], 0, 20, 1, 0);
	ring_put(&r[1], 1, 15, 0, 0);
	ringmerge__drain(m, UINT64_MAX);
	assert_int_equal(c->n, 1);
	assert_int_equal(c->recs[0].ring, 1);
	assert_int_equal(r[0].consumer_pos, busy);
	ring_commit(&r[0], busy);
	ringmerge__drain(m, UINT64_MAX);
	assert_int_equal(c->n, 3);
	assert_int_equal(c->recs[1].ts_ns, 10);
	assert_int_equal(c->recs[2].ts_ns, 20);
	ringmerge__free(m);
	free(c);
	free(r);
}

static void test_discarded_records_are_skipped(void **state)
{
	struct fake_ring *r = calloc(1, sizeof(*r));
	struct collected *c = calloc(1, sizeof(*c));
	struct ringmerge *m = merger(r, 1, c);

	(void)state;
	ring_put(&r[0], 0, 1, 0, BPF_RINGBUF_DISCARD_BIT);
	ring_put(&r[0], 0, 2, 1, 0);
	ring_put(&r[0], 0, 3, 2, BPF_RINGBUF_DISCARD_BIT);
	ringmerge__drain(m, UINT64_MAX);
	assert_int_equal(c->n, 1);
	assert_int_equal(c->recs[0].seq, 1);
	assert_int_equal(r[0].consumer_pos, r[0].producer_pos);
	ringmerge__free(m);
	free(c);
	free(r);
}

/* Many records over 4 rings, wrapping each ring many times, drained in steps with a cutoff
 * that holds some back each time: all come out, in time order, each exactly once. */
static void test_many_records_wrap_and_merge_sorted(void **state)
{
	struct fake_ring *r = calloc(4, sizeof(*r));
	struct collected *c = calloc(1, sizeof(*c));
	struct ringmerge *m = merger(r, 4, c);
	uint64_t clock[4] = {0}, seq[4] = {0}, delivered = 0, pushed = 0;
	unsigned seed = 7;

	(void)state;
	for (int round = 0; round < 200; round++) {
		for (int i = 0; i < 40; i++) {
			unsigned ring = (unsigned)rand_r(&seed) % 4;

			/* room: the ring holds 4096 bytes, 56 per record */
			if (r[ring].producer_pos - r[ring].consumer_pos > RING_SIZE - 128)
				continue;
			clock[ring] += 1 + (unsigned)rand_r(&seed) % 50;
			ring_put(&r[ring], ring, round * 100000ULL + clock[ring], seq[ring]++, 0);
			pushed++;
		}
		ringmerge__drain(m, round * 100000ULL + 300);
		for (size_t k = 1; k < c->n; k++)
			assert_true(c->recs[k].ts_ns >= c->recs[k - 1].ts_ns);
		delivered += c->n;
		/* keep the last one to check order across drains */
		if (c->n) {
			c->recs[0] = c->recs[c->n - 1];
			c->n = 1;
			delivered--;
		}
		for (int k = 0; k < 4; k++)
			clock[k] = 0;
	}
	ringmerge__drain(m, UINT64_MAX);
	delivered += c->n;
	assert_int_equal(delivered, pushed);
	for (int k = 0; k < 4; k++)
		assert_int_equal(r[k].consumer_pos, r[k].producer_pos);
	ringmerge__free(m);
	free(c);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_two_rings_interleave_by_time),
	    cmocka_unit_test(test_records_after_cutoff_stay_in_the_ring),
	    cmocka_unit_test(test_busy_record_blocks_its_ring_only),
	    cmocka_unit_test(test_discarded_records_are_skipped),
	    cmocka_unit_test(test_many_records_wrap_and_merge_sorted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
