// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for the JSON log lines (--log-format json): every line is strict JSON whatever
 * bytes the message carries, keeps its text, and carries ts, level, msg and the fields. */
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
#include "log.h"

/* 2026-12-05T23:58:04.123Z */
#define T0 (1796515084ull * 1000000000ull + 123456789ull)

struct parsed {
	struct json_doc doc;
	const struct json_value *root;
	char line[16384];
};

/* Format a line and parse it strictly; fails the test if it is not JSON. */
static void format_and_parse(struct parsed *p, enum log_level lvl, const char *msg, size_t len,
			     const struct log_field *f, size_t n)
{
	size_t out = log_format_json(p->line, sizeof(p->line), T0, lvl, msg, len, f, n);

	assert_true(out > 0);
	assert_int_equal(strlen(p->line), out);
	assert_null(memchr(p->line, '\n', out)); /* one line */
	json_doc__init(&p->doc);
	if (json_doc__parse(&p->doc, p->line, out))
		fail_msg("not JSON (%s at %zu): %s", p->doc.err, p->doc.err_off, p->line);
	p->root = json_doc__root(&p->doc);
	assert_int_equal(p->root->type, JSON_OBJECT);
}

static const char *member(struct parsed *p, const char *key)
{
	const struct json_value *v = json_doc__member(&p->doc, p->root, key);

	assert_non_null(v);
	return v->str;
}

static void test_keys_and_timestamp(void **state)
{
	struct log_field f[] = {LOG_STR("endpoint", "127.0.0.1:9464"), LOG_NUM("pid", 42)};
	struct parsed *p = malloc(sizeof(*p));
	int64_t pid;

	(void)state;
	format_and_parse(p, LOG_WARN, "hello", 5, f, 2);
	assert_string_equal(member(p, "ts"), "2026-12-05T23:58:04.123Z");
	assert_string_equal(member(p, "level"), "warn");
	assert_string_equal(member(p, "msg"), "hello");
	assert_string_equal(member(p, "endpoint"), "127.0.0.1:9464");
	assert_true(json_value_int(json_doc__member(&p->doc, p->root, "pid"), &pid));
	assert_int_equal(pid, 42);
	assert_int_equal(p->root->count, 5);
	json_doc__free(&p->doc);
	free(p);
}

/* A field may not replace ts, level or msg (the parser refuses duplicate keys anyway). */
static void test_reserved_keys_dropped(void **state)
{
	struct log_field f[] = {LOG_STR("msg", "forged"), LOG_STR("level", "error"),
				LOG_STR("ts", "x")};
	struct parsed *p = malloc(sizeof(*p));

	(void)state;
	format_and_parse(p, LOG_INFO, "real", 4, f, 3);
	assert_string_equal(member(p, "msg"), "real");
	assert_string_equal(member(p, "level"), "info");
	assert_int_equal(p->root->count, 3);
	json_doc__free(&p->doc);
	free(p);
}

static void check_escape(const char *in, size_t len, const char *want)
{
	char out[512];
	size_t n = log_json_escape(out, sizeof(out), in, len);

	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));
}

static void test_escape(void **state)
{
	(void)state;
	check_escape("plain /path", 11, "plain /path");
	check_escape("a\"b\\c", 5, "a\\\"b\\\\c");
	check_escape("\x1b[2J", 4, "\\\\x1b[2J");
	check_escape("l1\nl2\r\t\x7f", 8, "l1\\\\x0al2\\\\x0d\\\\x09\\\\x7f");
	check_escape("a\0b", 3, "a\\\\x00b");
	check_escape("caf\xc3\xa9 \xf0\x9f\x98\x80", 10, "caf\xc3\xa9 \xf0\x9f\x98\x80");
	check_escape("\xc2\x9b"
		     "31m",
		     5, "\\\\xc2\\\\x9b31m"); /* C1 CSI */
	check_escape("\x9b"
		     "31m",
		     4, "\\\\x9b31m");		       /* a raw 8-bit byte: the text \x9b */
	check_escape("\xe2\x82", 2, "\\\\xe2\\\\x82"); /* cut sequence */
	check_escape("\xc0\xaf", 2, "\\\\xc0\\\\xaf"); /* overlong '/' */
	check_escape("\xed\xa0\x80", 3, "\\\\xed\\\\xa0\\\\x80"); /* surrogate */
	check_escape("\xe2\x80\xa8|\xe2\x80\xa9", 7, "\\u2028|\\u2029");
}

/* The output is cut between whole escapes and always terminated. */
static void test_escape_cut(void **state)
{
	char out[9];

	(void)state;
	assert_int_equal(log_json_escape(out, sizeof(out), "ab\x1b\x1b", 4), 2 + 5);
	assert_string_equal(out, "ab\\\\x1b");
	assert_int_equal(log_json_escape(out, 7, "ab\x1b", 3), 2); /* no room for the escape */
	assert_string_equal(out, "ab");
	assert_int_equal(log_json_escape(out, 3, "\x1b", 1), 0);
	assert_string_equal(out, "");
	assert_int_equal(log_json_escape(out, 0, "x", 1), 0);
}

/* The decoded message holds no control byte: a reader printing it (jq -r .msg) sends no
 * escape sequence to a terminal. */
static void assert_no_controls(const struct json_value *v)
{
	const unsigned char *s = (const unsigned char *)v->str;

	for (size_t i = 0; i < v->len; i++) {
		assert_false(s[i] < 0x20 || s[i] == 0x7f);
		assert_false(s[i] == 0xc2 && i + 1 < v->len && s[i + 1] >= 0x80 && s[i + 1] < 0xa0);
	}
}

/* Every byte value, and random hostile messages: always strict JSON, and the message
 * decodes to the input where the input was well-formed text. */
static void test_hostile_bytes_stay_json(void **state)
{
	struct parsed *p = malloc(sizeof(*p));
	char msg[600];
	unsigned seed = 12345;

	(void)state;
	for (int b = 0; b < 256; b++) {
		char one[4] = {'<', (char)b, '>', '\0'};
		struct log_field f = LOG_STR("path", one);

		format_and_parse(p, LOG_ERROR, one, 3, &f, b ? 1 : 0);
		if (b >= 0x20 && b < 0x7f)
			assert_memory_equal(member(p, "msg"), one, 3);
		else
			assert_string_equal(member(p, "msg") + 1 + 4, ">"); /* "<\xNN>" */
		assert_no_controls(json_doc__member(&p->doc, p->root, "msg"));
		json_doc__free(&p->doc);
	}
	for (int round = 0; round < 2000; round++) {
		size_t len = (size_t)(rand_r(&seed) % sizeof(msg));

		for (size_t i = 0; i < len; i++)
			msg[i] =
			    (char)(rand_r(&seed) % 4 ? rand_r(&seed) : "\"\\\x1b\n\xc2\xe2"[i % 6]);
		format_and_parse(p, LOG_DEBUG, msg, len, NULL, 0);
		assert_no_controls(json_doc__member(&p->doc, p->root, "msg"));
		json_doc__free(&p->doc);
	}
	free(p);
}

/* Too small a buffer: nothing, never a cut line. */
static void test_small_buffer(void **state)
{
	char out[32] = "x";

	(void)state;
	assert_int_equal(log_format_json(out, sizeof(out), T0, LOG_INFO, "hello", 5, NULL, 0), 0);
	assert_string_equal(out, "");
}

static void test_parse_flags(void **state)
{
	enum log_level lvl;
	enum log_format fmt;

	(void)state;
	assert_int_equal(log_parse_level("debug", &lvl), 0);
	assert_int_equal(lvl, LOG_DEBUG);
	assert_int_equal(log_parse_level("warning", &lvl), 0);
	assert_int_equal(lvl, LOG_WARN);
	assert_int_equal(log_parse_level("loud", &lvl), -EINVAL);
	assert_int_equal(log_parse_level(NULL, &lvl), -EINVAL);
	assert_int_equal(log_parse_format("json", &fmt), 0);
	assert_int_equal(fmt, LOG_FORMAT_JSON);
	assert_int_equal(log_parse_format("text", &fmt), 0);
	assert_int_equal(fmt, LOG_FORMAT_TEXT);
	assert_int_equal(log_parse_format("JSON", &fmt), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keys_and_timestamp),
	    cmocka_unit_test(test_reserved_keys_dropped),
	    cmocka_unit_test(test_escape),
	    cmocka_unit_test(test_escape_cut),
	    cmocka_unit_test(test_hostile_bytes_stay_json),
	    cmocka_unit_test(test_small_buffer),
	    cmocka_unit_test(test_parse_flags),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
