// SPDX-License-Identifier: BSD-2-Clause
/*
 * Head sampling's last step: spans the head sampler marked not_exported are dropped here,
 * after the sinks in front (audit, metrics) have counted them, and before anything only
 * export needs (encoding, buffering, tail sampling).
 */
#include <stdlib.h>

#include "sink.h"
#include "span.h"
#include "stats.h"

struct sampler_sink {
	struct sink base;
	struct sink *inner;
};

static void sampler_emit(struct sink *sk, struct span *s)
{
	struct sampler_sink *ss = (struct sampler_sink *)sk;

	if (s->not_exported) {
		STAT_INC(sampler_head_dropped);
		span_free(s);
		return;
	}
	ss->inner->emit(ss->inner, s);
}

static void sampler_tick(struct sink *sk, uint64_t now_ns)
{
	struct sampler_sink *ss = (struct sampler_sink *)sk;

	ss->inner->tick(ss->inner, now_ns);
}

static void sampler_flush(struct sink *sk, int deadline_ms)
{
	struct sampler_sink *ss = (struct sampler_sink *)sk;

	ss->inner->flush(ss->inner, deadline_ms);
}

static void sampler_print_stats(struct sink *sk, FILE *out)
{
	struct sampler_sink *ss = (struct sampler_sink *)sk;

	ss->inner->print_stats(ss->inner, out);
}

static void sampler_destroy(struct sink *sk)
{
	struct sampler_sink *ss = (struct sampler_sink *)sk;

	ss->inner->destroy(ss->inner);
	free(ss);
}

struct sink *sink_sampler_new(struct sink *inner)
{
	struct sampler_sink *ss = calloc(1, sizeof(*ss));

	if (!ss)
		return NULL;
	ss->base = (struct sink){.name = "sampler",
				 .emit = sampler_emit,
				 .tick = sampler_tick,
				 .flush = sampler_flush,
				 .print_stats = sampler_print_stats,
				 .destroy = sampler_destroy};
	ss->inner = inner;
	return &ss->base;
}
