/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Which server request is a client request made for? The server spans in flight (request
 * read, response not yet complete) indexed by process and by thread, plus the thread
 * ancestry seen through fork events. A false parent is worse than none: when several
 * server spans could be the parent, the answer is "ambiguous".
 */
#ifndef HOPTRACE_CORRELATE_H
#define HOPTRACE_CORRELATE_H

#include <stdint.h>

#include "hashmap.h"

struct span;

/* A server request in flight; embedded in the request record that owns the span. */
struct inflight {
	uint32_t tgid;
	uint32_t tid;	   /* thread that read the request */
	uint64_t start_ns; /* monotonic: when the request arrived */
	const struct span *span;
	struct inflight *proc_prev, *proc_next;
	struct inflight *thread_prev, *thread_next;
	int linked;
};

enum parent_confidence {
	PARENT_NONE = 0,      /* no server span in flight could be the parent */
	PARENT_EXACT = 1,     /* the outgoing traceparent's trace id matched one server span */
	PARENT_THREAD = 2,    /* the one server span in flight on the same thread */
	PARENT_ANCESTOR = 3,  /* the one server span in flight on an ancestor thread */
	PARENT_AMBIGUOUS = 4, /* several candidates: left unparented */
};

#define PARENT_MAX_CANDIDATES 8
#define ANCESTRY_MAX_DEPTH 5

struct parent_match {
	enum parent_confidence conf;
	const struct inflight *parent; /* EXACT, THREAD, ANCESTOR */
	unsigned ncandidates;	       /* AMBIGUOUS: the candidates (at most the maximum) */
	unsigned ntotal;	       /* AMBIGUOUS: how many there were in all */
	const struct inflight *candidates[PARENT_MAX_CANDIDATES];
};

struct correlate {
	struct u64map by_tgid;	     /* tgid -> first struct inflight */
	struct u64map by_tid;	     /* tid -> first struct inflight */
	struct u64map thread_parent; /* tid -> parent tid (stored + 1 so it is never NULL) */
	struct u64map thread_born;   /* tid -> creation time, monotonic ns (+ 1) */
};

int correlate__init(struct correlate *c);
void correlate__free(struct correlate *c);
/* Register a server request in flight. Returns 0 or -ENOSPC/-ENOMEM. */
int correlate__add(struct correlate *c, struct inflight *in);
/* Unregister it (no-op if not registered). */
void correlate__remove(struct correlate *c, struct inflight *in);
/* A thread (or process) was created at ts_ns (monotonic). */
void correlate__thread_created(struct correlate *c, uint32_t parent_tid, uint32_t child_tid,
			       uint64_t ts_ns);
void correlate__thread_exited(struct correlate *c, uint32_t tid);
/*
 * Find the parent of a client request sent by (tgid, tid). out_trace_id is the trace id of
 * the traceparent the request carries, or NULL when it carries none (or an invalid one).
 */
void correlate__find_parent(const struct correlate *c, uint32_t tgid, uint32_t tid,
			    const uint8_t *out_trace_id, struct parent_match *m);
/* "exact", "thread", "ancestor", "ambiguous", "none". */
const char *parent_confidence_name(enum parent_confidence conf);

#endif
