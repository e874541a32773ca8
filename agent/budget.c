// SPDX-License-Identifier: BSD-2-Clause
#include "budget.h"

#include "stats.h"

bool mem_budget__charge(struct mem_budget *b, size_t n)
{
	if (!b)
		return true;
	if (b->limit && (n > b->limit || b->used > b->limit - n)) {
		STAT_INC(budget_drops);
		return false;
	}
	b->used += n;
	if (b->used > b->peak) {
		b->peak = b->used;
		g_stats.budget_peak_bytes = b->peak;
	}
	return true;
}

void mem_budget__release(struct mem_budget *b, size_t n)
{
	if (b)
		b->used = n < b->used ? b->used - n : 0;
}
