// SPDX-License-Identifier: BSD-2-Clause
#include "metrics_prom.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "prom.h"
#include "resource.h"

/* The labels of one series: service_name first, then its attributes. */
#define MP_MAX_LABELS (METRICS_MAX_ATTRS + 1)

struct labelled {
	const struct metrics_series *ser;
	struct prom_label labels[MP_MAX_LABELS];
	char names[MP_MAX_LABELS][PROM_LABEL_NAME_MAX + 1];
	char ints[MP_MAX_LABELS][24];
	size_t nlabels;
};

/* The Prometheus name of a family: sanitised, with the unit's suffix when it has none. */
static void family_name(const struct metric_desc *d, char *out, size_t cap)
{
	size_t n = prom_sanitize_name(out, cap, d->name, false);
	const char *suffix = "_seconds";

	if (strcmp(d->unit, "s") ||
	    (n >= strlen(suffix) && !strcmp(out + n - strlen(suffix), suffix)))
		return;
	snprintf(out + n, cap - n, "%s", suffix);
}

static void label_series(struct labelled *l, const struct metrics_series *ser)
{
	l->ser = ser;
	l->nlabels = 0;
	if (ser->resource && ser->resource->service_name)
		l->labels[l->nlabels++] =
		    (struct prom_label){"service_name", ser->resource->service_name};
	for (unsigned i = 0; i < ser->nattrs && l->nlabels < MP_MAX_LABELS; i++) {
		const struct metrics_attr *a = &ser->attrs[i];
		size_t k = l->nlabels++;

		prom_sanitize_name(l->names[k], sizeof(l->names[k]), a->key, true);
		l->labels[k].name = l->names[k];
		if (a->type == METRICS_ATTR_STR) {
			l->labels[k].value = a->str;
		} else if (a->type == METRICS_ATTR_BOOL) {
			l->labels[k].value = a->ival ? "true" : "false";
		} else {
			snprintf(l->ints[k], sizeof(l->ints[k]), "%" PRId64, a->ival);
			l->labels[k].value = l->ints[k];
		}
	}
}

/* Order of label sets (as written: same names in the same order compare equal). */
static int labels_cmp(const struct labelled *a, const struct labelled *b)
{
	if (a->nlabels != b->nlabels)
		return a->nlabels < b->nlabels ? -1 : 1;
	for (size_t i = 0; i < a->nlabels; i++) {
		int c = strcmp(a->labels[i].name, b->labels[i].name);

		if (!c)
			c = strcmp(a->labels[i].value, b->labels[i].value);
		if (c)
			return c;
	}
	return 0;
}

/* qsort on pointers: a labelled set points into itself (names, ints), so it never moves. */
static int labels_ptr_cmp(const void *pa, const void *pb)
{
	return labels_cmp(*(const struct labelled *const *)pa, *(const struct labelled *const *)pb);
}

/* One run of series with equal labels, summed, as one sample. */
static int write_run(struct prom_writer *w, enum metric_kind kind, struct labelled *const *run,
		     size_t n)
{
	uint64_t count = 0, buckets[METRICS_NBUCKETS] = {0};
	double sum = 0;

	for (size_t i = 0; i < n; i++) {
		count += run[i]->ser->count;
		sum += run[i]->ser->sum;
		for (unsigned b = 0; b < METRICS_NBUCKETS; b++)
			buckets[b] += run[i]->ser->buckets[b];
	}
	if (kind == METRIC_COUNTER)
		return prom__sample_u64(w, run[0]->labels, run[0]->nlabels, count);
	return prom__histogram(w, run[0]->labels, run[0]->nlabels, metrics_bounds_s,
			       METRICS_NBOUNDS, buckets, sum);
}

static int render_family(struct prom_writer *w, const struct metrics *m, enum metric_family f,
			 struct labelled *tmp, struct labelled **order)
{
	const struct metric_desc *d = metrics_family(f);
	char name[PROM_NAME_MAX + 1];
	size_t n = 0;
	int err;

	for (size_t i = 0; i < metrics__nseries(m); i++) {
		const struct metrics_series *ser = metrics__series_at(m, i);

		if (ser->family == f && ser->count) {
			label_series(&tmp[n], ser);
			order[n] = &tmp[n];
			n++;
		}
	}
	if (!n)
		return 0;
	family_name(d, name, sizeof(name));
	err = prom__family(w, name, d->kind == METRIC_COUNTER ? PROM_COUNTER : PROM_HISTOGRAM,
			   d->description);
	if (err)
		return err;
	qsort(order, n, sizeof(*order), labels_ptr_cmp);
	for (size_t i = 0, j; i < n; i = j) {
		for (j = i + 1; j < n && !labels_cmp(order[i], order[j]); j++)
			;
		err = write_run(w, d->kind, &order[i], j - i);
		if (err)
			return err;
	}
	return 0;
}

int metrics_render_prom(void *ctx, struct prom_writer *w)
{
	const struct metrics *m = ctx;
	size_t total = metrics__nseries(m);
	struct labelled *tmp, **order;
	int err = 0;

	if (!total)
		return 0;
	tmp = malloc(total * sizeof(*tmp));
	order = malloc(total * sizeof(*order));
	if (!tmp || !order) {
		free(tmp);
		free(order);
		return -ENOMEM;
	}
	for (int f = 0; f < MF__COUNT && !err; f++)
		err = render_family(w, m, (enum metric_family)f, tmp, order);
	free(order);
	free(tmp);
	return err;
}
