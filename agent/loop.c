// SPDX-License-Identifier: BSD-2-Clause
#include "loop.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "tracker.h"
#include "log.h"
#include "ringmerge.h"
#include "sink.h"
#include "stats.h"
#include "stopsig.h"
#include "tls.h"

/* Drain period (wake-ups are batched in the kernel). Short: the agent shares CPUs with what
 * it traces, and processing 20 ms of records at once raised nginx's p99 under wrk from 1.1
 * to 3.1 ms; at 5 ms, 1.7-2.1 ms, at the same throughput. */
#define TICK_NS (5 * 1000000ULL)
#define HOUSEKEEPING_NS (1000 * 1000000ULL)
/* Records younger than this at a drain wait for the next one: a record of another CPU that
 * started earlier may not be committed yet (a BPF program runs for microseconds; this
 * allows for one being preempted). */
#define REORDER_HOLD_NS (5 * 1000000ULL)

enum { SRC_RINGBUF = 1, SRC_TIMER, SRC_SIGNAL };

static uint64_t now_monotonic(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void handle_record(void *ctx, const void *data, size_t len)
{
	struct loop *l = ctx;

	tracker__handle_record(l->tracker, data, len);
}

/* The rings, mapped once, read in time order. */
static struct ringmerge *rings_open(struct loop *l)
{
	struct ringmerge *m = ringmerge__new(l->nrings, handle_record, l);
	int err;

	if (!m)
		return NULL;
	for (unsigned i = 0; i < l->nrings; i++) {
		err = ringmerge__map(m, i, l->ringbuf_fds[i], l->ring_bytes);
		if (err) {
			ringmerge__free(m);
			errno = -err;
			return NULL;
		}
	}
	return m;
}

/* Read what the rings hold; final: deliver everything, nothing can arrive any more. */
static void rings_drain(struct ringmerge *m, bool final)
{
	ringmerge__drain(m, final ? UINT64_MAX : now_monotonic() - REORDER_HOLD_NS);
	g_stats.records_late = ringmerge__late(m);
}

static int add_fd(int epfd, int fd, uint64_t tag, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.u64 = tag};

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

/* A ring wakes the loop only when a record asks for it (wakeup_bytes 0). Edge-triggered:
 * records held back for the next drain keep a ring readable, and level-triggered polling
 * would spin on them. */
static int add_ring_fds(int epfd, const struct loop *l)
{
	for (unsigned i = 0; i < l->nrings; i++) {
		int err = add_fd(epfd, l->ringbuf_fds[i], SRC_RINGBUF, EPOLLIN | EPOLLET);

		if (err)
			return err;
	}
	return 0;
}

static int make_timer(void)
{
	struct itimerspec its = {
	    .it_interval = {.tv_sec = 0, .tv_nsec = TICK_NS},
	    .it_value = {.tv_sec = 0, .tv_nsec = TICK_NS},
	};
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (timerfd_settime(fd, 0, &its, NULL)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static void on_timer(struct loop *l, int timerfd, struct ringmerge *rb, uint64_t *next_hk)
{
	uint64_t expirations, now;

	if (read(timerfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		log_debug("timerfd read: %s", strerror(errno));
	rings_drain(rb, false);
	now = now_monotonic();
	l->sink->tick(l->sink, now);
	tls__tick(l->tls, now);
	if (now >= *next_hk) {
		tracker__tick(l->tracker, now);
		if (l->on_second)
			l->on_second(l->second_ctx, now, rb);
		*next_hk = now + HOUSEKEEPING_NS;
	}
}

static int dispatch(struct loop *l, struct epoll_event *evs, int n, int timerfd,
		    struct ringmerge *rb, uint64_t *next_hk)
{
	for (int i = 0; i < n; i++) {
		int sig;

		switch (evs[i].data.u64) {
		case SRC_RINGBUF:
			rings_drain(rb, false);
			break;
		case SRC_TIMER:
			on_timer(l, timerfd, rb, next_hk);
			break;
		case SRC_SIGNAL:
			sig = stop_signals__read(l->stop);
			if (sig) {
				log_info("received %s, stopping", strsignal(sig));
				return 1;
			}
			break;
		}
	}
	return 0;
}

int loop_run(struct loop *l)
{
	uint64_t deadline = l->duration_s ? now_monotonic() + l->duration_s * 1000000000ULL : 0;
	struct epoll_event evs[8];
	int epfd, timerfd, err = 0;
	uint64_t next_hk = 0;
	struct ringmerge *rings;

	rings = rings_open(l);
	if (!rings) {
		err = -errno;
		log_error("cannot map the ring buffers: %s", strerror(errno));
		return err;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	timerfd = make_timer();
	if (epfd < 0 || timerfd < 0 || add_ring_fds(epfd, l) ||
	    add_fd(epfd, timerfd, SRC_TIMER, EPOLLIN) ||
	    add_fd(epfd, l->stop->fd, SRC_SIGNAL, EPOLLIN)) {
		log_error("cannot set up the event loop: %s", strerror(errno));
		err = -EIO;
		goto out;
	}
	if (l->on_ready)
		l->on_ready(l->ready_ctx);
	for (;;) {
		int n = epoll_wait(epfd, evs, 8, 1000);

		if (n < 0 && errno != EINTR) {
			err = -errno;
			log_error("epoll_wait: %s", strerror(errno));
			break;
		}
		if (n > 0 && dispatch(l, evs, n, timerfd, rings, &next_hk))
			break;
		if (deadline && now_monotonic() >= deadline) {
			log_info("duration reached, stopping");
			break;
		}
	}
	/* whatever the kernel still holds is processed before shutdown */
	rings_drain(rings, true);
out:
	/* the stop signals stay blocked (the caller owns them): the shutdown that follows
	 * must not be cut short by a second one */
	if (timerfd >= 0)
		close(timerfd);
	if (epfd >= 0)
		close(epfd);
	ringmerge__free(rings);
	return err;
}
