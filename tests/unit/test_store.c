// SPDX-License-Identifier: BSD-2-Clause
/*
 * Unit tests for the embedded store (agent/store.c) on a real SQLite file in a temporary
 * directory: each search filter, the trace summaries, dependencies with their propagation
 * verdicts, retention by size and by age (whole traces, oldest first, room given back), a
 * file that is not a database, malformed lines, and the tsource kind store:PATH.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "sink.h"
#include "span.h"
#include "stats.h"
#include "store.h"
#include "text.h"
#include "tsource.h"

#define T0 1700000000000000000ull /* a start time, ns */
#define MS 1000000ull

struct fixture {
	char dir[64];
	char path[128];
	struct store *st;
};

/* One span line of the JSON schema: trace id t00..01, span id the byte s 8 times, parent
 * the byte p 8 times (0: a root). extra: more attribute members, starting with ',' or empty. */
static int span_line(char *buf, size_t cap, int t, int s, int p, const char *service,
		     const char *name, const char *kind, uint64_t start, uint64_t dur, bool error,
		     const char *extra)
{
	char parent[20] = "", sid[20];

	for (int i = 0; i < 16; i += 2) {
		snprintf(sid + i, 3, "%02x", s);
		if (p)
			snprintf(parent + i, 3, "%02x", p);
	}
	return snprintf(buf, cap,
			"{\"trace_id\":\"%02x000000000000000000000000000001\",\"span_id\":"
			"\"%s\",\"parent_span_id\":\"%s\",\"name\":\"%s\","
			"\"kind\":\"%s\",\"start_unix_ns\":%llu,\"end_unix_ns\":%llu,"
			"\"duration_ns\":%llu,\"status\":\"%s\",\"status_message\":\"\","
			"\"service.name\":\"%s\",\"pid\":1,\"tid\":1,\"trace_flags\":1,"
			"\"tracestate\":\"\",\"attributes\":{\"http.request.method\":\"GET\"%s},"
			"\"links\":[],\"resource\":{}}",
			t, sid, parent, name, kind, (unsigned long long)start,
			(unsigned long long)(start + dur), (unsigned long long)dur,
			error ? "ERROR" : "UNSET", service, extra);
}

static void ids_of(int t, uint8_t out[16])
{
	memset(out, 0, 16);
	out[0] = (uint8_t)t;
	out[15] = 1;
}

static int add_one(struct store *st, const char *line)
{
	size_t len = strlen(line);

	return store_add_lines(st, &line, &len, 1, NULL);
}

static int add_span(struct store *st, int t, int s, int p, const char *service, const char *name,
		    const char *kind, uint64_t start, uint64_t dur, bool error, const char *extra)
{
	char line[2048];

	span_line(line, sizeof(line), t, s, p, service, name, kind, start, dur, error, extra);
	return add_one(st, line);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char err[256];

	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/test_store.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	/* a directory that does not exist yet: the store creates it, 0700 */
	snprintf(fx->path, sizeof(fx->path), "%s/sub/traces.db", fx->dir);
	fx->st = store_open(fx->path, STORE_READ_WRITE, err, sizeof(err));
	if (!fx->st)
		fail_msg("%s", err);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	char cmd[128];

	store_close(fx->st);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", fx->dir);
	assert_int_equal(system(cmd), 0);
	free(fx);
	return 0;
}

/*
 * The run the searches look at:
 *   trace 1: front GET /checkout (root, 300 ms) -> client to cart (callee named, ok)
 *            -> cart GET /cart/{id} 200 ms; route /cart/{id}; user.id=42
 *   trace 2: front GET /health 5 ms, no error
 *   trace 3: front GET /pay (root 900 ms, error) -> client (no callee attribute, dropped)
 *            -> payments POST /charge server child, error; card.brand=visa
 */
static void fill(struct store *st)
{
	assert_int_equal(add_span(st, 1, 0x11, 0, "front", "GET /checkout", "SERVER", T0, 300 * MS,
				  false, ",\"http.route\":\"/checkout\""),
			 1);
	assert_int_equal(add_span(st, 1, 0x12, 0x11, "front", "GET", "CLIENT", T0 + MS, 250 * MS,
				  false,
				  ",\"hoptrace.callee.service\":\"cart\","
				  "\"hoptrace.propagation\":\"ok\""),
			 1);
	assert_int_equal(add_span(st, 1, 0x13, 0x12, "cart", "GET /cart/7", "SERVER", T0 + 2 * MS,
				  200 * MS, false, ",\"http.route\":\"/cart/{id}\",\"user.id\":42"),
			 1);
	assert_int_equal(add_span(st, 2, 0x21, 0, "front", "GET /health", "SERVER", T0 + 1000 * MS,
				  5 * MS, false, ",\"thread.id\":777"),
			 1);
	assert_int_equal(add_span(st, 3, 0x31, 0, "front", "GET /pay", "SERVER", T0 + 2000 * MS,
				  900 * MS, true, ""),
			 1);
	assert_int_equal(add_span(st, 3, 0x33, 0x32, "payments", "POST /charge", "SERVER",
				  T0 + 2002 * MS, 800 * MS, true, ",\"card.brand\":\"visa\""),
			 1);
	assert_int_equal(add_span(st, 3, 0x32, 0x31, "front", "POST", "CLIENT", T0 + 2001 * MS,
				  850 * MS, true, ",\"hoptrace.propagation\":\"dropped\""),
			 1);
}

/* The trace numbers (first id byte) a search finds, newest first, as a string "3,1". */
static const char *found(struct store *st, const struct store_filter *f)
{
	static char out[64];
	struct store_trace_summary sum[16];
	int n = store_find_traces(st, f, sum, 16);
	size_t len = 0;

	assert_true(n >= 0);
	out[0] = '\0';
	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(out + len, sizeof(out) - len, "%s%d", i ? "," : "",
					sum[i].trace_id[0]);
	return out;
}

static void test_filters(void **state)
{
	struct fixture *fx = *state;
	struct store_filter f;

	fill(fx->st);
#define SEARCH(...) (f = (struct store_filter){.error = -1, __VA_ARGS__}, found(fx->st, &f))
	assert_string_equal(SEARCH(), "3,2,1");
	assert_string_equal(SEARCH(.service = "cart"), "1");
	assert_string_equal(SEARCH(.service = "front"), "3,2,1");
	assert_string_equal(SEARCH(.service = "nobody"), "");
	/* operation: the span name or the route */
	assert_string_equal(SEARCH(.operation = "GET /health"), "2");
	assert_string_equal(SEARCH(.operation = "/cart/{id}"), "1");
	assert_string_equal(SEARCH(.service = "front", .operation = "/cart/{id}"), "");
	/* durations of the named span, else of the root */
	assert_string_equal(SEARCH(.min_duration_ns = 250 * MS), "3,1");
	assert_string_equal(SEARCH(.max_duration_ns = 10 * MS), "2");
	assert_string_equal(SEARCH(.service = "cart", .min_duration_ns = 250 * MS), "");
	assert_string_equal(
	    SEARCH(.service = "cart", .min_duration_ns = 150 * MS, .max_duration_ns = 210 * MS),
	    "1");
	f = (struct store_filter){.error = 1};
	assert_string_equal(found(fx->st, &f), "3");
	f = (struct store_filter){.error = 0};
	assert_string_equal(found(fx->st, &f), "2,1");
	assert_string_equal(SEARCH(.attr_key = {"user.id"}, .attr_value = {"42"}, .nattrs = 1),
			    "1");
	assert_string_equal(SEARCH(.attr_key = {"card.brand"}, .attr_value = {"visa"}, .nattrs = 1),
			    "3");
	assert_string_equal(SEARCH(.attr_key = {"card.brand", "http.request.method"},
				   .attr_value = {"visa", "GET"}, .nattrs = 2),
			    "3");
	assert_string_equal(SEARCH(.attr_key = {"card.brand"}, .attr_value = {"amex"}, .nattrs = 1),
			    "");
	/* a key left out of the index: found by reading the lines */
	assert_string_equal(SEARCH(.attr_key = {"thread.id"}, .attr_value = {"777"}, .nattrs = 1),
			    "2");
	assert_string_equal(SEARCH(.attr_key = {"thread.id"}, .attr_value = {"778"}, .nattrs = 1),
			    "");
	assert_string_equal(SEARCH(.attr_key = {"a\"b"}, .attr_value = {"1"}, .nattrs = 1), "");
	assert_string_equal(SEARCH(.from_unix_ns = T0 + 500 * MS), "3,2");
	assert_string_equal(SEARCH(.to_unix_ns = T0 + 1500 * MS), "2,1");
	assert_string_equal(SEARCH(.from_unix_ns = T0 + 500 * MS, .to_unix_ns = T0 + 1500 * MS),
			    "2");
	f = (struct store_filter){.error = -1, .has_trace_id = true};
	ids_of(2, f.trace_id);
	assert_string_equal(found(fx->st, &f), "2");
	assert_string_equal(SEARCH(.limit = 2), "3,2");
#undef SEARCH
}

static void test_summary(void **state)
{
	struct fixture *fx = *state;
	struct store_filter f = {.error = -1, .service = "payments"};
	struct store_trace_summary sum[4];

	fill(fx->st);
	assert_int_equal(store_find_traces(fx->st, &f, sum, 4), 1);
	assert_int_equal(sum[0].trace_id[0], 3);
	assert_int_equal(sum[0].nspans, 3);
	assert_int_equal(sum[0].nerrors, 3);
	assert_int_equal(sum[0].nservices, 2);
	assert_true(sum[0].start_unix_ns == T0 + 2000 * MS);
	assert_true(sum[0].duration_ns == 900 * MS);
	/* the root arrived first here; trace 1's below arrives in another order */
	assert_string_equal(sum[0].root_service, "front");
	assert_string_equal(sum[0].root_name, "GET /pay");
}

/* The root is the earliest span without a parent, whatever order the spans come in. */
static void test_summary_root_late(void **state)
{
	struct fixture *fx = *state;
	struct store_filter f = {.error = -1};
	struct store_trace_summary sum[4];

	add_span(fx->st, 5, 0x52, 0x51, "db", "SELECT", "SERVER", T0 + 5 * MS, MS, false, "");
	add_span(fx->st, 5, 0x51, 0, "api", "GET /", "SERVER", T0 + 1 * MS, 10 * MS, false, "");
	add_span(fx->st, 5, 0x50, 0x49, "edge", "GET /", "CLIENT", T0, 20 * MS, false, "");
	assert_int_equal(store_find_traces(fx->st, &f, sum, 4), 1);
	assert_string_equal(sum[0].root_service, "api");
	assert_true(sum[0].start_unix_ns == T0);
	assert_true(sum[0].duration_ns == 20 * MS);
	assert_int_equal(sum[0].nservices, 3);
}

static int collect_line(void *ctx, const char *line, size_t len)
{
	char *out = ctx;
	size_t used = strlen(out);

	/* the span id's first byte, from the line */
	(void)len;
	snprintf(out + used, 64 - used, "%.2s;", strstr(line, "\"span_id\":\"") + 11);
	return 0;
}

static void test_trace_lines(void **state)
{
	struct fixture *fx = *state;
	uint8_t id[16];
	char out[64] = "";

	fill(fx->st);
	ids_of(3, id);
	assert_int_equal(store_trace_lines(fx->st, id, collect_line, out), 0);
	assert_string_equal(out, "31;32;33;"); /* by start time, not arrival */
	ids_of(9, id);
	assert_int_equal(store_trace_lines(fx->st, id, collect_line, out), -ENOENT);
}

static int list_service(void *ctx, const char *service)
{
	strcat(ctx, service);
	strcat(ctx, ";");
	return 0;
}

static int list_operation(void *ctx, const char *name, const char *kind)
{
	strcat(ctx, name);
	strcat(ctx, "/");
	strcat(ctx, kind);
	strcat(ctx, ";");
	return 0;
}

static void test_services_operations(void **state)
{
	struct fixture *fx = *state;
	char out[256] = "";

	fill(fx->st);
	assert_int_equal(store_services(fx->st, list_service, out), 0);
	assert_string_equal(out, "cart;front;payments;");
	out[0] = '\0';
	assert_int_equal(store_operations(fx->st, "front", list_operation, out), 0);
	assert_string_equal(out,
			    "GET/CLIENT;GET /checkout/SERVER;GET /health/SERVER;GET /pay/SERVER;"
			    "POST/CLIENT;");
}

static int list_edge(void *ctx, const struct store_edge *e)
{
	char *out = ctx;
	size_t n = strlen(out);

	snprintf(out + n, 256 - n, "%s->%s calls=%llu errors=%llu ok=%llu dropped=%llu;", e->parent,
		 e->child, (unsigned long long)e->calls, (unsigned long long)e->errors,
		 (unsigned long long)e->by_propagation[PROP_OK],
		 (unsigned long long)e->by_propagation[PROP_DROPPED]);
	return 0;
}

static void test_dependencies(void **state)
{
	struct fixture *fx = *state;
	char out[256] = "";

	fill(fx->st);
	/* front->cart named by the client span; front->payments from the server child */
	assert_int_equal(store_dependencies(fx->st, 0, 0, list_edge, out), 0);
	assert_string_equal(out, "front->cart calls=1 errors=0 ok=1 dropped=0;"
				 "front->payments calls=1 errors=1 ok=0 dropped=1;");
	out[0] = '\0';
	assert_int_equal(store_dependencies(fx->st, T0 + 1500 * MS, 0, list_edge, out), 0);
	assert_string_equal(out, "front->payments calls=1 errors=1 ok=0 dropped=1;");
}

static void test_malformed_lines(void **state)
{
	struct fixture *fx = *state;
	char good[2048];
	const char *lines[6];
	size_t lens[6];
	uint64_t malformed = 0;

	span_line(good, sizeof(good), 7, 0x71, 0, "svc", "GET /", "SERVER", T0, MS, false, "");
	lines[0] = "not json";
	lines[1] = "[1,2]";
	lines[2] = "{\"trace_id\":\"zz\",\"span_id\":\"0000000000000001\"}";
	lines[3] = good;
	/* a span without times */
	lines[4] = "{\"trace_id\":\"01000000000000000000000000000001\",\"span_id\":"
		   "\"0100000000000001\",\"name\":\"x\",\"service.name\":\"y\"}";
	lines[5] = "";
	for (int i = 0; i < 6; i++)
		lens[i] = strlen(lines[i]);
	assert_int_equal(store_add_lines(fx->st, lines, lens, 6, &malformed), 1);
	assert_int_equal(malformed, 5);
}

/* Trace t: 10 spans of about 1 KiB, starting at start. */
static void add_big_trace(struct store *st, int t, uint64_t start)
{
	char pad[1200], extra[1300], line[4096];
	const char *lines[10];
	char *bufs[10];
	size_t lens[10];

	memset(pad, 'x', 1000);
	pad[1000] = '\0';
	snprintf(extra, sizeof(extra), ",\"pad\":\"%s\"", pad);
	for (int i = 0; i < 10; i++) {
		int n = span_line(line, sizeof(line), t, 0x10 + i, i ? 0x10 : 0, "svc", "GET /",
				  "SERVER", start + (uint64_t)i, MS, false, extra);

		bufs[i] = strndup(line, (size_t)n);
		lines[i] = bufs[i];
		lens[i] = (size_t)n;
	}
	assert_int_equal(store_add_lines(st, lines, lens, 10, NULL), 10);
	for (int i = 0; i < 10; i++)
		free(bufs[i]);
}

static int count_spans_of(struct store *st, int t)
{
	uint8_t id[16];
	char out[64] = "";
	int n = 0;

	ids_of(t, id);
	if (store_trace_lines(st, id, collect_line, out) != 0)
		return 0;
	for (char *p = out; *p; p++)
		n += *p == ';';
	return n;
}

static void test_retention_size(void **state)
{
	struct fixture *fx = *state;
	struct store_filter f = {.error = -1, .limit = 1000};
	struct store_trace_summary *sum = calloc(1000, sizeof(*sum));
	uint64_t deleted = 0;
	int64_t before, after;
	int n;

	assert_non_null(sum);
	for (int t = 1; t <= 200; t++)
		add_big_trace(fx->st, t, T0 + (uint64_t)t * 1000 * MS);
	before = store_size_bytes(fx->st);
	assert_true(before > 2 << 20); /* 2000 spans of 1 KiB and their indexes */
	store_set_limits(fx->st, 1 << 20, 0);
	assert_int_equal(store_prune(fx->st, T0, &deleted), 0);
	after = store_size_bytes(fx->st);
	assert_true(after <= 1 << 20);
	/* the file really shrank */
	struct stat sb;
	assert_int_equal(stat(fx->path, &sb), 0);
	assert_true(sb.st_size <= 1 << 20);
	assert_true(deleted > 0 && deleted < 200);
	n = store_find_traces(fx->st, &f, sum, 1000);
	assert_int_equal((uint64_t)n + deleted, 200);
	/* the oldest went, the newest stayed; whole traces: every span of a kept trace is
	 * there, no span of a deleted one */
	assert_int_equal(sum[0].trace_id[0], 200);
	assert_int_equal(sum[n - 1].trace_id[0], 200 - n + 1);
	assert_int_equal(count_spans_of(fx->st, 200 - n + 1), 10);
	assert_int_equal(count_spans_of(fx->st, 200 - n), 0);
	assert_int_equal(sum[n - 1].nspans, 10);

	/* writing on at the bound, pruning as the agent does: the file stays within it, the
	 * newest traces are kept, and pruning does not empty the store (holes left by deleted
	 * rows are reused before the file grows) */
	for (int t = 201; t <= 250; t++) {
		add_big_trace(fx->st, t, T0 + (uint64_t)t * 1000 * MS);
		if (t % 5 == 0)
			assert_int_equal(store_prune(fx->st, T0, NULL), 0);
	}
	assert_true(store_size_bytes(fx->st) <= 1 << 20);
	n = store_find_traces(fx->st, &f, sum, 1000);
	assert_true(n >= 20);
	assert_int_equal(sum[0].trace_id[0], 250);
	free(sum);
}

static void test_retention_age(void **state)
{
	struct fixture *fx = *state;
	struct store_filter f = {.error = -1};
	struct store_trace_summary sum[8];
	uint64_t deleted = 0;

	for (int t = 1; t <= 5; t++)
		add_big_trace(fx->st, t, T0 + (uint64_t)t * 3600 * 1000 * MS);
	/* now: 5 h 30 min after T0; max age 2 h: traces 1..3 ended over 2 h ago */
	store_set_limits(fx->st, 0, 2ull * 3600 * 1000 * MS);
	assert_int_equal(
	    store_prune(fx->st, T0 + 5ull * 3600 * 1000 * MS + 1800 * 1000 * MS, &deleted), 0);
	assert_int_equal(deleted, 3);
	assert_int_equal(store_find_traces(fx->st, &f, sum, 8), 2);
	assert_int_equal(sum[0].trace_id[0], 5);
	assert_int_equal(sum[1].trace_id[0], 4);
	assert_int_equal(count_spans_of(fx->st, 3), 0);
}

/* A store that comes back after long holds many expired traces: they go oldest first in
 * committed rounds, 8000 a call at most (one transaction for all stalled the writer and
 * grew the WAL by every page deleted), and the next call takes the rest. */
static void test_retention_age_rounds(void **state)
{
	enum { OLD = 10000, BATCH = 500 };
	struct fixture *fx = *state;
	struct store_filter f = {.error = -1};
	struct store_trace_summary sum[2];
	static char lines[BATCH][600];
	const char *ptr[BATCH];
	size_t len[BATCH];
	uint64_t deleted = 0;

	for (int b = 0; b < OLD / BATCH; b++) {
		for (int i = 0; i < BATCH; i++) {
			char hex[9];

			len[i] = (size_t)span_line(
			    lines[i], sizeof(lines[i]), 1, 1, 0, "front", "GET /", "SERVER",
			    T0 + (uint64_t)(b * BATCH + i) * MS, MS, false, "");
			/* a trace id of its own: 8 hex digits into the id after its first byte */
			snprintf(hex, sizeof(hex), "%08x", b * BATCH + i);
			memcpy(lines[i] + strlen("{\"trace_id\":\"01"), hex, 8);
			ptr[i] = lines[i];
		}
		assert_int_equal(store_add_lines(fx->st, ptr, len, BATCH, NULL), BATCH);
	}
	assert_int_equal(add_span(fx->st, 2, 0x21, 0, "front", "GET /new", "SERVER",
				  T0 + 48ull * 3600 * 1000 * MS, MS, false, ""),
			 1);
	store_set_limits(fx->st, 0, 3600ull * 1000 * MS);
	assert_int_equal(store_prune(fx->st, T0 + 48ull * 3600 * 1000 * MS, &deleted), 0);
	assert_int_equal(deleted, 8000);
	/* the oldest went first: the earliest left is number 8000 */
	f.to_unix_ns = T0 + 8000 * MS;
	assert_int_equal(store_find_traces(fx->st, &f, sum, 2), 1);
	assert_int_equal(sum[0].start_unix_ns, T0 + 8000 * MS);
	assert_int_equal(store_prune(fx->st, T0 + 48ull * 3600 * 1000 * MS, &deleted), 0);
	assert_int_equal(deleted, OLD);
	f.to_unix_ns = 0;
	assert_int_equal(store_find_traces(fx->st, &f, sum, 2), 1);
	assert_int_equal(sum[0].trace_id[0], 2);
}

static void test_private_modes(void **state)
{
	struct fixture *fx = *state;
	char dir[160];
	struct stat sb;

	snprintf(dir, sizeof(dir), "%s/sub", fx->dir);
	assert_int_equal(stat(dir, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_int_equal(stat(fx->path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
}

/* The agent writes its store as root: nothing planted by another user is followed or
 * written (a symbolic link, in the path or as the file; another user's file; a directory
 * others may write to), and a file of ours left readable by others is made private. */
static void expect_refused(const char *path, const char *reason)
{
	char err[512];
	int e = 0;

	assert_null(store_open_errno(path, STORE_READ_WRITE, &e, err, sizeof(err)));
	assert_int_equal(e, -EPERM);
	if (!strstr(err, reason))
		fail_msg("%s: expected '%s'", err, reason);
}

static void test_planted_paths(void **state)
{
	struct fixture *fx = *state;
	char path[256], target[256], dir[256], err[512];
	struct stat sb;
	struct store *st;
	int fd;

	/* the file a symbolic link (to a file of the system, say): not followed, not created */
	snprintf(target, sizeof(target), "%s/target", fx->dir);
	snprintf(path, sizeof(path), "%s/link.db", fx->dir);
	assert_int_equal(symlink(target, path), 0);
	expect_refused(path, "symbolic link");
	assert_int_equal(access(target, F_OK), -1);
	/* a symbolic link on the way to it */
	snprintf(dir, sizeof(dir), "%s/linkdir", fx->dir);
	snprintf(target, sizeof(target), "%s/sub", fx->dir);
	assert_int_equal(symlink(target, dir), 0);
	snprintf(path, sizeof(path), "%s/linkdir/x.db", fx->dir);
	expect_refused(path, "symbolic link");
	snprintf(path, sizeof(path), "%s/linkdir/deeper/x.db", fx->dir);
	expect_refused(path, "symbolic link");
	/* a directory others may write to (where they could plant the -wal file) */
	snprintf(dir, sizeof(dir), "%s/open", fx->dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(chmod(dir, 01777), 0);
	snprintf(path, sizeof(path), "%s/open/x.db", fx->dir);
	expect_refused(path, "writable by other users");
	assert_int_equal(access(path, F_OK), -1);
	/* a file of ours readable by others: opened, and made private */
	snprintf(path, sizeof(path), "%s/sub/loose.db", fx->dir);
	fd = open(path, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(fchmod(fd, 0644), 0);
	close(fd);
	st = store_open(path, STORE_READ_WRITE, err, sizeof(err));
	if (!st)
		fail_msg("%s", err);
	store_close(st);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	/* another user's file: refused (only root can give a file away) */
	if (geteuid() != 0) {
		print_message("not root: the test of another user's file needs root\n");
		skip();
	}
	snprintf(path, sizeof(path), "%s/sub/foreign.db", fx->dir);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(fchown(fd, 65534, 65534), 0);
	close(fd);
	expect_refused(path, "not a regular file of this user's");
	/* a directory of another user's (who may plant files in it) */
	snprintf(dir, sizeof(dir), "%s/theirs", fx->dir);
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(chown(dir, 65534, 65534), 0);
	snprintf(path, sizeof(path), "%s/theirs/x.db", fx->dir);
	expect_refused(path, "writable by other users");
}

static void sql(const char *path, const char *stmt)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	if (sqlite3_exec(db, stmt, NULL, NULL, NULL) != SQLITE_OK)
		fail_msg("%s: %s", stmt, sqlite3_errmsg(db));
	sqlite3_close(db);
}

/* A store file may come from anyone (hoptrace query and ui read the path they are given,
 * often as root): one with code in its schema (a trigger, a view, a virtual table, none of
 * which a hoptrace store has) is refused by readers and by the writer. */
static void test_schema_code_refused(void **state)
{
	static const char *const planted[] = {
	    "CREATE TRIGGER t AFTER INSERT ON spans BEGIN DELETE FROM traces; END",
	    "CREATE VIEW v AS SELECT * FROM spans",
	};
	struct fixture *fx = *state;
	char err[512];
	int e = 0;

	assert_int_equal(
	    add_span(fx->st, 1, 0x11, 0, "front", "GET /", "SERVER", T0, MS, false, ""), 1);
	store_close(fx->st);
	fx->st = NULL;
	for (size_t i = 0; i < sizeof(planted) / sizeof(planted[0]); i++) {
		sql(fx->path, planted[i]);
		assert_null(store_open_errno(fx->path, STORE_READ_ONLY, &e, err, sizeof(err)));
		assert_int_equal(e, -EPROTO);
		assert_null(store_open_errno(fx->path, STORE_READ_WRITE, &e, err, sizeof(err)));
		assert_int_equal(e, -EPROTO);
		sql(fx->path, i == 0 ? "DROP TRIGGER t" : "DROP VIEW v");
	}
	/* without them, the same file opens */
	fx->st = store_open(fx->path, STORE_READ_ONLY, err, sizeof(err));
	if (!fx->st)
		fail_msg("%s", err);
}

static double elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* A search the indexes do not serve (an attribute left out of them: every line read) stops
 * at the time limit with -ETIMEDOUT, where it would hold up the UI's endpoint (and the
 * /metrics and /healthz it shares) for as long as it reads; without a limit it finishes. */
static void test_time_limit(void **state)
{
	struct fixture *fx = *state;
	struct store_filter f = {.error = -1, .nattrs = 1};
	struct store_trace_summary sum[4];
	static char lines[1000][600];
	const char *ptr[1000];
	size_t len[1000];
	struct timespec t0;
	double full_ms;

	for (int b = 0; b < 10; b++) {
		for (int i = 0; i < 1000; i++) {
			int n = b * 1000 + i;

			len[i] =
			    (size_t)span_line(lines[i], sizeof(lines[i]), n % 250, n / 250 + 1, 0,
					      "front", "GET /", "SERVER", T0 + (uint64_t)n * MS, MS,
					      false, ",\"url.full\":\"http://h/p\"");
			ptr[i] = lines[i];
		}
		assert_int_equal(store_add_lines(fx->st, ptr, len, 1000, NULL), 1000);
	}
	f.attr_key[0] = "url.full";
	f.attr_value[0] = "http://h/none";
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(store_find_traces(fx->st, &f, sum, 4), 0);
	full_ms = elapsed_ms(&t0);
	if (full_ms < 5)
		fail_msg("the whole scan took %.1f ms: too fast to test a 1 ms limit", full_ms);
	store_set_time_limit(fx->st, 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(store_find_traces(fx->st, &f, sum, 4), -ETIMEDOUT);
	assert_true(elapsed_ms(&t0) < full_ms);
	assert_non_null(strstr(store_strerror(-ETIMEDOUT), "time limit"));
	/* the limit is per query: a quick one after it answers */
	f.nattrs = 0;
	assert_int_equal(store_find_traces(fx->st, &f, sum, 4), 4);
	store_set_time_limit(fx->st, 0);
	f.nattrs = 1;
	assert_int_equal(store_find_traces(fx->st, &f, sum, 4), 0);
	print_message("scan of 10,000 lines: %.1f ms\n", full_ms);
}

static void test_not_a_database(void **state)
{
	struct fixture *fx = *state;
	char path[160], err[512], moved[512];
	struct store *st;
	int fd, e = 0;

	snprintf(path, sizeof(path), "%s/junk.db", fx->dir);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	for (int i = 0; i < 64; i++)
		assert_int_equal(write(fd, "this is not a database at all!!\n", 32), 32);
	close(fd);
	st = store_open_errno(path, STORE_READ_WRITE, &e, err, sizeof(err));
	assert_null(st);
	assert_int_equal(e, -EUCLEAN);
	assert_non_null(strstr(err, "not a SQLite database"));
	assert_non_null(strstr(err, path));
	st = store_open(path, STORE_READ_ONLY, err, sizeof(err));
	assert_null(st);
	/* moved aside, a new store opens in its place */
	assert_int_equal(store_move_aside(path, moved, sizeof(moved)), 0);
	assert_non_null(strstr(moved, ".corrupt-"));
	assert_int_equal(access(moved, F_OK), 0);
	st = store_open(path, STORE_READ_WRITE, err, sizeof(err));
	assert_non_null(st);
	store_close(st);
	/* a missing store read-only: says so */
	snprintf(path, sizeof(path), "%s/none.db", fx->dir);
	assert_null(store_open(path, STORE_READ_ONLY, err, sizeof(err)));
	assert_non_null(strstr(err, "no such file"));
}

static int count_tsource(void *ctx, const char *line, size_t len)
{
	(void)line;
	(void)len;
	(*(int *)ctx)++;
	return 0;
}

static int count_bytes(void *ctx, const char *line, size_t len)
{
	(void)line;
	*(size_t *)ctx += len;
	return 0;
}

/* A crafted store with a span line of 64 MiB (a hoptrace line is at most 1 MiB) is not read
 * whole into memory: the read fails with -E2BIG. */
static void test_huge_value_refused(void **state)
{
	struct fixture *fx = *state;
	uint8_t id[16];
	size_t bytes = 0;
	char err[512];

	assert_int_equal(
	    add_span(fx->st, 1, 0x11, 0, "front", "GET /", "SERVER", T0, MS, false, ""), 1);
	store_close(fx->st);
	fx->st = NULL;
	sql(fx->path, "UPDATE spans SET line = '\"' || zeroblob(64 << 20) || '\"'");
	fx->st = store_open(fx->path, STORE_READ_ONLY, err, sizeof(err));
	if (!fx->st)
		fail_msg("%s", err);
	ids_of(1, id);
	assert_int_equal(store_trace_lines(fx->st, id, count_bytes, &bytes), -E2BIG);
	assert_int_equal(bytes, 0);
}

static void test_tsource_store(void **state)
{
	struct fixture *fx = *state;
	char spec[160];
	struct tsource_opts opts = {.service = "payments"};
	struct tsource_stats stats = {0};
	int n = 0;

	fill(fx->st);
	snprintf(spec, sizeof(spec), "store:%s", fx->path);
	assert_true(tsource_spec_known(spec));
	assert_int_equal(tsource_read("test", spec, NULL, count_tsource, &n, &stats), 0);
	assert_int_equal(n, 7);
	assert_int_equal(stats.spans, 7);
	n = 0;
	assert_int_equal(tsource_read("test", spec, &opts, count_tsource, &n, NULL), 0);
	assert_int_equal(n, 3); /* every span of the traces with a payments span */
	snprintf(spec, sizeof(spec), "store:%s/nothing.db", fx->dir);
	assert_true(tsource_read("test", spec, NULL, count_tsource, &n, NULL) < 0);
}

static struct span *sink_span(int t, uint64_t start)
{
	struct span *s = span_new();

	assert_non_null(s);
	memset(s->trace_id, 0, 16);
	s->trace_id[0] = (uint8_t)t;
	s->trace_id[15] = 1;
	memset(s->span_id, t, 8);
	s->kind = SPAN_KIND_SERVER;
	s->start_unix_ns = start;
	s->end_unix_ns = start + MS;
	snprintf(s->name, sizeof(s->name), "GET /sink");
	span_set_int(s, "http.response.status_code", 200);
	return s;
}

/* The sink end to end: spans emitted are committed by its thread by the flush; a queue too
 * small for a line drops and counts every span, never blocks. */
static void test_sink_store(void **state)
{
	struct fixture *fx = *state;
	struct store_filter f = {.error = -1, .operation = "GET /sink"};
	struct store_trace_summary sum[8];
	char path[160];
	struct sink *sk;

	snprintf(path, sizeof(path), "%s/sink/traces.db", fx->dir);
	memset(&g_stats, 0, sizeof(g_stats));
	sk = sink_store_new(&(struct sink_store_config){.path = path});
	assert_non_null(sk);
	for (int t = 1; t <= 5; t++)
		sk->emit(sk, sink_span(t, T0 + (uint64_t)t * MS));
	sk->flush(sk, 5000);
	sk->destroy(sk);
	assert_int_equal(g_stats.store_spans_written, 5);
	store_close(fx->st);
	fx->st = store_open(path, STORE_READ_ONLY, NULL, 0);
	assert_non_null(fx->st);
	assert_int_equal(store_find_traces(fx->st, &f, sum, 8), 5);

	snprintf(path, sizeof(path), "%s/sink2/traces.db", fx->dir);
	sk = sink_store_new(&(struct sink_store_config){.path = path, .queue_bytes = 16});
	assert_non_null(sk);
	for (int t = 1; t <= 5; t++)
		sk->emit(sk, sink_span(t, T0));
	sk->flush(sk, 5000);
	sk->destroy(sk);
	assert_int_equal(g_stats.drop_store_queue_full, 5);
	assert_int_equal(g_stats.store_spans_written, 5); /* none more */
}

/* The durations of --min-duration, --since and --store-max-age (text.c). */
static void test_durations(void **state)
{
	static const struct {
		const char *text;
		uint64_t ns;
	} good[] = {{"250ms", 250000000},    {"1.5s", 1500000000},
		    {"800us", 800000},	     {"90ns", 90},
		    {"2m", 120000000000},    {"1h", 3600000000000},
		    {"7d", 604800000000000}, {"0.25ms", 250000}};
	static const char *const bad[] = {"",
					  "5",
					  "ms",
					  "1.s",
					  "-1s",
					  "1x",
					  "1 s",
					  "1.5.s",
					  "1.0000000001s",
					  "200000d",
					  "99999999999999999999s"};
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(text_parse_duration_ns(good[i].text, &v), 0);
		assert_true(v == good[i].ns);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (text_parse_duration_ns(bad[i], &v) == 0)
			fail_msg("'%s' accepted", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_filters, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_summary, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_summary_root_late, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_trace_lines, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_services_operations, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dependencies, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_malformed_lines, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retention_size, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retention_age, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retention_age_rounds, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_private_modes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_not_a_database, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_planted_paths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_time_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_schema_code_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_huge_value_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tsource_store, setup, teardown),
	    cmocka_unit_test(test_durations),
	    cmocka_unit_test_setup_teardown(test_sink_store, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
