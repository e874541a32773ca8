// SPDX-License-Identifier: BSD-2-Clause
/*
 * Unit tests for the /proc/PID/maps line parser: the kernel's layout, and paths a process
 * chooses (spaces, " (deleted)", text that looks like another line's fields).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "procmaps.h"

/* Parse a copy of exactly strlen(s) bytes, so ASan sees any read past the end. */
static int parse(const char *s, struct procmaps_entry *e, char **copy)
{
	size_t len = strlen(s);

	*copy = malloc(len ? len : 1);
	assert_non_null(*copy);
	memcpy(*copy, s, len);
	return procmaps_parse_line(*copy, len, e);
}

static void low_address_gets_a_map_files_name_without_leading_zeros(void **state)
{
	struct procmaps_entry e;
	char name[PROCMAPS_MAP_FILES_NAME_MAX], *copy;

	(void)state;
	assert_int_equal(parse("0fe15000-0fe34000 r-xp 0001f000 fe:00 14884903            "
			       "               /usr/lib/x86_64-linux-gnu/libssl.so.3\n",
			       &e, &copy),
			 0);
	assert_int_equal(e.start, 0xfe15000);
	assert_int_equal(e.end, 0xfe34000);
	assert_int_equal(e.offset, 0x1f000);
	assert_int_equal(e.dev_major, 0xfe);
	assert_int_equal(e.inode, 14884903);
	assert_memory_equal(e.perms, "r-xp", 4);
	assert_false(e.deleted);
	assert_int_equal(e.path_len, strlen("/usr/lib/x86_64-linux-gnu/libssl.so.3"));
	assert_memory_equal(e.path, "/usr/lib/x86_64-linux-gnu/libssl.so.3", e.path_len);
	procmaps_map_files_name(&e, name, sizeof(name));
	assert_string_equal(name, "fe15000-fe34000");
	free(copy);
}

static void deleted_suffix_and_spaces_in_paths(void **state)
{
	struct procmaps_entry e;
	char *copy;

	(void)state;
	assert_int_equal(parse("7f0000000000-7f0000001000 r--p 00000000 08:01 12 "
			       "/tmp/a b (deleted)/libssl.so.3 (deleted)\n",
			       &e, &copy),
			 0);
	assert_true(e.deleted);
	assert_int_equal(e.path_len, strlen("/tmp/a b (deleted)/libssl.so.3"));
	assert_memory_equal(e.path, "/tmp/a b (deleted)/libssl.so.3", e.path_len);
	free(copy);
}

static void lines_without_a_path(void **state)
{
	struct procmaps_entry e;
	char *copy;

	(void)state;
	assert_int_equal(parse("7ffd1000-7ffd2000 rw-p 00000000 00:00 0 \n", &e, &copy), 0);
	assert_null(e.path);
	assert_int_equal(e.inode, 0);
	free(copy);
}

static void malformed_lines_are_rejected(void **state)
{
	static const char *const bad[] = {
	    "",
	    "1000-1000 r-xp 00000000 08:01 12 /x",		     /* empty range */
	    "2000-1000 r-xp 00000000 08:01 12 /x",		     /* backwards */
	    "1000-2000 rxp 00000000 08:01 12 /x",		     /* short perms */
	    "1000-2000 r-xq 00000000 08:01 12 /x",		     /* bad share flag */
	    "10000000000000000-2 r-xp 0 08:01 12 /x",		     /* 17 digits */
	    "1000-2000 r-xp 00000000 08:01 99999999999999999999 /x", /* inode overflow */
	    "1000-2000 r-xp 00000000 08:01 12 /x\n/y",		     /* two lines */
	    "1000-2000 r-xp 00000000 0801 12 /x",
	    " 1000-2000 r-xp 00000000 08:01 12 /x",
	};
	struct procmaps_entry e;
	char *copy;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(bad[i], &e, &copy), -EINVAL);
		free(copy);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(low_address_gets_a_map_files_name_without_leading_zeros),
	    cmocka_unit_test(deleted_suffix_and_spaces_in_paths),
	    cmocka_unit_test(lines_without_a_path),
	    cmocka_unit_test(malformed_lines_are_rejected),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
