/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Reads the per-CPU BPF ring buffers in place and delivers their records as one stream in
 * time order.
 *
 * The BPF programs write each record to the ring of the CPU they run on, so the records of
 * one connection can sit in several rings (a request read on CPU 0, its response written on
 * CPU 1). Each ring is in the order its CPU wrote it; the merge interleaves the rings by the
 * records' ts_ns (every record starts with u32 kind, u32 tgid, u64 ts_ns:
 * include/hoptrace/events.h).
 *
 * A record can still be in flight on another CPU while the rings are drained (reserved, not
 * yet committed): records newer than a cutoff stay in their ring until the next drain, so
 * one committed a moment later is not overtaken. Records are handed to the consumer where
 * they lie in the ring mapping (read-only), so nothing is copied or allocated per record;
 * the kernel gets the space back when the drain ends. This is libbpf's ring_buffer
 * consumer, less the callback-per-ring model, which cannot leave a record for later.
 */
#ifndef HOPTRACE_RINGMERGE_H
#define HOPTRACE_RINGMERGE_H

#include <stddef.h>
#include <stdint.h>

/* One ring as the kernel lays it out (BPF_MAP_TYPE_RINGBUF): a consumer position the
 * reader writes, a producer position the kernel writes, and a power-of-two data area
 * mapped twice in a row, so a record never wraps. */
struct ring_view {
	uint64_t *consumer_pos;
	const uint64_t *producer_pos;
	const uint8_t *data;
	uint64_t mask; /* data size - 1 */
};

/* Receives each record, in time order; rec is valid until it returns. */
typedef void (*ringmerge_deliver_fn)(void *ctx, const void *rec, size_t len);

struct ringmerge;

/* A merger of nrings rings, each set with ringmerge__map() or ringmerge__set_view(). */
struct ringmerge *ringmerge__new(unsigned nrings, ringmerge_deliver_fn deliver, void *ctx);
/* Map ring i from its map fd (a BPF ring buffer of size bytes). Returns 0 or -errno. */
int ringmerge__map(struct ringmerge *m, unsigned i, int fd, uint32_t size);
/* Use memory laid out as a ring (tests). */
void ringmerge__set_view(struct ringmerge *m, unsigned i, const struct ring_view *v);
/* Deliver, in ts_ns order, every committed record with ts_ns <= cutoff_ns (UINT64_MAX:
 * all); records of one ring keep their order. */
void ringmerge__drain(struct ringmerge *m, uint64_t cutoff_ns);
/* Bytes of ring i the kernel counts as taken: written, not yet released by a drain (records
 * held back for the next one included). 0 for an unset ring. */
uint64_t ringmerge__used_bytes(const struct ringmerge *m, unsigned i);
/* Records delivered so far behind a newer one (committed later than the hold allowed). */
/* Ring i's consumer position (bytes consumed so far): it moves while the ring drains. */
uint64_t ringmerge__consumer_pos(const struct ringmerge *m, unsigned i);
uint64_t ringmerge__late(const struct ringmerge *m);
/* Unmap the rings and free. NULL is ignored. */
void ringmerge__free(struct ringmerge *m);

#endif
