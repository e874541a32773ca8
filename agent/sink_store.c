// SPDX-License-Identifier: BSD-2-Clause
/*
 * The embedded store's sink (-o store, the default without a collector). The event loop
 * renders each span as a JSON span line (sink_json_render) and queues it; a writer thread
 * commits the queue in batches, one transaction each (SINK_STORE_BATCH spans, or what came in
 * within SINK_STORE_BATCH_MS), and applies retention about once a second. The loop never
 * touches the disk: it holds the queue's lock only to link a line in, and a full queue
 * (queue_bytes) drops the span and counts it (drop_store_queue_full).
 *
 * Failures keep tracing going, each counted (stats.h STORE_STATS_LIST) and logged once per
 * episode:
 *   - disk full: the batch is lost (drop_store_write_failed); later batches are tried as they
 *     come, and a line says when writing works again;
 *   - a damaged file (SQLite says corrupt, or not a database, at start or while writing): it
 *     is renamed PATH.corrupt-UNIXTIME (with its -wal and -shm) and a new, empty store is
 *     created at PATH; nothing is deleted, so the old file can still be looked at or mended
 *     with the sqlite3 tool;
 *   - a store that cannot be opened while running (disk full at creation): opening is tried
 *     again every SINK_STORE_RETRY_MS, the spans in between counted as lost.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "privilege.h"
#include "sink.h"
#include "span.h"
#include "stats.h"
#include "store.h"

#define SINK_STORE_QUEUE_BYTES (64u << 20) /* default queue bound */
#define SINK_STORE_BATCH 2048		   /* spans per transaction at most */
#define SINK_STORE_BATCH_MS 200		   /* a partial batch waits at most this long */
#define SINK_STORE_PRUNE_MS 1000	   /* retention is applied this often */
#define SINK_STORE_RETRY_MS 5000	   /* reopening a store that could not be opened */

#define STORE_STAT_ADD(name, n) __atomic_add_fetch(&g_stats.name, (n), __ATOMIC_RELAXED)

struct queued_line {
	struct queued_line *next;
	size_t len;
	char line[];
};

struct store_sink {
	struct sink base;
	char path[PATH_MAX];
	uint64_t max_bytes, max_age_ns;
	size_t queue_cap;

	/* the loop thread's */
	char *render;
	size_t render_cap;

	pthread_mutex_t lock;
	pthread_cond_t wake;	/* the writer: a batch is ready, or stop */
	pthread_cond_t drained; /* flush: the queue is empty and nothing is being written */
	struct queued_line *head, **tail;
	size_t queued_bytes, queued_lines;
	bool writing, stop, abandon;
	pthread_t thread;
	bool started;

	/* the writer thread's */
	struct store *st;
	uint64_t next_prune_ns, next_retry_ns;
	int failing; /* the -errno of the failure being reported, 0 when writing works */
	uint64_t lost_in_episode;
};

static struct store_sink *to_store_sink(struct sink *sk)
{
	return (struct store_sink *)sk;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the loop thread ------------------------------------------------------------------- */

static void store_emit(struct sink *sk, struct span *s)
{
	struct store_sink *ss = to_store_sink(sk);
	struct queued_line *q;
	size_t len;

	if (!s)
		return;
	len = sink_json_render(s, &ss->render, &ss->render_cap);
	span_free(s);
	if (!len) {
		STAT_INC(drop_span_no_memory);
		return;
	}
	pthread_mutex_lock(&ss->lock);
	if (ss->queued_bytes + len > ss->queue_cap || !(q = malloc(sizeof(*q) + len))) {
		pthread_mutex_unlock(&ss->lock);
		STORE_STAT_ADD(drop_store_queue_full, 1);
		return;
	}
	q->next = NULL;
	q->len = len;
	memcpy(q->line, ss->render, len);
	*ss->tail = q;
	ss->tail = &q->next;
	ss->queued_bytes += len;
	if (++ss->queued_lines == SINK_STORE_BATCH)
		pthread_cond_signal(&ss->wake);
	pthread_mutex_unlock(&ss->lock);
}

static void store_tick(struct sink *sk, uint64_t now_ns)
{
	(void)sk;
	(void)now_ns; /* the writer keeps its own time */
}

/* ---- the writer thread ------------------------------------------------------------------- */

static void free_lines(struct queued_line *q)
{
	while (q) {
		struct queued_line *next = q->next;

		free(q);
		q = next;
	}
}

/* Open (or create) the store; a damaged file is moved aside and a new one created. */
static int open_store(struct store_sink *ss, char *err, size_t errlen)
{
	char moved[PATH_MAX + 48];
	int e;

	ss->st = store_open_errno(ss->path, STORE_READ_WRITE, &e, err, errlen);
	if (!ss->st && (e == -EUCLEAN || e == -EPROTO)) {
		int me = store_move_aside(ss->path, moved, sizeof(moved));

		if (me) {
			log_error("store %s: %s; cannot move it aside: %s", ss->path,
				  store_strerror(e), strerror(-me));
			return e;
		}
		STORE_STAT_ADD(store_files_replaced, 1);
		log_error("store %s: %s: moved to %s, a new store is started", ss->path,
			  e == -EPROTO ? "not a hoptrace store" : store_strerror(e), moved);
		ss->st = store_open_errno(ss->path, STORE_READ_WRITE, &e, err, errlen);
	}
	if (!ss->st)
		return e ? e : -EIO;
	store_set_limits(ss->st, ss->max_bytes, ss->max_age_ns);
	return 0;
}

/* A batch that was not written: counted, and the failure logged once per episode. */
static void batch_lost(struct store_sink *ss, int err, size_t n)
{
	STORE_STAT_ADD(drop_store_write_failed, n);
	STORE_STAT_ADD(store_write_errors, 1);
	ss->lost_in_episode += n;
	if (ss->failing == err)
		return;
	ss->failing = err;
	if (err == -ENOSPC)
		log_error("store %s: disk full: spans are not stored (counted in "
			  "drop_store_write_failed) until there is room; tracing goes on",
			  ss->path);
	else
		log_error("store %s: cannot write: %s: spans are not stored (counted in "
			  "drop_store_write_failed); tracing goes on",
			  ss->path, store_strerror(err));
}

static void batch_written(struct store_sink *ss, int added)
{
	STORE_STAT_ADD(store_spans_written, (uint64_t)added);
	if (!ss->failing)
		return;
	log_info("store %s: writing again; %" PRIu64 " spans were lost meanwhile", ss->path,
		 ss->lost_in_episode);
	ss->failing = 0;
	ss->lost_in_episode = 0;
}

/* A damaged file while running: closed, moved aside, a new store opened. */
static void replace_damaged(struct store_sink *ss)
{
	char err[PATH_MAX + 128];

	store_close(ss->st);
	ss->st = NULL;
	if (open_store(ss, err, sizeof(err)))
		ss->next_retry_ns = mono_ns() + SINK_STORE_RETRY_MS * 1000000ull;
}

static void write_batch(struct store_sink *ss, struct queued_line *batch, size_t n)
{
	const char *lines[SINK_STORE_BATCH];
	size_t lens[SINK_STORE_BATCH], i = 0;
	uint64_t malformed = 0;
	char err[PATH_MAX + 128];
	int added;

	if (!ss->st && mono_ns() >= ss->next_retry_ns && open_store(ss, err, sizeof(err)))
		ss->next_retry_ns = mono_ns() + SINK_STORE_RETRY_MS * 1000000ull;
	if (!ss->st) {
		batch_lost(ss, -EIO, n);
		return;
	}
	for (struct queued_line *q = batch; q && i < SINK_STORE_BATCH; q = q->next, i++) {
		lines[i] = q->line;
		lens[i] = q->len;
	}
	added = store_add_lines(ss->st, lines, lens, i, &malformed);
	if (added < 0) {
		batch_lost(ss, added, i);
		if (added == -EUCLEAN)
			replace_damaged(ss);
		return;
	}
	/* our own lines: a malformed one is a bug, counted with the failures */
	if (malformed)
		STORE_STAT_ADD(drop_store_write_failed, malformed);
	batch_written(ss, added);
}

static void prune(struct store_sink *ss)
{
	uint64_t deleted = 0;
	int err;

	if (!ss->st || (!ss->max_bytes && !ss->max_age_ns))
		return;
	err = store_prune(ss->st, wall_ns(), &deleted);
	STORE_STAT_ADD(store_traces_deleted, deleted);
	if (err == -EUCLEAN) {
		batch_lost(ss, err, 0);
		replace_damaged(ss);
	} else if (err && err != ss->failing) {
		log_warn("store %s: retention failed: %s", ss->path, store_strerror(err));
	}
}

/* Up to SINK_STORE_BATCH lines off the queue's head (lock held). */
static struct queued_line *take_batch(struct store_sink *ss, size_t *n)
{
	struct queued_line *first = ss->head, **cut = &ss->head;
	size_t bytes = 0;

	*n = 0;
	while (*cut && *n < SINK_STORE_BATCH) {
		bytes += (*cut)->len;
		cut = &(*cut)->next;
		(*n)++;
	}
	ss->head = *cut;
	*cut = NULL;
	if (!ss->head)
		ss->tail = &ss->head;
	ss->queued_bytes -= bytes;
	ss->queued_lines -= *n;
	return first;
}

static void wait_for_batch(struct store_sink *ss)
{
	struct timespec until;

	if (ss->stop || ss->queued_lines >= SINK_STORE_BATCH)
		return;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += SINK_STORE_BATCH_MS * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&ss->wake, &ss->lock, &until);
}

static void *writer_main(void *arg)
{
	struct store_sink *ss = arg;

	privilege__restrict(0); /* files of its own user need no capability */
	pthread_mutex_lock(&ss->lock);
	for (;;) {
		struct queued_line *batch;
		size_t n;

		wait_for_batch(ss);
		if (ss->abandon || (ss->stop && !ss->head))
			break;
		batch = take_batch(ss, &n);
		ss->writing = true;
		pthread_mutex_unlock(&ss->lock);
		if (n)
			write_batch(ss, batch, n);
		free_lines(batch);
		if (mono_ns() >= ss->next_prune_ns) {
			prune(ss);
			ss->next_prune_ns = mono_ns() + SINK_STORE_PRUNE_MS * 1000000ull;
		}
		pthread_mutex_lock(&ss->lock);
		ss->writing = false;
		if (!ss->head)
			pthread_cond_broadcast(&ss->drained);
	}
	pthread_cond_broadcast(&ss->drained);
	pthread_mutex_unlock(&ss->lock);
	return NULL;
}

/* ---- flush, stats, destroy ------------------------------------------------------------- */

static void store_flush(struct sink *sk, int deadline_ms)
{
	struct store_sink *ss = to_store_sink(sk);
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += deadline_ms / 1000;
	until.tv_nsec += (long)(deadline_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&ss->lock);
	pthread_cond_signal(&ss->wake);
	while (ss->started && (ss->head || ss->writing)) {
		/* wake the writer for a partial batch now rather than after its wait */
		ss->stop = true;
		pthread_cond_signal(&ss->wake);
		if (pthread_cond_timedwait(&ss->drained, &ss->lock, &until) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&ss->lock);
}

static void store_print_stats(struct sink *sk, FILE *out)
{
	(void)sk;
	(void)out; /* the counters are in stats.h: the summary prints them */
}

static void store_destroy(struct sink *sk)
{
	struct store_sink *ss = to_store_sink(sk);

	pthread_mutex_lock(&ss->lock);
	ss->stop = true;
	ss->abandon = true; /* flush had its deadline: what is left is counted, not written */
	pthread_cond_signal(&ss->wake);
	pthread_mutex_unlock(&ss->lock);
	if (ss->started)
		pthread_join(ss->thread, NULL);
	STORE_STAT_ADD(drop_store_shutdown, ss->queued_lines);
	free_lines(ss->head);
	store_close(ss->st);
	pthread_cond_destroy(&ss->wake);
	pthread_cond_destroy(&ss->drained);
	pthread_mutex_destroy(&ss->lock);
	free(ss->render);
	free(ss);
}

static int start_writer(struct store_sink *ss)
{
	sigset_t all, old;
	int err;

	/* as the OTLP workers (sink_otlp.c): no signal for this thread, the loop reads them */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = pthread_create(&ss->thread, NULL, writer_main, ss);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return -err;
	ss->started = true;
	pthread_setname_np(ss->thread, "store-writer");
	return 0;
}

static int init_sync(struct store_sink *ss)
{
	pthread_condattr_t ca;
	int err;

	if (pthread_condattr_init(&ca))
		return -ENOMEM;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	err = pthread_cond_init(&ss->wake, &ca) ?: pthread_cond_init(&ss->drained, &ca);
	pthread_condattr_destroy(&ca);
	if (!err)
		err = pthread_mutex_init(&ss->lock, NULL);
	return -err;
}

struct sink *sink_store_new(const struct sink_store_config *cfg)
{
	struct store_sink *ss = calloc(1, sizeof(*ss));
	char why[PATH_MAX + 128];
	int err;

	if (!ss) {
		log_error("store: out of memory");
		return NULL;
	}
	ss->base = (struct sink){.name = "store",
				 .emit = store_emit,
				 .tick = store_tick,
				 .flush = store_flush,
				 .print_stats = store_print_stats,
				 .destroy = store_destroy};
	snprintf(ss->path, sizeof(ss->path), "%s", cfg->path);
	ss->max_bytes = cfg->max_bytes;
	ss->max_age_ns = cfg->max_age_ns;
	ss->queue_cap = cfg->queue_bytes ? cfg->queue_bytes : SINK_STORE_QUEUE_BYTES;
	ss->tail = &ss->head;
	if (init_sync(ss)) {
		free(ss);
		log_error("store: cannot set up the writer's locks");
		return NULL;
	}
	err = open_store(ss, why, sizeof(why));
	if (err == -ENOSPC) {
		/* tracing goes on; opening is tried again as spans come */
		batch_lost(ss, err, 0);
		ss->next_retry_ns = mono_ns() + SINK_STORE_RETRY_MS * 1000000ull;
	} else if (err) {
		log_error("%s (choose another with --store PATH, or -o waterfall)", why);
		goto fail;
	}
	/* the first retention pass at once: a store left over the bounds shrinks now */
	prune(ss);
	ss->next_prune_ns = mono_ns() + SINK_STORE_PRUNE_MS * 1000000ull;
	err = start_writer(ss);
	if (err) {
		log_error("store: cannot start the writer thread: %s", strerror(-err));
		goto fail;
	}
	return &ss->base;
fail:
	store_destroy(&ss->base);
	return NULL;
}
