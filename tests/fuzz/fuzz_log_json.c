// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer harness for the JSON log lines (agent/log.c, --log-format json). The input is a
 * message (and, up to its first NUL, a field's value). Besides memory errors it aborts when
 *  - the line is not one strict JSON object (json_read.c) with ts, level, msg and the field;
 *  - the decoded msg or field holds a control byte (C0, DEL, C1): a reader printing it
 *    would send an escape sequence to a terminal;
 *  - a message of printable ASCII without a backslash does not decode to itself;
 *  - log_json_escape writes past a small buffer or leaves it unterminated.
 *
 *   make build/fuzz/fuzz_log_json && build/fuzz/fuzz_log_json -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_read.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void no_controls(const struct json_value *v)
{
	const unsigned char *s = (const unsigned char *)v->str;

	for (size_t i = 0; i < v->len; i++) {
		if (s[i] < 0x20 || s[i] == 0x7f)
			abort();
		if (s[i] == 0xc2 && i + 1 < v->len && s[i + 1] >= 0x80 && s[i + 1] < 0xa0)
			abort();
	}
}

static bool plain_ascii(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] >= 0x7f || p[i] == '\\')
			return false;
	return true;
}

static void check_small_buffers(const char *in, size_t len)
{
	char out[17];

	for (size_t cap = 0; cap <= 16; cap++) {
		memset(out, 'Z', sizeof(out));
		size_t n = log_json_escape(out, cap, in, len);

		if (cap && (n >= cap || out[n] != '\0'))
			abort();
		if (out[cap] != 'Z' && cap < sizeof(out))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *msg = (const char *)data;
	size_t vlen = strnlen(msg, size);
	char *value = malloc(vlen + 1), *line;
	struct log_field f;
	struct json_doc d;
	const struct json_value *root, *m, *v;
	size_t cap, n;

	if (!value)
		return 0;
	memcpy(value, msg, vlen);
	value[vlen] = '\0';
	f = LOG_STR("path", value);
	cap = log_json_size(size, &f, 1);
	line = malloc(cap);
	if (!line) {
		free(value);
		return 0;
	}
	n = log_format_json(line, cap, 1796515084123456789ull, (enum log_level)(size % 4), msg,
			    size, &f, 1);
	json_doc__init(&d);
	if (!n || memchr(line, '\n', n) || json_doc__parse(&d, line, n))
		abort();
	root = json_doc__root(&d);
	m = json_doc__member(&d, root, "msg");
	v = json_doc__member(&d, root, "path");
	if (root->type != JSON_OBJECT || !m || !v || !json_doc__member(&d, root, "ts") ||
	    !json_doc__member(&d, root, "level"))
		abort();
	no_controls(m);
	no_controls(v);
	if (plain_ascii(data, size) && (m->len != size || memcmp(m->str, data, size)))
		abort();
	check_small_buffers(msg, size);
	json_doc__free(&d);
	free(line);
	free(value);
	return 0;
}
