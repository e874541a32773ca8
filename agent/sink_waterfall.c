// SPDX-License-Identifier: BSD-2-Clause
/*
 * Waterfall sink: the default output, for a human at a terminal. Spans are grouped by trace
 * id and a trace is drawn as a tree with time bars once none of its spans arrived for
 * quiet_ms. Waiting is what makes a tree possible: spans end inside out, so a trace's root
 * arrives last and its children must be held until then.
 *
 * Memory is bounded: at most WF_MAX_SPANS_TOTAL spans are held, at most
 * WF_MAX_SPANS_PER_TRACE per trace. A trace that reaches the per-trace limit, or the least
 * recently active trace when the total limit is reached, is printed at once and marked
 * "[partial: buffer limit]"; spans of it that arrive later form a new group.
 *
 * Output (ASCII form; a UTF-8 locale gets box-drawing bars, use_color red error lines):
 *
 *   trace 4bf92f3577b34da6a3ce929d0e0e4736  4 spans  30.00 ms  frontend
 *     frontend SERVER POST /checkout 500 30.00 ms ============
 *       frontend CLIENT GET /cart    200  8.00 ms =====-------
 *         cart SERVER GET /cart      200  7.00 ms -===--------
 *     pay SERVER GET /healthz        200  2.00 ms ---------=--  ^ parent 00f067aa0ba902b7 not seen
 *
 * (narrowed here: the name column is WF_LEFT_WIDTH wide, the bar WF_BAR_WIDTH)
 *
 * Text taken from spans (service names, paths) comes from untrusted processes and traffic:
 * only printable ASCII reaches the terminal, every other byte is shown as \xNN
 * (text_escape_terminal), so no escape sequence can be injected and column arithmetic stays
 * exact.
 */
#include "sink.h"
#include "resource.h"
#include "span.h"
#include "text.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WF_MAX_SPANS_TOTAL 10000
#define WF_MAX_SPANS_PER_TRACE 512
#define WF_HASH_BUCKETS 1024 /* power of two */
#define WF_BAR_WIDTH 40
#define WF_BAR_BYTES (WF_BAR_WIDTH * 3 + 1) /* box-drawing glyphs are 3 bytes in UTF-8 */
/* indent, service, kind and span name */
#define WF_LEFT_WIDTH 48
#define WF_MAX_INDENT_LEVELS 16

#define ANSI_BOLD "\033[1m"
#define ANSI_RED "\033[31m"
#define ANSI_RESET "\033[0m"

/* The spans of one trace held until it is printed. */
struct wf_trace {
	uint8_t trace_id[16];
	struct wf_trace *hash_next;
	struct wf_trace *older, *newer; /* activity list, by last arrival */
	uint64_t last_arrival_ns;	/* CLOCK_MONOTONIC */
	unsigned nspans, cap;
	struct span **spans; /* in arrival order */
};

/* One span while a trace is drawn. */
struct wf_node {
	const struct span *span;
	unsigned arrival; /* ties in start time keep arrival order */
	int parent;	  /* node index, -1 if the parent is not in the trace */
	int first_child;  /* children are linked latest start first */
	int next_sibling;
	unsigned depth;
	bool printed;
};

struct waterfall_sink {
	struct sink base;
	FILE *out;
	uint64_t quiet_ns;
	bool color;
	bool unicode;
	unsigned buffered_spans;
	struct wf_trace *buckets[WF_HASH_BUCKETS];
	struct wf_trace *oldest, *newest;
	/* drawing scratch, here so that printing never allocates */
	struct wf_node nodes[WF_MAX_SPANS_PER_TRACE];
	int stack[WF_MAX_SPANS_PER_TRACE];
	uint64_t traces_printed;
	uint64_t spans_printed;
	uint64_t traces_printed_early;
	uint64_t spans_dropped_nomem;
	uint64_t write_errors;
};

static struct waterfall_sink *to_wf(struct sink *sk)
{
	return (struct waterfall_sink *)sk;
}

static uint64_t monotonic_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* FNV-1a over the whole id: ids from upstream callers are not always random in any part. */
static unsigned trace_bucket(const uint8_t id[16])
{
	uint32_t h = 2166136261u;

	for (int i = 0; i < 16; i++)
		h = (h ^ id[i]) * 16777619u;
	return h & (WF_HASH_BUCKETS - 1);
}

static struct wf_trace *wf__find(struct waterfall_sink *wf, const uint8_t id[16])
{
	struct wf_trace *t = wf->buckets[trace_bucket(id)];

	while (t && memcmp(t->trace_id, id, sizeof(t->trace_id)) != 0)
		t = t->hash_next;
	return t;
}

static void wf__list_append(struct waterfall_sink *wf, struct wf_trace *t)
{
	t->older = wf->newest;
	t->newer = NULL;
	if (wf->newest)
		wf->newest->newer = t;
	else
		wf->oldest = t;
	wf->newest = t;
}

static void wf__list_unlink(struct waterfall_sink *wf, struct wf_trace *t)
{
	if (t->older)
		t->older->newer = t->newer;
	else
		wf->oldest = t->newer;
	if (t->newer)
		t->newer->older = t->older;
	else
		wf->newest = t->older;
	t->older = t->newer = NULL;
}

static struct wf_trace *wf__create(struct waterfall_sink *wf, const uint8_t id[16])
{
	struct wf_trace *t = calloc(1, sizeof(*t));
	unsigned b = trace_bucket(id);

	if (!t)
		return NULL;
	memcpy(t->trace_id, id, sizeof(t->trace_id));
	t->hash_next = wf->buckets[b];
	wf->buckets[b] = t;
	wf__list_append(wf, t);
	return t;
}

/* Unlink t from the sink and free it with its spans. */
static void wf__remove(struct waterfall_sink *wf, struct wf_trace *t)
{
	struct wf_trace **pp = &wf->buckets[trace_bucket(t->trace_id)];

	while (*pp && *pp != t)
		pp = &(*pp)->hash_next;
	if (*pp)
		*pp = t->hash_next;
	wf__list_unlink(wf, t);
	wf->buffered_spans -= t->nspans;
	for (unsigned i = 0; i < t->nspans; i++)
		span_free(t->spans[i]);
	free(t->spans);
	free(t);
}

static int trace_add_span(struct wf_trace *t, struct span *s)
{
	if (t->nspans == t->cap) {
		unsigned cap = t->cap ? t->cap * 2 : 8;
		struct span **spans;

		if (cap > WF_MAX_SPANS_PER_TRACE)
			cap = WF_MAX_SPANS_PER_TRACE;
		spans = realloc(t->spans, cap * sizeof(*spans));
		if (!spans)
			return -ENOMEM;
		t->spans = spans;
		t->cap = cap;
	}
	t->spans[t->nspans++] = s;
	return 0;
}

static bool bytes_are_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void put_hex(FILE *out, const uint8_t *bytes, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(out, "%02x", bytes[i]);
}

/* Untrusted text on the terminal: see the comment at the top of the file. */
static void put_sanitized(FILE *out, const char *str, size_t maxlen)
{
	char esc[TEXT_ESC_MAX_PER_BYTE + 1];

	for (size_t i = 0; i < maxlen && str[i]; i++)
		fputs((text_escape_terminal(esc, sizeof(esc), str + i, 1, TEXT_ESC_ASCII), esc),
		      out);
}

static const char *service_name_of(const struct span *s)
{
	if (s->resource && s->resource->service_name && s->resource->service_name[0])
		return s->resource->service_name;
	return "unknown_service";
}

static uint64_t span_duration_ns(const struct span *s)
{
	return s->end_unix_ns > s->start_unix_ns ? s->end_unix_ns - s->start_unix_ns : 0;
}

/* A fixed-width text column: sanitized, cut with "..." when too long, padded with spaces. */
struct column {
	char *buf; /* width + 1 bytes */
	size_t width;
	size_t len;
	bool cut;
};

static void column_put(struct column *c, const char *str, size_t maxlen)
{
	char esc[TEXT_ESC_MAX_PER_BYTE + 1];

	for (size_t i = 0; i < maxlen && str[i]; i++) {
		size_t n = text_escape_terminal(esc, sizeof(esc), str + i, 1, TEXT_ESC_ASCII);

		if (c->len + n > c->width) {
			c->cut = true;
			return;
		}
		memcpy(c->buf + c->len, esc, n);
		c->len += n;
	}
}

static void column_finish(struct column *c)
{
	memset(c->buf + c->len, ' ', c->width - c->len);
	/* an escape that did not fit whole leaves the column short of its width */
	if (c->cut && c->width >= 3)
		memcpy(c->buf + (c->len < c->width - 3 ? c->len : c->width - 3), "...", 3);
	c->buf[c->width] = '\0';
}

static const char *kind_label(uint8_t kind)
{
	switch (kind) {
	case SPAN_KIND_SERVER:
		return "SERVER";
	case SPAN_KIND_CLIENT:
		return "CLIENT";
	}
	return "?     ";
}

static void format_left_column(char buf[WF_LEFT_WIDTH + 1], const struct wf_node *nd)
{
	struct column c = {.buf = buf, .width = WF_LEFT_WIDTH};
	unsigned levels = nd->depth < WF_MAX_INDENT_LEVELS ? nd->depth : WF_MAX_INDENT_LEVELS;

	column_put(&c, "  ", SIZE_MAX);
	for (unsigned i = 0; i < levels; i++)
		column_put(&c, "  ", SIZE_MAX);
	column_put(&c, service_name_of(nd->span), SIZE_MAX);
	column_put(&c, " ", SIZE_MAX);
	column_put(&c, kind_label(nd->span->kind), SIZE_MAX);
	column_put(&c, " ", SIZE_MAX);
	column_put(&c, nd->span->name, sizeof(nd->span->name));
	column_finish(&c);
}

static void format_status_code(char *buf, size_t size, const struct span *s)
{
	const struct span_attr *a = span_find_attr(s, "http.response.status_code");

	if (a && a->type == SPAN_ATTR_INT)
		snprintf(buf, size, "%" PRId64, a->ival);
	else
		snprintf(buf, size, "-");
}

/* The span's place in [t0, t0 + total] drawn over WF_BAR_WIDTH columns, at least one wide. */
static void format_bar(const struct waterfall_sink *wf, char buf[WF_BAR_BYTES],
		       const struct span *s, uint64_t t0, uint64_t total)
{
	const char *fill = wf->unicode ? "\u2588" : "=";
	const char *empty = wf->unicode ? "\u2500" : "-";
	/* double: unix-ns offsets times the width could overflow 64 bits on absurd inputs */
	double span_total = (double)(total ? total : 1);
	double from = (double)(s->start_unix_ns - t0) * WF_BAR_WIDTH / span_total;
	double to =
	    (double)(s->start_unix_ns - t0 + span_duration_ns(s)) * WF_BAR_WIDTH / span_total;
	int first = (int)from;
	int last = (int)to; /* exclusive, rounded up below */
	size_t len = 0;

	if ((double)last < to)
		last++;
	if (first > WF_BAR_WIDTH - 1)
		first = WF_BAR_WIDTH - 1;
	if (last > WF_BAR_WIDTH)
		last = WF_BAR_WIDTH;
	if (last <= first)
		last = first + 1;
	for (int col = 0; col < WF_BAR_WIDTH; col++) {
		const char *glyph = col >= first && col < last ? fill : empty;
		size_t glen = strlen(glyph);

		memcpy(buf + len, glyph, glen);
		len += glen;
	}
	buf[len] = '\0';
}

static void print_parent_marker(struct waterfall_sink *wf, const struct wf_node *nd)
{
	fputs(wf->unicode ? "  \u21b3 parent " : "  ^ parent ", wf->out);
	put_hex(wf->out, nd->span->parent_span_id, sizeof(nd->span->parent_span_id));
	/* a parent in the trace that still leaves the span at top level: ids form a cycle */
	fputs(nd->parent < 0 ? " not seen" : " in a cycle", wf->out);
}

static void print_span_line(struct waterfall_sink *wf, const struct wf_node *nd, bool top_level,
			    uint64_t t0, uint64_t total)
{
	const struct span *s = nd->span;
	bool red = wf->color && s->status == SPAN_STATUS_ERROR;
	char left[WF_LEFT_WIDTH + 1];
	char bar[WF_BAR_BYTES];
	char code[24];

	format_left_column(left, nd);
	format_status_code(code, sizeof(code), s);
	format_bar(wf, bar, s, t0, total);
	fprintf(wf->out, "%s%s %3s %9.2f ms %s", red ? ANSI_RED : "", left, code,
		(double)span_duration_ns(s) / 1e6, bar);
	if (top_level && !bytes_are_zero(s->parent_span_id, sizeof(s->parent_span_id)))
		print_parent_marker(wf, nd);
	fputs(red ? ANSI_RESET "\n" : "\n", wf->out);
}

/* --capture-logs: the span's log lines under it, indented one level deeper, each with its
 * time from the span's start and its stream or file, escaped and cut to one line. */
#define WF_LOG_WIDTH 120

static void print_span_events(struct waterfall_sink *wf, const struct wf_node *nd)
{
	const struct span *s = nd->span;
	unsigned levels = nd->depth < WF_MAX_INDENT_LEVELS ? nd->depth : WF_MAX_INDENT_LEVELS;
	char line[WF_LOG_WIDTH + 1];

	for (unsigned i = 0; s->events && i < s->events->n; i++) {
		const struct span_event *ev = &s->events->ev[i];
		const char *stream = span_log_iostream(ev->source);
		struct column c = {.buf = line, .width = WF_LOG_WIDTH};
		uint64_t at =
		    ev->time_unix_ns > s->start_unix_ns ? ev->time_unix_ns - s->start_unix_ns : 0;
		char when[32];

		for (unsigned k = 0; k < levels + 2; k++)
			column_put(&c, "  ", SIZE_MAX);
		snprintf(when, sizeof(when), "| +%.2f ms ", (double)at / 1e6);
		column_put(&c, when, SIZE_MAX);
		if (stream)
			column_put(&c, stream, SIZE_MAX);
		else
			column_put(&c, s->events->text + ev->path_off, ev->path_len);
		column_put(&c, ": ", SIZE_MAX);
		column_put(&c, s->events->text + ev->off, ev->len);
		column_finish(&c);
		/* the padding column_finish adds is for columns to its right: none here */
		if (!c.cut)
			line[c.len] = '\0';
		fprintf(wf->out, "%s\n", line);
	}
	if (s->dropped_events) {
		for (unsigned k = 0; k < levels + 2; k++)
			fputs("  ", wf->out);
		fprintf(wf->out, "| (%" PRIu32 " more log lines dropped)\n", s->dropped_events);
	}
}

static int node_cmp_start(const void *a, const void *b)
{
	const struct wf_node *x = a, *y = b;

	if (x->span->start_unix_ns != y->span->start_unix_ns)
		return x->span->start_unix_ns < y->span->start_unix_ns ? -1 : 1;
	return x->arrival < y->arrival ? -1 : x->arrival > y->arrival;
}

/* Fill wf->nodes from t: sorted by start, parents resolved, children linked. */
static void build_tree(struct waterfall_sink *wf, const struct wf_trace *t)
{
	struct wf_node *nodes = wf->nodes;
	unsigned n = t->nspans;

	for (unsigned i = 0; i < n; i++)
		nodes[i] = (struct wf_node){.span = t->spans[i],
					    .arrival = i,
					    .parent = -1,
					    .first_child = -1,
					    .next_sibling = -1};
	qsort(nodes, n, sizeof(*nodes), node_cmp_start);
	/* quadratic, but n <= WF_MAX_SPANS_PER_TRACE and it runs once per printed trace */
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *pid = nodes[i].span->parent_span_id;

		if (bytes_are_zero(pid, 8))
			continue;
		for (unsigned j = 0; j < n; j++) {
			if (j != i && memcmp(nodes[j].span->span_id, pid, 8) == 0) {
				nodes[i].parent = (int)j;
				break;
			}
		}
	}
	/* prepending in start order links latest first, so the stack pops earliest first */
	for (unsigned i = 0; i < n; i++) {
		int p = nodes[i].parent;

		if (p < 0)
			continue;
		nodes[i].next_sibling = nodes[p].first_child;
		nodes[p].first_child = (int)i;
	}
}

/* Depth-first from root, without recursion: traces may be 512 spans deep. */
static void print_subtree(struct waterfall_sink *wf, unsigned n, int root, uint64_t t0,
			  uint64_t total)
{
	struct wf_node *nodes = wf->nodes;
	unsigned top = 0;

	nodes[root].depth = 0;
	wf->stack[top++] = root;
	while (top > 0) {
		int i = wf->stack[--top];

		if (nodes[i].printed)
			continue;
		nodes[i].printed = true;
		print_span_line(wf, &nodes[i], i == root, t0, total);
		print_span_events(wf, &nodes[i]);
		/* each node has one parent, so it is pushed at most once: top stays below n */
		for (int c = nodes[i].first_child; c >= 0 && top < n; c = nodes[c].next_sibling) {
			if (nodes[c].printed)
				continue;
			nodes[c].depth = nodes[i].depth + 1;
			wf->stack[top++] = c;
		}
	}
}

/* The service of the first true root, else of the earliest span. */
static const char *root_service(const struct wf_node *nodes, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (bytes_are_zero(nodes[i].span->parent_span_id, 8))
			return service_name_of(nodes[i].span);
	return service_name_of(nodes[0].span);
}

static void print_header(struct waterfall_sink *wf, const struct wf_trace *t, uint64_t total,
			 bool early)
{
	fputs(wf->color ? ANSI_BOLD "trace " : "trace ", wf->out);
	put_hex(wf->out, t->trace_id, sizeof(t->trace_id));
	fprintf(wf->out, "  %u span%s  %.2f ms  ", t->nspans, t->nspans == 1 ? "" : "s",
		(double)total / 1e6);
	put_sanitized(wf->out, root_service(wf->nodes, t->nspans), SIZE_MAX);
	if (early)
		fputs("  [partial: buffer limit]", wf->out);
	fputs(wf->color ? ANSI_RESET "\n" : "\n", wf->out);
}

static void print_trace(struct waterfall_sink *wf, const struct wf_trace *t, bool early)
{
	struct wf_node *nodes = wf->nodes;
	unsigned n = t->nspans;
	uint64_t t0 = UINT64_MAX, end = 0;

	build_tree(wf, t);
	for (unsigned i = 0; i < n; i++) {
		const struct span *s = nodes[i].span;

		if (s->start_unix_ns < t0)
			t0 = s->start_unix_ns;
		if (s->start_unix_ns + span_duration_ns(s) > end)
			end = s->start_unix_ns + span_duration_ns(s);
	}
	print_header(wf, t, end - t0, early);
	for (unsigned i = 0; i < n; i++)
		if (nodes[i].parent < 0 && !nodes[i].printed)
			print_subtree(wf, n, (int)i, t0, end - t0);
	/* whatever no top-level span reached hangs off a parent-id cycle */
	for (unsigned i = 0; i < n; i++)
		if (!nodes[i].printed)
			print_subtree(wf, n, (int)i, t0, end - t0);
	putc('\n', wf->out);
}

/* Print t (early: before it went quiet, because of a limit), then drop it. */
static void wf__print_and_remove(struct waterfall_sink *wf, struct wf_trace *t, bool early)
{
	if (t->nspans > 0) {
		print_trace(wf, t, early);
		wf->traces_printed++;
		wf->spans_printed += t->nspans;
		if (early)
			wf->traces_printed_early++;
		if (fflush(wf->out) != 0 || ferror(wf->out)) {
			wf->write_errors++;
			clearerr(wf->out);
		}
	}
	wf__remove(wf, t);
}

static void wf_emit(struct sink *sk, struct span *s)
{
	struct waterfall_sink *wf = to_wf(sk);
	struct wf_trace *t;

	if (!s)
		return;
	/* make room before taking more: memory stays bounded whatever the traffic */
	while (wf->buffered_spans >= WF_MAX_SPANS_TOTAL && wf->oldest)
		wf__print_and_remove(wf, wf->oldest, true);
	t = wf__find(wf, s->trace_id);
	if (!t)
		t = wf__create(wf, s->trace_id);
	if (!t || trace_add_span(t, s) != 0) {
		wf->spans_dropped_nomem++;
		span_free(s);
		if (t && t->nspans == 0)
			wf__remove(wf, t);
		return;
	}
	wf->buffered_spans++;
	/* span times are wall clock and may be old; quiet time is about when spans reach us */
	t->last_arrival_ns = monotonic_now_ns();
	wf__list_unlink(wf, t);
	wf__list_append(wf, t);
	if (t->nspans >= WF_MAX_SPANS_PER_TRACE)
		wf__print_and_remove(wf, t, true);
}

static void wf_tick(struct sink *sk, uint64_t now_ns)
{
	struct waterfall_sink *wf = to_wf(sk);
	struct wf_trace *t;

	/* the list is ordered by last arrival, so the quiet traces are all at its head */
	while ((t = wf->oldest) && now_ns >= t->last_arrival_ns &&
	       now_ns - t->last_arrival_ns >= wf->quiet_ns)
		wf__print_and_remove(wf, t, false);
}

static void wf_flush(struct sink *sk, int deadline_ms)
{
	struct waterfall_sink *wf = to_wf(sk);

	(void)deadline_ms; /* printing to a local stream does not wait on anyone */
	while (wf->oldest)
		wf__print_and_remove(wf, wf->oldest, false);
	fflush(wf->out);
}

static void wf_print_stats(struct sink *sk, FILE *out)
{
	struct waterfall_sink *wf = to_wf(sk);

	fprintf(out, "  %-28s %12" PRIu64 "  %s\n", "waterfall_traces_printed", wf->traces_printed,
		"traces printed");
	fprintf(out, "  %-28s %12" PRIu64 "  %s\n", "waterfall_spans_printed", wf->spans_printed,
		"spans printed");
	fprintf(out, "  %-28s %12" PRIu64 "  %s\n", "waterfall_traces_early",
		wf->traces_printed_early, "traces printed before quiet time: buffer limit");
	fprintf(out, "  %-28s %12" PRIu64 "  %s\n", "waterfall_drop_nomem", wf->spans_dropped_nomem,
		"spans dropped: out of memory");
	fprintf(out, "  %-28s %12" PRIu64 "  %s\n", "waterfall_write_errors", wf->write_errors,
		"traces whose output failed to write");
}

/* Frees whatever was not flushed without printing it: the caller flushes on shutdown. */
static void wf_destroy(struct sink *sk)
{
	struct waterfall_sink *wf = to_wf(sk);

	while (wf->oldest)
		wf__remove(wf, wf->oldest);
	free(wf);
}

/* UTF-8 terminal? LC_ALL, LC_CTYPE, LANG: the first one set decides, as for setlocale(). */
static bool locale_is_utf8(void)
{
	static const char *const vars[] = {"LC_ALL", "LC_CTYPE", "LANG"};

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]);

		if (v && v[0])
			return strcasestr(v, "UTF-8") || strcasestr(v, "utf8");
	}
	return false;
}

struct sink *sink_waterfall_new(FILE *out, int quiet_ms, int use_color)
{
	struct waterfall_sink *wf;

	if (!out)
		return NULL;
	wf = calloc(1, sizeof(*wf));
	if (!wf)
		return NULL;
	wf->base.name = "waterfall";
	wf->base.emit = wf_emit;
	wf->base.tick = wf_tick;
	wf->base.flush = wf_flush;
	wf->base.print_stats = wf_print_stats;
	wf->base.destroy = wf_destroy;
	wf->out = out;
	wf->quiet_ns = quiet_ms > 0 ? (uint64_t)quiet_ms * 1000000ull : 0;
	wf->color = use_color != 0;
	wf->unicode = locale_is_utf8();
	return &wf->base;
}
