// SPDX-License-Identifier: BSD-2-Clause
#include "outbuf.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "privilege.h"

#define WHAT_LEN 128

/*
 * A ring of cap bytes: [head, head + len) modulo cap holds what the writer has yet to write,
 * and its first `complete` bytes end with a newline. The writer takes complete lines only,
 * so that the unfinished line at the end can still be taken back when the lines after it
 * do not fit. The writer writes without the lock held, from bytes the loop thread does not
 * touch until they are consumed.
 */
struct outbuf {
	pthread_mutex_t lock;
	pthread_cond_t wake;	 /* to the writer: lines to write, or stop */
	pthread_cond_t progress; /* to a drain: bytes written, a write failed, the writer ended */
	pthread_t writer;
	FILE *stream;
	char *data;
	size_t cap, head, len, complete;
	uint64_t drops;	  /* lines dropped */
	bool skipping;	  /* dropping the rest of a line whose start was dropped */
	bool stopping;	  /* close: write everything, the unfinished line too, then end */
	bool abandoned;	  /* the fd did not take output within a deadline: drop everything */
	bool writer_done; /* the writer thread has ended */
	int err;	  /* the first write error (errno), after which output is dropped */
	int fd, own_fd;
	size_t atomic_max; /* pipes: PIPE_BUF, the most one write(2) puts in all or nothing */
	char what[WHAT_LEN];
	struct outbuf *next_abandoned;
};

/* Outbufs whose writer was still blocked in write(2) at close: their memory stays, as the
 * writer may still read it; the process is exiting. Listed so that it stays reachable. */
static struct outbuf *abandoned_list;

static size_t count_newlines(const char *p, size_t n)
{
	size_t count = 0;
	const char *end = p + n, *nl;

	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p)))) {
		count++;
		p = nl + 1;
	}
	return count;
}

/* Newlines in the ring's [head, head + len). */
static size_t ring_newlines(const struct outbuf *ob)
{
	size_t first = ob->len < ob->cap - ob->head ? ob->len : ob->cap - ob->head;

	return count_newlines(ob->data + ob->head, first) +
	       count_newlines(ob->data, ob->len - first);
}

/* Drop bytes: each newline ends a lost line; a last line without its newline yet is
 * counted when its newline comes (skipping). Called with the lock held. */
static void drop_bytes(struct outbuf *ob, const char *p, size_t n)
{
	ob->drops += count_newlines(p, n);
	if (n)
		ob->skipping = p[n - 1] != '\n';
}

static void ring_copy(struct outbuf *ob, const char *p, size_t n)
{
	size_t tail = (ob->head + ob->len) % ob->cap;
	size_t first = n < ob->cap - tail ? n : ob->cap - tail;
	const char *nl = memrchr(p, '\n', n);

	memcpy(ob->data + tail, p, first);
	memcpy(ob->data, p + first, n - first);
	ob->len += n;
	if (nl)
		ob->complete = ob->len - (n - (size_t)(nl - p) - 1);
}

/* Take what fits, in whole lines; drop the rest, counted. Called with the lock held. */
static void append_lines(struct outbuf *ob, const char *p, size_t n)
{
	size_t room = ob->cap - ob->len;
	const char *nl;

	if (n <= room) {
		ring_copy(ob, p, n);
		return;
	}
	nl = room ? memrchr(p, '\n', room) : NULL;
	if (nl) {
		size_t fit = (size_t)(nl - p) + 1;

		ring_copy(ob, p, fit);
		p += fit;
		n -= fit;
	} else {
		/* the unfinished line at the end of the ring goes on in p and does not fit:
		 * take its start back, it is dropped with the rest */
		ob->len = ob->complete;
	}
	drop_bytes(ob, p, n);
}

/* The stream's write function (fopencookie): always takes everything, never blocks. */
static ssize_t cookie_write(void *cookie, const char *p, size_t n)
{
	struct outbuf *ob = cookie;
	size_t done = n;

	pthread_mutex_lock(&ob->lock);
	if (ob->skipping) {
		const char *nl = memchr(p, '\n', n);
		size_t skip = nl ? (size_t)(nl - p) + 1 : n;

		drop_bytes(ob, p, skip);
		p += skip;
		n -= skip;
	}
	if (ob->abandoned || ob->err || ob->writer_done)
		drop_bytes(ob, p, n);
	else if (n)
		append_lines(ob, p, n);
	if (ob->complete || ob->stopping)
		pthread_cond_signal(&ob->wake);
	pthread_mutex_unlock(&ob->lock);
	return (ssize_t)done;
}

/* Everything in the ring is lost: counted, the ring emptied. Called with the lock held. */
static void drop_ring(struct outbuf *ob)
{
	ob->drops += ring_newlines(ob);
	/* an unfinished line at the end is counted when (if) its newline comes */
	ob->skipping = ob->len > ob->complete;
	ob->head = ob->len = ob->complete = 0;
}

/*
 * What the writer may write now, contiguous from head. Into a pipe, at most PIPE_BUF bytes
 * ending with a newline when there is one: such a write is all or nothing, so a writer
 * that is given up on while blocked (exit with a reader that does not read) leaves no cut
 * line in the pipe. Called with the lock held.
 */
static size_t writable(const struct outbuf *ob)
{
	size_t n = ob->stopping ? ob->len : ob->complete;
	const char *nl;

	if (n > ob->cap - ob->head)
		n = ob->cap - ob->head;
	if (n > ob->atomic_max) {
		nl = memrchr(ob->data + ob->head, '\n', ob->atomic_max);
		n = nl ? (size_t)(nl - (ob->data + ob->head)) + 1 : ob->atomic_max;
	}
	return n;
}

/* One write(2), without the lock. A descriptor that someone made non-blocking (stdout shares
 * its open file with the shell's terminal) is waited for here, so it is not a failure. */
static ssize_t write_some(int fd, const char *p, size_t n)
{
	ssize_t w = write(fd, p, n);

	if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};

		poll(&pfd, 1, -1);
		errno = EINTR;
	}
	return w;
}

static void *writer_main(void *arg)
{
	struct outbuf *ob = arg;

	privilege__restrict(0); /* writing to an open fd needs no capability */
	pthread_mutex_lock(&ob->lock);
	for (;;) {
		size_t n = writable(ob);
		ssize_t w;

		if (ob->abandoned || (!n && ob->stopping))
			break; /* given up, or stopping with everything written */
		if (!n) {
			pthread_cond_wait(&ob->wake, &ob->lock);
			continue;
		}
		pthread_mutex_unlock(&ob->lock);
		w = write_some(ob->fd, ob->data + ob->head, n);
		pthread_mutex_lock(&ob->lock);
		if (ob->abandoned)
			break; /* the ring was emptied and counted meanwhile */
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			ob->err = w < 0 ? errno : EIO;
			drop_ring(ob);
			break;
		}
		ob->head = (ob->head + (size_t)w) % ob->cap;
		ob->len -= (size_t)w;
		ob->complete = ob->complete > (size_t)w ? ob->complete - (size_t)w : 0;
		pthread_cond_broadcast(&ob->progress);
	}
	ob->writer_done = true;
	pthread_cond_broadcast(&ob->progress);
	pthread_mutex_unlock(&ob->lock);
	return NULL;
}

/* The writer takes no signal but SIGPIPE: the stop signals go to the loop's signalfd
 * (whose thread blocks them only once the loop starts), and a closed pipe ends the agent
 * as it ends any filter (hoptrace -o json | head). */
static int start_writer(struct outbuf *ob)
{
	sigset_t all, old;
	int err;

	sigfillset(&all);
	sigdelset(&all, SIGPIPE);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&ob->writer, NULL, writer_main, ob);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -err;
}

static int init_sync(struct outbuf *ob)
{
	pthread_condattr_t attr;

	/* deadlines are on the monotonic clock: a clock step must not cut or stretch them */
	if (pthread_condattr_init(&attr) || pthread_condattr_setclock(&attr, CLOCK_MONOTONIC))
		return -ENOMEM;
	pthread_mutex_init(&ob->lock, NULL);
	pthread_cond_init(&ob->wake, NULL);
	pthread_cond_init(&ob->progress, &attr);
	pthread_condattr_destroy(&attr);
	return 0;
}

struct outbuf *outbuf__new(int fd, int own_fd, size_t cap, const char *what)
{
	cookie_io_functions_t io = {.write = cookie_write};
	struct outbuf *ob = calloc(1, sizeof(*ob));
	int err = -ENOMEM;
	struct stat st;

	if (!ob)
		goto err;
	ob->fd = fd;
	ob->own_fd = own_fd;
	ob->cap = cap;
	ob->atomic_max = fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) ? PIPE_BUF : SIZE_MAX;
	snprintf(ob->what, sizeof(ob->what), "%s", what);
	ob->data = malloc(cap);
	if (!ob->data || init_sync(ob))
		goto err_free;
	ob->stream = fopencookie(ob, "w", io);
	if (!ob->stream)
		goto err_free;
	err = start_writer(ob);
	if (err)
		goto err_close_stream;
	return ob;

err_close_stream:
	fclose(ob->stream);
err_free:
	free(ob->data);
	free(ob);
err:
	errno = -err;
	return NULL;
}

FILE *outbuf__stream(struct outbuf *ob)
{
	return ob->stream;
}

static struct timespec deadline_after(int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

/* Wait until done(ob) or the deadline; on the deadline, give the fd up. Called with the
 * lock held. 0, or -ETIMEDOUT. */
static int wait_or_abandon(struct outbuf *ob, bool (*done)(const struct outbuf *), int ms)
{
	struct timespec until = deadline_after(ms);

	while (!done(ob))
		if (pthread_cond_timedwait(&ob->progress, &ob->lock, &until) == ETIMEDOUT)
			break;
	if (done(ob))
		return 0;
	if (!ob->abandoned) {
		ob->abandoned = true;
		drop_ring(ob);
		pthread_cond_signal(&ob->wake);
	}
	return -ETIMEDOUT;
}

static bool lines_written(const struct outbuf *ob)
{
	return !ob->complete || ob->writer_done;
}

static bool writer_ended(const struct outbuf *ob)
{
	return ob->writer_done;
}

int outbuf__drain(struct outbuf *ob, int deadline_ms)
{
	int err;

	fflush(ob->stream);
	pthread_mutex_lock(&ob->lock);
	err = wait_or_abandon(ob, lines_written, deadline_ms);
	pthread_mutex_unlock(&ob->lock);
	return err;
}

uint64_t outbuf__drops(struct outbuf *ob)
{
	uint64_t drops;

	pthread_mutex_lock(&ob->lock);
	drops = ob->drops;
	pthread_mutex_unlock(&ob->lock);
	return drops;
}

void outbuf__print_stats(struct outbuf *ob, FILE *out)
{
	fprintf(out, "  %-28s %12" PRIu64 "  lines dropped: %s not read fast enough\n",
		"output_drops", outbuf__drops(ob), ob->what);
}

/* The writer ended: join it and free everything. */
static void outbuf_free(struct outbuf *ob)
{
	pthread_join(ob->writer, NULL);
	if (ob->own_fd)
		close(ob->fd);
	pthread_cond_destroy(&ob->wake);
	pthread_cond_destroy(&ob->progress);
	pthread_mutex_destroy(&ob->lock);
	free(ob->data);
	free(ob);
}

int outbuf__close(struct outbuf *ob, int deadline_ms)
{
	bool blocked;
	int err;

	fclose(ob->stream); /* hands the stream's buffer over; the cookie has no close */
	pthread_mutex_lock(&ob->lock);
	ob->stopping = true;
	pthread_cond_signal(&ob->wake);
	/* given up before: the writer ends at once unless it is blocked in write(2), and
	 * then waiting longer is pointless */
	wait_or_abandon(ob, writer_ended, ob->abandoned ? 100 : deadline_ms);
	err = ob->abandoned ? -ETIMEDOUT : 0;
	if (ob->skipping) /* a last line whose start was dropped never ended */
		ob->drops++;
	blocked = !ob->writer_done;
	pthread_mutex_unlock(&ob->lock);
	if (ob->err) {
		log_error("cannot write %s: %s", ob->what, strerror(ob->err));
		err = -EIO;
	} else if (err) {
		log_warn("%s was not read: %" PRIu64 " lines dropped in all (output_drops)",
			 ob->what, ob->drops);
		err = 0; /* counted, as every other loss */
	}
	if (blocked) {
		pthread_detach(ob->writer);
		ob->next_abandoned = abandoned_list;
		abandoned_list = ob;
	} else {
		outbuf_free(ob);
	}
	return err;
}
