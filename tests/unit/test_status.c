// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for the /status document (status.h): strict JSON whatever the names, bounded to
 * STATUS_PROCS_MAX processes, the busiest first. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_read.h"
#include "proc.h"
#include "resource.h"
#include "status.h"

static void parse(struct json_doc *d, const char *text, size_t len)
{
	json_doc__init(d);
	if (json_doc__parse(d, text, len))
		fail_msg("not JSON (%s at %zu): %s", d->err, d->err_off, text);
}

static int64_t num(const struct json_doc *d, const struct json_value *o, const char *key)
{
	int64_t v = -1;

	assert_true(json_value_int(json_doc__member(d, o, key), &v));
	return v;
}

static void test_render_hostile_names(void **state)
{
	char longname[600];
	struct status_counter counters[] = {{"spans_server", 7}, {"bpf_events", 1234}};
	struct status_proc procs[] = {
	    {.pid = 10, .spans = 5, .exe = "py\x1b[2J\"\\", .service = "caf\xc3\xa9\xff\xc2\x9b"},
	    {.pid = 11, .spans = 1, .exited = true, .exe = NULL, .service = longname},
	};
	struct status_input in = {.version = "0.1.0",
				  .capture = "tp_btf",
				  .pid = 42,
				  .start_unix_s = 100,
				  .now_unix_s = 160,
				  .ready = true,
				  .counters = counters,
				  .ncounters = 2,
				  .processes_total = 9,
				  .procs = procs,
				  .nprocs = 2};
	const struct json_value *root, *p;
	struct json_doc d;
	char *text;
	size_t len;

	(void)state;
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(status_render(&in, &text, &len), 0);
	assert_int_equal(strlen(text), len);
	parse(&d, text, len);
	root = json_doc__root(&d);
	assert_int_equal(num(&d, root, "uptime_s"), 60);
	assert_int_equal(num(&d, root, "pid"), 42);
	assert_int_equal(json_doc__member(&d, root, "ready")->type, JSON_TRUE);
	assert_int_equal(num(&d, json_doc__member(&d, root, "counters"), "bpf_events"), 1234);
	assert_int_equal(num(&d, root, "processes_total"), 9);
	p = json_doc__first(&d, json_doc__member(&d, root, "processes"));
	assert_string_equal(json_value_cstr(json_doc__member(&d, p, "exe")), "py\\x1b[2J\"\\");
	assert_string_equal(json_value_cstr(json_doc__member(&d, p, "service")),
			    "caf\xc3\xa9\\xff\\xc2\\x9b");
	p = json_doc__next(&d, p);
	assert_string_equal(json_value_cstr(json_doc__member(&d, p, "exe")), "");
	assert_int_equal(strlen(json_value_cstr(json_doc__member(&d, p, "service"))),
			 STATUS_NAME_MAX); /* cut */
	assert_int_equal(json_doc__member(&d, p, "exited")->type, JSON_TRUE);
	json_doc__free(&d);
	free(text);
}

/* 100 processes: the 64 with the most spans, most first, and the total. */
static void test_top_procs_bounded(void **state)
{
	struct status_proc *out = calloc(STATUS_PROCS_MAX, sizeof(*out));
	struct proc_table pt;
	uint64_t total = 0;
	size_t n;

	(void)state;
	assert_int_equal(proc_table__init(&pt, "/nonexistent-proc"), 0);
	for (uint32_t pid = 1; pid <= 100; pid++) {
		struct resource *r = proc_table__resource(&pt, pid, 1000 + pid, "worker");

		assert_non_null(r);
		r->spans = (pid * 37) % 101; /* distinct, in no order */
	}
	n = status_top_procs(&pt, out, STATUS_PROCS_MAX, &total);
	assert_int_equal(n, STATUS_PROCS_MAX);
	assert_int_equal(total, 100);
	for (size_t i = 1; i < n; i++)
		assert_true(out[i - 1].spans > out[i].spans);
	assert_int_equal(out[0].spans, 100);		 /* the most of 1..100 */
	assert_int_equal(out[n - 1].spans, 100 - n + 1); /* the 64th most */
	assert_string_equal(out[0].exe, "worker");
	assert_int_equal(status_top_procs(&pt, out, 0, &total), 0);
	proc_table__free(&pt);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_render_hostile_names),
	    cmocka_unit_test(test_top_procs_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
