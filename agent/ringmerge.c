// SPDX-License-Identifier: BSD-2-Clause
#include "ringmerge.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/bpf.h>

/* Where a drain stands in one ring. */
struct ring_cursor {
	uint64_t cons; /* next record to read */
	uint64_t prod; /* committed end, read once per drain */
	const uint8_t *rec;
	uint32_t len;
	uint64_t ts; /* of rec; valid when rec != NULL */
};

struct mapped_ring {
	struct ring_view view;
	void *cons_map; /* NULL for rings set from a view */
	void *prod_map;
	size_t prod_map_len;
};

struct ringmerge {
	unsigned nrings;
	struct mapped_ring *rings;
	struct ring_cursor *cur;
	ringmerge_deliver_fn deliver;
	void *ctx;
	uint64_t newest_ts; /* newest time delivered so far */
	uint64_t late;	    /* records delivered after a newer one */
};

struct ringmerge *ringmerge__new(unsigned nrings, ringmerge_deliver_fn deliver, void *ctx)
{
	struct ringmerge *m;

	if (!nrings || !deliver)
		return NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->rings = calloc(nrings, sizeof(*m->rings));
	m->cur = calloc(nrings, sizeof(*m->cur));
	if (!m->rings || !m->cur) {
		ringmerge__free(m);
		return NULL;
	}
	m->nrings = nrings;
	m->deliver = deliver;
	m->ctx = ctx;
	return m;
}

int ringmerge__map(struct ringmerge *m, unsigned i, int fd, uint32_t size)
{
	long page = sysconf(_SC_PAGESIZE);
	struct mapped_ring *r;
	void *cons, *prod;
	size_t prod_len;

	if (i >= m->nrings || page <= 0 || !size || (size & (size - 1)))
		return -EINVAL;
	r = &m->rings[i];
	/* the layout libbpf uses: page 0 consumer (rw), then producer page + data twice (ro) */
	prod_len = (size_t)page + 2 * (size_t)size;
	cons = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (cons == MAP_FAILED)
		return -errno;
	prod = mmap(NULL, prod_len, PROT_READ, MAP_SHARED, fd, page);
	if (prod == MAP_FAILED) {
		int err = -errno;

		munmap(cons, (size_t)page);
		return err;
	}
	r->cons_map = cons;
	r->prod_map = prod;
	r->prod_map_len = prod_len;
	r->view = (struct ring_view){
	    .consumer_pos = cons,
	    .producer_pos = prod,
	    .data = (const uint8_t *)prod + page,
	    .mask = (uint64_t)size - 1,
	};
	return 0;
}

void ringmerge__set_view(struct ringmerge *m, unsigned i, const struct ring_view *v)
{
	if (i < m->nrings)
		m->rings[i].view = *v;
}

/* The record at c->cons, committed and not discarded, skipping discarded ones; false when
 * the ring has nothing more for this drain (empty, or a record still being written). */
static bool cursor_load(const struct ring_view *v, struct ring_cursor *c)
{
	c->rec = NULL;
	while (c->cons < c->prod) {
		const uint32_t *hdr = (const uint32_t *)(v->data + (c->cons & v->mask));
		uint32_t word = __atomic_load_n(hdr, __ATOMIC_ACQUIRE);
		uint32_t len = word & ~(uint32_t)(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
		uint64_t step = ((uint64_t)len + BPF_RINGBUF_HDR_SZ + 7) & ~(uint64_t)7;

		if (word & BPF_RINGBUF_BUSY_BIT)
			return false; /* the records after it wait for it */
		if (word & BPF_RINGBUF_DISCARD_BIT) {
			c->cons += step;
			continue;
		}
		c->rec = (const uint8_t *)hdr + BPF_RINGBUF_HDR_SZ;
		c->len = len;
		c->ts = 0; /* a record too short to hold a time is not held back */
		if (len >= 16)
			memcpy(&c->ts, c->rec + 8, sizeof(c->ts));
		return true;
	}
	return false;
}

static void cursor_advance(const struct ring_view *v, struct ring_cursor *c)
{
	c->cons += ((uint64_t)c->len + BPF_RINGBUF_HDR_SZ + 7) & ~(uint64_t)7;
	cursor_load(v, c);
}

/* Ring whose next record is the oldest eligible one (<= cutoff), or -1; *limit gets the
 * time up to which that ring can be drained without looking at the others again (the
 * next-oldest head among the others, or the cutoff). Ties go to the lower index. */
static int oldest_head(const struct ringmerge *m, uint64_t cutoff, uint64_t *limit)
{
	uint64_t best_ts = 0, second = cutoff;
	int best = -1;

	for (unsigned i = 0; i < m->nrings; i++) {
		const struct ring_cursor *c = &m->cur[i];

		if (!c->rec || c->ts > cutoff)
			continue;
		if (best < 0 || c->ts < best_ts) {
			if (best >= 0 && best_ts < second)
				second = best_ts;
			best = (int)i;
			best_ts = c->ts;
		} else if (c->ts < second) {
			second = c->ts;
		}
	}
	*limit = second;
	return best;
}

/* A record committed after the drain that passed its time was already over goes out
 * behind newer ones: the consumer may then see a response before its request's other end.
 * Counted, so a user can tell such misses from the tracker's own. */
static void note_order(struct ringmerge *m, uint64_t ts)
{
	if (ts && ts < m->newest_ts)
		m->late++;
	else if (ts > m->newest_ts)
		m->newest_ts = ts;
}

uint64_t ringmerge__late(const struct ringmerge *m)
{
	return m ? m->late : 0;
}

void ringmerge__drain(struct ringmerge *m, uint64_t cutoff_ns)
{
	uint64_t limit;
	int i;

	for (unsigned r = 0; r < m->nrings; r++) {
		const struct ring_view *v = &m->rings[r].view;
		struct ring_cursor *c = &m->cur[r];

		if (!v->data)
			continue;
		c->cons = __atomic_load_n(v->consumer_pos, __ATOMIC_RELAXED);
		c->prod = __atomic_load_n(v->producer_pos, __ATOMIC_ACQUIRE);
		cursor_load(v, c);
	}
	/* a run of one ring goes out without rescanning the others: the rings are mostly
	 * written by one CPU at a time, so runs are long */
	while ((i = oldest_head(m, cutoff_ns, &limit)) >= 0) {
		const struct ring_view *v = &m->rings[i].view;
		struct ring_cursor *c = &m->cur[i];

		do {
			note_order(m, c->ts);
			m->deliver(m->ctx, c->rec, c->len);
			cursor_advance(v, c);
		} while (c->rec && c->ts <= limit);
		/* the space of what was read goes back to the kernel after each run: once per
		 * record would bounce the position's cache line with the producer's CPU */
		__atomic_store_n(v->consumer_pos, c->cons, __ATOMIC_RELEASE);
	}
	/* discarded records at the head of a ring that had nothing to deliver */
	for (unsigned r = 0; r < m->nrings; r++)
		if (m->rings[r].view.data)
			__atomic_store_n(m->rings[r].view.consumer_pos, m->cur[r].cons,
					 __ATOMIC_RELEASE);
}

uint64_t ringmerge__used_bytes(const struct ringmerge *m, unsigned i)
{
	const struct ring_view *v;
	uint64_t cons, prod;

	if (i >= m->nrings || !m->rings[i].view.consumer_pos)
		return 0;
	v = &m->rings[i].view;
	cons = __atomic_load_n(v->consumer_pos, __ATOMIC_RELAXED);
	prod = __atomic_load_n(v->producer_pos, __ATOMIC_ACQUIRE);
	return prod >= cons ? prod - cons : 0;
}

void ringmerge__free(struct ringmerge *m)
{
	long page = sysconf(_SC_PAGESIZE);

	if (!m)
		return;
	for (unsigned i = 0; m->rings && i < m->nrings; i++) {
		if (m->rings[i].cons_map)
			munmap(m->rings[i].cons_map, (size_t)page);
		if (m->rings[i].prod_map)
			munmap(m->rings[i].prod_map, m->rings[i].prod_map_len);
	}
	free(m->rings);
	free(m->cur);
	free(m);
}

uint64_t ringmerge__consumer_pos(const struct ringmerge *m, unsigned i)
{
	if (i >= m->nrings || !m->rings[i].view.consumer_pos)
		return 0;
	return __atomic_load_n(m->rings[i].view.consumer_pos, __ATOMIC_RELAXED);
}
