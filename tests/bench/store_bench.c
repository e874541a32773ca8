// SPDX-License-Identifier: BSD-2-Clause
/*
 * The embedded store's write throughput (issue 14), against the agent's span rate: realistic
 * HTTP spans (16 attributes, as the agent's, 4 spans a trace, 4 processes) as span lines,
 * then
 *   1. store_add_lines in transactions of 2048 (what the writer thread does), into a new
 *      file store in DIR: spans/s committed (wall clock), bytes a span on disk;
 *   2. the same spans through the sink (sink_store: render, queue, writer thread) as fast
 *      as one thread emits them, until the last is committed: spans/s end to end;
 *   3. case 1 again into a store held at a 32 MiB bound (retention deleting as it goes).
 *
 *	build/store_bench [DIR] [SPANS]     (DIR default /var/tmp; SPANS default 200000)
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "resource.h"
#include "sink.h"
#include "span.h"
#include "stats.h"
#include "store.h"

#define NPROC 4
#define BATCH 2048

static uint64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct resource *make_resource(unsigned i)
{
	static const char *const names[NPROC] = {"frontend", "users", "orders", "payments"};
	struct resource *r = resource_new(4000 + i, 123456789ull * i);
	char path[64];

	snprintf(path, sizeof(path), "/usr/local/bin/%s", names[i]);
	r->service_name = strdup(names[i]);
	r->exe_name = strdup(names[i]);
	r->exe_path = strdup(path);
	return r;
}

/* Span i: 4 a trace (a server span, its client call, the callee's server span, ...). */
static struct span *make_span(struct resource *const *res, uint64_t now, unsigned i,
			      uint8_t trace[16], uint8_t prev[8])
{
	static const char *const paths[] = {"/api/v1/users/12345", "/api/v1/orders", "/healthz",
					    "/api/v1/payments/9f8e7d/capture"};
	struct span *s = span_new();

	if (i % 4 == 0)
		span_random_id(trace, 16);
	memcpy(s->trace_id, trace, 16);
	span_random_id(s->span_id, 8);
	if (i % 4)
		memcpy(s->parent_span_id, prev, 8);
	memcpy(prev, s->span_id, 8);
	s->trace_flags = 1;
	s->kind = i & 1 ? SPAN_KIND_CLIENT : SPAN_KIND_SERVER;
	s->status = i % 50 ? SPAN_STATUS_UNSET : SPAN_STATUS_ERROR;
	s->resource = resource_get(res[i % NPROC]);
	s->pid = s->resource->pid;
	s->tid = s->pid + i % 8;
	s->start_unix_ns = now + i * 1000003ull;
	s->end_unix_ns = s->start_unix_ns + 250000 + i % 1000;
	snprintf(s->name, sizeof(s->name), "GET %s", i % 3 ? "/api/v1/users/{id}" : "/healthz");
	span_set_str(s, "http.request.method", "GET", 3);
	span_set_str(s, "url.path", paths[i % 4], strlen(paths[i % 4]));
	span_set_str(s, "http.route", "/api/v1/users/{id}", 18);
	span_set_str(s, "server.address", "users.default.svc.cluster.local", 31);
	span_set_int(s, "server.port", 8080);
	span_set_str(s, "client.address", "10.0.3.17", 9);
	span_set_int(s, "client.port", 40000 + i % 20000);
	span_set_int(s, "http.response.status_code", i % 50 ? 200 : 503);
	span_set_str(s, "network.protocol.version", "1.1", 3);
	span_set_str(s, "user_agent.original", "curl/7.88.1", 11);
	/* what the agent adds: its own evidence, the peer's socket, the thread */
	span_set_int(s, "thread.id", s->tid);
	span_set_str(s, "network.peer.address", "10.0.3.17", 9);
	span_set_int(s, "network.peer.port", 40000 + i % 20000);
	span_set_str(s, "url.scheme", "http", 4);
	span_set_str(s, "hoptrace.traceparent.received", "valid", 5);
	span_set_str(s, "hoptrace.caller.service", "frontend", 8);
	return s;
}

struct lines {
	char **line;
	size_t *len;
	size_t n, bytes;
};

static void make_lines(struct lines *l, struct resource *const *res, size_t n)
{
	uint64_t now = (uint64_t)time(NULL) * 1000000000ull;
	uint8_t trace[16], prev[8];
	char *buf = NULL;
	size_t cap = 0;

	l->line = calloc(n, sizeof(*l->line));
	l->len = calloc(n, sizeof(*l->len));
	l->n = n;
	for (size_t i = 0; i < n; i++) {
		struct span *s = make_span(res, now, (unsigned)i, trace, prev);

		l->len[i] = sink_json_render(s, &buf, &cap);
		l->line[i] = malloc(l->len[i]);
		memcpy(l->line[i], buf, l->len[i]);
		l->bytes += l->len[i];
		span_free(s);
	}
	free(buf);
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : st.st_size;
}

static void remove_store(const char *path)
{
	char p[PATH_MAX + 8];

	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

static void case_add_lines(const char *path, const struct lines *l, uint64_t max_bytes)
{
	char err[PATH_MAX + 128];
	struct store *st;
	uint64_t t0, c0, deleted = 0;
	size_t done = 0;

	remove_store(path);
	st = store_open(path, STORE_READ_WRITE, err, sizeof(err));
	if (!st) {
		fprintf(stderr, "store_bench: %s\n", err);
		exit(1);
	}
	store_set_limits(st, max_bytes, 0);
	t0 = wall_ns();
	c0 = cpu_ns();
	while (done < l->n) {
		size_t n = l->n - done < BATCH ? l->n - done : BATCH;

		if (store_add_lines(st, (const char *const *)l->line + done, l->len + done, n,
				    NULL) != (int)n) {
			fprintf(stderr, "store_bench: a batch failed\n");
			exit(1);
		}
		done += n;
		/* the writer thread prunes once a second: every few batches at this rate */
		if (max_bytes && ((done / BATCH) % 4 == 0 || done == l->n))
			store_prune(st, (uint64_t)time(NULL) * 1000000000ull, &deleted);
	}
	double secs = (double)(wall_ns() - t0) / 1e9, cpu = (double)(cpu_ns() - c0) / 1e9;
	store_close(st);
	printf("  store_add_lines%s  %9.0f spans/s  %9.0f per CPU-s  (%zu spans in %.2f s; file "
	       "%.1f MiB",
	       max_bytes ? ", 32 MiB bound" : "              ", (double)l->n / secs,
	       (double)l->n / cpu, l->n, secs, (double)file_size(path) / (1 << 20));
	if (max_bytes)
		printf(", %" PRIu64 " traces deleted)\n", deleted);
	else
		printf(", %.0f bytes a span)\n", (double)file_size(path) / (double)l->n);
}

static void case_sink(const char *path, struct resource *const *res, size_t n)
{
	struct sink *sk;
	uint64_t t0, now = (uint64_t)time(NULL) * 1000000000ull;
	uint8_t trace[16], prev[8];

	remove_store(path);
	sk = sink_store_new(&(struct sink_store_config){
	    .path = path, .max_bytes = 0, .max_age_ns = 0, .queue_bytes = (size_t)2 << 30});
	if (!sk)
		exit(1);
	t0 = wall_ns();
	for (size_t i = 0; i < n; i++)
		sk->emit(sk, make_span(res, now, (unsigned)i, trace, prev));
	double emit_s = (double)(wall_ns() - t0) / 1e9;
	sk->flush(sk, 600000);
	double secs = (double)(wall_ns() - t0) / 1e9;
	sk->destroy(sk);
	printf("  sink_store (end to end)        %9.0f spans/s  (%" PRIu64 " committed, %" PRIu64
	       " dropped; the emitting thread: %.0f spans/s)\n",
	       (double)g_stats.store_spans_written / secs, g_stats.store_spans_written,
	       g_stats.drop_store_queue_full + g_stats.drop_store_write_failed, (double)n / emit_s);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/var/tmp";
	size_t n = argc > 2 ? (size_t)atol(argv[2]) : 200000;
	struct resource *res[NPROC];
	struct lines l = {0};
	char path[PATH_MAX];

	if (!n) {
		fprintf(stderr, "usage: %s [DIR] [SPANS]\n", argv[0]);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/hoptrace-store-bench.db", dir);
	for (unsigned i = 0; i < NPROC; i++)
		res[i] = make_resource(i);
	make_lines(&l, res, n);
	printf("store_bench: %zu spans (%.0f bytes a line), 4 a trace, batches of %d, in %s\n", n,
	       (double)l.bytes / (double)n, BATCH, dir);
	case_add_lines(path, &l, 0);
	case_sink(path, res, n);
	case_add_lines(path, &l, 32u << 20);
	remove_store(path);
	for (size_t i = 0; i < l.n; i++)
		free(l.line[i]);
	free(l.line);
	free(l.len);
	for (unsigned i = 0; i < NPROC; i++)
		resource_put(res[i]);
	return 0;
}
