// SPDX-License-Identifier: BSD-2-Clause
#include "correlate.h"

#include <errno.h>
#include <string.h>

#include "span.h"

#define CORRELATE_MAX_PROCS 65536
#define CORRELATE_MAX_THREADS 262144

int correlate__init(struct correlate *c)
{
	memset(c, 0, sizeof(*c));
	if (u64map_init(&c->by_tgid, CORRELATE_MAX_PROCS) ||
	    u64map_init(&c->by_tid, CORRELATE_MAX_THREADS) ||
	    u64map_init(&c->thread_parent, CORRELATE_MAX_THREADS) ||
	    u64map_init(&c->thread_born, CORRELATE_MAX_THREADS)) {
		correlate__free(c);
		return -ENOMEM;
	}
	return 0;
}

void correlate__free(struct correlate *c)
{
	u64map_free(&c->by_tgid);
	u64map_free(&c->by_tid);
	u64map_free(&c->thread_parent);
	u64map_free(&c->thread_born);
}

int correlate__add(struct correlate *c, struct inflight *in)
{
	struct inflight *proc_head = u64map_get(&c->by_tgid, in->tgid);
	struct inflight *thread_head = u64map_get(&c->by_tid, in->tid);
	int err;

	err = u64map_put(&c->by_tgid, in->tgid, in);
	if (err)
		return err;
	err = u64map_put(&c->by_tid, in->tid, in);
	if (err) {
		if (proc_head)
			u64map_put(&c->by_tgid, in->tgid, proc_head);
		else
			u64map_del(&c->by_tgid, in->tgid);
		return err;
	}
	in->proc_prev = NULL;
	in->proc_next = proc_head;
	if (proc_head)
		proc_head->proc_prev = in;
	in->thread_prev = NULL;
	in->thread_next = thread_head;
	if (thread_head)
		thread_head->thread_prev = in;
	in->linked = 1;
	return 0;
}

void correlate__remove(struct correlate *c, struct inflight *in)
{
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

	if (in->thread_prev)
		in->thread_prev->thread_next = in->thread_next;
	else if (in->thread_next)
		u64map_put(&c->by_tid, in->tid, in->thread_next);
	else
		u64map_del(&c->by_tid, in->tid);
	if (in->thread_next)
		in->thread_next->thread_prev = in->thread_prev;
	in->linked = 0;
	in->proc_prev = in->proc_next = in->thread_prev = in->thread_next = NULL;
}

void correlate__thread_created(struct correlate *c, uint32_t parent_tid, uint32_t child_tid,
			       uint64_t ts_ns)
{
	if (parent_tid == child_tid)
		return;
	/* best effort: when the table is full the thread just has no known ancestry */
	if (u64map_put(&c->thread_parent, child_tid,
		       (void *)(uintptr_t)((uint64_t)parent_tid + 1)) == 0)
		u64map_put(&c->thread_born, child_tid, (void *)(uintptr_t)(ts_ns + 1));
}

void correlate__thread_exited(struct correlate *c, uint32_t tid)
{
	u64map_del(&c->thread_parent, tid);
	u64map_del(&c->thread_born, tid);
}

static void add_candidate(struct parent_match *m, const struct inflight *in)
{
	if (m->ncandidates < PARENT_MAX_CANDIDATES)
		m->candidates[m->ncandidates++] = in;
	m->ntotal++;
}

/* Settle a candidate count: one is the parent, several are ambiguous. */
static int settle(struct parent_match *m, enum parent_confidence conf)
{
	if (m->ntotal == 1) {
		m->conf = conf;
		m->parent = m->candidates[0];
		return 1;
	}
	if (m->ntotal > 1) {
		m->conf = PARENT_AMBIGUOUS;
		return 1;
	}
	return 0;
}

static void match_trace_id(const struct correlate *c, uint32_t tgid, uint32_t tid,
			   const uint8_t *trace_id, struct parent_match *m)
{
	const struct inflight *on_thread = NULL;
	unsigned thread_matches = 0;

	for (const struct inflight *in = u64map_get(&c->by_tgid, tgid); in; in = in->proc_next) {
		if (memcmp(in->span->trace_id, trace_id, 16) != 0)
			continue;
		add_candidate(m, in);
		if (in->tid == tid) {
			on_thread = in;
			thread_matches++;
		}
	}
	/* several server spans of one trace in flight: the thread decides, if it can */
	if (m->ntotal > 1 && thread_matches == 1) {
		m->ncandidates = m->ntotal = 1;
		m->candidates[0] = on_thread;
	}
	settle(m, PARENT_EXACT);
}

/* Server spans in flight on tid. born_before: for an ancestor, only requests that were
 * already being served when the descendant thread was created count; a thread pool made
 * by one request must not hand later, unrelated requests to whatever that creator thread
 * serves at the time. 0: no limit. */
static int match_thread(const struct correlate *c, uint32_t tid, struct parent_match *m,
			enum parent_confidence conf, uint64_t born_before)
{
	for (const struct inflight *in = u64map_get(&c->by_tid, tid); in; in = in->thread_next)
		if (!born_before || in->start_ns <= born_before)
			add_candidate(m, in);
	return settle(m, conf);
}

void correlate__find_parent(const struct correlate *c, uint32_t tgid, uint32_t tid,
			    const uint8_t *out_trace_id, struct parent_match *m)
{
	uint32_t t = tid;

	memset(m, 0, sizeof(*m));
	if (out_trace_id) {
		/* the request carries its own context: only a server span of that trace can
		 * be its parent */
		match_trace_id(c, tgid, tid, out_trace_id, m);
		return;
	}
	if (match_thread(c, tid, m, PARENT_THREAD, 0))
		return;
	for (int depth = 0; depth < ANCESTRY_MAX_DEPTH; depth++) {
		void *v = u64map_get(&c->thread_parent, t);
		void *born = u64map_get(&c->thread_born, t);

		if (!v || !born)
			return;
		t = (uint32_t)((uintptr_t)v - 1);
		if (match_thread(c, t, m, PARENT_ANCESTOR, (uint64_t)(uintptr_t)born - 1))
			return;
	}
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
