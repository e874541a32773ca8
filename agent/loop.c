// SPDX-License-Identifier: BSD-2-Clause
#include "loop.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>

#include "conn.h"
#include "log.h"
#include "reorder.h"
#include "sink.h"
#include "tls.h"

#define TICK_NS (20 * 1000000ULL) /* drain period: wake-ups are batched in the kernel */
#define HOUSEKEEPING_NS (1000 * 1000000ULL)
/* Records younger than this at a drain wait for the next one: a record of another CPU that
 * started earlier may not be committed yet (a BPF program runs for microseconds; this
 * allows for one being preempted). */
#define REORDER_HOLD_NS (5 * 1000000ULL)
#define REORDER_MAX_BYTES (256u << 20)

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
	struct ht_task_event ev;

	tracker__handle_record(l->tracker, data, len);
	if (l->tls && len >= sizeof(ev)) {
		/* a new image may bring OpenSSL code to probe */
		memcpy(&ev, data, sizeof(ev));
		if (ev.kind == HT_EV_EXEC)
			tls__on_exec(l->tls, ev.tgid, now_monotonic());
	}
}

/* One ring: nothing to merge, records are handled in place. */
static int on_record(void *ctx, void *data, size_t len)
{
	handle_record(ctx, data, len);
	return 0;
}

/* The ring of one CPU, with the merger its records go to. */
struct ring_source {
	struct reorder *merger;
	unsigned index;
};

static int on_ring_record(void *ctx, void *data, size_t len)
{
	struct ring_source *src = ctx;

	reorder__push(src->merger, src->index, data, len);
	return 0;
}

struct rings {
	struct ring_buffer *rb;
	struct reorder *merger; /* NULL with a single ring */
	struct ring_source *sources;
};

static int rings_open(struct rings *r, struct loop *l)
{
	memset(r, 0, sizeof(*r));
	if (l->nrings == 1) {
		r->rb = ring_buffer__new(l->ringbuf_fds[0], on_record, l, NULL);
		return r->rb ? 0 : -errno;
	}
	r->merger = reorder__new(l->nrings, REORDER_MAX_BYTES, handle_record, l);
	r->sources = calloc(l->nrings, sizeof(*r->sources));
	if (!r->merger || !r->sources)
		return -ENOMEM;
	for (unsigned i = 0; i < l->nrings; i++) {
		int err;

		r->sources[i] = (struct ring_source){.merger = r->merger, .index = i};
		if (i == 0) {
			r->rb = ring_buffer__new(l->ringbuf_fds[0], on_ring_record, &r->sources[0],
						 NULL);
			err = r->rb ? 0 : -errno;
		} else {
			err = ring_buffer__add(r->rb, l->ringbuf_fds[i], on_ring_record,
					       &r->sources[i]);
		}
		if (err)
			return err;
	}
	return 0;
}

/* Read what the rings hold; final: deliver everything, nothing can arrive any more. */
static void rings_drain(struct rings *r, bool final)
{
	ring_buffer__consume(r->rb);
	if (r->merger)
		reorder__release(r->merger, final ? UINT64_MAX : now_monotonic() - REORDER_HOLD_NS);
}

static void rings_close(struct rings *r)
{
	if (r->merger && reorder__dropped(r->merger))
		log_warn("%llu records dropped: the merge of the per-CPU rings was over %u MiB",
			 (unsigned long long)reorder__dropped(r->merger), REORDER_MAX_BYTES >> 20);
	ring_buffer__free(r->rb);
	reorder__free(r->merger);
	free(r->sources);
}

static int add_fd(int epfd, int fd, uint64_t tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
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

/* SIGINT/SIGTERM stop the loop; they are read from a signalfd, so no handler races. */
static int make_signalfd(sigset_t *old)
{
	sigset_t set;
	int fd;

	/* a shell's "cmd &" starts us with SIGINT ignored: take the default back, so the
	 * signal is queued for the signalfd */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, old))
		return -errno;
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int read_signal(int fd)
{
	struct signalfd_siginfo si;

	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return 0;
	return (int)si.ssi_signo;
}

static void on_timer(struct loop *l, int timerfd, struct rings *rb, uint64_t *next_hk)
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
		*next_hk = now + HOUSEKEEPING_NS;
	}
}

static int dispatch(struct loop *l, struct epoll_event *evs, int n, int timerfd, int sigfd,
		    struct rings *rb, uint64_t *next_hk)
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
			sig = read_signal(sigfd);
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
	int epfd, timerfd, sigfd, err;
	uint64_t next_hk = 0;
	struct rings rings;
	sigset_t old;

	err = rings_open(&rings, l);
	if (err) {
		log_error("cannot open the ring buffers: %s", strerror(-err));
		rings_close(&rings);
		return err;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	timerfd = make_timer();
	sigfd = make_signalfd(&old);
	if (epfd < 0 || timerfd < 0 || sigfd < 0 ||
	    add_fd(epfd, ring_buffer__epoll_fd(rings.rb), SRC_RINGBUF) ||
	    add_fd(epfd, timerfd, SRC_TIMER) || add_fd(epfd, sigfd, SRC_SIGNAL)) {
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
		if (n > 0 && dispatch(l, evs, n, timerfd, sigfd, &rings, &next_hk))
			break;
		if (deadline && now_monotonic() >= deadline) {
			log_info("duration reached, stopping");
			break;
		}
	}
	/* whatever the kernel still holds is processed before shutdown */
	rings_drain(&rings, true);
out:
	if (sigfd >= 0) {
		close(sigfd);
		sigprocmask(SIG_SETMASK, &old, NULL);
	}
	if (timerfd >= 0)
		close(timerfd);
	if (epfd >= 0)
		close(epfd);
	rings_close(&rings);
	return err;
}
