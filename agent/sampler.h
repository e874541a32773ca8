/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Head sampling, configured as OpenTelemetry SDKs are (OTEL_TRACES_SAMPLER and
 * OTEL_TRACES_SAMPLER_ARG, flags win), and decided by the trace id so that every hop on
 * every host agrees.
 *
 * The ratio rule is the OpenTelemetry consistent-probability rule (specification
 * trace/tracestate-probability-sampling.md, used by ProbabilitySampler, the successor of
 * TraceIdRatioBased): the randomness R is the 56 rightmost bits of the trace id (W3C Trace
 * Context Level 2), the rejection threshold T = (1 - ratio) * 2^56 rounded to 4 significant
 * hex digits (the precision the specification recommends to SDKs), and a trace is kept when
 * R >= T. A trace kept at some ratio is kept at every higher ratio.
 */
#ifndef HOPTRACE_SAMPLER_H
#define HOPTRACE_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SAMPLER_RANDOM_BITS 56
/* A threshold no randomness reaches: ratio 0 */
#define SAMPLER_THRESHOLD_NEVER (1ULL << SAMPLER_RANDOM_BITS)

enum sampler_root {
	SAMPLER_ALWAYS_ON = 0,
	SAMPLER_ALWAYS_OFF = 1,
	SAMPLER_TRACEIDRATIO = 2,
};

struct sampler_config {
	uint8_t root; /* enum sampler_root: traces without a parent (all, without parent_based) */
	bool parent_based;  /* a parent's sampled flag decides when there is a parent */
	double ratio;	    /* SAMPLER_TRACEIDRATIO */
	uint64_t threshold; /* rejection threshold T of ratio */
};

/* The OpenTelemetry default: parentbased_always_on. */
void sampler_config_init(struct sampler_config *c);
/* Set the sampler by name (always_on, always_off, traceidratio, parentbased_always_on,
 * parentbased_always_off, parentbased_traceidratio) and its argument (the ratio, 0..1; NULL:
 * 1.0; ignored by samplers without a ratio). 0 or -EINVAL with a one-line reason in msg. */
int sampler_config_set(struct sampler_config *c, const char *name, const char *arg, char *msg,
		       size_t msglen);
/* "ParentBased{root=TraceIdRatioBased{0.25}}" and the like, for the start-up log. */
void sampler_describe(const struct sampler_config *c, char *buf, size_t len);

/* The rejection threshold of a ratio in [0, 1] (4 significant hex digits, as the spec). */
uint64_t sampler_ratio_threshold(double ratio);
/* R: the 56 rightmost bits of the trace id. */
uint64_t sampler_trace_randomness(const uint8_t trace_id[16]);
/* The head decision for a span of this trace. has_parent: the span continues a context
 * (an incoming or outgoing traceparent, or a local parent span) whose sampled flag is
 * parent_sampled. */
bool sampler_decide(const struct sampler_config *c, const uint8_t trace_id[16], bool has_parent,
		    bool parent_sampled);
/* The ratio part alone (tail sampling uses it for traces with no error and nothing slow). */
static inline bool sampler_ratio_keeps(uint64_t threshold, const uint8_t trace_id[16])
{
	return sampler_trace_randomness(trace_id) >= threshold;
}

#endif
