/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Trace analysis (`hoptrace analyze`, and the UI's per-trace panel): from span lines in
 * hoptrace's JSON span schema (README "JSON output"), group spans by trace, link parents,
 * and report per trace and in aggregate:
 *   - the critical path: the spans whose own work makes up the root's duration, found by
 *     walking back from the root's end through the child that ended last, then through the
 *     children that ended before it started, and so on (overlapping work is never counted
 *     twice); the slowest hop is the span on it with the most time of its own on the path;
 *   - self time and child time per span: child time is the union of the children's
 *     intervals clipped to the span, so overlapping children are not counted twice;
 *   - sequential calls: children of one span that ran one after another (none overlaps
 *     another of the run) to at least two different endpoints; the time saved if they ran
 *     in parallel is the sum of their durations minus the longest one;
 *   - N+1: at least n_plus_one calls from one span to the same endpoint (method, server
 *     address:port and route);
 *   - error origins: an ERROR span none of whose children failed; its ERROR ancestors that
 *     did have a failed child only propagated the error.
 * A span whose parent is not among the spans read (a trace seen in part, another host's
 * span, a span outside the time range) is never given a parent: the trace is reported as
 * incomplete and the span heads a subtree of its own.
 *
 * Pure apart from writing the report to a FILE: no global state, bounded memory (every
 * span or trace past a limit is counted, never silently lost).
 */
#ifndef HOPTRACE_ANALYZE_H
#define HOPTRACE_ANALYZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hashmap.h"
#include "json_read.h"

struct analyze_opts {
	unsigned n_plus_one;		/* calls to one endpoint from one span: N+1 (default 5) */
	unsigned parallel_min_calls;	/* sequential calls in a run worth reporting (default 2) */
	uint64_t parallel_min_saved_ns; /* ... and the time parallelism would save (1 ms) */
	size_t max_traces;		/* traces held (default 10,000) */
	size_t max_spans;		/* spans held in all (default 200,000) */
	size_t max_spans_per_trace;	/* spans held per trace (default 10,000) */
	uint64_t from_unix_ns, to_unix_ns; /* span start in [from, to); 0 = no bound */
	const char *trace_id;		   /* only this trace (32 lowercase hex), or NULL */
	bool aggregate_only;		   /* the report without the per-trace part */
};

/* The defaults above. */
void analyze_opts__default(struct analyze_opts *o);

struct analyze_span;
struct analyze_trace;

/* Spans collected so far, by trace. */
struct analyze {
	struct analyze_opts opts;
	struct u64map traces; /* hash(trace id) -> struct analyze_trace */
	size_t spans;	      /* held */
	struct json_doc doc;
	uint64_t lines;		  /* span lines offered */
	uint64_t malformed;	  /* not a span of the schema */
	uint64_t filtered;	  /* outside --trace-id or the time range */
	uint64_t skipped_spans;	  /* past max_spans or max_spans_per_trace */
	uint64_t skipped_traces;  /* spans of new traces past max_traces */
	uint64_t duplicate_spans; /* a span id seen twice in one trace: the first one kept */
};

int analyze__init(struct analyze *a, const struct analyze_opts *opts);
void analyze__free(struct analyze *a);

/*
 * Take one span line. Returns 0 (taken, filtered out or counted as skipped) or -EINVAL
 * for a line that is not a span of the schema, with *why saying why (a static string), or
 * -ENOMEM.
 */
int analyze__add_line(struct analyze *a, const char *line, size_t len, const char **why);

/*
 * Analyse every trace collected (once: call it once per struct analyze) and write the report: per
 * trace (in start order), then the aggregate; text, or one JSON document (schema in README "Trace
 * analysis"). Returns 0, or -ENOMEM / -EIO.
 */
int analyze__report(struct analyze *a, FILE *out, bool json);

/*
 * The analysis of one trace for the UI: n span lines (lines[i], lens[i] bytes each; lines
 * that are not spans are skipped and counted in "input"), written to out as one JSON
 * document of the same schema as `hoptrace analyze --json`, with one entry in "traces" per
 * trace id among the lines (one, for the lines of one trace). opts may be NULL (the
 * defaults). Returns 0, -EINVAL when no line is a span, -ENOMEM or -EIO. For a memory
 * buffer, pass open_memstream(3)'s FILE.
 */
int analyze_trace_json(const char *const *lines, const size_t *lens, size_t n,
		       const struct analyze_opts *opts, FILE *out);

/* `hoptrace analyze [options] SOURCE...` (analyze_cli.c). Exit status. */
int analyze_cli_main(int argc, char **argv);

#endif
