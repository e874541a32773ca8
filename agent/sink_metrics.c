// SPDX-License-Identifier: BSD-2-Clause
/* A sink in front of the sampler and the real sink that counts every finished span into the
 * metrics registry, then passes it on; with an exporter, it also hands the registry to it on
 * every tick (the exporter decides when its interval is up) and once more at the flush. */
#include <stdlib.h>

#include "metrics.h"
#include "sink.h"
#include "span.h"

struct metrics_sink {
	struct sink base;
	struct sink *inner;
	struct metrics *metrics;
	struct metrics_exporter *exporter; /* NULL: the registry is only read by others */
};

static void metrics_emit(struct sink *sk, struct span *s)
{
	struct metrics_sink *ms = (struct metrics_sink *)sk;

	/* before handing over: the inner sink may free the span or pass it to a thread */
	metrics__observe_span(ms->metrics, s);
	ms->inner->emit(ms->inner, s);
}

static void metrics_tick(struct sink *sk, uint64_t now_ns)
{
	struct metrics_sink *ms = (struct metrics_sink *)sk;

	ms->inner->tick(ms->inner, now_ns);
	if (ms->exporter)
		metrics_exporter__tick(ms->exporter, ms->metrics, now_ns);
}

static void metrics_flush(struct sink *sk, int deadline_ms)
{
	struct metrics_sink *ms = (struct metrics_sink *)sk;

	ms->inner->flush(ms->inner, deadline_ms);
	if (ms->exporter)
		metrics_exporter__final(ms->exporter, ms->metrics, deadline_ms);
}

static void metrics_print_stats(struct sink *sk, FILE *out)
{
	struct metrics_sink *ms = (struct metrics_sink *)sk;

	ms->inner->print_stats(ms->inner, out);
	if (ms->exporter)
		metrics_exporter__print_stats(ms->exporter, out);
}

static void metrics_destroy(struct sink *sk)
{
	struct metrics_sink *ms = (struct metrics_sink *)sk;

	ms->inner->destroy(ms->inner);
	metrics_exporter_free(ms->exporter);
	free(ms);
}

struct sink *sink_metrics_new(struct sink *inner, struct metrics *m)
{
	struct metrics_sink *ms = calloc(1, sizeof(*ms));

	if (!ms)
		return NULL;
	ms->base = (struct sink){.name = "metrics",
				 .emit = metrics_emit,
				 .tick = metrics_tick,
				 .flush = metrics_flush,
				 .print_stats = metrics_print_stats,
				 .destroy = metrics_destroy};
	ms->inner = inner;
	ms->metrics = m;
	return &ms->base;
}

void sink_metrics_set_exporter(struct sink *sk, struct metrics_exporter *exp)
{
	((struct metrics_sink *)sk)->exporter = exp;
}

/* ---- the null sink: metrics-only runs ---------------------------------------------------- */

static void null_emit(struct sink *sk, struct span *s)
{
	(void)sk;
	span_free(s);
}

static void null_tick(struct sink *sk, uint64_t now_ns)
{
	(void)sk;
	(void)now_ns;
}

static void null_flush(struct sink *sk, int deadline_ms)
{
	(void)sk;
	(void)deadline_ms;
}

static void null_print_stats(struct sink *sk, FILE *out)
{
	(void)sk;
	(void)out;
}

static void null_destroy(struct sink *sk)
{
	free(sk);
}

struct sink *sink_null_new(void)
{
	struct sink *sk = calloc(1, sizeof(*sk));

	if (!sk)
		return NULL;
	*sk = (struct sink){.name = "none",
			    .emit = null_emit,
			    .tick = null_tick,
			    .flush = null_flush,
			    .print_stats = null_print_stats,
			    .destroy = null_destroy};
	return sk;
}
