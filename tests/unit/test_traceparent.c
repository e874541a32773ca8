// SPDX-License-Identifier: BSD-2-Clause
/*
 * Unit tests for the W3C Trace Context codec. "(n)" refers to item n of the case list in
 * techniques.md section 8, itself taken from the W3C harness (trace-context test/test.py).
 * Items about header names and duplicate headers (2, 18, 19, 22, 24) belong to the HTTP parser,
 * not to these functions.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traceparent.h"

#define TID "12345678901234567890123456789012"
#define PID "1234567890123456"
#define FUTURE "-what-the-future-will-be-like"

/*
 * Every input is copied to a heap buffer of exactly its length, without a NUL, so that ASan
 * reports any read past len.
 */
static char *dup_exact(const char *s, size_t len)
{
	char *p = malloc(len ? len : 1);

	assert_non_null(p);
	memcpy(p, s, len);
	return p;
}

static enum traceparent_result parse_mem(const char *s, size_t len, struct trace_context *tc)
{
	char *copy = dup_exact(s, len);
	enum traceparent_result r = traceparent_parse(copy, len, tc);

	free(copy);
	return r;
}

static void expect_tp_valid(const char *s, struct trace_context *tc)
{
	if (parse_mem(s, strlen(s), tc) != TRACEPARENT_VALID)
		fail_msg("rejected valid traceparent \"%s\"", s);
}

static void expect_tp_invalid(const char *s)
{
	struct trace_context tc;

	if (parse_mem(s, strlen(s), &tc) != TRACEPARENT_INVALID)
		fail_msg("accepted invalid traceparent \"%s\"", s);
}

static void assert_ids(const struct trace_context *tc, const char *tid, const char *pid)
{
	char hex[2 * sizeof(tc->trace_id) + 1];

	hex_encode(tc->trace_id, sizeof(tc->trace_id), hex);
	assert_string_equal(hex, tid);
	hex_encode(tc->parent_id, sizeof(tc->parent_id), hex);
	assert_string_equal(hex, pid);
}

/* Normalise a NULL-terminated list of header values; want == NULL means "invalid". */
static void expect_ts_in(const char *const *values, const char *want, size_t outlen)
{
	const char *parts[64];
	size_t lens[64];
	size_t n = 0;
	char *out = malloc(outlen ? outlen : 1);
	int rc;

	assert_non_null(out);
	memset(out, 'x', outlen ? outlen : 1);
	for (; values[n]; n++) {
		assert_true(n < 64);
		lens[n] = strlen(values[n]);
		parts[n] = dup_exact(values[n], lens[n]);
	}
	rc = tracestate_normalise(parts, lens, n, out, outlen);
	if (want) {
		if (rc < 0)
			fail_msg("rejected valid tracestate, first value \"%s\"",
				 n ? values[0] : "");
		assert_int_equal(rc, strlen(want));
		assert_string_equal(out, want);
	} else {
		if (rc != -1)
			fail_msg("accepted invalid tracestate, first value \"%s\"",
				 n ? values[0] : "");
		if (outlen)
			assert_int_equal(out[0], '\0');
	}
	for (size_t i = 0; i < n; i++)
		free((void *)parts[i]);
	free(out);
}

#define EXPECT_TS(want, ...)                                                                       \
	expect_ts_in((const char *const[]){__VA_ARGS__, NULL}, want, TRACESTATE_MAX_LEN + 1)

/* A string of n copies of c followed by suffix; the caller frees it. */
static char *repeat(char c, size_t n, const char *suffix)
{
	size_t slen = strlen(suffix);
	char *s = malloc(n + slen + 1);

	assert_non_null(s);
	memset(s, c, n);
	memcpy(s + n, suffix, slen + 1);
	return s;
}

/* ---- traceparent: accept ------------------------------------------------------------- */

/* (1) */
static void test_tp_plain(void **state)
{
	struct trace_context tc;

	(void)state;
	expect_tp_valid("00-" TID "-" PID "-01", &tc);
	assert_ids(&tc, TID, PID);
	assert_int_equal(tc.flags, 0x01);
	assert_int_equal(tc.version, 0x00);
}

/* (1) flags are stored as received; masking happens when emitting */
static void test_tp_flags(void **state)
{
	static const struct {
		const char *s;
		uint8_t flags;
	} cases[] = {
	    {"00-" TID "-" PID "-00", 0x00}, {"00-" TID "-" PID "-02", 0x02},
	    {"00-" TID "-" PID "-03", 0x03}, {"00-" TID "-" PID "-ff", 0xff},
	    {"00-" TID "-" PID "-a5", 0xa5},
	};
	struct trace_context tc;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		expect_tp_valid(cases[i].s, &tc);
		assert_int_equal(tc.flags, cases[i].flags);
	}
}

/* (3) */
static void test_tp_ows(void **state)
{
	static const char *const cases[] = {
	    " 00-" TID "-" PID "-01",  "\t00-" TID "-" PID "-01",     "00-" TID "-" PID "-01 ",
	    "00-" TID "-" PID "-01\t", "\t 00-" TID "-" PID "-01 \t", "  \t\t00-" TID "-" PID "-01",
	};
	struct trace_context tc;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		expect_tp_valid(cases[i], &tc);
		assert_ids(&tc, TID, PID);
		assert_int_equal(tc.flags, 0x01);
	}
}

/* (4) */
static void test_tp_future_version(void **state)
{
	static const char *const cases[] = {
	    "cc-" TID "-" PID "-01",	 "cc-" TID "-" PID "-01" FUTURE,
	    "cc-" TID "-" PID "-01-",	 "01-" TID "-" PID "-01",
	    "fe-" TID "-" PID "-01-x-y", " cc-" TID "-" PID "-01" FUTURE "\t",
	};
	struct trace_context tc;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		expect_tp_valid(cases[i], &tc);
		assert_ids(&tc, TID, PID);
		assert_int_equal(tc.flags, 0x01);
	}
	expect_tp_valid("cc-" TID "-" PID "-01", &tc);
	assert_int_equal(tc.version, 0xcc);
	expect_tp_valid("fe-" TID "-" PID "-01", &tc);
	assert_int_equal(tc.version, 0xfe);
}

/* (5) */
static void test_tp_hex_letters(void **state)
{
	struct trace_context tc;

	(void)state;
	expect_tp_valid("00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01", &tc);
	assert_ids(&tc, "ffffffffffffffffffffffffffffffff", "ffffffffffffffff");
	expect_tp_valid("00-0123456789abcdef0123456789abcdef-fedcba9876543210-01", &tc);
	assert_ids(&tc, "0123456789abcdef0123456789abcdef", "fedcba9876543210");
	/* only one non-zero byte is enough */
	expect_tp_valid("00-00000000000000000000000000000001-0000000000000001-00", &tc);
}

/* ---- traceparent: reject ------------------------------------------------------------- */

/* (6) */
static void test_tp_v00_trailing(void **state)
{
	(void)state;
	expect_tp_invalid("00-" TID "-" PID "-01.");
	expect_tp_invalid("00-" TID "-" PID "-01" FUTURE);
	expect_tp_invalid("00-" TID "-" PID "-01-");
	expect_tp_invalid("00-" TID "-" PID "-01x");
}

/* (7) */
static void test_tp_future_bad_separator(void **state)
{
	(void)state;
	expect_tp_invalid("cc-" TID "-" PID "-01.what-the-future-will-be-like");
	expect_tp_invalid("cc-" TID "-" PID "-01x");
	expect_tp_invalid("cc-" TID "-" PID "-010");
}

/* (8) */
static void test_tp_version_ff(void **state)
{
	(void)state;
	expect_tp_invalid("ff-" TID "-" PID "-01");
	expect_tp_invalid("ff-" TID "-" PID "-01" FUTURE);
}

/* (9) and (20) for the version field */
static void test_tp_version_chars(void **state)
{
	(void)state;
	expect_tp_invalid(".0-" TID "-" PID "-01");
	expect_tp_invalid("0.-" TID "-" PID "-01");
	expect_tp_invalid("CC-" TID "-" PID "-01");
	expect_tp_invalid("0A-" TID "-" PID "-01");
	expect_tp_invalid("FF-" TID "-" PID "-01");
	expect_tp_invalid("g0-" TID "-" PID "-01");
}

/* (10) */
static void test_tp_version_length(void **state)
{
	(void)state;
	expect_tp_invalid("000-" TID "-" PID "-01");
	expect_tp_invalid("0000-" TID "-" PID "-01");
	expect_tp_invalid("0-" TID "-" PID "-01");
	expect_tp_invalid("-" TID "-" PID "-01");
}

/* (11) */
static void test_tp_trace_id_zero(void **state)
{
	(void)state;
	expect_tp_invalid("00-00000000000000000000000000000000-" PID "-01");
	expect_tp_invalid("cc-00000000000000000000000000000000-" PID "-01" FUTURE);
}

/* (12) */
static void test_tp_trace_id_chars(void **state)
{
	(void)state;
	expect_tp_invalid("00-.2345678901234567890123456789012-" PID "-01");
	expect_tp_invalid("00-1234567890123456789012345678901.-" PID "-01");
	expect_tp_invalid("00-12345678901234g67890123456789012-" PID "-01");
}

/* (13) */
static void test_tp_trace_id_length(void **state)
{
	(void)state;
	expect_tp_invalid("00-" TID "3-" PID "-01");
	expect_tp_invalid("00-1234567890123456789012345678901-" PID "-01");
	expect_tp_invalid("cc-" TID "3-" PID "-01" FUTURE);
	expect_tp_invalid("cc-1234567890123456789012345678901-" PID "-01" FUTURE);
}

/* (14) */
static void test_tp_parent_id_zero(void **state)
{
	(void)state;
	expect_tp_invalid("00-" TID "-0000000000000000-01");
	expect_tp_invalid("cc-" TID "-0000000000000000-01" FUTURE);
}

/* (15) */
static void test_tp_parent_id_chars(void **state)
{
	(void)state;
	expect_tp_invalid("00-" TID "-.234567890123456-01");
	expect_tp_invalid("00-" TID "-123456789012345.-01");
}

/* (16) */
static void test_tp_parent_id_length(void **state)
{
	(void)state;
	expect_tp_invalid("00-" TID "-12345678901234567-01");
	expect_tp_invalid("00-" TID "-123456789012345-01");
	expect_tp_invalid("cc-" TID "-12345678901234567-01" FUTURE);
}

/* (17) */
static void test_tp_flags_invalid(void **state)
{
	(void)state;
	expect_tp_invalid("00-" TID "-" PID "-.0");
	expect_tp_invalid("00-" TID "-" PID "-0.");
	expect_tp_invalid("00-" TID "-" PID "-001");
	expect_tp_invalid("00-" TID "-" PID "-1");
	expect_tp_invalid("00-" TID "-" PID "-");
	expect_tp_invalid("cc-" TID "-" PID "-.1" FUTURE);
}

/* (20) */
static void test_tp_uppercase(void **state)
{
	(void)state;
	expect_tp_invalid("00-ABCDEF78901234567890123456789012-" PID "-01");
	expect_tp_invalid("00-" TID "-ABCDEF7890123456-01");
	expect_tp_invalid("00-" TID "-" PID "-0A");
	expect_tp_invalid("00-" TID "-" PID "-FF");
}

/* (21) */
static void test_tp_future_short(void **state)
{
	(void)state;
	expect_tp_invalid("cc-" TID "-" PID "-0");
	expect_tp_invalid("cc-" TID "-" PID "-");
	expect_tp_invalid("cc-" TID "-" PID);
	expect_tp_invalid("cc-" TID);
}

static void test_tp_separators(void **state)
{
	(void)state;
	expect_tp_invalid("00_" TID "-" PID "-01");
	expect_tp_invalid("00-" TID "_" PID "-01");
	expect_tp_invalid("00-" TID "-" PID "_01");
	expect_tp_invalid("00 " TID " " PID " 01");
	expect_tp_invalid("00." TID "." PID ".01");
}

static void test_tp_empty(void **state)
{
	struct trace_context tc;

	(void)state;
	expect_tp_invalid("");
	expect_tp_invalid(" ");
	expect_tp_invalid(" \t \t");
	assert_int_equal(traceparent_parse(NULL, 0, &tc), TRACEPARENT_INVALID);
	assert_int_equal(traceparent_parse("00-" TID "-" PID "-01", TRACEPARENT_STR_LEN, NULL),
			 TRACEPARENT_INVALID);
}

/* Only SP and HTAB are OWS; OWS inside the value is not trimmed. */
static void test_tp_other_whitespace(void **state)
{
	(void)state;
	expect_tp_invalid("\r00-" TID "-" PID "-01");
	expect_tp_invalid("00-" TID "-" PID "-01\r");
	expect_tp_invalid("00-" TID "-" PID "-01\n");
	expect_tp_invalid("\v00-" TID "-" PID "-01");
	expect_tp_invalid("00-" TID "-" PID "-01\f");
	expect_tp_invalid("00 -" TID "-" PID "-01");
	expect_tp_invalid("00- " TID "-" PID "-01");
	expect_tp_invalid("00-" TID "-" PID "- 01");
}

/* The parser honours len, not NUL termination. */
static void test_tp_len(void **state)
{
	static const char hdr[] = "00-" TID "-" PID "-01";
	struct trace_context tc;
	char buf[80];

	(void)state;
	memcpy(buf, hdr, TRACEPARENT_STR_LEN);
	memcpy(buf + TRACEPARENT_STR_LEN, "-junk", 6);
	assert_int_equal(parse_mem(buf, TRACEPARENT_STR_LEN, &tc), TRACEPARENT_VALID);
	assert_int_equal(parse_mem(buf, TRACEPARENT_STR_LEN + 5, &tc), TRACEPARENT_INVALID);
	assert_int_equal(parse_mem(buf, TRACEPARENT_STR_LEN - 1, &tc), TRACEPARENT_INVALID);
	/* an embedded NUL is just an invalid byte, here in place of the last '-' */
	buf[TRACEPARENT_STR_LEN - 3] = '\0';
	assert_int_equal(parse_mem(buf, TRACEPARENT_STR_LEN, &tc), TRACEPARENT_INVALID);
}

static void test_tp_out_untouched_on_failure(void **state)
{
	struct trace_context tc, before;

	(void)state;
	memset(&tc, 0x5a, sizeof(tc));
	before = tc;
	assert_int_equal(parse_mem("00-" TID "-0000000000000000-01", TRACEPARENT_STR_LEN, &tc),
			 TRACEPARENT_INVALID);
	assert_int_equal(parse_mem("00-" TID "-" PID "-0.", TRACEPARENT_STR_LEN, &tc),
			 TRACEPARENT_INVALID);
	assert_memory_equal(&tc, &before, sizeof(tc));
}

/* ---- traceparent_format -------------------------------------------------------------- */

static void test_format_round_trip(void **state)
{
	static const char *const cases[] = {
	    "00-" TID "-" PID "-00",
	    "00-" TID "-" PID "-01",
	    "00-" TID "-" PID "-02",
	    "00-" TID "-" PID "-03",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	    "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01",
	};
	struct trace_context tc;
	char buf[TRACEPARENT_STR_LEN + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		expect_tp_valid(cases[i], &tc);
		assert_int_equal(traceparent_format(&tc, buf, sizeof(buf)), TRACEPARENT_STR_LEN);
		assert_string_equal(buf, cases[i]);
	}
}

/* (1) reserved flag bits are not propagated; the random bit (Level 2) is */
static void test_format_masks_flags(void **state)
{
	static const struct {
		uint8_t in;
		const char *out;
	} cases[] = {
	    {0xff, "03"}, {0x04, "00"}, {0x81, "01"}, {0x02, "02"}, {0xfe, "02"},
	};
	struct trace_context tc;
	char buf[TRACEPARENT_STR_LEN + 1];

	(void)state;
	expect_tp_valid("00-" TID "-" PID "-01", &tc);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tc.flags = cases[i].in;
		assert_int_equal(traceparent_format(&tc, buf, sizeof(buf)), TRACEPARENT_STR_LEN);
		assert_string_equal(buf + TRACEPARENT_STR_LEN - 2, cases[i].out);
		assert_memory_equal(buf, "00-" TID "-" PID "-", TRACEPARENT_STR_LEN - 2);
	}
}

/* (4) a future version is re-emitted as 00, without its extra fields */
static void test_format_future_as_v00(void **state)
{
	struct trace_context tc;
	char buf[TRACEPARENT_STR_LEN + 1];

	(void)state;
	expect_tp_valid("cc-" TID "-" PID "-ff" FUTURE, &tc);
	assert_int_equal(traceparent_format(&tc, buf, sizeof(buf)), TRACEPARENT_STR_LEN);
	assert_string_equal(buf, "00-" TID "-" PID "-03");
}

/* format then parse gives back the same context, for ids with every nibble value */
static void test_format_parse_round_trip(void **state)
{
	struct trace_context tc, back;
	char buf[TRACEPARENT_STR_LEN + 1];

	(void)state;
	for (unsigned int seed = 1; seed < 256; seed += 7) {
		for (size_t i = 0; i < sizeof(tc.trace_id); i++)
			tc.trace_id[i] = (uint8_t)(seed * 31 + i * 17);
		for (size_t i = 0; i < sizeof(tc.parent_id); i++)
			tc.parent_id[i] = (uint8_t)(seed * 13 + i * 29 + 1);
		tc.flags = (uint8_t)seed;
		tc.version = 0;
		assert_int_equal(traceparent_format(&tc, buf, sizeof(buf)), TRACEPARENT_STR_LEN);
		assert_int_equal(strlen(buf), TRACEPARENT_STR_LEN);
		expect_tp_valid(buf, &back);
		assert_memory_equal(back.trace_id, tc.trace_id, sizeof(tc.trace_id));
		assert_memory_equal(back.parent_id, tc.parent_id, sizeof(tc.parent_id));
		assert_int_equal(back.flags, tc.flags & 0x03);
		assert_int_equal(back.version, 0);
	}
}

static void test_format_small_buffer(void **state)
{
	struct trace_context tc;
	char buf[TRACEPARENT_STR_LEN + 1];

	(void)state;
	expect_tp_valid("00-" TID "-" PID "-01", &tc);
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(traceparent_format(&tc, buf, TRACEPARENT_STR_LEN), -1);
	assert_int_equal(buf[0], '\0');
	assert_int_equal(buf[1], 'x');
	buf[0] = 'x';
	assert_int_equal(traceparent_format(&tc, buf, 0), -1);
	assert_int_equal(buf[0], 'x');
	assert_int_equal(traceparent_format(NULL, buf, sizeof(buf)), -1);
	assert_int_equal(buf[0], '\0');
}

/* ---- tracestate ---------------------------------------------------------------------- */

/* (23) */
static void test_ts_inherit(void **state)
{
	(void)state;
	EXPECT_TS("foo=1,bar=2", "foo=1,bar=2");
	EXPECT_TS("foo=1", "foo=1");
	EXPECT_TS("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
		  "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
}

/* (25) */
static void test_ts_empty_headers(void **state)
{
	char out[8] = "x";
	const char *none = NULL;
	size_t zero = 0;

	(void)state;
	EXPECT_TS("foo=1", "foo=1", "");
	EXPECT_TS("foo=1", "", "foo=1");
	EXPECT_TS("", "");
	EXPECT_TS("", "", "", " \t ");
	assert_int_equal(tracestate_normalise(NULL, NULL, 0, out, sizeof(out)), 0);
	assert_string_equal(out, "");
	/* a NULL value with length 0 is an empty header; with a length it is a caller bug */
	assert_int_equal(tracestate_normalise(&none, &zero, 1, out, sizeof(out)), 0);
	zero = 1;
	assert_int_equal(tracestate_normalise(&none, &zero, 1, out, sizeof(out)), -1);
	assert_int_equal(tracestate_normalise(NULL, NULL, 1, out, sizeof(out)), -1);
}

/* (26) */
static void test_ts_combine_order(void **state)
{
	(void)state;
	EXPECT_TS("foo=1,bar=2,rojo=1,congo=2,baz=3", "foo=1,bar=2", "rojo=1,congo=2", "baz=3");
	EXPECT_TS("baz=3,rojo=1,congo=2,foo=1,bar=2", "baz=3", "rojo=1,congo=2", "foo=1,bar=2");
}

/* (27) duplicates are passed through as-is, which the spec allows */
static void test_ts_duplicate_keys(void **state)
{
	(void)state;
	EXPECT_TS("foo=1,foo=1", "foo=1,foo=1");
	EXPECT_TS("foo=1,foo=2", "foo=1,foo=2");
	EXPECT_TS("foo=1,foo=2", "foo=1", "foo=2");
}

/* (28) */
static void test_ts_all_allowed_chars(void **state)
{
	static const char key[] = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
	static const char vendor_key[] = "abcdefghijklmnopqrstuvwxyz0123456789_-*/@a-z0-9_-*/";
	char value[128];
	char member[256];
	size_t n = 0;

	(void)state;
	for (int c = 0x20; c <= 0x7e; c++) {
		if (c != ',' && c != '=')
			value[n++] = (char)c;
	}
	value[n] = '\0';
	assert_int_equal(n, 93);

	snprintf(member, sizeof(member), "%s=%s", key, value);
	EXPECT_TS(member, member);
	snprintf(member, sizeof(member), "%s=%s", vendor_key, value);
	EXPECT_TS(member, member);
	/* a tenant-id may start with a digit, a simple key and a system-id may not */
	EXPECT_TS("1tenant@vendor=1", "1tenant@vendor=1");
	EXPECT_TS("t@v=1", "t@v=1");
	EXPECT_TS(NULL, "1foo=1");
	EXPECT_TS(NULL, "t@1v=1");
	EXPECT_TS(NULL, "_foo=1");
	EXPECT_TS(NULL, "t@_v=1");
}

/* (29) */
static void test_ts_ows(void **state)
{
	(void)state;
	EXPECT_TS("foo=1,bar=2,baz=3", "foo=1 \t , \t bar=2, \t baz=3");
	EXPECT_TS("foo=1,bar=2,baz=3", "foo=1\t \t,\t \tbar=2,\t \tbaz=3");
	EXPECT_TS("foo=1", " foo=1");
	EXPECT_TS("foo=1", "\tfoo=1");
	EXPECT_TS("foo=1", "foo=1 ");
	EXPECT_TS("foo=1", "foo=1\t");
	EXPECT_TS("foo=1", "\t foo=1 \t");
	/* space inside a value is legal, also at its start; only the member is trimmed */
	EXPECT_TS("foo= 1 2", "foo= 1 2 ");
	/* CR/LF are not OWS */
	EXPECT_TS(NULL, "foo=1\r");
	EXPECT_TS(NULL, "\nfoo=1");
}

/* empty list members are allowed anywhere and dropped */
static void test_ts_empty_members(void **state)
{
	(void)state;
	EXPECT_TS("foo=1,bar=2", "foo=1,,bar=2");
	EXPECT_TS("foo=1,bar=2", ",foo=1, ,\t,bar=2,");
	EXPECT_TS("", ",");
	EXPECT_TS("", " , \t,, ");
	EXPECT_TS("foo=1", ",", "foo=1", ",");
}

/* (30) */
static void test_ts_illegal_keys(void **state)
{
	(void)state;
	EXPECT_TS(NULL, "foo =1");
	EXPECT_TS(NULL, "FOO=1");
	EXPECT_TS(NULL, "foo.bar=1");
	EXPECT_TS(NULL, "=1");
	EXPECT_TS(NULL, "foo");
	EXPECT_TS(NULL, "foo=1,bar");
	EXPECT_TS(NULL, "fOo=1");
	EXPECT_TS(NULL, "foo\t=1");
}

/*
 * (31) The spec grammar (multi-tenant-key = tenant-id "@" system-id) and the W3C harness
 * (test_tracestate_key_illegal_vendor_format) reject all four; one bad member drops them all.
 */
static void test_ts_at_keys(void **state)
{
	(void)state;
	EXPECT_TS(NULL, "foo@=1,bar=2");
	EXPECT_TS(NULL, "@foo=1,bar=2");
	EXPECT_TS(NULL, "foo@@bar=1,bar=2");
	EXPECT_TS(NULL, "foo@bar@baz=1,bar=2");
	EXPECT_TS(NULL, "bar=2", "foo@=1");
	EXPECT_TS("foo@bar=1,bar=2", "foo@bar=1,bar=2");
}

/* (32) */
static void test_ts_member_count(void **state)
{
	static const char h1[] =
	    "bar01=01,bar02=02,bar03=03,bar04=04,bar05=05,bar06=06,bar07=07,bar08=08,bar09=09,"
	    "bar10=10";
	static const char h2[] =
	    "bar11=11,bar12=12,bar13=13,bar14=14,bar15=15,bar16=16,bar17=17,bar18=18,bar19=19,"
	    "bar20=20";
	static const char h3[] =
	    "bar21=21,bar22=22,bar23=23,bar24=24,bar25=25,bar26=26,bar27=27,bar28=28,bar29=29,"
	    "bar30=30";
	static const char want[] =
	    "bar01=01,bar02=02,bar03=03,bar04=04,bar05=05,bar06=06,bar07=07,bar08=08,bar09=09,"
	    "bar10=10,bar11=11,bar12=12,bar13=13,bar14=14,bar15=15,bar16=16,bar17=17,bar18=18,"
	    "bar19=19,bar20=20,bar21=21,bar22=22,bar23=23,bar24=24,bar25=25,bar26=26,bar27=27,"
	    "bar28=28,bar29=29,bar30=30,bar31=31,bar32=32";

	(void)state;
	EXPECT_TS(want, h1, h2, h3, "bar31=31,bar32=32");
	EXPECT_TS(NULL, h1, h2, h3, "bar31=31,bar32=32,bar33=33");
	/* empty members do not count */
	EXPECT_TS(want, h1, ",,", h2, h3, ", bar31=31,,bar32=32,");
}

/* (33) */
static void test_ts_key_length(void **state)
{
	char *k256 = repeat('z', 256, "=1");
	char *k257 = repeat('z', 257, "=1");
	char *t241 = repeat('t', 241, "@vvvvvvvvvvvvvv=1");
	char *t242 = repeat('t', 242, "@v=1");
	char *v15 = repeat('v', 15, "=1");
	char *t_v15 = malloc(strlen(v15) + 3);
	char want[300];

	(void)state;
	assert_non_null(t_v15);
	strcpy(t_v15, "t@");
	strcat(t_v15, v15);

	EXPECT_TS(NULL, "foo=1", k257);
	EXPECT_TS(NULL, "foo=1", t242);
	EXPECT_TS(NULL, "foo=1", t_v15);
	snprintf(want, sizeof(want), "foo=1,%s", k256);
	EXPECT_TS(want, "foo=1", k256);
	snprintf(want, sizeof(want), "foo=1,%s", t241);
	EXPECT_TS(want, "foo=1", t241);
	free(k256);
	free(k257);
	free(t241);
	free(t242);
	free(v15);
	free(t_v15);
}

/* (34) */
static void test_ts_illegal_values(void **state)
{
	char *v256 = repeat('v', 256, "");
	char *v257 = repeat('v', 257, "");
	char member[300];

	(void)state;
	EXPECT_TS(NULL, "foo=bar=baz");
	EXPECT_TS(NULL, "foo=,bar=3");
	EXPECT_TS(NULL, "foo=");
	EXPECT_TS(NULL, "foo=a\tb");
	EXPECT_TS(NULL, "foo=a\x7f");
	EXPECT_TS(NULL, "foo=\x01");
	EXPECT_TS(NULL, "foo=caf\xc3\xa9");
	EXPECT_TS(NULL, "bar=2", "foo=1\x80");

	snprintf(member, sizeof(member), "k=%s", v256);
	EXPECT_TS(member, member);
	snprintf(member, sizeof(member), "k=%s", v257);
	EXPECT_TS(NULL, member);
	free(v256);
	free(v257);
}

/* (35) at least 512 characters are propagated; what does not fit in out is invalid */
static void test_ts_size(void **state)
{
	char *m1 = repeat('v', 253, "");
	char *m2 = repeat('w', 254, "");
	char *m2long = repeat('w', 255, "");
	char a[300], b[300], blong[300], want[600];

	(void)state;
	snprintf(a, sizeof(a), "a=%s", m1);
	snprintf(b, sizeof(b), "b=%s", m2);
	snprintf(blong, sizeof(blong), "b=%s", m2long);

	/* 255 + 1 + 256 = 512: fits exactly in TRACESTATE_MAX_LEN + 1 */
	snprintf(want, sizeof(want), "%s,%s", a, b);
	assert_int_equal(strlen(want), TRACESTATE_MAX_LEN);
	EXPECT_TS(want, a, b);
	/* one more character does not */
	EXPECT_TS(NULL, a, blong);
	snprintf(want, sizeof(want), "%s,%s", a, blong);
	expect_ts_in((const char *const[]){a, blong, NULL}, want, sizeof(want));

	/* small buffers: exact fit, one short, and no room even for the NUL */
	expect_ts_in((const char *const[]){"foo=1", "bar=2", NULL}, "foo=1,bar=2", 12);
	expect_ts_in((const char *const[]){"foo=1", "bar=2", NULL}, NULL, 11);
	expect_ts_in((const char *const[]){"", NULL}, "", 1);
	expect_ts_in((const char *const[]){"foo=1", NULL}, NULL, 0);
	free(m1);
	free(m2);
	free(m2long);
}

/* An invalid member after valid ones leaves an empty string, not a prefix. */
static void test_ts_invalid_clears_out(void **state)
{
	(void)state;
	EXPECT_TS(NULL, "foo=1,bar=2", "rojo=1", "BAD=1");
	EXPECT_TS(NULL, "foo=1,bar=2,baz");
}

/* ---- helpers ------------------------------------------------------------------------- */

static void test_hex_encode(void **state)
{
	static const uint8_t in[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
	char out[2 * sizeof(in) + 1];

	(void)state;
	memset(out, 'x', sizeof(out));
	hex_encode(in, sizeof(in), out);
	assert_string_equal(out, "00017f80abff");
	hex_encode(in, 0, out);
	assert_string_equal(out, "");
}

static void test_bytes_all_zero(void **state)
{
	uint8_t b[16] = {0};

	(void)state;
	assert_true(bytes_all_zero(b, sizeof(b)));
	assert_true(bytes_all_zero(b, 0));
	b[15] = 1;
	assert_false(bytes_all_zero(b, sizeof(b)));
	assert_true(bytes_all_zero(b, 15));
	b[0] = 0x80;
	assert_false(bytes_all_zero(b, 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tp_plain),
	    cmocka_unit_test(test_tp_flags),
	    cmocka_unit_test(test_tp_ows),
	    cmocka_unit_test(test_tp_future_version),
	    cmocka_unit_test(test_tp_hex_letters),
	    cmocka_unit_test(test_tp_v00_trailing),
	    cmocka_unit_test(test_tp_future_bad_separator),
	    cmocka_unit_test(test_tp_version_ff),
	    cmocka_unit_test(test_tp_version_chars),
	    cmocka_unit_test(test_tp_version_length),
	    cmocka_unit_test(test_tp_trace_id_zero),
	    cmocka_unit_test(test_tp_trace_id_chars),
	    cmocka_unit_test(test_tp_trace_id_length),
	    cmocka_unit_test(test_tp_parent_id_zero),
	    cmocka_unit_test(test_tp_parent_id_chars),
	    cmocka_unit_test(test_tp_parent_id_length),
	    cmocka_unit_test(test_tp_flags_invalid),
	    cmocka_unit_test(test_tp_uppercase),
	    cmocka_unit_test(test_tp_future_short),
	    cmocka_unit_test(test_tp_separators),
	    cmocka_unit_test(test_tp_empty),
	    cmocka_unit_test(test_tp_other_whitespace),
	    cmocka_unit_test(test_tp_len),
	    cmocka_unit_test(test_tp_out_untouched_on_failure),
	    cmocka_unit_test(test_format_round_trip),
	    cmocka_unit_test(test_format_masks_flags),
	    cmocka_unit_test(test_format_future_as_v00),
	    cmocka_unit_test(test_format_parse_round_trip),
	    cmocka_unit_test(test_format_small_buffer),
	    cmocka_unit_test(test_ts_inherit),
	    cmocka_unit_test(test_ts_empty_headers),
	    cmocka_unit_test(test_ts_combine_order),
	    cmocka_unit_test(test_ts_duplicate_keys),
	    cmocka_unit_test(test_ts_all_allowed_chars),
	    cmocka_unit_test(test_ts_ows),
	    cmocka_unit_test(test_ts_empty_members),
	    cmocka_unit_test(test_ts_illegal_keys),
	    cmocka_unit_test(test_ts_at_keys),
	    cmocka_unit_test(test_ts_member_count),
	    cmocka_unit_test(test_ts_key_length),
	    cmocka_unit_test(test_ts_illegal_values),
	    cmocka_unit_test(test_ts_size),
	    cmocka_unit_test(test_ts_invalid_clears_out),
	    cmocka_unit_test(test_hex_encode),
	    cmocka_unit_test(test_bytes_all_zero),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
