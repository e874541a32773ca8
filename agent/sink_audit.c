// SPDX-License-Identifier: BSD-2-Clause
/* A sink in front of the real one that counts every span into the propagation audit. */
#include <stdlib.h>

#include "audit.h"
#include "sink.h"

struct audit_sink {
	struct sink base;
	struct sink *inner;
	struct audit *audit;
};

static void audit_emit(struct sink *sk, struct span *s)
{
	struct audit_sink *as = (struct audit_sink *)sk;

	/* before handing over: the inner sink may free the span or pass it to a thread */
	audit__observe_span(as->audit, s);
	as->inner->emit(as->inner, s);
}

static void audit_tick(struct sink *sk, uint64_t now_ns)
{
	struct audit_sink *as = (struct audit_sink *)sk;

	as->inner->tick(as->inner, now_ns);
}

static void audit_flush(struct sink *sk, int deadline_ms)
{
	struct audit_sink *as = (struct audit_sink *)sk;

	as->inner->flush(as->inner, deadline_ms);
}

static void audit_print_stats(struct sink *sk, FILE *out)
{
	struct audit_sink *as = (struct audit_sink *)sk;

	as->inner->print_stats(as->inner, out);
}

static void audit_destroy(struct sink *sk)
{
	struct audit_sink *as = (struct audit_sink *)sk;

	as->inner->destroy(as->inner);
	free(as);
}

struct sink *sink_audit_new(struct sink *inner, struct audit *a)
{
	struct audit_sink *as = calloc(1, sizeof(*as));

	if (!as)
		return NULL;
	as->base = (struct sink){.name = "audit",
				 .emit = audit_emit,
				 .tick = audit_tick,
				 .flush = audit_flush,
				 .print_stats = audit_print_stats,
				 .destroy = audit_destroy};
	as->inner = inner;
	as->audit = a;
	return &as->base;
}
