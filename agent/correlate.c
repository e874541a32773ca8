// SPDX-License-Identifier: BSD-2-Clause
#include "correlate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "span.h"

/* What a thread has shown about how it serves requests; sticky until it exits. */
enum thread_mark {
	MARK_NONBLOCKING = 1 << 0,  /* read a request from a non-blocking socket */
	MARK_INTERLEAVING = 1 << 1, /* read a request while serving one of another connection */
	MARK_HANDOFF = 1 << 2,	    /* another thread answered a request it read */
	MARK_WAITS_MANY = 1 << 3,   /* seen waiting for many descriptors (epoll, select) */
};

/* thread_parent values: creator tid + 1, and this bit when the child is a process. */
#define CREATED_PROCESS (1ULL << 32)

/* The requests in flight read by one thread. Answered ones are kept apart: a call asks for
 * the unanswered ones, and only whether answered ones exist. */
struct thread_inflight {
	struct inflight *unanswered; /* newest first */
	struct inflight *answered;
	unsigned n_unanswered;
	unsigned n_nonblocking; /* of the unanswered: read from non-blocking sockets */
	unsigned n_answered;
};

static uint64_t trace_key(uint32_t tgid, const uint8_t *trace_id)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (int i = 0; i < 4; i++)
		h = (h ^ ((tgid >> (8 * i)) & 0xff)) * 1099511628211ULL;
	for (int i = 0; i < 16; i++)
		h = (h ^ trace_id[i]) * 1099511628211ULL;
	return h;
}

int correlate__init(struct correlate *c)
{
	return correlate__init_sized(c, 0, 0);
}

int correlate__init_sized(struct correlate *c, size_t max_procs, size_t max_threads)
{
	memset(c, 0, sizeof(*c));
	if (u64map_init(&c->by_tgid, max_procs ? max_procs : CORRELATE_MAX_PROCS) ||
	    u64map_init(&c->by_tid, max_threads ? max_threads : CORRELATE_MAX_THREADS) ||
	    u64map_init(&c->by_trace, max_threads ? max_threads : CORRELATE_MAX_THREADS) ||
	    u64map_init(&c->thread_marks, CORRELATE_MAX_THREADS) ||
	    u64map_init(&c->thread_parent, CORRELATE_MAX_THREADS) ||
	    u64map_init(&c->thread_born, CORRELATE_MAX_THREADS)) {
		correlate__free(c);
		return -ENOMEM;
	}
	return 0;
}

void correlate__free(struct correlate *c)
{
	uint64_t k;
	void *v;

	for (size_t it = 0; u64map_next(&c->by_tid, &it, &k, &v);)
		free(v);
	u64map_free(&c->by_tgid);
	u64map_free(&c->by_tid);
	u64map_free(&c->by_trace);
	u64map_free(&c->thread_marks);
	u64map_free(&c->thread_parent);
	u64map_free(&c->thread_born);
}

static unsigned marks_of(const struct correlate *c, uint32_t tid)
{
	return (unsigned)(uintptr_t)u64map_get(&c->thread_marks, tid);
}

/* Best effort: when the table is full the thread is not marked; its calls can then still be
 * refused by what its requests in flight show (non-blocking, several). */
static void mark_thread(struct correlate *c, uint32_t tid, unsigned mark)
{
	unsigned marks = marks_of(c, tid);

	if ((marks & mark) != mark)
		u64map_put(&c->thread_marks, tid, (void *)(uintptr_t)(marks | mark));
}

/* A request read while the thread still serves one of another connection: the thread
 * interleaves requests (an event loop on blocking sockets polled for readiness). Pipelined
 * requests on one connection are no sign of that. A thread marked already is not looked at
 * again; one that is not has all its unanswered requests on one connection (else it would be
 * marked), so the scan ends at the first or after one connection's pending requests. */
static bool serves_another_connection(const struct correlate *c, const struct thread_inflight *th,
				      const struct inflight *in)
{
	if (marks_of(c, in->tid) & MARK_INTERLEAVING)
		return false;
	for (const struct inflight *o = th->unanswered; o; o = o->thread_next)
		if (o->conn != in->conn)
			return true;
	return false;
}

static void thread_list_push(struct inflight **head, struct inflight *in)
{
	in->thread_prev = NULL;
	in->thread_next = *head;
	if (*head)
		(*head)->thread_prev = in;
	*head = in;
}

static void thread_list_unlink(struct inflight **head, struct inflight *in)
{
	if (in->thread_prev)
		in->thread_prev->thread_next = in->thread_next;
	else
		*head = in->thread_next;
	if (in->thread_next)
		in->thread_next->thread_prev = in->thread_prev;
	in->thread_prev = in->thread_next = NULL;
}

static const uint8_t *inflight_trace_id(const struct inflight *in)
{
	return in->trace_id ? in->trace_id : in->span->trace_id;
}

/* List in under its (process, trace id), the newest registered first. */
static int trace_link(struct correlate *c, struct inflight *in)
{
	uint64_t key = trace_key(in->tgid, inflight_trace_id(in));
	struct inflight *head = u64map_get(&c->by_trace, key), *after = NULL;

	for (struct inflight *o = head; o && o->seq > in->seq; o = o->trace_next)
		after = o;
	if (!after) {
		int err = u64map_put(&c->by_trace, key, in);

		if (err)
			return err;
		in->trace_next = head;
		if (head)
			head->trace_prev = in;
	} else {
		in->trace_next = after->trace_next;
		if (after->trace_next)
			after->trace_next->trace_prev = in;
		after->trace_next = in;
	}
	in->trace_prev = after;
	in->trace_key = key;
	in->trace_linked = true;
	return 0;
}

static void trace_unlink(struct correlate *c, struct inflight *in)
{
	if (!in->trace_linked)
		return;
	if (in->trace_prev)
		in->trace_prev->trace_next = in->trace_next;
	else if (in->trace_next)
		u64map_put(&c->by_trace, in->trace_key, in->trace_next);
	else
		u64map_del(&c->by_trace, in->trace_key);
	if (in->trace_next)
		in->trace_next->trace_prev = in->trace_prev;
	in->trace_prev = in->trace_next = NULL;
	in->trace_linked = false;
}

/* The thread's record, created for its first request in flight; NULL when there is no room. */
static struct thread_inflight *thread_get(struct correlate *c, uint32_t tid, int *err)
{
	struct thread_inflight *th = u64map_get(&c->by_tid, tid);

	if (th)
		return th;
	th = calloc(1, sizeof(*th));
	if (!th) {
		*err = -ENOMEM;
		return NULL;
	}
	*err = u64map_put(&c->by_tid, tid, th);
	if (*err) {
		free(th);
		return NULL;
	}
	return th;
}

static void thread_put_if_empty(struct correlate *c, uint32_t tid, struct thread_inflight *th)
{
	if (!th->n_unanswered && !th->n_answered) {
		u64map_del(&c->by_tid, tid);
		free(th);
	}
}

int correlate__add(struct correlate *c, struct inflight *in)
{
	struct inflight *proc_head = u64map_get(&c->by_tgid, in->tgid);
	struct thread_inflight *th;
	int err = 0;

	if (in->nonblocking)
		mark_thread(c, in->tid, MARK_NONBLOCKING);
	th = thread_get(c, in->tid, &err);
	if (!th)
		return err;
	if (serves_another_connection(c, th, in))
		mark_thread(c, in->tid, MARK_INTERLEAVING);
	in->seq = ++c->next_seq;
	err = u64map_put(&c->by_tgid, in->tgid, in);
	if (err)
		goto err_thread;
	err = trace_link(c, in);
	if (err)
		goto err_proc;
	in->proc_prev = NULL;
	in->proc_next = proc_head;
	if (proc_head)
		proc_head->proc_prev = in;
	if (in->answered) {
		thread_list_push(&th->answered, in);
		th->n_answered++;
	} else {
		thread_list_push(&th->unanswered, in);
		th->n_unanswered++;
		th->n_nonblocking += in->nonblocking;
	}
	in->linked = true;
	return 0;

err_proc:
	if (proc_head)
		u64map_put(&c->by_tgid, in->tgid, proc_head);
	else
		u64map_del(&c->by_tgid, in->tgid);
err_thread:
	thread_put_if_empty(c, in->tid, th);
	return err;
}

void correlate__answered(struct correlate *c, struct inflight *in, uint32_t writer_tid)
{
	if (in->linked && !in->answered) {
		struct thread_inflight *th = u64map_get(&c->by_tid, in->tid);

		thread_list_unlink(&th->unanswered, in);
		th->n_unanswered--;
		th->n_nonblocking -= in->nonblocking;
		thread_list_push(&th->answered, in);
		th->n_answered++;
	}
	in->answered = true;
	/* the reader is not the thread that serves: what it does later proves nothing */
	if (in->linked && writer_tid != in->tid)
		mark_thread(c, in->tid, MARK_HANDOFF);
}

void correlate__thread_waits_many(struct correlate *c, uint32_t tid)
{
	mark_thread(c, tid, MARK_WAITS_MANY);
}

bool correlate__wait_matters(const struct correlate *c, uint32_t tid)
{
	unsigned marks = marks_of(c, tid);

	return (marks & MARK_NONBLOCKING) && !(marks & MARK_WAITS_MANY);
}

void correlate__remove(struct correlate *c, struct inflight *in)
{
	struct thread_inflight *th;

	if (!in->linked)
		return;
	if (in->proc_prev)
		in->proc_prev->proc_next = in->proc_next;
	else if (in->proc_next)
		u64map_put(&c->by_tgid, in->tgid, in->proc_next);
	else
		u64map_del(&c->by_tgid, in->tgid);
	if (in->proc_next)
		in->proc_next->proc_prev = in->proc_prev;

	th = u64map_get(&c->by_tid, in->tid);
	if (in->answered) {
		thread_list_unlink(&th->answered, in);
		th->n_answered--;
	} else {
		thread_list_unlink(&th->unanswered, in);
		th->n_unanswered--;
		th->n_nonblocking -= in->nonblocking;
	}
	thread_put_if_empty(c, in->tid, th);
	trace_unlink(c, in);
	in->linked = false;
	in->proc_prev = in->proc_next = NULL;
}

void correlate__trace_changed(struct correlate *c, struct inflight *in)
{
	if (!in->linked)
		return;
	trace_unlink(c, in);
	/* without room it can no longer be found by trace id; by thread it still can */
	trace_link(c, in);
}

void correlate__thread_created(struct correlate *c, uint32_t parent_tid, uint32_t child_tid,
			       bool is_process, uint64_t ts_ns)
{
	uint64_t v = ((uint64_t)parent_tid + 1) | (is_process ? CREATED_PROCESS : 0);

	if (parent_tid == child_tid)
		return;
	/* a new task with a recycled id starts with no marks */
	u64map_del(&c->thread_marks, child_tid);
	/* best effort: when the table is full the task just has no known ancestry */
	if (u64map_put(&c->thread_parent, child_tid, (void *)(uintptr_t)v) == 0)
		u64map_put(&c->thread_born, child_tid, (void *)(uintptr_t)(ts_ns + 1));
}

void correlate__thread_exited(struct correlate *c, uint32_t tid)
{
	u64map_del(&c->thread_marks, tid);
	u64map_del(&c->thread_parent, tid);
	u64map_del(&c->thread_born, tid);
}

static void add_candidate(struct parent_match *m, const struct inflight *in)
{
	if (m->ncandidates < PARENT_MAX_CANDIDATES)
		m->candidates[m->ncandidates++] = in;
	m->ntotal++;
}

static void ambiguous(struct parent_match *m, enum parent_reason reason)
{
	m->conf = PARENT_AMBIGUOUS;
	m->reason = reason;
	m->parent = NULL;
}

static void found(struct parent_match *m, enum parent_confidence conf, const struct inflight *in)
{
	m->conf = conf;
	m->reason = REASON_NONE;
	m->parent = in;
	m->ncandidates = m->ntotal = 0;
}

/* Why tid's requests are no evidence whatever they are, or REASON_NONE. waits_one_fd: tid
 * is the calling thread and was just seen waiting for one descriptor, as a thread that
 * emulates blocking I/O on non-blocking sockets does. */
static enum parent_reason thread_unsound(const struct correlate *c, uint32_t tid, bool waits_one_fd)
{
	unsigned marks = marks_of(c, tid);

	if ((marks & MARK_NONBLOCKING) && ((marks & MARK_WAITS_MANY) || !waits_one_fd))
		return REASON_NONBLOCKING;
	if (marks & MARK_INTERLEAVING)
		return REASON_INTERLEAVING;
	if (marks & MARK_HANDOFF)
		return REASON_HANDOFF;
	return REASON_NONE;
}

static void match_trace_id(const struct correlate *c, const struct call_query *q,
			   struct parent_match *m)
{
	const struct inflight *on_thread = NULL;
	unsigned thread_matches = 0;

	const struct inflight *in = u64map_get(&c->by_trace, trace_key(q->tgid, q->out_trace_id));

	for (; in; in = in->trace_next) {
		if (in->tgid != q->tgid || memcmp(inflight_trace_id(in), q->out_trace_id, 16) != 0)
			continue; /* another key of the same hash */
		add_candidate(m, in);
		if (in->tid == q->tid && !in->answered) {
			on_thread = in;
			thread_matches++;
		}
	}
	if (m->ntotal == 1) {
		found(m, PARENT_EXACT, m->candidates[0]);
		return;
	}
	if (!m->ntotal) {
		m->conf = PARENT_NONE;
		m->reason = REASON_TRACE_NOT_IN_FLIGHT;
		return;
	}
	/* several requests of one trace in flight: a thread that is evidence decides */
	if (thread_matches == 1 && thread_unsound(c, q->tid, q->waits_one_fd) == REASON_NONE) {
		found(m, PARENT_EXACT, on_thread);
		return;
	}
	ambiguous(m, REASON_SEVERAL_OF_TRACE);
}

/*
 * The requests in flight on tid as evidence for a call. born_before: for an ancestor, only
 * requests that were being served when the calling process was created count (0: no limit).
 * Returns false when tid has no request in flight that could be the parent (m untouched),
 * true when m is settled (a parent, or ambiguous with the reason).
 */
/* What a thread has in flight, from its counts: the call of no ancestor (born_before 0). */
static void count_thread(const struct correlate *c, const struct thread_inflight *th, uint32_t tid,
			 struct parent_match *m, unsigned *unanswered, unsigned *answered,
			 const struct inflight **one, enum parent_reason *why)
{
	unsigned listed = 0;

	/* the candidates named are the newest; the others are only counted */
	for (const struct inflight *in = th->unanswered; in && listed < PARENT_MAX_CANDIDATES;
	     in = in->thread_next, listed++)
		add_candidate(m, in);
	m->ntotal += th->n_unanswered - listed;
	*unanswered = th->n_unanswered;
	*answered = th->n_answered;
	*one = th->unanswered;
	/* a thread the marks table had no room for */
	if (th->n_nonblocking && !(marks_of(c, tid) & MARK_NONBLOCKING))
		*why = REASON_NONBLOCKING;
}

/* The same for an ancestor: only requests it was serving when the caller was born count. */
static void count_thread_before(const struct correlate *c, const struct thread_inflight *th,
				uint32_t tid, uint64_t born_before, struct parent_match *m,
				unsigned *unanswered, unsigned *answered,
				const struct inflight **one, enum parent_reason *why)
{
	for (const struct inflight *in = th->answered; in; in = in->thread_next)
		*answered += in->start_ns <= born_before;
	for (const struct inflight *in = th->unanswered; in; in = in->thread_next) {
		if (in->start_ns > born_before)
			continue;
		(*unanswered)++;
		*one = in;
		add_candidate(m, in);
		if (in->nonblocking && !(marks_of(c, tid) & MARK_NONBLOCKING))
			*why = REASON_NONBLOCKING;
	}
}

/*
 * The requests in flight on tid as evidence for a call. born_before: for an ancestor, only
 * requests that were being served when the calling process was created count (0: no limit).
 * Returns false when tid has no request in flight that could be the parent (m untouched),
 * true when m is settled (a parent, or ambiguous with the reason).
 */
static bool match_thread(const struct correlate *c, uint32_t tid, const struct call_query *q,
			 enum parent_confidence conf, uint64_t born_before, struct parent_match *m)
{
	const struct thread_inflight *th = u64map_get(&c->by_tid, tid);
	const struct inflight *one = NULL;
	enum parent_reason why = thread_unsound(c, tid, tid == q->tid && q->waits_one_fd);
	unsigned unanswered = 0, answered = 0;

	if (!th)
		return false;
	if (born_before)
		count_thread_before(c, th, tid, born_before, m, &unanswered, &answered, &one, &why);
	else
		count_thread(c, th, tid, m, &unanswered, &answered, &one, &why);
	if (!unanswered) {
		if (!answered)
			return false;
		m->conf = PARENT_NONE;
		m->reason = REASON_AFTER_RESPONSE;
		return true;
	}
	if (why == REASON_NONE && unanswered > 1)
		why = REASON_SEVERAL;
	if (why == REASON_NONE &&
	    ((q->ts_ns > one->start_ns && q->ts_ns - one->start_ns > ADOPT_MAX_AGE_NS) ||
	     one->adopted >= ADOPT_MAX_CALLS))
		why = REASON_ADOPTION_LIMIT;
	if (why != REASON_NONE)
		ambiguous(m, why);
	else
		found(m, conf, one);
	return true;
}

/* The thread that created t, and how: false when unknown. */
static bool creator_of(const struct correlate *c, uint32_t t, uint32_t *creator, bool *process,
		       uint64_t *born)
{
	uint64_t v = (uint64_t)(uintptr_t)u64map_get(&c->thread_parent, t);
	uint64_t b = (uint64_t)(uintptr_t)u64map_get(&c->thread_born, t);

	if (!v || !b)
		return false;
	*creator = (uint32_t)((v & 0xffffffffULL) - 1);
	*process = (v & CREATED_PROCESS) != 0;
	*born = b - 1;
	return true;
}

/* No request in flight on the calling thread: a process forked by a thread while it served
 * a request serves that request (CGI, a subprocess). A thread created then does not: pools
 * and runtimes create threads lazily, during whichever request comes first. */
static bool match_ancestry(const struct correlate *c, const struct call_query *q,
			   struct parent_match *m)
{
	uint32_t t = q->tid, creator;
	uint64_t born;
	bool process;

	for (int depth = 0; depth < ANCESTRY_MAX_DEPTH; depth++) {
		if (!creator_of(c, t, &creator, &process, &born))
			return false;
		if (!process) {
			struct parent_match probe = {0};

			if (!match_thread(c, creator, q, PARENT_ANCESTOR, born, &probe) ||
			    probe.conf == PARENT_NONE)
				return false;
			*m = probe;
			ambiguous(m, REASON_THREAD_CREATED);
			return true;
		}
		if (match_thread(c, creator, q, PARENT_ANCESTOR, born, m))
			return true;
		t = creator;
	}
	return false;
}

void correlate__find_parent(const struct correlate *c, const struct call_query *q,
			    struct parent_match *m)
{
	memset(m, 0, sizeof(*m));
	if (q->out_trace_id) {
		/* the request carries its own context: only a server span of that trace can
		 * be its parent */
		match_trace_id(c, q, m);
		return;
	}
	if (match_thread(c, q->tid, q, PARENT_THREAD, 0, m) || match_ancestry(c, q, m))
		return;
	m->conf = PARENT_NONE;
	m->reason = u64map_get(&c->by_tgid, q->tgid) ? REASON_OTHER_THREADS : REASON_NO_REQUEST;
}

const char *parent_confidence_name(enum parent_confidence conf)
{
	switch (conf) {
	case PARENT_EXACT:
		return "exact";
	case PARENT_THREAD:
		return "thread";
	case PARENT_ANCESTOR:
		return "ancestor";
	case PARENT_AMBIGUOUS:
		return "ambiguous";
	default:
		return "none";
	}
}

static const char *const reason_names[REASON__COUNT] = {
    [REASON_NO_REQUEST] = "no_request_in_flight",
    [REASON_AFTER_RESPONSE] = "after_response",
    [REASON_OTHER_THREADS] = "requests_on_other_threads",
    [REASON_NONBLOCKING] = "nonblocking_thread",
    [REASON_INTERLEAVING] = "interleaving_thread",
    [REASON_HANDOFF] = "handoff_thread",
    [REASON_SEVERAL] = "several_requests_on_thread",
    [REASON_ADOPTION_LIMIT] = "adoption_limit",
    [REASON_THREAD_CREATED] = "thread_created_during_request",
    [REASON_TRACE_NOT_IN_FLIGHT] = "trace_not_in_flight",
    [REASON_SEVERAL_OF_TRACE] = "several_requests_of_trace",
};

const char *parent_reason_name(enum parent_reason r)
{
	return r > REASON_NONE && r < REASON__COUNT ? reason_names[r] : NULL;
}

bool parent_reason_outside_request(enum parent_reason r)
{
	return r == REASON_NO_REQUEST || r == REASON_AFTER_RESPONSE;
}

enum log_serving correlate__serving(const struct correlate *c, uint32_t tid, struct inflight **out)
{
	const struct thread_inflight *th = u64map_get(&c->by_tid, tid);
	unsigned marks = marks_of(c, tid);
	struct inflight *in;

	*out = NULL;
	if (!th || th->n_unanswered + th->n_answered == 0)
		return LOG_SERVING_NONE;
	if (th->n_unanswered + th->n_answered > 1 || (marks & (MARK_INTERLEAVING | MARK_HANDOFF)))
		return LOG_SERVING_SEVERAL;
	in = th->unanswered ? th->unanswered : th->answered;
	if (in->nonblocking && (marks & MARK_WAITS_MANY))
		return LOG_SERVING_SEVERAL;
	*out = in;
	return LOG_SERVING_ONE;
}
