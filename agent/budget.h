/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * One byte budget for the state the traffic of traced processes makes the agent keep:
 * connections, requests waiting for their response (with the span they become) and header
 * bytes carried between reads. Any process can open connections and pipeline requests that
 * are never answered; with the budget, that costs the agent at most --memory-limit bytes,
 * and what the budget refuses is counted (budget_drops).
 *
 * Charges are estimates of what the allocator hands out (object size plus its header), not
 * measurements: the bound is on the sum of these, the process's RSS adds the fixed tables,
 * the ring buffers and the allocator's slack.
 */
#ifndef HOPTRACE_BUDGET_H
#define HOPTRACE_BUDGET_H

#include <stdbool.h>
#include <stddef.h>

/* Default --memory-limit: half the shipped unit's MemoryMax=256M, leaving the rest to the
 * ring buffers, the tables and the export queues. */
#define MEM_BUDGET_DEFAULT (128UL << 20)
/* What malloc adds to each block (glibc: one size word, 16-byte rounding). */
#define MEM_BUDGET_MALLOC_OVERHEAD 16

struct mem_budget {
	size_t limit; /* bytes; 0: no limit */
	size_t used;
	size_t peak;
};

/* Take n bytes; false (counted in budget_drops) when that would pass the limit. A NULL
 * budget takes anything. */
bool mem_budget__charge(struct mem_budget *b, size_t n);
/* Give back n bytes taken before. */
void mem_budget__release(struct mem_budget *b, size_t n);
/* The charge for one malloc'd object of n bytes. */
static inline size_t mem_budget__cost(size_t n)
{
	return (n + MEM_BUDGET_MALLOC_OVERHEAD + 15) & ~(size_t)15;
}

#endif
