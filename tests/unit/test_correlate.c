// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for parent association (agent/correlate.c): a call takes a parent only from
 * sound evidence, and says why when it does not. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "correlate.h"
#include "span.h"
#include "threadwait.h"

#define SEC 1000000000ULL

struct fixture {
	struct correlate c;
	struct span *spans[8];
	struct inflight in[8];
	unsigned n;
};

static int setup(void **state)
{
	struct fixture *f = test_calloc(1, sizeof(*f));

	assert_int_equal(correlate__init(&f->c), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (unsigned i = 0; i < f->n; i++) {
		correlate__remove(&f->c, &f->in[i]);
		span_free(f->spans[i]);
	}
	correlate__free(&f->c);
	test_free(f);
	return 0;
}

/* A request read by tid of process 10 on connection conn at start (s), with trace id
 * bytes all equal to trace. */
static struct inflight *request(struct fixture *f, uint32_t tid, uint64_t conn, uint8_t trace,
				bool nonblocking, uint64_t start_s)
{
	struct inflight *in = &f->in[f->n];
	struct span *s = span_new();

	assert_non_null(s);
	memset(s->trace_id, trace, 16);
	memset(s->span_id, trace, 8);
	f->spans[f->n++] = s;
	*in = (struct inflight){.tgid = 10,
				.tid = tid,
				.conn = conn,
				.start_ns = start_s * SEC,
				.span = s,
				.nonblocking = nonblocking};
	assert_int_equal(correlate__add(&f->c, in), 0);
	return in;
}

/* The parent of a call by tid of process 10 at at_s seconds, carrying trace (0: none). */
static struct parent_match call(struct fixture *f, uint32_t tid, uint8_t trace, uint64_t at_s)
{
	uint8_t id[16];
	struct call_query q = {.tgid = 10, .tid = tid, .ts_ns = at_s * SEC};
	struct parent_match m;

	memset(id, trace, sizeof(id));
	q.out_trace_id = trace ? id : NULL;
	correlate__find_parent(&f->c, &q, &m);
	return m;
}

/* The same, by a thread just seen waiting on one descriptor. */
static struct parent_match call_waiting_one_fd(struct fixture *f, uint32_t tid, uint64_t at_s)
{
	struct call_query q = {.tgid = 10, .tid = tid, .ts_ns = at_s * SEC, .waits_one_fd = true};
	struct parent_match m;

	correlate__find_parent(&f->c, &q, &m);
	return m;
}

static void expect(const struct parent_match *m, enum parent_confidence conf,
		   enum parent_reason reason, const struct inflight *parent)
{
	assert_int_equal(m->conf, conf);
	assert_int_equal(m->reason, reason);
	assert_ptr_equal(m->parent, parent);
}

static void test_blocking_thread_per_request(void **state)
{
	struct fixture *f = *state;
	struct parent_match m;
	struct inflight *a;

	m = call(f, 11, 0, 1);
	expect(&m, PARENT_NONE, REASON_NO_REQUEST, NULL);
	a = request(f, 11, 100, 1, false, 1);
	m = call(f, 11, 0, 2);
	expect(&m, PARENT_THREAD, REASON_NONE, a);
	/* another thread of the process (a background timer thread) */
	m = call(f, 12, 0, 2);
	expect(&m, PARENT_NONE, REASON_OTHER_THREADS, NULL);
	/* once the response began the request adopts nothing more */
	correlate__answered(&f->c, a, 11);
	m = call(f, 11, 0, 3);
	expect(&m, PARENT_NONE, REASON_AFTER_RESPONSE, NULL);
	/* ... and the thread stays evidence for its next request */
	correlate__remove(&f->c, a);
	a = request(f, 11, 100, 2, false, 4);
	m = call(f, 11, 0, 5);
	expect(&m, PARENT_THREAD, REASON_NONE, a);
}

/* The Node timer: an event loop reads its one request in flight from a non-blocking socket,
 * and a timer on the same thread calls out. */
static void test_event_loop_is_no_evidence(void **state)
{
	struct fixture *f = *state;
	struct parent_match m;
	struct inflight *a;

	a = request(f, 11, 100, 1, true, 1);
	m = call(f, 11, 0, 2);
	expect(&m, PARENT_AMBIGUOUS, REASON_NONBLOCKING, NULL);
	assert_int_equal(m.ntotal, 1);
	/* its trace id is still evidence */
	m = call(f, 11, 1, 2);
	expect(&m, PARENT_EXACT, REASON_NONE, a);
	/* the mark stays with the thread: a request read some other way does not clear it */
	correlate__remove(&f->c, a);
	request(f, 11, 101, 2, false, 3);
	m = call(f, 11, 0, 4);
	expect(&m, PARENT_AMBIGUOUS, REASON_NONBLOCKING, NULL);
	/* until the thread exits and its id is reused */
	correlate__thread_exited(&f->c, 11);
	m = call(f, 11, 0, 5);
	expect(&m, PARENT_THREAD, REASON_NONE, &f->in[1]);
}

static void test_pipelined_and_interleaved(void **state)
{
	struct fixture *f = *state;
	struct parent_match m;
	struct inflight *a, *b;

	/* two requests pipelined on one connection: either could be served */
	a = request(f, 11, 100, 1, false, 1);
	b = request(f, 11, 100, 2, false, 1);
	m = call(f, 11, 0, 2);
	expect(&m, PARENT_AMBIGUOUS, REASON_SEVERAL, NULL);
	assert_int_equal(m.ntotal, 2);
	/* not a mark: with one left the thread is evidence again */
	correlate__answered(&f->c, a, 11);
	correlate__remove(&f->c, a);
	m = call(f, 11, 0, 3);
	expect(&m, PARENT_THREAD, REASON_NONE, b);

	/* a request of another connection read while b is still served: the thread
	 * interleaves (an event loop on blocking sockets), for good */
	request(f, 11, 200, 3, false, 4);
	m = call(f, 11, 0, 5);
	expect(&m, PARENT_AMBIGUOUS, REASON_INTERLEAVING, NULL);
	correlate__remove(&f->c, b);
	m = call(f, 11, 0, 6);
	expect(&m, PARENT_AMBIGUOUS, REASON_INTERLEAVING, NULL);
}

/* The request a thread serves, for its log lines (--capture-logs). */
static void test_serving_for_logs(void **state)
{
	struct fixture *f = *state;
	struct inflight *a, *b, *got;

	assert_int_equal(correlate__serving(&f->c, 11, &got), LOG_SERVING_NONE);
	assert_null(got);
	a = request(f, 11, 100, 1, false, 1);
	assert_int_equal(correlate__serving(&f->c, 11, &got), LOG_SERVING_ONE);
	assert_ptr_equal(got, a);
	/* answered but not finished: its response is being written, still its lines */
	correlate__answered(&f->c, a, 11);
	assert_int_equal(correlate__serving(&f->c, 11, &got), LOG_SERVING_ONE);
	assert_ptr_equal(got, a);
	assert_int_equal(correlate__serving(&f->c, 12, &got), LOG_SERVING_NONE);
	/* two at once (pipelined): no guess */
	b = request(f, 11, 100, 2, false, 2);
	assert_int_equal(correlate__serving(&f->c, 11, &got), LOG_SERVING_SEVERAL);
	correlate__remove(&f->c, a);
	assert_int_equal(correlate__serving(&f->c, 11, &got), LOG_SERVING_ONE);
	assert_ptr_equal(got, b);
	/* a thread that hands its requests to others: what it logs is not theirs */
	correlate__answered(&f->c, b, 13);
	assert_int_equal(correlate__serving(&f->c, 11, &got), LOG_SERVING_SEVERAL);
	/* an event loop: one request in flight proves nothing */
	a = request(f, 14, 300, 3, true, 3);
	correlate__thread_waits_many(&f->c, 14);
	assert_int_equal(correlate__serving(&f->c, 14, &got), LOG_SERVING_SEVERAL);
}

static void test_handoff(void **state)
{
	struct fixture *f = *state;
	struct parent_match m;
	struct inflight *a;

	/* thread 11 reads, thread 12 answers: 11 is a dispatcher, not the server */
	a = request(f, 11, 100, 1, false, 1);
	correlate__answered(&f->c, a, 12);
	correlate__remove(&f->c, a);
	request(f, 11, 101, 2, false, 2);
	m = call(f, 11, 0, 3);
	expect(&m, PARENT_AMBIGUOUS, REASON_HANDOFF, NULL);
}

static void test_adoption_bounds(void **state)
{
	struct fixture *f = *state;
	struct parent_match m;
	struct inflight *a;

	a = request(f, 11, 100, 1, false, 10);
	m = call(f, 11, 0, 10 + ADOPT_MAX_AGE_NS / SEC);
	expect(&m, PARENT_THREAD, REASON_NONE, a);
	m = call(f, 11, 0, 11 + ADOPT_MAX_AGE_NS / SEC);
	expect(&m, PARENT_AMBIGUOUS, REASON_ADOPTION_LIMIT, NULL);
	a->adopted = ADOPT_MAX_CALLS;
	m = call(f, 11, 0, 11);
	expect(&m, PARENT_AMBIGUOUS, REASON_ADOPTION_LIMIT, NULL);
	/* exact matches are not bounded */
	m = call(f, 11, 1, 11 + ADOPT_MAX_AGE_NS / SEC);
	expect(&m, PARENT_EXACT, REASON_NONE, a);
}

static void test_exact_match(void **state)
{
	struct fixture *f = *state;
	struct parent_match m;
	struct inflight *a, *b;

	a = request(f, 11, 100, 1, true, 1);
	m = call(f, 12, 1, 2);
	expect(&m, PARENT_EXACT, REASON_NONE, a);
	m = call(f, 12, 7, 2);
	expect(&m, PARENT_NONE, REASON_TRACE_NOT_IN_FLIGHT, NULL);
	/* two requests of one trace (a retry, a fan-in): only a thread that is evidence picks */
	b = request(f, 13, 101, 1, false, 1);
	m = call(f, 13, 1, 2);
	expect(&m, PARENT_EXACT, REASON_NONE, b);
	m = call(f, 11, 1, 2);
	expect(&m, PARENT_AMBIGUOUS, REASON_SEVERAL_OF_TRACE, NULL);
	assert_int_equal(m.ntotal, 2);
	m = call(f, 14, 1, 2);
	expect(&m, PARENT_AMBIGUOUS, REASON_SEVERAL_OF_TRACE, NULL);
}

static void test_ancestry(void **state)
{
	struct fixture *f = *state;
	struct parent_match m;
	struct inflight *a;

	a = request(f, 11, 100, 1, false, 10);
	/* a process the request thread forked (a CGI, a subprocess), and its child */
	correlate__thread_created(&f->c, 11, 20, true, 11 * SEC);
	correlate__thread_created(&f->c, 20, 30, true, 12 * SEC);
	m = call(f, 30, 0, 13);
	expect(&m, PARENT_ANCESTOR, REASON_NONE, a);
	/* a thread it created (a pool growing during the request) is no evidence */
	correlate__thread_created(&f->c, 11, 40, false, 11 * SEC);
	m = call(f, 40, 0, 13);
	expect(&m, PARENT_AMBIGUOUS, REASON_THREAD_CREATED, NULL);
	/* a process forked before the request arrived (a pre-fork worker) is not serving it */
	correlate__thread_created(&f->c, 11, 50, true, 5 * SEC);
	m = call(f, 50, 0, 13);
	expect(&m, PARENT_NONE, REASON_OTHER_THREADS, NULL);
	/* the chain ends where a task exited */
	correlate__thread_exited(&f->c, 20);
	m = call(f, 30, 0, 13);
	expect(&m, PARENT_NONE, REASON_OTHER_THREADS, NULL);
	/* a fork by an event loop thread inherits its doubt */
	request(f, 60, 101, 2, true, 10);
	correlate__thread_created(&f->c, 60, 61, true, 11 * SEC);
	m = call(f, 61, 0, 13);
	expect(&m, PARENT_AMBIGUOUS, REASON_NONBLOCKING, NULL);
}

/* Apache, Ruby, PHP: non-blocking sockets, but one request per thread, waited on with poll
 * on one descriptor. An event loop is seen waiting on many, and stays one. */
static void test_nonblocking_thread_that_waits_on_one_fd(void **state)
{
	struct fixture *f = *state;
	struct parent_match m;
	struct inflight *a;

	a = request(f, 11, 100, 1, true, 1);
	assert_true(correlate__wait_matters(&f->c, 11));
	m = call_waiting_one_fd(f, 11, 2);
	expect(&m, PARENT_THREAD, REASON_NONE, a);
	/* another thread waiting on one fd says nothing about thread 11's requests */
	m = call_waiting_one_fd(f, 12, 2);
	expect(&m, PARENT_NONE, REASON_OTHER_THREADS, NULL);
	correlate__thread_waits_many(&f->c, 11);
	assert_false(correlate__wait_matters(&f->c, 11));
	m = call_waiting_one_fd(f, 11, 3);
	expect(&m, PARENT_AMBIGUOUS, REASON_NONBLOCKING, NULL);
}

static void test_thread_wait_parse(void **state)
{
	(void)state;
	assert_int_equal(thread_wait_parse("running"), THREAD_WAIT_UNKNOWN);
	assert_int_equal(thread_wait_parse("-1 0x7ffd 0x4011"), THREAD_WAIT_UNKNOWN);
#ifdef __x86_64__
	/* x86-64: ppoll(fds, 1, ...), poll(fds, 3, ...), epoll_wait, futex */
	assert_int_equal(thread_wait_parse("271 0x7ffc1000 0x1 0x7ffc2000 0x0 0x8 0x0 0x7ffc 0x4"),
			 THREAD_WAIT_ONE_FD);
	assert_int_equal(thread_wait_parse("7 0x7ffc1000 0x3 0x3e8 0x0 0x0 0x0 0x7ffc 0x4"),
			 THREAD_WAIT_MANY);
	assert_int_equal(thread_wait_parse("232 0x4 0x7ffc1000 0x400 0xffffffff 0x0 0x0 0x1 0x2"),
			 THREAD_WAIT_MANY);
	assert_int_equal(thread_wait_parse("202 0x7f001000 0x80 0x0 0x0 0x0 0x0 0x1 0x2"),
			 THREAD_WAIT_UNKNOWN);
#endif
	assert_int_equal(thread_wait_sample("/nonexistent", 1, 1), THREAD_WAIT_UNKNOWN);
}

static void test_names(void **state)
{
	(void)state;
	assert_null(parent_reason_name(REASON_NONE));
	for (int r = REASON_NONE + 1; r < REASON__COUNT; r++)
		assert_non_null(parent_reason_name((enum parent_reason)r));
	assert_string_equal(parent_reason_name(REASON_NONBLOCKING), "nonblocking_thread");
	assert_true(parent_reason_outside_request(REASON_NO_REQUEST));
	assert_true(parent_reason_outside_request(REASON_AFTER_RESPONSE));
	assert_false(parent_reason_outside_request(REASON_OTHER_THREADS));
	assert_string_equal(parent_confidence_name(PARENT_AMBIGUOUS), "ambiguous");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_blocking_thread_per_request, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_event_loop_is_no_evidence, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pipelined_and_interleaved, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_handoff, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_serving_for_logs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_adoption_bounds, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_exact_match, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ancestry, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_nonblocking_thread_that_waits_on_one_fd, setup,
					    teardown),
	    cmocka_unit_test(test_thread_wait_parse),
	    cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
