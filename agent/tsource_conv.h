/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What the converting span sources (otlp:, jaeger:, tempo:) share: a writer of span lines in
 * hoptrace's JSON span schema (README "JSON output") from fields read elsewhere, and the
 * context that hands the lines on and counts what could not be converted.
 *
 * Everything read comes from files and servers the user does not control: every string is
 * escaped by the span writer's escaper (json_write.h), every object keeps the first of
 * repeated keys (a reader of our lines refuses duplicates), values and keys are bounded, and a
 * span whose line would pass TSOURCE_MAX_LINE is dropped and counted.
 */
#ifndef HOPTRACE_TSOURCE_CONV_H
#define HOPTRACE_TSOURCE_CONV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsource.h"

#define TCONV_MAX_KEYS 128	    /* attributes (and resource keys) kept per span */
#define TCONV_MAX_VALUE (16 * 1024) /* bytes of one string value kept (cut at a character) */
#define TCONV_MAX_LINKS 32	    /* links kept per span */
#define TCONV_MAX_REPORTS 3	    /* malformed items described one by one; the rest counted */

/* A growable text buffer that stops growing at max bytes (then nomem is set). */
struct tbuf {
	char *data;
	size_t len, cap, max;
	bool full; /* something did not fit: the text is incomplete */
};

void tbuf_put(struct tbuf *b, const char *s, size_t n);
/* s[0..n) as an escaped JSON string. */
void tbuf_put_str(struct tbuf *b, const char *s, size_t n);
void tbuf_put_u64(struct tbuf *b, uint64_t v);
void tbuf_put_i64(struct tbuf *b, int64_t v);
void tbuf_free(struct tbuf *b);

/* The fixed fields of a span line. Strings need not be NUL-terminated; NULL is "". */
struct tspan {
	uint8_t trace_id[16], span_id[8], parent_span_id[8]; /* parent all zero: a root */
	const char *name;
	size_t name_len;
	const char
	    *kind; /* "SERVER", "CLIENT", "INTERNAL", "PRODUCER", "CONSUMER", "UNSPECIFIED" */
	uint64_t start_ns, end_ns;
	const char *status; /* "UNSET", "OK", "ERROR" */
	const char *status_message;
	size_t status_message_len;
	const char *service;
	size_t service_len;
	uint64_t pid;
	uint32_t trace_flags;
	const char *tracestate;
	size_t tracestate_len;
};

/* One span line being written: tline_begin, attributes, tline_links, links, tline_resource,
 * resource keys, tline_finish. */
struct tline {
	struct tbuf b;
	const char *keys[TCONV_MAX_KEYS]; /* keys of the object being written */
	size_t key_lens[TCONV_MAX_KEYS];
	unsigned nkeys, nlinks;
	uint64_t dropped; /* keys repeated or over the limit, links over the limit */
};

void tline_begin(struct tline *l, const struct tspan *s);
/* Attributes, then (after tline_resource) resource keys; a key already written or past
 * TCONV_MAX_KEYS is dropped and counted. key must live until the next tline_begin. */
void tline_str(struct tline *l, const char *key, size_t klen, const char *v, size_t vlen);
void tline_int(struct tline *l, const char *key, size_t klen, int64_t v);
void tline_bool(struct tline *l, const char *key, size_t klen, bool v);
void tline_links(struct tline *l);
void tline_link(struct tline *l, const uint8_t trace_id[16], const uint8_t span_id[8],
		const char *reason);
void tline_resource(struct tline *l);
/* 0, or -E2BIG when the line passed TSOURCE_MAX_LINE or memory ran out. */
int tline_finish(struct tline *l);

/* Where converted spans go, and the count of what was not converted. */
struct tconv {
	const char *prog;  /* "hoptrace audit", for messages */
	const char *where; /* the source, as safe to show (no secrets) */
	span_line_fn fn;
	void *ctx;
	struct tsource_stats *st;
	struct tline line;
	int stop; /* fn's nonzero value: no more spans are handed over */
};

/* Count an item that is not a span (st->malformed) and describe the first few on stderr. */
void tconv_malformed(struct tconv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Finish the line being written and hand it to fn (or count why not). Returns c->stop. */
int tconv_emit(struct tconv *c);
void tconv_free(struct tconv *c);

/*
 * An id of n bytes (8 or 16) from text: 2n hex digits (either case) as OTLP/JSON writes
 * them, or base64 of n bytes as protobuf's own JSON mapping writes bytes (Tempo's JSON).
 * With short_hex, 1..2n hex digits are taken as the number with its leading zeros left out
 * (Jaeger's and Tempo's search ids). An all-zero id is refused.
 */
bool tconv_parse_id(const char *s, size_t len, uint8_t *out, size_t n, bool short_hex);

#endif
