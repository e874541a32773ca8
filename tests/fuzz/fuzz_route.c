// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer harness for route templating (agent/route.c). The input is a path (as target.c
 * leaves it: any bytes) and, after a first NUL, a comma list of patterns. Besides memory
 * errors it aborts when an invariant the exchange relies on is broken:
 *  - the route and the masked path fit their buffers and are NUL-terminated at the length
 *    returned (out of a short buffer too);
 *  - templating is idempotent on its own output when no pattern is in force: a route is a
 *    fixed point, so a route seen twice counts once;
 *  - masking never adds a '/' nor lengthens a path past its buffer;
 *  - an accepted pattern, taken as a path, matches itself (or an earlier pattern);
 *  - the table resolves the same path twice to the same route.
 * libFuzzer passes data in a heap buffer of exactly size bytes, so ASan sees any over-read.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t count_slashes(const char *s, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++)
		c += s[i] == '/';
	return c;
}

static void check_template(const char *path, size_t len)
{
	char out[ROUTE_MAX + 1], again[ROUTE_MAX + 1], tiny[8];
	size_t n = route_template(NULL, path, len, out, sizeof(out)), m;

	if (n > ROUTE_MAX || out[n] != '\0')
		abort();
	/* a cut route may end inside a placeholder ("/{to"): fixed points are whole routes */
	if (n < ROUTE_MAX && !memchr(out, '\0', n)) {
		m = route_template(NULL, out, n, again, sizeof(again));
		if (m != n || memcmp(out, again, n) != 0)
			abort();
	}
	m = route_template(NULL, path, len, tiny, sizeof(tiny));
	if (m >= sizeof(tiny) || tiny[m] != '\0' || memcmp(tiny, out, m) != 0)
		abort();
}

static void check_mask(const char *path, size_t len)
{
	char buf[ROUTE_PATH_MAX + 1];
	size_t in = len > 512 ? 512 : len, n;

	memcpy(buf, path, in);
	buf[in] = '\0';
	n = route_mask_path(buf, in, 513);
	if (n > 512 || buf[n] != '\0' || count_slashes(buf, n) > count_slashes(path, in))
		abort();
}

static void check_pattern_matches_itself(const struct route_patterns *pats, unsigned i)
{
	const char *pat = pats->pattern[i];
	char out[ROUTE_MAX + 1];
	unsigned j;

	if (strlen(pat) > ROUTE_PATTERN_MAX || pat[0] != '/')
		abort();
	route_template(pats, pat, strlen(pat), out, sizeof(out));
	for (j = 0; j <= i; j++)
		if (strcmp(out, pats->pattern[j]) == 0)
			break;
	if (j > i)
		abort();
}

static void check_patterns(const char *path, size_t len, const char *list)
{
	static const uint8_t key[16] = {7};
	static struct route_table table; /* kept across inputs: it fills, and overflows */
	struct route_patterns pats = {0};
	char out[ROUTE_MAX + 1], again[ROUTE_MAX + 1];

	if (route_patterns_parse(&pats, list) != 0)
		pats.n = 0; /* what was added before the bad one stays: still valid patterns */
	route_template(&pats, path, len, out, sizeof(out));
	for (unsigned i = 0; i < pats.n; i++)
		check_pattern_matches_itself(&pats, i);
	if (!table.routes && route_table__init(&table, 64, NULL, key))
		abort();
	table.patterns = &pats;
	route_table__resolve(&table, "svc", false, path, len, out, sizeof(out));
	route_table__resolve(&table, "svc", false, path, len, again, sizeof(again));
	table.patterns = NULL;
	if (strcmp(out, again) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = (const char *)data;
	const char *nul = memchr(data, '\0', size);
	size_t len = nul ? (size_t)(nul - path) : size;
	char list[2 * ROUTE_PATTERN_MAX + 1];

	check_template(path, len);
	check_mask(path, len);
	if (nul) {
		size_t n = size - len - 1;

		if (n > sizeof(list) - 1)
			n = sizeof(list) - 1;
		memcpy(list, nul + 1, n);
		list[n] = '\0';
		check_patterns(path, len, list);
	}
	return 0;
}
