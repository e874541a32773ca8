// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for outbuf: output through a pipe that is read late, or never. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "outbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CAP 4096

/* A pipe whose write end is in front of an outbuf of CAP bytes; its capacity is the
 * smallest the kernel allows (a page), so that it fills after a few lines. */
struct fixture {
	int rfd, wfd;
	struct outbuf *ob;
	FILE *out;
};

static void setup(struct fixture *fx)
{
	int p[2];

	assert_int_equal(pipe(p), 0);
	fcntl(p[1], F_SETPIPE_SZ, 4096);
	fx->rfd = p[0];
	fx->wfd = p[1];
	fx->ob = outbuf__new(p[1], 1, CAP, "the test pipe");
	assert_non_null(fx->ob);
	fx->out = outbuf__stream(fx->ob);
}

/* Everything in the pipe (the writer has stopped: non-blocking read to the end). */
static char *read_all(int fd, size_t *len)
{
	size_t cap = 1 << 20, n = 0;
	char *buf = malloc(cap + 1);
	ssize_t r;

	assert_non_null(buf);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	while ((r = read(fd, buf + n, cap - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Lines "line N <pad>\n" of 100 bytes: every line read back must be whole and in order. */
static void write_lines(FILE *out, int first, int n)
{
	for (int i = first; i < first + n; i++) {
		fprintf(out, "line %06d %087d\n", i, 0);
		if (i % 7 == 6)
			fflush(out); /* hand-overs of several lines, cut anywhere by stdio */
	}
	fflush(out);
}

static int check_whole_lines(const char *buf, size_t len)
{
	int count = 0, last = -1;

	for (const char *p = buf; p < buf + len;) {
		const char *nl = memchr(p, '\n', (size_t)(buf + len - p));
		int idx;

		assert_non_null(nl);
		assert_int_equal(nl - p, 99);
		assert_int_equal(sscanf(p, "line %d", &idx), 1);
		assert_true(idx > last);
		last = idx;
		count++;
		p = nl + 1;
	}
	return count;
}

/* Nobody reads: writing never blocks, and every line is either in the pipe, whole, or
 * counted as dropped. */
static void test_unread_pipe_drops_whole_lines(void **state)
{
	struct timespec t0, t1;
	struct fixture fx;
	uint64_t drops;
	FILE *prefill;
	size_t len;
	char *buf;
	int got;

	(void)state;
	setup(&fx);
	/* 40 lines straight into the pipe: no room left for a whole write of the writer's */
	prefill = fdopen(dup(fx.wfd), "w");
	assert_non_null(prefill);
	write_lines(prefill, 0, 40);
	fclose(prefill);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	write_lines(fx.out, 40, 1000); /* 100 KB: 10 times the pipe and the buffer together */
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 2);
	assert_int_equal(outbuf__drain(fx.ob, 100), -ETIMEDOUT);
	drops = outbuf__drops(fx.ob);
	assert_int_equal(outbuf__close(fx.ob, 100), 0);
	buf = read_all(fx.rfd, &len);
	got = check_whole_lines(buf, len);
	assert_true(drops > 0);
	/* the lines of the write(2) blocked when the buffer was given up are counted as
	 * dropped (the agent exits then) but reach this reader: at most PIPE_BUF of them */
	assert_true((uint64_t)got + drops >= 1040 && (uint64_t)got + drops <= 1040 + 41);
	free(buf);
	close(fx.rfd);
}

/* What fits is not lost: a reader that comes late reads all of it. */
static void test_late_reader_gets_what_fit(void **state)
{
	struct fixture fx;
	size_t len;
	char *buf;

	(void)state;
	setup(&fx);
	write_lines(fx.out, 0, 30); /* 3 KB: fits in the buffer, then in the pipe */
	assert_int_equal(outbuf__drain(fx.ob, 1000), 0);
	assert_int_equal(outbuf__drops(fx.ob), 0);
	assert_int_equal(outbuf__close(fx.ob, 1000), 0);
	buf = read_all(fx.rfd, &len);
	assert_int_equal(check_whole_lines(buf, len), 30);
	free(buf);
	close(fx.rfd);
}

/* A line longer than the whole buffer is dropped, counted once; the next lines go on. */
static void test_line_longer_than_the_buffer(void **state)
{
	struct fixture fx;
	char *big = malloc(3 * CAP);
	size_t len;
	char *buf;

	(void)state;
	assert_non_null(big);
	memset(big, 'x', 3 * CAP);
	setup(&fx);
	fwrite(big, 1, 3 * CAP, fx.out);
	fputs("\n", fx.out);
	write_lines(fx.out, 0, 3);
	assert_int_equal(outbuf__drain(fx.ob, 1000), 0);
	assert_int_equal(outbuf__drops(fx.ob), 1);
	assert_int_equal(outbuf__close(fx.ob, 1000), 0);
	buf = read_all(fx.rfd, &len);
	assert_int_equal(check_whole_lines(buf, len), 3);
	free(buf);
	free(big);
	close(fx.rfd);
}

/* A reader that closed: the failure is reported at close (the loop never saw it). */
static void test_write_error_is_reported(void **state)
{
	struct fixture fx;

	(void)state;
	setup(&fx);
	close(fx.rfd);
	write_lines(fx.out, 0, 10);
	outbuf__drain(fx.ob, 1000);
	assert_int_equal(outbuf__close(fx.ob, 1000), -EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_unread_pipe_drops_whole_lines),
	    cmocka_unit_test(test_late_reader_gets_what_fit),
	    cmocka_unit_test(test_line_longer_than_the_buffer),
	    cmocka_unit_test(test_write_error_is_reported),
	};

	/* A writer given up while blocked in write(2) may still be there when a test closes
	 * its reader: EPIPE then, not a SIGPIPE that ends this program (and the next test). */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
