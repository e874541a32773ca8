/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A writer of the Prometheus text exposition format, version 0.0.4: one family at a time
 * (# HELP and # TYPE, then its samples), counters, gauges and histograms. Pure: it only
 * appends to a memory buffer, bounded by a limit set at init.
 *
 * Names and label values may come from traced traffic (routes, service names): metric and
 * label names are sanitised to the format's alphabet, label values and HELP text escaped
 * (backslash, double quote, newline), and bytes that are not well-formed UTF-8 replaced by
 * U+FFFD, so that whatever goes in, what comes out parses.
 *
 * When the text would pass the limit, the family being written is cut off whole and every
 * later call is ignored: a scrape sees whole families only, never a histogram without its
 * +Inf bucket. prom_writer.truncated says it happened.
 */
#ifndef HOPTRACE_PROM_H
#define HOPTRACE_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest metric name kept (longer ones are cut); suffixes (_total, _bucket) come on top. */
#define PROM_NAME_MAX 200
/* Longest label name kept. */
#define PROM_LABEL_NAME_MAX 100

enum prom_type {
	PROM_COUNTER, /* "_total" is appended to the family name if it lacks it */
	PROM_GAUGE,
	PROM_HISTOGRAM, /* samples NAME_bucket{le=...}, NAME_sum, NAME_count */
};

struct prom_label {
	const char *name;  /* sanitised like a metric name, without ':' */
	const char *value; /* any bytes up to the NUL: escaped */
};

struct prom_writer {
	char *buf;
	size_t len;
	size_t cap;
	size_t limit;	     /* most bytes the text may take */
	size_t family_start; /* where the current family's text began */
	bool in_family;
	bool truncated; /* a family did not fit: it and every later one are missing */
	enum prom_type type;
	char name[PROM_NAME_MAX + sizeof("_total")]; /* current family, sanitised */
};

/* An empty writer that holds at most limit bytes (allocated as the text grows). */
void prom_writer__init(struct prom_writer *w, size_t limit);
/* Forget the text, keep the buffer for the next rendering. */
void prom_writer__reset(struct prom_writer *w);
/* The text (not NUL-terminated), *len its length; the caller frees it. The writer is empty
 * afterwards and allocates anew. NULL when there is no text. */
char *prom_writer__take(struct prom_writer *w, size_t *len);
void prom_writer__free(struct prom_writer *w);

/*
 * Start a family: name sanitised (anything outside [a-zA-Z0-9_:] becomes '_', a leading
 * digit gets a '_' before it), "_total" appended to a counter's, then its HELP and TYPE
 * lines. help may be NULL. 0, -ENOSPC (over the limit) or -ENOMEM.
 */
int prom__family(struct prom_writer *w, const char *name, enum prom_type type, const char *help);

/* One sample of the current counter or gauge family, with nlabels labels. 0, -ENOSPC,
 * -ENOMEM, or -EINVAL when no counter or gauge family is open. */
int prom__sample(struct prom_writer *w, const struct prom_label *labels, size_t nlabels,
		 double value);
/* The same for an integer value, written exactly (a double stops at 2^53). */
int prom__sample_u64(struct prom_writer *w, const struct prom_label *labels, size_t nlabels,
		     uint64_t value);

/*
 * One series of the current histogram family: bounds[0..nbounds) the buckets' upper bounds,
 * ascending (the +Inf bucket is implied); counts[0..nbounds] the observations in each
 * bucket alone, as OTLP carries them (counts[nbounds]: above the last bound). Written
 * cumulative, with NAME_sum (sum) and NAME_count. labels must not hold "le".
 * 0, -ENOSPC, -ENOMEM, or -EINVAL when no histogram family is open.
 */
int prom__histogram(struct prom_writer *w, const struct prom_label *labels, size_t nlabels,
		    const double *bounds, size_t nbounds, const uint64_t *counts, double sum);

/*
 * in as a metric name into out (cap bytes, NUL-terminated): anything outside
 * [a-zA-Z0-9_:] becomes '_', a leading digit or an empty name gets a '_' before it, and it
 * is cut at cap - 1 bytes. Returns the length. label: the label-name alphabet (no ':').
 */
size_t prom_sanitize_name(char *out, size_t cap, const char *in, bool label);

/* v as the format writes floats: "+Inf", "-Inf", "NaN", else the shortest decimal that reads
 * back as v. out needs 32 bytes. Returns the length. */
size_t prom_format_double(char *out, double v);

#endif
