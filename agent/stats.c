// SPDX-License-Identifier: BSD-2-Clause
#include "stats.h"

#include <inttypes.h>

struct agent_stats g_stats;

void stats_print(FILE *out, int verbose)
{
#define X(name, desc)                                                                              \
	if (verbose || g_stats.name)                                                               \
		fprintf(out, "  %-28s %12" PRIu64 "  %s\n", #name, g_stats.name, desc);
	STATS_LIST(X)
#undef X
}
