// SPDX-License-Identifier: BSD-2-Clause
/* The span line writer of the converting sources (see tsource_conv.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_write.h"
#include "text.h"
#include "tsource_conv.h"

static bool tbuf_reserve(struct tbuf *b, size_t n)
{
	size_t cap = b->cap ? b->cap : 4096;
	char *data;

	if (b->full)
		return false;
	if (n <= b->cap - b->len)
		return true;
	if (n > b->max - b->len) {
		b->full = true;
		return false;
	}
	while (cap - b->len < n)
		cap *= 2;
	if (cap > b->max)
		cap = b->max;
	data = realloc(b->data, cap);
	if (!data) {
		b->full = true;
		return false;
	}
	b->data = data;
	b->cap = cap;
	return true;
}

void tbuf_put(struct tbuf *b, const char *s, size_t n)
{
	if (!n || !tbuf_reserve(b, n))
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
}

void tbuf_put_str(struct tbuf *b, const char *s, size_t n)
{
	size_t room = json_write_room(n);

	if (!tbuf_reserve(b, room))
		return;
	b->len = (size_t)(json_write_str(b->data + b->len, s ? s : "", s ? n : 0) - b->data);
}

void tbuf_put_u64(struct tbuf *b, uint64_t v)
{
	char num[TEXT_U64_DIGITS_MAX];

	tbuf_put(b, num, (size_t)(text_put_u64(num, v) - num));
}

void tbuf_put_i64(struct tbuf *b, int64_t v)
{
	if (v < 0)
		tbuf_put(b, "-", 1);
	tbuf_put_u64(b, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
}

void tbuf_free(struct tbuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->full = false;
}

#define put_lit(b, lit) tbuf_put((b), (lit), sizeof(lit) - 1)

static void put_hex(struct tbuf *b, const uint8_t *id, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char hex[34];
	size_t o = 0;

	hex[o++] = '"';
	for (size_t i = 0; i < n; i++) {
		hex[o++] = digits[id[i] >> 4];
		hex[o++] = digits[id[i] & 0xf];
	}
	hex[o++] = '"';
	tbuf_put(b, hex, o);
}

static bool id_is_zero(const uint8_t *id, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (id[i])
			return false;
	return true;
}

/* A value cut to TCONV_MAX_VALUE bytes, at the start of a UTF-8 character. */
static size_t value_len(const char *v, size_t n)
{
	if (n <= TCONV_MAX_VALUE)
		return n;
	n = TCONV_MAX_VALUE;
	while (n && ((unsigned char)v[n] & 0xc0) == 0x80)
		n--;
	return n;
}

void tline_begin(struct tline *l, const struct tspan *s)
{
	struct tbuf *b = &l->b;

	b->len = 0;
	b->full = false;
	b->max = TSOURCE_MAX_LINE;
	l->nkeys = l->nlinks = 0;
	put_lit(b, "{\"trace_id\":");
	put_hex(b, s->trace_id, 16);
	put_lit(b, ",\"span_id\":");
	put_hex(b, s->span_id, 8);
	put_lit(b, ",\"parent_span_id\":");
	if (id_is_zero(s->parent_span_id, 8))
		put_lit(b, "\"\"");
	else
		put_hex(b, s->parent_span_id, 8);
	put_lit(b, ",\"name\":");
	tbuf_put_str(b, s->name, value_len(s->name ? s->name : "", s->name_len));
	put_lit(b, ",\"kind\":");
	tbuf_put_str(b, s->kind, strlen(s->kind));
	put_lit(b, ",\"start_unix_ns\":");
	tbuf_put_u64(b, s->start_ns);
	put_lit(b, ",\"end_unix_ns\":");
	tbuf_put_u64(b, s->end_ns);
	put_lit(b, ",\"duration_ns\":");
	tbuf_put_u64(b, s->end_ns >= s->start_ns ? s->end_ns - s->start_ns : 0);
	put_lit(b, ",\"status\":");
	tbuf_put_str(b, s->status, strlen(s->status));
	put_lit(b, ",\"status_message\":");
	tbuf_put_str(b, s->status_message,
		     value_len(s->status_message ? s->status_message : "", s->status_message_len));
	put_lit(b, ",\"service.name\":");
	if (s->service && s->service_len)
		tbuf_put_str(b, s->service, value_len(s->service, s->service_len));
	else
		put_lit(b, "\"unknown_service\"");
	put_lit(b, ",\"pid\":");
	tbuf_put_u64(b, s->pid);
	put_lit(b, ",\"tid\":0,\"trace_flags\":");
	tbuf_put_u64(b, s->trace_flags);
	put_lit(b, ",\"tracestate\":");
	tbuf_put_str(b, s->tracestate,
		     value_len(s->tracestate ? s->tracestate : "", s->tracestate_len));
	put_lit(b, ",\"attributes\":{");
}

/* Whether key may be written in the object being written (and then it is remembered). */
static bool key_ok(struct tline *l, const char *key, size_t klen)
{
	if (l->nkeys == TCONV_MAX_KEYS || klen > TCONV_MAX_VALUE) {
		l->dropped++;
		return false;
	}
	for (unsigned i = 0; i < l->nkeys; i++)
		if (l->key_lens[i] == klen && memcmp(l->keys[i], key, klen) == 0) {
			l->dropped++;
			return false;
		}
	if (l->nkeys)
		put_lit(&l->b, ",");
	l->keys[l->nkeys] = key;
	l->key_lens[l->nkeys++] = klen;
	tbuf_put_str(&l->b, key, klen);
	put_lit(&l->b, ":");
	return true;
}

void tline_str(struct tline *l, const char *key, size_t klen, const char *v, size_t vlen)
{
	if (key_ok(l, key, klen))
		tbuf_put_str(&l->b, v, value_len(v ? v : "", vlen));
}

void tline_int(struct tline *l, const char *key, size_t klen, int64_t v)
{
	if (key_ok(l, key, klen))
		tbuf_put_i64(&l->b, v);
}

void tline_bool(struct tline *l, const char *key, size_t klen, bool v)
{
	if (!key_ok(l, key, klen))
		return;
	if (v)
		put_lit(&l->b, "true");
	else
		put_lit(&l->b, "false");
}

void tline_links(struct tline *l)
{
	put_lit(&l->b, "},\"links\":[");
}

void tline_link(struct tline *l, const uint8_t trace_id[16], const uint8_t span_id[8],
		const char *reason)
{
	if (l->nlinks == TCONV_MAX_LINKS) {
		l->dropped++;
		return;
	}
	if (l->nlinks++)
		put_lit(&l->b, ",");
	put_lit(&l->b, "{\"trace_id\":");
	put_hex(&l->b, trace_id, 16);
	put_lit(&l->b, ",\"span_id\":");
	put_hex(&l->b, span_id, 8);
	put_lit(&l->b, ",\"reason\":");
	tbuf_put_str(&l->b, reason, strlen(reason));
	put_lit(&l->b, "}");
}

void tline_resource(struct tline *l)
{
	put_lit(&l->b, "],\"resource\":{");
	l->nkeys = 0;
}

int tline_finish(struct tline *l)
{
	put_lit(&l->b, "}}");
	return l->b.full ? -E2BIG : 0;
}

void tconv_malformed(struct tconv *c, const char *fmt, ...)
{
	char msg[256], safe[sizeof(msg) * TEXT_ESC_MAX_PER_BYTE + 1];
	va_list ap;

	if (c->st->malformed++ >= TCONV_MAX_REPORTS)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* messages may quote what the source holds: never raw to the terminal */
	text_escape_terminal(safe, sizeof(safe), msg, strlen(msg), 0);
	fprintf(stderr, "%s: %s: %s\n", c->prog, c->where, safe);
}

int tconv_emit(struct tconv *c)
{
	if (c->stop)
		return c->stop;
	if (tline_finish(&c->line)) {
		tconv_malformed(c, "a span longer than %u bytes as a span line: skipped",
				TSOURCE_MAX_LINE);
		return 0;
	}
	c->st->spans++;
	c->stop = c->fn(c->ctx, c->line.b.data, c->line.b.len);
	return c->stop;
}

void tconv_free(struct tconv *c)
{
	tbuf_free(&c->line.b);
}

static int b64_value(int ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+' || ch == '-')
		return 62;
	if (ch == '/' || ch == '_')
		return 63;
	return -1;
}

/* Standard or URL-safe base64 of exactly n bytes, padded or not. */
static bool parse_base64(const char *s, size_t len, uint8_t *out, size_t n)
{
	size_t chars = (n * 8 + 5) / 6, o = 0;
	uint32_t acc = 0;
	int bits = 0;

	while (len > chars && s[len - 1] == '=')
		len--;
	if (len != chars)
		return false;
	for (size_t i = 0; i < len; i++) {
		int v = b64_value((unsigned char)s[i]);

		if (v < 0)
			return false;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o < n)
				out[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* the unused low bits of the last character must be zero (canonical form) */
	return o == n && acc == 0;
}

bool tconv_parse_id(const char *s, size_t len, uint8_t *out, size_t n, bool short_hex)
{
	bool hex = len > 0 && len <= 2 * n;

	if (!s)
		return false;
	for (size_t i = 0; hex && i < len; i++)
		hex = hex_digit_value((unsigned char)s[i]) >= 0;
	if (hex && (len == 2 * n || short_hex)) {
		size_t pad = 2 * n - len;

		memset(out, 0, n);
		for (size_t i = 0; i < len; i++) {
			size_t pos = pad + i;
			int v = hex_digit_value((unsigned char)s[i]);

			out[pos / 2] |= (uint8_t)(pos % 2 ? v : v << 4);
		}
	} else if (!parse_base64(s, len, out, n)) {
		return false;
	}
	return !id_is_zero(out, n);
}
