// SPDX-License-Identifier: BSD-2-Clause
/*
 * Unit tests for the strict JSON reader. Accept/reject cases follow RFC 8259 and the
 * JSONTestSuite naming (y_ must parse, n_ must not); the i_ (implementation-defined) cases
 * we decide are listed with the decision.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_read.h"

/* Each input is copied to a heap buffer of exactly its length, without a NUL, so that ASan
 * reports any read past len. */
static int parse_exact(struct json_doc *d, const char *s, size_t len)
{
	char *copy = malloc(len ? len : 1);
	int err;

	assert_non_null(copy);
	memcpy(copy, s, len);
	err = json_doc__parse(d, copy, len);
	free(copy);
	return err;
}

static int parse(struct json_doc *d, const char *s)
{
	return parse_exact(d, s, strlen(s));
}

static void test_accepts(void **state)
{
	static const char *const ok[] = {
	    "{}",
	    "[]",
	    " \t\r\n{ \"a\" : [ 1 , -0 , 0.5 , -1.5e+10 , 2E-3 , 1e5 ] } \r\n",
	    "\"\"",
	    "0",
	    "-0",
	    "true",
	    "false",
	    "null",
	    "[[],{},[{}]]",
	    "{\"\":1}",
	    "{\"a\":{\"a\":{\"a\":1}}}",		/* same key at different levels */
	    "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", /* é € 😀 as raw UTF-8 */
	    "\"\\u0000\"",				/* U+0000 is valid JSON */
	    "\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"",
	    "123456789012345678901234567890", /* a valid number, just not an int64 */
	    "\"\x7f\"",			      /* DEL need not be escaped */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct json_doc d;

		json_doc__init(&d);
		if (parse(&d, ok[i]) != 0)
			fail_msg("rejected %s: %s at %zu", ok[i], d.err, d.err_off);
		assert_non_null(json_doc__root(&d));
		assert_null(d.err);
		json_doc__free(&d);
	}
}

static void test_rejects(void **state)
{
	static const char *const bad[] = {
	    "",
	    "   ",
	    "{",
	    "}",
	    "[1,]", /* trailing comma */
	    "{\"a\":1,}",
	    "[,1]",
	    "{\"a\" 1}",
	    "{\"a\":}",
	    "{a:1}", /* unquoted key */
	    "{'a':1}",
	    "{1:1}",
	    "[01]", /* leading zero */
	    "[+1]",
	    "[1.]",
	    "[.5]",
	    "[1e]",
	    "[1e+]",
	    "[-]",
	    "[NaN]",
	    "[Infinity]",
	    "[tru]",
	    "[nul]",
	    "[True]",
	    "\"abc",
	    "\"a\\\"",
	    "\"\\x41\"", /* not a JSON escape */
	    "\"\\u12\"",
	    "\"\\u12G4\"",
	    "\"\\ud800\"", /* lone high surrogate */
	    "\"\\ud800x\"",
	    "\"\\ud800\\u0041\"", /* high surrogate, then not a low one */
	    "\"\\udc00\"",	  /* lone low surrogate */
	    "\"\\udc00\\ud800\"", /* reversed pair */
	    "\"a\tb\"",		  /* unescaped control character */
	    "\"a\nb\"",
	    "\"\xff\"",		    /* not UTF-8 */
	    "\"\xc0\xaf\"",	    /* overlong '/' */
	    "\"\xe0\x80\xaf\"",	    /* overlong */
	    "\"\xed\xa0\x80\"",	    /* UTF-8 encoded surrogate */
	    "\"\xf4\x90\x80\x80\"", /* above U+10FFFF */
	    "\"\xe2\x82\"",	    /* truncated sequence */
	    "\xef\xbb\xbf{}",	    /* byte order mark (RFC 8259 8.1: may be ignored; we don't) */
	    "{} {}",		    /* two values */
	    "{}x",
	    "[1 2]",
	    "/* c */ {}",
	    "{\"a\":1,\"a\":2}", /* duplicate key */
	    "{\"a\":1,\"b\":2,\"a\":3}",
	    "{\"\\u0061\":1,\"a\":2}", /* duplicate after decoding */
	    "\v{}",		       /* not JSON whitespace */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct json_doc d;
		int err;

		json_doc__init(&d);
		err = parse(&d, bad[i]);
		if (err != -EINVAL)
			fail_msg("accepted or misjudged (%d) case %zu: %s", err, i, bad[i]);
		assert_non_null(d.err);
		assert_null(json_doc__root(&d));
		json_doc__free(&d);
	}
}

static void test_embedded_nul_is_an_error(void **state)
{
	struct json_doc d;

	(void)state;
	json_doc__init(&d);
	assert_int_equal(parse_exact(&d, "{}\0", 3), -EINVAL);
	assert_int_equal(parse_exact(&d, "\"a\0b\"", 5), -EINVAL);
	json_doc__free(&d);
}

static void test_string_escapes(void **state)
{
	struct json_doc d;
	const struct json_value *v;

	(void)state;
	json_doc__init(&d);
	assert_int_equal(parse(&d, "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\te\""), 0);
	v = json_doc__root(&d);
	assert_int_equal(v->type, JSON_STRING);
	assert_string_equal(v->str, "a\"b\\c/d\b\f\n\r\te");
	assert_int_equal(v->len, 13);

	/* \u escapes: 1, 2 and 3 byte UTF-8, upper and lower hex, and a surrogate pair */
	assert_int_equal(parse(&d, "\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\""), 0);
	v = json_doc__root(&d);
	assert_string_equal(v->str, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	/* the largest code point: U+10FFFF = \udbff\udfff */
	assert_int_equal(parse(&d, "\"\\udbff\\udfff\""), 0);
	assert_string_equal(json_doc__root(&d)->str, "\xf4\x8f\xbf\xbf");
	/* U+0000 decodes, but the value is no C string */
	assert_int_equal(parse(&d, "\"a\\u0000b\""), 0);
	v = json_doc__root(&d);
	assert_int_equal(v->len, 3);
	assert_memory_equal(v->str, "a\0b", 3);
	assert_null(json_value_cstr(v));
	json_doc__free(&d);
}

static void test_numbers(void **state)
{
	static const struct {
		const char *text;
		bool is_int;
		int64_t value;
	} cases[] = {
	    {"0", true, 0},
	    {"-0", true, 0},
	    {"8080", true, 8080},
	    {"-42", true, -42},
	    {"9223372036854775807", true, INT64_MAX},
	    {"-9223372036854775808", true, INT64_MIN},
	    {"9223372036854775808", false, 0},
	    {"-9223372036854775809", false, 0},
	    {"18446744073709551616", false, 0},
	    {"1.0", false, 0},
	    {"1e3", false, 0},
	    {"1700000000000000000", true, 1700000000000000000},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_doc d;
		const struct json_value *v;
		int64_t out = 12345;

		json_doc__init(&d);
		assert_int_equal(parse(&d, cases[i].text), 0);
		v = json_doc__root(&d);
		assert_int_equal(v->type, JSON_NUMBER);
		assert_string_equal(v->str, cases[i].text);
		assert_int_equal(json_value_int(v, &out), cases[i].is_int);
		if (cases[i].is_int)
			assert_int_equal(out, cases[i].value);
		else
			assert_int_equal(out, 12345); /* untouched */
		json_doc__free(&d);
	}
}

static void test_navigation(void **state)
{
	struct json_doc d;
	const struct json_value *root, *attrs, *v, *arr;
	int64_t port;
	int n = 0;

	(void)state;
	json_doc__init(&d);
	assert_int_equal(parse(&d,
			       "{\"kind\":\"CLIENT\",\"attributes\":{\"server.port\":8080,"
			       "\"ok\":true,\"no\":false,\"nil\":null},\"list\":[1,\"two\",[3]],"
			       "\"empty\":{}}"),
			 0);
	root = json_doc__root(&d);
	assert_int_equal(root->type, JSON_OBJECT);
	assert_int_equal(root->count, 4);
	assert_string_equal(json_value_cstr(json_doc__member(&d, root, "kind")), "CLIENT");
	attrs = json_doc__member(&d, root, "attributes");
	assert_non_null(attrs);
	/* keys with dots are plain keys */
	assert_true(json_value_int(json_doc__member(&d, attrs, "server.port"), &port));
	assert_int_equal(port, 8080);
	assert_int_equal(json_doc__member(&d, attrs, "ok")->type, JSON_TRUE);
	assert_int_equal(json_doc__member(&d, attrs, "no")->type, JSON_FALSE);
	assert_int_equal(json_doc__member(&d, attrs, "nil")->type, JSON_NULL);
	assert_null(json_doc__member(&d, attrs, "server"));
	assert_null(json_doc__member(&d, attrs, "server.port.x"));
	assert_null(json_doc__member(&d, root, "server.port")); /* not searched recursively */
	/* a number or string is no C string of another type */
	assert_null(json_value_cstr(json_doc__member(&d, attrs, "server.port")));
	assert_false(json_value_int(json_doc__member(&d, root, "kind"), &port));
	/* arrays keep order; members of a non-object are not looked up */
	arr = json_doc__member(&d, root, "list");
	assert_int_equal(arr->count, 3);
	assert_null(json_doc__member(&d, arr, "kind"));
	for (v = json_doc__first(&d, arr); v; v = json_doc__next(&d, v))
		n++;
	assert_int_equal(n, 3);
	v = json_doc__first(&d, arr);
	assert_null(v->key);
	assert_string_equal(json_value_cstr(json_doc__next(&d, v)), "two");
	assert_int_equal(json_doc__next(&d, json_doc__next(&d, v))->type, JSON_ARRAY);
	assert_null(json_doc__first(&d, json_doc__member(&d, root, "empty")));
	assert_null(json_doc__first(&d, json_doc__member(&d, root, "kind")));
	/* NULL in, NULL out */
	assert_null(json_doc__member(&d, NULL, "kind"));
	assert_null(json_value_cstr(NULL));
	json_doc__free(&d);
}

static char *nested(int depth)
{
	char *s = malloc((size_t)depth * 2 + 1);

	assert_non_null(s);
	for (int i = 0; i < depth; i++) {
		s[i] = '[';
		s[depth * 2 - 1 - i] = ']';
	}
	s[depth * 2] = '\0';
	return s;
}

static void test_limits(void **state)
{
	struct json_doc d;
	char *s;
	size_t big = (size_t)JSON_READ_MAX_LEN + 1;

	(void)state;
	json_doc__init(&d);
	s = nested(JSON_READ_MAX_DEPTH);
	assert_int_equal(parse(&d, s), 0);
	free(s);
	s = nested(JSON_READ_MAX_DEPTH + 1);
	assert_int_equal(parse(&d, s), -E2BIG);
	assert_string_equal(d.err, "nested too deeply");
	free(s);
	/* deep nesting of objects too, with an error offset at the 65th '{' */
	s = malloc(10 * 100 + 1);
	assert_non_null(s);
	s[0] = '\0';
	for (int i = 0; i < 100; i++)
		strcat(s, "{\"a\":");
	assert_int_equal(parse(&d, s), -E2BIG);
	assert_int_equal(d.err_off, 5 * JSON_READ_MAX_DEPTH);
	free(s);
	/* a text over the length limit is refused before it is looked at */
	s = malloc(big);
	assert_non_null(s);
	memset(s, ' ', big);
	s[0] = '0';
	assert_int_equal(json_doc__parse(&d, s, big), -E2BIG);
	assert_int_equal(json_doc__parse(&d, s, big - 1), 0);
	free(s);
	json_doc__free(&d);
}

/* Big objects: the duplicate check sorts, the lookups find every member. */
static void test_many_members(void **state)
{
	enum { N = 5000 };
	struct json_doc d;
	char *s = malloc(N * 24 + 16), *p = s;
	const struct json_value *root;
	int64_t v;

	(void)state;
	assert_non_null(s);
	*p++ = '{';
	for (int i = 0; i < N; i++)
		p += sprintf(p, "%s\"k%d\":%d", i ? "," : "", i, i);
	strcpy(p, "}");
	json_doc__init(&d);
	assert_int_equal(parse(&d, s), 0);
	root = json_doc__root(&d);
	assert_int_equal(root->count, N);
	assert_true(json_value_int(json_doc__member(&d, root, "k4999"), &v));
	assert_int_equal(v, 4999);
	/* the same with one key repeated at the end */
	strcpy(p, ",\"k17\":0}");
	assert_int_equal(parse(&d, s), -EINVAL);
	assert_string_equal(d.err, "duplicate key in an object");
	free(s);
	json_doc__free(&d);
}

static void test_error_position(void **state)
{
	struct json_doc d;

	(void)state;
	json_doc__init(&d);
	assert_int_equal(parse(&d, "{\"a\":[1,2,]}"), -EINVAL);
	assert_int_equal(d.err_off, 10);
	assert_int_equal(parse(&d, "{\"a\":\"\\q\"}"), -EINVAL);
	assert_string_equal(d.err, "invalid escape in a string");
	assert_int_equal(d.err_off, 6);
	json_doc__free(&d);
}

/* One document reused across lines of different sizes, as the audit reader does. */
static void test_reuse(void **state)
{
	struct json_doc d;
	const struct json_value *v;

	(void)state;
	json_doc__init(&d);
	assert_int_equal(parse(&d, "{\"a\":\"first\"}"), 0);
	assert_int_equal(parse(&d, "[tru"), -EINVAL);
	assert_null(json_doc__root(&d));
	assert_int_equal(parse(&d, "{\"a\":\"a much longer second value, to grow the buffers\","
				   "\"b\":[1,2,3,4,5,6,7,8,9,10]}"),
			 0);
	v = json_doc__member(&d, json_doc__root(&d), "a");
	assert_string_equal(json_value_cstr(v), "a much longer second value, to grow the buffers");
	assert_int_equal(parse(&d, "7"), 0);
	assert_int_equal(json_doc__root(&d)->type, JSON_NUMBER);
	json_doc__free(&d);
	/* freed documents can be parsed into after init; a never-parsed one has no root */
	json_doc__init(&d);
	assert_null(json_doc__root(&d));
	json_doc__free(&d);
}

/* A line exactly as the JSON sink writes it (see sink_json.c), escapes included. */
static void test_span_line(void **state)
{
	static const char line[] =
	    "{\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"span_id\":\"00f067aa0ba902b7\","
	    "\"parent_span_id\":\"\",\"name\":\"GET /leaf\",\"kind\":\"CLIENT\","
	    "\"start_unix_ns\":1700000000000000000,\"end_unix_ns\":1700000000001000000,"
	    "\"duration_ns\":1000000,\"status\":\"UNSET\",\"status_message\":\"\","
	    "\"service.name\":\"caf\\u00e9 \\\"svc\\\"\",\"pid\":42,\"tid\":42,\"trace_flags\":1,"
	    "\"tracestate\":\"\",\"attributes\":{\"server.address\":\"\\ufffd\\u0085h\","
	    "\"server.port\":8080,\"hoptrace.propagation\":\"dropped\"},\"links\":[],"
	    "\"resource\":{}}\n";
	struct json_doc d;
	const struct json_value *root, *attrs;
	int64_t port;

	(void)state;
	json_doc__init(&d);
	assert_int_equal(parse(&d, line), 0);
	root = json_doc__root(&d);
	assert_string_equal(json_value_cstr(json_doc__member(&d, root, "service.name")),
			    "caf\xc3\xa9 \"svc\"");
	attrs = json_doc__member(&d, root, "attributes");
	assert_string_equal(json_value_cstr(json_doc__member(&d, attrs, "server.address")),
			    "\xef\xbf\xbd\xc2\x85h");
	assert_true(json_value_int(json_doc__member(&d, attrs, "server.port"), &port));
	assert_int_equal(port, 8080);
	json_doc__free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_accepts),
	    cmocka_unit_test(test_rejects),
	    cmocka_unit_test(test_embedded_nul_is_an_error),
	    cmocka_unit_test(test_string_escapes),
	    cmocka_unit_test(test_numbers),
	    cmocka_unit_test(test_navigation),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_many_members),
	    cmocka_unit_test(test_error_position),
	    cmocka_unit_test(test_reuse),
	    cmocka_unit_test(test_span_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
