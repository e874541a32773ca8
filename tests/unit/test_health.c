// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for /healthz's decision (health.h), with the clock injected: the loop's
 * heartbeat, rings that stop draining, an exporter that gets no answer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"

#define S HEALTH_NS_PER_S
#define T0 (1000 * S) /* a monotonic clock well past 0 */

static const struct health_config cfg = {
    .loop_stall_ns = 10 * S, .startup_ns = 120 * S, .export_stall_ns = 30 * S};

static bool check(const struct health_sample *s, char *why)
{
	return health_check(&cfg, s, why, HEALTH_WHY_MAX);
}

static void test_loop_heartbeat(void **state)
{
	struct health_sample s = {.now_ns = T0 + 5 * S, .started_ns = T0};
	char why[HEALTH_WHY_MAX];

	(void)state;
	assert_true(check(&s, why)); /* starting: within the allowance */
	assert_string_equal(why, "");
	s.now_ns = T0 + 121 * S;
	assert_false(check(&s, why)); /* never started */
	assert_non_null(strstr(why, "not started 121 s"));
	s.loop_beat_ns = T0 + 115 * S;
	assert_true(check(&s, why));
	s.now_ns = T0 + 124 * S;
	assert_true(check(&s, why)); /* 9 s */
	s.now_ns = T0 + 125 * S;
	assert_false(check(&s, why)); /* 10 s */
	assert_string_equal(why, "event loop stalled: no heartbeat for 10 s");
	s.now_ns = T0; /* a clock read before the beat (another thread's): not a stall */
	assert_true(check(&s, why));
}

/* A ring that holds records and whose consumer does not move is a stall once it lasts the
 * loop's threshold; one that moves, or is empty, is not. */
static void test_ring_watch(void **state)
{
	struct ring_watch *w = calloc(1, sizeof(*w));
	struct health_sample s = {.started_ns = T0, .loop_beat_ns = T0};
	unsigned ring = 99;
	char why[HEALTH_WHY_MAX];

	(void)state;
	for (unsigned i = 0; i < 4; i++)
		ring_watch__observe(w, i, 100, 0, T0);
	assert_int_equal(ring_watch__stalled_since(w, &ring), 0);
	/* ring 2 fills and is not consumed; ring 1 is busy but drains */
	for (uint64_t t = 1; t <= 12; t++) {
		ring_watch__observe(w, 1, 100 + t * 64, 4096, T0 + t * S);
		ring_watch__observe(w, 2, 100, 4096, T0 + t * S);
		ring_watch__observe(w, 3, 100, 0, T0 + t * S); /* idle */
	}
	s.ring_stalled_since_ns = ring_watch__stalled_since(w, &ring);
	assert_int_equal(s.ring_stalled_since_ns, T0 + 1 * S);
	assert_int_equal(ring, 2);
	s.ring_stalled = ring;
	s.loop_beat_ns = s.now_ns = T0 + 10 * S;
	assert_true(check(&s, why)); /* 9 s */
	s.loop_beat_ns = s.now_ns = T0 + 11 * S;
	assert_false(check(&s, why));
	assert_string_equal(why, "ring buffer 2 not draining for 10 s");
	/* it drains again: healthy at once */
	ring_watch__observe(w, 2, 164, 4096, T0 + 13 * S);
	assert_int_equal(ring_watch__stalled_since(w, &ring), 0);
	/* a ring past the watched ones is ignored, not written out of bounds */
	ring_watch__observe(w, HEALTH_RINGS_MAX, 1, 1, T0);
	free(w);
}

static void test_exporter(void **state)
{
	struct health_sample s = {.started_ns = T0, .exporting = true};
	char why[HEALTH_WHY_MAX];

	(void)state;
	s.loop_beat_ns = s.now_ns = T0 + 100 * S;
	s.export_pending = 0;
	s.export_waiting_since_ns = 0;
	assert_true(check(&s, why)); /* nothing to send */
	s.export_pending = 512;
	s.export_waiting_since_ns = T0 + 71 * S;
	assert_true(check(&s, why)); /* 29 s */
	s.export_waiting_since_ns = T0 + 70 * S;
	assert_false(check(&s, why));
	assert_string_equal(why, "exporter stuck: 512 spans waiting, no export attempt finished "
				 "for 30 s");
	s.export_waiting_since_ns = T0 + 130 * S; /* a Retry-After pause that ends later */
	assert_true(check(&s, why));
	s.export_waiting_since_ns = T0 + 70 * S;
	s.exporting = false; /* no exporter: nothing to be stuck */
	assert_true(check(&s, why));
}

static void test_export_default(void **state)
{
	(void)state;
	assert_int_equal(health_export_stall_default(10 * S), 30 * S); /* 2 x 10 + 5: 25, min 30 */
	assert_int_equal(health_export_stall_default(30 * S), 65 * S);
	assert_int_equal(health_export_stall_default(0), HEALTH_EXPORT_STALL_NO_TIMEOUT_NS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_loop_heartbeat),
	    cmocka_unit_test(test_ring_watch),
	    cmocka_unit_test(test_exporter),
	    cmocka_unit_test(test_export_default),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
