// SPDX-License-Identifier: BSD-2-Clause
/* The tracker fed with canned ring-buffer records, as the BPF programs write them: streams,
 * gaps, pipelining, 1xx, close mid-request, same-host linking, and the association rules
 * on whole exchanges. No kernel: the records are built here, /proc is a directory that
 * does not exist (service names fall back to comm). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hoptrace/events.h"
#include "sink.h"
#include "span.h"
#include "stats.h"
#include "tracker.h"

#define MAX_SPANS 16
#define MS 1000000ULL

struct collect {
	struct sink sink;
	struct span *spans[MAX_SPANS];
	unsigned n;
};

static void collect_emit(struct sink *sk, struct span *s)
{
	struct collect *c = (struct collect *)sk;

	assert_true(c->n < MAX_SPANS);
	c->spans[c->n++] = s;
}

struct fixture {
	struct collect out;
	struct tracker t;
	uint64_t pos[8][2]; /* per connection (cookie 1..7), per direction */
	uint64_t now;
};

static int setup(void **state)
{
	struct fixture *f = test_calloc(1, sizeof(*f));
	struct tracker_options opt = {.idle_timeout_ns = 60000 * MS,
				      .request_timeout_ns = 60000 * MS,
				      .proc_root = "/nonexistent-proc"};

	f->out.sink.name = "collect";
	f->out.sink.emit = collect_emit;
	assert_int_equal(tracker__init(&f->t, &f->out.sink, &opt), 0);
	f->now = 1000 * MS;
	memset(&g_stats, 0, sizeof(g_stats));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	tracker__shutdown(&f->t);
	for (unsigned i = 0; i < f->out.n; i++)
		span_free(f->out.spans[i]);
	test_free(f);
	return 0;
}

/* One end of a connection of process tgid: the server on 127.0.0.1:8080 (accepted side),
 * or a client; the client's port is 40000 + peer, peer naming the connection. */
struct endpoint {
	uint64_t cookie; /* 1..7 */
	uint32_t tgid;
	bool server;
	uint16_t peer;
};

static void fill_tuple(struct ht_tuple *tp, const struct endpoint *e)
{
	uint16_t client_port = (uint16_t)(40000 + e->peer);

	memset(tp, 0, sizeof(*tp));
	tp->family = 10; /* AF_INET6, IPv4-mapped */
	for (int i = 0; i < 2; i++) {
		uint8_t *a = i ? tp->raddr : tp->laddr;

		a[10] = a[11] = 0xff;
		a[12] = 127;
		a[15] = 1;
	}
	tp->lport = e->server ? 8080 : client_port;
	tp->rport = e->server ? client_port : 8080;
}

/* One I/O of bytes on e in direction dir, by tid, now; flags added to the record's. */
static void io(struct fixture *f, const struct endpoint *e, uint8_t dir, uint32_t tid,
	       const char *bytes, size_t len, uint16_t flags)
{
	size_t sz = sizeof(struct ht_data_event) + len;
	struct ht_data_event *ev = calloc(1, sz);
	uint64_t *pos = &f->pos[e->cookie & 7][dir];

	assert_non_null(ev);
	ev->kind = HT_EV_DATA;
	ev->tgid = e->tgid;
	ev->tid = tid;
	ev->ts_ns = f->now;
	ev->cookie = e->cookie;
	ev->pos = *pos;
	ev->proc_start_ns = 1;
	fill_tuple(&ev->tuple, e);
	ev->fd = 5;
	ev->len = (uint32_t)len;
	ev->cap_len = (uint32_t)len;
	ev->flags = flags;
	ev->dir = dir;
	strcpy(ev->comm, e->server ? "srv" : "cli");
	memcpy(ev + 1, bytes, len);
	*pos += len;
	f->now += MS;
	tracker__handle_record(&f->t, ev, sz);
	free(ev);
}

static void send_str(struct fixture *f, const struct endpoint *e, uint32_t tid, const char *s,
		     uint16_t flags)
{
	io(f, e, HT_DIR_EGRESS, tid, s, strlen(s), flags);
}

static void recv_str(struct fixture *f, const struct endpoint *e, uint32_t tid, const char *s,
		     uint16_t flags)
{
	io(f, e, HT_DIR_INGRESS, tid, s, strlen(s), flags);
}

/* Bytes the record says went by, of which none were copied (a body). */
static void gap(struct fixture *f, const struct endpoint *e, uint8_t dir, uint64_t len)
{
	f->pos[e->cookie & 7][dir] += len;
}

static void close_conn(struct fixture *f, const struct endpoint *e)
{
	struct ht_close_event ev = {.kind = HT_EV_CLOSE,
				    .tgid = e->tgid,
				    .ts_ns = f->now,
				    .cookie = e->cookie,
				    .rd_pos = f->pos[e->cookie & 7][0],
				    .wr_pos = f->pos[e->cookie & 7][1],
				    .new_state = 7};

	tracker__handle_record(&f->t, &ev, sizeof(ev));
}

static const char *attr(const struct span *s, const char *key)
{
	const struct span_attr *a = span_find_attr(s, key);

	return a && a->type == SPAN_ATTR_STR ? span_attr_str(s, a) : NULL;
}

static int64_t int_attr(const struct span *s, const char *key)
{
	const struct span_attr *a = span_find_attr(s, key);

	return a && a->type == SPAN_ATTR_INT ? a->ival : -1;
}

static struct span *find(struct fixture *f, uint8_t kind, const char *name)
{
	for (unsigned i = 0; i < f->out.n; i++)
		if (f->out.spans[i]->kind == kind && strcmp(f->out.spans[i]->name, name) == 0)
			return f->out.spans[i];
	fail_msg("no %s span named %s", kind == SPAN_KIND_SERVER ? "server" : "client", name);
	return NULL;
}

#define TP_IN "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
static const struct endpoint srv = {.cookie = 1, .tgid = 100, .server = true, .peer = 1};
static const struct endpoint out = {.cookie = 2, .tgid = 100, .server = false, .peer = 2};

/* The service (process 100) serves GET /work on thread tid, calling GET /leaf while doing
 * so, the incoming request read with read_flags. */
static void serve_with_call(struct fixture *f, uint32_t tid, uint16_t read_flags, uint32_t call_tid)
{
	recv_str(f, &srv, tid, "GET /work HTTP/1.1\r\nHost: a\r\n" TP_IN "\r\n", read_flags);
	send_str(f, &out, call_tid, "GET /leaf HTTP/1.1\r\nHost: b\r\n\r\n", read_flags);
	recv_str(f, &out, call_tid, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", read_flags);
	send_str(f, &srv, tid, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", read_flags);
}

static void test_thread_per_request_parents_and_audits(void **state)
{
	struct fixture *f = *state;
	struct span *server, *client;

	serve_with_call(f, 7, 0, 7);
	assert_int_equal(f->out.n, 2);
	server = find(f, SPAN_KIND_SERVER, "GET /work");
	client = find(f, SPAN_KIND_CLIENT, "GET /leaf");
	assert_memory_equal(client->trace_id, server->trace_id, 16);
	assert_memory_equal(client->parent_span_id, server->span_id, 8);
	assert_string_equal(attr(client, "hoptrace.parent.confidence"), "thread");
	assert_null(attr(client, "hoptrace.parent.reason"));
	assert_string_equal(attr(client, "hoptrace.propagation"), "dropped");
	assert_int_equal(int_attr(server, "http.response.status_code"), 200);
}

/* An event loop: the same sequence, read from non-blocking sockets. */
static void test_event_loop_call_is_not_parented_nor_blamed(void **state)
{
	struct fixture *f = *state;
	struct span *server, *client;

	serve_with_call(f, 7, HT_DATA_NONBLOCK, 7);
	server = find(f, SPAN_KIND_SERVER, "GET /work");
	client = find(f, SPAN_KIND_CLIENT, "GET /leaf");
	assert_memory_not_equal(client->trace_id, server->trace_id, 16);
	assert_string_equal(attr(client, "hoptrace.parent.confidence"), "ambiguous");
	assert_string_equal(attr(client, "hoptrace.parent.reason"), "nonblocking_thread");
	assert_null(attr(client, "hoptrace.propagation"));
	assert_string_equal(attr(client, "hoptrace.propagation.unclassified"),
			    "nonblocking_thread");
	/* no link either: the call may belong to no request at all (a timer) */
	assert_int_equal(client->nlinks, 0);
}

/* A call after the response was written belongs to no request. */
static void test_call_after_response(void **state)
{
	struct fixture *f = *state;
	struct span *client;

	recv_str(f, &srv, 7, "GET /work HTTP/1.1\r\nHost: a\r\n" TP_IN "\r\n", 0);
	send_str(f, &srv, 7, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0);
	/* the body is still being written: the request is in flight, but answered */
	send_str(f, &out, 7, "GET /leaf HTTP/1.1\r\nHost: b\r\n\r\n", 0);
	recv_str(f, &out, 7, "HTTP/1.1 204 No Content\r\n\r\n", 0);
	send_str(f, &srv, 7, "0\r\n\r\n", 0);
	client = find(f, SPAN_KIND_CLIENT, "GET /leaf");
	assert_string_equal(attr(client, "hoptrace.parent.reason"), "after_response");
	assert_string_equal(attr(client, "hoptrace.propagation.unclassified"), "after_response");
	find(f, SPAN_KIND_SERVER, "GET /work");
}

static void test_forwarded_header_is_exact_even_on_an_event_loop(void **state)
{
	struct fixture *f = *state;
	struct span *server, *client;

	recv_str(f, &srv, 7, "GET /work HTTP/1.1\r\nHost: a\r\n" TP_IN "\r\n", HT_DATA_NONBLOCK);
	send_str(f, &out, 7, "GET /leaf HTTP/1.1\r\nHost: b\r\n" TP_IN "\r\n", HT_DATA_NONBLOCK);
	recv_str(f, &out, 7, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", HT_DATA_NONBLOCK);
	send_str(f, &srv, 7, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", HT_DATA_NONBLOCK);
	server = find(f, SPAN_KIND_SERVER, "GET /work");
	client = find(f, SPAN_KIND_CLIENT, "GET /leaf");
	assert_memory_equal(client->parent_span_id, server->span_id, 8);
	assert_string_equal(attr(client, "hoptrace.parent.confidence"), "exact");
	assert_string_equal(attr(client, "hoptrace.propagation"), "forwarded");
}

/* Go's server reads one byte ahead while a handler runs, then the rest of the request. */
static void test_request_line_split_across_reads(void **state)
{
	static const char req[] = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
	struct fixture *f = *state;

	recv_str(f, &srv, 7, req, 0);
	send_str(f, &srv, 7, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0);
	for (size_t i = 0; i < sizeof(req) - 1; i++)
		io(f, &srv, HT_DIR_INGRESS, 7, req + i, 1, 0);
	send_str(f, &srv, 7, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(f->out.n, 2);
	assert_int_equal(int_attr(f->out.spans[1], "http.response.status_code"), 404);
}

static void test_pipelined_requests_and_interim_responses(void **state)
{
	struct fixture *f = *state;

	recv_str(
	    f, &srv, 7,
	    "POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", 0);
	send_str(f, &srv, 7, "HTTP/1.1 100 Continue\r\n\r\n", 0);
	recv_str(f, &srv, 7,
		 "okGET /b HTTP/1.1\r\nHost: a\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n", 0);
	send_str(f, &srv, 7,
		 "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
		 "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		 0);
	send_str(f, &srv, 7, "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(f->out.n, 3);
	assert_int_equal(
	    int_attr(find(f, SPAN_KIND_SERVER, "POST /up"), "http.response.status_code"), 201);
	assert_int_equal(int_attr(find(f, SPAN_KIND_SERVER, "GET /b"), "http.response.status_code"),
			 200);
	assert_int_equal(find(f, SPAN_KIND_SERVER, "GET /c")->status, SPAN_STATUS_ERROR);
}

static void test_gap_in_headers_and_body_gaps(void **state)
{
	struct fixture *f = *state;

	/* a body whose middle was not copied: positions carry over the gap */
	recv_str(f, &srv, 7, "POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n", 0);
	gap(f, &srv, HT_DIR_INGRESS, 100000);
	send_str(f, &srv, 7, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(f->out.n, 1);
	/* bytes missing inside a header block: that request is lost, and counted */
	recv_str(f, &srv, 7, "GET /x HTTP/1.1\r\n", 0);
	gap(f, &srv, HT_DIR_INGRESS, 10);
	recv_str(f, &srv, 7, "Host: a\r\n\r\n", 0);
	assert_true(g_stats.drop_gap_in_headers >= 1);
}

static void test_close_mid_request(void **state)
{
	struct fixture *f = *state;
	struct span *s;

	recv_str(f, &srv, 7, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n", 0);
	close_conn(f, &srv);
	assert_int_equal(f->out.n, 1);
	s = f->out.spans[0];
	assert_int_equal(s->status, SPAN_STATUS_ERROR);
	assert_non_null(strstr(s->status_message, "closed"));
}

/* Both ends of a hop on this host: the client of process 200 calls the server of 100. */
static void test_same_host_link(void **state)
{
	static const struct endpoint caller = {
	    .cookie = 3, .tgid = 200, .server = false, .peer = 1};
	struct fixture *f = *state;
	struct span *server, *client;

	send_str(f, &caller, 9, "GET /work HTTP/1.1\r\nHost: a\r\n\r\n", 0);
	recv_str(f, &srv, 7, "GET /work HTTP/1.1\r\nHost: a\r\n\r\n", 0);
	send_str(f, &srv, 7, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0);
	recv_str(f, &caller, 9, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0);
	server = find(f, SPAN_KIND_SERVER, "GET /work");
	client = find(f, SPAN_KIND_CLIENT, "GET /work");
	assert_string_equal(attr(server, "hoptrace.caller.service"), "cli");
	assert_string_equal(attr(client, "hoptrace.callee.service"), "srv");
}

/* Send events are stamped when the send returns; on loopback the receiver's read can be
 * stamped first. The spans of a same-host hop still nest. */
static void test_same_host_hop_nests_when_stamps_cross(void **state)
{
	static const struct endpoint caller = {
	    .cookie = 3, .tgid = 200, .server = false, .peer = 1};
	struct fixture *f = *state;
	struct span *server, *client;

	recv_str(f, &srv, 7, "GET /work HTTP/1.1\r\nHost: a\r\n\r\n", 0);
	send_str(f, &caller, 9, "GET /work HTTP/1.1\r\nHost: a\r\n\r\n", 0);
	recv_str(f, &caller, 9, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0);
	send_str(f, &srv, 7, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0);
	server = find(f, SPAN_KIND_SERVER, "GET /work");
	client = find(f, SPAN_KIND_CLIENT, "GET /work");
	assert_true(client->start_unix_ns <= server->start_unix_ns);
	assert_true(server->start_unix_ns <= server->end_unix_ns);
	assert_true(server->end_unix_ns <= client->end_unix_ns);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_thread_per_request_parents_and_audits, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_event_loop_call_is_not_parented_nor_blamed, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_call_after_response, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_forwarded_header_is_exact_even_on_an_event_loop,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_request_line_split_across_reads, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pipelined_requests_and_interim_responses, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_gap_in_headers_and_body_gaps, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_mid_request, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_same_host_link, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_same_host_hop_nests_when_stamps_cross, setup,
					    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
