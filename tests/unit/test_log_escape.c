// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for what reaches a terminal or a log: the one escaping function, URLs without
 * credentials, configuration errors that name a key but never show a value. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/otlp_config.h"
#include "text.h"

static void check_escape(const char *in, size_t len, unsigned flags, const char *want)
{
	char out[256];
	size_t n = text_escape_terminal(out, sizeof(out), in, len, flags);

	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));
}

static void test_escape_terminal(void **state)
{
	(void)state;
	check_escape("plain /path", 11, 0, "plain /path");
	check_escape("\x1b[2Jx", 5, 0, "\\x1b[2Jx");
	check_escape("a\r\nb\t\x7f", 6, 0, "a\\x0d\\x0ab\\x09\\x7f");
	check_escape("caf\xc3\xa9", 5, 0, "caf\xc3\xa9");		 /* UTF-8 kept */
	check_escape("caf\xc3\xa9", 5, TEXT_ESC_ASCII, "caf\\xc3\\xa9"); /* one column a byte */
	check_escape("\xc2\x9b"
		     "31m",
		     5, 0, "\\xc2\\x9b31m"); /* C1 CSI */
	check_escape("\x9b"
		     "31m",
		     4, 0, "\\x9b31m");		      /* raw 8-bit CSI */
	check_escape("\xe2\x82", 2, 0, "\\xe2\\x82"); /* cut sequence */
	check_escape("a\0b", 3, 0, "a\\x00b");
	check_escape("l1\nl2\x1b\r\n", 8, TEXT_ESC_KEEP_LF, "l1\nl2\\x1b\\x0d\n");
}

/* The output is cut between whole escapes and always terminated. */
static void test_escape_cut(void **state)
{
	char out[8];

	(void)state;
	assert_int_equal(text_escape_terminal(out, sizeof(out), "ab\x1b\x1b", 4, 0), 6);
	assert_string_equal(out, "ab\\x1b");
	assert_int_equal(text_escape_terminal(out, 3, "\x1b", 1, 0), 0);
	assert_string_equal(out, "");
	assert_int_equal(
	    text_escape_terminal(out, sizeof(out), "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 8, 0), 6);
	assert_int_equal(text_escape_terminal(out, 0, "x", 1, 0), 0);
}

static void check_url(const char *url, const char *want)
{
	char out[128];

	text_url_for_log(out, sizeof(out), url);
	assert_string_equal(out, want);
}

static void test_url_for_log(void **state)
{
	(void)state;
	check_url("http://user:tok3n@collector:4318/v1/traces?key=s3cret#f",
		  "http://collector:4318/v1/traces");
	check_url("https://a@b@collector", "https://collector");
	check_url("HTTP://u:p@[::1]:4317", "HTTP://[::1]:4317");
	check_url("collector:4317", "collector:4317");
	check_url("u:p@collector:4317/x?y", "collector:4317/x");
	check_url("http://collector/p@th", "http://collector/p@th");
	check_url(NULL, "(none)");
}

static void check_kv_error(const char *list, const char *want, const char *secret)
{
	struct otlp_kv *kv;
	unsigned n;
	char msg[256];

	assert_int_not_equal(
	    otlp_kv_parse(list, "OTEL_EXPORTER_OTLP_HEADERS", &kv, &n, msg, sizeof(msg)), 0);
	if (!strstr(msg, want))
		fail_msg("'%s' does not say '%s'", msg, want);
	if (strstr(msg, secret))
		fail_msg("'%s' shows the secret", msg);
}

/* A malformed header list names the member and its key, never a value. */
static void test_kv_errors_hide_values(void **state)
{
	(void)state;
	check_kv_error("Authorization=Bearer%zzs3cret", "key 'Authorization'", "s3cret");
	check_kv_error("x-api-key=ok,Bearer s3cret", "member 2 is not key=value", "s3cret");
	check_kv_error("=s3cret", "member 1 has an empty key", "s3cret");
	check_kv_error("a\x1b[2J%zz=s3cret", "key 'a??2J%zz'", "s3cret");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_escape_terminal),
	    cmocka_unit_test(test_escape_cut),
	    cmocka_unit_test(test_url_for_log),
	    cmocka_unit_test(test_kv_errors_hide_values),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
