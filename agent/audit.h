/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Propagation audit: for each outgoing call made while serving a request that arrived with
 * a valid trace context, did the service pass the context on? Results are counted per edge
 * (caller service -> callee) and printed as a table or JSON, live (--audit) or offline from
 * a JSON span file (hoptrace audit FILE).
 *
 * The classification itself (audit_classify) is pure; the agent stores its result on the
 * client span as hoptrace.propagation and hoptrace.propagation.confidence.
 */
#ifndef HOPTRACE_AUDIT_H
#define HOPTRACE_AUDIT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "hashmap.h"

struct span;
struct trace_context;

enum propagation_result {
	PROP_NONE = 0,	/* not classified: the request served had no valid context */
	PROP_OK,	/* same trace id, new parent id */
	PROP_FORWARDED, /* same trace id and parent id: a pass-through copy */
	PROP_RESTARTED, /* a traceparent with another trace id */
	PROP_DROPPED,	/* no traceparent */
	PROP_INVALID,	/* a malformed traceparent */
	PROP__COUNT,
};

/* What the agent knows about one outgoing call and the request it serves. */
struct audit_input {
	bool served_valid;		  /* the request served arrived with a valid traceparent */
	const uint8_t *served_trace_id;	  /* its trace id */
	const uint8_t *served_parent_id;  /* its incoming parent id */
	bool served_tracestate;		  /* ... and a non-empty tracestate */
	unsigned sent_count;		  /* traceparent headers on the outgoing request */
	bool sent_valid;		  /* exactly one, valid */
	const struct trace_context *sent; /* when sent_valid */
	bool sent_tracestate;		  /* the outgoing request carries a tracestate */
};

/* Classify one outgoing call. *tracestate_dropped is set when the traceparent went on but
 * the tracestate that came in did not. */
enum propagation_result audit_classify(const struct audit_input *in, bool *tracestate_dropped);
const char *propagation_result_name(enum propagation_result r);
enum propagation_result propagation_result_parse(const char *name);

struct audit_edge {
	char *caller; /* caller service */
	char *callee; /* callee service when seen on this host, else address:port */
	uint64_t counts[PROP__COUNT];
	uint64_t tracestate_dropped;
	char example_trace[PROP__COUNT][33]; /* one trace id per result, for a look */
	char confidence[PROP__COUNT][16];    /* evidence of the first finding per result */
};

/* Distinct reasons kept for unclassified calls (the agent has a dozen; a JSON file read
 * back may hold anything: the rest are counted under "other"). */
#define AUDIT_MAX_REASONS 16
#define AUDIT_REASON_LEN 40

struct audit_reason {
	char name[AUDIT_REASON_LEN];
	uint64_t calls;
};

/* Edges kept: in all, and per caller. Callees are Host values and addresses a traced process
 * picks, so one caller past its share has its new callees counted under AUDIT_OTHER_CALLEE
 * rather than filling the table for every other service. */
#define AUDIT_MAX_EDGES 4096
#define AUDIT_MAX_EDGES_PER_CALLER 256
#define AUDIT_OTHER_CALLEE "(other callees)"

struct audit {
	struct u64map edges;   /* hash(caller, callee) -> struct audit_edge */
	struct u64map callers; /* hash(caller) -> its number of edges (as a pointer) */
	size_t max_per_caller;
	uint64_t calls_merged; /* classified calls counted under AUDIT_OTHER_CALLEE */
	uint64_t calls_lost;   /* classified calls on no edge: the edge table was full */
	uint64_t calls_seen;
	uint64_t calls_unclassified;	/* total of the three below */
	uint64_t calls_not_serving;	/* made outside any request (none in flight, or after
					 * the response of the thread's request) */
	uint64_t calls_without_context; /* the request served had no valid context */
	uint64_t calls_unsound;		/* the request served is not known by sound evidence */
	uint64_t calls_unmatched;	/* client spans without hoptrace's classification (an SDK's)
					 * and no server span child in the sources read */
	unsigned nreasons;
	struct audit_reason reasons[AUDIT_MAX_REASONS]; /* unclassified calls by reason */
};

int audit__init(struct audit *a);
/* The same with other table bounds (tests). */
int audit__init_sized(struct audit *a, size_t max_edges, size_t max_per_caller);
void audit__free(struct audit *a);
/* Count one classified client call. */
void audit__record(struct audit *a, const char *caller, const char *callee,
		   enum propagation_result r, bool tracestate_dropped, const char *trace_id_hex,
		   const char *confidence);
/* The reason of a call whose request had no valid context. */
#define AUDIT_REASON_WITHOUT_CONTEXT "request_without_context"
/* Count a call that could not be classified, with the reason: AUDIT_REASON_WITHOUT_CONTEXT,
 * or the hoptrace.parent.reason of a call without a sound parent. */
void audit__record_unclassified(struct audit *a, const char *reason);
/* Count a finished span (client spans carry the classification as attributes). */
void audit__observe_span(struct audit *a, const struct span *s);
/* The report: a table per edge, or one JSON document. */
void audit__print(const struct audit *a, FILE *out, bool json);

/* A client span as read back from a JSON span file: the fields audit__observe_span reads
 * from a struct span. NULL for what is absent. */
struct audit_client_span {
	const char *service;	       /* service.name */
	const char *trace_id_hex;      /* trace_id */
	const char *propagation;       /* attributes: hoptrace.propagation */
	const char *confidence;	       /* hoptrace.propagation.confidence */
	const char *tracestate;	       /* hoptrace.propagation.tracestate */
	const char *unclassified;      /* hoptrace.propagation.unclassified: why not */
	const char *callee_service;    /* hoptrace.callee.service */
	const char *parent_confidence; /* hoptrace.parent.confidence */
	const char *server_address;    /* server.address */
	bool has_port;
	int64_t server_port; /* server.port */
};

/* Count one client span read from a file, exactly as audit__observe_span counts the span it
 * came from (same caller, callee and result), so an offline report equals the live one. */
void audit__observe_client(struct audit *a, const struct audit_client_span *c);

/* `hoptrace audit [--json] SOURCE...` (agent/audit_cli.c): the report from span sources.
 * argv[0] is "audit". Returns the exit status: 0, 1 when a file cannot be read, 64 (argp)
 * on a usage error. */
int audit_cli_main(int argc, char **argv);

#endif
