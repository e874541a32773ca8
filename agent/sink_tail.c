// SPDX-License-Identifier: BSD-2-Clause
/*
 * Tail sampling: the local spans of each trace wait here until the local part of the trace
 * is complete, then the whole local part is kept or dropped. Kept: a span with an error, a
 * span slower than its threshold (global, per service, per route), else the trace-id ratio
 * (the head sampler's rule, so that agents on other hosts keep the same traces of the rest).
 *
 * Complete: quiet_ns after its last span when a server span of it has finished (the local
 * root usually finishes last) or when all its spans are roots; else max_delay_ns after its
 * first span. Bounded: max_traces traces, max_spans spans and max_trace_spans per trace;
 * a trace that would pass a bound is decided at once with what it has (counted); if it was
 * kept, its later spans are kept too, else they start afresh. Spans that come after their
 * trace was decided follow the decision (a small cache of recent ones).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hashmap.h"
#include "resource.h"
#include "sampler.h"
#include "sink.h"
#include "span.h"
#include "stats.h"
#include "tail.h"

#define DECIDED_CACHE 4096

struct tail_trace {
	uint8_t trace_id[16];
	uint64_t first_ns, last_ns; /* monotonic arrival */
	bool has_server, all_roots, error, slow;
	size_t nspans, cap;
	struct span **spans;
};

/* A recent decision, by full trace id: keys can collide (the hash is not keyed, and
 * trace ids come from traceparent headers that anyone can send). */
struct decided {
	uint8_t trace_id[16];
	uint8_t keep; /* 0: none, 1: dropped, 2: kept */
};

struct tail_sink {
	struct sink base;
	struct sink *inner;
	struct tail_config cfg;
	struct u64map traces; /* trace key -> struct tail_trace */
	size_t nspans;	      /* buffered, all traces */
	struct decided cache[DECIDED_CACHE];
};

static uint64_t now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t trace_key(const uint8_t id[16])
{
	uint64_t a, b;

	memcpy(&a, id, 8);
	memcpy(&b, id + 8, 8);
	return (a ^ (b * 0x9e3779b97f4a7c15ULL)) | 1; /* never 0 */
}

/* The path of "METHOD /path" or http.route when a route was given. */
static bool route_matches(const struct span *s, const char *route)
{
	const struct span_attr *a = span_find_attr(s, "http.route");
	const char *sp;

	if (a && a->type == SPAN_ATTR_STR)
		return a->len == strlen(route) && !memcmp(span_attr_str(s, a), route, a->len);
	sp = strchr(s->name, ' ');
	return sp && strcmp(sp + 1, route) == 0;
}

static uint64_t slow_threshold(const struct tail_config *c, const struct span *s)
{
	const char *svc = s->resource && s->resource->service_name ? s->resource->service_name : "";

	for (unsigned i = 0; i < c->nrules; i++) {
		const struct tail_slow_rule *r = &c->rules[i];

		if (r->is_route ? route_matches(s, r->name) : strcmp(svc, r->name) == 0)
			return r->slow_ns;
	}
	return c->slow_ns;
}

static bool span_slow(const struct tail_config *c, const struct span *s)
{
	uint64_t limit = slow_threshold(c, s);

	return limit && s->end_unix_ns > s->start_unix_ns &&
	       s->end_unix_ns - s->start_unix_ns >= limit;
}

static bool span_is_root(const struct span *s)
{
	static const uint8_t zero[8];

	return memcmp(s->parent_span_id, zero, 8) == 0;
}

static void note_decision(struct tail_sink *ts, uint64_t key, const uint8_t trace_id[16], bool keep)
{
	struct decided *d = &ts->cache[key % DECIDED_CACHE];

	memcpy(d->trace_id, trace_id, 16);
	d->keep = keep ? 2 : 1;
}

/* 0 if no recent decision of this trace is remembered, else 1 (dropped) or 2 (kept). */
static int recent_decision(const struct tail_sink *ts, uint64_t key, const uint8_t trace_id[16])
{
	const struct decided *d = &ts->cache[key % DECIDED_CACHE];

	return d->keep && !memcmp(d->trace_id, trace_id, 16) ? d->keep : 0;
}

/* Keep or drop the spans t holds and count why; t stays allocated (the caller frees it). */
static void decide_spans(struct tail_sink *ts, uint64_t key, struct tail_trace *t)
{
	bool keep = true;

	if (t->error)
		STAT_INC(tail_traces_kept_error);
	else if (t->slow)
		STAT_INC(tail_traces_kept_slow);
	else if (sampler_ratio_keeps(ts->cfg.threshold, t->trace_id))
		STAT_INC(tail_traces_kept_ratio);
	else
		keep = false;
	if (!keep)
		STAT_INC(tail_traces_dropped);
	for (size_t i = 0; i < t->nspans; i++) {
		if (keep) {
			ts->inner->emit(ts->inner, t->spans[i]);
		} else {
			STAT_INC(tail_spans_dropped);
			span_free(t->spans[i]);
		}
	}
	note_decision(ts, key, t->trace_id, keep);
}

/* Decide a buffered trace and forget it. */
static void decide(struct tail_sink *ts, uint64_t key, struct tail_trace *t)
{
	decide_spans(ts, key, t);
	ts->nspans -= t->nspans;
	u64map_del(&ts->traces, key);
	free(t->spans);
	free(t);
}

static int trace_add(struct tail_trace *t, struct span *s, const struct tail_config *c,
		     uint64_t now)
{
	if (t->nspans == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 4;
		struct span **p = realloc(t->spans, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		t->spans = p;
		t->cap = cap;
	}
	t->spans[t->nspans++] = s;
	t->last_ns = now;
	t->has_server |= s->kind == SPAN_KIND_SERVER;
	t->all_roots &= span_is_root(s);
	t->error |= s->status == SPAN_STATUS_ERROR;
	t->slow |= span_slow(c, s);
	return 0;
}

static struct tail_trace *trace_new(struct tail_sink *ts, uint64_t key, const struct span *s,
				    uint64_t now)
{
	struct tail_trace *t;

	if (ts->traces.count >= ts->cfg.max_traces)
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	memcpy(t->trace_id, s->trace_id, 16);
	t->first_ns = now;
	t->all_roots = true;
	if (u64map_put(&ts->traces, key, t)) {
		free(t);
		return NULL;
	}
	return t;
}

/* A span that finds no room: its trace is decided now, with what it has. */
static void decide_alone(struct tail_sink *ts, uint64_t key, struct span *s)
{
	struct span *one[1] = {s};
	struct tail_trace t = {.all_roots = true, .spans = one, .cap = 1};

	STAT_INC(tail_overflow_early);
	memcpy(t.trace_id, s->trace_id, 16);
	t.nspans = 1;
	t.error = s->status == SPAN_STATUS_ERROR;
	t.slow = span_slow(&ts->cfg, s);
	decide_spans(ts, key, &t);
}

static void tail_emit(struct sink *sk, struct span *s)
{
	struct tail_sink *ts = (struct tail_sink *)sk;
	uint64_t key = trace_key(s->trace_id), now = now_mono();
	struct tail_trace *t = u64map_get(&ts->traces, key);

	if (t && memcmp(t->trace_id, s->trace_id, 16)) {
		decide_alone(ts, key ^ 2, s); /* a key collision: not merged */
		return;
	}
	if (!t && recent_decision(ts, key, s->trace_id)) {
		STAT_INC(tail_late_spans);
		if (recent_decision(ts, key, s->trace_id) == 2) {
			ts->inner->emit(ts->inner, s);
		} else {
			STAT_INC(tail_spans_dropped);
			span_free(s);
		}
		return;
	}
	if (t && (t->nspans >= ts->cfg.max_trace_spans || ts->nspans >= ts->cfg.max_spans)) {
		STAT_INC(tail_overflow_early);
		decide(ts, key, t); /* what it holds goes now */
		t = NULL;
		if (recent_decision(ts, key, s->trace_id) == 2) {
			/* kept: the rest follows, so the kept trace stays whole */
			STAT_INC(tail_late_spans);
			ts->inner->emit(ts->inner, s);
			return;
		}
		/* dropped: the rest starts afresh, it may still hold an error or a slow span */
	}
	if (!t && ts->nspans < ts->cfg.max_spans)
		t = trace_new(ts, key, s, now);
	if (!t || trace_add(t, s, &ts->cfg, now)) {
		decide_alone(ts, key, s);
		return;
	}
	ts->nspans++;
}

static bool trace_complete(const struct tail_config *c, const struct tail_trace *t, uint64_t now)
{
	if (now - t->first_ns >= c->max_delay_ns)
		return true;
	return now - t->last_ns >= c->quiet_ns && (t->has_server || t->all_roots);
}

static void decide_due(struct tail_sink *ts, uint64_t now, bool all)
{
	uint64_t k;
	void *v;

	for (size_t it = 0; u64map_next(&ts->traces, &it, &k, &v);)
		if (all || trace_complete(&ts->cfg, v, now))
			decide(ts, k, v);
}

static void tail_tick(struct sink *sk, uint64_t now_ns)
{
	struct tail_sink *ts = (struct tail_sink *)sk;

	(void)now_ns; /* arrival stamps are taken with the same clock, here */
	decide_due(ts, now_mono(), false);
	ts->inner->tick(ts->inner, now_ns);
}

static void tail_flush(struct sink *sk, int deadline_ms)
{
	struct tail_sink *ts = (struct tail_sink *)sk;

	decide_due(ts, now_mono(), true); /* shutdown: what is held is decided as it stands */
	ts->inner->flush(ts->inner, deadline_ms);
}

static void tail_print_stats(struct sink *sk, FILE *out)
{
	struct tail_sink *ts = (struct tail_sink *)sk;

	ts->inner->print_stats(ts->inner, out);
}

static void tail_destroy(struct sink *sk)
{
	struct tail_sink *ts = (struct tail_sink *)sk;
	uint64_t k;
	void *v;

	for (size_t it = 0; u64map_next(&ts->traces, &it, &k, &v);) {
		struct tail_trace *t = v;

		for (size_t i = 0; i < t->nspans; i++)
			span_free(t->spans[i]);
		free(t->spans);
		free(t);
	}
	u64map_free(&ts->traces);
	ts->inner->destroy(ts->inner);
	free(ts);
}

struct sink *sink_tail_new(struct sink *inner, const struct tail_config *cfg)
{
	struct tail_sink *ts = calloc(1, sizeof(*ts));

	if (!ts)
		return NULL;
	if (u64map_init(&ts->traces, cfg->max_traces)) {
		free(ts);
		return NULL;
	}
	ts->base = (struct sink){.name = "tail",
				 .emit = tail_emit,
				 .tick = tail_tick,
				 .flush = tail_flush,
				 .print_stats = tail_print_stats,
				 .destroy = tail_destroy};
	ts->inner = inner;
	ts->cfg = *cfg;
	return &ts->base;
}

void tail_config_init(struct tail_config *c)
{
	*c = (struct tail_config){.ratio = 0.1,
				  .threshold = sampler_ratio_threshold(0.1),
				  .quiet_ns = 1000ULL * 1000000ULL,
				  .max_delay_ns = 10000ULL * 1000000ULL,
				  .max_traces = 4096,
				  .max_spans = 16384,
				  .max_trace_spans = 512};
}

int tail_config_add_slow(struct tail_config *c, const char *arg)
{
	const char *colon, *name;
	unsigned long ms;
	char *end;
	bool route;
	size_t n;

	if (strncmp(arg, "service=", 8) && strncmp(arg, "route=", 6)) {
		ms = strtoul(arg, &end, 10);
		if (end == arg || *end || arg[0] == '-' || ms > 86400000UL)
			return -EINVAL;
		c->slow_ns = (uint64_t)ms * 1000000ULL;
		return 0;
	}
	route = arg[0] == 'r';
	name = arg + (route ? 6 : 8);
	colon = strrchr(name, ':');
	if (!colon || colon == name || c->nrules == TAIL_MAX_RULES)
		return -EINVAL;
	n = (size_t)(colon - name);
	if (n >= TAIL_RULE_NAME_MAX)
		return -EINVAL;
	ms = strtoul(colon + 1, &end, 10);
	if (end == colon + 1 || *end || colon[1] == '-' || ms > 86400000UL)
		return -EINVAL;
	c->rules[c->nrules].is_route = route;
	memcpy(c->rules[c->nrules].name, name, n);
	c->rules[c->nrules].name[n] = '\0';
	c->rules[c->nrules].slow_ns = (uint64_t)ms * 1000000ULL;
	c->nrules++;
	return 0;
}
