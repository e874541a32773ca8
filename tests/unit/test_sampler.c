// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for the head sampler: configuration, the spec's thresholds and decisions on
 * known trace ids at the ratio boundary. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "sampler.h"

/* a trace id whose 56 rightmost bits are r (the other bytes are noise the rule ignores) */
static void trace_with_randomness(uint8_t id[16], uint64_t r)
{
	memset(id, 0xa5, 9);
	for (int i = 15; i >= 9; i--, r >>= 8)
		id[i] = (uint8_t)r;
}

/* The specification's table (tracestate-probability-sampling.md, precision 4). */
static void test_thresholds_match_spec_table(void **state)
{
	(void)state;
	assert_int_equal(sampler_ratio_threshold(1.0), 0);
	assert_int_equal(sampler_ratio_threshold(0.5), 0x80000000000000ULL);
	assert_int_equal(sampler_ratio_threshold(0.25), 0xc0000000000000ULL);
	assert_int_equal(sampler_ratio_threshold(1.0 / 3), 0xaaab0000000000ULL);
	assert_int_equal(sampler_ratio_threshold(0.2), 0xcccd0000000000ULL);
	assert_int_equal(sampler_ratio_threshold(0.1), 0xe6660000000000ULL);
	assert_int_equal(sampler_ratio_threshold(0.01), 0xfd70a000000000ULL);
	assert_int_equal(sampler_ratio_threshold(0.001), 0xffbe7700000000ULL);
	assert_int_equal(sampler_ratio_threshold(0.0001), 0xfff97240000000ULL);
	assert_int_equal(sampler_ratio_threshold(0.000001), 0xffffef39000000ULL);
	assert_int_equal(sampler_ratio_threshold(0), SAMPLER_THRESHOLD_NEVER);
}

static void test_randomness_is_rightmost_56_bits(void **state)
{
	uint8_t id[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			  0xff, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07};

	(void)state;
	assert_int_equal(sampler_trace_randomness(id), 0x01020304050607ULL);
}

/* Known ids on each side of the boundary: R == T is kept, T - 1 is not. */
static void test_ratio_boundary(void **state)
{
	struct sampler_config c;
	uint8_t id[16];
	char msg[128];

	(void)state;
	sampler_config_init(&c);
	assert_int_equal(sampler_config_set(&c, "traceidratio", "0.25", msg, sizeof(msg)), 0);
	trace_with_randomness(id, 0xc0000000000000ULL);
	assert_true(sampler_decide(&c, id, false, false));
	trace_with_randomness(id, 0xbfffffffffffffULL);
	assert_false(sampler_decide(&c, id, false, false));
	trace_with_randomness(id, 0xffffffffffffffULL);
	assert_true(sampler_decide(&c, id, false, false));
	trace_with_randomness(id, 0);
	assert_false(sampler_decide(&c, id, false, false));
	/* traceidratio ignores the parent's flag */
	assert_false(sampler_decide(&c, id, true, true));
	/* a real id: 4bf92f3577b34da6a3ce929d0e0e4736, R = 0xce929d0e0e4736 >= 0xc0.. */
	{
		static const uint8_t w3c[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
						0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};

		assert_true(sampler_decide(&c, w3c, false, false));
		assert_int_equal(sampler_config_set(&c, "traceidratio", "0.1", msg, sizeof(msg)),
				 0);
		assert_false(sampler_decide(&c, w3c, false, false));
	}
}

/* Every trace kept at a ratio is kept at any higher one (the spec's consistency rule). */
static void test_higher_ratio_keeps_superset(void **state)
{
	static const double ratios[] = {0.001, 0.01, 0.1, 0.2, 0.3333, 0.5, 0.9, 1.0};
	uint64_t x = 88172645463325252ULL;
	uint8_t id[16];

	(void)state;
	for (int n = 0; n < 20000; n++) {
		bool kept = false;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		trace_with_randomness(id, x & ((1ULL << 56) - 1));
		for (size_t i = 0; i < sizeof(ratios) / sizeof(ratios[0]); i++) {
			bool k = sampler_ratio_keeps(sampler_ratio_threshold(ratios[i]), id);

			assert_true(!kept || k);
			kept = k;
		}
		assert_true(kept); /* ratio 1 keeps everything */
	}
}

static void test_parent_based(void **state)
{
	struct sampler_config c;
	uint8_t id[16];
	char msg[128];

	(void)state;
	trace_with_randomness(id, 0);
	sampler_config_init(&c); /* parentbased_always_on */
	assert_true(sampler_decide(&c, id, false, false));
	assert_false(sampler_decide(&c, id, true, false));
	assert_true(sampler_decide(&c, id, true, true));
	assert_int_equal(sampler_config_set(&c, "parentbased_always_off", NULL, msg, sizeof(msg)),
			 0);
	assert_false(sampler_decide(&c, id, false, false));
	assert_true(sampler_decide(&c, id, true, true));
	assert_int_equal(
	    sampler_config_set(&c, "parentbased_traceidratio", "0.5", msg, sizeof(msg)), 0);
	assert_false(sampler_decide(&c, id, false, false)); /* R = 0 < 2^55 */
	assert_true(sampler_decide(&c, id, true, true));
	assert_int_equal(sampler_config_set(&c, "always_off", NULL, msg, sizeof(msg)), 0);
	assert_false(sampler_decide(&c, id, true, true));
	assert_int_equal(sampler_config_set(&c, "always_on", NULL, msg, sizeof(msg)), 0);
	assert_true(sampler_decide(&c, id, true, false));
}

static void test_config_errors(void **state)
{
	struct sampler_config c;
	char msg[256];

	(void)state;
	sampler_config_init(&c);
	assert_int_equal(sampler_config_set(&c, "jaeger_remote", NULL, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "unknown sampler"));
	assert_int_equal(sampler_config_set(&c, "traceidratio", "1.5", msg, sizeof(msg)), -EINVAL);
	assert_int_equal(sampler_config_set(&c, "traceidratio", "-0.1", msg, sizeof(msg)), -EINVAL);
	assert_int_equal(sampler_config_set(&c, "traceidratio", "nan", msg, sizeof(msg)), -EINVAL);
	assert_int_equal(sampler_config_set(&c, "traceidratio", "0.5x", msg, sizeof(msg)), -EINVAL);
	assert_int_equal(sampler_config_set(&c, "traceidratio", "", msg, sizeof(msg)), -EINVAL);
	/* no argument: ratio 1; an argument to a sampler without a ratio is ignored */
	assert_int_equal(sampler_config_set(&c, "traceidratio", NULL, msg, sizeof(msg)), 0);
	assert_int_equal(c.threshold, 0);
	assert_int_equal(sampler_config_set(&c, "always_on", "junk", msg, sizeof(msg)), 0);
	sampler_describe(&c, msg, sizeof(msg));
	assert_string_equal(msg, "AlwaysOnSampler");
	assert_int_equal(
	    sampler_config_set(&c, "parentbased_traceidratio", "0.25", msg, sizeof(msg)), 0);
	sampler_describe(&c, msg, sizeof(msg));
	assert_string_equal(msg, "ParentBased{root=TraceIdRatioBased{0.25}}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_thresholds_match_spec_table),
	    cmocka_unit_test(test_randomness_is_rightmost_56_bits),
	    cmocka_unit_test(test_ratio_boundary),
	    cmocka_unit_test(test_higher_ratio_keeps_superset),
	    cmocka_unit_test(test_parent_based),
	    cmocka_unit_test(test_config_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
