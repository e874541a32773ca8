// SPDX-License-Identifier: BSD-2-Clause
#include "sampler.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* SDKs are advised to encode thresholds with 4 significant hex digits; using the same
 * rounding keeps our decisions equal to theirs for the same configured ratio. */
#define THRESHOLD_PRECISION 4

void sampler_config_init(struct sampler_config *c)
{
	*c = (struct sampler_config){.root = SAMPLER_ALWAYS_ON, .parent_based = true, .ratio = 1.0};
}

/*
 * T = (1 - ratio) * 2^56, rounded half up at the last kept hex digit. The kept digits are
 * THRESHOLD_PRECISION plus one per leading 'f' that a small ratio produces (floor(-e / 4)
 * with ratio = m * 2^e, 0.5 <= m < 1), at most 12, as the specification's reference
 * conversion does. The kept ratio is computed as an integer first (ratio * 2^56 is exact
 * in a double), so that tiny ratios lose nothing to 1 - ratio.
 */
uint64_t sampler_ratio_threshold(double ratio)
{
	const uint64_t one = 1ULL << SAMPLER_RANDOM_BITS;
	uint64_t keep, t, unit;
	int exp, precision;

	if (!(ratio > 0))
		return SAMPLER_THRESHOLD_NEVER;
	if (ratio >= 1)
		return 0;
	/* the exponent e of ratio = m * 2^e, 0.5 <= m < 1 (frexp, without libm) */
	exp = 0;
	for (double m = ratio; m < 0.5; m *= 2)
		exp--;
	precision = THRESHOLD_PRECISION + (-exp) / 4;
	if (precision > 12)
		precision = 12;
	keep = (uint64_t)(ratio * (double)one + 0.5);
	if (keep == 0)
		keep = 1; /* the smallest ratio there is: 2^-56 */
	t = one - keep;
	unit = 1ULL << (4 * (14 - precision));
	t = (t + unit / 2) / unit * unit;
	if (t >= one) /* rounded up past the top: all 'f' at this precision */
		t = one - unit;
	return t;
}

uint64_t sampler_trace_randomness(const uint8_t trace_id[16])
{
	uint64_t r = 0;

	for (int i = 9; i < 16; i++)
		r = r << 8 | trace_id[i];
	return r;
}

bool sampler_decide(const struct sampler_config *c, const uint8_t trace_id[16], bool has_parent,
		    bool parent_sampled)
{
	if (c->parent_based && has_parent)
		return parent_sampled;
	switch (c->root) {
	case SAMPLER_ALWAYS_OFF:
		return false;
	case SAMPLER_TRACEIDRATIO:
		return sampler_ratio_keeps(c->threshold, trace_id);
	default:
		return true;
	}
}

static int parse_ratio(const char *arg, double *out)
{
	char *end;
	double v;

	if (!arg)
		return (*out = 1.0), 0;
	errno = 0;
	v = strtod(arg, &end);
	if (errno || end == arg || *end || !(v >= 0 && v <= 1))
		return -EINVAL;
	*out = v;
	return 0;
}

int sampler_config_set(struct sampler_config *c, const char *name, const char *arg, char *msg,
		       size_t msglen)
{
	static const struct {
		const char *name;
		uint8_t root;
		bool parent_based;
	} known[] = {
	    {"always_on", SAMPLER_ALWAYS_ON, false},
	    {"always_off", SAMPLER_ALWAYS_OFF, false},
	    {"traceidratio", SAMPLER_TRACEIDRATIO, false},
	    {"parentbased_always_on", SAMPLER_ALWAYS_ON, true},
	    {"parentbased_always_off", SAMPLER_ALWAYS_OFF, true},
	    {"parentbased_traceidratio", SAMPLER_TRACEIDRATIO, true},
	};
	size_t i;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(name, known[i].name) == 0)
			break;
	if (i == sizeof(known) / sizeof(known[0])) {
		snprintf(msg, msglen,
			 "unknown sampler (always_on, always_off, traceidratio, "
			 "parentbased_always_on, parentbased_always_off or "
			 "parentbased_traceidratio)");
		return -EINVAL;
	}
	c->root = known[i].root;
	c->parent_based = known[i].parent_based;
	c->ratio = 1.0;
	if (c->root == SAMPLER_TRACEIDRATIO && parse_ratio(arg, &c->ratio)) {
		snprintf(msg, msglen, "invalid sampler argument (a ratio from 0 to 1)");
		return -EINVAL;
	}
	c->threshold = c->root == SAMPLER_TRACEIDRATIO ? sampler_ratio_threshold(c->ratio) : 0;
	return 0;
}

void sampler_describe(const struct sampler_config *c, char *buf, size_t len)
{
	char root[64];

	if (c->root == SAMPLER_TRACEIDRATIO)
		snprintf(root, sizeof(root), "TraceIdRatioBased{%g}", c->ratio);
	else
		snprintf(root, sizeof(root), "%s",
			 c->root == SAMPLER_ALWAYS_OFF ? "AlwaysOffSampler" : "AlwaysOnSampler");
	if (c->parent_based)
		snprintf(buf, len, "ParentBased{root=%s}", root);
	else
		snprintf(buf, len, "%s", root);
}
