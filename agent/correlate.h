/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Which server request is a client request made for? The server requests in flight (read,
 * not yet answered) indexed by process and by thread, what each thread has shown about how
 * it serves requests, and the process ancestry seen through fork events.
 *
 * A false parent is worse than none. A call takes a parent only from sound evidence:
 *  - exact: it carries the trace id of exactly one request in flight in its process;
 *  - thread: its thread serves one request at a time with blocking I/O (thread per
 *    request: gunicorn sync workers, PHP, classic Java servlet pools) and serves one now;
 *  - ancestor: it comes from a process that such a thread forked while serving the request
 *    (CGI, a subprocess).
 * A thread that reads requests from non-blocking sockets is evidence only while it waits for
 * one descriptor at a time (poll on one fd: Apache's APR, Ruby, PHP) and was never seen
 * waiting for many (epoll, select: event loops, Go's netpoller, asyncio, libuv). A thread
 * that interleaves requests of several connections, or that hands them to other threads,
 * is no evidence; nor is a thread created during a request (pools grow
 * lazily), nor a request that has already answered. Such calls stay unparented, and the
 * reason says why (enum parent_reason).
 */
#ifndef HOPTRACE_CORRELATE_H
#define HOPTRACE_CORRELATE_H

#include <stdbool.h>
#include <stdint.h>

#include "hashmap.h"
#include "hoptrace/events.h"

struct span;

/* Adoption by thread or ancestry is bounded: a request older than this, or one that already
 * adopted this many calls, adopts no more (a long-poll or a stuck handler must not collect
 * everything its thread does for minutes). Exact matches are not bounded. */
#define ADOPT_MAX_AGE_NS HT_CTX_MAX_AGE_NS
#define ADOPT_MAX_CALLS 256

/* A server request in flight; embedded in the request record that owns the span. */
struct inflight {
	uint32_t tgid;
	uint32_t tid;	   /* thread that read the request */
	uint64_t conn;	   /* connection (socket cookie) it came on */
	uint64_t start_ns; /* monotonic: when the request arrived */
	/* its trace id: trace_id when set (the pending request's compact record holds it;
	 * stitching may change it, see correlate__trace_changed), else span->trace_id */
	const uint8_t *trace_id;
	const struct span *span; /* read only when trace_id is NULL */
	struct inflight *proc_prev, *proc_next;
	/* in its thread's list of unanswered requests, or of answered ones */
	struct inflight *thread_prev, *thread_next;
	/* in the list of requests of its process with its trace id (see by_trace) */
	struct inflight *trace_prev, *trace_next;
	uint64_t trace_key; /* by_trace key it is listed under */
	uint64_t seq;	    /* order of registration: lists keep the newest first */
	unsigned adopted;   /* calls given this request as parent by thread or ancestry */
	bool nonblocking;   /* read from a non-blocking socket */
	bool answered;	    /* its response has begun: it adopts nothing more */
	bool linked;
	bool trace_linked; /* listed in by_trace */
};

enum parent_confidence {
	PARENT_NONE = 0,      /* no request in flight could be the parent */
	PARENT_EXACT = 1,     /* the outgoing traceparent's trace id matched one server span */
	PARENT_THREAD = 2,    /* the one request of a blocking, one-at-a-time thread */
	PARENT_ANCESTOR = 3,  /* ... of the thread that forked the calling process */
	PARENT_AMBIGUOUS = 4, /* requests in flight could be the parent, without sound evidence
			       * for one: left unparented */
};

/* Why a call has no parent (PARENT_NONE or PARENT_AMBIGUOUS). */
enum parent_reason {
	REASON_NONE = 0,	    /* it has a parent */
	REASON_NO_REQUEST,	    /* no request in flight in its process */
	REASON_AFTER_RESPONSE,	    /* its thread's request had already answered */
	REASON_OTHER_THREADS,	    /* requests in flight, but on other threads */
	REASON_NONBLOCKING,	    /* its thread does non-blocking I/O: it may multiplex */
	REASON_INTERLEAVING,	    /* its thread serves requests of several connections */
	REASON_HANDOFF,		    /* its thread hands its requests to other threads */
	REASON_SEVERAL,		    /* several requests in flight on its thread */
	REASON_ADOPTION_LIMIT,	    /* the request is too old or adopted too many calls */
	REASON_THREAD_CREATED,	    /* made on a thread created while a request was served */
	REASON_TRACE_NOT_IN_FLIGHT, /* its traceparent names no request in flight */
	REASON_SEVERAL_OF_TRACE,    /* several requests of its trace in flight */
	REASON__COUNT,
};

#define PARENT_MAX_CANDIDATES 8
#define ANCESTRY_MAX_DEPTH 5

struct parent_match {
	enum parent_confidence conf;
	enum parent_reason reason;
	const struct inflight *parent; /* EXACT, THREAD, ANCESTOR */
	unsigned ncandidates;	       /* AMBIGUOUS: the candidates (at most the maximum) */
	unsigned ntotal;	       /* AMBIGUOUS: how many there were in all */
	const struct inflight *candidates[PARENT_MAX_CANDIDATES];
};

/* An outgoing call to find the parent of. */
struct call_query {
	uint32_t tgid, tid;
	uint64_t ts_ns;		     /* monotonic: when it was sent */
	const uint8_t *out_trace_id; /* its traceparent's trace id; NULL: none (or invalid) */
	bool waits_one_fd;	     /* the calling thread was just seen waiting on one fd */
};

/* Lookups cost what the call's own thread or trace has in flight, never what its whole
 * process has (an event loop may serve thousands of requests at once). */
struct correlate {
	struct u64map by_tgid;	/* tgid -> first struct inflight */
	struct u64map by_tid;	/* tid -> struct thread_inflight (correlate.c) */
	struct u64map by_trace; /* hash(tgid, trace id) -> first struct inflight */
	uint64_t next_seq;
	struct u64map thread_marks;  /* tid -> enum thread_mark bits (never 0) */
	struct u64map thread_parent; /* tid -> creator tid, see correlate.c */
	struct u64map thread_born;   /* tid -> creation time, monotonic ns (+ 1) */
};

#define CORRELATE_MAX_PROCS 65536
#define CORRELATE_MAX_THREADS 262144

int correlate__init(struct correlate *c);
/* The same with room for max_procs processes and max_threads threads with requests in flight
 * (0: the defaults above). */
int correlate__init_sized(struct correlate *c, size_t max_procs, size_t max_threads);
void correlate__free(struct correlate *c);
/* Register a server request in flight. Returns 0 or -ENOSPC/-ENOMEM. */
int correlate__add(struct correlate *c, struct inflight *in);
/* The request's response began, written by writer_tid: it adopts no more calls. */
void correlate__answered(struct correlate *c, struct inflight *in, uint32_t writer_tid);
/* tid was seen waiting for many descriptors at once (an event loop): for good. */
void correlate__thread_waits_many(struct correlate *c, uint32_t tid);
/* Whether a call by tid is decided by what tid waits in now: it read requests from
 * non-blocking sockets and was never seen waiting for many descriptors. */
bool correlate__wait_matters(const struct correlate *c, uint32_t tid);
/* Its span's trace id changed (stitched into the caller's trace): index it anew. */
void correlate__trace_changed(struct correlate *c, struct inflight *in);
/* Unregister it (no-op if not registered). */
void correlate__remove(struct correlate *c, struct inflight *in);
/* A task was created at ts_ns (monotonic): a process when is_process, else a thread. */
void correlate__thread_created(struct correlate *c, uint32_t parent_tid, uint32_t child_tid,
			       bool is_process, uint64_t ts_ns);
void correlate__thread_exited(struct correlate *c, uint32_t tid);
/* Find the parent of a client request. The caller counts an adoption (in->adopted) when it
 * takes a THREAD or ANCESTOR parent. */
void correlate__find_parent(const struct correlate *c, const struct call_query *q,
			    struct parent_match *m);
/* Which request a thread is serving now, for what it writes to its logs (logcap.h). */
enum log_serving {
	LOG_SERVING_ONE,     /* exactly one: *out */
	LOG_SERVING_NONE,    /* none in flight on the thread */
	LOG_SERVING_SEVERAL, /* several, or a thread that interleaves requests, hands them to
			      * other threads, or multiplexes non-blocking sockets */
};
/* The one request tid read and has not finished (answered or not), with the same caution
 * as parents by thread: no answer when the thread's way of serving makes "the request it
 * read" no evidence of "the request it works for". */
enum log_serving correlate__serving(const struct correlate *c, uint32_t tid, struct inflight **out);
/* "exact", "thread", "ancestor", "ambiguous", "none". */
const char *parent_confidence_name(enum parent_confidence conf);
/* "no_request_in_flight", "nonblocking_thread", ...; NULL for REASON_NONE. */
const char *parent_reason_name(enum parent_reason r);
/* A reason for a call made outside any request (as opposed to one whose request is not
 * known by sound evidence). */
bool parent_reason_outside_request(enum parent_reason r);

#endif
