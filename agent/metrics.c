// SPDX-License-Identifier: BSD-2-Clause
/* The metrics registry (metrics.h): series found by a hash of (metric, process, attributes)
 * in an open-addressed index, created up to the cap, then folded into overflow series. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"
#include "resource.h"
#include "span.h"
#include "stats.h"

const double metrics_bounds_s[METRICS_NBOUNDS] = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
						  0.5,	 0.75, 1,     2.5,  5,	   7.5, 10};

/* The same bounds in integer nanoseconds, so that placement is exact: 5 ms lands in the
 * 0.005 bucket, not one above because 0.005 has no exact binary form. */
static const uint64_t bounds_ns[METRICS_NBOUNDS] = {
    5000000,   10000000,  25000000,   50000000,	  75000000,   100000000,  250000000,
    500000000, 750000000, 1000000000, 2500000000, 5000000000, 7500000000, 10000000000};

static const struct metric_desc families[MF__COUNT] = {
    [MF_HTTP_SERVER_DURATION] = {"http.server.request.duration", "s",
				 "Duration of HTTP server requests.", METRIC_HISTOGRAM},
    [MF_HTTP_CLIENT_DURATION] = {"http.client.request.duration", "s",
				 "Duration of HTTP client requests.", METRIC_HISTOGRAM},
    [MF_GRAPH_REQUESTS] = {"traces_service_graph_request_total", "1",
			   "Requests between two services (caller -> callee).", METRIC_COUNTER},
    [MF_GRAPH_FAILED] = {"traces_service_graph_request_failed_total", "1",
			 "Failed requests between two services (the caller saw an error).",
			 METRIC_COUNTER},
    [MF_GRAPH_CLIENT_SECONDS] = {"traces_service_graph_request_client_seconds", "s",
				 "Duration of requests between two services, seen by the caller.",
				 METRIC_HISTOGRAM},
    [MF_GRAPH_SERVER_SECONDS] = {"traces_service_graph_request_server_seconds", "s",
				 "Duration of requests between two services, seen by the callee.",
				 METRIC_HISTOGRAM},
    [MF_PROPAGATION_CALLS] = {"hoptrace.propagation.calls", "{call}",
			      "Outgoing calls made while serving a request with a trace context, "
			      "by how the context was passed on.",
			      METRIC_COUNTER},
};

struct metrics {
	size_t max_series;
	size_t nseries;
	struct metrics_series **series; /* max_series + MF__COUNT (the overflow series) */
	size_t index_mask;
	uint32_t *index; /* series index + 1, 0: empty */
	struct metrics_series *overflow[MF__COUNT];
	size_t noverflow; /* overflow series made (they do not count against the cap) */
	uint64_t epoch;	  /* snapshots handed to an exporter so far */
	uint64_t start_unix_ns;
};

const struct metric_desc *metrics_family(enum metric_family f)
{
	return (unsigned)f < MF__COUNT ? &families[f] : NULL;
}

unsigned metrics_bucket_of(uint64_t ns)
{
	unsigned i = 0;

	while (i < METRICS_NBOUNDS && ns > bounds_ns[i])
		i++;
	return i;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

struct metrics *metrics_new(size_t max_series)
{
	struct metrics *m = calloc(1, sizeof(*m));
	size_t slots = 16;

	if (!m)
		return NULL;
	m->max_series = max_series ? max_series : METRICS_DEFAULT_MAX_SERIES;
	/* at most half full: probes stay short */
	while (slots < 2 * m->max_series)
		slots <<= 1;
	m->index_mask = slots - 1;
	m->index = calloc(slots, sizeof(*m->index));
	m->series = calloc(m->max_series + MF__COUNT, sizeof(*m->series));
	if (!m->index || !m->series) {
		metrics_free(m);
		return NULL;
	}
	m->start_unix_ns = realtime_ns();
	return m;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nseries; i++) {
		resource_put(m->series[i]->resource);
		free(m->series[i]);
	}
	free(m->series);
	free(m->index);
	free(m);
}

uint64_t metrics__start_unix_ns(const struct metrics *m)
{
	return m->start_unix_ns;
}

size_t metrics__nseries(const struct metrics *m)
{
	return m->nseries;
}

const struct metrics_series *metrics__series_at(const struct metrics *m, size_t i)
{
	return i < m->nseries ? m->series[i] : NULL;
}

const struct metrics_attr *metrics_series_attr(const struct metrics_series *ser, const char *key)
{
	for (unsigned i = 0; i < ser->nattrs; i++)
		if (!strcmp(ser->attrs[i].key, key))
			return &ser->attrs[i];
	return NULL;
}

/* ---- series identity ------------------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

/* A candidate series on the stack: attributes normalised (values cut) and hashed. */
static void candidate_init(struct metrics_series *c, enum metric_family f,
			   const struct resource *res, const struct metrics_attr *attrs,
			   unsigned nattrs)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	c->family = f;
	c->res_pid = res ? res->pid : 0;
	c->res_start_ns = res ? res->start_ns : 0;
	c->nattrs = 0;
	c->strbuf_used = 0;
	h = fnv(h, &f, sizeof(f));
	h = fnv(h, &c->res_pid, sizeof(c->res_pid));
	h = fnv(h, &c->res_start_ns, sizeof(c->res_start_ns));
	for (unsigned i = 0; i < nattrs && c->nattrs < METRICS_MAX_ATTRS; i++) {
		struct metrics_attr *a = &c->attrs[c->nattrs];

		*a = attrs[i];
		h = fnv(h, a->key, strlen(a->key) + 1);
		h = fnv(h, &a->type, sizeof(a->type));
		if (a->type != METRICS_ATTR_STR) {
			h = fnv(h, &a->ival, sizeof(a->ival));
		} else {
			size_t room = sizeof(c->strbuf) - c->strbuf_used;
			size_t len = strnlen(a->str, METRICS_VALUE_MAX);

			if (room == 0)
				continue; /* no room for even the NUL: the attribute is left out */
			if (len > room - 1)
				len = room - 1;
			memcpy(c->strbuf + c->strbuf_used, a->str, len);
			c->strbuf[c->strbuf_used + len] = '\0';
			a->str = c->strbuf + c->strbuf_used;
			c->strbuf_used += (uint16_t)(len + 1);
			h = fnv(h, a->str, len + 1);
		}
		c->nattrs++;
	}
	c->hash = h;
}

static bool same_series(const struct metrics_series *a, const struct metrics_series *b)
{
	if (a->hash != b->hash || a->family != b->family || a->res_pid != b->res_pid ||
	    a->res_start_ns != b->res_start_ns || a->nattrs != b->nattrs)
		return false;
	for (unsigned i = 0; i < a->nattrs; i++) {
		const struct metrics_attr *x = &a->attrs[i], *y = &b->attrs[i];

		if (strcmp(x->key, y->key) || x->type != y->type)
			return false;
		if (x->type == METRICS_ATTR_STR ? strcmp(x->str, y->str) != 0 : x->ival != y->ival)
			return false;
	}
	return true;
}

/* A copy of the candidate on the heap, its string attributes pointing into its own buffer. */
static struct metrics_series *series_clone(const struct metrics_series *c, struct resource *res)
{
	struct metrics_series *s = malloc(sizeof(*s));

	if (!s)
		return NULL;
	*s = *c;
	for (unsigned i = 0; i < s->nattrs; i++)
		if (s->attrs[i].type == METRICS_ATTR_STR)
			s->attrs[i].str = s->strbuf + (c->attrs[i].str - c->strbuf);
	s->count = 0;
	s->sum = 0;
	memset(s->buckets, 0, sizeof(s->buckets));
	s->resource = res ? resource_get(res) : NULL;
	return s;
}

static struct metrics_series *overflow_series(struct metrics *m, enum metric_family f)
{
	static const struct metrics_attr mark = {
	    .key = METRICS_OVERFLOW_ATTR, .type = METRICS_ATTR_BOOL, .ival = 1};
	struct metrics_series c;

	if (m->overflow[f])
		return m->overflow[f];
	candidate_init(&c, f, NULL, &mark, 1);
	m->overflow[f] = series_clone(&c, NULL);
	if (m->overflow[f]) {
		m->series[m->nseries++] = m->overflow[f]; /* room reserved: MF__COUNT extra */
		m->noverflow++;
	}
	return m->overflow[f];
}

/* The series of the candidate: found, made, or the metric's overflow series. */
static struct metrics_series *series_get(struct metrics *m, const struct metrics_series *c,
					 struct resource *res)
{
	size_t slot = c->hash & m->index_mask;
	struct metrics_series *s;

	for (; m->index[slot]; slot = (slot + 1) & m->index_mask) {
		s = m->series[m->index[slot] - 1];
		if (same_series(s, c)) {
			/* the process's resource was replaced (its pod metadata arrived,
			 * proc.c): the series is the same, exported with the newer one */
			if (res && s->resource != res) {
				resource_put(s->resource);
				s->resource = resource_get(res);
			}
			return s;
		}
	}
	/* overflow series live outside the index and apart from the cap */
	if (m->nseries - m->noverflow >= m->max_series)
		goto overflow;
	s = series_clone(c, res);
	if (!s)
		goto overflow;
	m->series[m->nseries] = s;
	m->index[slot] = (uint32_t)(++m->nseries);
	return s;
overflow:
	STAT_INC(metrics_overflow);
	return overflow_series(m, c->family);
}

void metrics__record(struct metrics *m, enum metric_family f, struct resource *res,
		     const struct metrics_attr *attrs, unsigned nattrs, uint64_t duration_ns)
{
	struct metrics_series c, *s;

	if ((unsigned)f >= MF__COUNT)
		return;
	candidate_init(&c, f, res, attrs, nattrs);
	s = series_get(m, &c, res);
	if (!s)
		return; /* out of memory even for the overflow series: counted there */
	s->count++;
	s->touched = m->epoch;
	if (families[f].kind == METRIC_HISTOGRAM) {
		s->sum += (double)duration_ns / 1e9;
		s->buckets[metrics_bucket_of(duration_ns)]++;
	}
}

/* Put every series back in the index (after some were removed). */
static void index_rebuild(struct metrics *m)
{
	memset(m->index, 0, (m->index_mask + 1) * sizeof(*m->index));
	for (size_t i = 0; i < m->nseries; i++) {
		size_t slot;

		if (m->overflow[m->series[i]->family] == m->series[i])
			continue; /* found through m->overflow, never through the index */
		slot = m->series[i]->hash & m->index_mask;
		while (m->index[slot])
			slot = (slot + 1) & m->index_mask;
		m->index[slot] = (uint32_t)(i + 1);
	}
}

size_t metrics__end_epoch(struct metrics *m)
{
	size_t kept = 0, dropped = 0;

	m->epoch++;
	if ((m->nseries - m->noverflow) * 4 <= m->max_series * 3)
		return 0;
	for (size_t i = 0; i < m->nseries; i++) {
		struct metrics_series *s = m->series[i];

		/* untouched for a whole epoch: its last value went out in the snapshot just made */
		if (s->touched + 2 <= m->epoch && m->overflow[s->family] != s) {
			resource_put(s->resource);
			free(s);
			dropped++;
			continue;
		}
		m->series[kept++] = s;
	}
	m->nseries = kept;
	if (dropped) {
		index_rebuild(m);
		STAT_ADD(metrics_series_expired, dropped);
	}
	return dropped;
}

/* ---- from spans ------------------------------------------------------------------------ */

/* Attributes being gathered for one observation. */
struct attr_list {
	unsigned n;
	struct metrics_attr a[METRICS_MAX_ATTRS];
};

static void add_str(struct attr_list *l, const char *key, const char *val)
{
	if (val && l->n < METRICS_MAX_ATTRS)
		l->a[l->n++] =
		    (struct metrics_attr){.key = key, .type = METRICS_ATTR_STR, .str = val};
}

static void add_int(struct attr_list *l, const char *key, int64_t v)
{
	if (l->n < METRICS_MAX_ATTRS)
		l->a[l->n++] =
		    (struct metrics_attr){.key = key, .type = METRICS_ATTR_INT, .ival = v};
}

/* Span attribute values are not NUL-terminated in strbuf: copied into buf, cut to fit. */
static const char *span_str(const struct span *s, const char *key, char *buf, size_t len)
{
	const struct span_attr *a = span_find_attr(s, key);
	size_t n;

	if (!a || a->type != SPAN_ATTR_STR)
		return NULL;
	n = a->len < len - 1 ? a->len : len - 1;
	memcpy(buf, span_attr_str(s, a), n);
	buf[n] = '\0';
	return buf;
}

static void copy_attr(struct attr_list *l, const struct span *s, const char *key, char *buf,
		      size_t len)
{
	const struct span_attr *a = span_find_attr(s, key);

	if (!a)
		return;
	if (a->type == SPAN_ATTR_INT)
		add_int(l, key, a->ival);
	else if (buf && len)
		add_str(l, key, span_str(s, key, buf, len));
}

static const char *service_of(const struct span *s)
{
	const struct resource *r = s->resource;

	if (r && r->service_name)
		return r->service_name;
	if (r && r->exe_name)
		return r->exe_name;
	return "unknown_service";
}

/* The callee of a client span: the service on this host that answered, else the address and
 * port it was sent to (the propagation audit names callees the same way). */
static const char *callee_of(const struct span *s, char *buf, size_t len)
{
	const struct span_attr *port = span_find_attr(s, "server.port");
	char addr[METRICS_VALUE_MAX - 24]; /* room for ":port" */

	if (span_str(s, "hoptrace.callee.service", buf, len))
		return buf;
	if (!span_str(s, "server.address", addr, sizeof(addr)))
		strcpy(addr, "?");
	snprintf(buf, len, "%.*s:%" PRId64, (int)sizeof(addr) - 1, addr,
		 port && port->type == SPAN_ATTR_INT ? port->ival : 0);
	return buf;
}

/* The RED histogram of the span's kind, with the semantic-convention attributes. */
static void observe_red(struct metrics *m, const struct span *s, uint64_t dur)
{
	char method[32], route[METRICS_VALUE_MAX], etype[64], scheme[8], version[8];
	char addr[METRICS_VALUE_MAX];
	struct attr_list l = {0};
	bool server = s->kind == SPAN_KIND_SERVER;

	copy_attr(&l, s, "http.request.method", method, sizeof(method));
	copy_attr(&l, s, "http.response.status_code", NULL, 0);
	copy_attr(&l, s, "error.type", etype, sizeof(etype));
	copy_attr(&l, s, "network.protocol.version", version, sizeof(version));
	if (server) {
		copy_attr(&l, s, "url.scheme", scheme, sizeof(scheme));
		copy_attr(&l, s, "http.route", route, sizeof(route));
	} else {
		copy_attr(&l, s, "server.address", addr, sizeof(addr));
		copy_attr(&l, s, "server.port", NULL, 0);
	}
	metrics__record(m, server ? MF_HTTP_SERVER_DURATION : MF_HTTP_CLIENT_DURATION, s->resource,
			l.a, l.n, dur);
}

/* Caller-side edge metrics and the propagation verdict of one client span. The edges are
 * host-level facts (services, not processes): recorded under the agent's resource. */
static void observe_client_edge(struct metrics *m, const struct span *s, uint64_t dur)
{
	char callee[METRICS_VALUE_MAX], result[32];
	struct attr_list l = {0};

	add_str(&l, "client", service_of(s));
	add_str(&l, "server", callee_of(s, callee, sizeof(callee)));
	metrics__record(m, MF_GRAPH_REQUESTS, NULL, l.a, l.n, 0);
	if (s->status == SPAN_STATUS_ERROR)
		metrics__record(m, MF_GRAPH_FAILED, NULL, l.a, l.n, 0);
	metrics__record(m, MF_GRAPH_CLIENT_SECONDS, NULL, l.a, l.n, dur);
	if (!span_str(s, "hoptrace.propagation", result, sizeof(result)))
		return; /* not classified: the request served had no trace context */
	add_str(&l, "result", result);
	metrics__record(m, MF_PROPAGATION_CALLS, NULL, l.a, l.n, 0);
}

/* Callee-side duration of an edge: a server span whose caller was seen on this host. */
static void observe_server_edge(struct metrics *m, const struct span *s, uint64_t dur)
{
	char caller[METRICS_VALUE_MAX];
	struct attr_list l = {0};

	if (!span_str(s, "hoptrace.caller.service", caller, sizeof(caller)))
		return;
	add_str(&l, "client", caller);
	add_str(&l, "server", service_of(s));
	metrics__record(m, MF_GRAPH_SERVER_SECONDS, NULL, l.a, l.n, dur);
}

void metrics__observe_span(struct metrics *m, const struct span *s)
{
	uint64_t dur = s->end_unix_ns > s->start_unix_ns ? s->end_unix_ns - s->start_unix_ns : 0;

	if (s->kind != SPAN_KIND_SERVER && s->kind != SPAN_KIND_CLIENT)
		return;
	observe_red(m, s, dur);
	if (s->kind == SPAN_KIND_CLIENT)
		observe_client_edge(m, s, dur);
	else
		observe_server_edge(m, s, dur);
}
