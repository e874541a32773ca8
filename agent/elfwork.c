// SPDX-License-Identifier: BSD-2-Clause
#include "elfwork.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "privilege.h"

enum slot_state { SLOT_FREE, SLOT_QUEUED, SLOT_RUNNING, SLOT_DONE };

struct slot {
	enum slot_state state;
	uint64_t seq; /* submission order: the oldest queued job runs first */
	uint64_t key;
	struct elfwork_result res;
};

struct elfwork {
	pthread_mutex_t lock;
	pthread_cond_t work; /* to the worker: a job queued, or stop */
	pthread_cond_t done; /* to elfwork__wait: a job finished */
	pthread_t thread;
	bool stopping;
	uint64_t next_seq;
	const char *const *names;
	unsigned n, want_all;
	const struct elfsym_budget *budget;
	struct slot slots[ELFWORK_SLOTS];
};

/* The oldest queued slot, or NULL. Called with the lock held. */
static struct slot *oldest_queued(struct elfwork *w)
{
	struct slot *best = NULL;

	for (unsigned i = 0; i < ELFWORK_SLOTS; i++) {
		struct slot *s = &w->slots[i];

		if (s->state == SLOT_QUEUED && (!best || s->seq < best->seq))
			best = s;
	}
	return best;
}

static void parse(struct elfwork *w, struct elfwork_result *r)
{
	const char *why = NULL;

	r->err = elfsym_find_funcs(r->fd, w->names, w->n, w->want_all, r->off, w->budget, &why);
	r->why = why;
}

static void *worker_main(void *arg)
{
	struct elfwork *w = arg;

	/* pread of fds the loop opened needs no capability */
	privilege__restrict(0);
	pthread_mutex_lock(&w->lock);
	while (!w->stopping) {
		struct slot *s = oldest_queued(w);

		if (!s) {
			pthread_cond_wait(&w->work, &w->lock);
			continue;
		}
		s->state = SLOT_RUNNING;
		/* the loop never touches a running slot's result: no lock needed to fill it */
		pthread_mutex_unlock(&w->lock);
		parse(w, &s->res);
		pthread_mutex_lock(&w->lock);
		s->state = SLOT_DONE;
		pthread_cond_broadcast(&w->done);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static int init_sync(struct elfwork *w)
{
	pthread_condattr_t attr;

	/* elfwork__wait's deadline is on the monotonic clock: a clock step changes nothing */
	if (pthread_condattr_init(&attr) || pthread_condattr_setclock(&attr, CLOCK_MONOTONIC))
		return -ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->work, NULL);
	pthread_cond_init(&w->done, &attr);
	pthread_condattr_destroy(&attr);
	return 0;
}

static void fini_sync(struct elfwork *w)
{
	pthread_cond_destroy(&w->done);
	pthread_cond_destroy(&w->work);
	pthread_mutex_destroy(&w->lock);
}

/* The worker takes no signal: the stop signals go to the loop's signalfd. */
static int start_thread(struct elfwork *w)
{
	sigset_t all, old;
	int err;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&w->thread, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!err)
		pthread_setname_np(w->thread, "hoptrace-elf");
	return -err;
}

struct elfwork *elfwork__start(const char *const names[], unsigned n, unsigned want_all,
			       const struct elfsym_budget *budget)
{
	struct elfwork *w;
	int err;

	if (n > ELFWORK_MAX_NAMES || want_all > n) {
		errno = EINVAL;
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->names = names;
	w->n = n;
	w->want_all = want_all;
	w->budget = budget;
	err = init_sync(w);
	if (!err) {
		err = start_thread(w);
		if (err)
			fini_sync(w);
	}
	if (err) {
		free(w);
		errno = -err;
		return NULL;
	}
	return w;
}

int elfwork__submit(struct elfwork *w, int fd, uint64_t key, void *ctx)
{
	int err = -EAGAIN;

	pthread_mutex_lock(&w->lock);
	if (w->stopping)
		err = -ESHUTDOWN;
	for (unsigned i = 0; err == -EAGAIN && i < ELFWORK_SLOTS; i++) {
		struct slot *s = &w->slots[i];

		if (s->state != SLOT_FREE)
			continue;
		*s = (struct slot){.state = SLOT_QUEUED, .seq = w->next_seq++, .key = key};
		s->res.fd = fd;
		s->res.ctx = ctx;
		pthread_cond_signal(&w->work);
		err = 0;
	}
	pthread_mutex_unlock(&w->lock);
	return err;
}

bool elfwork__queued(struct elfwork *w, uint64_t key)
{
	bool found = false;

	pthread_mutex_lock(&w->lock);
	for (unsigned i = 0; !found && i < ELFWORK_SLOTS; i++)
		found = w->slots[i].state != SLOT_FREE && w->slots[i].key == key;
	pthread_mutex_unlock(&w->lock);
	return found;
}

unsigned elfwork__busy(struct elfwork *w)
{
	unsigned busy = 0;

	pthread_mutex_lock(&w->lock);
	for (unsigned i = 0; i < ELFWORK_SLOTS; i++)
		busy += w->slots[i].state != SLOT_FREE;
	pthread_mutex_unlock(&w->lock);
	return busy;
}

unsigned elfwork__collect(struct elfwork *w, elfwork_done_fn done, void *arg)
{
	unsigned n = 0;

	for (unsigned i = 0; i < ELFWORK_SLOTS; i++) {
		struct slot *s = &w->slots[i];
		struct elfwork_result r;

		pthread_mutex_lock(&w->lock);
		if (s->state != SLOT_DONE) {
			pthread_mutex_unlock(&w->lock);
			continue;
		}
		r = s->res;
		s->state = SLOT_FREE;
		pthread_mutex_unlock(&w->lock);
		/* unlocked: done attaches uprobes, and may submit again */
		done(arg, &r);
		n++;
	}
	return n;
}

static bool any_done_or_idle(struct elfwork *w)
{
	bool busy = false;

	for (unsigned i = 0; i < ELFWORK_SLOTS; i++) {
		if (w->slots[i].state == SLOT_DONE)
			return true;
		busy |= w->slots[i].state != SLOT_FREE;
	}
	return !busy;
}

void elfwork__wait(struct elfwork *w, unsigned timeout_ms)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->lock);
	while (!any_done_or_idle(w))
		if (pthread_cond_timedwait(&w->done, &w->lock, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&w->lock);
}

void elfwork__destroy(struct elfwork *w, elfwork_done_fn done, void *arg)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&w->lock);
	/* a parse under way ends within its time budget */
	pthread_join(w->thread, NULL);
	for (unsigned i = 0; i < ELFWORK_SLOTS; i++) {
		struct slot *s = &w->slots[i];

		if (s->state == SLOT_QUEUED) {
			s->res.err = -ECANCELED;
			s->res.why = "the agent stopped first";
			s->state = SLOT_DONE;
		}
	}
	elfwork__collect(w, done, arg);
	fini_sync(w);
	free(w);
}
