// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer harness for the converting span sources (agent/tsource_otlp.c, the Jaeger half of
 * agent/tsource_remote.c): the input is parsed as one document (as a line of otlp:FILE or an
 * API answer) and converted both as OTLP JSON and as a Jaeger answer. Besides memory errors it
 * aborts when a span line handed over is not strict JSON (the offline commands' reader must
 * take every line a source hands over), has no 32-hex trace_id, or passes TSOURCE_MAX_LINE.
 * libFuzzer passes data in a heap buffer of exactly size bytes, so ASan sees any over-read.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_read.h"
#include "tsource_otlp.h"
#include "tsource_remote.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check_line(void *ctx, const char *line, size_t len)
{
	struct json_doc *d = ctx;
	const struct json_value *id;

	if (len > TSOURCE_MAX_LINE || json_doc__parse(d, line, len))
		abort();
	id = json_doc__member(d, json_doc__root(d), "trace_id");
	if (!id || id->type != JSON_STRING || id->len != 32)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_doc doc, line;
	struct tsource_stats st = {0};
	struct tconv c = {
	    .prog = "fuzz", .where = "fuzz", .fn = check_line, .ctx = &line, .st = &st};
	struct u64map seen;
	uint64_t dropped = 0;

	json_doc__init(&doc);
	json_doc__init(&line);
	if (u64map_init(&seen, 64) == 0 &&
	    json_doc__parse_max(&doc, (const char *)data, size, 1u << 20, 1u << 16) == 0) {
		tsource_otlp_doc(&c, &doc, json_doc__root(&doc), &dropped);
		tsource_jaeger_doc(&c, &doc, json_doc__root(&doc), &seen, 64, &dropped);
	}
	u64map_free(&seen);
	tconv_free(&c);
	json_doc__free(&line);
	json_doc__free(&doc);
	return 0;
}
