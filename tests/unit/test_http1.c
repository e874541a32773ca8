// SPDX-License-Identifier: BSD-2-Clause
/*
 * Unit tests for the incremental HTTP/1.x parser. Each test feeds a stream the way the agent
 * does (captured heads of I/Os, gaps for what was not captured, end of stream) and compares
 * the callbacks with a transcript: "H <method|status> <target> @<start_tag>" for a head,
 * "C @<end_tag>" for a complete message, "E <error>" for an error.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"

#define MAX_HEADS 16
/* a string literal and its length, NUL bytes included */
#define S(lit) lit, sizeof(lit) - 1
#define LOG_SIZE 4096
#define STR_SIZE 128

/* Copy of the fields of one reported head, since its strings die with on_head. */
struct head_copy {
	struct http1_head h;
	char method[STR_SIZE];
	char target[STR_SIZE];
	char host[STR_SIZE];
	char user_agent[STR_SIZE];
	char traceparent[STR_SIZE];
	char tracestate[HTTP1_MAX_TRACESTATE_HDRS][STR_SIZE];
};

struct recorder {
	struct http1_parser p;
	char log[LOG_SIZE];
	size_t log_len;
	struct head_copy heads[MAX_HEADS];
	unsigned nheads;
	/* rule returned for the n-th head; AUTO beyond */
	enum http1_body_rule rules[MAX_HEADS];
};

static void logf_(struct recorder *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void logf_(struct recorder *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(r->log + r->log_len, LOG_SIZE - r->log_len, fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < LOG_SIZE - r->log_len);
	r->log_len += (size_t)n;
}

static void copy_str(char *dst, struct http1_str s)
{
	assert_true(s.len < STR_SIZE);
	if (s.len)
		memcpy(dst, s.p, s.len);
	dst[s.len] = '\0';
}

static enum http1_body_rule on_head(void *ctx, const struct http1_head *h)
{
	struct recorder *r = ctx;
	struct head_copy *c = &r->heads[r->nheads % MAX_HEADS];
	enum http1_body_rule rule = r->nheads < MAX_HEADS ? r->rules[r->nheads] : HTTP1_BODY_AUTO;

	memset(c, 0, sizeof(*c));
	c->h = *h;
	copy_str(c->method, h->method);
	copy_str(c->target, h->target);
	copy_str(c->host, h->host);
	copy_str(c->user_agent, h->user_agent);
	copy_str(c->traceparent, h->traceparent);
	assert_true(h->tracestate_count <= HTTP1_MAX_TRACESTATE_HDRS);
	for (unsigned i = 0; i < h->tracestate_count; i++)
		copy_str(c->tracestate[i], h->tracestate[i]);
	r->nheads++;
	if (h->kind == HTTP1_REQUEST)
		logf_(r, "H %s %s @%" PRIu64 "\n", c->method, c->target, h->start_tag);
	else
		logf_(r, "H %u @%" PRIu64 "\n", h->status, h->start_tag);
	return rule;
}

static void on_complete(void *ctx, enum http1_kind kind, uint64_t end_tag)
{
	struct recorder *r = ctx;

	assert_int_equal(kind, r->p.kind);
	logf_(r, "C @%" PRIu64 "\n", end_tag);
}

static const char *error_name(enum http1_error err)
{
	switch (err) {
	case HTTP1_ERR_BAD_START_LINE:
		return "BAD_START_LINE";
	case HTTP1_ERR_BAD_HEADER:
		return "BAD_HEADER";
	case HTTP1_ERR_HEADER_TOO_LARGE:
		return "HEADER_TOO_LARGE";
	case HTTP1_ERR_BAD_CHUNK:
		return "BAD_CHUNK";
	case HTTP1_ERR_GAP_IN_HEADERS:
		return "GAP_IN_HEADERS";
	case HTTP1_ERR_NOT_HTTP:
		return "NOT_HTTP";
	case HTTP1_ERR_NO_MEMORY:
		return "NO_MEMORY";
	}
	fail_msg("unknown error %d", (int)err);
	return "?";
}

static void on_error(void *ctx, enum http1_error err)
{
	struct recorder *r = ctx;

	logf_(r, "E %s\n", error_name(err));
}

static const struct http1_callbacks callbacks = {
    .on_head = on_head,
    .on_complete = on_complete,
    .on_error = on_error,
};

static struct recorder *rec_new(enum http1_kind kind)
{
	struct recorder *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	http1_parser_init(&r->p, kind, &callbacks, r);
	return r;
}

static void rec_free(struct recorder *r)
{
	http1_parser_free(&r->p);
	assert_null(r->p.hdr);
	free(r);
}

/* Feed a copy of exactly len bytes on the heap, so ASan sees any read past the end. */
static void feed_mem(struct recorder *r, const void *data, size_t len, bool io_start, uint64_t tag)
{
	uint8_t *copy = malloc(len ? len : 1);

	assert_non_null(copy);
	memcpy(copy, data, len);
	http1_parser_feed(&r->p, copy, len, io_start, tag);
	free(copy);
}

/* One whole I/O, captured completely. */
static void io(struct recorder *r, const char *s, uint64_t tag)
{
	feed_mem(r, s, strlen(s), true, tag);
}

/*
 * One I/O of which the BPF side captured the first head_len bytes and the last tail_len:
 * feed(head, io_start) + gap(middle) + feed(tail, io_start = false).
 */
static void io_cut(struct recorder *r, const char *s, size_t head_len, size_t tail_len,
		   uint64_t tag)
{
	size_t len = strlen(s);

	assert_true(head_len + tail_len <= len);
	feed_mem(r, s, head_len, true, tag);
	http1_parser_gap(&r->p, len - head_len - tail_len, tag);
	feed_mem(r, s + len - tail_len, tail_len, false, tag);
}

static void expect_log(struct recorder *r, const char *want)
{
	if (strcmp(r->log, want) != 0)
		fail_msg("transcript differs\n--- want ---\n%s--- got ---\n%s", want, r->log);
}

static void clear_log(struct recorder *r)
{
	r->log_len = 0;
	r->log[0] = '\0';
}

/* Parse s in one feed and return the transcript, for comparison with split feeds. */
static void whole_transcript(enum http1_kind kind, const char *s, char *out)
{
	struct recorder *r = rec_new(kind);

	io(r, s, 1);
	http1_parser_eof(&r->p, 9);
	strcpy(out, r->log);
	rec_free(r);
}

/* ---- basic messages -------------------------------------------------------------------- */

static const char simple_get[] = "GET /api/v1/items?id=7 HTTP/1.1\r\n"
				 "Host: example.com:8080\r\n"
				 "User-Agent: curl/8.5.0\r\n"
				 "Accept: */*\r\n"
				 "\r\n";

static void test_simple_get(void **state)
{
	struct recorder *r = rec_new(HTTP1_REQUEST);
	struct http1_head *h = &r->heads[0].h;

	(void)state;
	io(r, simple_get, 10);
	expect_log(r, "H GET /api/v1/items?id=7 @10\nC @10\n");
	assert_int_equal(h->kind, HTTP1_REQUEST);
	assert_int_equal(h->version_minor, 1);
	assert_string_equal(r->heads[0].host, "example.com:8080");
	assert_string_equal(r->heads[0].user_agent, "curl/8.5.0");
	assert_int_equal(h->content_length, -1);
	assert_false(h->chunked);
	assert_false(h->conn_close);
	assert_false(h->expect_continue);
	assert_false(h->upgrade);
	assert_int_equal(h->traceparent_count, 0);
	assert_int_equal(h->tracestate_count, 0);
	assert_int_equal(h->header_bytes, strlen(simple_get));
	assert_false(http1_parser_in_message(&r->p));
	assert_null(r->p.hdr);
	rec_free(r);
}

static void test_simple_response(void **state)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\n"
				   "Content-Type: text/plain\r\n"
				   "Content-Length: 5\r\n"
				   "\r\n"
				   "hello";
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(r, resp, 3);
	expect_log(r, "H 200 @3\nC @3\n");
	assert_int_equal(r->heads[0].h.content_length, 5);
	assert_int_equal(r->heads[0].h.header_bytes, strlen(resp) - 5);
	assert_int_equal(r->heads[0].h.kind, HTTP1_RESPONSE);
	rec_free(r);
}

static void test_response_body_in_later_ios(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(r, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", 1);
	assert_true(http1_parser_in_message(&r->p));
	io(r, "01234", 2);
	io(r, "56789", 3);
	io(r, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 4);
	expect_log(r, "H 200 @1\nC @3\nH 404 @4\nC @4\n");
	rec_free(r);
}

static void test_bare_lf_and_leading_empty_lines(void **state)
{
	struct recorder *r = rec_new(HTTP1_REQUEST);

	(void)state;
	io(r, "\r\n\nPOST /x HTTP/1.1\nHost: a\nContent-Length: 2\n\nok", 1);
	/* an extra CRLF after a body, as old clients send (RFC 9112 2.2) */
	io(r, "\r\nGET /y HTTP/1.1\r\nHost: b\n\r\n", 2);
	expect_log(r, "H POST /x @1\nC @1\nH GET /y @2\nC @2\n");
	assert_string_equal(r->heads[0].host, "a");
	assert_string_equal(r->heads[1].host, "b");
	rec_free(r);
}

static void test_status_line_variants(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	/* no reason phrase, with and without its SP */
	io(r, "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 1);
	io(r, "HTTP/1.1 201 \r\nContent-Length: 0\r\n\r\n", 2);
	io(r, "HTTP/1.1 500 Internal \tServer Error\r\nContent-Length: 0\r\n\r\n", 3);
	expect_log(r, "H 200 @1\nC @1\nH 201 @2\nC @2\nH 500 @3\nC @3\n");
	rec_free(r);
}

/* ---- split heads ----------------------------------------------------------------------- */

static const char split_req[] =
    "POST /upload HTTP/1.1\r\n"
    "Host: h\r\n"
    "traceparent: 00-12345678901234567890123456789012-1234567890123456-01\r\n"
    "tracestate: a=1\r\n"
    "Content-Length: 4\r\n"
    "\r\n"
    "body"
    "GET /next HTTP/1.1\r\n"
    "\r\n";

static void check_split_transcript(struct recorder *r, const char *want)
{
	expect_log(r, want);
	assert_string_equal(r->heads[0].traceparent,
			    "00-12345678901234567890123456789012-1234567890123456-01");
	assert_string_equal(r->heads[0].tracestate[0], "a=1");
	assert_string_equal(r->heads[0].host, "h");
}

/* Split at every byte boundary, as two reads and as two pieces of one capture. */
static void test_split_every_boundary(void **state)
{
	size_t len = strlen(split_req);
	char want[LOG_SIZE];

	(void)state;
	whole_transcript(HTTP1_REQUEST, split_req, want);
	assert_string_equal(want, "H POST /upload @1\nC @1\nH GET /next @1\nC @1\n");
	for (int io_start = 0; io_start <= 1; io_start++) {
		for (size_t k = 0; k <= len; k++) {
			struct recorder *r = rec_new(HTTP1_REQUEST);

			feed_mem(r, split_req, k, true, 1);
			feed_mem(r, split_req + k, len - k, io_start, 1);
			http1_parser_eof(&r->p, 9);
			check_split_transcript(r, want);
			rec_free(r);
		}
	}
}

static void test_split_three_ways(void **state)
{
	size_t len = strlen(split_req);
	char want[LOG_SIZE];

	(void)state;
	whole_transcript(HTTP1_REQUEST, split_req, want);
	for (size_t i = 0; i <= len; i++) {
		for (size_t j = i; j <= len; j += 3) {
			struct recorder *r = rec_new(HTTP1_REQUEST);

			feed_mem(r, split_req, i, true, 1);
			feed_mem(r, split_req + i, j - i, true, 1);
			feed_mem(r, split_req + j, len - j, true, 1);
			http1_parser_eof(&r->p, 9);
			check_split_transcript(r, want);
			rec_free(r);
		}
	}
}

static void test_byte_by_byte_tags(void **state)
{
	struct recorder *r = rec_new(HTTP1_REQUEST);
	size_t len = strlen(split_req);
	size_t second = (size_t)(strstr(split_req, "GET /next") - split_req);
	char want[256];

	(void)state;
	for (size_t i = 0; i < len; i++)
		feed_mem(r, split_req + i, 1, true, 100 + i);
	/* start_tag: feed of the first byte; end_tag: feed of the last byte */
	snprintf(want, sizeof(want), "H POST /upload @100\nC @%zu\nH GET /next @%zu\nC @%zu\n",
		 100 + second - 1, 100 + second, 100 + len - 1);
	expect_log(r, want);
	rec_free(r);
}

/* A write of just "GET" must not be taken for garbage: it may be a start line's beginning. */
static void test_start_line_in_tiny_writes(void **state)
{
	struct recorder *r = rec_new(HTTP1_REQUEST);

	(void)state;
	io(r, "GET", 1);
	assert_true(http1_parser_in_message(&r->p));
	io(r, " /a HTTP/1.1\r\n\r\n", 2);
	io(r, "H", 3);
	io(r, "EAD / HTTP/1.1\r\n\r\n", 4);
	/* a prefix that turns out not to be one */
	io(r, "GE", 5);
	io(r, "Tx\r\n", 6);
	expect_log(r, "H GET /a @1\nC @2\nH HEAD / @3\nC @4\nE NOT_HTTP\n");
	rec_free(r);
}

/* A head split over feeds is buffered, and the buffer is released once the head is parsed. */
static void test_buffer_released_when_idle(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(r, "HTTP/1.1 200 OK\r\nContent-", 1);
	assert_non_null(r->p.hdr);
	io(r, "Length: 3\r\n\r\nab", 2);
	assert_null(r->p.hdr);
	io(r, "c", 3);
	expect_log(r, "H 200 @1\nC @3\n");
	io(r, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", 4);
	assert_null(r->p.hdr);
	rec_free(r);
}

/* ---- sequences ------------------------------------------------------------------------- */

static void test_keep_alive_sequence(void **state)
{
	struct recorder *req = rec_new(HTTP1_REQUEST);
	struct recorder *resp = rec_new(HTTP1_RESPONSE);

	(void)state;
	for (uint64_t i = 0; i < 3; i++) {
		io(req, "GET /ping HTTP/1.1\r\nHost: a\r\n\r\n", 10 * i + 1);
		io(resp, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong", 10 * i + 2);
	}
	expect_log(req, "H GET /ping @1\nC @1\nH GET /ping @11\nC @11\nH GET /ping @21\nC @21\n");
	expect_log(resp, "H 200 @2\nC @2\nH 200 @12\nC @12\nH 200 @22\nC @22\n");
	for (int i = 0; i < 3; i++)
		assert_false(resp->heads[i].h.conn_close);
	rec_free(req);
	rec_free(resp);
}

static void test_pipelined_requests(void **state)
{
	static const char reqs[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
				   "POST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
				   "PUT /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
				   "3\r\nxyz\r\n0\r\n\r\n"
				   "DELETE /4 HTTP/1.1\r\n\r\n"
				   "GET /5 HTTP/1.1\r\n";
	struct recorder *r = rec_new(HTTP1_REQUEST);

	(void)state;
	io(r, reqs, 1);
	io(r, "\r\n", 2);
	expect_log(r, "H GET /1 @1\nC @1\nH POST /2 @1\nC @1\nH PUT /3 @1\nC @1\n"
		      "H DELETE /4 @1\nC @1\nH GET /5 @1\nC @2\n");
	rec_free(r);
}

static void test_pipelined_responses_end_and_next_head(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(r, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc", 1);
	io(r, "defHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nhi", 2);
	expect_log(r, "H 200 @1\nC @2\nH 201 @2\nC @2\n");
	rec_free(r);
}

static void test_continue_then_final(void **state)
{
	struct recorder *req = rec_new(HTTP1_REQUEST);
	struct recorder *resp = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(req, "PUT /f HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n", 1);
	io(resp, "HTTP/1.1 100 Continue\r\n\r\n", 2);
	io(req, "hello", 3);
	io(resp, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 4);
	expect_log(req, "H PUT /f @1\nC @3\n");
	assert_true(req->heads[0].h.expect_continue);
	expect_log(resp, "H 100 @2\nC @2\nH 200 @4\nC @4\n");

	/* interim and final response in one write, and several 1xx in a row */
	clear_log(resp);
	io(resp,
	   "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
	   "HTTP/1.1 204 No Content\r\n\r\n",
	   5);
	expect_log(resp, "H 100 @5\nC @5\nH 103 @5\nC @5\nH 204 @5\nC @5\n");
	rec_free(req);
	rec_free(resp);
}

/* The parser cannot know a response answers HEAD: on_head says so. */
static void test_head_response(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	r->rules[0] = HTTP1_BODY_NONE;
	io(r, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", 1);
	io(r, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 2);
	expect_log(r, "H 200 @1\nC @1\nH 200 @2\nC @2\n");
	assert_int_equal(r->heads[0].h.content_length, 1234);

	/* the same for a chunked answer to HEAD */
	clear_log(r);
	r->rules[2] = HTTP1_BODY_NONE;
	io(r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 3);
	io(r, "HTTP/1.1 200 OK\r\n\r\n", 4);
	expect_log(r, "H 200 @3\nC @3\nH 200 @4\n");
	rec_free(r);
}

static void test_204_and_304(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(r, "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", 1);
	io(r, "HTTP/1.1 304 Not Modified\r\nContent-Length: 500\r\nETag: \"x\"\r\n\r\n", 2);
	io(r, "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", 3);
	io(r, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!", 4);
	expect_log(r, "H 204 @1\nC @1\nH 304 @2\nC @2\nH 304 @3\nC @3\nH 200 @4\nC @4\n");
	rec_free(r);
}

/* ---- chunked --------------------------------------------------------------------------- */

static const char chunked_resp[] =
    "HTTP/1.1 200 OK\r\n"
    "Transfer-Encoding: gzip, Chunked\r\n"
    "\r\n"
    "5\r\nhello\r\n"
    "1A;name=\"quoted;value\" ; other\r\nabcdefghijklmnopqrstuvwxyz\r\n"
    "00000004 \r\n\r\n\r\n\r\n"
    "0\r\n"
    "X-Checksum: 1234\r\n"
    "\r\n";

static void test_chunked_whole(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(r, chunked_resp, 7);
	expect_log(r, "H 200 @7\nC @7\n");
	assert_true(r->heads[0].h.chunked);
	assert_false(http1_parser_in_message(&r->p));
	rec_free(r);
}

static void test_chunked_byte_by_byte(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);
	size_t len = strlen(chunked_resp);
	char want[64];

	(void)state;
	for (size_t i = 0; i < len; i++)
		feed_mem(r, chunked_resp + i, 1, false, i);
	snprintf(want, sizeof(want), "H 200 @0\nC @%zu\n", len - 1);
	expect_log(r, want);
	rec_free(r);
}

static void test_chunked_split_every_boundary(void **state)
{
	static const char two[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				  "4\r\nwiki\r\n6;x=1\r\npedia \r\n0\r\n\r\n"
				  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n";
	size_t len = strlen(two);
	size_t second = (size_t)(strstr(two + 1, "HTTP/1.1") - two);

	(void)state;
	for (size_t k = 0; k <= len; k++) {
		struct recorder *r = rec_new(HTTP1_RESPONSE);
		char want[128];

		feed_mem(r, two, k, true, 1);
		feed_mem(r, two + k, len - k, false, 2);
		snprintf(want, sizeof(want), "H 200 @%d\nC @%d\nH 200 @%d\nC @%d\n", k > 0 ? 1 : 2,
			 k >= second ? 1 : 2, k > second ? 1 : 2, k >= len ? 1 : 2);
		expect_log(r, want);
		rec_free(r);
	}
}

/*
 * A large chunked write: the BPF side copies 64 bytes and the last 8. The gap swallows the
 * next chunk-size line, so the end is found from the captured tail.
 */
static void test_chunked_gap_ends_on_last_chunk(void **state)
{
	char body[4096];
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 1);
	/* "400\r\n" 1024 bytes "\r\n400\r\n" 1024 bytes "\r\n0\r\n\r\n" in one write */
	snprintf(body, sizeof(body), "400\r\n%1024d\r\n400\r\n%1024d\r\n0\r\n\r\n", 1, 2);
	io_cut(r, body, 64, 8, 2);
	expect_log(r, "H 200 @1\nC @2\n");
	assert_false(http1_parser_in_message(&r->p));

	/* the next response is parsed normally */
	io(r, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 3);
	expect_log(r, "H 200 @1\nC @2\nH 200 @3\nC @3\n");
	rec_free(r);
}

/* The end of the lost body arrives in a write of its own, split in two feeds. */
static void test_chunked_gap_tail_across_feeds(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123", 1);
	http1_parser_gap(&r->p, 100, 1);
	assert_int_equal(r->p.state, HTTP1_ST_CHUNK_LOST);
	io(r, "abc\r\n", 2);
	io(r, "0\r", 3);
	io(r, "\n\r\n", 4);
	expect_log(r, "H 200 @1\nC @4\n");
	rec_free(r);
}

/* Where the tail is not captured, the next response's start line closes the lost body. */
static void test_chunked_gap_ends_at_next_response(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 1);
	io(r, "2000\r\nsome data", 2);
	http1_parser_gap(&r->p, 10000, 2);
	feed_mem(r, "more data", 9, false, 2);
	/* a body write that is not a start line does not end it */
	io(r, "abcdef", 3);
	http1_parser_gap(&r->p, 500, 3);
	/* data that ends in "10\r\n\r\n" (a chunk size, then data) does not end it either */
	io(r, "x\r\n10\r\n\r\n", 4);
	assert_int_equal(r->p.state, HTTP1_ST_CHUNK_LOST);
	io(r, "HTTP/1.1 304 Not Modified\r\n\r\n", 5);
	expect_log(r, "H 200 @1\nC @4\nH 304 @5\nC @5\n");
	rec_free(r);
}

static void test_chunked_gap_inside_chunk(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	/* the gap stays inside the chunk: nothing is lost */
	io(r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 1);
	io_cut(r, "20\r\n0123456789abcdef0123456789abcdef\r\n", 10, 8, 2);
	assert_int_equal(r->p.state, HTTP1_ST_CHUNK_SIZE);
	io_cut(r, "8\r\n01234567\r\n0\r\n\r\n", 4, 5, 3);
	expect_log(r, "H 200 @1\nC @3\n");
	rec_free(r);
}

static void test_chunked_errors(void **state)
{
	static const char *const bad[] = {
	    "x\r\n",			  /* no hex digits */
	    "\r\n",			  /* empty size line */
	    "5 5\r\nhello\r\n",		  /* digits after whitespace */
	    "5\rhello\r\n",		  /* bare CR */
	    "5\r\nhelloXX",		  /* no CRLF after the data */
	    "5\r\nhello\r\r\n",		  /* CR CR */
	    "-5\r\n",			  /* negative */
	    "fffffffffffffffff\r\n",	  /* 17 hex digits: overflow */
	    "8000000000000000\r\n",	  /* above INT64_MAX */
	    "5;a\x01\r\n",		  /* control in an extension */
	    "0\r\nTrailer: x\rY\r\n\r\n", /* bare CR in trailers */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct recorder *r = rec_new(HTTP1_RESPONSE);

		io(r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 1);
		io(r, bad[i], 2);
		expect_log(r, "H 200 @1\nE BAD_CHUNK\n");
		assert_int_equal(r->p.state, HTTP1_ST_RESYNC);
		rec_free(r);
	}
}

static void test_chunk_line_too_long(void **state)
{
	char line[5000];
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	memset(line, 'a', sizeof(line));
	memcpy(line, "1;", 2);
	io(r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 1);
	for (int i = 0; i < 4; i++)
		feed_mem(r, line, sizeof(line), false, 2);
	expect_log(r, "H 200 @1\nE BAD_CHUNK\n");
	rec_free(r);
}

static void test_largest_chunk_size(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\nabc", 1);
	assert_int_equal(r->p.state, HTTP1_ST_CHUNK_DATA);
	assert_true(r->p.body_left == (uint64_t)INT64_MAX - 3);
	http1_parser_gap(&r->p, UINT64_MAX, 2);
	assert_int_equal(r->p.state, HTTP1_ST_CHUNK_LOST);
	http1_parser_eof(&r->p, 3);
	expect_log(r, "H 200 @1\nC @2\n");
	rec_free(r);
}

/* ---- bodies with gaps and until close -------------------------------------------------- */

static void test_content_length_gap(void **state)
{
	char big[3000];
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	io(r, "HTTP/1.1 200 OK\r\nContent-Length: 5999\r\n\r\n", 1);
	io_cut(r, big, 64, 8, 2);
	assert_true(r->p.body_left == 3000);
	io_cut(r, big, 64, 8, 3);
	assert_true(r->p.body_left == 1);
	/* the last byte is a gap of its own (nothing captured of that write) */
	http1_parser_gap(&r->p, 1, 4);
	expect_log(r, "H 200 @1\nC @4\n");
	io(r, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 5);
	expect_log(r, "H 200 @1\nC @4\nH 200 @5\nC @5\n");
	rec_free(r);
}

/* Head and body in one write, cut by the capture: the body is skipped by its length. */
static void test_content_length_gap_same_write(void **state)
{
	char msg[2048];
	struct recorder *r = rec_new(HTTP1_REQUEST);
	int n;

	(void)state;
	n = snprintf(msg, sizeof(msg), "POST /big HTTP/1.1\r\nContent-Length: 1000\r\n\r\n%01000d",
		     7);
	assert_true(n > 1000);
	io_cut(r, msg, (size_t)n - 1000 + 64, 8, 1);
	io(r, "GET / HTTP/1.1\r\n\r\n", 2);
	expect_log(r, "H POST /big @1\nC @1\nH GET / @2\nC @2\n");
	rec_free(r);
}

/* A gap longer than the body also hides the start of the next head. */
static void test_gap_past_body_end(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(r, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", 1);
	http1_parser_gap(&r->p, 150, 2);
	feed_mem(r, "\r\n\r\n", 4, false, 2);
	io(r, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 3);
	expect_log(r, "H 200 @1\nC @2\nE GAP_IN_HEADERS\nH 200 @3\nC @3\n");
	rec_free(r);
}

static void test_until_close(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(r, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>", 1);
	http1_parser_gap(&r->p, 100000, 2);
	io(r, "HTTP/1.1 200 OK\r\n\r\n", 3); /* body bytes that happen to look like a head */
	assert_true(http1_parser_in_message(&r->p));
	http1_parser_eof(&r->p, 4);
	/* end_tag is the tag of the I/O that held the last byte, not of the close */
	expect_log(r, "H 200 @1\nC @3\n");
	assert_false(http1_parser_in_message(&r->p));
	rec_free(r);
}

/* The last coding is not chunked: the response is delimited by close (RFC 9112 6.3 item 4). */
static void test_transfer_encoding_not_chunked(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);
	struct recorder *q = rec_new(HTTP1_REQUEST);

	(void)state;
	io(r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nContent-Length: 3\r\n\r\n",
	   1);
	io(r, "0\r\n\r\n", 2);
	http1_parser_eof(&r->p, 3);
	expect_log(r, "H 200 @1\nC @2\n");
	assert_false(r->heads[0].h.chunked);

	/* Transfer-Encoding overrides Content-Length */
	clear_log(r);
	io(r,
	   "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
	   "0\r\n\r\n",
	   4);
	expect_log(r, "H 200 @4\nC @4\n");

	/* a request with such framing cannot be delimited at all */
	io(q, "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 1);
	io(q, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
	   2);
	io(q,
	   "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
	   "0\r\n\r\n",
	   3);
	expect_log(q, "E BAD_HEADER\nE BAD_HEADER\nH POST / @3\nC @3\n");
	rec_free(r);
	rec_free(q);
}

/* ---- connection management ------------------------------------------------------------- */

static void test_connection_close(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(r, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 1);
	io(r, "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\nContent-Length: 0\r\n\r\n", 2);
	io(r, "HTTP/1.1 200 OK\r\nConnection: upgrade\r\nContent-Length: 0\r\n\r\n", 3);
	io(r, "HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n", 4);
	expect_log(r, "H 200 @1\nC @1\nH 200 @2\nC @2\nH 200 @3\nC @3\nH 200 @4\nC @4\n");
	assert_true(r->heads[0].h.conn_close);
	assert_true(r->heads[1].h.conn_close);
	assert_false(r->heads[2].h.conn_close);
	assert_false(r->heads[3].h.conn_close);
	rec_free(r);
}

static void test_http10(void **state)
{
	struct recorder *q = rec_new(HTTP1_REQUEST);
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(q, "GET /old HTTP/1.0\r\n\r\n", 1);
	io(q, "GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 2);
	expect_log(q, "H GET /old @1\nC @1\nH GET /ka @2\nC @2\n");
	assert_int_equal(q->heads[0].h.version_minor, 0);
	assert_true(q->heads[0].h.conn_close);
	assert_false(q->heads[1].h.conn_close);

	/* no Content-Length: the body runs to the close */
	io(r, "HTTP/1.0 200 OK\r\nServer: old\r\n\r\nsome body", 3);
	io(r, "more body", 4);
	http1_parser_eof(&r->p, 5);
	expect_log(r, "H 200 @3\nC @4\n");
	assert_true(r->heads[0].h.conn_close);
	assert_int_equal(r->heads[0].h.version_minor, 0);
	rec_free(q);
	rec_free(r);
}

/* CONNECT: the request has no body; a 2xx makes the connection a tunnel (RFC 9112 6.3 item 2). */
static void test_connect_tunnel(void **state)
{
	struct recorder *q = rec_new(HTTP1_REQUEST);
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	q->rules[0] = HTTP1_BODY_TUNNEL;
	io(q, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01", 1);
	io(q, "GET / HTTP/1.1\r\n\r\n", 2);
	expect_log(q, "H CONNECT example.com:443 @1\nC @1\n");
	assert_int_equal(q->p.state, HTTP1_ST_TUNNEL);

	r->rules[0] = HTTP1_BODY_TUNNEL;
	io(r, "HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03\x00\x7a", 3);
	http1_parser_gap(&r->p, 5000, 4);
	io(r, "HTTP/1.1 200 OK\r\n\r\n", 5);
	http1_parser_eof(&r->p, 6);
	expect_log(r, "H 200 @3\nC @3\n");
	assert_false(http1_parser_in_message(&r->p));
	rec_free(q);
	rec_free(r);
}

static void test_upgrade_101(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);
	struct recorder *q = rec_new(HTTP1_REQUEST);

	(void)state;
	io(q, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 1);
	expect_log(q, "H GET /ws @1\nC @1\n");
	assert_true(q->heads[0].h.upgrade);
	r->rules[0] = HTTP1_BODY_TUNNEL;
	io(r, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello", 2);
	expect_log(r, "H 101 @2\nC @2\n");
	assert_int_equal(r->p.state, HTTP1_ST_TUNNEL);
	rec_free(r);
	rec_free(q);
}

/* ---- errors and resynchronisation ------------------------------------------------------ */

static void test_malformed_start_lines(void **state)
{
	static const struct {
		enum http1_kind kind;
		const char *line;
		size_t len;
		const char *err;
	} cases[] = {
	    {HTTP1_REQUEST, S("GET / HTTP/1.2\r\n\r\n"), "E BAD_START_LINE\n"},
	    {HTTP1_REQUEST, S("GET / HTTP/2.0\r\n\r\n"), "E BAD_START_LINE\n"},
	    {HTTP1_REQUEST, S("GET /  HTTP/1.1\r\n\r\n"), "E BAD_START_LINE\n"},
	    {HTTP1_REQUEST, S("GET /\r\n\r\n"), "E BAD_START_LINE\n"},
	    {HTTP1_REQUEST, S("GET / HTTP/1.1 \r\n\r\n"), "E BAD_START_LINE\n"},
	    {HTTP1_REQUEST, S("GET /a\x01 HTTP/1.1\r\n\r\n"), "E BAD_START_LINE\n"},
	    {HTTP1_REQUEST, S("GET /a\0b HTTP/1.1\r\n\r\n"), "E BAD_START_LINE\n"},
	    {HTTP1_REQUEST, S("GET / HTTP/1.1\rX\r\n\r\n"), "E BAD_START_LINE\n"},
	    {HTTP1_REQUEST, S("GET  / HTTP/1.1\r\n\r\n"), "E NOT_HTTP\n"},
	    {HTTP1_REQUEST, S("get / HTTP/1.1\r\n\r\n"), "E NOT_HTTP\n"},
	    {HTTP1_REQUEST, S("\x16\x03\x01\x02\x00\x01"), "E NOT_HTTP\n"},
	    {HTTP1_REQUEST, S("HTTP/1.1 200 OK\r\n\r\n"), "E NOT_HTTP\n"},
	    {HTTP1_REQUEST, S("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), "E BAD_START_LINE\n"},
	    {HTTP1_RESPONSE, S("HTTP/1.1 20 OK\r\n\r\n"), "E BAD_START_LINE\n"},
	    {HTTP1_RESPONSE, S("HTTP/1.1 2000 OK\r\n\r\n"), "E BAD_START_LINE\n"},
	    {HTTP1_RESPONSE, S("HTTP/1.1 099 Low\r\n\r\n"), "E BAD_START_LINE\n"},
	    {HTTP1_RESPONSE, S("HTTP/1.1  200 OK\r\n\r\n"), "E BAD_START_LINE\n"},
	    {HTTP1_RESPONSE, S("HTTP/1.1 200 O\0K\r\n\r\n"), "E BAD_START_LINE\n"},
	    {HTTP1_RESPONSE, S("HTTP/1.3 200 OK\r\n\r\n"), "E BAD_START_LINE\n"},
	    {HTTP1_RESPONSE, S("HTTP/2 200\r\n\r\n"), "E NOT_HTTP\n"},
	    {HTTP1_RESPONSE, S("GET / HTTP/1.1\r\n\r\n"), "E NOT_HTTP\n"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct recorder *r = rec_new(cases[i].kind);

		feed_mem(r, cases[i].line, cases[i].len, true, 1);
		if (strcmp(r->log, cases[i].err) != 0)
			fail_msg("case %zu: want %s got %s", i, cases[i].err, r->log);
		/* the stream recovers at the next I/O that starts with a start line */
		io(r, "not http", 2);
		if (cases[i].kind == HTTP1_REQUEST)
			io(r, "GET /ok HTTP/1.1\r\n\r\n", 3);
		else
			io(r, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 3);
		assert_true(strstr(r->log, " @3\nC @3\n") != NULL);
		rec_free(r);
	}
}

static void test_bad_headers(void **state)
{
	static const char *const bad[] = {
	    "Host: a\r\n folded\r\n",  /* obs-fold (RFC 9112 5.2) */
	    "Host: a\r\n\tfolded\r\n", /* obs-fold with HTAB */
	    " Host: a\r\n",	       /* whitespace after the start line */
	    "Host : a\r\n",	       /* space before the colon (RFC 9112 5.1) */
	    "Host\r\n",		       /* no colon */
	    ": a\r\n",		       /* empty name */
	    "Ho(st: a\r\n",	       /* not a token */
	    "Host: a\rb\r\n",	       /* bare CR */
	    "X-A: \x01\r\n",	       /* control character */
	    "Content-Length: 5\r\nContent-Length: 6\r\n",
	    "Content-Length: 5, 6\r\n",
	    "Content-Length: -1\r\n",
	    "Content-Length: +5\r\n",
	    "Content-Length: 0x10\r\n",
	    "Content-Length: 1 2\r\n",
	    "Content-Length:\r\n",
	    "Content-Length: 5,\r\n",
	    "Content-Length: 9223372036854775808\r\n", /* INT64_MAX + 1 */
	    "Content-Length: 99999999999999999999999999\r\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct recorder *r = rec_new(HTTP1_REQUEST);
		char msg[512];

		snprintf(msg, sizeof(msg), "POST /p HTTP/1.1\r\n%s\r\n", bad[i]);
		io(r, msg, 1);
		if (strcmp(r->log, "E BAD_HEADER\n") != 0)
			fail_msg("case %zu (%s): got %s", i, bad[i], r->log);
		rec_free(r);
	}
}

static void test_nul_in_header_value(void **state)
{
	static const char msg[] = "GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n";
	struct recorder *r = rec_new(HTTP1_REQUEST);

	(void)state;
	feed_mem(r, msg, sizeof(msg) - 1, true, 1);
	expect_log(r, "E BAD_HEADER\n");
	rec_free(r);
}

/* Every byte value at every offset of a 20-byte header value (the check goes eight bytes at
 * a time): rejected exactly when it is a control other than HTAB, or DEL. CR and LF end the
 * line, so they are tested apart (bare CR above). */
static void test_every_byte_in_header_values(void **state)
{
	(void)state;
	for (int c = 0; c < 256; c++) {
		bool ok = c == '\t' || (c >= 0x20 && c != 0x7f);

		if (c == '\r' || c == '\n')
			continue;
		for (size_t at = 0; at < 20; at++) {
			char msg[128];
			int n = snprintf(msg, sizeof(msg), "GET / HTTP/1.1\r\nX-A: ");
			struct recorder *r = rec_new(HTTP1_REQUEST);

			memset(msg + n, 'v', 20);
			msg[n + at] = (char)c;
			memcpy(msg + n + 20, "\r\n\r\n", 4);
			feed_mem(r, msg, (size_t)n + 24, true, 1);
			if (ok && at > 0 && at < 19)
				assert_true(strncmp(r->log, "H GET /", 7) == 0);
			else if (!ok)
				expect_log(r, "E BAD_HEADER\n");
			rec_free(r);
		}
	}
}

/* Every byte value in a header name: accepted exactly when it is a tchar (RFC 9110 5.6.2). */
static void test_every_byte_in_header_names(void **state)
{
	static const char tchars[] = "!#$%&'*+-.^_`|~";

	(void)state;
	for (int c = 1; c < 256; c++) {
		bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
			  (c >= 'A' && c <= 'Z') || strchr(tchars, c) != NULL;
		struct recorder *r;
		char msg[64];
		int n = snprintf(msg, sizeof(msg), "GET / HTTP/1.1\r\nX-%cY: v\r\n\r\n", c);

		if (c == '\n' || c == ':')
			continue; /* they end the line or the name */
		r = rec_new(HTTP1_REQUEST);
		feed_mem(r, msg, (size_t)n, true, 1);
		if (ok)
			assert_true(strncmp(r->log, "H GET /", 7) == 0);
		else
			expect_log(r, "E BAD_HEADER\n");
		rec_free(r);
	}
}

static void test_content_length_accepted_forms(void **state)
{
	struct recorder *r = rec_new(HTTP1_REQUEST);

	(void)state;
	io(r, "POST /a HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 003\r\n\r\nabc", 1);
	io(r, "POST /b HTTP/1.1\r\nContent-Length: 2 , 2\r\n\r\nxy", 2);
	io(r, "POST /c HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\n", 3);
	expect_log(r, "H POST /a @1\nC @1\nH POST /b @2\nC @2\nH POST /c @3\n");
	assert_int_equal(r->heads[0].h.content_length, 3);
	assert_int_equal(r->heads[1].h.content_length, 2);
	assert_true(r->heads[2].h.content_length == INT64_MAX);
	rec_free(r);
}

static void build_big_head(char *buf, size_t total, const char *start)
{
	size_t n = strlen(start);

	/* start line, then one long header, then the empty line: exactly total bytes */
	memcpy(buf, start, n);
	memcpy(buf + n, "X-Big: ", 7);
	memset(buf + n + 7, 'v', total - n - 7 - 4);
	memcpy(buf + total - 4, "\r\n\r\n", 4);
	buf[total] = '\0';
}

static void test_oversized_header_block(void **state)
{
	static char buf[HTTP1_MAX_HEADER_BLOCK * 2];
	struct recorder *r;

	(void)state;
	/* exactly at the limit: accepted, in one feed and in pieces */
	build_big_head(buf, HTTP1_MAX_HEADER_BLOCK, "GET / HTTP/1.1\r\n");
	r = rec_new(HTTP1_REQUEST);
	io(r, buf, 1);
	for (size_t off = 0; off < HTTP1_MAX_HEADER_BLOCK; off += 1000)
		feed_mem(r, buf + off,
			 HTTP1_MAX_HEADER_BLOCK - off < 1000 ? HTTP1_MAX_HEADER_BLOCK - off : 1000,
			 off == 0, 2);
	expect_log(r, "H GET / @1\nC @1\nH GET / @2\nC @2\n");
	assert_int_equal(r->heads[1].h.header_bytes, HTTP1_MAX_HEADER_BLOCK);
	rec_free(r);

	/* one byte over */
	build_big_head(buf, HTTP1_MAX_HEADER_BLOCK + 1, "GET / HTTP/1.1\r\n");
	r = rec_new(HTTP1_REQUEST);
	io(r, buf, 1);
	for (size_t off = 0; off <= HTTP1_MAX_HEADER_BLOCK; off += 1000)
		feed_mem(r, buf + off,
			 HTTP1_MAX_HEADER_BLOCK + 1 - off < 1000 ? HTTP1_MAX_HEADER_BLOCK + 1 - off
								 : 1000,
			 off == 0, 2);
	io(r, "GET /after HTTP/1.1\r\n\r\n", 3);
	expect_log(r, "E HEADER_TOO_LARGE\nE HEADER_TOO_LARGE\nH GET /after @3\nC @3\n");
	rec_free(r);

	/* a head that never ends: the error comes as soon as the limit is passed */
	r = rec_new(HTTP1_RESPONSE);
	io(r, "HTTP/1.1 200 OK\r\nX: ", 1);
	memset(buf, 'a', sizeof(buf));
	for (int i = 0; i < 40; i++)
		feed_mem(r, buf, 1000, false, 2);
	expect_log(r, "E HEADER_TOO_LARGE\n");
	assert_null(r->p.hdr);
	rec_free(r);
}

/* Many tiny headers: bounded by the block size, parsed without trouble. */
static void test_many_headers(void **state)
{
	static char buf[HTTP1_MAX_HEADER_BLOCK + 1];
	struct recorder *r = rec_new(HTTP1_REQUEST);
	size_t n = 0;

	(void)state;
	n += (size_t)sprintf(buf, "GET / HTTP/1.1\r\n");
	while (n + 4 + 2 <= HTTP1_MAX_HEADER_BLOCK) {
		memcpy(buf + n, "a:\r\n", 4);
		n += 4;
	}
	memcpy(buf + n, "\r\n", 2);
	n += 2;
	feed_mem(r, buf, n, true, 1);
	expect_log(r, "H GET / @1\nC @1\n");
	rec_free(r);
}

static void test_gap_in_headers(void **state)
{
	struct recorder *r = rec_new(HTTP1_REQUEST);

	(void)state;
	io(r, "GET /a HTTP/1.1\r\nHost: x", 1);
	http1_parser_gap(&r->p, 10, 1);
	feed_mem(r, "\r\n\r\n", 4, false, 1);
	io(r, "GET /b HTTP/1.1\r\n\r\n", 2);
	expect_log(r, "E GAP_IN_HEADERS\nH GET /b @2\nC @2\n");
	assert_null(r->p.hdr);
	rec_free(r);
}

/* The agent started while a response body was being written. */
static void test_start_mid_body_then_resync(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(r, "ody of a response that began before the agent", 1);
	http1_parser_gap(&r->p, 4000, 1);
	feed_mem(r, "e end.\r\n", 8, false, 1);
	io(r, "more body", 2);
	io(r, "HTTP/1", 3); /* too short to be sure after losing track */
	io(r, "1 200 OK\r\n\r\n", 4);
	io(r, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", 5);
	expect_log(r, "E NOT_HTTP\nH 200 @5\nC @5\n");
	rec_free(r);
}

/* A resync happens only at the first byte of an I/O, not in the middle of one. */
static void test_resync_only_at_io_start(void **state)
{
	struct recorder *r = rec_new(HTTP1_REQUEST);

	(void)state;
	io(r, "garbage", 1);
	feed_mem(r, "GET / HTTP/1.1\r\n\r\n", 18, false, 1);
	io(r, "xGET / HTTP/1.1\r\n\r\n", 2);
	io(r, "GET /ok HTTP/1.1\r\n\r\n", 3);
	expect_log(r, "E NOT_HTTP\nH GET /ok @3\nC @3\n");
	rec_free(r);
}

static void test_eof_abandons_partial_message(void **state)
{
	struct recorder *r = rec_new(HTTP1_RESPONSE);

	(void)state;
	io(r, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 1);
	assert_true(http1_parser_in_message(&r->p));
	http1_parser_eof(&r->p, 2);
	io(r, "HTTP/1.1 200 OK\r\nCont", 3);
	assert_non_null(r->p.hdr);
	http1_parser_eof(&r->p, 4);
	assert_null(r->p.hdr);
	/* after the end of a stream, the parser is ready for a new one */
	io(r, "HTTP/1.1 204 No Content\r\n\r\n", 5);
	expect_log(r, "H 200 @1\nH 204 @5\nC @5\n");
	rec_free(r);
}

/* ---- extracted fields ------------------------------------------------------------------ */

#define TP1 "00-12345678901234567890123456789012-1234567890123456-01"
#define TP2 "00-abcdefabcdefabcdefabcdefabcdefab-abcdefabcdefabcd-00"

static void test_trace_context_headers(void **state)
{
	struct recorder *r = rec_new(HTTP1_REQUEST);
	struct head_copy *c = &r->heads[0];

	(void)state;
	io(r,
	   "GET / HTTP/1.1\r\n"
	   "TraceParent: \t" TP1 " \t\r\n"
	   "tracestate: foo=1,bar=2\r\n"
	   "trace-parent: nope\r\n"
	   "trace.state: nope\r\n"
	   "TRACESTATE:\r\n"
	   "TrAcEsTaTe:rojo=1,congo=2 \r\n"
	   "TRACEPARENT: " TP2 "\r\n"
	   "\r\n",
	   1);
	assert_int_equal(c->h.traceparent_count, 2);
	assert_string_equal(c->traceparent, TP1);
	assert_int_equal(c->h.tracestate_count, 3);
	assert_string_equal(c->tracestate[0], "foo=1,bar=2");
	assert_string_equal(c->tracestate[1], "");
	assert_string_equal(c->tracestate[2], "rojo=1,congo=2");
	rec_free(r);
}

static void test_trace_context_absent_and_many(void **state)
{
	char msg[2048];
	size_t n;
	struct recorder *r = rec_new(HTTP1_REQUEST);

	(void)state;
	n = (size_t)sprintf(msg, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < HTTP1_MAX_TRACESTATE_HDRS + 3; i++)
		n += (size_t)sprintf(msg + n, "tracestate: k%d=v\r\n", i);
	sprintf(msg + n, "\r\n");
	io(r, msg, 1);
	assert_int_equal(r->heads[0].h.traceparent_count, 0);
	assert_null(r->heads[0].h.traceparent.p);
	/* the first ones are kept, in order */
	assert_int_equal(r->heads[0].h.tracestate_count, HTTP1_MAX_TRACESTATE_HDRS);
	for (int i = 0; i < HTTP1_MAX_TRACESTATE_HDRS; i++) {
		char want[16];

		sprintf(want, "k%d=v", i);
		assert_string_equal(r->heads[0].tracestate[i], want);
	}
	rec_free(r);
}

/* traceparent in the second of two pipelined requests, and split across two reads */
static void test_trace_context_pipelined_and_split(void **state)
{
	static const char two[] =
	    "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\ntraceparent: " TP1 "\r\n\r\n";
	struct recorder *r = rec_new(HTTP1_REQUEST);
	size_t cut = strlen(two) - 30;

	(void)state;
	feed_mem(r, two, cut, true, 1);
	feed_mem(r, two + cut, strlen(two) - cut, true, 2);
	expect_log(r, "H GET /1 @1\nC @1\nH GET /2 @1\nC @2\n");
	assert_int_equal(r->heads[0].h.traceparent_count, 0);
	assert_int_equal(r->heads[1].h.traceparent_count, 1);
	assert_string_equal(r->heads[1].traceparent, TP1);
	rec_free(r);
}

static void test_other_fields(void **state)
{
	struct recorder *r = rec_new(HTTP1_REQUEST);
	struct head_copy *c = &r->heads[0];

	(void)state;
	io(r,
	   "OPTIONS * HTTP/1.1\r\n"
	   "HOST:  first \r\n"
	   "host: second\r\n"
	   "user-agent: a/1 (x; y)\r\n"
	   "User-Agent: b/2\r\n"
	   "eXpEcT: 100-CONTINUE\r\n"
	   "X-Ünïcode-Value: caf\xc3\xa9\r\n"
	   "\r\n",
	   1);
	expect_log(r, "E BAD_HEADER\n");
	clear_log(r);
	io(r,
	   "OPTIONS * HTTP/1.1\r\n"
	   "HOST:  first \r\n"
	   "host: second\r\n"
	   "user-agent: a/1 (x; y)\r\n"
	   "User-Agent: b/2\r\n"
	   "eXpEcT: 100-CONTINUE\r\n"
	   "X-Value: caf\xc3\xa9\r\n"
	   "Expect-Other: 100-continue\r\n"
	   "\r\n",
	   2);
	expect_log(r, "H OPTIONS * @2\nC @2\n");
	assert_string_equal(c->method, "OPTIONS");
	assert_string_equal(c->target, "*");
	assert_string_equal(c->host, "first");
	assert_string_equal(c->user_agent, "a/1 (x; y)");
	assert_true(c->h.expect_continue);
	assert_false(c->h.upgrade);
	rec_free(r);
}

static void test_absolute_form_and_unknown_method(void **state)
{
	struct recorder *r = rec_new(HTTP1_REQUEST);

	(void)state;
	io(r, "PROPFIND http://h/dav HTTP/1.1\r\nDepth: 1\r\n\r\n", 1);
	io(r, "M-SEARCH * HTTP/1.1\r\n\r\n", 2);
	io(r, "PURGE /cache HTTP/1.1\r\n\r\n", 3);
	expect_log(r, "H PROPFIND http://h/dav @1\nC @1\nH M-SEARCH * @2\nC @2\n"
		      "H PURGE /cache @3\nC @3\n");
	rec_free(r);
}

/* ---- http1_looks_like_start ------------------------------------------------------------ */

static void test_looks_like_start(void **state)
{
	static const struct {
		const char *s;
		bool want;
		enum http1_kind kind;
	} cases[] = {
	    {"GET / HTTP/1.1\r\n", true, HTTP1_REQUEST},
	    {"GE", true, HTTP1_REQUEST},
	    {"G", true, HTTP1_REQUEST},
	    {"GET", true, HTTP1_REQUEST},
	    {"GET ", true, HTTP1_REQUEST},
	    {"HEAD /", true, HTTP1_REQUEST},
	    {"HE", true, HTTP1_REQUEST},
	    {"CONNECT example.com:443 HTTP/1.1", true, HTTP1_REQUEST},
	    {"OPTIONS * HTTP/1.1", true, HTTP1_REQUEST},
	    {"DELETE /x", true, HTTP1_REQUEST},
	    {"PATCH /x", true, HTTP1_REQUEST},
	    {"TRACE /", true, HTTP1_REQUEST},
	    {"PUT /", true, HTTP1_REQUEST},
	    {"POST /", true, HTTP1_REQUEST},
	    {"PROPFIND /x", true, HTTP1_REQUEST},
	    {"BASELINE-CONTROL /", true, HTTP1_REQUEST}, /* 16 characters */
	    {"FOO http://x/", true, HTTP1_REQUEST},
	    {"FOO HTTP://x/", true, HTTP1_REQUEST},
	    {"FOO ht", true, HTTP1_REQUEST},
	    {"FOO *", true, HTTP1_REQUEST},
	    {"HTTP/1.1 200 OK\r\n", true, HTTP1_RESPONSE},
	    {"HTTP/1.0 404", true, HTTP1_RESPONSE},
	    {"HTTP/1.", true, HTTP1_RESPONSE},
	    {"HTTP/", true, HTTP1_RESPONSE},
	    {"H", true, HTTP1_RESPONSE},
	    {"HTTP/2 200", false, 0},
	    {"HTTP/2.0 200", false, 0},
	    {"get / HTTP/1.1", false, 0},
	    {"GET\t/", false, 0},
	    {"GET  /", false, 0},
	    {"FOO bar", false, 0},
	    {"FOO hxx", false, 0},
	    {"OK DONE", false, 0},
	    {"ABCDEFGHIJKLMNOPQ /", false, 0}, /* 17 characters */
	    {"1a\r\n", false, 0},
	    {"{\"json\": 1}", false, 0},
	    {"\x16\x03\x01", false, 0},
	    {"\r\nGET / HTTP/1.1", false, 0},
	    {"", false, 0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = strlen(cases[i].s);
		uint8_t *copy = malloc(len ? len : 1);
		enum http1_kind kind = 42;
		bool got;

		assert_non_null(copy);
		memcpy(copy, cases[i].s, len);
		got = http1_looks_like_start(copy, len, &kind);
		free(copy);
		if (got != cases[i].want)
			fail_msg("\"%s\": want %d", cases[i].s, cases[i].want);
		if (got)
			assert_int_equal(kind, cases[i].kind);
	}
	assert_false(http1_looks_like_start(NULL, 4, NULL));
	assert_true(http1_looks_like_start((const uint8_t *)"GET /", 5, NULL));
}

/* Only a whole start line: the tracker gives a connection its role from one. */
static void test_is_start(void **state)
{
	static const struct {
		const char *s;
		bool want;
		enum http1_kind kind;
	} cases[] = {
	    {"GET / HTTP/1.1\r\n", true, HTTP1_REQUEST},
	    {"GET /", true, HTTP1_REQUEST},
	    {"HEAD /", true, HTTP1_REQUEST},
	    {"CONNECT example.com:443", true, HTTP1_REQUEST},
	    {"FOO http", true, HTTP1_REQUEST},
	    {"HTTP/1.1 200 OK", true, HTTP1_RESPONSE},
	    {"HTTP/1.", true, HTTP1_RESPONSE},
	    {"G", false, 0},
	    {"GET", false, 0},
	    {"GET ", false, 0},
	    {"H", false, 0},
	    {"HE", false, 0},
	    {"HEAD ", false, 0},
	    {"HTTP/1", false, 0},
	    {"FOO ht", false, 0},
	    {"ET /x HTTP/1.1", true, HTTP1_REQUEST}, /* what a lost first byte leaves: a guess */
	    {"HTTP/2 200", false, 0},
	    {"", false, 0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = strlen(cases[i].s);
		enum http1_kind kind = 42;
		bool got = http1_is_start((const uint8_t *)cases[i].s, len, &kind);

		if (got != cases[i].want)
			fail_msg("\"%s\": want %d", cases[i].s, cases[i].want);
		if (got)
			assert_int_equal(kind, cases[i].kind);
	}
	assert_false(http1_is_start(NULL, 4, NULL));
}

static void test_no_callbacks(void **state)
{
	struct http1_parser p;
	static const char msg[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokgarbage";

	(void)state;
	http1_parser_init(&p, HTTP1_RESPONSE, NULL, NULL);
	http1_parser_feed(&p, (const uint8_t *)msg, sizeof(msg) - 1, true, 1);
	http1_parser_feed(&p, NULL, 5, true, 2);
	http1_parser_gap(&p, 0, 3);
	assert_int_equal(p.state, HTTP1_ST_RESYNC);
	http1_parser_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_simple_get),
	    cmocka_unit_test(test_simple_response),
	    cmocka_unit_test(test_response_body_in_later_ios),
	    cmocka_unit_test(test_bare_lf_and_leading_empty_lines),
	    cmocka_unit_test(test_status_line_variants),
	    cmocka_unit_test(test_split_every_boundary),
	    cmocka_unit_test(test_split_three_ways),
	    cmocka_unit_test(test_byte_by_byte_tags),
	    cmocka_unit_test(test_start_line_in_tiny_writes),
	    cmocka_unit_test(test_buffer_released_when_idle),
	    cmocka_unit_test(test_keep_alive_sequence),
	    cmocka_unit_test(test_pipelined_requests),
	    cmocka_unit_test(test_pipelined_responses_end_and_next_head),
	    cmocka_unit_test(test_continue_then_final),
	    cmocka_unit_test(test_head_response),
	    cmocka_unit_test(test_204_and_304),
	    cmocka_unit_test(test_chunked_whole),
	    cmocka_unit_test(test_chunked_byte_by_byte),
	    cmocka_unit_test(test_chunked_split_every_boundary),
	    cmocka_unit_test(test_chunked_gap_ends_on_last_chunk),
	    cmocka_unit_test(test_chunked_gap_tail_across_feeds),
	    cmocka_unit_test(test_chunked_gap_ends_at_next_response),
	    cmocka_unit_test(test_chunked_gap_inside_chunk),
	    cmocka_unit_test(test_chunked_errors),
	    cmocka_unit_test(test_chunk_line_too_long),
	    cmocka_unit_test(test_largest_chunk_size),
	    cmocka_unit_test(test_content_length_gap),
	    cmocka_unit_test(test_content_length_gap_same_write),
	    cmocka_unit_test(test_gap_past_body_end),
	    cmocka_unit_test(test_until_close),
	    cmocka_unit_test(test_transfer_encoding_not_chunked),
	    cmocka_unit_test(test_connection_close),
	    cmocka_unit_test(test_http10),
	    cmocka_unit_test(test_connect_tunnel),
	    cmocka_unit_test(test_upgrade_101),
	    cmocka_unit_test(test_malformed_start_lines),
	    cmocka_unit_test(test_bad_headers),
	    cmocka_unit_test(test_every_byte_in_header_values),
	    cmocka_unit_test(test_every_byte_in_header_names),
	    cmocka_unit_test(test_nul_in_header_value),
	    cmocka_unit_test(test_content_length_accepted_forms),
	    cmocka_unit_test(test_oversized_header_block),
	    cmocka_unit_test(test_many_headers),
	    cmocka_unit_test(test_gap_in_headers),
	    cmocka_unit_test(test_start_mid_body_then_resync),
	    cmocka_unit_test(test_resync_only_at_io_start),
	    cmocka_unit_test(test_eof_abandons_partial_message),
	    cmocka_unit_test(test_trace_context_headers),
	    cmocka_unit_test(test_trace_context_absent_and_many),
	    cmocka_unit_test(test_trace_context_pipelined_and_split),
	    cmocka_unit_test(test_other_fields),
	    cmocka_unit_test(test_absolute_form_and_unknown_method),
	    cmocka_unit_test(test_looks_like_start),
	    cmocka_unit_test(test_is_start),
	    cmocka_unit_test(test_no_callbacks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
