// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for what a traced process can make the agent believe about it: its
 * OTEL_RESOURCE_ATTRIBUTES (reserved keys, caps) and, through a late /proc read, its
 * identity. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"
#include "resource.h"
#include "stats.h"

static const char *extra_value(const struct resource *r, const char *key)
{
	for (unsigned i = 0; i < r->nextra; i++)
		if (strcmp(r->extra[i].key, key) == 0)
			return r->extra[i].value;
	return NULL;
}

/* A process may not claim what the agent observes of it or of its host. */
static void test_reserved_keys_dropped(void **state)
{
	struct resource *r = resource_new(1, 2);
	uint64_t before = g_stats.resource_attrs_dropped;

	(void)state;
	resource_parse_attributes(r, "host.name=evil,k8s.node.name=evil,process.pid=1,"
				     "os.type=plan9,telemetry.sdk.name=x,container.id=c,"
				     "k8s.pod.uid=u,host.id=h,team=core,k8s.pod.name=web-1");
	assert_int_equal(r->nextra, 2);
	assert_string_equal(extra_value(r, "team"), "core");
	assert_string_equal(extra_value(r, "k8s.pod.name"), "web-1");
	assert_int_equal(g_stats.resource_attrs_dropped - before, 8);
	resource_put(r);
}

/* Every span of the process carries its attributes: each value, key, the total and the
 * count are capped, and what does not fit is counted. */
static void test_caps(void **state)
{
	char *list = malloc(200 * 1024);
	char *p = list;
	struct resource *r = resource_new(1, 2);
	uint64_t before = g_stats.resource_attrs_dropped;
	size_t total = 0;

	(void)state;
	/* one value just at the cap, one just over, a key over, a 120 KiB value */
	p += sprintf(p, "ok=");
	memset(p, 'v', RESOURCE_VALUE_MAX);
	p += RESOURCE_VALUE_MAX;
	p += sprintf(p, ",over=");
	memset(p, 'v', RESOURCE_VALUE_MAX + 1);
	p += RESOURCE_VALUE_MAX + 1;
	*p++ = ',';
	memset(p, 'k', RESOURCE_KEY_MAX + 1);
	p += RESOURCE_KEY_MAX + 1;
	p += sprintf(p, "=1,huge=");
	memset(p, 'h', 120 * 1024);
	p += 120 * 1024;
	/* then many 200-byte attributes: the 4 KiB total stops them before the count does */
	for (int i = 0; i < 40; i++) {
		p += sprintf(p, ",a%02d=", i);
		memset(p, 'x', 200);
		p += 200;
	}
	*p = '\0';
	resource_parse_attributes(r, list);
	assert_non_null(extra_value(r, "ok"));
	assert_null(extra_value(r, "over"));
	assert_null(extra_value(r, "huge"));
	assert_true(r->nextra <= RESOURCE_MAX_EXTRA);
	for (unsigned i = 0; i < r->nextra; i++) {
		assert_true(strlen(r->extra[i].value) <= RESOURCE_VALUE_MAX);
		total += strlen(r->extra[i].key) + strlen(r->extra[i].value);
	}
	assert_true(total <= RESOURCE_EXTRA_BYTES_MAX);
	assert_int_equal(g_stats.resource_attrs_dropped - before, 3 + 40 + 1 - r->nextra);
	resource_put(r);
	free(list);

	/* the count cap alone */
	r = resource_new(1, 2);
	before = g_stats.resource_attrs_dropped;
	resource_parse_attributes(r, "a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8,i=9,j=10,k=11,l=12,m=13,"
				     "n=14,o=15,p=16,q=17,r=18");
	assert_int_equal(r->nextra, RESOURCE_MAX_EXTRA);
	assert_int_equal(g_stats.resource_attrs_dropped - before, 2);
	resource_put(r);
}

/* Field 22 of /proc/PID/stat, whatever the command name holds (spaces, parentheses). */
static void test_stat_start_ticks(void **state)
{
	static const char *const ok[] = {
	    "1234 (python3) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 1 0 0 20 0 1 0 987654 "
	    "12345678 100 18446744073709551615",
	    "7 (a) b) c 1 2) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 987654 0 0",
	    "7 (x) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 987654",
	};
	static const char *const bad[] = {
	    "",
	    "1234 python3 S 1",
	    "1234 (python3) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 1 0 0 20 0 1 0",
	    "1234 (python3) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 1 0 0 20 0 1 0 x12",
	    "1 (p) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99999999999999999999999",
	};
	uint64_t t;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		t = 0;
		assert_int_equal(proc_stat_start_ticks(ok[i], strlen(ok[i]), &t), 0);
		assert_int_equal(t, 987654);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(proc_stat_start_ticks(bad[i], strlen(bad[i]), &t), -EINVAL);
}

/* The same process: its ticks at 100 Hz, give or take one. A process that took the pid
 * later: not the same. Suspend widens the window by what was suspended, no more. */
static void test_start_matches(void **state)
{
	const uint64_t ms = 1000000ULL, start = 5000 * 1000 * ms + 3 * ms; /* 5000.003 s */

	(void)state;
	assert_true(proc_start_matches(500000, 100, start, 0));
	assert_true(proc_start_matches(500001, 100, start, 0));
	assert_true(proc_start_matches(499999, 100, start, 0));
	assert_false(proc_start_matches(500003, 100, start, 0)); /* 30 ms later */
	assert_false(proc_start_matches(400000, 100, start, 0));
	assert_false(proc_start_matches(500000, 0, start, 0));
	/* suspended 60 s before the process started: stat is 60 s ahead */
	assert_true(proc_start_matches(506000, 100, start, 60000 * ms));
	assert_false(proc_start_matches(506100, 100, start, 60000 * ms));
	assert_true(proc_start_matches(5000003, 1000, start, 0));
	assert_false(proc_start_matches(5000009, 1000, start, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reserved_keys_dropped),
	    cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_stat_start_ticks),
	    cmocka_unit_test(test_start_matches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
