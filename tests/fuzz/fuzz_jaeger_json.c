// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer harness for span lines -> Jaeger's JSON model (agent/jaeger_json.c), the text
 * the UI's API sends to browsers. The input is split into lines, as a store or a span file
 * gives them. Besides memory errors it aborts when:
 *  - an answer is not strict JSON (json_read), or holds a raw '<', '>' or '&' (markup from
 *    traffic must stay inert in any page);
 *  - spans are written when no line was counted as one, or the counts do not add up;
 *  - a failed conversion left bytes in the buffer;
 *  - a string written with jbuf_str does not read back as itself (valid UTF-8 input).
 *
 *   make build/fuzz/fuzz_jaeger_json && build/fuzz/fuzz_jaeger_json -max_total_time=30
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jaeger_json.h"
#include "json_read.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_LINES 64

static void check_inert(const struct jbuf *b)
{
	if (memchr(b->p, '<', b->len) || memchr(b->p, '>', b->len) || memchr(b->p, '&', b->len))
		abort();
}

/* s as a JSON string: always strict JSON and inert; when s is itself a valid string body
 * (well-formed UTF-8, no control byte, no backslash), it reads back as exactly s. */
static void check_round_trip(const char *s, size_t n)
{
	struct json_doc d, raw;
	struct jbuf b, q;
	const struct json_value *v, *w;

	jbuf_init(&b, 1u << 22);
	jbuf_str(&b, s, n);
	json_doc__init(&d);
	if (b.err || json_doc__parse(&d, b.p, b.len))
		abort();
	check_inert(&b);
	v = json_doc__root(&d);
	if (v->type != JSON_STRING)
		abort();
	jbuf_init(&q, 1u << 22);
	jbuf_put(&q, "\"", 1);
	jbuf_put(&q, s, n);
	jbuf_put(&q, "\"", 1);
	json_doc__init(&raw);
	if (!q.err && !memchr(s, '\\', n) && json_doc__parse(&raw, q.p, q.len) == 0) {
		w = json_doc__root(&raw);
		if (w->len != v->len || memcmp(w->str, v->str, v->len) || w->len != n)
			abort();
	}
	json_doc__free(&raw);
	jbuf_free(&q);
	json_doc__free(&d);
	jbuf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *lines[MAX_LINES];
	size_t lens[MAX_LINES], n = 0, start = 0;
	struct jaeger_stats st = {0};
	struct json_doc d;
	struct jbuf b;
	int err;

	for (size_t i = 0; i <= size && n < MAX_LINES; i++) {
		if (i == size || data[i] == '\n') {
			lines[n] = (const char *)data + start;
			lens[n++] = i - start;
			start = i + 1;
		}
	}
	jbuf_init(&b, 1u << 22);
	err = jaeger_trace_json(&b, lines, lens, n, &st);
	if (st.spans + st.malformed + st.other_trace > n)
		abort();
	if (err == 0) {
		if (!st.spans)
			abort();
		json_doc__init(&d);
		if (json_doc__parse(&d, b.p, b.len))
			abort();
		json_doc__free(&d);
		check_inert(&b);
	} else if (b.len != 0 || (err == -ENOENT && st.spans)) {
		abort();
	}
	jbuf_free(&b);
	check_round_trip((const char *)data, size < 4096 ? size : 4096);
	return 0;
}
