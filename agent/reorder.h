/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Merges the per-CPU ring buffers back into one stream in time order.
 *
 * The BPF programs write each record to the ring of the CPU they run on, so the records of
 * one connection can sit in several rings (a request read on CPU 0, its response written on
 * CPU 1). Each ring is in the order its CPU wrote it; the merge interleaves the rings by the
 * records' ts_ns (every record starts with kind, tgid, ts_ns: include/hoptrace/events.h).
 *
 * A record can still be in flight on another CPU while the rings are drained (reserved, not
 * yet committed): records newer than a cutoff are held back until the next drain, so one
 * committed a moment later is not overtaken. Records are copied out of the rings (libbpf
 * frees ring space when the callback returns); the copies are reused, not allocated per
 * record.
 */
#ifndef HOPTRACE_REORDER_H
#define HOPTRACE_REORDER_H

#include <stddef.h>
#include <stdint.h>

struct reorder;

/* Receives each record, in time order. */
typedef void (*reorder_deliver_fn)(void *ctx, const void *rec, size_t len);

/* A merger of nsources ordered streams; max_bytes bounds what it holds (records beyond are
 * dropped and counted). NULL on allocation failure. */
struct reorder *reorder__new(unsigned nsources, size_t max_bytes, reorder_deliver_fn deliver,
			     void *ctx);
void reorder__free(struct reorder *r);

/* Copy one record of source src. Returns 0, or -ENOBUFS when the bound is reached (the
 * record is dropped and counted). */
int reorder__push(struct reorder *r, unsigned src, const void *rec, size_t len);

/* Deliver, in ts_ns order, every held record with ts_ns <= cutoff_ns (UINT64_MAX: all);
 * records of one source keep their order. */
void reorder__release(struct reorder *r, uint64_t cutoff_ns);

/* Records dropped because the bound was reached. */
uint64_t reorder__dropped(const struct reorder *r);

#endif
