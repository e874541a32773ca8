// SPDX-License-Identifier: BSD-2-Clause
/*
 * Trace analysis (see analyze.h): spans are collected per trace as their lines come, then
 * each trace is linked (parents, children), its intervals clamped into their parents', and
 * analysed; the findings go to the report and into the aggregate tables.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "text.h"

#define AN_STR_MAX 256	       /* bytes kept of a name, service or endpoint */
#define AN_AGG_MAX 4096	       /* entries per aggregate table; past it, counted as other */
#define AN_TEXT_SPANS 60       /* span lines per trace in the text report */
#define AN_TEXT_ROWS 20	       /* rows per aggregate table in the text report */
#define AN_MISSING_SHOWN 16    /* missing parent ids listed per trace */
#define AN_ORIGINS_SHOWN 32    /* error origins listed per trace */
#define AN_PROPAGATED_SHOWN 16 /* ancestors listed per error origin */

enum an_kind { AN_INTERNAL = 0, AN_SERVER, AN_CLIENT };

struct analyze_span {
	char span_id[17], parent_id[17];
	char *name, *service, *endpoint;
	uint64_t start, end;  /* as read (end >= start) */
	uint64_t cs, ce;      /* clamped into the parent's clamped interval */
	uint64_t child_ns;    /* union of the children's clamped intervals */
	uint64_t path_ns;     /* own time on the critical path */
	int64_t status_code;  /* 0: none */
	int32_t parent;	      /* index in the trace, -1: none */
	uint32_t kids, nkids; /* range of the trace's kid arrays */
	uint32_t rank;	      /* place in breadth-first order from the roots */
	uint32_t depth;
	uint8_t kind;
	bool error, on_path, clamped, orphan, in_nplus1;
};

struct analyze_trace {
	char id[33];
	struct analyze_span *spans;
	size_t n, cap;
	uint64_t skipped; /* spans past max_spans_per_trace or max_spans */
	uint64_t first_start;
	/* set by the analysis */
	uint32_t *kids;	    /* children of each span by start */
	uint32_t *kids_end; /* the same, by end, latest first */
	uint32_t *bfs;	    /* span indexes in breadth-first order */
	int32_t root;	    /* main root, -1 when no span */
	uint32_t roots, orphans, clamped, cycles;
};

/* ---- strings and hashing --------------------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint64_t hash_str(const char *s)
{
	return fnv1a(0xcbf29ce484222325ull, s, strlen(s));
}

/* s cut to AN_STR_MAX bytes at a character boundary (s is valid UTF-8: json_read checks). */
static char *dup_bounded(const char *s)
{
	size_t n = strlen(s);
	char *out;

	if (n > AN_STR_MAX) {
		n = AN_STR_MAX;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	out = malloc(n + 1);
	if (out) {
		memcpy(out, s, n);
		out[n] = '\0';
	}
	return out;
}

static bool is_hex(const char *s, size_t want)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == want;
}

/* ---- collecting spans -------------------------------------------------------------------- */

void analyze_opts__default(struct analyze_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->n_plus_one = 5;
	o->parallel_min_calls = 2;
	o->parallel_min_saved_ns = 1000000;
	o->max_traces = 10000;
	o->max_spans = 200000;
	o->max_spans_per_trace = 10000;
}

int analyze__init(struct analyze *a, const struct analyze_opts *opts)
{
	memset(a, 0, sizeof(*a));
	if (opts)
		a->opts = *opts;
	else
		analyze_opts__default(&a->opts);
	if (a->opts.n_plus_one < 2)
		a->opts.n_plus_one = 2;
	if (a->opts.parallel_min_calls < 2)
		a->opts.parallel_min_calls = 2;
	json_doc__init(&a->doc);
	/* one slot more than the traces held: a colliding id probes on (see trace_of) */
	return u64map_init(&a->traces, a->opts.max_traces + 1);
}

static void span_free(struct analyze_span *s)
{
	free(s->name);
	free(s->service);
	free(s->endpoint);
}

static void trace_free(struct analyze_trace *t)
{
	for (size_t i = 0; i < t->n; i++)
		span_free(&t->spans[i]);
	free(t->spans);
	free(t->kids);
	free(t->kids_end);
	free(t->bfs);
	free(t);
}

void analyze__free(struct analyze *a)
{
	uint64_t k;
	void *v;

	for (size_t i = 0; u64map_next(&a->traces, &i, &k, &v);)
		trace_free(v);
	u64map_free(&a->traces);
	json_doc__free(&a->doc);
}

/* The trace of id, created when new, create is set and room is left; NULL past
 * max_traces (or -ENOMEM in *err). Ids whose hashes collide probe on to the next key. */
static struct analyze_trace *trace_of(struct analyze *a, const char *id, bool create, int *err)
{
	uint64_t key = hash_str(id);
	struct analyze_trace *t;

	*err = 0;
	for (int probe = 0; probe < 8; probe++, key++) {
		t = u64map_get(&a->traces, key);
		if (t && strcmp(t->id, id) == 0)
			return t;
		if (t)
			continue;
		if (!create || a->traces.count >= a->opts.max_traces)
			return NULL;
		t = calloc(1, sizeof(*t));
		if (!t) {
			*err = -ENOMEM;
			return NULL;
		}
		memcpy(t->id, id, 33);
		t->root = -1;
		if (u64map_put(&a->traces, key, t)) {
			free(t);
			*err = -ENOMEM;
			return NULL;
		}
		return t;
	}
	return NULL;
}

/* An optional string attribute: absent is fine (NULL), another type is not. */
static int attr_str(const struct json_doc *d, const struct json_value *attrs, const char *key,
		    const char **out)
{
	const struct json_value *v = json_doc__member(d, attrs, key);

	*out = NULL;
	if (!v)
		return 0;
	*out = json_value_cstr(v);
	return *out ? 0 : -EINVAL;
}

static int attr_int(const struct json_doc *d, const struct json_value *attrs, const char *key,
		    int64_t *out)
{
	const struct json_value *v = json_doc__member(d, attrs, key);

	*out = 0;
	if (!v)
		return 0;
	return json_value_int(v, out) ? 0 : -EINVAL;
}

/*
 * What a call goes to: "METHOD address:port route" for a client span (the route is the
 * url.template the agent derives, else http.route, else the path), "service name" for
 * any other span. The same key groups N+1 calls.
 */
static char *endpoint_of(const struct json_doc *d, const struct json_value *attrs,
			 enum an_kind kind, const char *service, const char *name)
{
	const char *method, *addr, *route, *tmpl, *hroute, *path;
	char buf[3 * AN_STR_MAX];
	int64_t port;

	if (kind == AN_CLIENT && !attr_str(d, attrs, "http.request.method", &method) && method &&
	    !attr_str(d, attrs, "server.address", &addr) &&
	    !attr_int(d, attrs, "server.port", &port) &&
	    !attr_str(d, attrs, "url.template", &tmpl) &&
	    !attr_str(d, attrs, "http.route", &hroute) && !attr_str(d, attrs, "url.path", &path)) {
		route = tmpl ? tmpl : hroute ? hroute : path ? path : "";
		snprintf(buf, sizeof(buf), "%.*s %.*s:%" PRId64 " %.*s", 32, method, 200,
			 addr ? addr : "?", port, 300, route);
	} else {
		snprintf(buf, sizeof(buf), "%.*s %.*s", 300, service, 400, name);
	}
	return dup_bounded(buf);
}

static bool in_range(const struct analyze_opts *o, uint64_t start)
{
	if (o->from_unix_ns && start < o->from_unix_ns)
		return false;
	if (o->to_unix_ns && start >= o->to_unix_ns)
		return false;
	return true;
}

struct span_fields {
	const char *trace_id, *span_id, *parent_id, *name, *kind, *status, *service;
	const struct json_value *attrs;
	int64_t start, end;
};

static const char *read_fields(const struct json_doc *d, struct span_fields *f)
{
	const struct json_value *root = json_doc__root(d);

	if (!root || root->type != JSON_OBJECT)
		return "not a JSON object";
	f->trace_id = json_value_cstr(json_doc__member(d, root, "trace_id"));
	f->span_id = json_value_cstr(json_doc__member(d, root, "span_id"));
	f->parent_id = json_value_cstr(json_doc__member(d, root, "parent_span_id"));
	f->name = json_value_cstr(json_doc__member(d, root, "name"));
	f->kind = json_value_cstr(json_doc__member(d, root, "kind"));
	f->status = json_value_cstr(json_doc__member(d, root, "status"));
	f->service = json_value_cstr(json_doc__member(d, root, "service.name"));
	f->attrs = json_doc__member(d, root, "attributes");
	if (!f->trace_id || !is_hex(f->trace_id, 32))
		return "no \"trace_id\" of 32 lowercase hex digits";
	if (!f->span_id || !is_hex(f->span_id, 16))
		return "no \"span_id\" of 16 lowercase hex digits";
	if (!f->parent_id || (*f->parent_id && !is_hex(f->parent_id, 16)))
		return "no \"parent_span_id\" of 16 lowercase hex digits or \"\"";
	if (!f->name || !f->kind || !f->service)
		return "no \"name\", \"kind\" or \"service.name\" string";
	if (!json_value_int(json_doc__member(d, root, "start_unix_ns"), &f->start) ||
	    !json_value_int(json_doc__member(d, root, "end_unix_ns"), &f->end) || f->start < 0 ||
	    f->end < 0)
		return "no \"start_unix_ns\" and \"end_unix_ns\" integers";
	if (f->attrs && f->attrs->type != JSON_OBJECT)
		return "\"attributes\" is not an object";
	return NULL;
}

static int push_span(struct analyze_trace *t, struct analyze_span *s)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		struct analyze_span *p = realloc(t->spans, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		t->spans = p;
		t->cap = cap;
	}
	t->spans[t->n++] = *s;
	return 0;
}

static int fill_span(struct analyze_span *s, const struct json_doc *d, const struct span_fields *f)
{
	memset(s, 0, sizeof(*s));
	memcpy(s->span_id, f->span_id, 17);
	memcpy(s->parent_id, f->parent_id, strlen(f->parent_id) + 1);
	s->kind = strcmp(f->kind, "SERVER") == 0   ? AN_SERVER
		  : strcmp(f->kind, "CLIENT") == 0 ? AN_CLIENT
						   : AN_INTERNAL;
	s->start = (uint64_t)f->start;
	s->end = f->end < f->start ? s->start : (uint64_t)f->end;
	s->error = f->status && strcmp(f->status, "ERROR") == 0;
	s->parent = -1;
	if (f->attrs && attr_int(d, f->attrs, "http.response.status_code", &s->status_code))
		s->status_code = 0;
	s->name = dup_bounded(f->name);
	s->service = dup_bounded(f->service);
	s->endpoint = f->attrs ? endpoint_of(d, f->attrs, s->kind, f->service, f->name)
			       : dup_bounded(f->name);
	if (!s->name || !s->service || !s->endpoint) {
		span_free(s);
		return -ENOMEM;
	}
	return 0;
}

int analyze__add_line(struct analyze *a, const char *line, size_t len, const char **why)
{
	struct analyze_trace *t;
	struct span_fields f;
	struct analyze_span s;
	int err;

	*why = NULL;
	a->lines++;
	if (json_doc__parse(&a->doc, line, len)) {
		a->malformed++;
		*why = a->doc.err;
		return -EINVAL;
	}
	*why = read_fields(&a->doc, &f);
	if (*why) {
		a->malformed++;
		return -EINVAL;
	}
	if ((a->opts.trace_id && strcmp(a->opts.trace_id, f.trace_id) != 0) ||
	    !in_range(&a->opts, (uint64_t)f.start)) {
		a->filtered++;
		return 0;
	}
	/* with every span slot taken, a new trace is not even started (it would be empty) */
	t = trace_of(a, f.trace_id, a->spans < a->opts.max_spans, &err);
	if (!t && !err && a->spans >= a->opts.max_spans) {
		a->skipped_spans++;
		return 0;
	}
	if (!t) {
		a->skipped_traces += err == 0;
		return err;
	}
	if (t->n >= a->opts.max_spans_per_trace || a->spans >= a->opts.max_spans) {
		t->skipped++;
		a->skipped_spans++;
		return 0;
	}
	err = fill_span(&s, &a->doc, &f);
	if (!err)
		err = push_span(t, &s);
	if (err) {
		span_free(&s);
		return err;
	}
	if (t->n == 1 || s.start < t->first_start)
		t->first_start = s.start;
	a->spans++;
	return 0;
}

/* ---- linking a trace ------------------------------------------------------------------- */

static int cmp_span_id(const void *x, const void *y, void *ctx)
{
	const struct analyze_span *sp = ctx;

	return strcmp(sp[*(const uint32_t *)x].span_id, sp[*(const uint32_t *)y].span_id);
}

static int cmp_start(const void *x, const void *y, void *ctx)
{
	const struct analyze_span *a = (const struct analyze_span *)ctx + *(const uint32_t *)x;
	const struct analyze_span *b = (const struct analyze_span *)ctx + *(const uint32_t *)y;

	if (a->cs != b->cs)
		return a->cs < b->cs ? -1 : 1;
	return a->rank < b->rank ? -1 : a->rank > b->rank;
}

static int cmp_end_desc(const void *x, const void *y, void *ctx)
{
	const struct analyze_span *a = (const struct analyze_span *)ctx + *(const uint32_t *)x;
	const struct analyze_span *b = (const struct analyze_span *)ctx + *(const uint32_t *)y;

	if (a->ce != b->ce)
		return a->ce > b->ce ? -1 : 1;
	if (a->cs != b->cs)
		return a->cs > b->cs ? -1 : 1;
	return a->rank < b->rank ? -1 : a->rank > b->rank;
}

/* Drop the second and later spans of one span id (a replayed file, a hostile line): the
 * first one read is kept. by_id is sorted by span id. */
static uint64_t drop_duplicates(struct analyze_trace *t, uint32_t *by_id)
{
	uint64_t dropped = 0;
	size_t w = 0;
	bool *dup;

	if (t->n < 2)
		return 0;
	dup = calloc(t->n, sizeof(*dup));
	if (!dup)
		return 0;
	for (size_t i = 0, j; i < t->n; i = j) {
		uint32_t keep = by_id[i];

		/* qsort is not stable: the one read first has the lowest index */
		for (j = i + 1; j < t->n &&
				strcmp(t->spans[by_id[j]].span_id, t->spans[by_id[i]].span_id) == 0;
		     j++)
			if (by_id[j] < keep)
				keep = by_id[j];
		for (size_t m = i; m < j; m++)
			dup[by_id[m]] = by_id[m] != keep;
	}
	for (size_t i = 0; i < t->n; i++) {
		if (dup[i]) {
			span_free(&t->spans[i]);
			dropped++;
		} else {
			t->spans[w++] = t->spans[i];
		}
	}
	t->n = w;
	free(dup);
	return dropped;
}

static int32_t find_span(const struct analyze_trace *t, const uint32_t *by_id, const char *id)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(t->spans[by_id[mid]].span_id, id);

		if (c == 0)
			return (int32_t)by_id[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* A parent chain that comes back on itself (only hostile or broken input does that) is
 * cut where it closes: that span heads a subtree, like a span whose parent is missing. */
static uint32_t break_cycles(struct analyze_trace *t, uint8_t *state)
{
	uint32_t cut = 0;

	for (size_t i = 0; i < t->n; i++) {
		int32_t j = (int32_t)i;

		while (j >= 0 && state[j] == 0) {
			state[j] = 1;
			if (t->spans[j].parent >= 0 && state[t->spans[j].parent] == 1) {
				t->spans[j].parent = -1;
				t->spans[j].orphan = true;
				cut++;
				break;
			}
			j = t->spans[j].parent;
		}
		for (j = (int32_t)i; j >= 0 && state[j] == 1; j = t->spans[j].parent)
			state[j] = 2;
	}
	return cut;
}

static int link_parents(struct analyze_trace *t, uint64_t *duplicates)
{
	uint32_t *by_id = malloc(t->n * sizeof(*by_id));
	uint8_t *state;

	if (!by_id)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++)
		by_id[i] = (uint32_t)i;
	qsort_r(by_id, t->n, sizeof(*by_id), cmp_span_id, t->spans);
	*duplicates += drop_duplicates(t, by_id);
	for (size_t i = 0; i < t->n; i++)
		by_id[i] = (uint32_t)i;
	qsort_r(by_id, t->n, sizeof(*by_id), cmp_span_id, t->spans);
	for (size_t i = 0; i < t->n; i++) {
		struct analyze_span *s = &t->spans[i];

		if (!*s->parent_id)
			continue;
		s->parent = find_span(t, by_id, s->parent_id);
		if (s->parent < 0 || s->parent == (int32_t)i) {
			s->parent = -1;
			s->orphan = true;
		}
	}
	free(by_id);
	state = calloc(t->n, 1);
	if (!state)
		return -ENOMEM;
	t->cycles = break_cycles(t, state);
	free(state);
	return 0;
}

/* Children lists (CSR: kids[spans[i].kids .. + nkids]), in any order for now. */
static int build_kids(struct analyze_trace *t)
{
	uint32_t *fill;

	t->kids = malloc((t->n + 1) * sizeof(*t->kids));
	t->kids_end = malloc((t->n + 1) * sizeof(*t->kids_end));
	t->bfs = malloc((t->n + 1) * sizeof(*t->bfs));
	fill = calloc(t->n + 1, sizeof(*fill));
	if (!t->kids || !t->kids_end || !t->bfs || !fill) {
		free(fill);
		return -ENOMEM;
	}
	for (size_t i = 0; i < t->n; i++)
		if (t->spans[i].parent >= 0)
			t->spans[t->spans[i].parent].nkids++;
	for (size_t i = 0, off = 0; i < t->n; i++) {
		t->spans[i].kids = (uint32_t)off;
		off += t->spans[i].nkids;
	}
	for (size_t i = 0; i < t->n; i++) {
		int32_t p = t->spans[i].parent;

		if (p >= 0)
			t->kids[t->spans[p].kids + fill[p]++] = (uint32_t)i;
	}
	free(fill);
	return 0;
}

/* Breadth-first from the roots: each child's interval clamped into its parent's (a child
 * that starts before its parent or ends after it is clock skew between hosts, or work the
 * parent did not wait for: either way not time of the parent's). */
static void clamp_intervals(struct analyze_trace *t)
{
	size_t head = 0, tail = 0;

	for (size_t i = 0; i < t->n; i++) {
		struct analyze_span *s = &t->spans[i];

		if (s->parent >= 0)
			continue;
		s->cs = s->start;
		s->ce = s->end;
		s->depth = 0;
		t->bfs[tail++] = (uint32_t)i;
		t->roots++;
		t->orphans += s->orphan;
	}
	while (head < tail) {
		uint32_t pi = t->bfs[head];
		struct analyze_span *p = &t->spans[pi];

		p->rank = (uint32_t)head++;
		for (uint32_t k = 0; k < p->nkids; k++) {
			struct analyze_span *c = &t->spans[t->kids[p->kids + k]];

			c->cs = c->start < p->cs ? p->cs : c->start > p->ce ? p->ce : c->start;
			c->ce = c->end > p->ce ? p->ce : c->end < c->cs ? c->cs : c->end;
			c->clamped = c->cs != c->start || c->ce != c->end;
			t->clamped += c->clamped;
			c->depth = p->depth + 1;
			t->bfs[tail++] = t->kids[p->kids + k];
		}
	}
}

static void sort_kids(struct analyze_trace *t)
{
	for (size_t i = 0; i < t->n; i++) {
		struct analyze_span *s = &t->spans[i];

		memcpy(t->kids_end + s->kids, t->kids + s->kids, s->nkids * sizeof(uint32_t));
		qsort_r(t->kids + s->kids, s->nkids, sizeof(uint32_t), cmp_start, t->spans);
		qsort_r(t->kids_end + s->kids, s->nkids, sizeof(uint32_t), cmp_end_desc, t->spans);
	}
}

/* Child time: the union of the children's intervals (sorted by start). */
static void child_times(struct analyze_trace *t)
{
	for (size_t i = 0; i < t->n; i++) {
		struct analyze_span *s = &t->spans[i];
		uint64_t sum = 0, cur_s = 0, cur_e = 0;
		bool open = false;

		for (uint32_t k = 0; k < s->nkids; k++) {
			const struct analyze_span *c = &t->spans[t->kids[s->kids + k]];

			if (open && c->cs <= cur_e) {
				if (c->ce > cur_e)
					cur_e = c->ce;
				continue;
			}
			if (open)
				sum += cur_e - cur_s;
			cur_s = c->cs;
			cur_e = c->ce;
			open = true;
		}
		if (open)
			sum += cur_e - cur_s;
		s->child_ns = sum;
	}
}

static uint64_t dur(const struct analyze_span *s)
{
	return s->ce - s->cs;
}

static uint64_t self_ns(const struct analyze_span *s)
{
	return dur(s) > s->child_ns ? dur(s) - s->child_ns : 0;
}

/* The main root: a true root (no parent id) before a span whose parent is missing, then
 * the longest, then the earliest. */
static int32_t main_root(const struct analyze_trace *t)
{
	int32_t best = -1;

	for (size_t i = 0; i < t->n; i++) {
		const struct analyze_span *s = &t->spans[i], *b;

		if (s->parent >= 0)
			continue;
		if (best < 0) {
			best = (int32_t)i;
			continue;
		}
		b = &t->spans[best];
		if (s->orphan != b->orphan) {
			if (!s->orphan)
				best = (int32_t)i;
			continue;
		}
		if (dur(s) > dur(b) || (dur(s) == dur(b) && s->cs < b->cs))
			best = (int32_t)i;
	}
	return best;
}

struct path_frame {
	uint32_t span;
	uint32_t cursor; /* next child to consider, in end order (latest first) */
	uint64_t t;	 /* the part of the span still to explain ends here */
};

/*
 * The critical path from the main root: walking back from the root's end, the child that
 * ended last before that time is on the path (its own path first), then the time moves to
 * that child's start; the time between children is the span's own. Every nanosecond of the
 * root's duration is given to exactly one span (path_ns).
 */
static int critical_path(struct analyze_trace *t)
{
	struct path_frame *stack;
	size_t top = 0;

	if (t->root < 0)
		return 0;
	stack = malloc((t->n + 1) * sizeof(*stack));
	if (!stack)
		return -ENOMEM;
	stack[top++] = (struct path_frame){(uint32_t)t->root, 0, t->spans[t->root].ce};
	t->spans[t->root].on_path = true;
	while (top) {
		struct path_frame *f = &stack[top - 1];
		struct analyze_span *s = &t->spans[f->span], *c;
		uint64_t c_end;

		while (f->cursor < s->nkids &&
		       t->spans[t->kids_end[s->kids + f->cursor]].cs >= f->t)
			f->cursor++;
		if (f->t <= s->cs || f->cursor >= s->nkids) {
			s->path_ns += f->t > s->cs ? f->t - s->cs : 0;
			top--;
			continue;
		}
		c = &t->spans[t->kids_end[s->kids + f->cursor]];
		c_end = c->ce < f->t ? c->ce : f->t;
		s->path_ns += f->t - c_end;
		f->t = c->cs;
		c->on_path = true;
		stack[top++] = (struct path_frame){t->kids_end[s->kids + f->cursor], 0, c_end};
		f->cursor++;
	}
	free(stack);
	return 0;
}

static int link_trace(struct analyze_trace *t, uint64_t *duplicates)
{
	int err = link_parents(t, duplicates);

	if (!err)
		err = build_kids(t);
	if (err)
		return err;
	clamp_intervals(t);
	sort_kids(t);
	child_times(t);
	t->root = main_root(t);
	return critical_path(t);
}

/* ---- findings ------------------------------------------------------------------------- */

struct nplus1 {
	uint32_t parent, first;
	uint32_t calls;
	uint64_t sum_ns;
};

struct seqrun {
	uint32_t parent;
	uint32_t *members; /* span indexes, by start */
	uint32_t n, endpoints;
	uint64_t sum_ns, max_ns;
};

struct origin {
	uint32_t span;
	bool callee_not_seen;
};

struct findings {
	struct nplus1 *np;
	size_t nnp, capnp;
	struct seqrun *seq;
	size_t nseq, capseq;
	struct origin *orig;
	size_t norig, caporig;
	uint64_t propagated, saved_ns;
	int32_t slowest;
};

static int grow(void **p, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return 0;
	size_t c = *cap ? *cap * 2 : 8;
	void *q = realloc(*p, c * size);

	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = c;
	return 0;
}

static void findings_free(struct findings *f)
{
	for (size_t i = 0; i < f->nseq; i++)
		free(f->seq[i].members);
	free(f->np);
	free(f->seq);
	free(f->orig);
	memset(f, 0, sizeof(*f));
}

static int cmp_endpoint(const void *x, const void *y, void *ctx)
{
	const struct analyze_span *a = (const struct analyze_span *)ctx + *(const uint32_t *)x;
	const struct analyze_span *b = (const struct analyze_span *)ctx + *(const uint32_t *)y;
	int c = strcmp(a->endpoint, b->endpoint);

	return c ? c : a->rank < b->rank ? -1 : a->rank > b->rank;
}

/* N+1: the client calls of span pi grouped by endpoint (tmp: room for its children). */
static int find_nplus1(struct analyze_trace *t, uint32_t pi, unsigned min, uint32_t *tmp,
		       struct findings *f)
{
	const struct analyze_span *p = &t->spans[pi];
	uint32_t n = 0;

	for (uint32_t k = 0; k < p->nkids; k++)
		if (t->spans[t->kids[p->kids + k]].kind == AN_CLIENT)
			tmp[n++] = t->kids[p->kids + k];
	qsort_r(tmp, n, sizeof(*tmp), cmp_endpoint, t->spans);
	for (uint32_t i = 0, j; i < n; i = j) {
		uint64_t sum = 0;

		for (j = i;
		     j < n && strcmp(t->spans[tmp[j]].endpoint, t->spans[tmp[i]].endpoint) == 0;
		     j++)
			sum += dur(&t->spans[tmp[j]]);
		if (j - i < min)
			continue;
		for (uint32_t m = i; m < j; m++)
			t->spans[tmp[m]].in_nplus1 = true;
		if (grow((void **)&f->np, &f->capnp, f->nnp, sizeof(*f->np)))
			return -ENOMEM;
		f->np[f->nnp++] = (struct nplus1){pi, tmp[i], j - i, sum};
	}
	return 0;
}

static uint32_t distinct_endpoints(const struct analyze_trace *t, uint32_t *m, uint32_t n,
				   uint32_t *tmp)
{
	uint32_t d = 0;

	memcpy(tmp, m, n * sizeof(*m));
	qsort_r(tmp, n, sizeof(*tmp), cmp_endpoint, (void *)t->spans);
	for (uint32_t i = 0; i < n; i++)
		d += i == 0 || strcmp(t->spans[tmp[i]].endpoint, t->spans[tmp[i - 1]].endpoint);
	return d;
}

static int keep_run(struct analyze_trace *t, const struct analyze_opts *o, uint32_t pi,
		    const uint32_t *m, uint32_t n, uint32_t *tmp, struct findings *f)
{
	struct seqrun r = {.parent = pi, .n = n};

	if (n < o->parallel_min_calls)
		return 0;
	for (uint32_t i = 0; i < n; i++) {
		r.sum_ns += dur(&t->spans[m[i]]);
		if (dur(&t->spans[m[i]]) > r.max_ns)
			r.max_ns = dur(&t->spans[m[i]]);
	}
	if (r.sum_ns - r.max_ns < o->parallel_min_saved_ns)
		return 0;
	r.members = malloc(n * sizeof(*m));
	if (!r.members)
		return -ENOMEM;
	memcpy(r.members, m, n * sizeof(*m));
	r.endpoints = distinct_endpoints(t, r.members, n, tmp);
	if (r.endpoints < 2 || grow((void **)&f->seq, &f->capseq, f->nseq, sizeof(*f->seq))) {
		free(r.members);
		return r.endpoints < 2 ? 0 : -ENOMEM;
	}
	f->seq[f->nseq++] = r;
	f->saved_ns += r.sum_ns - r.max_ns;
	return 0;
}

/*
 * Sequential calls of span pi: maximal runs of its children, by start, each starting at or
 * after the end of the one before (none overlaps another), to two or more endpoints. Calls
 * already reported as N+1 are left out (the advice there is to batch them).
 */
static int find_sequential(struct analyze_trace *t, const struct analyze_opts *o, uint32_t pi,
			   uint32_t *run, uint32_t *tmp, struct findings *f)
{
	const struct analyze_span *p = &t->spans[pi];
	uint32_t n = 0;
	uint64_t run_end = 0;

	for (uint32_t k = 0; k < p->nkids; k++) {
		uint32_t ci = t->kids[p->kids + k];
		const struct analyze_span *c = &t->spans[ci];

		if (c->in_nplus1)
			continue;
		if (n && c->cs < run_end) {
			/* overlaps the run's last call: the run ends there, a new one starts */
			if (keep_run(t, o, pi, run, n, tmp, f))
				return -ENOMEM;
			n = 0;
		}
		run[n++] = ci;
		if (n == 1 || c->ce > run_end)
			run_end = c->ce;
	}
	return keep_run(t, o, pi, run, n, tmp, f);
}

static int find_errors(struct analyze_trace *t, struct findings *f)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct analyze_span *s = &t->spans[i];
		bool failed_child = false;

		if (!s->error)
			continue;
		for (uint32_t k = 0; k < s->nkids && !failed_child; k++)
			failed_child = t->spans[t->kids[s->kids + k]].error;
		if (failed_child) {
			f->propagated++;
			continue;
		}
		if (grow((void **)&f->orig, &f->caporig, f->norig, sizeof(*f->orig)))
			return -ENOMEM;
		f->orig[f->norig++] =
		    (struct origin){(uint32_t)i, s->kind == AN_CLIENT && !s->nkids};
	}
	return 0;
}

static int analyse_trace(struct analyze_trace *t, const struct analyze_opts *o, struct findings *f)
{
	uint32_t *tmp = malloc((t->n + 1) * sizeof(*tmp)), *run = malloc((t->n + 1) * sizeof(*run));
	int err = tmp && run ? 0 : -ENOMEM;

	memset(f, 0, sizeof(*f));
	f->slowest = -1;
	for (size_t i = 0; i < t->n && !err; i++) {
		const struct analyze_span *s = &t->spans[i];

		if (s->on_path && (f->slowest < 0 || s->path_ns > t->spans[f->slowest].path_ns))
			f->slowest = (int32_t)i;
		if (s->nkids)
			err = find_nplus1(t, (uint32_t)i, o->n_plus_one, tmp, f);
	}
	for (size_t i = 0; i < t->n && !err; i++)
		if (t->spans[i].nkids > 1)
			err = find_sequential(t, o, (uint32_t)i, run, tmp, f);
	if (!err)
		err = find_errors(t, f);
	free(tmp);
	free(run);
	return err;
}

/* ---- the aggregate ---------------------------------------------------------------------- */

struct agg_row {
	char *a, *b;	 /* service and operation, or caller service and endpoint */
	uint64_t traces; /* traces it appeared in */
	uint64_t calls;	 /* N+1 calls, error origins, slowest-hop counts */
	uint64_t sum_ns, max_ns;
	uint64_t max_calls;
};

struct agg_table {
	struct u64map map;
	uint64_t other; /* findings past AN_AGG_MAX rows */
};

struct agg {
	uint64_t traces, incomplete, spans, with_nplus1, with_seq, with_errors, saved_ns;
	struct agg_table hops, nplus1, origins, seq;
};

static struct agg_row *agg_row(struct agg_table *tb, const char *a, const char *b)
{
	uint64_t key = fnv1a(hash_str(a) ^ 0x9e3779b97f4a7c15ull, b, strlen(b));
	struct agg_row *r;

	for (int probe = 0; probe < 8; probe++, key++) {
		r = u64map_get(&tb->map, key);
		if (r && strcmp(r->a, a) == 0 && strcmp(r->b, b) == 0)
			return r;
		if (r)
			continue;
		r = calloc(1, sizeof(*r));
		if (!r)
			break;
		r->a = strdup(a);
		r->b = strdup(b);
		if (!r->a || !r->b || u64map_put(&tb->map, key, r)) {
			free(r->a);
			free(r->b);
			free(r);
			break;
		}
		return r;
	}
	tb->other++;
	return NULL;
}

static void agg_free_table(struct agg_table *tb)
{
	uint64_t k;
	void *v;

	for (size_t i = 0; u64map_next(&tb->map, &i, &k, &v);) {
		struct agg_row *r = v;

		free(r->a);
		free(r->b);
		free(r);
	}
	u64map_free(&tb->map);
}

static int agg_init(struct agg *g)
{
	memset(g, 0, sizeof(*g));
	if (u64map_init(&g->hops.map, AN_AGG_MAX) || u64map_init(&g->nplus1.map, AN_AGG_MAX) ||
	    u64map_init(&g->origins.map, AN_AGG_MAX) || u64map_init(&g->seq.map, AN_AGG_MAX))
		return -ENOMEM;
	return 0;
}

static void agg_free(struct agg *g)
{
	agg_free_table(&g->hops);
	agg_free_table(&g->nplus1);
	agg_free_table(&g->origins);
	agg_free_table(&g->seq);
}

/* One trace's findings into the aggregate tables (a row past AN_AGG_MAX: counted as other). */
static void agg_add(struct agg *g, const struct analyze_trace *t, const struct findings *f)
{
	struct agg_row *r;

	g->traces++;
	g->spans += t->n;
	g->incomplete += t->orphans || t->cycles || t->skipped;
	g->with_nplus1 += f->nnp > 0;
	g->with_seq += f->nseq > 0;
	g->with_errors += f->norig > 0;
	g->saved_ns += f->saved_ns;
	if (f->slowest >= 0) {
		const struct analyze_span *s = &t->spans[f->slowest];

		r = agg_row(&g->hops, s->service, s->name);
		if (r) {
			r->traces++;
			r->sum_ns += s->path_ns;
			if (s->path_ns > r->max_ns)
				r->max_ns = s->path_ns;
		}
	}
	for (size_t i = 0; i < f->nnp; i++) {
		const struct nplus1 *np = &f->np[i];

		r = agg_row(&g->nplus1, t->spans[np->parent].service, t->spans[np->first].endpoint);
		if (r) {
			r->traces++; /* once per parent span: a request */
			r->calls += np->calls;
			r->sum_ns += np->sum_ns;
			if (np->calls > r->max_calls)
				r->max_calls = np->calls;
		}
	}
	for (size_t i = 0; i < f->nseq; i++) {
		const struct analyze_span *p = &t->spans[f->seq[i].parent];

		r = agg_row(&g->seq, p->service, p->name);
		if (r) {
			r->traces++;
			r->calls += f->seq[i].n;
			r->sum_ns += f->seq[i].sum_ns - f->seq[i].max_ns;
			if (f->seq[i].sum_ns - f->seq[i].max_ns > r->max_ns)
				r->max_ns = f->seq[i].sum_ns - f->seq[i].max_ns;
		}
	}
	for (size_t i = 0; i < f->norig; i++) {
		const struct analyze_span *s = &t->spans[f->orig[i].span];

		r = agg_row(&g->origins, s->service, s->name);
		if (r)
			r->calls++;
	}
}

/* The rows of a table, the heaviest first (by sum_ns, then calls, then traces). */
static int cmp_row(const void *x, const void *y)
{
	const struct agg_row *a = *(struct agg_row *const *)x, *b = *(struct agg_row *const *)y;

	if (a->sum_ns != b->sum_ns)
		return a->sum_ns > b->sum_ns ? -1 : 1;
	if (a->calls != b->calls)
		return a->calls > b->calls ? -1 : 1;
	if (a->traces != b->traces)
		return a->traces > b->traces ? -1 : 1;
	int c = strcmp(a->a, b->a);

	return c ? c : strcmp(a->b, b->b);
}

static struct agg_row **sorted_rows(const struct agg_table *tb, size_t *n)
{
	struct agg_row **rows = malloc((tb->map.count + 1) * sizeof(*rows));
	uint64_t k;
	void *v;

	*n = 0;
	if (!rows)
		return NULL;
	for (size_t i = 0; u64map_next(&tb->map, &i, &k, &v);)
		rows[(*n)++] = v;
	qsort(rows, *n, sizeof(*rows), cmp_row);
	return rows;
}

/* ---- printing ---------------------------------------------------------------------------- */

static void json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

/* Text from traced processes and the input file, made safe for a terminal. */
static const char *shown(char *buf, size_t cap, const char *s)
{
	text_escape_terminal(buf, cap, s, strlen(s), 0);
	return buf;
}

static const char *kind_name(uint8_t k)
{
	return k == AN_SERVER ? "SERVER" : k == AN_CLIENT ? "CLIENT" : "INTERNAL";
}

static void ms(char *buf, size_t cap, uint64_t ns)
{
	snprintf(buf, cap, "%.1f ms", (double)ns / 1e6);
}

static void json_ref(FILE *out, const struct analyze_span *s)
{
	fprintf(out, "\"span_id\":\"%s\",\"service\":", s->span_id);
	json_str(out, s->service);
	fputs(",\"name\":", out);
	json_str(out, s->name);
	fprintf(out, ",\"kind\":\"%s\"", kind_name(s->kind));
}

static void json_missing(FILE *out, const struct analyze_trace *t)
{
	unsigned shown_n = 0;

	fputs("\"missing_parents\":[", out);
	for (size_t i = 0; i < t->n && shown_n < AN_MISSING_SHOWN; i++)
		if (t->spans[i].orphan && *t->spans[i].parent_id)
			fprintf(out, "%s\"%s\"", shown_n++ ? "," : "", t->spans[i].parent_id);
	fputc(']', out);
}

/* The spans on the critical path by start (parents first at the same instant). */
static uint32_t *path_order(const struct analyze_trace *t, size_t *n)
{
	uint32_t *order = malloc((t->n + 1) * sizeof(*order));

	*n = 0;
	if (!order)
		return NULL;
	for (size_t i = 0; i < t->n; i++)
		if (t->spans[i].on_path)
			order[(*n)++] = (uint32_t)i;
	qsort_r(order, *n, sizeof(*order), cmp_start, t->spans);
	return order;
}

/* Every span depth-first from the roots (by start), children by start: the waterfall's
 * order. */
static uint32_t *tree_order(const struct analyze_trace *t)
{
	uint32_t *order = malloc((t->n + 1) * sizeof(*order));
	uint32_t *stack = malloc((t->n + 1) * sizeof(*stack));
	size_t top = 0, nroots = 0, w = 0;

	if (!order || !stack) {
		free(order);
		free(stack);
		return NULL;
	}
	for (size_t i = 0; i < t->n; i++)
		if (t->spans[i].parent < 0)
			order[nroots++] = (uint32_t)i;
	qsort_r(order, nroots, sizeof(*order), cmp_start, t->spans);
	for (size_t i = nroots; i > 0; i--)
		stack[top++] = order[i - 1];
	while (top) {
		uint32_t si = stack[--top];
		const struct analyze_span *s = &t->spans[si];

		order[w++] = si;
		for (uint32_t k = s->nkids; k > 0; k--)
			stack[top++] = t->kids[s->kids + k - 1];
	}
	free(stack);
	return order;
}

static bool incomplete(const struct analyze_trace *t)
{
	return t->orphans || t->cycles || t->skipped;
}

static void json_span_times(FILE *out, const struct analyze_trace *t, const uint32_t *order)
{
	fputs("\"span_times\":[", out);
	for (size_t i = 0; order && i < t->n; i++) {
		const struct analyze_span *s = &t->spans[order[i]];

		fputs(i ? ",{" : "{", out);
		json_ref(out, s);
		fprintf(out,
			",\"parent_span_id\":\"%s\",\"depth\":%" PRIu32
			",\"start_unix_ns\":%" PRIu64 ",\"duration_ns\":%" PRIu64
			",\"self_ns\":%" PRIu64 ",\"child_ns\":%" PRIu64
			",\"error\":%s,\"clamped\":%s}",
			s->parent_id, s->depth, s->cs, dur(s), self_ns(s), s->child_ns,
			s->error ? "true" : "false", s->clamped ? "true" : "false");
	}
	fputc(']', out);
}

static void json_findings(FILE *out, const struct analyze_trace *t, const struct findings *f)
{
	fputs(",\"sequential_calls\":[", out);
	for (size_t i = 0; i < f->nseq; i++) {
		const struct seqrun *r = &f->seq[i];

		fputs(i ? ",{\"parent\":{" : "{\"parent\":{", out);
		json_ref(out, &t->spans[r->parent]);
		fprintf(out,
			"},\"calls\":%" PRIu32 ",\"endpoints\":%" PRIu32
			",\"sequential_ns\":%" PRIu64 ",\"parallel_ns\":%" PRIu64
			",\"saved_ns\":%" PRIu64 ",\"spans\":[",
			r->n, r->endpoints, r->sum_ns, r->max_ns, r->sum_ns - r->max_ns);
		for (uint32_t m = 0; m < r->n; m++) {
			const struct analyze_span *c = &t->spans[r->members[m]];

			fputs(m ? ",{" : "{", out);
			json_ref(out, c);
			fputs(",\"endpoint\":", out);
			json_str(out, c->endpoint);
			fprintf(out, ",\"duration_ns\":%" PRIu64 "}", dur(c));
		}
		fputs("]}", out);
	}
	fputs("],\"n_plus_one\":[", out);
	for (size_t i = 0; i < f->nnp; i++) {
		fputs(i ? ",{\"parent\":{" : "{\"parent\":{", out);
		json_ref(out, &t->spans[f->np[i].parent]);
		fputs("},\"endpoint\":", out);
		json_str(out, t->spans[f->np[i].first].endpoint);
		fprintf(out, ",\"calls\":%" PRIu32 ",\"duration_ns\":%" PRIu64 "}", f->np[i].calls,
			f->np[i].sum_ns);
	}
	fprintf(out, "],\"errors\":{\"propagated\":%" PRIu64 ",\"origins\":[", f->propagated);
	for (size_t i = 0; i < f->norig && i < AN_ORIGINS_SHOWN; i++) {
		const struct analyze_span *s = &t->spans[f->orig[i].span];
		unsigned up = 0;

		fputs(i ? ",{" : "{", out);
		json_ref(out, s);
		fprintf(out,
			",\"status_code\":%" PRId64 ",\"callee_not_seen\":%s,\"propagated_by\":[",
			s->status_code, f->orig[i].callee_not_seen ? "true" : "false");
		for (int32_t p = s->parent; p >= 0 && t->spans[p].error && up < AN_PROPAGATED_SHOWN;
		     p = t->spans[p].parent) {
			fputs(up++ ? ",{" : "{", out);
			json_ref(out, &t->spans[p]);
			fprintf(out, ",\"status_code\":%" PRId64 "}", t->spans[p].status_code);
		}
		fputs("]}", out);
	}
	fputs("]}", out);
}

static void json_trace(FILE *out, const struct analyze_trace *t, const struct findings *f,
		       bool first)
{
	const struct analyze_span *root = t->root >= 0 ? &t->spans[t->root] : NULL;
	uint32_t *order = tree_order(t);

	fprintf(out,
		"%s{\"trace_id\":\"%s\",\"spans\":%zu,\"complete\":%s,\"roots\":%" PRIu32
		",\"clamped_spans\":%" PRIu32 ",\"skipped_spans\":%" PRIu64
		",\"cycles_cut\":%" PRIu32 ",",
		first ? "" : ",", t->id, t->n, incomplete(t) ? "false" : "true", t->roots,
		t->clamped, t->skipped, t->cycles);
	json_missing(out, t);
	if (root) {
		fprintf(out,
			",\"start_unix_ns\":%" PRIu64 ",\"duration_ns\":%" PRIu64 ",\"root\":{",
			root->cs, dur(root));
		json_ref(out, root);
		fputs("},", out);
	} else {
		fputs(",\"root\":null,", out);
	}
	{
		size_t n;
		uint32_t *p = path_order(t, &n);

		fputs("\"critical_path\":[", out);
		for (size_t i = 0; p && i < n; i++) {
			fputs(i ? ",{" : "{", out);
			json_ref(out, &t->spans[p[i]]);
			fprintf(out, ",\"self_on_path_ns\":%" PRIu64 "}", t->spans[p[i]].path_ns);
		}
		fputs("],", out);
		free(p);
	}
	if (f->slowest >= 0) {
		fputs("\"slowest_hop\":{", out);
		json_ref(out, &t->spans[f->slowest]);
		fprintf(out, ",\"self_on_path_ns\":%" PRIu64 "},", t->spans[f->slowest].path_ns);
	} else {
		fputs("\"slowest_hop\":null,", out);
	}
	json_span_times(out, t, order);
	json_findings(out, t, f);
	fputc('}', out);
	free(order);
}

static void text_path(FILE *out, const struct analyze_trace *t, const struct findings *f)
{
	char b1[AN_STR_MAX * 4 + 1], b2[AN_STR_MAX * 4 + 1], d[32];
	size_t n;
	uint32_t *p = path_order(t, &n);
	uint64_t total = t->root >= 0 ? dur(&t->spans[t->root]) : 0;

	ms(d, sizeof(d), total);
	fprintf(out, "  critical path (%s, own time of each span on it):\n", d);
	for (size_t i = 0; p && i < n && i < AN_TEXT_SPANS; i++) {
		const struct analyze_span *s = &t->spans[p[i]];

		ms(d, sizeof(d), s->path_ns);
		fprintf(out, "    %12s  %-16s %s%s\n", d, shown(b1, sizeof(b1), s->service),
			shown(b2, sizeof(b2), s->name),
			(int32_t)p[i] == f->slowest ? "   <- slowest hop" : "");
	}
	if (n > AN_TEXT_SPANS)
		fprintf(out, "    ... %zu more spans on the path (--json lists them all)\n",
			n - AN_TEXT_SPANS);
	free(p);
	if (f->slowest >= 0) {
		const struct analyze_span *s = &t->spans[f->slowest];

		ms(d, sizeof(d), s->path_ns);
		fprintf(
		    out, "  slowest hop: %s %s (%s), %s of its own on the critical path (%.0f%%)\n",
		    shown(b1, sizeof(b1), s->service), shown(b2, sizeof(b2), s->name),
		    kind_name(s->kind), d, total ? 100.0 * (double)s->path_ns / (double)total : 0);
	}
}

static void text_spans(FILE *out, const struct analyze_trace *t)
{
	char b1[AN_STR_MAX * 4 + 1], b2[AN_STR_MAX * 4 + 1], d1[32], d2[32], d3[32];
	uint32_t *order = tree_order(t);

	fprintf(out, "  spans (self = total - children; children overlapping counted once):\n");
	fprintf(out, "    %10s %10s %10s  %s\n", "SELF", "CHILDREN", "TOTAL", "SPAN");
	for (size_t i = 0; order && i < t->n && i < AN_TEXT_SPANS; i++) {
		const struct analyze_span *s = &t->spans[order[i]];
		unsigned indent = s->depth > 20 ? 20 : s->depth;

		ms(d1, sizeof(d1), self_ns(s));
		ms(d2, sizeof(d2), s->child_ns);
		ms(d3, sizeof(d3), dur(s));
		fprintf(out, "    %10s %10s %10s  %*s%s %s (%s)%s%s\n", d1, d2, d3, (int)indent * 2,
			"", shown(b1, sizeof(b1), s->service), shown(b2, sizeof(b2), s->name),
			kind_name(s->kind), s->error ? " ERROR" : "",
			s->orphan    ? " [parent not seen]"
			: s->clamped ? " [clamped]"
				     : "");
	}
	if (t->n > AN_TEXT_SPANS)
		fprintf(out, "    ... %zu more spans (--json lists them all)\n",
			t->n - AN_TEXT_SPANS);
	free(order);
}

static void text_findings(FILE *out, const struct analyze_trace *t, const struct findings *f)
{
	char b1[AN_STR_MAX * 4 + 1], b2[AN_STR_MAX * 4 + 1], b3[AN_STR_MAX * 4 + 1];
	char d1[32], d2[32], d3[32];

	for (size_t i = 0; i < f->nseq; i++) {
		const struct seqrun *r = &f->seq[i];
		const struct analyze_span *p = &t->spans[r->parent];

		ms(d1, sizeof(d1), r->sum_ns);
		ms(d2, sizeof(d2), r->max_ns);
		ms(d3, sizeof(d3), r->sum_ns - r->max_ns);
		fprintf(out,
			"  sequential calls: %s %s made %" PRIu32
			" calls one after another to %" PRIu32
			" endpoints: %s; in parallel %s (saves %s)\n",
			shown(b1, sizeof(b1), p->service), shown(b2, sizeof(b2), p->name), r->n,
			r->endpoints, d1, d2, d3);
		for (uint32_t m = 0; m < r->n; m++) {
			ms(d1, sizeof(d1), dur(&t->spans[r->members[m]]));
			fprintf(out, "    %10s  %s\n", d1,
				shown(b3, sizeof(b3), t->spans[r->members[m]].endpoint));
		}
	}
	for (size_t i = 0; i < f->nnp; i++) {
		const struct analyze_span *p = &t->spans[f->np[i].parent];

		ms(d1, sizeof(d1), f->np[i].sum_ns);
		fprintf(out, "  N+1: %s %s called %s %" PRIu32 " times (%s in all)\n",
			shown(b1, sizeof(b1), p->service), shown(b2, sizeof(b2), p->name),
			shown(b3, sizeof(b3), t->spans[f->np[i].first].endpoint), f->np[i].calls,
			d1);
	}
	for (size_t i = 0; i < f->norig && i < AN_ORIGINS_SHOWN; i++) {
		const struct analyze_span *s = &t->spans[f->orig[i].span];
		unsigned up = 0;

		fprintf(out, "  error origin: %s %s (%s", shown(b1, sizeof(b1), s->service),
			shown(b2, sizeof(b2), s->name), kind_name(s->kind));
		if (s->status_code)
			fprintf(out, ", %" PRId64, s->status_code);
		fprintf(out, ", span %s)%s\n", s->span_id,
			f->orig[i].callee_not_seen
			    ? "; its callee is not in the trace: the error may have started there"
			    : "");
		for (int32_t p = s->parent; p >= 0 && t->spans[p].error && up < AN_PROPAGATED_SHOWN;
		     p = t->spans[p].parent, up++) {
			fprintf(out, "    propagated by %s %s (%s",
				shown(b1, sizeof(b1), t->spans[p].service),
				shown(b2, sizeof(b2), t->spans[p].name),
				kind_name(t->spans[p].kind));
			if (t->spans[p].status_code)
				fprintf(out, ", %" PRId64, t->spans[p].status_code);
			fputs(")\n", out);
		}
	}
	if (f->norig > AN_ORIGINS_SHOWN)
		fprintf(out, "  ... %zu more error origins\n", f->norig - AN_ORIGINS_SHOWN);
}

static void text_trace(FILE *out, const struct analyze_trace *t, const struct findings *f)
{
	char b1[AN_STR_MAX * 4 + 1], b2[AN_STR_MAX * 4 + 1], d[32];
	const struct analyze_span *root = t->root >= 0 ? &t->spans[t->root] : NULL;

	ms(d, sizeof(d), root ? dur(root) : 0);
	fprintf(out, "trace %s: %zu spans, %s", t->id, t->n, d);
	if (root)
		fprintf(out, ", root %s %s", shown(b1, sizeof(b1), root->service),
			shown(b2, sizeof(b2), root->name));
	fputc('\n', out);
	if (incomplete(t)) {
		fprintf(out, "  incomplete:");
		if (t->orphans)
			fprintf(out,
				" %" PRIu32 " span(s) whose parent was not seen (another host, "
				"or outside what was read) head subtrees of their own;",
				t->orphans);
		if (t->cycles)
			fprintf(out, " %" PRIu32 " parent cycle(s) cut;", t->cycles);
		if (t->skipped)
			fprintf(out, " %" PRIu64 " span(s) past the limits not held;", t->skipped);
		fputc('\n', out);
	}
	if (t->clamped)
		fprintf(out,
			"  %" PRIu32 " span(s) outside their parent's interval (clock skew or "
			"work not waited for): clamped into it\n",
			t->clamped);
	text_path(out, t, f);
	text_spans(out, t);
	text_findings(out, t, f);
	if (!f->nseq && !f->nnp && !f->norig)
		fprintf(out, "  no sequential calls, N+1 or errors\n");
	fputc('\n', out);
}

static void json_rows(FILE *out, const char *name, const struct agg_table *tb, const char *ka,
		      const char *kb)
{
	size_t n;
	struct agg_row **rows = sorted_rows(tb, &n);

	fprintf(out, ",\"%s\":[", name);
	for (size_t i = 0; rows && i < n; i++) {
		fprintf(out, "%s{\"%s\":", i ? "," : "", ka);
		json_str(out, rows[i]->a);
		fprintf(out, ",\"%s\":", kb);
		json_str(out, rows[i]->b);
		fprintf(out,
			",\"traces\":%" PRIu64 ",\"calls\":%" PRIu64 ",\"sum_ns\":%" PRIu64
			",\"max_ns\":%" PRIu64 ",\"max_calls\":%" PRIu64 "}",
			rows[i]->traces, rows[i]->calls, rows[i]->sum_ns, rows[i]->max_ns,
			rows[i]->max_calls);
	}
	fprintf(out, "],\"%s_other\":%" PRIu64, name, tb->other);
	free(rows);
}

static void json_aggregate(FILE *out, const struct analyze *a, const struct agg *g)
{
	fprintf(out,
		"],\"aggregate\":{\"traces\":%" PRIu64 ",\"incomplete_traces\":%" PRIu64
		",\"spans\":%" PRIu64 ",\"patterns\":{\"n_plus_one\":%" PRIu64
		",\"sequential_calls\":%" PRIu64 ",\"errors\":%" PRIu64 "},\"saved_ns\":%" PRIu64,
		g->traces, g->incomplete, g->spans, g->with_nplus1, g->with_seq, g->with_errors,
		g->saved_ns);
	json_rows(out, "slowest_hops", &g->hops, "service", "name");
	json_rows(out, "n_plus_one", &g->nplus1, "service", "endpoint");
	json_rows(out, "sequential_calls", &g->seq, "service", "name");
	json_rows(out, "error_origins", &g->origins, "service", "name");
	fprintf(out,
		"},\"input\":{\"lines\":%" PRIu64 ",\"malformed\":%" PRIu64 ",\"filtered\":%" PRIu64
		",\"skipped_spans\":%" PRIu64 ",\"skipped_traces\":%" PRIu64
		",\"duplicate_spans\":%" PRIu64 "}}\n",
		a->lines, a->malformed, a->filtered, a->skipped_spans, a->skipped_traces,
		a->duplicate_spans);
}

static void text_rows(FILE *out, const char *title, const struct agg_table *tb, bool by_time,
		      const char *what)
{
	char b1[AN_STR_MAX * 4 + 1], b2[AN_STR_MAX * 4 + 1], d1[32], d2[32];
	size_t n;
	struct agg_row **rows = sorted_rows(tb, &n);

	fprintf(out, "%s:%s\n", title, n ? "" : " none");
	for (size_t i = 0; rows && i < n && i < AN_TEXT_ROWS; i++) {
		const struct agg_row *r = rows[i];

		if (by_time) {
			ms(d1, sizeof(d1), r->sum_ns);
			ms(d2, sizeof(d2), r->max_ns);
			fprintf(out, "  %6" PRIu64 " %s  %12s in all, max %s  %s %s\n",
				r->traces ? r->traces : r->calls, what, d1, d2,
				shown(b1, sizeof(b1), r->a), shown(b2, sizeof(b2), r->b));
		} else {
			fprintf(out, "  %6" PRIu64 " %s  %s %s\n", r->traces ? r->traces : r->calls,
				what, shown(b1, sizeof(b1), r->a), shown(b2, sizeof(b2), r->b));
		}
	}
	if (n > AN_TEXT_ROWS)
		fprintf(out, "  ... %zu more (--json lists them all)\n", n - AN_TEXT_ROWS);
	if (tb->other)
		fprintf(out, "  %" PRIu64 " more finding(s) past %u rows\n", tb->other, AN_AGG_MAX);
	free(rows);
}

static void text_nplus1_rows(FILE *out, const struct agg_table *tb)
{
	char b1[AN_STR_MAX * 4 + 1], b2[AN_STR_MAX * 4 + 1];
	size_t n;
	struct agg_row **rows = sorted_rows(tb, &n);

	fprintf(out, "N+1 endpoints:%s\n", n ? "" : " none");
	for (size_t i = 0; rows && i < n && i < AN_TEXT_ROWS; i++)
		fprintf(out,
			"  %6" PRIu64 " requests, %" PRIu64 " calls (at most %" PRIu64
			" in one)  %s -> %s\n",
			rows[i]->traces, rows[i]->calls, rows[i]->max_calls,
			shown(b1, sizeof(b1), rows[i]->a), shown(b2, sizeof(b2), rows[i]->b));
	if (n > AN_TEXT_ROWS)
		fprintf(out, "  ... %zu more (--json lists them all)\n", n - AN_TEXT_ROWS);
	free(rows);
}

static void text_aggregate(FILE *out, const struct analyze *a, const struct agg *g)
{
	char d[32];

	ms(d, sizeof(d), g->saved_ns);
	fprintf(out,
		"== aggregate: %" PRIu64 " traces (%" PRIu64 " incomplete), %" PRIu64 " spans\n"
		"patterns: %" PRIu64 " trace(s) with N+1, %" PRIu64 " with sequential calls (%s "
		"to save), %" PRIu64 " with errors\n",
		g->traces, g->incomplete, g->spans, g->with_nplus1, g->with_seq, d, g->with_errors);
	text_rows(out, "slowest hops (service operation, own time on the critical path)", &g->hops,
		  true, "traces");
	text_nplus1_rows(out, &g->nplus1);
	text_rows(out, "sequential calls (time parallelism would save)", &g->seq, true, "requests");
	text_rows(out, "error origins", &g->origins, false, "errors");
	if (a->malformed || a->skipped_spans || a->skipped_traces || a->duplicate_spans)
		fprintf(out,
			"input: %" PRIu64 " line(s) malformed, %" PRIu64
			" span(s) past the span limits, %" PRIu64 " span(s) of traces past the "
			"trace limit, %" PRIu64 " duplicate span(s)\n",
			a->malformed, a->skipped_spans, a->skipped_traces, a->duplicate_spans);
}

static int cmp_trace(const void *x, const void *y)
{
	const struct analyze_trace *a = *(struct analyze_trace *const *)x;
	const struct analyze_trace *b = *(struct analyze_trace *const *)y;

	if (a->first_start != b->first_start)
		return a->first_start < b->first_start ? -1 : 1;
	return strcmp(a->id, b->id);
}

int analyze__report(struct analyze *a, FILE *out, bool json)
{
	struct analyze_trace **list = malloc((a->traces.count + 1) * sizeof(*list));
	size_t n = 0;
	struct agg g;
	uint64_t k;
	void *v;
	int err = agg_init(&g);

	if (!list)
		err = -ENOMEM;
	for (size_t i = 0; !err && u64map_next(&a->traces, &i, &k, &v);)
		list[n++] = v;
	if (!err)
		qsort(list, n, sizeof(*list), cmp_trace);
	if (json)
		fputs("{\"traces\":[", out);
	for (size_t i = 0; i < n && !err; i++) {
		struct findings f;

		err = link_trace(list[i], &a->duplicate_spans);
		if (!err)
			err = analyse_trace(list[i], &a->opts, &f);
		if (err)
			break;
		if (json && !a->opts.aggregate_only)
			json_trace(out, list[i], &f, i == 0);
		else if (!json && !a->opts.aggregate_only)
			text_trace(out, list[i], &f);
		agg_add(&g, list[i], &f);
		findings_free(&f);
	}
	if (!err && json)
		json_aggregate(out, a, &g);
	else if (!err)
		text_aggregate(out, a, &g);
	agg_free(&g);
	free(list);
	if (!err && ferror(out))
		err = -EIO;
	return err;
}

int analyze_trace_json(const char *const *lines, const size_t *lens, size_t n,
		       const struct analyze_opts *opts, FILE *out)
{
	struct analyze a;
	const char *why;
	size_t taken = 0;
	int err = analyze__init(&a, opts);

	for (size_t i = 0; i < n && !err; i++) {
		err = analyze__add_line(&a, lines[i], lens[i], &why);
		taken += err == 0;
		if (err == -EINVAL)
			err = 0;
	}
	if (!err && !taken)
		err = -EINVAL;
	if (!err)
		err = analyze__report(&a, out, true);
	analyze__free(&a);
	return err;
}
