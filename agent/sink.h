/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Where finished spans go. One sink is active per run (waterfall, json or otlp). Sinks are
 * called from the event loop thread only; a sink that does I/O that may block (OTLP) hands
 * spans to its own thread.
 */
#ifndef HOPTRACE_SINK_H
#define HOPTRACE_SINK_H

#include <stdint.h>
#include <stdio.h>

struct span;

struct sink {
	const char *name;
	/* Take ownership of a finished span. */
	void (*emit)(struct sink *sk, struct span *s);
	/* Called from the loop's timer (about every 100 ms); now is CLOCK_MONOTONIC ns. */
	void (*tick)(struct sink *sk, uint64_t now_ns);
	/* Flush everything held (shutdown), waiting at most deadline_ms. */
	void (*flush)(struct sink *sk, int deadline_ms);
	/* Print the sink's counters for the exit summary. */
	void (*print_stats)(struct sink *sk, FILE *out);
	/* Free the sink. */
	void (*destroy)(struct sink *sk);
};

/* One JSON object per span per line on out (schema in README "JSON output"). */
struct sink *sink_json_new(FILE *out);
/* One span as a JSON span line (the schema above, without the '\n') at the start of *buf, a
 * buffer of *cap bytes that is grown with realloc as needed (NULL to start; the caller frees
 * it). Returns the line's length, 0 when out of memory. */
size_t sink_json_render(const struct span *s, char **buf, size_t *cap);
/* Traces printed as waterfalls on out once quiet for quiet_ms; color if use_color. */
struct sink *sink_waterfall_new(FILE *out, int quiet_ms, int use_color);

struct audit;
/* Counts each span into a (caller-owned) audit, then passes it to inner, which it owns. */
struct sink *sink_audit_new(struct sink *inner, struct audit *a);

/* Drops the spans head sampling marked not_exported, passes the others to inner (owned). */
struct sink *sink_sampler_new(struct sink *inner);

struct tail_config;
/* Tail sampling (sink_tail.c): buffers each trace's local spans, then passes the kept
 * traces to inner (owned). */
struct sink *sink_tail_new(struct sink *inner, const struct tail_config *cfg);
/* The embedded store (store.h): spans queued (at most queue_bytes) for a writer thread that
 * commits them in batches; retention keeps max_bytes and max_age_ns (0: no bound). NULL,
 * with the reason logged, when the store cannot be opened or created. */
struct sink_store_config {
	const char *path;
	uint64_t max_bytes, max_age_ns;
	size_t queue_bytes; /* 0: the default */
};
struct sink *sink_store_new(const struct sink_store_config *cfg);
/* Drops every span (-o none: metrics only). */
struct sink *sink_null_new(void);

struct metrics;
struct metrics_exporter;
/* Counts every span into a (caller-owned) metrics registry, then passes it to inner, which
 * it owns. Sits before any sampler: metrics count every request. */
struct sink *sink_metrics_new(struct sink *inner, struct metrics *m);
/* Export the registry with exp (which the sink then owns) at exp's interval and at flush. */
void sink_metrics_set_exporter(struct sink *sk, struct metrics_exporter *exp);

#endif
