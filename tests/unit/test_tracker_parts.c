// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for the tracker's building blocks: hash map, request-target
 * and address helpers, resource attribute parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exchange.h"
#include "hashmap.h"
#include "proc.h"
#include "resource.h"
#include "span.h"
#include "text.h"

static void test_hashmap_put_get_del_grow(void **state)
{
	struct u64map m;
	uint64_t k;
	void *v;
	size_t n = 0;

	(void)state;
	assert_int_equal(u64map_init(&m, 100000), 0);
	for (uintptr_t i = 1; i <= 5000; i++)
		assert_int_equal(u64map_put(&m, i * 7919, (void *)i), 0);
	assert_int_equal(m.count, 5000);
	for (uintptr_t i = 1; i <= 5000; i++)
		assert_ptr_equal(u64map_get(&m, i * 7919), (void *)i);
	for (uintptr_t i = 1; i <= 5000; i += 2)
		assert_ptr_equal(u64map_del(&m, i * 7919), (void *)i);
	assert_null(u64map_get(&m, 7919));
	assert_ptr_equal(u64map_get(&m, 2 * 7919), (void *)2);
	for (size_t it = 0; u64map_next(&m, &it, &k, &v);)
		n++;
	assert_int_equal(n, 2500);
	/* replacing keeps the count */
	assert_int_equal(u64map_put(&m, 2 * 7919, (void *)99), 0);
	assert_int_equal(m.count, 2500);
	u64map_free(&m);
}

static void test_hashmap_limit(void **state)
{
	struct u64map m;

	(void)state;
	assert_int_equal(u64map_init(&m, 3), 0);
	for (uintptr_t i = 1; i <= 3; i++)
		assert_int_equal(u64map_put(&m, i, (void *)i), 0);
	assert_int_equal(u64map_put(&m, 4, (void *)4), -ENOSPC);
	u64map_del(&m, 1);
	assert_int_equal(u64map_put(&m, 4, (void *)4), 0);
	u64map_free(&m);
}

static void test_tuple_addr_string(void **state)
{
	uint8_t v4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
	uint8_t v6[16] = {0};
	char buf[64];

	(void)state;
	tuple_addr_string(v4, buf, sizeof(buf));
	assert_string_equal(buf, "127.0.0.1");
	v6[15] = 1;
	tuple_addr_string(v6, buf, sizeof(buf));
	assert_string_equal(buf, "::1");
	/* IPv4 is formatted by hand: every octet value in every position, as inet_ntop does */
	for (int v = 0; v < 256; v++) {
		for (int at = 12; at < 16; at++) {
			char want[INET_ADDRSTRLEN];

			memset(v4 + 12, at == 12 ? 9 : 200, 4);
			v4[at] = (uint8_t)v;
			inet_ntop(AF_INET, v4 + 12, want, sizeof(want));
			tuple_addr_string(v4, buf, sizeof(buf));
			assert_string_equal(buf, want);
		}
	}
	tuple_addr_string(v4, buf, 8); /* too small for the longest: truncated, terminated */
	assert_true(strlen(buf) < 8);
}

/* Decimal formatting against printf: every power of ten and its neighbours, both ends. */
static void test_text_put_u64(void **state)
{
	uint64_t p = 1;

	(void)state;
	for (int i = 0; i < 20; i++, p *= 10) {
		uint64_t vals[] = {p - 1, p, p + 1, p * 7 + 3};

		for (size_t k = 0; k < sizeof(vals) / sizeof(vals[0]); k++) {
			char got[TEXT_U64_DIGITS_MAX + 1], want[32];
			char *end = text_put_u64(got, vals[k]);

			*end = '\0';
			snprintf(want, sizeof(want), "%" PRIu64, vals[k]);
			assert_string_equal(got, want);
		}
	}
	{
		char got[TEXT_U64_DIGITS_MAX + 1];

		*text_put_u64(got, UINT64_MAX) = '\0';
		assert_string_equal(got, "18446744073709551615");
	}
}

static void test_resource_attributes(void **state)
{
	struct resource *r = resource_new(1, 2);

	(void)state;
	resource_parse_attributes(r, " deployment.environment = prod ,team=a%20b,,k=");
	assert_int_equal(r->nextra, 3);
	assert_string_equal(r->extra[0].key, "deployment.environment");
	assert_string_equal(r->extra[0].value, "prod");
	assert_string_equal(r->extra[1].value, "a b");
	assert_string_equal(r->extra[2].key, "k");
	assert_string_equal(r->extra[2].value, "");
	resource_put(r);

	/* malformed (a member without '=', an empty key, a bad escape): discarded whole */
	static const char *const bad[] = {"a=1,broken", "a=1,=x", "a=%zz"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = resource_new(1, 2);
		resource_parse_attributes(r, bad[i]);
		assert_int_equal(r->nextra, 0);
		resource_put(r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hashmap_put_get_del_grow), cmocka_unit_test(test_hashmap_limit),
	    cmocka_unit_test(test_tuple_addr_string),	     cmocka_unit_test(test_text_put_u64),
	    cmocka_unit_test(test_resource_attributes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
