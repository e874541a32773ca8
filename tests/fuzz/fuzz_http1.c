// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer harness for the HTTP/1.x parser.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iagent -Iinclude \
 *	agent/http1.c tests/fuzz/fuzz_http1.c -o fuzz_http1
 *
 * Input: one flags byte, one count byte, that many control bytes, then the stream. Each
 * control byte is one call: a feed of the next 1..64 stream bytes (starting an I/O or not),
 * a gap that skips stream bytes, a huge gap, or end of stream; the rest of the stream is fed
 * as one last I/O. Callbacks check the parser's promises (every string readable, heads and
 * completions alternate, tags in order). In "split" mode (flags bit 0) only feeds are made,
 * all but the first continuing the same I/O, and the callbacks must come out exactly as when
 * the stream is fed in one piece.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"

struct fuzz_ctx {
	struct http1_parser p;
	uint8_t flags;
	unsigned nheads;
	bool open;	   /* a head was reported and neither completed nor abandoned */
	uint64_t open_tag; /* its start_tag */
	uint64_t digest;   /* FNV-1a over every callback and what it reported */
	uint64_t callbacks;
};

static void mix(struct fuzz_ctx *c, const void *data, size_t len)
{
	const uint8_t *b = data;

	for (size_t i = 0; i < len; i++)
		c->digest = (c->digest ^ b[i]) * 0x100000001b3ULL;
}

static void mix_str(struct fuzz_ctx *c, struct http1_str s)
{
	if (s.len && !s.p)
		abort();
	mix(c, &s.len, sizeof(s.len));
	mix(c, s.p, s.len); /* ASan checks that every byte is readable */
}

static void check_head(const struct fuzz_ctx *c, const struct http1_head *h)
{
	if (h->kind != c->p.kind || h->version_minor > 1)
		abort();
	if (h->kind == HTTP1_RESPONSE && (h->status < 100 || h->status > 999))
		abort();
	if (h->kind == HTTP1_REQUEST && (h->method.len == 0 || h->target.len == 0))
		abort();
	if (h->tracestate_count > HTTP1_MAX_TRACESTATE_HDRS)
		abort();
	if ((h->traceparent_count == 0) != (h->traceparent.p == NULL))
		abort();
	if (h->content_length < -1 || h->header_bytes > HTTP1_MAX_HEADER_BLOCK)
		abort();
}

static enum http1_body_rule on_head(void *ctx, const struct http1_head *h)
{
	struct fuzz_ctx *c = ctx;

	check_head(c, h);
	if (c->open)
		abort();
	c->open = true;
	c->open_tag = h->start_tag;
	c->callbacks++;
	mix(c, "H", 1);
	mix(c, &h->status, sizeof(h->status));
	mix(c, &h->start_tag, sizeof(h->start_tag));
	mix(c, &h->content_length, sizeof(h->content_length));
	mix(c, &h->header_bytes, sizeof(h->header_bytes));
	mix_str(c, h->method);
	mix_str(c, h->target);
	mix_str(c, h->host);
	mix_str(c, h->user_agent);
	mix_str(c, h->traceparent);
	for (unsigned i = 0; i < h->tracestate_count; i++)
		mix_str(c, h->tracestate[i]);
	/* the flags pick which rule on_head returns, varying from one head to the next */
	return (enum http1_body_rule)(((c->flags >> 1) + c->nheads++) % 3);
}

static void on_complete(void *ctx, enum http1_kind kind, uint64_t end_tag)
{
	struct fuzz_ctx *c = ctx;

	if (!c->open || kind != c->p.kind || end_tag < c->open_tag)
		abort();
	c->open = false;
	c->callbacks++;
	mix(c, "C", 1);
	mix(c, &end_tag, sizeof(end_tag));
}

static void on_error(void *ctx, enum http1_error err)
{
	struct fuzz_ctx *c = ctx;

	if (err < HTTP1_ERR_BAD_START_LINE || err > HTTP1_ERR_NOT_HTTP)
		abort();
	c->open = false;
	c->callbacks++;
	mix(c, "E", 1);
	mix(c, &err, sizeof(err));
}

static const struct http1_callbacks callbacks = {
    .on_head = on_head,
    .on_complete = on_complete,
    .on_error = on_error,
};

static void ctx_init(struct fuzz_ctx *c, uint8_t flags)
{
	memset(c, 0, sizeof(*c));
	c->flags = flags;
	c->digest = 0xcbf29ce484222325ULL;
	http1_parser_init(&c->p, (flags & 0x80) ? HTTP1_RESPONSE : HTTP1_REQUEST, &callbacks, c);
}

/* Feed exactly n bytes from a heap copy, so reads past the end are caught. */
static void feed(struct fuzz_ctx *c, const uint8_t *d, size_t n, bool io_start, uint64_t tag)
{
	uint8_t *copy = malloc(n ? n : 1);

	if (!copy)
		return;
	memcpy(copy, d, n);
	http1_parser_feed(&c->p, copy, n, io_start, tag);
	free(copy);
}

static void run_ops(struct fuzz_ctx *c, const uint8_t *ops, size_t nops, const uint8_t *s,
		    size_t len, bool split_mode)
{
	size_t pos = 0;
	uint64_t tag = 1;

	for (size_t i = 0; i < nops && pos < len; i++) {
		unsigned op = ops[i] & 3, arg = ops[i] >> 2;
		size_t n = (size_t)arg + 1;

		if (!split_mode)
			tag++;
		if (split_mode || op <= 1) {
			n = n < len - pos ? n : len - pos;
			feed(c, s + pos, n, split_mode ? pos == 0 : op == 1, tag);
			pos += n;
		} else if (op == 2) {
			n = n < len - pos ? n : len - pos;
			http1_parser_gap(&c->p, n, tag);
			pos += n;
		} else if (arg < 8) {
			http1_parser_eof(&c->p, tag);
			c->open = false;
		} else {
			http1_parser_gap(&c->p, (uint64_t)arg << 40, tag);
		}
		if (http1_parser_in_message(&c->p) != c->open && c->p.state != HTTP1_ST_HEAD)
			abort();
	}
	if (pos < len)
		feed(c, s + pos, len - pos, split_mode ? pos == 0 : true,
		     split_mode ? tag : tag + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_ctx c, whole;
	const uint8_t *ops, *s;
	size_t nops, len;
	bool split_mode;
	uint8_t flags;

	if (size < 2)
		return 0;
	flags = data[0];
	nops = data[1];
	if (nops > size - 2)
		nops = size - 2;
	ops = data + 2;
	s = ops + nops;
	len = size - 2 - nops;
	split_mode = flags & 1;

	ctx_init(&c, flags);
	run_ops(&c, ops, nops, s, len, split_mode);
	http1_parser_eof(&c.p, UINT64_MAX);
	http1_parser_free(&c.p);
	if (c.p.hdr)
		abort();

	if (split_mode && len) {
		ctx_init(&whole, flags);
		feed(&whole, s, len, true, 1);
		http1_parser_eof(&whole.p, UINT64_MAX);
		http1_parser_free(&whole.p);
		if (whole.callbacks != c.callbacks || whole.digest != c.digest)
			abort();
	}
	return 0;
}
