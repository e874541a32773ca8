// SPDX-License-Identifier: BSD-2-Clause
/*
 * W3C Trace Context codec (https://www.w3.org/TR/trace-context-2/; Level 1 is the same grammar
 * without the random flag). Section names below are the spec's.
 */
#include "traceparent.h"

#include <limits.h>
#include <string.h>

/* Field offsets in "vv-<32 hex trace-id>-<16 hex parent-id>-ff" ("traceparent Header"). */
enum {
	TP_VERSION_OFF = 0,
	TP_TRACE_ID_OFF = 3,
	TP_PARENT_ID_OFF = 36,
	TP_FLAGS_OFF = 53,
};

#define TP_VERSION_FORBIDDEN 0xff
/* sampled (Level 1) and random (Level 2); the others are reserved and must be emitted as 0 */
#define TP_FLAGS_KNOWN 0x03

/* "tracestate Header": key and value length limits */
#define TS_SIMPLE_KEY_MAX 256
#define TS_TENANT_ID_MAX 241
#define TS_SYSTEM_ID_MAX 14
#define TS_VALUE_MAX 256

/* RFC 9110 5.6.3: OWS is space and HTAB only; CR, LF, VT are not whitespace to trim here. */
static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static void trim_ows(const char **s, size_t *len)
{
	while (*len && is_ows(**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len && is_ows((*s)[*len - 1]))
		(*len)--;
}

/* The grammar is HEXDIGLC: "AB" is not a spelling of "ab" but an invalid header. */
static int hexlc_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode 2n lowercase hex characters from s into n bytes; false on any other character. */
static bool hexlc_decode(const char *s, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = hexlc_value(s[2 * i]);
		int lo = hexlc_value(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

/*
 * Version 00 is exactly 55 characters. A higher version may append fields ("Versioning of
 * traceparent"), but only after a '-', so that "01.x" cannot be read as flags 01.
 */
static bool traceparent_length_ok(const char *s, size_t len, uint8_t version)
{
	if (len < TRACEPARENT_STR_LEN)
		return false;
	if (version == 0)
		return len == TRACEPARENT_STR_LEN;
	return len == TRACEPARENT_STR_LEN || s[TRACEPARENT_STR_LEN] == '-';
}

/* Caller guarantees len >= TRACEPARENT_STR_LEN. */
static bool traceparent_fields_decode(const char *s, struct trace_context *tc)
{
	if (s[TP_TRACE_ID_OFF - 1] != '-' || s[TP_PARENT_ID_OFF - 1] != '-' ||
	    s[TP_FLAGS_OFF - 1] != '-')
		return false;
	if (!hexlc_decode(s + TP_TRACE_ID_OFF, tc->trace_id, sizeof(tc->trace_id)) ||
	    bytes_all_zero(tc->trace_id, sizeof(tc->trace_id)))
		return false;
	if (!hexlc_decode(s + TP_PARENT_ID_OFF, tc->parent_id, sizeof(tc->parent_id)) ||
	    bytes_all_zero(tc->parent_id, sizeof(tc->parent_id)))
		return false;
	return hexlc_decode(s + TP_FLAGS_OFF, &tc->flags, 1);
}

/* *out is written only on success, so a caller may keep a previous context on failure. */
enum traceparent_result traceparent_parse(const char *value, size_t len, struct trace_context *out)
{
	struct trace_context tc;

	if (!value || !out)
		return TRACEPARENT_INVALID;
	trim_ows(&value, &len);
	/* every version is at least 55 characters, so the version field is in bounds */
	if (len < TRACEPARENT_STR_LEN)
		return TRACEPARENT_INVALID;
	if (!hexlc_decode(value + TP_VERSION_OFF, &tc.version, 1) ||
	    tc.version == TP_VERSION_FORBIDDEN)
		return TRACEPARENT_INVALID;
	if (!traceparent_length_ok(value, len, tc.version))
		return TRACEPARENT_INVALID;
	if (!traceparent_fields_decode(value, &tc))
		return TRACEPARENT_INVALID;
	*out = tc;
	return TRACEPARENT_VALID;
}

/* A buffer shorter than TRACEPARENT_STR_LEN + 1 gets "" (if it has room for that) and -1. */
int traceparent_format(const struct trace_context *tc, char *buf, size_t buflen)
{
	uint8_t flags;
	char *p = buf;

	if (!buf || buflen < TRACEPARENT_STR_LEN + 1 || !tc) {
		if (buf && buflen)
			buf[0] = '\0';
		return -1;
	}
	/* we only speak version 00, whatever version the context was received with */
	memcpy(p, "00-", 3);
	p += 3;
	hex_encode(tc->trace_id, sizeof(tc->trace_id), p);
	p += 2 * sizeof(tc->trace_id);
	*p++ = '-';
	hex_encode(tc->parent_id, sizeof(tc->parent_id), p);
	p += 2 * sizeof(tc->parent_id);
	*p++ = '-';
	flags = tc->flags & TP_FLAGS_KNOWN;
	hex_encode(&flags, 1, p);
	return TRACEPARENT_STR_LEN;
}

static bool is_lcalpha(char c)
{
	return c >= 'a' && c <= 'z';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Characters allowed after the first one of a key, tenant-id or system-id. */
static bool is_key_char(char c)
{
	return is_lcalpha(c) || is_digit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}

static bool key_tail_valid(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (!is_key_char(s[i]))
			return false;
	}
	return true;
}

/* simple-key = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" ) */
static bool simple_key_valid(const char *s, size_t len)
{
	return len >= 1 && len <= TS_SIMPLE_KEY_MAX && is_lcalpha(s[0]) &&
	       key_tail_valid(s + 1, len - 1);
}

/* tenant-id = ( lcalpha / DIGIT ) 0*240( ... ): may start with a digit, unlike the others */
static bool tenant_id_valid(const char *s, size_t len)
{
	return len >= 1 && len <= TS_TENANT_ID_MAX && (is_lcalpha(s[0]) || is_digit(s[0])) &&
	       key_tail_valid(s + 1, len - 1);
}

/* system-id = lcalpha 0*13( ... ) */
static bool system_id_valid(const char *s, size_t len)
{
	return len >= 1 && len <= TS_SYSTEM_ID_MAX && is_lcalpha(s[0]) &&
	       key_tail_valid(s + 1, len - 1);
}

/*
 * multi-tenant-key = tenant-id "@" system-id. '@' is not a key character, so a second '@'
 * ("foo@bar@baz") fails in system_id_valid and an empty side ("foo@", "@foo") fails on length.
 */
static bool key_valid(const char *s, size_t len)
{
	const char *at = memchr(s, '@', len);
	size_t tenant_len;

	if (!at)
		return simple_key_valid(s, len);
	tenant_len = (size_t)(at - s);
	return tenant_id_valid(s, tenant_len) && system_id_valid(at + 1, len - tenant_len - 1);
}

/* chr = %x20 / nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E: printable ASCII minus ',' '=' */
static bool is_value_char(char c)
{
	unsigned char u = (unsigned char)c;

	return u >= 0x20 && u <= 0x7e && u != ',' && u != '=';
}

/*
 * value = 0*255(chr) nblk-chr. Members are OWS-trimmed before this, so a trailing space cannot
 * reach here; the check stays so the function matches the grammar on its own.
 */
static bool value_valid(const char *s, size_t len)
{
	if (len < 1 || len > TS_VALUE_MAX || s[len - 1] == ' ')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!is_value_char(s[i]))
			return false;
	}
	return true;
}

/* list-member = key "=" value; the first '=' splits, so "foo=bar=baz" has an invalid value. */
static bool member_valid(const char *s, size_t len)
{
	const char *eq = memchr(s, '=', len);
	size_t key_len;

	if (!eq)
		return false;
	key_len = (size_t)(eq - s);
	return key_valid(s, key_len) && value_valid(eq + 1, len - key_len - 1);
}

struct tracestate_writer {
	char *out;
	size_t cap; /* characters that fit, NUL excluded */
	size_t len;
	unsigned int members;
};

static bool tracestate_writer__append(struct tracestate_writer *w, const char *s, size_t len)
{
	size_t need = len + (w->len ? 1 : 0);

	if (need > w->cap - w->len)
		return false;
	if (w->len)
		w->out[w->len++] = ',';
	memcpy(w->out + w->len, s, len);
	w->len += len;
	return true;
}

/* Empty (or OWS-only) members are allowed and dropped ("Combined Header Value"). */
static bool tracestate_writer__add_member(struct tracestate_writer *w, const char *s, size_t len)
{
	trim_ows(&s, &len);
	if (!len)
		return true;
	if (++w->members > TRACESTATE_MAX_MEMBERS)
		return false;
	if (!member_valid(s, len))
		return false;
	return tracestate_writer__append(w, s, len);
}

static bool tracestate_writer__add_value(struct tracestate_writer *w, const char *s, size_t len)
{
	size_t start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != ',')
			continue;
		if (!tracestate_writer__add_member(w, s + start, i - start))
			return false;
		start = i + 1;
	}
	return true;
}

int tracestate_normalise(const char *const *parts, const size_t *lens, size_t nparts, char *out,
			 size_t outlen)
{
	struct tracestate_writer w = {.out = out};

	if (!out || !outlen)
		return -1;
	out[0] = '\0';
	if (nparts && (!parts || !lens))
		return -1;
	/* the length is returned as an int */
	w.cap = outlen - 1 < INT_MAX ? outlen - 1 : INT_MAX;
	for (size_t i = 0; i < nparts; i++) {
		/* a NULL value is an empty header; NULL with a length is a caller bug */
		if (!parts[i] && lens[i])
			goto err_clear;
		if (parts[i] && !tracestate_writer__add_value(&w, parts[i], lens[i]))
			goto err_clear;
	}
	out[w.len] = '\0';
	return (int)w.len;

err_clear:
	out[0] = '\0';
	return -1;
}

void hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0x0f];
	}
	out[2 * n] = '\0';
}

bool bytes_all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i])
			return false;
	}
	return true;
}
