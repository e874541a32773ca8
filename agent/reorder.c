// SPDX-License-Identifier: BSD-2-Clause
#include "reorder.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Each held record is this header and its bytes, padded to 8 so the next header and the
 * record itself stay aligned for the decoders. */
struct held_hdr {
	uint64_t ts_ns;
	uint32_t len;
	uint32_t _pad;
};

#define HELD_ALIGN 8u
#define MIN_FIFO_BYTES (64u * 1024)

/* The records of one source not yet delivered: buf[head, tail). */
struct fifo {
	uint8_t *buf;
	size_t head, tail, cap;
};

struct reorder {
	struct fifo *fifos;
	unsigned nfifos;
	size_t held_bytes, max_bytes;
	uint64_t dropped;
	reorder_deliver_fn deliver;
	void *ctx;
};

struct reorder *reorder__new(unsigned nsources, size_t max_bytes, reorder_deliver_fn deliver,
			     void *ctx)
{
	struct reorder *r;

	if (!nsources || !deliver)
		return NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->fifos = calloc(nsources, sizeof(*r->fifos));
	if (!r->fifos) {
		free(r);
		return NULL;
	}
	r->nfifos = nsources;
	r->max_bytes = max_bytes;
	r->deliver = deliver;
	r->ctx = ctx;
	return r;
}

void reorder__free(struct reorder *r)
{
	if (!r)
		return;
	for (unsigned i = 0; i < r->nfifos; i++)
		free(r->fifos[i].buf);
	free(r->fifos);
	free(r);
}

static size_t held_size(size_t len)
{
	return sizeof(struct held_hdr) + ((len + HELD_ALIGN - 1) & ~(size_t)(HELD_ALIGN - 1));
}

/* Room for need more bytes at the tail: slide the live bytes to the front first, grow only
 * when that is not enough. */
static int fifo_reserve(struct fifo *f, size_t need)
{
	size_t live = f->tail - f->head, cap;
	uint8_t *nb;

	if (f->tail + need <= f->cap)
		return 0;
	if (f->head) {
		memmove(f->buf, f->buf + f->head, live);
		f->head = 0;
		f->tail = live;
		if (live + need <= f->cap)
			return 0;
	}
	cap = f->cap ? f->cap : MIN_FIFO_BYTES;
	while (cap < live + need)
		cap *= 2;
	nb = realloc(f->buf, cap);
	if (!nb)
		return -ENOMEM;
	f->buf = nb;
	f->cap = cap;
	return 0;
}

/* The record's time: every ring record starts with u32 kind, u32 tgid, u64 ts_ns. A record
 * too short to hold one sorts first (it cannot be ordered, so it is not held back). */
static uint64_t record_ts(const void *rec, size_t len)
{
	uint64_t ts = 0;

	if (len >= 16)
		memcpy(&ts, (const uint8_t *)rec + 8, sizeof(ts));
	return ts;
}

int reorder__push(struct reorder *r, unsigned src, const void *rec, size_t len)
{
	struct held_hdr h = {.ts_ns = record_ts(rec, len), .len = (uint32_t)len};
	size_t need = held_size(len);
	struct fifo *f;

	if (src >= r->nfifos || len > UINT32_MAX || r->held_bytes + need > r->max_bytes ||
	    fifo_reserve(&r->fifos[src], need)) {
		r->dropped++;
		return -ENOBUFS;
	}
	f = &r->fifos[src];
	memcpy(f->buf + f->tail, &h, sizeof(h));
	memcpy(f->buf + f->tail + sizeof(h), rec, len);
	f->tail += need;
	r->held_bytes += need;
	return 0;
}

static const struct held_hdr *fifo_front(const struct fifo *f)
{
	return f->head < f->tail ? (const struct held_hdr *)(f->buf + f->head) : NULL;
}

/* Deliver the front record of f. */
static void deliver_front(struct reorder *r, struct fifo *f)
{
	const struct held_hdr *h = fifo_front(f);
	size_t size = held_size(h->len);

	r->deliver(r->ctx, h + 1, h->len);
	f->head += size;
	r->held_bytes -= size;
	if (f->head == f->tail)
		f->head = f->tail = 0;
}

/*
 * Source whose front record is the oldest eligible one (<= cutoff), or -1; *limit gets the
 * time up to which that source can be drained without looking at the others again (the
 * next-oldest front among the others, or the cutoff). Ties go to the lower index.
 */
static int oldest_front(const struct reorder *r, uint64_t cutoff, uint64_t *limit)
{
	uint64_t best_ts = 0, second = cutoff;
	int best = -1;

	for (unsigned i = 0; i < r->nfifos; i++) {
		const struct held_hdr *h = fifo_front(&r->fifos[i]);

		if (!h || h->ts_ns > cutoff)
			continue;
		if (best < 0 || h->ts_ns < best_ts) {
			if (best >= 0 && best_ts < second)
				second = best_ts;
			best = (int)i;
			best_ts = h->ts_ns;
		} else if (h->ts_ns < second) {
			second = h->ts_ns;
		}
	}
	*limit = second;
	return best;
}

void reorder__release(struct reorder *r, uint64_t cutoff_ns)
{
	uint64_t limit;
	int src;

	/* a run of one source goes out without rescanning the others: with the rings mostly
	 * written by one CPU at a time, runs are long */
	while ((src = oldest_front(r, cutoff_ns, &limit)) >= 0) {
		struct fifo *f = &r->fifos[src];
		const struct held_hdr *h;

		do {
			deliver_front(r, f);
			h = fifo_front(f);
		} while (h && h->ts_ns <= limit);
	}
}

uint64_t reorder__dropped(const struct reorder *r)
{
	return r ? r->dropped : 0;
}
