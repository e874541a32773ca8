/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tail sampling configuration (--tail-*): which local traces sink_tail keeps, and the bounds
 * of its buffer.
 */
#ifndef HOPTRACE_TAIL_H
#define HOPTRACE_TAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TAIL_MAX_RULES 16
#define TAIL_RULE_NAME_MAX 64

/* A latency threshold for one service or one route (the span name's path, or http.route). */
struct tail_slow_rule {
	bool is_route; /* else a service.name */
	char name[TAIL_RULE_NAME_MAX];
	uint64_t slow_ns;
};

struct tail_config {
	bool enabled;
	uint64_t slow_ns; /* global threshold; 0: none */
	struct tail_slow_rule rules[TAIL_MAX_RULES];
	unsigned nrules;
	double ratio;		/* of the rest (no error, nothing slow) */
	uint64_t threshold;	/* sampler_ratio_threshold(ratio) */
	uint64_t quiet_ns;	/* a trace is complete this long after its last span ... */
	uint64_t max_delay_ns;	/* ... or this long after its first, whatever comes */
	size_t max_traces;	/* traces buffered at once */
	size_t max_spans;	/* spans buffered at once, all traces together */
	size_t max_trace_spans; /* spans of one trace */
};

void tail_config_init(struct tail_config *c);
/* --tail-slow VALUE: "MS" (global), "service=NAME:MS" or "route=/PATH:MS". 0 or -EINVAL. */
int tail_config_add_slow(struct tail_config *c, const char *arg);

#endif
