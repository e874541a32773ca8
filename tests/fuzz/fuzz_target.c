// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer harness for the request-target splitter (agent/target.c). The first byte picks
 * CONNECT and whether a parameter allowlist is in force; the rest is the target. Besides
 * memory errors it aborts when an invariant the exchange relies on is broken:
 *  - the path fits its buffer, is NUL-terminated at path_len, and has no '?' or '#';
 *  - with no allowlist the path has no ';' except inside a "//authority" first segment;
 *  - host points inside the target (or is the empty literal) and has no '@';
 *  - splitting the redacted path again takes nothing more away, unless dropping a parameter
 *    made a new "//" start (whose first segment is then read as an authority).
 * libFuzzer passes data in a heap buffer of exactly size bytes, so ASan sees any over-read.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_parts(const char *t, size_t len, const struct target_parts *p, bool allow)
{
	if (p->path_len > TARGET_PATH_MAX || p->path[p->path_len] != '\0' ||
	    strlen(p->path) > p->path_len)
		abort();
	if (memchr(p->path, '?', p->path_len) || memchr(p->path, '#', p->path_len))
		abort();
	if (p->host_len && (p->host < t || p->host + p->host_len > t + len))
		abort();
	if (memchr(p->host, '@', p->host_len))
		abort();
	if (p->port < 0 || p->port > 65535)
		abort();
	if (!allow && p->form == TARGET_ORIGIN && p->path_len > 2 &&
	    memcmp(p->path, "//", 2) != 0 && memchr(p->path, ';', p->path_len))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct path_param_allow allow;
	struct target_parts p, again;
	const char *t;
	bool use_allow;

	if (!size)
		return 0;
	if (!allow.n)
		path_param_allow_parse(&allow, "lang,v,x");
	use_allow = data[0] & 2;
	t = (const char *)data + 1;
	target_split(t, size - 1, data[0] & 1, use_allow ? &allow : NULL, &p);
	check_parts(t, size - 1, &p, use_allow);
	if (p.form == TARGET_ORIGIN && memchr(p.path, '\0', p.path_len) == NULL) {
		char copy[TARGET_PATH_MAX + 1];

		memcpy(copy, p.path, p.path_len + 1);
		target_split(copy, p.path_len, false, use_allow ? &allow : NULL, &again);
		if (memcmp(p.path, "//", 2) != 0 &&
		    (again.path_len != p.path_len || memcmp(again.path, p.path, p.path_len) != 0))
			abort();
	}
	return 0;
}
