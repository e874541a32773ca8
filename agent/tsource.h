/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Where the offline commands (audit, analyze, query, ui) read finished spans from. Every
 * source yields the same thing: span lines, one span each in hoptrace's JSON span schema
 * (README "JSON output", written by sink_json.c), so that one parser serves every command
 * and every source is tested through the same door.
 *
 * Source specs:
 *   FILE, -          hoptrace JSON span lines (`hoptrace -o json`); - is standard input
 *   otlp:FILE        OTLP JSON, as the OpenTelemetry Collector's file exporter writes it
 *   jaeger:URL       a Jaeger query API (base URL, e.g. http://jaeger:16686)
 *   tempo:URL        a Tempo HTTP API (base URL, e.g. http://tempo:3200)
 *   store:PATH       hoptrace's embedded store (SQLite)
 * Sources other than FILE are added by their modules (see tsource.c).
 */
#ifndef HOPTRACE_TSOURCE_H
#define HOPTRACE_TSOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One span line (no '\n'; not NUL-terminated in general). Nonzero stops the reading, and
 * tsource_read returns that value. */
typedef int (*span_line_fn)(void *ctx, const char *line, size_t len);

/* What to fetch from a remote or indexed source; a file is read whole. Zero fields mean
 * "no bound". */
struct tsource_opts {
	uint64_t from_unix_ns, to_unix_ns; /* span start time range */
	const char *service;		   /* only traces with a span of this service */
	unsigned limit;			   /* at most this many traces (remote sources) */
};

/* What a reading met that was not a span. */
struct tsource_stats {
	uint64_t lines;	    /* lines (or spans, for converted sources) seen */
	uint64_t spans;	    /* handed to fn */
	uint64_t malformed; /* skipped, each reported once on stderr up to a few */
};

/* Longest span line a source hands over (and longest line of a JSON span file). */
#define TSOURCE_MAX_LINE (1u << 20)

/*
 * Read every span of spec into fn. Messages about the source (cannot open, a malformed
 * line) go to stderr prefixed with prog ("hoptrace audit"). Returns 0, fn's nonzero value,
 * or -errno when the source cannot be read at all. stats may be NULL.
 */
int tsource_read(const char *prog, const char *spec, const struct tsource_opts *opts,
		 span_line_fn fn, void *ctx, struct tsource_stats *stats);

/* Whether spec names a source kind this build knows (for argument checks). */
bool tsource_spec_known(const char *spec);

/*
 * Whether spec's spans are converted from another tracer's model (otlp:, jaeger:, tempo:):
 * they may come from SDK-instrumented services, whose spans carry none of hoptrace's
 * evidence (hoptrace.* attributes). The audit tells those from hoptrace's own by this.
 */
bool tsource_spec_converted(const char *spec);

#endif
