/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Span lines (hoptrace's JSON span schema, README "JSON output") into Jaeger's JSON model,
 * the one its query service answers with (/api/traces): a trace is {traceID, spans,
 * processes, warnings}; a span {traceID, spanID, flags, operationName, references,
 * startTime, duration (microseconds), tags [{key, type, value}], logs [{timestamp,
 * fields}], processID, warnings}; a process {serviceName, tags}.
 *
 * How hoptrace's fields map (as Jaeger's own OTLP translator does):
 *   parent_span_id          a CHILD_OF reference; links are FOLLOWS_FROM references
 *   kind                    tag span.kind = "server" | "client"
 *   status ERROR            tags error = true (bool), otel.status_code = "ERROR",
 *                           otel.status_description = status_message
 *   status OK               tag otel.status_code = "OK"
 *   attributes              tags, typed string | int64 | bool | float64
 *   tracestate              tag w3c.tracestate
 *   events                  logs: {timestamp, fields: [event = name, attributes...]}
 *   dropped_events_count    tag otel.dropped_events_count
 *   service.name, resource, one process per (service.name, pid), tags: the resource
 *   pid                     attributes and process.pid
 *
 * Pure: no I/O, no global state. Every string written is escaped so that it is inert in
 * HTML too (<, >, &, U+2028/9 as \u escapes), since it comes from traffic.
 */
#ifndef HOPTRACE_JAEGER_JSON_H
#define HOPTRACE_JAEGER_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growing output buffer with a ceiling. Once a write fails (allocation, or past max),
 * err stays set (-ENOMEM, -E2BIG) and later writes are ignored. */
struct jbuf {
	char *p;
	size_t len, cap, max;
	int err;
};

void jbuf_init(struct jbuf *b, size_t max);
void jbuf_free(struct jbuf *b);
void jbuf_put(struct jbuf *b, const char *s, size_t n);
void jbuf_puts(struct jbuf *b, const char *s);
void jbuf_printf(struct jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s[0..n) as a JSON string, quotes included (invalid UTF-8 bytes become U+FFFD). */
void jbuf_str(struct jbuf *b, const char *s, size_t n);
void jbuf_cstr(struct jbuf *b, const char *s);

/* Span lines in one trace object, lines whose trace id is not the first span's dropped. */
#define JAEGER_MAX_PROCESSES 256 /* past it, spans share the last process */

struct jaeger_stats {
	uint64_t spans;	    /* written */
	uint64_t malformed; /* lines that were no span object of the schema */
	uint64_t other_trace;
};

/*
 * Append one Jaeger trace object for the span lines lines[0..n) (all of one trace, in any
 * order; written in their order). Returns 0, -ENOENT when no line was a span, or the
 * buffer's error. st may be NULL.
 */
int jaeger_trace_json(struct jbuf *out, const char *const *lines, const size_t *lens, size_t n,
		      struct jaeger_stats *st);

/* Jaeger's duration syntax as the UI sends minDuration/maxDuration (Go's
 * time.ParseDuration: "1.5s", "100ms", "250us", "2m", "1h30m"); nanoseconds. 0 or -EINVAL. */
int jaeger_parse_duration(const char *s, uint64_t *ns);

/* A span kind of the JSON span schema ("SERVER") as Jaeger's span.kind tag says it
 * ("server"); NULL for UNSPECIFIED, an unknown kind or NULL. */
const char *jaeger_kind_tag(const char *kind);

#endif
