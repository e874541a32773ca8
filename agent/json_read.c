// SPDX-License-Identifier: BSD-2-Clause
#include "json_read.h"
#include "text.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct parser {
	struct json_doc *d;
	const unsigned char *start, *p, *end;
	unsigned depth;
	uint32_t max_values; /* values a document may hold (its index 0 included) */
};

void json_doc__init(struct json_doc *d)
{
	memset(d, 0, sizeof(*d));
}

void json_doc__free(struct json_doc *d)
{
	free(d->values);
	free(d->strbuf);
	free(d->scratch);
	json_doc__init(d);
}

static int fail(struct parser *ps, const char *why, int err)
{
	ps->d->err = why;
	ps->d->err_off = (size_t)(ps->p - ps->start);
	return err;
}

/* new_value gave none: past the document's limit, or out of memory */
static int fail_value(struct parser *ps)
{
	if (ps->d->nvalues >= ps->max_values)
		return fail(ps, "too many values", -E2BIG);
	return fail(ps, "out of memory", -ENOMEM);
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static int grow_values(struct json_doc *d)
{
	uint32_t cap = d->cap ? d->cap * 2 : 64;
	struct json_value *v = realloc(d->values, cap * sizeof(*v));

	if (!v)
		return -ENOMEM;
	d->values = v;
	d->cap = cap;
	return 0;
}

/* A new value of this type: its index, or 0 (never a value's index) when out of memory. */
static uint32_t new_value(struct parser *ps, enum json_type type)
{
	struct json_doc *d = ps->d;

	if (d->nvalues >= ps->max_values)
		return 0;
	if (d->nvalues == d->cap && grow_values(d))
		return 0;
	memset(&d->values[d->nvalues], 0, sizeof(d->values[0]));
	d->values[d->nvalues].type = (uint8_t)type;
	return d->nvalues++;
}

static size_t utf8_encode(uint32_t cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* The 4 hex digits of a \u escape whose 'u' is at p[-1]; -1 when they are not 4 hex. */
static int32_t read_u16(const unsigned char *p, const unsigned char *end)
{
	int32_t v = 0;

	if (end - p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		int h = hex_digit_value(p[i]);

		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/*
 * Decode the \u escape at ps->p (pointing at the backslash) into a code point. UTF-16
 * surrogates must come as a high-low pair (RFC 8259 section 7), which is then combined.
 */
static int decode_u_escape(struct parser *ps, uint32_t *cp)
{
	int32_t hi = read_u16(ps->p + 2, ps->end), lo;

	if (hi < 0)
		return fail(ps, "\\u needs 4 hex digits", -EINVAL);
	if (hi >= 0xdc00 && hi <= 0xdfff)
		return fail(ps, "lone low surrogate in a \\u escape", -EINVAL);
	if (hi < 0xd800 || hi > 0xdbff) {
		ps->p += 6;
		*cp = (uint32_t)hi;
		return 0;
	}
	if (ps->end - ps->p < 12 || ps->p[6] != '\\' || ps->p[7] != 'u')
		return fail(ps, "high surrogate not followed by a low one", -EINVAL);
	lo = read_u16(ps->p + 8, ps->end);
	if (lo < 0xdc00 || lo > 0xdfff)
		return fail(ps, "high surrogate not followed by a low one", -EINVAL);
	ps->p += 12;
	*cp = 0x10000 + (((uint32_t)hi - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
	return 0;
}

/* One escape sequence at ps->p (the backslash), decoded into out; returns its length. */
static int decode_escape(struct parser *ps, char out[4], size_t *n)
{
	uint32_t cp;
	int err;

	if (ps->end - ps->p < 2)
		return fail(ps, "unterminated string", -EINVAL);
	switch (ps->p[1]) {
	case '"':
	case '\\':
	case '/':
		out[0] = (char)ps->p[1];
		break;
	case 'b':
		out[0] = '\b';
		break;
	case 'f':
		out[0] = '\f';
		break;
	case 'n':
		out[0] = '\n';
		break;
	case 'r':
		out[0] = '\r';
		break;
	case 't':
		out[0] = '\t';
		break;
	case 'u':
		err = decode_u_escape(ps, &cp);
		if (err)
			return err;
		*n = utf8_encode(cp, out);
		return 0;
	default:
		return fail(ps, "invalid escape in a string", -EINVAL);
	}
	ps->p += 2;
	*n = 1;
	return 0;
}

/* Copy n bytes into the string buffer; the buffer was sized for the whole text, so running
 * out means a bug here, reported as a limit rather than written past. */
static int put_bytes(struct parser *ps, const void *src, size_t n)
{
	struct json_doc *d = ps->d;

	if (d->strcap - d->strused < n)
		return fail(ps, "string buffer exhausted", -E2BIG);
	memcpy(d->strbuf + d->strused, src, n);
	d->strused += n;
	return 0;
}

/* The string at ps->p (the opening quote), decoded into the string buffer. */
static int parse_string(struct parser *ps, const char **out, size_t *outlen)
{
	struct json_doc *d = ps->d;
	size_t begin = d->strused;
	char esc[4];
	size_t n;
	int err;

	ps->p++;
	for (;;) {
		const unsigned char *run = ps->p;

		/* plain ASCII runs are copied in one go */
		while (ps->p < ps->end && *ps->p >= 0x20 && *ps->p < 0x80 && *ps->p != '"' &&
		       *ps->p != '\\')
			ps->p++;
		err = put_bytes(ps, run, (size_t)(ps->p - run));
		if (err)
			return err;
		if (ps->p == ps->end)
			return fail(ps, "unterminated string", -EINVAL);
		if (*ps->p == '"')
			break;
		if (*ps->p < 0x20)
			return fail(ps, "unescaped control character in a string", -EINVAL);
		if (*ps->p == '\\') {
			err = decode_escape(ps, esc, &n);
			if (!err)
				err = put_bytes(ps, esc, n);
		} else {
			n = utf8_sequence_len(ps->p, (size_t)(ps->end - ps->p));
			if (!n)
				return fail(ps, "invalid UTF-8 in a string", -EINVAL);
			err = put_bytes(ps, ps->p, n);
			ps->p += n;
		}
		if (err)
			return err;
	}
	ps->p++;
	err = put_bytes(ps, "", 1);
	if (err)
		return err;
	*out = d->strbuf + begin;
	*outlen = d->strused - begin - 1;
	return 0;
}

static bool is_digit(const struct parser *ps)
{
	return ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9';
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?  (RFC 8259 section 6) */
static int parse_number(struct parser *ps, uint32_t idx)
{
	const unsigned char *begin = ps->p;
	struct json_value *v;
	size_t at = ps->d->strused;
	int err;

	if (*ps->p == '-')
		ps->p++;
	if (!is_digit(ps))
		return fail(ps, "invalid number", -EINVAL);
	if (*ps->p++ != '0')
		while (is_digit(ps))
			ps->p++;
	if (ps->p < ps->end && *ps->p == '.') {
		ps->p++;
		if (!is_digit(ps))
			return fail(ps, "invalid number: no digit after '.'", -EINVAL);
		while (is_digit(ps))
			ps->p++;
	}
	if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
		ps->p++;
		if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
			ps->p++;
		if (!is_digit(ps))
			return fail(ps, "invalid number: no digit in the exponent", -EINVAL);
		while (is_digit(ps))
			ps->p++;
	}
	err = put_bytes(ps, begin, (size_t)(ps->p - begin));
	if (!err)
		err = put_bytes(ps, "", 1);
	if (err)
		return err;
	v = &ps->d->values[idx];
	v->str = ps->d->strbuf + at;
	v->len = (size_t)(ps->p - begin);
	return 0;
}

static int parse_literal(struct parser *ps, const char *word, enum json_type type, uint32_t *out)
{
	size_t n = strlen(word);

	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return fail(ps, "unexpected character", -EINVAL);
	*out = new_value(ps, type);
	if (!*out)
		return fail_value(ps);
	ps->p += n;
	return 0;
}

static int parse_value(struct parser *ps, uint32_t *out);

/* Append child to the container at idx, after prev (0: child becomes the first). */
static void link_child(struct json_doc *d, uint32_t idx, uint32_t *prev, uint32_t child)
{
	if (*prev)
		d->values[*prev].next = child;
	else
		d->values[idx].child = child;
	*prev = child;
	d->values[idx].count++;
}

static int parse_array(struct parser *ps, uint32_t idx)
{
	uint32_t prev = 0, child;
	int err;

	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		return 0;
	}
	for (;;) {
		err = parse_value(ps, &child);
		if (err)
			return err;
		link_child(ps->d, idx, &prev, child);
		skip_ws(ps);
		if (ps->p == ps->end)
			return fail(ps, "unterminated array", -EINVAL);
		if (*ps->p == ']')
			break;
		if (*ps->p != ',')
			return fail(ps, "expected ',' or ']'", -EINVAL);
		ps->p++;
	}
	ps->p++;
	return 0;
}

static int cmp_keys(const void *x, const void *y)
{
	const struct json_value *a = *(const struct json_value *const *)x;
	const struct json_value *b = *(const struct json_value *const *)y;
	int c = memcmp(a->key, b->key, a->key_len < b->key_len ? a->key_len : b->key_len);

	if (c)
		return c;
	return a->key_len < b->key_len ? -1 : a->key_len > b->key_len;
}

/* Sorting the member names finds a repeated one in O(n log n), whatever the object holds. */
static int check_duplicate_keys(struct parser *ps, uint32_t idx)
{
	struct json_doc *d = ps->d;
	uint32_t n = d->values[idx].count, i = 0;

	if (n < 2)
		return 0;
	if (n > d->scratch_cap) {
		const struct json_value **s = realloc(d->scratch, n * sizeof(*s));

		if (!s)
			return fail(ps, "out of memory", -ENOMEM);
		d->scratch = s;
		d->scratch_cap = n;
	}
	for (uint32_t c = d->values[idx].child; c; c = d->values[c].next)
		d->scratch[i++] = &d->values[c];
	qsort(d->scratch, n, sizeof(d->scratch[0]), cmp_keys);
	for (i = 1; i < n; i++)
		if (cmp_keys(&d->scratch[i - 1], &d->scratch[i]) == 0)
			return fail(ps, "duplicate key in an object", -EINVAL);
	return 0;
}

static int parse_object(struct parser *ps, uint32_t idx)
{
	uint32_t prev = 0, child;
	const char *key;
	size_t key_len;
	int err;

	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}') {
		ps->p++;
		return 0;
	}
	for (;;) {
		skip_ws(ps);
		if (ps->p == ps->end || *ps->p != '"')
			return fail(ps, "expected a member name", -EINVAL);
		err = parse_string(ps, &key, &key_len);
		if (err)
			return err;
		skip_ws(ps);
		if (ps->p == ps->end || *ps->p != ':')
			return fail(ps, "expected ':' after a member name", -EINVAL);
		ps->p++;
		err = parse_value(ps, &child);
		if (err)
			return err;
		ps->d->values[child].key = key;
		ps->d->values[child].key_len = key_len;
		link_child(ps->d, idx, &prev, child);
		skip_ws(ps);
		if (ps->p == ps->end)
			return fail(ps, "unterminated object", -EINVAL);
		if (*ps->p == '}')
			break;
		if (*ps->p != ',')
			return fail(ps, "expected ',' or '}'", -EINVAL);
		ps->p++;
	}
	ps->p++;
	return check_duplicate_keys(ps, idx);
}

static int parse_container(struct parser *ps, enum json_type type, uint32_t *out)
{
	int err;

	if (ps->depth == JSON_READ_MAX_DEPTH)
		return fail(ps, "nested too deeply", -E2BIG);
	*out = new_value(ps, type);
	if (!*out)
		return fail_value(ps);
	ps->depth++;
	err = type == JSON_ARRAY ? parse_array(ps, *out) : parse_object(ps, *out);
	ps->depth--;
	return err;
}

/* One value at ps->p (after optional whitespace); *out is its index. */
static int parse_value(struct parser *ps, uint32_t *out)
{
	const char *s;
	size_t len;
	int err;

	skip_ws(ps);
	if (ps->p == ps->end)
		return fail(ps, "unexpected end of text", -EINVAL);
	switch (*ps->p) {
	case '{':
		return parse_container(ps, JSON_OBJECT, out);
	case '[':
		return parse_container(ps, JSON_ARRAY, out);
	case '"':
		*out = new_value(ps, JSON_STRING);
		if (!*out)
			return fail_value(ps);
		err = parse_string(ps, &s, &len);
		if (err)
			return err;
		ps->d->values[*out].str = s;
		ps->d->values[*out].len = len;
		return 0;
	case 't':
		return parse_literal(ps, "true", JSON_TRUE, out);
	case 'f':
		return parse_literal(ps, "false", JSON_FALSE, out);
	case 'n':
		return parse_literal(ps, "null", JSON_NULL, out);
	}
	if (*ps->p != '-' && (*ps->p < '0' || *ps->p > '9'))
		return fail(ps, "unexpected character", -EINVAL);
	*out = new_value(ps, JSON_NUMBER);
	if (!*out)
		return fail_value(ps);
	return parse_number(ps, *out);
}

/*
 * Decoded strings and number texts never take more bytes than the text they come from, plus
 * one NUL each; each NUL needs at least one byte of text, so 2 * len + 1 always suffices and
 * the buffer is never moved while pointers into it are handed out.
 */
static int reserve_strbuf(struct json_doc *d, size_t len)
{
	size_t need = 2 * len + 1;
	char *buf;

	d->strused = 0;
	if (d->strcap >= need)
		return 0;
	buf = malloc(need);
	if (!buf)
		return -ENOMEM;
	free(d->strbuf);
	d->strbuf = buf;
	d->strcap = need;
	return 0;
}

int json_doc__parse(struct json_doc *d, const char *text, size_t len)
{
	return json_doc__parse_max(d, text, len, JSON_READ_MAX_LEN, UINT32_MAX);
}

int json_doc__parse_max(struct json_doc *d, const char *text, size_t len, size_t max_len,
			uint32_t max_values)
{
	struct parser ps = {.d = d,
			    .start = (const unsigned char *)text,
			    .p = (const unsigned char *)text,
			    .end = (const unsigned char *)text + len,
			    .max_values = max_values < UINT32_MAX ? max_values + 1 : UINT32_MAX};
	uint32_t root;
	int err;

	d->nvalues = 0;
	d->err = NULL;
	d->err_off = 0;
	if (len > max_len)
		return fail(&ps, "text too long", -E2BIG);
	if (reserve_strbuf(d, len) || (!d->cap && grow_values(d)))
		return fail(&ps, "out of memory", -ENOMEM);
	/* index 0 stays unused so that 0 can mean "none"; the root is value 1 */
	d->nvalues = 1;
	err = parse_value(&ps, &root);
	if (!err) {
		skip_ws(&ps);
		if (ps.p != ps.end)
			err = fail(&ps, "text after the value", -EINVAL);
	}
	if (err)
		d->nvalues = 0;
	return err;
}

const struct json_value *json_doc__root(const struct json_doc *d)
{
	return d->nvalues > 1 ? &d->values[1] : NULL;
}

const struct json_value *json_doc__first(const struct json_doc *d, const struct json_value *v)
{
	if (!v || (v->type != JSON_ARRAY && v->type != JSON_OBJECT) || !v->child)
		return NULL;
	return &d->values[v->child];
}

const struct json_value *json_doc__next(const struct json_doc *d, const struct json_value *v)
{
	return v && v->next ? &d->values[v->next] : NULL;
}

const struct json_value *json_doc__member(const struct json_doc *d, const struct json_value *obj,
					  const char *key)
{
	size_t n = strlen(key);

	if (!obj || obj->type != JSON_OBJECT)
		return NULL;
	for (const struct json_value *m = json_doc__first(d, obj); m; m = json_doc__next(d, m))
		if (m->key_len == n && memcmp(m->key, key, n) == 0)
			return m;
	return NULL;
}

const char *json_value_cstr(const struct json_value *v)
{
	if (!v || v->type != JSON_STRING || memchr(v->str, '\0', v->len))
		return NULL;
	return v->str;
}

bool json_value_int(const struct json_value *v, int64_t *out)
{
	const char *p;
	bool neg;
	uint64_t mag = 0, limit;

	if (!v || v->type != JSON_NUMBER || strpbrk(v->str, ".eE"))
		return false;
	/* the text is a valid JSON integer: [-]digits, no leading zeros */
	p = v->str;
	neg = *p == '-';
	p += neg;
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; *p; p++) {
		unsigned digit = (unsigned)(*p - '0');

		if (mag > (limit - digit) / 10)
			return false;
		mag = mag * 10 + digit;
	}
	*out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
	return true;
}
