// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer harness for the trace analysis (agent/analyze.c): the input is span lines, one
 * a line, as `hoptrace analyze` reads them from a hostile file. Besides memory errors and
 * hangs (parent cycles, deep chains), it aborts when an invariant of the report breaks:
 *  - the JSON report is strict JSON (read back with json_read);
 *  - each trace's critical path gives the root's duration out exactly: its self_on_path_ns
 *    add up to duration_ns;
 *  - each span's self_ns + child_ns is its duration_ns.
 * Small limits keep each run fast; the text report is written too (to /dev/null).
 * Seeds: tests/fuzz/seeds/fuzz_analyze/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "json_read.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int64_t member_int(const struct json_doc *d, const struct json_value *o, const char *k)
{
	int64_t v;

	if (!json_value_int(json_doc__member(d, o, k), &v))
		abort();
	return v;
}

static void check_trace(const struct json_doc *d, const struct json_value *t)
{
	const struct json_value *root = json_doc__member(d, t, "root");
	int64_t sum = 0;

	if (!root || root->type == JSON_NULL)
		return;
	for (const struct json_value *p =
		 json_doc__first(d, json_doc__member(d, t, "critical_path"));
	     p; p = json_doc__next(d, p))
		sum += member_int(d, p, "self_on_path_ns");
	if (sum != member_int(d, t, "duration_ns"))
		abort();
	for (const struct json_value *s = json_doc__first(d, json_doc__member(d, t, "span_times"));
	     s; s = json_doc__next(d, s))
		if (member_int(d, s, "self_ns") + member_int(d, s, "child_ns") !=
		    member_int(d, s, "duration_ns"))
			abort();
}

static void check_report(const char *text, size_t len)
{
	struct json_doc d;

	if (len > JSON_READ_MAX_LEN)
		return;
	json_doc__init(&d);
	if (json_doc__parse(&d, text, len))
		abort();
	for (const struct json_value *t =
		 json_doc__first(&d, json_doc__member(&d, json_doc__root(&d), "traces"));
	     t; t = json_doc__next(&d, t))
		check_trace(&d, t);
	json_doc__free(&d);
}

static void run(const uint8_t *data, size_t size, bool json)
{
	struct analyze_opts o;
	struct analyze a;
	const char *why, *p = (const char *)data, *end = p + size;
	char *text = NULL;
	size_t len = 0;
	FILE *out;

	analyze_opts__default(&o);
	o.max_traces = 16;
	o.max_spans = 256;
	o.max_spans_per_trace = 128;
	o.n_plus_one = 2;
	if (analyze__init(&a, &o))
		abort();
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

		analyze__add_line(&a, p, n, &why);
		p += n + 1;
	}
	out = json ? open_memstream(&text, &len) : fopen("/dev/null", "w");
	if (!out)
		abort();
	if (analyze__report(&a, out, json))
		abort();
	fclose(out);
	if (json)
		check_report(text, len);
	free(text);
	analyze__free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run(data, size, true);
	run(data, size, false);
	return 0;
}
