// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer harness for the trace context codec. The whole input is one traceparent value; the
 * same bytes split at '\n' are the tracestate header values of one request. Besides memory
 * errors it aborts when an invariant that callers rely on is broken:
 *  - an accepted traceparent formats to a version-00 header that parses back to the same ids;
 *  - a normalised tracestate is a fixed point of tracestate_normalise;
 *  - a smaller output buffer either gives the same result or -1 with an empty string.
 * libFuzzer passes data in a heap buffer of exactly size bytes, so ASan sees any over-read.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "traceparent.h"

#define FUZZ_MAX_PARTS 16
#define FUZZ_SMALL_OUT 24

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_traceparent(const char *s, size_t len)
{
	struct trace_context tc, back;
	char buf[TRACEPARENT_STR_LEN + 1];

	if (traceparent_parse(s, len, &tc) != TRACEPARENT_VALID)
		return;
	if (tc.version == 0xff || bytes_all_zero(tc.trace_id, sizeof(tc.trace_id)) ||
	    bytes_all_zero(tc.parent_id, sizeof(tc.parent_id)))
		abort();
	if (traceparent_format(&tc, buf, sizeof(buf)) != TRACEPARENT_STR_LEN ||
	    strlen(buf) != TRACEPARENT_STR_LEN)
		abort();
	if (traceparent_parse(buf, TRACEPARENT_STR_LEN, &back) != TRACEPARENT_VALID)
		abort();
	if (memcmp(back.trace_id, tc.trace_id, sizeof(tc.trace_id)) ||
	    memcmp(back.parent_id, tc.parent_id, sizeof(tc.parent_id)) ||
	    back.flags != (tc.flags & 0x03) || back.version != 0)
		abort();
}

/* Split at '\n' into at most FUZZ_MAX_PARTS values; the last one keeps the rest. */
static size_t split_parts(const char *s, size_t len, const char **parts, size_t *lens)
{
	size_t n = 0, start = 0;

	for (size_t i = 0; i < len && n < FUZZ_MAX_PARTS - 1; i++) {
		if (s[i] != '\n')
			continue;
		parts[n] = s + start;
		lens[n++] = i - start;
		start = i + 1;
	}
	parts[n] = s + start;
	lens[n++] = len - start;
	return n;
}

static void check_tracestate(const char *s, size_t len)
{
	const char *parts[FUZZ_MAX_PARTS];
	size_t lens[FUZZ_MAX_PARTS];
	size_t n = split_parts(s, len, parts, lens);
	char out[TRACESTATE_MAX_LEN + 1], again[TRACESTATE_MAX_LEN + 1], small[FUZZ_SMALL_OUT];
	const char *norm = out;
	size_t norm_len;
	int rc, rc_small;

	rc = tracestate_normalise(parts, lens, n, out, sizeof(out));
	rc_small = tracestate_normalise(parts, lens, n, small, sizeof(small));
	if (rc_small >= 0 ? (rc_small != rc || strcmp(small, out)) : small[0] != '\0')
		abort();
	if (rc >= 0 && rc < FUZZ_SMALL_OUT && rc_small != rc)
		abort();
	if (rc < 0) {
		if (rc != -1 || out[0] != '\0')
			abort();
		return;
	}
	norm_len = (size_t)rc;
	if (strlen(out) != norm_len)
		abort();
	if (tracestate_normalise(&norm, &norm_len, 1, again, sizeof(again)) != rc ||
	    strcmp(out, again))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_traceparent((const char *)data, size);
	check_tracestate((const char *)data, size);
	return 0;
}
