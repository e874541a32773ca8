// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer harness for the strict JSON reader (agent/json_read.c). The whole input is one
 * document. Besides memory errors it aborts when an invariant that callers rely on breaks:
 *  - a failed parse leaves no root and says why and where (an offset within the input);
 *  - every value of an accepted document is reachable from the root, counts match the
 *    children, objects have no repeated key, strings are NUL-terminated and well-formed
 *    UTF-8, json_value_int agrees with a reparse of the number's text;
 *  - the same document, reused for a second parse of the same bytes, gives the same tree.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iagent -Iinclude \
 *         tests/fuzz/fuzz_json_read.c agent/json_read.c -o build/fuzz_json_read
 *   build/fuzz_json_read -max_total_time=30 -max_len=4096
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_read.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t utf8_ok_len(const unsigned char *p, size_t n)
{
	/* a simpler second opinion: decode and check ranges */
	uint32_t cp;
	size_t len;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0)
		len = 2, cp = p[0] & 0x1f;
	else if ((p[0] & 0xf0) == 0xe0)
		len = 3, cp = p[0] & 0x0f;
	else if ((p[0] & 0xf8) == 0xf0)
		len = 4, cp = p[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static void check_utf8(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;

	if (p[len] != '\0')
		abort();
	for (size_t i = 0; i < len;) {
		size_t n = p[i] ? utf8_ok_len(p + i, len - i) : 1; /* U+0000 from \u0000 */

		if (!n)
			abort();
		i += n;
	}
}

static void check_number(const struct json_value *v)
{
	int64_t got;
	bool is_int = json_value_int(v, &got);
	bool plain = strpbrk(v->str, ".eE") == NULL;

	if (v->len != strlen(v->str) || !v->len)
		abort();
	if (is_int) {
		char *end;
		long long want = strtoll(v->str, &end, 10);

		if (!plain || *end || want != got)
			abort();
	}
}

/* Walk the tree; returns the number of values seen. */
static uint32_t walk(const struct json_doc *d, const struct json_value *v, unsigned depth)
{
	uint32_t seen = 1, n = 0;

	if (depth > JSON_READ_MAX_DEPTH + 1)
		abort();
	switch (v->type) {
	case JSON_STRING:
		check_utf8(v->str, v->len);
		break;
	case JSON_NUMBER:
		check_number(v);
		break;
	case JSON_ARRAY:
	case JSON_OBJECT:
		for (const struct json_value *c = json_doc__first(d, v); c; c = json_doc__next(d, c)) {
			if ((v->type == JSON_OBJECT) != (c->key != NULL))
				abort();
			if (c->key) {
				check_utf8(c->key, c->key_len);
				/* the first member with this key is this one: no duplicates */
				if (c->key_len == strlen(c->key) && json_doc__member(d, v, c->key) != c)
					abort();
			}
			seen += walk(d, c, depth + 1);
			n++;
		}
		if (n != v->count)
			abort();
		break;
	case JSON_NULL:
	case JSON_TRUE:
	case JSON_FALSE:
		break;
	default:
		abort();
	}
	return seen;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_doc d;
	uint32_t first_values;
	int err;

	json_doc__init(&d);
	err = json_doc__parse(&d, (const char *)data, size);
	if (err) {
		if (json_doc__root(&d) || !d.err || d.err_off > size)
			abort();
		json_doc__free(&d);
		return 0;
	}
	if (!json_doc__root(&d) || d.err)
		abort();
	first_values = walk(&d, json_doc__root(&d), 0);
	/* every value but the unused slot 0 is in the tree */
	if (first_values != d.nvalues - 1)
		abort();
	if (json_doc__parse(&d, (const char *)data, size) ||
	    walk(&d, json_doc__root(&d), 0) != first_values)
		abort();
	json_doc__free(&d);
	return 0;
}
