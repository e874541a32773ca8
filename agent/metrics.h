/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * RED, service-graph and propagation metrics, aggregated from every finished span (sampled
 * or not) by the event loop thread. The registry is bounded: at most max_series series in
 * all; an observation that would need one more goes to its metric's overflow series (the
 * OpenTelemetry SDK convention: attribute otel.metric.overflow=true, no resource of a
 * process) and is counted in the metrics_overflow counter.
 *
 * Exporters read it through metrics__series_at / metrics_family: families are fixed (enum
 * metric_family), each series has a resource (NULL: the agent's own), attributes, a count,
 * and for histograms a sum and bucket counts. Cumulative: nothing is ever reset.
 *
 * Single-threaded: the loop observes and the loop reads (an exporter encodes a snapshot in
 * the loop and hands bytes to its thread).
 */
#ifndef HOPTRACE_METRICS_H
#define HOPTRACE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct span;
struct resource;

/* The semantic-convention explicit bucket boundaries of http.*.request.duration, seconds.
 * A value v lands in the first bucket i with v <= bound[i] (upper-inclusive); the last
 * bucket counts values above every bound. */
#define METRICS_NBOUNDS 14
#define METRICS_NBUCKETS (METRICS_NBOUNDS + 1)
extern const double metrics_bounds_s[METRICS_NBOUNDS];

enum metric_family {
	MF_HTTP_SERVER_DURATION = 0, /* http.server.request.duration */
	MF_HTTP_CLIENT_DURATION,     /* http.client.request.duration */
	MF_GRAPH_REQUESTS,	     /* traces_service_graph_request_total */
	MF_GRAPH_FAILED,	     /* traces_service_graph_request_failed_total */
	MF_GRAPH_CLIENT_SECONDS,     /* traces_service_graph_request_client_seconds */
	MF_GRAPH_SERVER_SECONDS,     /* traces_service_graph_request_server_seconds */
	MF_PROPAGATION_CALLS,	     /* hoptrace.propagation.calls */
	MF__COUNT,
};

enum metric_kind {
	METRIC_HISTOGRAM = 0,
	METRIC_COUNTER = 1, /* monotonic cumulative sum of integers */
};

struct metric_desc {
	const char *name;
	const char *unit;
	const char *description;
	enum metric_kind kind;
};

const struct metric_desc *metrics_family(enum metric_family f);

/* Attributes of one series: at most this many, values cut to METRICS_VALUE_MAX bytes. */
#define METRICS_MAX_ATTRS 8
#define METRICS_VALUE_MAX 256
#define METRICS_DEFAULT_MAX_SERIES 4096

/* The attribute that marks a metric's overflow series (OpenTelemetry SDK specification). */
#define METRICS_OVERFLOW_ATTR "otel.metric.overflow"

enum metrics_attr_type {
	METRICS_ATTR_STR = 0,
	METRICS_ATTR_INT = 1,
	METRICS_ATTR_BOOL = 2,
};

struct metrics_attr {
	const char *key; /* static string */
	uint8_t type;	 /* enum metrics_attr_type */
	int64_t ival;	 /* INT and BOOL */
	const char *str; /* STR: NUL-terminated, in the series' own buffer */
};

struct metrics_series {
	enum metric_family family;
	/* NULL: the agent itself (overflow series); else a counted reference */
	struct resource *resource;
	uint64_t count;
	double sum; /* histograms: sum of the observed values, seconds */
	uint64_t buckets[METRICS_NBUCKETS];
	unsigned nattrs;
	struct metrics_attr attrs[METRICS_MAX_ATTRS];
	/* key identity */
	uint64_t hash;
	uint32_t res_pid;
	uint64_t res_start_ns;
	uint64_t touched; /* the registry's epoch at the last observation */
	uint16_t strbuf_used;
	char strbuf[768];
};

struct metrics;

/* A registry holding at most max_series series (0: METRICS_DEFAULT_MAX_SERIES), plus one
 * overflow series per metric. NULL on allocation failure. */
struct metrics *metrics_new(size_t max_series);
void metrics_free(struct metrics *m);

/* Count one finished span into every metric it belongs to. end_unix_ns < start_unix_ns is
 * taken as a zero duration. */
void metrics__observe_span(struct metrics *m, const struct span *s);

/* When the registry was made (CLOCK_REALTIME ns): the start time of every cumulative series. */
uint64_t metrics__start_unix_ns(const struct metrics *m);

/* Series in creation order, overflow series included once they hold anything. */
size_t metrics__nseries(const struct metrics *m);
const struct metrics_series *metrics__series_at(const struct metrics *m, size_t i);

/*
 * Called by an exporter once a snapshot has been handed over: a new epoch begins. When the
 * table is over 3/4 full, the series not observed during the previous epoch (so exported
 * since their last change) are dropped: short-lived processes (a curl per request) would
 * otherwise fill it for good. Their stream ends, as an exited process's would. Returns how
 * many were dropped (also counted in metrics_series_expired).
 */
size_t metrics__end_epoch(struct metrics *m);

/* The value of attribute key of a series, NULL if absent. */
const struct metrics_attr *metrics_series_attr(const struct metrics_series *ser, const char *key);

/* Which bucket a duration of ns nanoseconds falls in (0..METRICS_NBOUNDS). */
unsigned metrics_bucket_of(uint64_t ns);

/* ---- lower level, for tests and exporters ---------------------------------------------- */

/* One observation with explicit attributes (values copied, cut to METRICS_VALUE_MAX).
 * duration_ns is ignored for counters. res may be NULL (the agent's own resource). */
void metrics__record(struct metrics *m, enum metric_family f, struct resource *res,
		     const struct metrics_attr *attrs, unsigned nattrs, uint64_t duration_ns);

/* ---- periodic export (agent/export/metrics_otlp.c) ------------------------------------- */

struct metrics_exporter;
/* From the loop's tick (CLOCK_MONOTONIC ns): at the interval, snapshot m and hand it over. */
void metrics_exporter__tick(struct metrics_exporter *e, struct metrics *m, uint64_t now_ns);
/* Shutdown: one last snapshot, delivered within deadline_ms. */
void metrics_exporter__final(struct metrics_exporter *e, struct metrics *m, int deadline_ms);
void metrics_exporter__print_stats(struct metrics_exporter *e, FILE *out);
void metrics_exporter_free(struct metrics_exporter *e);

#endif
