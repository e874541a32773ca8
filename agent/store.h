/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The embedded trace store: spans in a SQLite database (WAL), bounded by size and age,
 * oldest traces deleted first. The agent writes it through sink_store (a writer thread,
 * batched transactions); `hoptrace query`, `hoptrace ui` and the agent's --ui-listen read it.
 * A store can also be opened in memory and filled from any span source (tsource.h), so the
 * same queries run over spans read from OTLP files, Jaeger or Tempo.
 *
 * Spans go in and come out as span lines: hoptrace's JSON span schema (README "JSON
 * output"). The indexed columns are taken from the line when it goes in.
 *
 * A struct store is used by one thread at a time.
 */
#ifndef HOPTRACE_STORE_H
#define HOPTRACE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsource.h"

struct store;

#define STORE_DEFAULT_PATH "/var/lib/hoptrace/traces.db"

enum store_mode {
	STORE_READ_ONLY = 0,
	STORE_READ_WRITE = 1, /* created when missing */
};

/* Open path (":memory:" for a private in-memory store). NULL on failure, with why in
 * err (errlen bytes). */
struct store *store_open(const char *path, enum store_mode mode, char *err, size_t errlen);
void store_close(struct store *st);

/* Add span lines in one transaction. Returns how many were added; lines that are not span
 * objects are skipped and counted in *malformed (may be NULL). <0: -errno of the database. */
int store_add_lines(struct store *st, const char *const *lines, const size_t *lens, size_t n,
		    uint64_t *malformed);

#define STORE_MAX_ATTR_FILTERS 8

/* A trace search. Zero/NULL fields do not filter. */
struct store_filter {
	const char *service;			   /* a span of this service.name */
	const char *operation;			   /* ... whose name or http.route is this */
	uint64_t min_duration_ns, max_duration_ns; /* of that span (of the trace's root without
						      service/operation) */
	int error;				   /* -1 any, 1 a span with status ERROR, 0 none */
	const char *attr_key[STORE_MAX_ATTR_FILTERS];
	const char *attr_value[STORE_MAX_ATTR_FILTERS]; /* a span with attribute key == value */
	unsigned nattrs;
	uint64_t from_unix_ns, to_unix_ns; /* trace start time range */
	bool has_trace_id;
	uint8_t trace_id[16];
	unsigned limit; /* 0: 20 */
};

struct store_trace_summary {
	uint8_t trace_id[16];
	uint64_t start_unix_ns, duration_ns; /* first span start to last span end */
	unsigned nspans, nerrors, nservices;
	char root_service[128]; /* of the earliest span without a parent in the trace */
	char root_name[128];
};

/* Traces matching f, newest first, into out (cap entries). Returns how many, or -errno. */
int store_find_traces(struct store *st, const struct store_filter *f,
		      struct store_trace_summary *out, unsigned cap);

/* Every span line of one trace, by start time. Returns 0, fn's nonzero value, or -errno;
 * -ENOENT for a trace that is not there. */
int store_trace_lines(struct store *st, const uint8_t trace_id[16], span_line_fn fn, void *ctx);

/* The services seen, sorted; each once. */
int store_services(struct store *st, int (*fn)(void *ctx, const char *service), void *ctx);

/* The operations (span names) of a service, with their span kind ("SERVER", "CLIENT"). */
int store_operations(struct store *st, const char *service,
		     int (*fn)(void *ctx, const char *name, const char *kind), void *ctx);

/* One dependency edge between services, over a time range: calls and failed calls, and the
 * calls by propagation verdict (hoptrace.propagation of the client spans: ok, forwarded,
 * restarted, dropped, invalid; index as enum in audit.h, unknown ones not counted). */
struct store_edge {
	const char *parent, *child; /* caller service -> callee service */
	uint64_t calls, errors;
	uint64_t by_propagation[8];
};
int store_dependencies(struct store *st, uint64_t from_unix_ns, uint64_t to_unix_ns,
		       int (*fn)(void *ctx, const struct store_edge *e), void *ctx);

/* ---- additions (store helper, issue 14) ---- */

/* As store_open, with *errnum set to the -errno of a failure: -EUCLEAN for a file that is
 * not a SQLite database or is damaged, -ENOSPC for a full disk, -EPROTO for a database that
 * is not a hoptrace store. errnum may be NULL. */
struct store *store_open_errno(const char *path, enum store_mode mode, int *errnum, char *err,
			       size_t errlen);
/* Words for a -errno of the store functions ("disk full", "not a SQLite database, or
 * damaged"). */
const char *store_strerror(int err);

/* Bounds that store_prune keeps: bytes of the database file (0: none) and age of a trace's
 * last span end (0: none). */
void store_set_limits(struct store *st, uint64_t max_bytes, uint64_t max_age_ns);
/* Delete whole traces, oldest first, past the bounds, and give their room back to the file
 * system. Adds the traces deleted to *traces_deleted (may be NULL). 0 or -errno. Expired
 * traces go in rounds of a few thousand, 8000 a call at most: the next call takes the rest. */
int store_prune(struct store *st, uint64_t now_unix_ns, uint64_t *traces_deleted);
/* The database file's size (pages in use and free), or -errno. */
int64_t store_size_bytes(struct store *st);
/* Rename a damaged store (and its -wal, -shm) to PATH.corrupt-UNIXTIME, so that a new one
 * can be created at path; the new name of the database into moved_to. 0 or -errno. */
int store_move_aside(const char *path, char *moved_to, size_t cap);
/* n bytes from 2n hex digits (either case); false for anything else. */
bool store_parse_hex_id(const char *hex, uint8_t *out, size_t n);

/* Stop each read (store_find_traces, store_trace_lines, store_services, store_operations,
 * store_dependencies) that runs longer than ms milliseconds with -ETIMEDOUT: a search that
 * reads the whole store must not hold up the endpoint it shares with /metrics and /healthz.
 * 0: no limit (the default). */
void store_set_time_limit(struct store *st, unsigned ms);

/* `hoptrace query` (query_cli.c). */
int query_cli_main(int argc, char **argv);

/* tsource kind "store:PATH": every span line of the traces matching opts. */
int store_tsource_read(const char *prog, const char *path, const struct tsource_opts *opts,
		       span_line_fn fn, void *ctx, struct tsource_stats *stats);

#endif
