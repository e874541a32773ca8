// SPDX-License-Identifier: BSD-2-Clause
/*
 * tsource_read: the span sources of the offline commands (see tsource.h). This file reads
 * JSON span line files and dispatches the other kinds by their prefix.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "tsource.h"

#define TSOURCE_MAX_REPORTS 3 /* malformed lines described one by one; the rest counted */

/* A source kind other than a JSON span file: "prefix:rest". */
struct tsource_kind {
	const char *prefix;
	int (*read)(const char *prog, const char *rest, const struct tsource_opts *opts,
		    span_line_fn fn, void *ctx, struct tsource_stats *stats);
};

static const struct tsource_kind kinds[] = {
    {"store", store_tsource_read},
    {NULL, NULL},
};

/*
 * The next line of f, without its '\n', into buf (cap bytes). Returns its length, or -1 at
 * end of file. A longer line is consumed whole and flagged *overlong.
 */
static long read_line(FILE *f, char *buf, size_t cap, bool *overlong)
{
	size_t n = 0;
	int c;

	*overlong = false;
	while ((c = getc_unlocked(f)) != EOF && c != '\n') {
		if (n < cap)
			buf[n++] = (char)c;
		else
			*overlong = true;
	}
	if (c == EOF && n == 0 && !*overlong)
		return -1;
	return (long)n;
}

static bool is_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return false;
	return true;
}

/* Every non-blank line of the file name (- for stdin) into fn. */
static int read_line_file(const char *prog, const char *name, span_line_fn fn, void *ctx,
			  struct tsource_stats *st)
{
	bool is_stdin = strcmp(name, "-") == 0;
	FILE *f = is_stdin ? stdin : fopen(name, "r");
	char *line = malloc(TSOURCE_MAX_LINE);
	uint64_t lineno = 0;
	bool overlong;
	int err = 0;
	long n;

	if (!f || !line) {
		err = f ? -ENOMEM : -errno;
		fprintf(stderr, "%s: cannot open %s: %s\n", prog, name, strerror(-err));
		goto out;
	}
	while (!err && (n = read_line(f, line, TSOURCE_MAX_LINE, &overlong)) >= 0) {
		lineno++;
		st->lines++;
		if (overlong) {
			if (st->malformed++ < TSOURCE_MAX_REPORTS)
				fprintf(stderr, "%s: %s:%" PRIu64 ": line longer than 1 MiB\n",
					prog, name, lineno);
			continue;
		}
		if (is_blank(line, (size_t)n))
			continue;
		st->spans++;
		err = fn(ctx, line, (size_t)n);
	}
	if (!err && ferror(f)) {
		err = -EIO;
		fprintf(stderr, "%s: cannot read %s: %s\n", prog, is_stdin ? "stdin" : name,
			strerror(errno));
	}
out:
	if (f && !is_stdin)
		fclose(f);
	free(line);
	return err;
}

static const struct tsource_kind *kind_of(const char *spec, const char **rest)
{
	for (const struct tsource_kind *k = kinds; k->prefix; k++) {
		size_t n = strlen(k->prefix);

		if (strncmp(spec, k->prefix, n) == 0 && spec[n] == ':') {
			*rest = spec + n + 1;
			return k;
		}
	}
	return NULL;
}

bool tsource_spec_known(const char *spec)
{
	const char *rest;

	/* a file name may contain ':'; only the known prefixes are taken as kinds */
	return spec && (kind_of(spec, &rest) || *spec);
}

int tsource_read(const char *prog, const char *spec, const struct tsource_opts *opts,
		 span_line_fn fn, void *ctx, struct tsource_stats *stats)
{
	static const struct tsource_opts no_opts;
	struct tsource_stats scratch = {0};
	const struct tsource_kind *k;
	const char *rest;

	if (!stats)
		stats = &scratch;
	if (!opts)
		opts = &no_opts;
	k = kind_of(spec, &rest);
	if (k)
		return k->read(prog, rest, opts, fn, ctx, stats);
	return read_line_file(prog, spec, fn, ctx, stats);
}
