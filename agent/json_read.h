/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A small, strict JSON reader (RFC 8259) for one document at a time, such as one line of
 * `hoptrace -o json` output. It parses into a flat DOM owned by a reusable struct json_doc,
 * then offers lookups. Pure: no I/O, no global state, nothing read outside (text, len).
 *
 * Strict means: exactly one value with optional whitespace (space, tab, CR, LF) around it;
 * no comments, trailing commas, single quotes, NaN/Infinity, leading zeros or leading '+';
 * the text must be well-formed UTF-8 (no overlong forms, no surrogates, nothing above
 * U+10FFFF); control characters inside strings must be escaped; a \u escape of a UTF-16
 * surrogate must be a high-low pair (a lone surrogate has no UTF-8 form); no object may
 * repeat a key (RFC 8259 section 4 leaves duplicates to the implementation; consumers of
 * our output disagree on which one wins, so we refuse them).
 *
 * Limits that keep a hostile line cheap: JSON_READ_MAX_DEPTH nested arrays/objects and
 * JSON_READ_MAX_LEN bytes. Decoded strings are NUL-terminated for convenience, but may
 * contain U+0000 (\u0000): compare lengths when that matters.
 */
#ifndef HOPTRACE_JSON_READ_H
#define HOPTRACE_JSON_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_READ_MAX_DEPTH 64
#define JSON_READ_MAX_LEN (1u << 20)

enum json_type {
	JSON_NULL = 0,
	JSON_FALSE,
	JSON_TRUE,
	JSON_NUMBER,
	JSON_STRING,
	JSON_ARRAY,
	JSON_OBJECT,
};

/* One value of a parsed document. Siblings and children are indexes into the document's
 * value array, where index 0 is never used: 0 means "none". */
struct json_value {
	const char *key; /* member name (decoded) when the parent is an object, else NULL */
	const char *str; /* JSON_STRING: decoded text; JSON_NUMBER: the number as written */
	size_t key_len;
	size_t len;	/* of str */
	uint32_t next;	/* next element or member of the parent, 0 = last */
	uint32_t child; /* JSON_ARRAY/JSON_OBJECT: first element or member, 0 = empty */
	uint32_t count; /* JSON_ARRAY/JSON_OBJECT: number of elements or members */
	uint8_t type;	/* enum json_type */
};

struct json_doc {
	struct json_value *values;
	uint32_t nvalues, cap;
	char *strbuf; /* decoded strings and number texts, each NUL-terminated */
	size_t strused, strcap;
	const struct json_value **scratch; /* one object's members, for the duplicate check */
	uint32_t scratch_cap;
	size_t err_off;	 /* where parsing failed (byte offset into the text) */
	const char *err; /* why, a static string; NULL after a successful parse */
};

/* An empty document; json_doc__parse may be called on it any number of times. */
void json_doc__init(struct json_doc *d);
/* Release what the document holds; it may be parsed into again after json_doc__init. */
void json_doc__free(struct json_doc *d);
/*
 * Parse text[0..len) (NUL bytes in it are an error, not an end). Returns 0, -EINVAL for
 * text that is not strict JSON, -E2BIG past a limit, -ENOMEM. On failure d->err and
 * d->err_off say what and where; values of an earlier parse are gone either way.
 */
int json_doc__parse(struct json_doc *d, const char *text, size_t len);
/*
 * The same with the caller's limits in place of JSON_READ_MAX_LEN: at most max_len bytes of
 * text and max_values values (arrays, objects and scalars). For documents known to be large,
 * such as one line of the OpenTelemetry Collector's file exporter; the strings take up to
 * 2 * len + 1 bytes and each value sizeof(struct json_value), so both limits bound memory.
 */
int json_doc__parse_max(struct json_doc *d, const char *text, size_t len, size_t max_len,
			uint32_t max_values);
/* The root value after a successful parse, else NULL. */
const struct json_value *json_doc__root(const struct json_doc *d);
/* The first element or member of an array or object, NULL when empty or not a container. */
const struct json_value *json_doc__first(const struct json_doc *d, const struct json_value *v);
/* The element or member after v in its parent, NULL at the end. */
const struct json_value *json_doc__next(const struct json_doc *d, const struct json_value *v);
/* The member of object obj named key, NULL when absent or obj is not an object. */
const struct json_value *json_doc__member(const struct json_doc *d, const struct json_value *obj,
					  const char *key);

/* v's text when v is a string without U+0000, else NULL (so it is safe as a C string). */
const char *json_value_cstr(const struct json_value *v);
/* True, with *out set, when v is a number written as an integer (no fraction or exponent)
 * that fits in int64_t. */
bool json_value_int(const struct json_value *v, int64_t *out);

#endif
