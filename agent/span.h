/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A finished span, as handed to the sinks (waterfall, JSON, OTLP). Self-contained: no
 * pointers into connection state, so a sink may keep it or pass it to another thread.
 * Attributes use OpenTelemetry semantic-convention names; keys are string literals with
 * static storage, string values live in the span's own buffer.
 */
#ifndef HOPTRACE_SPAN_H
#define HOPTRACE_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct resource;

/* Numbering as in OTLP's Span.SpanKind and Status.StatusCode. */
enum span_kind {
	SPAN_KIND_SERVER = 2,
	SPAN_KIND_CLIENT = 3,
};

enum span_status {
	SPAN_STATUS_UNSET = 0,
	SPAN_STATUS_OK = 1,
	SPAN_STATUS_ERROR = 2,
};

enum span_attr_type {
	SPAN_ATTR_STR = 0,
	SPAN_ATTR_INT = 1,
	SPAN_ATTR_BOOL = 2,
};

#define SPAN_MAX_ATTRS 24
#define SPAN_STRBUF 1536
#define SPAN_NAME_MAX 128
#define SPAN_MAX_LINKS 2
/* Log lines attached to a span (--capture-logs): at most this many, with this many bytes of
 * text in all. A request that logs more keeps its first lines; the rest are counted in
 * dropped_events (OTLP dropped_events_count) and span_events_dropped. */
#define SPAN_MAX_EVENTS 32
#define SPAN_EVENT_BYTES 4096

/* Where a log line was written (OpenTelemetry log.iostream / log.file.path). */
enum span_log_source {
	SPAN_LOG_STDOUT = 1,
	SPAN_LOG_STDERR = 2,
	SPAN_LOG_FILE = 3,
};

/* One log line as a span event named "log": its text (redacted, no newline) and, for a log
 * file, the file's path, both in the events' own buffer. */
struct span_event {
	uint64_t time_unix_ns;
	uint16_t off, len;	     /* the line, at text + off */
	uint16_t path_off, path_len; /* SPAN_LOG_FILE: the file's path */
	uint8_t source;		     /* enum span_log_source */
	bool truncated;		     /* the line was cut (capture size or per-line bound) */
};

struct span_events {
	unsigned n;
	uint16_t used; /* bytes of text in use */
	struct span_event ev[SPAN_MAX_EVENTS];
	char text[SPAN_EVENT_BYTES];
};

struct span_attr {
	const char *key; /* static string */
	uint8_t type;	 /* enum span_attr_type */
	uint16_t off;	 /* SPAN_ATTR_STR: value at strbuf + off */
	uint16_t len;	 /* SPAN_ATTR_STR: value length */
	int64_t ival;	 /* SPAN_ATTR_INT / SPAN_ATTR_BOOL */
};

/* A link to another span (repaired or ambiguous parentage). */
struct span_link {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	const char *reason; /* static string, exported as attribute hoptrace.link.reason */
};

struct span {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t parent_span_id[8]; /* all zero: root span */
	uint8_t trace_flags;	   /* W3C trace-flags (sampled bit) */
	uint8_t kind;		   /* enum span_kind */
	uint8_t status;		   /* enum span_status */
	uint8_t nlinks;
	/* head sampling said no: metrics and the audit still count it, export drops it */
	bool not_exported;
	uint32_t pid;
	uint32_t tid;
	uint64_t start_unix_ns;
	uint64_t end_unix_ns;
	struct resource *resource; /* counted reference, released by span_free */
	uint32_t dropped_attrs; /* attributes that found no room (OTLP dropped_attributes_count) */
	/* log lines (--capture-logs), owned, freed with the span; NULL: none */
	struct span_events *events;
	uint32_t dropped_events;  /* events that found no room (OTLP dropped_events_count) */
	char name[SPAN_NAME_MAX]; /* "METHOD path" */
	char status_message[64];
	char tracestate[512 + 1]; /* W3C tracestate to propagate, may be empty */
	struct span_link links[SPAN_MAX_LINKS];
	unsigned nattrs;
	struct span_attr attrs[SPAN_MAX_ATTRS];
	uint16_t strbuf_used;
	char strbuf[SPAN_STRBUF];
};

/* Allocate an empty span: ids, times, counts and strings zero or empty (buffers past their
 * used part are not cleared). Returns NULL on allocation failure. */
struct span *span_new(void);
/* Free a span and drop its resource reference. NULL is ignored. */
void span_free(struct span *s);

/* Add a string attribute (value copied, truncated to what fits). Returns 0 or -ENOSPC; an
 * attribute that finds no room (slots or string buffer full) is counted in dropped_attrs and
 * in the span_attrs_dropped counter. */
int span_set_str(struct span *s, const char *key, const char *val, size_t len);
/* Add an integer attribute. Returns 0 or -ENOSPC. */
int span_set_int(struct span *s, const char *key, int64_t val);
/* Add a boolean attribute. Returns 0 or -ENOSPC. */
int span_set_bool(struct span *s, const char *key, bool val);
/* The value of a string attribute. */
static inline const char *span_attr_str(const struct span *s, const struct span_attr *a)
{
	return s->strbuf + a->off;
}
/* Find an attribute by key, NULL if absent. */
const struct span_attr *span_find_attr(const struct span *s, const char *key);
/* Add a link; returns 0 or -ENOSPC. */
int span_add_link(struct span *s, const uint8_t trace_id[16], const uint8_t span_id[8],
		  const char *reason);

/* Add a log line: text (already redacted) of len bytes, and for SPAN_LOG_FILE the file's
 * path. Lines beyond the bounds are counted in *dropped (span_events_dropped too).
 * Returns 0 or -ENOSPC/-ENOMEM. *evs is allocated on the first line. */
int span_events_add(struct span_events **evs, uint32_t *dropped, uint64_t time_unix_ns,
		    uint8_t source, const char *path, const char *text, size_t len, bool truncated);
/* Names of a log source as log.iostream says them ("stdout", "stderr"); NULL for a file.
 * Inline: the OTLP encoder uses it in the receiver's fuzz harness, which has no span.c. */
static inline const char *span_log_iostream(uint8_t source)
{
	switch (source) {
	case SPAN_LOG_STDOUT:
		return "stdout";
	case SPAN_LOG_STDERR:
		return "stderr";
	default:
		return NULL;
	}
}

/* Fill buf with n bytes from the CSPRNG (getrandom, pooled). Never all-zero for n >= 8. */
void span_random_id(uint8_t *buf, size_t n);

#endif
