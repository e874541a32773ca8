// SPDX-License-Identifier: BSD-2-Clause
#include "prom.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

/* U+FFFD REPLACEMENT CHARACTER: stands for each byte that is not well-formed UTF-8. */
static const char replacement[] = "\xef\xbf\xbd";

void prom_writer__init(struct prom_writer *w, size_t limit)
{
	*w = (struct prom_writer){.limit = limit};
}

void prom_writer__reset(struct prom_writer *w)
{
	w->len = 0;
	w->family_start = 0;
	w->in_family = false;
	w->truncated = false;
	w->name[0] = '\0';
}

char *prom_writer__take(struct prom_writer *w, size_t *len)
{
	char *text = w->len ? w->buf : NULL;

	*len = text ? w->len : 0;
	if (!text)
		free(w->buf);
	w->buf = NULL;
	w->cap = 0;
	prom_writer__reset(w);
	return text;
}

void prom_writer__free(struct prom_writer *w)
{
	free(w->buf);
	w->buf = NULL;
	w->cap = 0;
	prom_writer__reset(w);
}

/* Over the limit: the family being written goes, and so does everything after it. */
static int cut_family(struct prom_writer *w)
{
	w->len = w->in_family ? w->family_start : w->len;
	w->truncated = true;
	w->in_family = false;
	return -ENOSPC;
}

/* Room for n more bytes within the limit. 0, -ENOSPC (family cut) or -ENOMEM. */
static int reserve(struct prom_writer *w, size_t n)
{
	size_t want = w->len + n, cap;
	char *grown;

	if (w->truncated)
		return -ENOSPC;
	if (want > w->limit)
		return cut_family(w);
	if (want <= w->cap)
		return 0;
	cap = w->cap ? w->cap : 4096;
	while (cap < want)
		cap *= 2;
	if (cap > w->limit)
		cap = w->limit;
	grown = realloc(w->buf, cap);
	if (!grown)
		return -ENOMEM;
	w->buf = grown;
	w->cap = cap;
	return 0;
}

static int put(struct prom_writer *w, const char *s, size_t n)
{
	int err = reserve(w, n);

	if (err)
		return err;
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	return 0;
}

static int put_str(struct prom_writer *w, const char *s)
{
	return put(w, s, strlen(s));
}

/*
 * s escaped: backslash and newline always, the double quote in label values (quote), and
 * each byte that does not start well-formed UTF-8 as U+FFFD (the format is UTF-8, and
 * Prometheus refuses a scrape with an invalid label value).
 */
static int put_escaped(struct prom_writer *w, const char *s, bool quote)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t left = strlen(s);
	int err = 0;

	while (left && !err) {
		size_t run = 0, seq;

		/* plain bytes go in one copy */
		while (run < left && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '\\' &&
		       !(quote && p[run] == '"'))
			run++;
		if (run) {
			err = put(w, (const char *)p, run);
			p += run;
			left -= run;
			continue;
		}
		if (*p == '\\' || *p == '"' || *p == '\n') {
			char esc[2] = {'\\', *p == '\n' ? 'n' : (char)*p};

			err = put(w, esc, 2);
			seq = 1;
		} else if (*p < 0x80) {
			err = put(w, (const char *)p, 1); /* other controls are valid UTF-8 */
			seq = 1;
		} else if ((seq = utf8_sequence_len(p, left)) != 0) {
			err = put(w, (const char *)p, seq);
		} else {
			err = put(w, replacement, sizeof(replacement) - 1);
			seq = 1;
		}
		p += seq;
		left -= seq;
	}
	return err;
}

static bool name_char(char c, bool first, bool label)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (c == ':' && !label))
		return true;
	return !first && c >= '0' && c <= '9';
}

size_t prom_sanitize_name(char *out, size_t cap, const char *in, bool label)
{
	size_t n = 0;

	if (!cap)
		return 0;
	if (!name_char(in[0], true, label) && n + 1 < cap)
		out[n++] = '_'; /* "" and "2xx" are not names; "_" and "_2xx" are */
	for (const char *p = in; *p && n + 1 < cap; p++)
		out[n++] = name_char(*p, false, label) ? *p : '_';
	out[n] = '\0';
	return n;
}

size_t prom_format_double(char *out, double v)
{
	int n;

	if (isnan(v))
		return (size_t)sprintf(out, "NaN");
	if (isinf(v))
		return (size_t)sprintf(out, v > 0 ? "+Inf" : "-Inf");
	/* the shortest of these that reads back as v: 0.005 rather than 0.0050000000000000001 */
	for (int prec = 15; prec <= 17; prec++) {
		n = snprintf(out, 32, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			break;
	}
	return (size_t)n;
}

int prom__family(struct prom_writer *w, const char *name, enum prom_type type, const char *help)
{
	size_t n;
	int err;

	if (w->truncated)
		return -ENOSPC;
	n = prom_sanitize_name(w->name, PROM_NAME_MAX + 1, name, false);
	if (type == PROM_COUNTER && (n < 6 || strcmp(w->name + n - 6, "_total") != 0))
		strcpy(w->name + n, "_total");
	w->family_start = w->len;
	w->in_family = true;
	w->type = type;
	err = put_str(w, "# HELP ");
	if (!err)
		err = put_str(w, w->name);
	if (!err)
		err = put(w, " ", 1);
	if (!err)
		err = put_escaped(w, help ? help : "", false);
	if (!err)
		err = put_str(w, "\n# TYPE ");
	if (!err)
		err = put_str(w, w->name);
	if (!err)
		err = put_str(w, type == PROM_COUNTER ? " counter\n"
				 : type == PROM_GAUGE ? " gauge\n"
						      : " histogram\n");
	return err;
}

/* {a="x",b="y"} with an optional last label (extra: le of a bucket); nothing when empty. */
static int put_labels(struct prom_writer *w, const struct prom_label *labels, size_t nlabels,
		      const struct prom_label *extra)
{
	char lname[PROM_LABEL_NAME_MAX + 1];
	size_t total = nlabels + (extra ? 1 : 0);
	int err = 0;

	for (size_t i = 0; i < total && !err; i++) {
		const struct prom_label *l = i < nlabels ? &labels[i] : extra;
		size_t n = prom_sanitize_name(lname, sizeof(lname), l->name, true);

		err = put(w, i ? "," : "{", 1);
		if (!err)
			err = put(w, lname, n);
		if (!err)
			err = put(w, "=\"", 2);
		if (!err)
			err = put_escaped(w, l->value ? l->value : "", true);
		if (!err)
			err = put(w, "\"", 1);
	}
	if (!err && total)
		err = put(w, "}", 1);
	return err;
}

/* One line: NAME[suffix]{labels} value */
static int put_line(struct prom_writer *w, const char *suffix, const struct prom_label *labels,
		    size_t nlabels, const struct prom_label *extra, const char *value, size_t vlen)
{
	int err = put_str(w, w->name);

	if (!err)
		err = put_str(w, suffix);
	if (!err)
		err = put_labels(w, labels, nlabels, extra);
	if (!err)
		err = put(w, " ", 1);
	if (!err)
		err = put(w, value, vlen);
	if (!err)
		err = put(w, "\n", 1);
	return err;
}

static int check_open(const struct prom_writer *w, bool histogram)
{
	if (w->truncated)
		return -ENOSPC;
	if (!w->in_family || (w->type == PROM_HISTOGRAM) != histogram)
		return -EINVAL;
	return 0;
}

int prom__sample(struct prom_writer *w, const struct prom_label *labels, size_t nlabels,
		 double value)
{
	char num[32];
	size_t n;
	int err = check_open(w, false);

	if (err)
		return err;
	n = prom_format_double(num, value);
	return put_line(w, "", labels, nlabels, NULL, num, n);
}

int prom__sample_u64(struct prom_writer *w, const struct prom_label *labels, size_t nlabels,
		     uint64_t value)
{
	char num[TEXT_U64_DIGITS_MAX];
	int err = check_open(w, false);

	if (err)
		return err;
	return put_line(w, "", labels, nlabels, NULL, num,
			(size_t)(text_put_u64(num, value) - num));
}

int prom__histogram(struct prom_writer *w, const struct prom_label *labels, size_t nlabels,
		    const double *bounds, size_t nbounds, const uint64_t *counts, double sum)
{
	char le[32], num[32];
	struct prom_label le_label = {.name = "le", .value = le};
	uint64_t cumulative = 0;
	int err = check_open(w, true);
	size_t n;

	for (size_t i = 0; i <= nbounds && !err; i++) {
		cumulative += counts[i];
		prom_format_double(le, i < nbounds ? bounds[i] : INFINITY);
		n = (size_t)(text_put_u64(num, cumulative) - num);
		err = put_line(w, "_bucket", labels, nlabels, &le_label, num, n);
	}
	if (!err) {
		n = prom_format_double(num, sum);
		err = put_line(w, "_sum", labels, nlabels, NULL, num, n);
	}
	if (!err) {
		n = (size_t)(text_put_u64(num, cumulative) - num);
		err = put_line(w, "_count", labels, nlabels, NULL, num, n);
	}
	return err;
}
